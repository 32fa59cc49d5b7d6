"""Recipes a researcher steers: every field on the command line and in a recipe file, learning-rate schedules,
the leaderboard's deep AUC maximisation (AUC-margin loss + PESG, checked against LibAUC), resumed bit for bit."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from chexpert.errors import InvalidArgumentError  # noqa: E402
from chexpert.policy import Policy  # noqa: E402
from chexpert.progress import Event  # noqa: E402
from chexpert.store import Store  # noqa: E402
from chexpert.train import Recipe, get_recipe, open_run, predict, train  # noqa: E402
from chexpert.train.auc import PESG, AUCMLoss  # noqa: E402
from chexpert.train.recipe import RECIPES, read_recipe, recipe_toml  # noqa: E402
from tests.conftest import TRAIN_SIZE as SIZE  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")


def small(**changes: object) -> Recipe:
    return get_recipe("demo").replace(**{"size": SIZE, "batch_size": 8, "checkpoint_every": 3, "keep_best": 2, "log_every": 1, **changes})


def _cli(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=600, env=env, **kwargs)


# -- every field on the command line, and in a file ---------------------------------------------------


def _train_parser() -> argparse.ArgumentParser:
    from chexpert.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_recipe_field_is_an_option_of_train() -> None:
    options = {o for action in _train_parser()._actions for o in action.option_strings}
    missing = [f.name for f in dataclasses.fields(Recipe) if "--" + f.name.replace("_", "-") not in options]
    assert not missing, f"Recipe fields without a train option: {missing}"


def test_every_option_reaches_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse a command line setting every field to a non-default value and check the recipe train receives."""
    import chexpert.train as training
    from chexpert.cli import train as cli_train

    seen: list[Recipe] = []

    def fake_train(root: object, out: object, recipe: Recipe, **kwargs: object) -> None:
        seen.append(recipe)
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", fake_train)
    argv = ["train", "ROOT", "--out", "RUN", "--recipe", "demo", "--weight-decay", "0.01", "--resize", "crop", "--crop-scale", "0.6", "0.9",
            "--degrees", "5", "--translate", "0.1", "--brightness", "0.2", "--contrast", "0.3", "--betas", "0.8", "0.99",
            "--schedule", "cosine", "--warmup-steps", "4", "--min-lr", "1e-5", "--input-size", "56", "--compile"]  # fmt: skip
    from chexpert.cli import build_parser

    args = build_parser().parse_args(argv)
    with pytest.raises(SystemExit):
        cli_train._train(args)
    r = seen[0]
    assert (r.weight_decay, r.resize, r.crop_scale, r.degrees, r.translate, r.brightness, r.contrast, r.betas) == (
        0.01, "crop", (0.6, 0.9), 5.0, 0.1, 0.2, 0.3, (0.8, 0.99),
    )  # fmt: skip
    assert (r.schedule, r.warmup_steps, r.min_lr, r.input_size, r.compile, r.model) == ("cosine", 4, 1e-5, 56, True, "tiny-cnn")


def test_a_recipe_file_sets_fields_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    file = tmp_path / "r.toml"
    file.write_text('base = "demo"\nlr = 3e-4\nweight-decay = 1e-4\nschedule = "step"\ncrop_scale = [0.8, 1.0]\n[policy]\nuncertain = "zeros"\n')
    recipe = read_recipe(file)
    assert (recipe.model, recipe.lr, recipe.weight_decay, recipe.schedule, recipe.crop_scale) == ("tiny-cnn", 3e-4, 1e-4, "step", (0.8, 1.0))
    assert isinstance(recipe.policy, Policy) and recipe.policy.uncertain == "zeros"
    assert read_recipe(_write(tmp_path / "again.toml", recipe_toml(recipe))) == recipe
    for name, recipe in RECIPES.items():
        assert read_recipe(_write(tmp_path / f"{name}.toml", recipe_toml(recipe))) == recipe, name


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr = 'fast'\n", "lr must be a number"),
        ("learning_rate = 0.1\n", "unknown recipe field(s) learning_rate"),
        ("lr = \n", "not a valid TOML recipe"),
        ('base = "nope"\n', "unknown recipe 'nope'"),
    ],
)
def test_a_bad_recipe_file_is_one_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    file = _write(tmp_path / "bad.toml", text)
    with pytest.raises(InvalidArgumentError, match=str(file).replace(".", r"\.")) as info:
        read_recipe(file)
    assert message in str(info.value)


