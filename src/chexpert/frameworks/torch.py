"""PyTorch Datasets and a batch-at-a-time DataLoader for CheXpert.

- :class:`StoreDataset`: map-style, over a prepared store (uint8 pixels, memory-mapped);
- :class:`JPEGDataset`: map-style, decoding each image from the release (no preparation needed);
- :func:`dataloader`: a ``torch.utils.data.DataLoader`` whose every step fetches a whole batch
  with :meth:`StoreDataset.batch`, one sorted gather from the memory map, in the order of
  :class:`~chexpert.sampling.EpochSampler` (deterministic per seed and epoch, whatever
  ``num_workers``), sharded by rank.

Samples and batches are dicts: ``image`` uint8 (1, H, W) / (B, 1, H, W), ``targets`` float32,
``mask`` bool (which targets count in the loss), ``row`` (the store or index row) and, for
U-MultiClass columns, ``classes`` int64. Pixels stay uint8 until they reach the device; turn them
into floats there with :mod:`chexpert.augment`.

>>> from chexpert import open_store
>>> loader = dataloader(open_store("chexpert-320"), batch_size=64, policy="u-ones", num_workers=4)
>>> len(loader)  # batches per epoch; the loop below needs a GPU, so it is not run as a doctest
2
>>> for epoch in range(3):  # doctest: +SKIP
...     for batch in loader:  # each pass is the next epoch
...         x = augment(batch["image"].to("cuda", non_blocking=True))
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed
from torch.utils.data import DataLoader, Dataset, Sampler

from chexpert.discover import open_dataset as open_release
from chexpert.errors import InvalidArgumentError
from chexpert.frameworks.numpy import StoreArrays, balance_weights
from chexpert.imaging import RESIZE_MODES, decode_resized, one_thread_per_worker
from chexpert.index import Index
from chexpert.policy import Policy, SoftLabels, apply
from chexpert.release import Release
from chexpert.sampling import EpochPasses, EpochSampler, shard_of
from chexpert.store import Store
from chexpert.validation import check_choice, check_int

__all__ = ["StoreDataset", "JPEGDataset", "EpochBatchSampler", "dataloader", "resolve_rank"]


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` as given, else from an initialised ``torch.distributed``, else (0, 1).

    >>> resolve_rank()
    (0, 1)
    """
    if rank is None and world_size is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return shard_of(rank, world_size)


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}


