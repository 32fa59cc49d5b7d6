"""The NumPy/JAX iterator: same batches as the torch loader, channels-last arrays, JAX sharding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from chexpert import schema
from chexpert.frameworks.numpy import NumpyLoader, StoreArrays, jax_rank
from chexpert.policy import apply
from chexpert.sampling import EpochSampler
from chexpert.store import Store

SIZE = 32  # the size test_torch's store has: one store for both


@pytest.fixture(scope="module")
def store(small_release: Path, prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(small_release, size=SIZE)


def test_batches_follow_the_epoch_sampler_and_hold_the_stored_values(store: Store) -> None:
    loader = NumpyLoader(store, batch_size=10, seed=4, policy="u-multiclass")
    expected = apply("u-multiclass", store.index)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(store) // 10)
    sampler = EpochSampler(len(store), 10, seed=4)
    assert expected.classes is not None
    for batch, rows in zip(batches, sampler.batches(0), strict=True):
        assert batch["row"].tolist() == rows.tolist()
        assert batch["image"].shape == (len(rows), SIZE, SIZE, 1) and batch["image"].dtype == np.uint8
        np.testing.assert_array_equal(batch["image"][..., 0], store.images[rows])
        np.testing.assert_array_equal(batch["targets"], expected.targets[rows])
        np.testing.assert_array_equal(batch["mask"], expected.mask[rows])
        np.testing.assert_array_equal(batch["classes"], expected.classes[rows])
    # The next pass is epoch 1; set_epoch returns to 0.
    assert [b["row"].tolist() for b in loader] == [r.tolist() for r in sampler.batches(1)]
    loader.set_epoch(0)
    assert [b["row"].tolist() for b in loader] == [b["row"].tolist() for b in batches]


def test_same_batches_as_the_torch_loader(store: Store) -> None:
    pytest.importorskip("torch")
    from chexpert.frameworks.torch import dataloader

    ours = [b["row"].tolist() for b in NumpyLoader(store, batch_size=7, seed=9, rank=1, world_size=2)]
    theirs = [b["row"].tolist() for b in dataloader(store, batch_size=7, seed=9, rank=1, world_size=2)]
    assert ours == theirs


def test_jax_processes_shard_and_arrays_go_to_the_device(store: Store) -> None:
    jax = pytest.importorskip("jax")
    assert jax_rank() == (jax.process_index(), jax.process_count()) == (0, 1)
    loader = NumpyLoader(store, batch_size=16, jax_process=True)
    assert loader.sampler.rank == 0 and loader.sampler.world_size == 1
    batch = next(iter(loader))
    on_device = jax.device_put(batch["image"])
    assert on_device.shape == batch["image"].shape and on_device.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(on_device), batch["image"])
    with pytest.raises(ValueError, match="not both"):
        NumpyLoader(store, jax_process=True, rank=0, world_size=1)


def test_a_selection_and_a_shared_store_arrays(store: Store) -> None:
    frontal = np.flatnonzero(store.index.frontal)
    arrays = StoreArrays(store, rows=store.index.frontal, policy="u-zeros")
    rows = np.concatenate([b["row"] for b in NumpyLoader(arrays, batch_size=8)])
    assert sorted(rows.tolist()) == frontal.tolist()
    with pytest.raises(ValueError, match="belong to the StoreArrays"):
        NumpyLoader(arrays, rows=frontal)
    with pytest.raises(ValueError, match="boolean rows has"):
        StoreArrays(store, rows=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="give both rank and world_size"):
        NumpyLoader(store, rank=0)


def test_a_split_and_class_balanced_epochs_like_the_torch_loader(store: Store) -> None:
    import chexpert

    pytest.importorskip("torch")
    from chexpert.frameworks.torch import dataloader

    deduplicated = chexpert.deduplicate(store.index)  # one frontal image per study, an Index as well
    parts = chexpert.split_patients(deduplicated, {"train": 0.5, "valid": 0.5}, seed=1)
    kwargs = {"batch_size": 5, "seed": 2, "rows": parts["train"], "policy": "u-zeros"}
    ours = [b["row"].tolist() for b in NumpyLoader(store, **kwargs)]
    assert sorted(sum(ours, [])) == sorted(np.flatnonzero(np.isin(store.index.path, parts["train"].path)).tolist())
    assert ours == [b["row"].tolist() for b in dataloader(store, **kwargs)]
    observation = next(o for o in schema.OBSERVATIONS if 0 < apply("u-zeros", parts["train"]).positive(o).sum() < len(parts["train"]))
    balanced = NumpyLoader(store, balance=[observation, "No Finding"] if observation != "No Finding" else observation, **kwargs)
    torch_balanced = dataloader(store, balance=[observation, "No Finding"] if observation != "No Finding" else observation, **kwargs)
    for _ in range(3):
        assert [b["row"].tolist() for b in balanced] == [b["row"].tolist() for b in torch_balanced]
