"""Which rows each rank reads in each epoch, and in which batches: the order every loader uses.

The order is a pure function of (seed, epoch, rank, world size): it does not depend on the number
of loader workers, the framework, or anything run before. With ``weights`` (e.g.
:func:`balanced_weights`, for class-balanced sampling) the epoch's rows are drawn with replacement
in proportion to them, still as a pure function of (seed, epoch). Sharding follows
``torch.utils.data.DistributedSampler``: the epoch's permutation is padded by wrapping around to a
multiple of the world size (or cut with ``drop_last``), and rank r takes every world-size-th row
starting at r. So the shards are disjoint apart from the padding rows, all have the same length,
and together they cover the epoch.

>>> sampler = EpochSampler(10, batch_size=4, seed=1, rank=0, world_size=2)
>>> [b.tolist() for b in sampler.batches(epoch=0)]
[[1, 5, 7, 8], [6]]
>>> len(sampler), sampler.rows_per_rank
(2, 5)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from chexpert.errors import InvalidArgumentError
from chexpert.validation import check_int

__all__ = ["EpochSampler", "EpochPasses", "balanced_weights", "check_epoch", "shard_of"]


def check_epoch(epoch: object) -> int:
    """``epoch`` as an int, or an InvalidArgumentError if it is not a non-negative integer.

    >>> check_epoch(3)
    3
    """
    return check_int("epoch", epoch, low=0)


def shard_of(rank: int | None, world_size: int | None, *, given: tuple[int, int] | None = None, given_by: str = "") -> tuple[int, int]:
    """``(rank, world_size)``: as given, or ``given`` (found by ``given_by``), or (0, 1) for one process.

    >>> shard_of(None, None), shard_of(1, 4), shard_of(None, None, given=(2, 8), given_by="jax_process=True")
    ((0, 1), (1, 4), (2, 8))
    """
    if given is not None:
        if rank is not None or world_size is not None:
            raise InvalidArgumentError(f"give rank and world_size, or {given_by}, not both")
        return given
    if (rank is None) != (world_size is None):
        raise InvalidArgumentError("give both rank and world_size, or neither")
    return (0, 1) if rank is None or world_size is None else (int(rank), int(world_size))


class EpochPasses:
    """What every loader shares: each pass over it is the next epoch of ``sampler``.

    Passes start at epoch 0; :meth:`set_epoch` chooses the epoch of the next pass (as with
    ``DistributedSampler.set_epoch``, e.g. when resuming from a checkpoint), and with ``start``
    the batch that pass begins at (a run killed mid-epoch resumes at the same sample).
    """

    def __init__(self, sampler: EpochSampler, epoch: int = 0) -> None:
        self.sampler = sampler
        self.epoch = check_epoch(epoch)
        self.start = 0

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Make the next pass epoch ``epoch``, beginning at its batch ``start`` (later passes start at 0).

        >>> passes = EpochPasses(EpochSampler(10, batch_size=4))
        >>> passes.set_epoch(2, start=1); passes.next_pass(), passes.next_pass()
        ((2, 1), (3, 0))
        """
        self.epoch = check_epoch(epoch)
        self.start = check_int("start", start, low=0)

    def next_epoch(self) -> int:
        """The epoch of the pass that starts now; the following pass gets the next one."""
        return self.next_pass()[0]

    def next_pass(self) -> tuple[int, int]:
        """``(epoch, first batch)`` of the pass that starts now; the following pass starts the next epoch at 0."""
        epoch, start = self.epoch, self.start
        self.epoch, self.start = epoch + 1, 0
        return epoch, start

    def __len__(self) -> int:
        """Batches per pass."""
        return len(self.sampler)


