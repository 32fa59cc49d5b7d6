"""NumPy (and JAX) batches from a prepared store: one sorted gather from the memory map per batch.

:class:`StoreArrays` holds what a batch is made from (the memory-mapped pixels and the targets
under a policy, computed once for every row) and is shared by the framework loaders.
:class:`NumpyLoader` iterates batches of NumPy arrays, ready for ``jax.device_put``; with
``jax_process=True`` each JAX process reads its own shard.

>>> from chexpert import open_store
>>> loader = NumpyLoader(open_store("chexpert-320"), batch_size=64, policy="u-ones")
>>> import jax
>>> for batch in loader:
...     images = jax.device_put(batch["image"])  # (64, 320, 320, 1) uint8
>>> images.shape  # the last batch
(64, 320, 320, 1)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.index import Index
from chexpert.policy import Policy, SoftLabels, Targets, apply
from chexpert.sampling import EpochPasses, EpochSampler, balanced_weights, shard_of
from chexpert.store import Store, reopen_images

__all__ = ["StoreArrays", "NumpyLoader", "jax_rank", "store_rows", "balance_weights"]

_SHOWN = 5  # paths named in an error message


def _image_keys(index: Index) -> np.ndarray:
    """One int64 per image, from the columns its path is parsed into (split, patient, study, view, frontal).

    Equal for the same image whatever the release prefix of its CSV path (small or full release).
    """
    key = index.study_ids() * 1_000 + index.view.astype(np.int64)
    return key * 2 + index.frontal.astype(np.int64)


def store_rows(store: Store, rows: np.ndarray | Sequence[int] | Index | None) -> np.ndarray:
    """Store row numbers (int64) for a selection: row numbers, a boolean mask over the store, or an Index.

    An :class:`~chexpert.index.Index` (what :func:`chexpert.select`, :func:`chexpert.split_patients`
    and :func:`chexpert.kfold` return) is matched to the store by image path, ignoring the release
    prefix, and keeps its order (and any repeated rows). Images the store does not hold, and images
    whose raw labels differ from the store's (a store prepared from other labels), are errors
    naming them: a loader never trains on other rows or other labels than those asked for.

    >>> parts = chexpert.split_patients(store.index, seed=0)
    >>> store_rows(store, parts["valid"])[:3]
    array([53, 55, 59])
    """
    n = len(store)
    if rows is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(rows, Index):
        return _rows_of_index(store, rows)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.ndim != 1 or len(rows) != n:
            raise InvalidArgumentError(f"boolean rows has {len(rows)} entries for a store of {n} rows")
        return np.flatnonzero(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise InvalidArgumentError(f"rows must be store row numbers, a boolean mask or an Index (a selection or split), got {rows.dtype} {rows.shape}")
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise InvalidArgumentError(f"rows must be in 0..{n - 1} for a store of {n} rows")
    return rows


def balance_weights(targets: Targets, balance: str | Sequence[str] | None) -> np.ndarray | None:
    """Class-balanced sampling weights for the loaders' ``balance=``: None, an observation, or several.

    Positives (under the policy: :meth:`~chexpert.policy.Targets.positive`) and the other rows of
    each named observation are drawn equally often; several observations are balanced in turn
    (see :func:`chexpert.sampling.balanced_weights`). None gives None (every row once per epoch).

    >>> loader = NumpyLoader(store, batch_size=64, policy="u-ones", balance="Edema")
    >>> len(loader)
    2
    """
    if balance is None:
        return None
    positive = targets.positive(balance)
    try:
        return balanced_weights(positive)
    except InvalidArgumentError:
        names = (balance,) if isinstance(balance, str) else tuple(balance)
        counts = ", ".join(f"{name} {int(positive[:, j].sum())} positive of {len(positive)}" for j, name in enumerate(names))
        raise InvalidArgumentError(f"balance= needs positives and other rows for every observation named; {counts}") from None


def _rows_of_index(store: Store, index: Index) -> np.ndarray:
    held = _image_keys(store.index)
    order = np.argsort(held, kind="stable")  # the first of repeated store rows wins
    wanted = _image_keys(index)
    at = np.minimum(np.searchsorted(held, wanted, sorter=order), max(len(held) - 1, 0))
    found = order[at] if len(held) else np.zeros(len(wanted), dtype=np.int64)
    missing = np.flatnonzero(held[found] != wanted) if len(held) else np.arange(len(wanted))
    if len(missing):
        shown = ", ".join(str(p) for p in index.path[missing[:_SHOWN]])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise InvalidArgumentError(
            f"{len(missing)} of the {len(index)} images selected are not in the store {store.path}: {shown}{more}; "
            "prepare a store of them (chexpert.prepare(release, out, index=...)) or select from store.index"
        )
    differ = np.flatnonzero((store.index.labels[found] != index.labels).any(axis=1))
    if len(differ):
        first = int(differ[0])
        observation = schema.OBSERVATIONS[int(np.argmax(store.index.labels[found[first]] != index.labels[first]))]
        raise InvalidArgumentError(
            f"{len(differ)} of the images selected have other raw labels than in the store {store.path} "
            f"(first {index.path[first]}, {observation!r}): the store was prepared from other labels; prepare it again "
            "from this index, or select from store.index"
        )
    return found.astype(np.int64)


class StoreArrays:
    """A store's pixels with targets under ``policy``, gathered a batch at a time.

    Position i is store row ``rows[i]`` (default: every row); ``rows`` takes row numbers, a
    boolean mask or an Index such as a split (see :func:`store_rows`). Targets, mask and (for
    U-MultiClass) classes are computed once, here; a batch is then a few fancy-index gathers.
    Pickling (for spawned workers) carries the store's path and identity, not its pixels: the
    memory map is reopened on the other side, which raises StoreError if the store was prepared
    again meanwhile (new pixels must not meet these labels).

    >>> arrays = StoreArrays(store, policy="u-zeros", rows=np.flatnonzero(store.index.frontal))
    >>> arrays.batch(np.arange(4))["image"].shape
    (4, 320, 320)
    """

    @classmethod
    def of(
        cls,
        store: Store | StoreArrays,
        *,
        policy: str | Policy = "u-ignore",
        rows: np.ndarray | Sequence[int] | Index | None = None,
        soft_labels: SoftLabels | None = None,
    ) -> StoreArrays:
        """``store`` itself when it is already a StoreArrays (which then owns rows and soft labels)."""
        if isinstance(store, StoreArrays):
            if rows is not None or soft_labels is not None:
                raise InvalidArgumentError("rows and soft_labels belong to the StoreArrays already given")
            return store
        return cls(store, policy=policy, rows=rows, soft_labels=soft_labels)

    def __init__(
        self,
        store: Store,
        *,
        policy: str | Policy = "u-ignore",
        rows: np.ndarray | Sequence[int] | Index | None = None,
        soft_labels: SoftLabels | None = None,
    ) -> None:
        rows = store_rows(store, rows)
        targets = apply(policy, store.index.take(rows), soft_labels=soft_labels)
        self.policy_targets = targets
        self.path: Path = store.path
        self.identity = store.identity
        self._images: np.ndarray | None = store.images
        self.rows = rows
        self.observations = targets.observations
        self.targets = targets.targets
        self.mask = targets.mask
        self.classes = targets.classes
        self._increasing = bool(np.all(rows[1:] > rows[:-1]))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def images(self) -> np.ndarray:
        """The store's pixels, memory-mapped; after unpickling, mapped on first use (in the worker,
        where a StoreError reaches the loader) once the store proves to be the same."""
        if self._images is None:
            self._images = reopen_images(self.path, self.identity)
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None  # a memmap would pickle as a copy of every pixel
        return state

    def batch(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Gather positions as one batch: ``image`` (B, H, W) uint8, ``targets`` (B, K) float32,
        ``mask`` (B, K) bool, ``row`` (B,) int64 store rows, and ``classes`` (B, K) int64 when a
        column is three-way. The batch comes in ascending row order (one sequential pass over the
        memory map), whatever the order of ``positions``.
        """
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.rows[positions]
        if not (self._increasing and np.all(positions[1:] >= positions[:-1])):
            order = np.argsort(rows, kind="stable")
            positions, rows = positions[order], rows[order]
        batch = {
            "image": self.images[rows],
            "targets": self.targets[positions],
            "mask": self.mask[positions],
            "row": rows,
        }
        if self.classes is not None:
            batch["classes"] = self.classes[positions]
        return batch


