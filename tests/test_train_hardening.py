"""Training and predict attacked: links planted in the run folder and at temporary names, a diverging loss,
damaged or foreign state, checkpoint and summary files. Tiny network, 32-pixel images, a few steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from chexpert.errors import RunError  # noqa: E402
from chexpert.fileio import atomic_write, is_temporary  # noqa: E402
from chexpert.progress import Start  # noqa: E402
from chexpert.store import Store  # noqa: E402
from chexpert.train import Recipe, get_recipe, open_run, predict, train  # noqa: E402
from chexpert.train.run import load_resume_state  # noqa: E402

from .conftest import TRAIN_SIZE as SIZE  # noqa: E402
from .conftest import tree_digest  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")


def small(**changes: object) -> Recipe:
    return get_recipe("demo").replace(**{"size": SIZE, "batch_size": 16, "max_steps": 2, "checkpoint_every": 1, "keep_best": 2, "log_every": 1, **changes})


@pytest.fixture(scope="module")
def finished(train_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run with every file a run writes (tensorboard/ and u-ignore/ made by hand when missing)."""
    out = tmp_path_factory.mktemp("hard-run") / "run"
    train(train_store, out, small())
    (out / "tensorboard").mkdir(exist_ok=True)
    (out / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"events")
    (out / "soft-labels.csv").write_text("Path,Consolidation\n")
    stage = tmp_path_factory.mktemp("hard-stage") / "u-ignore"
    shutil.copytree(out, stage, symlinks=True)
    shutil.move(stage, out / "u-ignore")
    return out


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=600)


# -- links inside the run folder ----------------------------------------------------------------------

#: Every name the run folder uses, and one inside each of its sub-folders.
LINKED = ["run.json", "state.pt", "summary.json", "log.csv", "validation.csv", "checkpoints", "soft-labels.csv", "u-ignore",
          "tensorboard", "checkpoints/step-0000002.pt", "tensorboard/events.out.tfevents.1.host", "u-ignore/checkpoints",
          "u-ignore/state.pt"]  # fmt: skip


@pytest.mark.parametrize("name", LINKED)
def test_a_link_in_the_run_folder_is_never_followed_to_remove_or_write(name: str, train_store: Store, finished: Path, tmp_path: Path) -> None:
    out, victim = tmp_path / "run", tmp_path / "other-run"
    shutil.copytree(finished, out, symlinks=True)
    shutil.copytree(finished, victim, symlinks=True)  # another run, which the link points into
    planted = out / name
    if planted.is_dir():
        shutil.rmtree(planted)
    else:
        planted.unlink()
    planted.symlink_to(victim / name, target_is_directory=(victim / name).is_dir())
    before = tree_digest(victim)

    # Without --overwrite: refused in one line naming the link; nothing moves.
    with pytest.raises(RunError, match="symbolic link") as refused:
        train(train_store, out, small(seed=1))
    assert str(planted) in str(refused.value) and planted.is_symlink()
    assert tree_digest(victim) == before

    # With --overwrite: the link goes as a link, the run is replaced, and nothing behind the link is touched.
    if name == "run.json":  # without its own run.json nothing proves the rest of the folder the run's: refused
        with pytest.raises(RunError, match="is not a run"):
            train(train_store, out, small(seed=1), overwrite=True)
    else:
        assert train(train_store, out, small(seed=1), overwrite=True).finished
    assert not planted.is_symlink()
    assert tree_digest(victim) == before


# -- temporary names -----------------------------------------------------------------------------------


def test_links_planted_at_every_temporary_name_are_never_written_through(train_store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("keep me\n")
    out = tmp_path / "run"
    pid = os.getpid()  # the old temporary names were .NAME.PID.tmp and NAME.tmp: predictable
    names = [f".{n}.{pid}.tmp" for n in ("run.json", "state.pt", "summary.json", "soft-labels.csv")] + ["log.csv.tmp", "validation.csv.tmp"]
    names += [f"checkpoints/.step-000000{s}.pt.{pid}.tmp" for s in (1, 2)]

    def plant(event: object) -> None:  # once the run folder is begun, before anything else is written
        if isinstance(event, Start):  # typed events since i17 (the test was written against dicts)
            (out / "checkpoints").mkdir(exist_ok=True)
            for name in names:
                if not (out / name).is_symlink():
                    (out / name).symlink_to(secret)

    train(train_store, out, small(), progress=plant)
    assert secret.read_text() == "keep me\n"
    (out / "summary.json").unlink()  # resumed: the logs are cut and rewritten, the summary written again
    train(train_store, out, small(), progress=plant)
    assert secret.read_text() == "keep me\n"
    if not (out / names[0]).is_symlink():
        (out / names[0]).symlink_to(secret)
    train(train_store, out, small(seed=2), overwrite=True, progress=plant)  # run.json written anew
    assert secret.read_text() == "keep me\n"
    assert open_run(out).finished
    # A link inside checkpoints/ when a run starts is refused (and removed, as a link, with overwrite).
    # The links at the run's temporary names were removed as links; those at names it no longer uses are left alone.
    assert sorted(p.name for p in out.rglob("*") if p.is_symlink()) == ["log.csv.tmp", "validation.csv.tmp"]
    (out / "summary.json").unlink()
    (out / names[-1]).symlink_to(secret)
    with pytest.raises(RunError, match="symbolic link"):
        train(train_store, out, small(seed=2))
    train(train_store, out, small(seed=2), overwrite=True)
    assert secret.read_text() == "keep me\n"

    predictions = predict(out, train_store)
    target = tmp_path / "preds" / "preds.csv"
    target.parent.mkdir()
    for name in (".preds.csv.tmp", ".preds-studies.csv.tmp", f".preds.csv.{pid}.tmp"):
        (target.parent / name).symlink_to(secret)
    predictions.write(target)
    assert secret.read_text() == "keep me\n" and target.read_text().startswith("Path,")

    from chexpert.report import write_report

    (tmp_path / ".report.html.tmp").symlink_to(secret)
    write_report(tmp_path / "report.html", train_store)
    assert secret.read_text() == "keep me\n"


def test_atomic_write_creates_its_temporary_file_exclusively_and_replaces_a_link_at_the_target(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep")
    (tmp_path / "out.txt").symlink_to(secret)
    atomic_write(tmp_path / "out.txt", "new")
    assert secret.read_text() == "keep" and not (tmp_path / "out.txt").is_symlink() and (tmp_path / "out.txt").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if is_temporary(p.name)]
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path, "x")  # the rename fails: the temporary file is removed
    assert not [p for p in tmp_path.parent.iterdir() if is_temporary(p.name)]