# -- schedules ----------------------------------------------------------------------------------------


def test_schedules_follow_their_definition() -> None:
    step = Recipe(lr=1.0, schedule="step", step_every=2, lr_factor=0.5)
    assert [step.lr_at(s, 3, 12) for s in range(0, 12, 3)] == [1.0, 1.0, 0.5, 0.5]
    cosine = Recipe(lr=1.0, schedule="cosine", warmup_steps=2, min_lr=0.1)
    rates = [cosine.lr_at(s, 10, 12) for s in range(12)]
    assert rates[:3] == [0.5, 1.0, 1.0] and rates[-1] > 0.1 and all(a >= b for a, b in itertools.pairwise(rates[2:]))
    assert Recipe(lr=1.0, schedule="plateau", min_lr=0.05).lr_at(5, 10, 12, plateau=0.01) == 0.05
    assert Recipe(lr=0.3).lr_at(7, 10, 12) == 0.3


def test_reduce_on_plateau_reduces_after_patience_validations_without_improvement() -> None:
    from chexpert.train.loop import _plateau_step

    recipe = Recipe(schedule="plateau", patience=1, lr_factor=0.5)
    state = {"best": -float("inf"), "bad": 0, "factor": 1.0}
    for metric in (0.7, 0.6, 0.65, 0.69, 0.8, 0.5):
        _plateau_step(state, metric, recipe)
    assert state == {"best": 0.8, "bad": 1, "factor": 0.5}


def test_the_logged_learning_rate_follows_the_schedule(train_store: Store, tmp_path: Path) -> None:
    run = train(train_store, tmp_path / "run", small(lr=0.01, schedule="step", step_every=1, lr_factor=0.1, epochs=2, checkpoint_every=100))
    log = run.log()
    per_epoch = log.groupby(log["step"].sub(1) // -(-int((train_store.index.split == 0).sum()) // 8))["lr"].unique()
    assert [list(v) for v in per_epoch] == [[0.01], [0.001]]
    assert (tmp_path / "run" / "recipe.toml").is_file() and read_recipe(tmp_path / "run" / "recipe.toml") == run.recipe


# -- deep AUC maximisation, against LibAUC ------------------------------------------------------------


@pytest.mark.parametrize("margin", [1.0, 0.6])
def test_aucm_loss_and_pesg_match_libauc(margin: float) -> None:
    libauc_losses = pytest.importorskip("libauc.losses")
    libauc_optimizers = pytest.importorskip("libauc.optimizers")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    theirs_model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    theirs_model.load_state_dict(model.state_dict())
    ours_loss = AUCMLoss(5, margin=margin)
    theirs_loss = libauc_losses.MultiLabelAUCMLoss(margin=margin, num_labels=5, device=torch.device("cpu"))
    ours = PESG(model.parameters(), ours_loss, lr=0.1, weight_decay=1e-5, epoch_decay=2e-3, momentum=0.9, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(7)  # LibAUC draws its reference point from the global generator
    theirs = libauc_optimizers.PESG(theirs_model.parameters(), theirs_loss, lr=0.1, margin=margin, weight_decay=1e-5, epoch_decay=2e-3, momentum=0.9,
                                    device=torch.device("cpu"), verbose=False)  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.randn(16, 6, generator=generator)
        y = (torch.rand(16, 5, generator=generator) < 0.4).float()
        y[0] = 1.0
        y[1] = 0.0  # both classes in every column
        losses = []
        for net, loss_fn, optimizer in ((model, ours_loss, ours), (theirs_model, theirs_loss, theirs)):
            loss = loss_fn(torch.sigmoid(net(x)), y)
            optimizer.zero_grad()
            if loss_fn is ours_loss:
                loss_fn.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6), step
        if step == 5:
            ours.update_regularizer()
            theirs.update_regularizer()
    for (name, a), b in zip(model.state_dict().items(), theirs_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for name in ("a", "b", "alpha"):
        torch.testing.assert_close(getattr(ours_loss, name).detach(), getattr(theirs_loss, name).detach(), rtol=1e-5, atol=1e-6)


def test_the_aucm_loss_leaves_masked_targets_out() -> None:
    loss = AUCMLoss(2)
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.7, 0.3], [0.4, 0.6]])
    targets = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    mask = torch.tensor([[True, True], [True, True], [True, True], [False, False]])
    assert loss(scores, targets, mask).item() == pytest.approx(loss(scores[:3], targets[:3]).item(), abs=1e-7)
    assert loss(scores, targets, mask).item() != pytest.approx(loss(scores, targets).item(), abs=1e-7)


