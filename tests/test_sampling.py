"""EpochSampler: deterministic per (seed, epoch), disjoint equal shards that cover the epoch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chexpert.errors import InvalidArgumentError
from chexpert.sampling import EpochSampler


def epoch_rows(sampler: EpochSampler, epoch: int) -> np.ndarray:
    return np.concatenate(list(sampler.batches(epoch)) or [np.array([], dtype=np.int64)])


def test_same_seed_and_epoch_give_the_same_batches_others_differ() -> None:
    a = [b.tolist() for b in EpochSampler(1000, 32, seed=5).batches(3)]
    b = [b.tolist() for b in EpochSampler(1000, 32, seed=5).batches(3)]
    assert a == b
    assert a != [b.tolist() for b in EpochSampler(1000, 32, seed=5).batches(4)]
    assert a != [b.tolist() for b in EpochSampler(1000, 32, seed=6).batches(3)]
    # The order is a permutation, not the identity, and each batch is sorted for the gather.
    rows = epoch_rows(EpochSampler(1000, 32, seed=5), 3)
    assert sorted(rows.tolist()) == list(range(1000)) and rows.tolist() != list(range(1000))
    assert all((np.diff(batch) > 0).all() for batch in EpochSampler(1000, 32, seed=5).batches(3))


def test_without_shuffle_rows_keep_their_order() -> None:
    sampler = EpochSampler(np.array([7, 3, 9, 1, 4]), 2, shuffle=False, sort_batches=False)
    assert [b.tolist() for b in sampler.batches(0)] == [[7, 3], [9, 1], [4]]
    assert [b.tolist() for b in sampler.batches(5)] == [[7, 3], [9, 1], [4]]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 300),
    batch_size=st.integers(1, 40),
    world_size=st.integers(1, 7),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
    drop_last=st.booleans(),
)
def test_shards_are_disjoint_equal_and_cover_the_epoch(n: int, batch_size: int, world_size: int, seed: int, epoch: int, drop_last: bool) -> None:
    if drop_last and n // world_size < batch_size:
        with pytest.raises(ValueError, match="cannot give each"):
            EpochSampler(n, batch_size, seed=seed, world_size=world_size, drop_last=drop_last)
        return
    samplers = [EpochSampler(n, batch_size, seed=seed, rank=r, world_size=world_size, drop_last=drop_last) for r in range(world_size)]
    shards = [epoch_rows(s, epoch) for s in samplers]
    counts = {len(list(s.batches(epoch))) for s in samplers}
    assert counts == {len(samplers[0])}, "every rank must run the same number of steps"
    assert len({len(shard) for shard in shards}) == 1
    everything = np.concatenate(shards)
    if drop_last:
        # Cut, never padded: no row twice, and at most world_size - 1 + a partial batch per rank lost.
        assert len(np.unique(everything)) == len(everything)
        assert len(everything) > n - world_size - world_size * batch_size
        assert all(len(shard) % batch_size == 0 for shard in shards)
    else:
        # Padding by wrap-around: every row at least once, the extra ones fewer than world_size.
        assert set(everything.tolist()) == set(range(n))
        padded = -(-n // world_size) * world_size
        assert len(everything) == padded
        order = samplers[0].epoch_order(epoch)
        assert order[n:].tolist() == np.resize(order[:n], padded)[n:].tolist()
        # Disjoint apart from the padding: each row appears once, plus the wrapped ones again.
        values, times = np.unique(everything, return_counts=True)
        assert times.sum() - len(values) == padded - n


def test_shards_follow_distributed_sampler_order() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler, TensorDataset

    # Same interleaving and wrap-around padding as torch's DistributedSampler (without shuffling).
    for rank in range(3):
        ours = EpochSampler(10, 100, shuffle=False, rank=rank, world_size=3, sort_batches=False).order(0)
        theirs: list[int] = list(DistributedSampler(TensorDataset(torch.arange(10)), num_replicas=3, rank=rank, shuffle=False))
        assert ours.tolist() == theirs


def test_a_row_selection_is_sampled_and_an_epoch_can_resume_part_way() -> None:
    rows = np.array([10, 20, 30, 40, 50, 60, 70])
    sampler = EpochSampler(rows, 3, seed=2)
    batches = [b.tolist() for b in sampler.batches(1)]
    assert sorted(sum(batches, [])) == rows.tolist()
    assert [b.tolist() for b in sampler.batches(1, start=1)] == batches[1:]
    mask_rows = np.flatnonzero(np.arange(20) % 3 == 0)
    assert sorted(epoch_rows(EpochSampler(mask_rows, 4), 0).tolist()) == mask_rows.tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 10, "batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"rows": 10, "batch_size": 2, "rank": 2, "world_size": 2}, r"rank must be in 0..1"),
        ({"rows": 10, "batch_size": 2, "world_size": 0}, "world_size must be an integer >= 1"),
        ({"rows": 10, "batch_size": 2, "seed": -1}, "seed must be an integer >= 0"),
        ({"rows": np.array([0.5, 1.0]), "batch_size": 2}, "rows must be a count or a 1-D array of integer"),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpochSampler(**kwargs)  # type: ignore[arg-type]  # bad values on purpose: the checks under test
    with pytest.raises(ValueError, match="epoch must be"):
        next(EpochSampler(4, 2).batches(-1))


# Weighted (class-balanced) epochs.


def test_weighted_epochs_are_deterministic_per_seed_and_epoch_and_follow_the_weights() -> None:
    from chexpert.sampling import balanced_weights

    positive = np.zeros(1000, dtype=bool)
    positive[:50] = True
    weights = balanced_weights(positive)
    assert weights[:50].sum() == pytest.approx(0.5) and weights[50:].sum() == pytest.approx(0.5)
    sampler = EpochSampler(np.arange(1000, 2000), 64, seed=1, weights=weights)
    assert len(sampler) == -(-1000 // 64)  # as many rows as a plain epoch by default
    a = epoch_rows(sampler, 2)
    assert np.array_equal(a, epoch_rows(EpochSampler(np.arange(1000, 2000), 64, seed=1, weights=weights), 2))
    assert not np.array_equal(a, epoch_rows(sampler, 3)) and not np.array_equal(
        a, epoch_rows(EpochSampler(np.arange(1000, 2000), 64, seed=2, weights=weights), 2)
    )
    drawn = np.concatenate([epoch_rows(sampler, e) for e in range(20)]) - 1000
    assert abs(positive[drawn].mean() - 0.5) < 0.02  # against 0.05 unweighted
    # Ranks read disjoint stretches of one epoch's draws, which together are the epoch.
    shards = [epoch_rows(EpochSampler(np.arange(1000, 2000), 64, seed=1, weights=weights, rank=r, world_size=3, samples=999), 2) for r in range(3)]
    assert {len(s) for s in shards} == {333}
    order = EpochSampler(np.arange(1000, 2000), 64, seed=1, weights=weights, samples=999).epoch_order(2)
    assert sorted(np.concatenate(shards).tolist()) == sorted(order.tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": np.ones(3)}, r"one number per row \(5\)"),
        ({"weights": np.array([1.0, -1.0, 1.0, 1.0, 1.0])}, "non-negative"),
        ({"weights": np.zeros(5)}, "not all zero"),
        ({"weights": np.array([1.0, np.nan, 1.0, 1.0, 1.0])}, "finite"),
        ({"weights": np.ones(5), "shuffle": False}, "shuffle=True"),
        ({"samples": 3}, "without weights"),
        ({"weights": np.ones(5), "samples": 0}, "samples must be an integer >= 1"),
    ],
)
def test_weights_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpochSampler(5, 2, **kwargs)


def test_balanced_weights_need_both_classes() -> None:
    from chexpert.sampling import balanced_weights

    two = balanced_weights(np.array([[True, False], [False, False], [False, True], [False, False]]))
    assert two.sum() == pytest.approx(1.0) and two.tolist() == pytest.approx([(0.5 + 0.5 / 3) / 2, 0.5 / 3, (0.5 / 3 + 0.5) / 2, 0.5 / 3])
    with pytest.raises(ValueError, match=r"cannot balance column\(s\) 1: 0 positive of 3"):
        balanced_weights(np.array([[True, False], [False, False], [False, False]]))
    with pytest.raises(ValueError, match="boolean"):
        balanced_weights(np.array([1, 0]))


def test_a_pass_can_start_part_way_through_an_epoch_and_the_next_starts_at_zero() -> None:
    from chexpert.sampling import EpochPasses

    sampler = EpochSampler(23, batch_size=4, seed=3)
    passes = EpochPasses(sampler)
    passes.set_epoch(1, start=2)
    assert passes.next_pass() == (1, 2) and passes.next_pass() == (2, 0)
    full = [b.tolist() for b in sampler.batches(1)]
    assert [b.tolist() for b in sampler.batches(1, start=2)] == full[2:]
    with pytest.raises(InvalidArgumentError, match="start must be an integer >= 0"):
        passes.set_epoch(0, start=-1)
