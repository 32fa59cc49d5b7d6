"""PyTorch loaders: values, batch gathering, determinism across workers, spawn, worker memory."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    import torch
else:
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
def store(small_release: Path, prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(small_release, size=SIZE)


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
    assert isinstance(serial.sampler, EpochBatchSampler)
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
        def __iter__(self):
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

    def batch(self, positions):
        batch = super().batch(positions)
        batch["private"] = torch.tensor(_private_dirty())
        return batch


class _PerRowObjects(_Measured):
    """A control that keeps a Python object per row, as pandas-based loaders do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paths = [f"{i:08d}" * 4 for i in range(len(self))]

    def batch(self, positions):
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


# -- from a split to a loader ------------------------------------------------------------------


def test_a_split_goes_straight_into_every_store_loader(store: Store, small_release: Path) -> None:
    import chexpert
    from chexpert.frameworks.numpy import NumpyLoader, StoreArrays, store_rows

    parts = chexpert.split_patients(store.index, {"train": 0.7, "valid": 0.3}, seed=2)
    expected = {name: np.flatnonzero(np.isin(store.index.path, part.path)) for name, part in parts.items()}
    for name, part in parts.items():
        rows = torch.cat([b["row"] for b in dataloader(store, batch_size=4, rows=part, policy="u-ones")]).numpy()
        assert sorted(rows.tolist()) == expected[name].tolist()
        numpy_rows = np.concatenate([b["row"] for b in NumpyLoader(store, batch_size=4, rows=part)])
        assert sorted(numpy_rows.tolist()) == expected[name].tolist()
        assert StoreDataset(store, rows=part).arrays.rows.tolist() == StoreArrays(store, rows=part).rows.tolist()
    # A split of the release's index also makes a JPEGDataset (decoding from the release).
    release_parts = chexpert.split_patients(open_release(small_release).index(), {"train": 0.7, "valid": 0.3}, seed=2)
    jpeg = JPEGDataset(release_parts["valid"], size=SIZE)
    np.testing.assert_array_equal(jpeg[0]["image"][0].numpy(), store.images[store_rows(store, release_parts["valid"])[0]])
    with pytest.raises(ValueError, match="a dataset brings its own"):
        dataloader(jpeg, rows=release_parts["valid"])
    # An Index keeps its order, repeats included, and targets follow the store's labels of each row.
    picked = store.index.take([5, 2, 5])
    dataset = StoreDataset(store, rows=picked, policy="u-zeros")
    assert dataset.arrays.rows.tolist() == [5, 2, 5]
    np.testing.assert_array_equal(dataset[0]["targets"].numpy(), apply("u-zeros", store.index).targets[5])


def test_an_index_from_the_csv_of_another_release_kind_matches_by_image(store: Store, small_release: Path) -> None:
    # The full release's CSV names the same images under CheXpert-v1.0/: they are the same rows.
    from chexpert.index import ROW_FIELDS, Index

    valid = open_release(small_release).index("valid")
    renamed = np.strings.replace(valid.path, "CheXpert-v1.0-small/", "CheXpert-v1.0/")
    full = Index(**{name: getattr(valid, name) for name in ROW_FIELDS if name != "path"}, path=renamed)
    rows = StoreDataset(store, rows=full).arrays.rows
    np.testing.assert_array_equal(store.index.path[rows], valid.path)


def test_rows_missing_from_the_store_or_labelled_otherwise_are_errors_naming_them(store: Store, small_release: Path, tmp_path: Path) -> None:
    import chexpert
    from chexpert.errors import InvalidArgumentError

    valid_only = prepare(small_release, tmp_path / "valid-only", size=SIZE, splits="valid")
    train = open_release(small_release).index("train")
    with pytest.raises(InvalidArgumentError, match=rf"{len(train)} of the {len(train)} images selected are not in the store .*valid-only: {train.path[0]}, "):
        dataloader(valid_only, rows=train)
    # A store prepared from other labels: the selection's labels are not what it would train on.
    relabelled = chexpert.Index(
        **{name: getattr(store.index, name) for name in ("path", "split", "patient", "study", "view", "frontal", "projection", "sex", "age")},
        labels=store.index.labels.copy(),
    )
    relabelled.labels[3, 5] = 1 if relabelled.labels[3, 5] != 1 else 0
    with pytest.raises(InvalidArgumentError, match=rf"1 of the images selected have other raw labels .*first {relabelled.path[3]}, 'Edema'"):
        StoreDataset(store, rows=relabelled)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 workers on a 2-core runner
def test_the_readme_split_to_loader_snippet_runs_as_written(small_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### From a split to a loader", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "split_patients" in snippet and "dataloader(" in snippet and "augment(" in snippet
    assert snippet.count('"~/data/CheXpert-v1.0-small.zip"') == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}  # whatever the README snippet defines
    exec(compile(snippet.replace('"~/data/CheXpert-v1.0-small.zip"', repr(str(small_release))), "README.md", "exec"), namespace)
    loader, parts, store = namespace["loader"], namespace["parts"], namespace["store"]
    seen = torch.cat([b["row"] for b in loader]).numpy()
    assert sorted(store.index.path[seen].tolist()) == sorted(parts["train"].path.tolist())
    x = namespace["x"]
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 288, 288)
    assert namespace["counted"].dtype == torch.bool


# -- class-balanced epochs ---------------------------------------------------------------------


def test_balanced_epochs_draw_positives_and_the_rest_equally_often_per_seed_and_epoch(store: Store) -> None:
    targets = apply("u-ones", store.index)
    observation = next(o for o in targets.observations if 0 < targets.positive(o).sum() < len(store) // 4)
    positive = targets.positive(observation)[:, 0]
    loader = dataloader(store, batch_size=8, seed=3, policy="u-ones", balance=observation)
    drawn = [torch.cat([b["row"] for b in loader]).numpy() for _ in range(40)]  # each pass is the next epoch
    assert all(len(rows) == len(store) for rows in drawn)  # as many rows as a plain epoch
    assert not np.array_equal(drawn[0], drawn[1])
    share = positive[np.concatenate(drawn)].mean()
    assert abs(share - 0.5) < 0.06, (share, positive.mean())  # the natural share is under 0.25
    # The same rows for a seed and epoch, whatever the number of workers.
    parallel = dataloader(store, batch_size=8, seed=3, policy="u-ones", balance=observation, num_workers=2)
    assert isinstance(parallel.sampler, EpochBatchSampler)
    parallel.sampler.set_epoch(1)
    np.testing.assert_array_equal(torch.cat([b["row"] for b in parallel]).numpy(), drawn[1])
    with pytest.raises(ValueError, match=rf"balance= needs positives .*{observation} 0 positive of"):
        dataloader(store, batch_size=8, rows=np.flatnonzero(~positive), policy="u-ones", balance=observation)


def test_the_batch_sampler_resumes_an_epoch_at_a_batch() -> None:
    sampler = EpochBatchSampler(23, batch_size=4, seed=3)
    full = [b.tolist() for b in sampler.sampler.batches(1)]
    sampler.set_epoch(1, start=2)
    assert [b.tolist() for b in sampler] == full[2:]
    assert [b.tolist() for b in sampler] == [b.tolist() for b in sampler.sampler.batches(2)]
