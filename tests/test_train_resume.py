"""A real ``chexpert train`` killed with SIGKILL mid-epoch, resumed, ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import pandas as pd  # noqa: E402

from chexpert.store import Store  # noqa: E402
from chexpert.train import open_run  # noqa: E402

SIZE = 32
pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")
# 8 images a step; checkpoints every 5 steps fall mid-epoch (the epoch has more steps and 5 does not divide it).
OPTIONS = ("--recipe", "demo", "--size", str(SIZE), "--batch-size", "8", "--epochs", "3", "--checkpoint-every", "5",
           "--keep-best", "2", "--log-every", "1", "--seed", "5", "--deterministic", "--workers", "0", "--quiet")  # fmt: skip


@pytest.fixture(scope="module")
def store(look_alike: Callable[..., Path], prepared_store: Callable[..., Store]) -> Store:
    # Not TRAIN_LOOK_ALIKE: three runs of three epochs here, and this look-alike has fewer train images (81).
    return prepared_store(look_alike(patients=40, valid_patients=8, seed=2), size=SIZE)


def _command(store: Store, out: Path) -> list[str]:
    return [sys.executable, "-m", "chexpert", "train", str(store.path), "--out", str(out), *OPTIONS]


def _env() -> dict[str, str]:
    # The same thread count for every run: CPU kernels are deterministic for a given one.
    return dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(store: Store, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(store, killed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    first_checkpoint = killed / "state.pt"  # written at step 5, after the weights
    deadline = time.monotonic() + 300
    while not first_checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    state = torch.load(killed / "state.pt", weights_only=True)
    steps_per_epoch = -(-int((store.index.split == 0).sum()) // 8)
    assert state["step"] % steps_per_epoch != 0 and state["batch"] != 0, "killed at an epoch boundary, not mid-epoch"
    log_before = pd.read_csv(killed / "log.csv")
    assert log_before["step"].max() >= state["step"]

    resumed = subprocess.run(_command(store, killed), capture_output=True, text=True, env=_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = tmp_path / "straight"
    uninterrupted = subprocess.run(_command(store, straight), capture_output=True, text=True, env=_env(), timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]

    a, b = torch.load(killed / "state.pt", weights_only=True), torch.load(straight / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 3 * steps_per_epoch and a["kept"] == b["kept"]
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
    for slot, values in b["optimizer"]["state"].items():
        for key, tensor in values.items():
            assert torch.equal(a["optimizer"]["state"][slot][key], tensor), (slot, key)
    for run in (open_run(killed), open_run(straight)):
        assert [c.step for c in run.checkpoints] == [s for s, _ in b["kept"]]
    for name in ("log.csv", "validation.csv"):
        left, right = pd.read_csv(killed / name), pd.read_csv(straight / name)
        columns = [c for c in right.columns if c not in ("images_per_second", "seconds")]
        pd.testing.assert_frame_equal(left[columns], right[columns])
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == sorted(p.name for p in (straight / "checkpoints").iterdir())
    assert not [p for p in killed.rglob("*.tmp")]
