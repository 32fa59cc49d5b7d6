"""``chexpert train`` under torchrun with a valid split: validation, U-SelfTrained, --keep-best, SIGKILL and resume, two "nodes".

Two CPU processes on gloo, as a user launches them. The valid split (137 images) is a multiple of
neither the world size nor the batch size, and each rank's share spans more than one scoring batch
of 64, so padding, partial batches and the gather back into row order are all exercised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import pandas as pd  # noqa: E402

from chexpert import schema  # noqa: E402
from chexpert.evaluate import evaluate  # noqa: E402
from chexpert.store import Store  # noqa: E402
from chexpert.train import open_run, predict  # noqa: E402
from tests.conftest import rank_failure  # noqa: E402

SIZE = 32
pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")
# Enough checkpoints after the first that a kill on seeing it lands mid-run even on a fast machine.
STEPS, EVERY = 45, 3
OPTIONS = ("--recipe", "demo", "--size", str(SIZE), "--batch-size", "4", "--max-steps", str(STEPS), "--checkpoint-every", str(EVERY),
           "--keep-best", "2", "--log-every", "1", "--seed", "3", "--workers", "0", "--quiet")  # fmt: skip
# One thread per process everywhere: CPU kernels are bit-reproducible for a given thread count.
# PYTHONFAULTHANDLER: a rank that aborts (SIGABRT from C++, as gloo's teardown once did) prints
# where it was in the failure's stderr instead of a bare signal number.
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONFAULTHANDLER="1")


@pytest.fixture(scope="module")
def store(look_alike: Callable[..., Path], prepared_store: Callable[..., Store]) -> Store:
    store = prepared_store(look_alike(patients=24, valid_patients=112, seed=3), size=SIZE)
    valid = int((store.index.split == schema.SPLITS.index("valid")).sum())
    assert valid % 2 == 1 and valid % 4 != 0 and valid // 2 > 64, valid  # the shapes this module is about
    return store


def _train_command(store: Store, out: Path, *extra: str) -> list[str]:
    return ["-m", "chexpert", "train", str(store.path), "--out", str(out), *OPTIONS, *extra]


def _torchrun(*arguments: str, launch: tuple[str, ...] = ("--standalone", "--nproc_per_node=2")) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, *arguments]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, rank_failure(result.stderr)
    return result


@pytest.fixture(scope="module")
def straight(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted two-process run with validation: the reference for the others."""
    out = tmp_path_factory.mktemp("ddp-valid") / "straight"
    _run(_torchrun(*_train_command(store, out)))
    return out


def _mean_auroc(studies: pd.DataFrame, store: Store) -> float:
    valid = store.index.take(store.index.split == schema.SPLITS.index("valid"))
    aurocs = evaluate(studies, valid, bootstrap=0).table["auroc"]
    chosen = [float(aurocs[t]) for t in schema.COMPETITION_TASKS if t in aurocs and not math.isnan(aurocs[t])]
    return float(np.mean(chosen))


def test_every_checkpoint_is_validated_on_the_whole_split_and_kept_alike(straight: Path, store: Store) -> None:
    run = open_run(straight)
    assert run.finished and run.identity["world_size"] == 2
    validation = pd.read_csv(straight / "validation.csv")
    assert validation["step"].tolist() == list(range(EVERY, STEPS + 1, EVERY))  # once per checkpoint (rank 0 alone writes), none missing
    assert validation["mean_auroc"].notna().all()
    # --keep-best 2: the two best by the validation written, and the files of exactly those.
    best = validation.sort_values(["mean_auroc", "step"], ascending=False)["step"].tolist()[:2]
    assert [c.step for c in run.checkpoints] == best
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == sorted(f"step-{s:07d}.pt" for s in best)
    # The validation figure is the whole split's, paired with the right rows: one process scoring each kept
    # checkpoint from the run folder gets the same mean AUROC.
    for checkpoint in run.checkpoints:
        alone = predict(dataclasses.replace(run, checkpoints=(checkpoint,)), store, split="valid")
        assert _mean_auroc(alone.studies, store) == pytest.approx(checkpoint.metric, abs=1e-9)
        assert validation.loc[validation["step"] == checkpoint.step, "mean_auroc"].item() == pytest.approx(checkpoint.metric, abs=1e-6)