# -- a diverging loss ----------------------------------------------------------------------------------


def test_a_loss_that_becomes_nan_stops_the_run_at_that_step_keeping_the_last_good_checkpoint(train_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "run"
    recipe = small(lr=1e30, max_steps=6)  # finite after one step, overflowing at the second
    with pytest.raises(RunError, match=r"loss became NaN or infinite at step 2: .*state\.pt holds the last good checkpoint \(step 1\)"):
        train(train_store, out, recipe, validate=False)
    assert not (out / "summary.json").exists()
    state = load_resume_state(out / "state.pt")
    assert state["step"] == 1 and all(bool(torch.isfinite(t).all()) for t in state["model"].values() if t.is_floating_point())
    assert [c.step for c in open_run(out).checkpoints] == [1]
    # The same command resumes from it (and stops again at the same step: the run is deterministic).
    with pytest.raises(RunError, match="at step 2"):
        train(train_store, out, recipe, validate=False)
    # Its model scores overflow: predict refuses, writing nothing.
    with pytest.raises(RunError, match="NaN or infinite scores"):
        predict(out, train_store)
    result = _cli("train", str(train_store.path), "--out", str(out), "--recipe", "demo", "--size", str(SIZE), "--batch-size", "16",
                  "--max-steps", "6", "--checkpoint-every", "1", "--keep-best", "2", "--log-every", "1", "--lr", "1e30",
                  "--no-validation", "--quiet")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr and "at step 2" in result.stderr, result.stderr
    preds = tmp_path / "preds.csv"
    result = _cli("predict", str(out), str(train_store.path), "--out", str(preds))
    assert result.returncode == 1 and "Traceback" not in result.stderr and not preds.exists(), result.stderr


def test_validation_scores_that_are_not_finite_stop_the_run(train_store: Store, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="validation scores became NaN or infinite at step 1: .*no checkpoint was written"):
        train(train_store, tmp_path / "run", small(lr=1e30))
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt")) if (tmp_path / "run" / "checkpoints").exists() else True


# -- damaged or foreign files ------------------------------------------------------------------------------


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x80\x02garbage" * 10,
    "empty": lambda data: b"",
    "text": lambda data: b"hello world\n",
}


def _foreign(path: Path, what: object) -> None:
    torch.save(what, path)


@pytest.mark.parametrize("damage", [*DAMAGE, "foreign-dict", "foreign-list", "no-steps"])
def test_a_damaged_or_foreign_state_is_one_line_and_overwrite_starts_afresh(damage: str, train_store: Store, finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    (out / "summary.json").unlink()  # unfinished: the next start resumes from state.pt
    state = out / "state.pt"
    if damage in DAMAGE:
        state.write_bytes(DAMAGE[damage](state.read_bytes()))
    elif damage == "foreign-dict":
        _foreign(state, {"weights": torch.zeros(2)})
    elif damage == "foreign-list":
        _foreign(state, [1, 2, 3])
    else:
        good = torch.load(state, weights_only=True)
        del good["step"]
        _foreign(state, good)
    with pytest.raises(RunError, match=f"^{state}: ") as refused:
        train(train_store, out, small())
    assert "\n" not in str(refused.value)
    run = train(train_store, out, small(), overwrite=True)
    assert run.finished and load_resume_state(state)["step"] == 2


def test_a_damaged_checkpoint_or_summary_for_predict_is_one_line_naming_the_file(train_store: Store, finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    checkpoint = open_run(out).checkpoints[0].path
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(RunError, match=f"^{checkpoint}: damaged"):
        predict(out, train_store)
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "step": 2}, checkpoint)
    with pytest.raises(RunError, match=f"^{checkpoint}: its weights are not this run's tiny-cnn"):
        predict(out, train_store)
    nan = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in torch.load(finished / "state.pt", weights_only=True)["model"].items()
    }
    torch.save({"model": nan, "step": 2}, checkpoint)
    with pytest.raises(RunError, match=f"^{checkpoint}: its weights are not finite"):
        predict(out, train_store)
    for text in ("{not json", '{"kept": [{"step": "two"}]}', "[]"):
        (out / "summary.json").write_text(text)
        with pytest.raises(RunError, match=f"^{out / 'summary.json'}: damaged run summary"):
            predict(out, train_store)
        result = _cli("predict", str(out), str(train_store.path), "--out", str(tmp_path / "p.csv"))
        assert result.returncode == 1 and "Traceback" not in result.stderr and "summary.json" in result.stderr, result.stderr
    # --overwrite over a damaged summary starts afresh.
    assert train(train_store, out, small(), overwrite=True).finished