class _Stop(Exception):
    pass


def _stop_at(step: int) -> Callable[[Event], None]:
    def progress(event: Event) -> None:
        if event["event"] == "checkpoint" and event["step"] == step:
            raise _Stop  # the state of `step` is on disk: as a run killed right after writing it

    return progress


@pytest.mark.parametrize(
    "changes",
    [
        {"loss": "aucm", "optimizer": "pesg", "pretrain_epochs": 1, "pretrain_lr": 1e-3, "lr": 0.05, "epoch_decay": 2e-3, "weight_decay": 1e-5,
         "schedule": "step", "step_every": 1},
        {"schedule": "plateau", "patience": 0, "lr_factor": 0.5, "lr": 3e-3},
    ],
    ids=["libauc-aucm", "plateau"],
)  # fmt: skip
def test_a_run_stopped_after_a_checkpoint_resumes_bit_identically(train_store: Store, tmp_path: Path, changes: dict[str, object]) -> None:
    recipe = small(epochs=3, checkpoint_every=2, **changes)
    steps_per_epoch = -(-int((train_store.index.split == 0).sum()) // 8)
    stop = steps_per_epoch + 2 + (steps_per_epoch + 2) % 2  # a checkpoint inside the second epoch (after the switch to PESG)
    assert stop % steps_per_epoch
    with pytest.raises(_Stop):
        train(train_store, tmp_path / "stopped", recipe, deterministic=True, progress=_stop_at(stop))
    assert torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)["step"] == stop
    resumed = train(train_store, tmp_path / "stopped", recipe, deterministic=True)
    straight = train(train_store, tmp_path / "straight", recipe, deterministic=True)
    a, b = (torch.load(run.path / "state.pt", weights_only=True) for run in (resumed, straight))
    assert a["step"] == b["step"] == 3 * steps_per_epoch and a["kept"] == b["kept"] and a["plateau"] == b["plateau"]
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
    if b["auc_loss"] is not None:
        for name, tensor in b["auc_loss"].items():
            assert torch.equal(a["auc_loss"][name], tensor), name
    columns = ["step", "epoch", "loss", "lr"]
    assert resumed.log()[columns].equals(straight.log()[columns])
    assert resumed.validation().equals(straight.validation())
    predictions = predict(resumed, train_store, split="valid")
    assert np.isfinite(predictions.studies.drop(columns="Study").to_numpy()).all()
    if recipe.schedule == "plateau":
        assert a["plateau"]["factor"] < 1.0, "the plateau schedule never reduced: the test does not exercise its state"


def test_the_libauc_recipe_is_named_and_checked() -> None:
    recipe = get_recipe("libauc-aucm")
    assert (recipe.loss, recipe.optimizer, recipe.pretrain_epochs, recipe.lr, recipe.margin, recipe.epoch_decay) == ("aucm", "pesg", 1, 0.1, 1.0, 2e-3)
    with pytest.raises(InvalidArgumentError, match="go together"):
        Recipe(loss="aucm")
    with pytest.raises(InvalidArgumentError, match="pretrain_epochs \\(3\\) must be fewer than epochs \\(3\\)"):
        Recipe(pretrain_epochs=3)