class StoreDataset(Dataset[dict[str, torch.Tensor]]):
    """A prepared store as a map-style Dataset: item i is store row ``rows[i]`` (default: row i).

    ``rows`` takes store row numbers, a boolean mask, or an Index: a selection or a split of the
    store's images (``chexpert.split_patients(...)["train"]``), matched by image path (see
    :func:`~chexpert.frameworks.numpy.store_rows`).

    Targets follow ``policy`` (a name from ``chexpert.policy.PRESETS`` or a Policy), computed
    once for all rows. Indexing one item works with any sampler; :func:`dataloader` instead calls
    :meth:`batch`, which reads a whole batch with one gather.

    >>> dataset = StoreDataset(store, policy="u-zeros")
    >>> dataset[0]["image"].shape, dataset[0]["image"].dtype
    (torch.Size([1, 320, 320]), torch.uint8)
    """

    def __init__(
        self,
        store: Store,
        *,
        policy: str | Policy = "u-ignore",
        rows: np.ndarray | Sequence[int] | Index | None = None,
        soft_labels: SoftLabels | None = None,
    ) -> None:
        self.arrays = StoreArrays(store, policy=policy, rows=rows, soft_labels=soft_labels)
        self.observations = self.arrays.observations

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        batch = self.batch(np.array([i % n]))
        return {key: value[0] for key, value in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        # Called by DataLoader's default batching: still one gather, then split into samples.
        positions = np.asarray(indices, dtype=np.int64)
        batch = self.batch(positions)
        # batch() sorts by row; put the samples back in the order asked for.
        where = np.argsort(np.argsort(self.arrays.rows[positions], kind="stable"), kind="stable")
        return [{key: value[j] for key, value in batch.items()} for j in where]

    def batch(self, positions: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``positions`` as one batch (in ascending store row order): see :meth:`StoreArrays.batch`."""
        batch = self.arrays.batch(np.asarray(positions, dtype=np.int64))
        batch["image"] = batch["image"][:, None]
        return _tensors(batch)


class JPEGDataset(Dataset[dict[str, torch.Tensor]]):
    """Images decoded from the release on each access, for users who do not prepare a store.

    ``source`` is a Release, a path ``chexpert.open`` accepts, or an Index bound to a release
    (a selection). JPEGs are downscaled while decoding (libjpeg-turbo DCT scaling) and resized
    to ``size`` x ``size`` with ``resize`` ("pad", "crop" or "squash"). Items are dicts as
    :class:`StoreDataset` gives; ``row`` is the index row.

    >>> dataset = JPEGDataset("~/data/CheXpert-v1.0-small", size=224, splits="valid")
    >>> len(dataset), dataset[0]["image"].shape
    (77, torch.Size([1, 224, 224]))
    >>> loader = DataLoader(dataset, batch_size=32, num_workers=8)
    """

    def __init__(
        self,
        source: Release | Index | str | os.PathLike[str],
        *,
        size: int = 224,
        resize: str = "pad",
        splits: str | Sequence[str] | None = None,
        policy: str | Policy = "u-ignore",
        soft_labels: SoftLabels | None = None,
    ) -> None:
        check_choice("resize", resize, RESIZE_MODES)
        check_int("size", size, low=1)
        if isinstance(source, Index):
            if splits is not None:
                raise InvalidArgumentError("give splits or an Index, not both")
            if source.release is None:
                raise InvalidArgumentError(
                    "the Index is not bound to a release, so its images cannot be read; make it with release.index() or index.with_release(release)"
                )
            index = source
        else:
            release = source if isinstance(source, Release) else open_release(source)
            index = release.index(splits)
        targets = apply(policy, index, soft_labels=soft_labels)
        self.policy_targets = targets
        self.release: Release = index.release  # type: ignore[assignment]
        self.paths = index.path
        self.size, self.resize = size, resize
        self.observations = targets.observations
        self.targets, self.mask, self.classes = targets.targets, targets.mask, targets.classes

    def __len__(self) -> int:
        return len(self.paths)

    def _pixels(self, i: int) -> np.ndarray:
        path = str(self.paths[i])
        return decode_resized(self.release.read_bytes(path), self.size, self.resize, file=path)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i %= n
        sample = {
            "image": torch.from_numpy(self._pixels(i)[None]),
            "targets": torch.from_numpy(self.targets[i]),
            "mask": torch.from_numpy(self.mask[i]),
            "row": torch.tensor(i, dtype=torch.int64),
        }
        if self.classes is not None:
            sample["classes"] = torch.from_numpy(self.classes[i])
        return sample

    def batch(self, positions: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``positions`` decoded into one batch, in the order given."""
        positions = np.asarray(positions, dtype=np.int64)
        images = np.empty((len(positions), 1, self.size, self.size), dtype=np.uint8)
        for j, i in enumerate(positions.tolist()):
            images[j, 0] = self._pixels(i)
        batch = {"image": images, "targets": self.targets[positions], "mask": self.mask[positions], "row": positions}
        if self.classes is not None:
            batch["classes"] = self.classes[positions]
        return _tensors(batch)


class EpochBatchSampler(Sampler[np.ndarray], EpochPasses):
    """A torch Sampler yielding this rank's batches (int64 arrays of item positions).

    Each pass is the next epoch, starting at 0; ``set_epoch(e)`` chooses the epoch of the next
    pass (as with DistributedSampler, e.g. after resuming from a checkpoint) and, with ``start``,
    the batch it begins at (resuming mid-epoch). Rank and world size
    come from the arguments or ``torch.distributed``. Shards are disjoint and of equal length; to
    make them equal, the epoch is padded by wrapping around to a multiple of the world size
    (``drop_last`` cuts instead), exactly as ``DistributedSampler`` does. ``weights`` draws each
    epoch with replacement in proportion to them (see :class:`~chexpert.sampling.EpochSampler`).

    >>> sampler = EpochBatchSampler(1000, batch_size=64, seed=0, rank=1, world_size=4)
    >>> len(sampler)
    4
    """

    def __init__(
        self,
        rows: int | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        rank, world_size = resolve_rank(rank, world_size)
        EpochPasses.__init__(
            self,
            EpochSampler(rows, batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last, weights=weights),
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        # A generator, so that the epoch advances when batches are drawn, not when an iterator
        # is made: DataLoader with workers makes (and drops) one more than it uses.
        epoch, start = self.next_pass()
        yield from self.sampler.batches(epoch, start=start)


class _Batches(Dataset[dict[str, torch.Tensor]]):
    """Indexing by a whole batch of positions: what DataLoader calls when batch_size=None."""

    def __init__(self, dataset: StoreDataset | JPEGDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, positions: np.ndarray) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.dataset.batch(positions)


def _as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def dataloader(
    data: Store | StoreDataset | JPEGDataset,
    batch_size: int = 64,
    *,
    policy: str | Policy = "u-ignore",
    rows: np.ndarray | Sequence[int] | Index | None = None,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    multiprocessing_context: Any = None,
    balance: str | Sequence[str] | None = None,
) -> DataLoader[dict[str, torch.Tensor]]:
    """A DataLoader over a store (or a dataset) that fetches each batch in one call.

    ``policy`` and ``rows`` apply when ``data`` is a Store: ``rows`` selects store rows by number,
    boolean mask, or an Index such as a split (matched by image path), so a split goes straight in::

        parts = chexpert.split_patients(store.index, seed=0)
        loader = dataloader(store, rows=parts["train"], policy="u-ones")

    The
    loader's sampler is an :class:`EpochBatchSampler` (``loader.batch_sampler`` is None; reach it
    as ``loader.sampler``): batches are the same for a seed and epoch whatever ``num_workers``,
    and each pass over the loader is the next epoch. ``balance`` (an observation, or several)
    makes each epoch class-balanced: as many rows, drawn with replacement so that the positives
    and the other rows of each observation named come equally often (see
    :func:`~chexpert.frameworks.numpy.balance_weights`), the same for a seed and epoch.

    >>> loader = dataloader(store, batch_size=64, num_workers=4, pin_memory=True)
    >>> balanced = dataloader(store, batch_size=64, policy="u-ones", balance="Pneumothorax")
    >>> loader.sampler.set_epoch(5)
    >>> len(loader), len(balanced)  # batches per epoch
    (2, 2)
    """
    if isinstance(data, Store):
        data = StoreDataset(data, policy=policy, rows=rows)
    elif rows is not None:
        raise InvalidArgumentError(
            "rows selects rows of a Store; a dataset brings its own: StoreDataset(store, rows=...), or a JPEGDataset made "
            "from the selection itself (JPEGDataset(index) with an Index from release.index())"
        )
    if not isinstance(data, StoreDataset | JPEGDataset):
        raise TypeError(f"data must be a Store, StoreDataset or JPEGDataset, not {type(data).__name__}")
    weights = balance_weights(data.arrays.policy_targets if isinstance(data, StoreDataset) else data.policy_targets, balance)
    sampler = EpochBatchSampler(len(data), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size, weights=weights)
    return DataLoader(
        _Batches(data),
        batch_size=None,
        sampler=sampler,
        collate_fn=_as_is,  # type: ignore[arg-type]  # batches are dicts already: nothing to collate
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
        prefetch_factor=prefetch_factor,
        multiprocessing_context=multiprocessing_context,
        # JPEG workers decode and resize: one process per core already, so one OpenCV thread each.
        worker_init_fn=_one_decoding_thread if isinstance(data, JPEGDataset) and num_workers > 0 else None,
    )


def _one_decoding_thread(worker: int) -> None:
    one_thread_per_worker()
