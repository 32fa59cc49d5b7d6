"""Two CPU processes under torchrun (gloo): disjoint shards that cover each epoch, in lockstep."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from chexpert.sampling import EpochSampler  # noqa: E402
from chexpert.store import Store  # noqa: E402
from tests.conftest import rank_failure  # noqa: E402

BATCH, SEED, EPOCHS = 4, 11, 2
SIZE = 32  # the size test_torch's store has: one store for both

_WORKER = textwrap.dedent(
    f"""
    import sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from chexpert.frameworks.torch import dataloader
    from chexpert.store import open_store

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    loader = dataloader(open_store(sys.argv[1]), batch_size={BATCH}, seed={SEED}, num_workers=1)
    for epoch in range({EPOCHS}):
        rows, steps = [], 0
        for batch in loader:
            # One collective per step, as a gradient all-reduce would: ranks must take the same steps.
            step = torch.tensor([1])
            dist.all_reduce(step)
            steps += int(step)
            rows.append(batch["row"].numpy())
        np.save(f"{{sys.argv[2]}}/rank{{rank}}-epoch{{epoch}}.npy", np.concatenate(rows))
        np.save(f"{{sys.argv[2]}}/rank{{rank}}-epoch{{epoch}}-steps.npy", np.array([len(rows), steps, len(loader)]))
    dist.destroy_process_group()
    """
)


@pytest.fixture(scope="module")
def store(small_release: Path, prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(small_release, size=SIZE)


def test_torchrun_ranks_get_disjoint_equal_shards_covering_every_epoch(store: Store, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(store.path), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, rank_failure(result.stderr)

    n = len(store)
    assert n % 2 == 1, "an odd row count exercises the wrap-around padding"
    per_rank = (n + 1) // 2
    batches = -(-per_rank // BATCH)
    orders = []
    for epoch in range(EPOCHS):
        shards = [np.load(out / f"rank{r}-epoch{epoch}.npy") for r in range(2)]
        steps = [np.load(out / f"rank{r}-epoch{epoch}-steps.npy").tolist() for r in range(2)]
        # Identical step counts: batches seen, steps all-reduced (2 per step when both took it), len(loader).
        assert steps[0] == steps[1] == [batches, 2 * batches, batches]
        assert len(shards[0]) == len(shards[1]) == per_rank
        # Coverage, and disjointness apart from the one padding row (wrapped from the epoch's start).
        assert set(shards[0]) | set(shards[1]) == set(range(n))
        assert len(set(shards[0]) & set(shards[1])) == 1
        # Exactly the order EpochSampler gives each rank.
        for r in range(2):
            expected = np.concatenate(list(EpochSampler(n, BATCH, seed=SEED, rank=r, world_size=2).batches(epoch)))
            np.testing.assert_array_equal(shards[r], expected)
        orders.append(np.concatenate(shards))
    assert orders[0].tolist() != orders[1].tolist(), "each epoch is reshuffled"