def test_train_reads_the_image_size_from_the_store(train_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _cli("train", str(train_store.path), "--out", str(out), "--recipe", "demo", "--max-steps", "2", "--checkpoint-every", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert open_run(out).recipe.size == SIZE
    other = _cli("train", str(train_store.path), "--out", str(tmp_path / "other"), "--recipe", "demo", "--size", "64", "--max-steps", "1")
    assert other.returncode == 1 and f"holds {SIZE}x{SIZE} images (pad); the recipe asks for 64x64" in other.stderr
    recipe = json.loads((out / "run.json").read_text())["recipe"]
    assert recipe["size"] == SIZE


# -- predict on anything, with class activation maps ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(train_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-run") / "run"
    train(train_store, out, small(max_steps=4, checkpoint_every=2))
    return out


def test_predict_on_a_folder_a_file_and_a_list_equals_predict_on_the_release(tiny_run: Path, train_release: Path, train_store: Store, tmp_path: Path) -> None:
    import shutil

    import cv2

    from chexpert.schema import strip_release_prefix

    reference = predict(tiny_run, train_release, split="valid")
    folder = tmp_path / "scans"
    shutil.copytree(train_release / "valid", folder / "valid")
    (folder / "notes.txt").write_text("not an image")
    found = predict(tiny_run, folder)
    assert sorted(found.images["Path"]) == sorted(strip_release_prefix(p) for p in reference.images["Path"])
    mine = found.images.set_index("Path").sort_index()
    theirs = reference.images.assign(Path=[strip_release_prefix(p) for p in reference.images["Path"]]).set_index("Path").sort_index()
    np.testing.assert_allclose(mine.to_numpy(), theirs.to_numpy(), rtol=0, atol=1e-6)  # the same decoder and resize as the release's
    np.testing.assert_allclose(
        found.studies.set_index("Study").sort_index().to_numpy(), reference.studies.set_index("Study").sort_index().to_numpy(), atol=1e-6
    )
    # A PNG and a DICOM holding a store image's pixels predict as the store does.
    from chexpert.synth.dicom import DicomParams, render_dicom

    rows = np.flatnonzero(train_store.index.split == 1)[:2]
    stored = predict(tiny_run, train_store, split="valid").images.set_index("Path").loc[train_store.index.path[rows]]
    files = []
    for k, row in enumerate(rows):
        png = tmp_path / "files" / f"image{k}.png"
        png.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(png), np.asarray(train_store.images[row]))
        files.append(str(png))
    dcm = tmp_path / "files" / "image0.dcm"
    dcm.write_bytes(render_dicom(np.asarray(train_store.images[rows[0]]), DicomParams(photometric="MONOCHROME1", bits_stored=14)))
    listed = predict(tiny_run, [*files, str(dcm)])
    assert list(listed.images["Path"]) == ["image0.png", "image1.png", "image0.dcm"]
    np.testing.assert_allclose(listed.images.iloc[:2, 1:].to_numpy(), stored.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(listed.images.iloc[2, 1:].to_numpy(dtype=float), stored.iloc[0].to_numpy(), atol=1e-6)
    single = predict(tiny_run, files[1])
    np.testing.assert_allclose(single.images.iloc[0, 1:].to_numpy(dtype=float), stored.iloc[1].to_numpy(), atol=1e-6)


def test_predict_refuses_what_it_cannot_read_by_name(tiny_run: Path, tmp_path: Path) -> None:
    from chexpert.errors import ChexpertError

    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="no image files"):
        predict(tiny_run, tmp_path / "empty")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ChexpertError, match="broken.jpg"):
        predict(tiny_run, [broken])
    with pytest.raises(InvalidArgumentError, match="no-such.png: no such image file"):
        predict(tiny_run, [tmp_path / "no-such.png"])


