"""PyTorch loaders: values, batch gathering, determinism across workers, spawn, worker memory."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
psutil = pytest.importorskip("psutil")

from torch.utils.data import DataLoader, SequentialSampler  # noqa: E402

from chexpert import schema  # noqa: E402
from chexpert.frameworks.torch import EpochBatchSampler, JPEGDataset, StoreDataset, dataloader, resolve_rank  # noqa: E402
from chexpert.index import read_csv  # noqa: E402
from chexpert.policy import Policy, apply  # noqa: E402
from chexpert.release import open_release  # noqa: E402
from chexpert.store import Store, prepare  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def store(small_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return prepare(small_release, tmp_path_factory.mktemp("torch") / "store", size=SIZE)


def epoch(loader: DataLoader) -> list[dict[str, torch.Tensor]]:
    return list(loader)


@pytest.mark.parametrize("policy", ["u-ones", "u-multiclass", Policy(uncertain="zeros", blank="ignore", observations=("Edema", "Atelectasis"))])
def test_items_hold_the_stored_pixels_and_the_policys_targets(store: Store, policy: str | Policy) -> None:
    dataset = StoreDataset(store, policy=policy)
    expected = apply(policy, store.index)
    assert len(dataset) == len(store) and dataset.observations == expected.observations
    for i in (0, 5, len(store) - 1, -1):
        item = dataset[i]
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (1, SIZE, SIZE)
        np.testing.assert_array_equal(item["image"][0].numpy(), store.images[i])
        np.testing.assert_array_equal(item["targets"].numpy(), expected.targets[i])
        np.testing.assert_array_equal(item["mask"].numpy(), expected.mask[i])
        assert item["row"].item() == i % len(store)
        if expected.classes is not None:
            np.testing.assert_array_equal(item["classes"].numpy(), expected.classes[i])
        else:
            assert "classes" not in item
    with pytest.raises(IndexError):
        dataset[len(store)]


def test_a_batch_is_one_sorted_gather_with_aligned_targets(store: Store) -> None:
    dataset = StoreDataset(store, policy="u-zeros")
    targets = apply("u-zeros", store.index).targets
    batch = dataset.batch(np.array([9, 2, 30, 4]))
    assert batch["row"].tolist() == [2, 4, 9, 30]
    assert batch["image"].shape == (4, 1, SIZE, SIZE)
    np.testing.assert_array_equal(batch["image"][:, 0].numpy(), store.images[[2, 4, 9, 30]])
    np.testing.assert_array_equal(batch["targets"].numpy(), targets[[2, 4, 9, 30]])


def test_dataloader_batches_do_not_depend_on_the_number_of_workers(store: Store) -> None:
    serial = dataloader(store, batch_size=8, seed=3, policy="u-ones")
    parallel = dataloader(store, batch_size=8, seed=3, policy="u-ones", num_workers=2)
    first, again = epoch(serial), epoch(serial)
    assert len(first) == len(serial) == -(-len(store) // 8)
    for a, b in zip(first, epoch(parallel), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    rows = torch.cat([b["row"] for b in first]).numpy()
    assert sorted(rows.tolist()) == list(range(len(store)))
    for b in first:
        np.testing.assert_array_equal(b["image"][:, 0].numpy(), store.images[b["row"].numpy()])
    # Each pass is the next epoch; set_epoch goes back.
    assert torch.cat([b["row"] for b in again]).tolist() != rows.tolist()
    serial.sampler.set_epoch(0)
    assert torch.cat([b["row"] for b in epoch(serial)]).tolist() == rows.tolist()


def test_rank_and_world_size_shard_the_loader(store: Store) -> None:
    shards = [torch.cat([b["row"] for b in dataloader(store, batch_size=4, rank=r, world_size=3)]).tolist() for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-len(store) // 3)
    assert set().union(*shards) == set(range(len(store)))
    assert resolve_rank() == (0, 1) and resolve_rank(2, 4) == (2, 4)
    with pytest.raises(ValueError, match="give both rank and world_size"):
        resolve_rank(rank=1)
    assert len(EpochBatchSampler(100, 16, rank=0, world_size=2)) == 4


def test_default_dataloader_batching_keeps_the_order_asked_for(store: Store) -> None:
    dataset = StoreDataset(store)

    class Backwards(SequentialSampler):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(range(len(self.data_source) - 1, -1, -1))

    batch = next(iter(DataLoader(dataset, batch_size=6, sampler=Backwards(dataset))))
    n = len(store)
    assert batch["row"].tolist() == list(range(n - 1, n - 7, -1))
    np.testing.assert_array_equal(batch["image"][:, 0].numpy(), store.images[n - 1 : n - 7 : -1])


def test_a_row_selection_is_what_the_dataset_serves(store: Store) -> None:
    frontal = StoreDataset(store, rows=store.index.frontal)
    assert len(frontal) == int(store.index.frontal.sum())
    rows = torch.cat([b["row"] for b in dataloader(frontal, batch_size=5)]).numpy()
    assert sorted(rows.tolist()) == np.flatnonzero(store.index.frontal).tolist()
    with pytest.raises(ValueError, match="rows must be in"):
        StoreDataset(store, rows=np.array([len(store)]))


def test_pickling_carries_no_pixels_and_spawned_workers_reopen_the_store(store: Store) -> None:
    dataset = StoreDataset(store)
    assert len(pickle.dumps(dataset)) < store.images.nbytes / 4
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone.batch(np.arange(5))["image"], dataset.batch(np.arange(5))["image"])
    spawned = dataloader(store, batch_size=16, seed=1, num_workers=1, multiprocessing_context="spawn")
    forked = dataloader(store, batch_size=16, seed=1)
    for a, b in zip(spawned, forked, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["row"], b["row"])


def test_jpeg_dataset_decodes_what_prepare_stores(small_release: Path, store: Store) -> None:
    dataset = JPEGDataset(small_release, size=SIZE, policy="u-ones")
    assert len(dataset) == len(store)
    targets = apply("u-ones", store.index).targets
    for i in (0, 11, len(store) - 1):
        item = dataset[i]
        np.testing.assert_array_equal(item["image"][0].numpy(), store.images[i])
        np.testing.assert_array_equal(item["targets"].numpy(), targets[i])
    batches = list(DataLoader(dataset, batch_size=16, num_workers=2))
    assert torch.cat([b["row"] for b in batches]).tolist() == list(range(len(store)))
    np.testing.assert_array_equal(torch.cat([b["image"] for b in batches])[:, 0].numpy(), np.asarray(store.images))
    fast = list(dataloader(dataset, batch_size=16, shuffle=False))
    assert torch.equal(torch.cat([b["image"] for b in fast]), torch.cat([b["image"] for b in batches]))

    release = open_release(small_release)
    valid = JPEGDataset(release.index("valid"), size=SIZE)
    assert len(valid) == int((store.index.split == schema.SPLITS.index("valid")).sum())
    with pytest.raises(ValueError, match="resize must be one of pad, crop, squash"):
        JPEGDataset(release, resize="fit")
    with pytest.raises(ValueError, match="not bound to a release"):
        JPEGDataset(release.index("valid").with_release(None))


# -- worker memory -----------------------------------------------------------------------------


def _private_dirty() -> int:
    """Bytes this process has written to (copied-on-write or allocated): what it does not share."""
    return sum(m.private_dirty for m in psutil.Process().memory_maps(grouped=True))


class _Measured(StoreDataset):
    """Adds the worker's private memory to each batch (measured after the gather)."""

    def batch(self, positions):  # type: ignore[no-untyped-def]
        batch = super().batch(positions)
        batch["private"] = torch.tensor(_private_dirty())
        return batch