def jax_rank() -> tuple[int, int]:
    """``(jax.process_index(), jax.process_count())``; (0, 1) when JAX is not installed."""
    try:
        import jax
    except ModuleNotFoundError:
        return 0, 1
    return int(jax.process_index()), int(jax.process_count())


class NumpyLoader(EpochPasses):
    """Batches of NumPy arrays from a store, in the order of :class:`~chexpert.sampling.EpochSampler`.

    Each batch is a dict as :meth:`StoreArrays.batch` gives, with ``image`` shaped
    (B, H, W, 1) (channels last, as JAX/Flax convolutions expect). Each pass over the loader is
    the next epoch (starting at 0); :meth:`set_epoch` chooses one. ``rank``/``world_size`` shard
    the epoch; ``jax_process=True`` takes them from ``jax.process_index()`` and
    ``jax.process_count()``. ``rows`` selects store rows as :class:`StoreArrays` does (an Index such
    as a split included). ``balance`` (an observation or several) samples class-balanced epochs
    (see :func:`balance_weights`): as many rows as a plain epoch, drawn with replacement,
    deterministic per seed and epoch. Arrays are plain NumPy, ready for ``jax.device_put``.

    >>> loader = NumpyLoader(store, batch_size=128, seed=3, jax_process=True)
    >>> batch = next(iter(loader)); batch["image"].shape
    (128, 320, 320, 1)
    """

    def __init__(
        self,
        store: Store | StoreArrays,
        batch_size: int = 64,
        *,
        policy: str | Policy = "u-ignore",
        rows: np.ndarray | Sequence[int] | Index | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        jax_process: bool = False,
        soft_labels: SoftLabels | None = None,
        balance: str | Sequence[str] | None = None,
    ) -> None:
        self.arrays = StoreArrays.of(store, policy=policy, rows=rows, soft_labels=soft_labels)
        rank, world_size = shard_of(rank, world_size, given=jax_rank() if jax_process else None, given_by="jax_process=True")
        sampler = EpochSampler(
            len(self.arrays), batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last,
            weights=balance_weights(self.arrays.policy_targets, balance),
        )  # fmt: skip
        super().__init__(sampler)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        epoch, start = self.next_pass()
        for positions in self.sampler.batches(epoch, start=start):
            batch = self.arrays.batch(positions)
            batch["image"] = batch["image"][..., None]
            yield batch