def test_class_activation_maps_are_the_logits_spread_over_the_image() -> None:
    from chexpert.train.heads import Head
    from chexpert.train.models import build_model
    from chexpert.train.saliency import class_activation_maps

    head = Head(("Atelectasis", "Cardiomegaly", "Edema"), (False, True, False))
    torch.manual_seed(0)
    for name, channels, side in (("tiny-cnn", 1, 32), ("densenet121", 3, 64), ("resnet18", 3, 64)):
        model = build_model(name, outputs=head.outputs, channels=channels, weights="none").eval()
        x = torch.randn(2, channels, side, side)
        maps = class_activation_maps(model, head, x)
        logits = model(x).detach()
        classifier = model.fc if name == "resnet18" else model.classifier
        assert isinstance(classifier, torch.nn.Linear) and classifier.bias is not None
        bias = classifier.bias.detach()
        expected = torch.stack([logits[:, 0], logits[:, 2] - logits[:, 1], logits[:, 4]], dim=1)
        expected_bias = torch.stack([bias[0], bias[2] - bias[1], bias[4]])
        torch.testing.assert_close(maps.mean(dim=(2, 3)) + expected_bias, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_predict_writes_a_cam_overlay_per_image_and_observation_from_the_command_line(tiny_run: Path, train_release: Path, tmp_path: Path) -> None:
    result = _cli("predict", str(tiny_run), str(train_release / "valid"), "--out", str(tmp_path / "p.csv"), "--cam", str(tmp_path / "cam"))
    assert result.returncode == 0, result.stderr
    images = __import__("pandas").read_csv(tmp_path / "p.csv")
    assert "\x1b" not in result.stderr  # no progress bar off a terminal
    observations = [c for c in images.columns if c != "Path"]
    written = sorted(p.relative_to(tmp_path / "cam").as_posix() for p in (tmp_path / "cam").rglob("*.png"))
    expected = sorted(f"{Path(p).with_suffix('').as_posix()}/{o.replace(' ', '_')}.png" for p in images["Path"] for o in observations)
    assert written == expected
    import cv2

    picture = cv2.imread(str(tmp_path / "cam" / expected[0]))
    assert picture is not None and picture.shape == (SIZE, SIZE, 3) and picture.std() > 0
    assert (tmp_path / "p-studies.csv").is_file()


def test_a_link_planted_at_a_cam_file_is_replaced_not_written_through(tiny_run: Path, train_store: Store, tmp_path: Path) -> None:
    import cv2

    row = int(np.flatnonzero(train_store.index.split == 1)[0])
    image = tmp_path / "files" / "image0.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.asarray(train_store.images[row]))
    bait = tmp_path / "outside.txt"
    bait.write_text("keep me")
    cam = tmp_path / "cam"
    observation = open_run(tiny_run).head.observations[0]
    link = cam / "image0" / f"{observation.replace(' ', '_')}.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(bait)
    predict(tiny_run, [image], cam=cam)
    assert bait.read_text() == "keep me"
    assert link.is_file() and not link.is_symlink() and cv2.imread(str(link)) is not None


# -- GPU readiness on the CPU: timm, TensorBoard, bf16 autocast with channels-last, torch.compile ----------


def test_a_timm_model_trains_and_tensorboard_gets_the_events(train_store: Store, tmp_path: Path) -> None:
    pytest.importorskip("timm")
    pytest.importorskip("tensorboard")
    run = train(train_store, tmp_path / "timm", small(model="test_efficientnet", max_steps=2, checkpoint_every=2, input_size=32))
    assert type(run.model()).__module__.startswith("timm.")
    events = list((tmp_path / "timm" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert any("loss" in tag for tag in accumulator.Tags()["scalars"])


def test_bf16_autocast_and_channels_last_are_really_used_on_the_cpu(train_store: Store) -> None:
    from chexpert.train.device import resolve_placement
    from chexpert.train.loop import Trainer, head_of

    recipe = small(precision="bf16", channels_last=True)
    placement = resolve_placement("cpu", recipe.precision, recipe.channels_last)
    trainer = Trainer(recipe, head_of(recipe.policy), placement)
    conv = next(m for m in trainer.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen: list[object] = []
    conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    images = torch.randint(0, 256, (4, 1, SIZE, SIZE), dtype=torch.uint8)
    inputs = trainer.transform(images, torch.Generator()).contiguous(memory_format=torch.channels_last)
    labels = {"targets": torch.ones(4, len(trainer.head.observations)), "mask": torch.ones(4, len(trainer.head.observations), dtype=torch.bool)}
    loss = trainer.step(inputs, labels)
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.slow
def test_compile_trains_on_the_cpu(train_store: Store, tmp_path: Path) -> None:
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler; none here")
    run = train(train_store, tmp_path / "compiled", small(compile=True, max_steps=2, checkpoint_every=2))
    assert np.isfinite(run.log()["loss"]).all() and run.finished


def test_writing_tensorboard_events_does_not_import_tensorflow(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    code = (
        "import sys; from pathlib import Path; from chexpert.train.log import RunLog; "
        f"log = RunLog(Path({str(tmp_path)!r}), ('Edema',), resume_step=None, tensorboard=True); "
        "log.train(1, 0, 0.5, 1e-4, 10.0, 1.0); log.close(); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
