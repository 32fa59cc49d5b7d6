"""``chexpert train`` under torchrun: two CPU processes on gloo, rank sharding of the store, one writer, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import pandas as pd  # noqa: E402

from chexpert.errors import RunError  # noqa: E402
from chexpert.sampling import EpochSampler  # noqa: E402
from chexpert.store import Store  # noqa: E402
from chexpert.train import get_recipe, open_run, train  # noqa: E402
from tests.conftest import rank_failure  # noqa: E402

SIZE = 32
pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")
OPTIONS = ("--recipe", "demo", "--size", str(SIZE), "--batch-size", "4", "--max-steps", "6", "--checkpoint-every", "3",
           "--log-every", "1", "--workers", "1", "--quiet")  # fmt: skip


@pytest.fixture(scope="module")
def store(small_release: Path, prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(small_release, size=SIZE)


def _torchrun(store: Store, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "chexpert",
               "train", str(store.path), "--out", str(out), *OPTIONS]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1"))


def test_two_ranks_train_their_shards_and_rank_zero_alone_writes(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _torchrun(store, out)
    assert result.returncode == 0, rank_failure(result.stderr)
    assert result.stdout.count(f"{out}: 6 steps") == 1, result.stdout  # one final line: rank 0's
    identity = json.loads((out / "run.json").read_text())
    assert identity["world_size"] == 2
    run = open_run(out)
    assert run.finished and run.summary()["steps"] == 6
    # Each rank read its own shard (EpochSampler's, of equal length on both): the images counted are twice rank 0's.
    sampler = EpochSampler(int((store.index.split == 0).sum()), 4, seed=0, rank=0, world_size=2)
    sizes = [len(b) for epoch in range(3) for b in sampler.batches(epoch)][:6]
    assert run.summary()["images"] == 2 * sum(sizes)
    log = pd.read_csv(out / "log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6]  # written once, not once per rank
    state = torch.load(out / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2  # every rank's RNG state, to resume each
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000003.pt", "step-0000006.pt"]

    # The same command again: the finished run is returned as it is.
    again = _torchrun(store, out)
    assert again.returncode == 0, rank_failure(again.stderr)
    assert torch.equal(torch.load(out / "state.pt", weights_only=True)["model"]["classifier.weight"], state["model"]["classifier.weight"])

    # One process cannot continue a two-process run: its shards and steps would differ.
    recipe = get_recipe("demo").replace(size=SIZE, batch_size=4, max_steps=6, checkpoint_every=3, log_every=1)
    with pytest.raises(RunError, match="world_size was 2, now 1"):
        train(store, out, recipe)