@dataclass(frozen=True)
class EpochSampler:
    """Deterministic per-epoch batches of row numbers for one rank.

    ``rows`` is the number of rows (all of them are sampled) or an array of the row numbers to
    sample (a selection of a store, e.g. frontal images only). With ``shuffle`` the epoch's order
    is a permutation drawn from ``np.random.default_rng([seed, epoch])``; without it, rows keep
    their order. ``drop_last`` cuts the epoch to a multiple of ``world_size`` instead of padding,
    and drops each rank's last incomplete batch. ``sort_batches`` returns each batch's rows in
    ascending order, which makes a gather from a memory map sequential; the order within a
    batch carries no information for training.

    >>> sampler = EpochSampler(np.arange(100, 110), batch_size=4, shuffle=False)
    >>> [b.tolist() for b in sampler.batches(0)]
    [[100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]
    """

    rows: int | np.ndarray = field(repr=False)
    batch_size: int
    shuffle: bool = True
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    sort_batches: bool = True
    weights: np.ndarray | None = field(default=None, repr=False)
    samples: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rows, int | np.integer) and not isinstance(self.rows, bool):
            rows = np.arange(check_int("rows", self.rows, low=0), dtype=np.int64)
        else:
            rows = np.asarray(self.rows)
            if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
                raise InvalidArgumentError(f"rows must be a count or a 1-D array of integer row numbers, got {rows.dtype} of shape {rows.shape}")
            rows = rows.astype(np.int64)
            rows.setflags(write=False)
        object.__setattr__(self, "rows", rows)
        if self.weights is not None:
            object.__setattr__(self, "weights", _probabilities(self.weights, len(rows)))
            if not self.shuffle:
                raise InvalidArgumentError("weights draw rows at random: they need shuffle=True")
        if self.samples is not None:
            if self.weights is None:
                raise InvalidArgumentError("samples sets how many rows weights= draws per epoch; without weights every row is read once")
            check_int("samples", self.samples, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("seed", self.seed, low=0)
        check_int("world_size", self.world_size, low=1)
        rank = check_int("rank", self.rank, low=0)
        if rank >= self.world_size:
            raise InvalidArgumentError(f"rank must be in 0..{self.world_size - 1} for world_size {self.world_size}, not {rank}")
        if self.drop_last and self.rows_per_rank == 0:
            raise InvalidArgumentError(f"{len(rows)} rows cannot give each of {self.world_size} ranks a full batch of {self.batch_size} with drop_last=True")

    @property
    def rows_per_rank(self) -> int:
        """Rows each rank reads per epoch (padding included)."""
        n, ws = self._epoch_rows, self.world_size
        per_rank = n // ws if self.drop_last else -(-n // ws)
        if self.drop_last:
            per_rank -= per_rank % self.batch_size
        return per_rank

    @property
    def _epoch_rows(self) -> int:
        """Rows in an epoch before sharding: every row once, or ``samples`` weighted draws."""
        if self.weights is not None:
            return int(self.samples) if self.samples is not None else len(self.rows)  # type: ignore[arg-type]
        return len(self.rows)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank."""
        return int(-(-self.rows_per_rank // self.batch_size))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Every row of the epoch in order, before sharding (padded or cut to a multiple of world_size)."""
        check_int("epoch", epoch, low=0)
        rows: np.ndarray = self.rows  # type: ignore[assignment]
        rng = np.random.default_rng([self.seed, epoch])
        if self.weights is not None:
            order = rows[rng.choice(len(rows), size=self._epoch_rows, p=self.weights)]
        else:
            order = rows[rng.permutation(len(rows))] if self.shuffle else rows
        n = len(order)
        total = -(-n // self.world_size) * self.world_size if not self.drop_last else n // self.world_size * self.world_size
        if total > len(order):
            # Pad by wrapping around, as DistributedSampler does, so that every rank gets as many rows.
            order = np.resize(order, total) if len(order) else order
        return order[:total]

    def order(self, epoch: int) -> np.ndarray:
        """This rank's rows for ``epoch``, in reading order (before sorting within batches)."""
        return self.epoch_order(epoch)[self.rank :: self.world_size][: self.rows_per_rank]

    def batches(self, epoch: int, *, start: int = 0) -> Iterator[np.ndarray]:
        """This rank's batches of row numbers (int64 arrays) for ``epoch``, from batch ``start`` on.

        ``start`` resumes an epoch part-way, e.g. from a checkpoint.

        >>> next(EpochSampler(8, batch_size=3, shuffle=False).batches(0, start=1)).tolist()
        [3, 4, 5]
        """
        check_int("start", start, low=0)
        order = self.order(epoch)
        for first in range(start * self.batch_size, len(order), self.batch_size):
            batch = order[first : first + self.batch_size]
            yield np.sort(batch) if self.sort_batches else batch.copy()


def _probabilities(weights: object, n: int) -> np.ndarray:
    """``weights`` as float64 probabilities summing to 1, read-only; an error for anything else."""
    values = np.asarray(weights, dtype=np.float64) if not isinstance(weights, str) else np.array([np.nan])
    if values.shape != (n,):
        raise InvalidArgumentError(f"weights must hold one number per row ({n}), got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any() or not values.sum() > 0:
        raise InvalidArgumentError("weights must be finite, non-negative and not all zero")
    probabilities = values / values.sum()
    probabilities.setflags(write=False)
    return probabilities


def balanced_weights(positive: np.ndarray) -> np.ndarray:
    """Per-row sampling weights that balance positives and the rest of each column of ``positive``.

    ``positive`` is a boolean ``(N,)`` or ``(N, k)`` array (row i positive for observation j).
    With one column, positives and other rows are each drawn half the time; with k columns the
    weights are the mean of the k one-column weights, so each observation is balanced in 1/k of
    the draws (a mixture, which keeps rare label combinations from dominating). Every column
    needs at least one positive and one other row.

    >>> balanced_weights(np.array([True, False, False, False])).tolist()
    [0.5, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666]
    """
    positive = np.asarray(positive)
    if positive.ndim == 1:
        positive = positive[:, None]
    if positive.ndim != 2 or positive.dtype != bool:
        raise InvalidArgumentError(f"positive must be a boolean (N,) or (N, k) array, got {positive.dtype} of shape {positive.shape}")
    n = len(positive)
    counts = positive.sum(axis=0)
    empty = np.flatnonzero((counts == 0) | (counts == n))
    if len(empty):
        raise InvalidArgumentError(
            f"cannot balance column(s) {', '.join(map(str, empty.tolist()))}: " + ", ".join(f"{int(counts[j])} positive of {n}" for j in empty)
        )
    per_column = np.where(positive, 0.5 / counts, 0.5 / (n - counts))
    return per_column.mean(axis=1)