class _PerRowObjects(_Measured):
    """A control that keeps a Python object per row, as pandas-based loaders do."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.paths = [f"{i:08d}" * 4 for i in range(len(self))]

    def batch(self, positions):  # type: ignore[no-untyped-def]
        sum(len(p) for p in self.paths)  # touching each object writes its reference count
        return super().batch(positions)


def _worker_private(dataset: StoreDataset) -> int:
    """The most private memory a forked worker holds over 16 batches."""
    loader = dataloader(dataset, batch_size=64, seed=0, num_workers=1, multiprocessing_context="fork")
    return max(int(b["private"]) for _, b in zip(range(16), loader))


@pytest.mark.skipif(not hasattr(psutil.Process(), "memory_maps"), reason="needs per-mapping memory figures (Linux)")
def test_worker_memory_does_not_grow_with_the_number_of_rows(real_train_csv: Path, tmp_path: Path) -> None:
    index = read_csv(real_train_csv)
    stores = {}
    for n in (2_000, len(index)):
        folder = tmp_path / str(n)
        folder.mkdir()
        # A sparse file: pixels are not what this measures (they are file-backed and shared).
        images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, 8, 8))
        del images
        images = np.load(folder / "images.npy", mmap_mode="r")
        stores[n] = Store(folder, images, index.take(np.arange(n)), {}, 8, "pad")
    small, large = (_worker_private(_Measured(stores[n], policy="u-ones")) for n in sorted(stores))
    arrays = _Measured(stores[len(index)], policy="u-ones").arrays
    shared = arrays.targets.nbytes + arrays.mask.nbytes + arrays.rows.nbytes
    assert shared > 10 * 2**20
    # A worker holds as much of its own memory whatever the row count: the per-row arrays are shared.
    assert large - small < 4 * 2**20, (small, large)
    # The measurement does see per-row Python objects (so the bound above can fail).
    control = _worker_private(_PerRowObjects(stores[len(index)], policy="u-ones"))
    assert control - small > 8 * 2**20, (small, control)