_PREDICT = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from chexpert.train import predict

    dist.init_process_group("gloo")
    predict(sys.argv[1], sys.argv[2], split="valid").images.to_csv(f"{sys.argv[3]}/rank{dist.get_rank()}.csv", index=False)
    dist.destroy_process_group()
    """
)


def test_predict_under_a_process_group_scores_every_image_like_one_process(straight: Path, store: Store, tmp_path: Path) -> None:
    script = tmp_path / "predict.py"
    script.write_text(_PREDICT)
    _run(_torchrun(str(script), str(straight), str(store.path), str(tmp_path)))
    alone = predict(straight, store, split="valid").images
    assert len(alone) == int((store.index.split == schema.SPLITS.index("valid")).sum())
    for rank in range(2):
        under = pd.read_csv(tmp_path / f"rank{rank}.csv")
        assert under["Path"].tolist() == alone["Path"].tolist()
        # float32 scores; this process may use another thread count than the ranks (a last-bit difference)
        np.testing.assert_allclose(under.iloc[:, 1:].to_numpy(), alone.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-6)
    # The CLI from the run folder, one process: the same scores.
    cli = tmp_path / "cli.csv"
    _run([sys.executable, "-m", "chexpert", "predict", str(straight), str(store.path), "--out", str(cli)])
    np.testing.assert_allclose(pd.read_csv(cli).iloc[:, 1:].to_numpy(), alone.iloc[:, 1:].to_numpy(), atol=1e-6)


def _compare_runs(a: Path, b: Path) -> None:
    left, right = torch.load(a / "state.pt", weights_only=True), torch.load(b / "state.pt", weights_only=True)
    assert left["step"] == right["step"] == STEPS and left["kept"] == right["kept"]
    for name, tensor in right["model"].items():
        assert torch.equal(left["model"][name], tensor), name
    for slot, values in right["optimizer"]["state"].items():
        for key, tensor in values.items():
            assert torch.equal(left["optimizer"]["state"][slot][key], tensor), (slot, key)
    for name in ("log.csv", "validation.csv"):
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        columns = [c for c in y.columns if c not in ("images_per_second", "seconds")]
        pd.testing.assert_frame_equal(x[columns], y[columns])
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == sorted(p.name for p in (b / "checkpoints").iterdir())


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc: Linux, as torchrun's tests need)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def test_the_whole_group_killed_resumes_to_the_uninterrupted_state(straight: Path, store: Store, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    command = _torchrun(*_train_command(store, killed))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 300
    while not (killed / "state.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    # torchrun starts each rank in a session of its own, so a kill of the launcher's group misses them: kill
    # the launcher and every process under it at once, as a scheduler ending the job (its cgroup) does.
    for pid in [process.pid, *_descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    time.sleep(1)  # nothing of the run may still be writing
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    assert torch.load(killed / "state.pt", weights_only=True)["step"] < STEPS

    _run(command)  # the same command again
    _compare_runs(killed, straight)
    assert not list(killed.rglob("*.tmp"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def test_two_nodes_on_one_host_train_like_two_processes_on_one(straight: Path, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "two-nodes"
    port = _free_port()
    launches = [
        ("--nnodes", "2", f"--node_rank={node}", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=localhost:{port}",
         "--rdzv_id=chexpert-two-nodes", "--max_restarts=0")
        for node in (0, 1)
    ]  # fmt: skip
    processes = [
        subprocess.Popen(_torchrun(*_train_command(store, out), launch=launch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        for launch in launches
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, rank_failure(stderr)
    # A rank's batches and random streams are functions of its rank, not of the machine it runs on.
    assert open_run(out).identity["world_size"] == 2
    _compare_runs(out, straight)


def test_u_self_trained_labels_every_uncertain_image_once_in_order(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "self-trained"
    _run(_torchrun(*_train_command(store, out, "--policy", "chexpert-paper-best", "--max-steps", "4", "--checkpoint-every", "2")))
    soft = pd.read_csv(out / "soft-labels.csv")
    train = np.flatnonzero(store.index.split == schema.SPLITS.index("train"))
    column = schema.OBSERVATIONS.index("Consolidation")
    uncertain = train[store.index.labels[train, column] == schema.Code.UNCERTAIN]
    assert len(uncertain) % 2 == 1  # not a multiple of the world size: a padded share
    assert soft["Path"].tolist() == store.index.path[uncertain].tolist()
    # The labels are the stage model's own, row for row: one process scoring the same images agrees.
    stage = open_run(out / "u-ignore")
    alone = predict(stage, store, split="train").images.set_index("Path").loc[soft["Path"], "Consolidation"]
    np.testing.assert_allclose(soft["Consolidation"].to_numpy(), alone.to_numpy(), atol=1e-6)
    assert open_run(out).finished
