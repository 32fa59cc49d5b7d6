"""tf.data from a prepared store: pixels equal to the store, each row once per epoch, disjoint shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = pytest.importorskip("tensorflow")

from chexpert.frameworks.numpy import NumpyLoader
from chexpert.frameworks.tf import to_tf_dataset
from chexpert.policy import NEGATIVE_CLASS, POSITIVE_CLASS, UNCERTAIN_CLASS, Policy, apply
from chexpert.store import Store
from tests.conftest import TINY_LOOK_ALIKE

SIZE = 24


@pytest.fixture(scope="module")
def store(look_alike: Callable[..., Path], prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(look_alike(**TINY_LOOK_ALIKE), size=SIZE)


def _epoch(dataset: tf.data.Dataset) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def test_batches_equal_the_store_rows_and_cover_each_row_once_per_epoch(store: Store) -> None:
    n = len(store)
    dataset = to_tf_dataset(store, batch_size=4, policy="u-zeros", seed=5)
    assert dataset.element_spec["image"].shape.as_list() == [None, 24, 24, 1]
    assert dataset.element_spec["image"].dtype == tf.uint8
    assert int(dataset.cardinality()) == -(-n // 4)
    expected = apply("u-zeros", store.index)
    orders = []
    for _ in range(3):  # each pass is the next epoch
        batches = _epoch(dataset)
        rows = np.concatenate([b["row"] for b in batches])
        assert sorted(rows.tolist()) == list(range(n))
        for b in batches:
            np.testing.assert_array_equal(b["image"][..., 0], store.images[b["row"]])
            np.testing.assert_array_equal(b["targets"], expected.targets[b["row"]])
            np.testing.assert_array_equal(b["mask"], expected.mask[b["row"]])
        orders.append(rows.tolist())
    assert orders[0] != orders[1] != orders[2]

    # The same batches as the NumPy loader (and so PyTorch's) for the same seed and epoch.
    numpy_loader = NumpyLoader(store, batch_size=4, policy="u-zeros", seed=5)
    numpy_loader.set_epoch(1)
    assert [b["row"].tolist() for b in numpy_loader] == [b["row"].tolist() for b in _epoch(to_tf_dataset(store, 4, seed=5, epoch=1))]


def test_shards_are_disjoint_and_cover_the_epoch(store: Store) -> None:
    selected = np.arange(len(store) // 3 * 3)  # a multiple of the shard count: no padding rows
    shards = []
    for rank in range(3):
        by_args = _epoch(to_tf_dataset(store, 2, seed=1, rows=selected, rank=rank, world_size=3))
        by_context = _epoch(to_tf_dataset(store, 2, seed=1, rows=selected, input_context=tf.distribute.InputContext(3, rank, 1)))
        rows = [b["row"].tolist() for b in by_args]
        assert rows == [b["row"].tolist() for b in by_context]
        shards.append({r for batch in rows for r in batch})
        assert sum(len(batch) for batch in rows) == len(selected) // 3
    assert set().union(*shards) == set(selected.tolist())
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])


def test_multiclass_policy_row_selection_and_supervised_tuples(store: Store) -> None:
    frontal = np.flatnonzero(store.index.frontal)
    batches = _epoch(to_tf_dataset(store, 3, policy="u-multiclass", rows=frontal, shuffle=False))
    expected = apply("u-multiclass", store.index.take(frontal))
    assert expected.classes is not None
    rows = np.concatenate([b["row"] for b in batches])
    np.testing.assert_array_equal(rows, frontal)
    np.testing.assert_array_equal(np.concatenate([b["classes"] for b in batches]), expected.classes)
    assert {NEGATIVE_CLASS, POSITIVE_CLASS, UNCERTAIN_CLASS} <= set(np.unique(expected.classes).tolist())  # all three occur

    policy = Policy(uncertain="ones", observations=("Edema", "Cardiomegaly"))
    images, targets, weights = next(iter(to_tf_dataset(store, 5, policy=policy, as_supervised=True, shuffle=False)))
    assert images.dtype == tf.uint8 and images.shape == (5, 24, 24, 1)
    expected = apply(policy, store.index)
    np.testing.assert_array_equal(targets.numpy(), expected.targets[:5])
    np.testing.assert_array_equal(weights.numpy(), expected.mask[:5].astype(np.float32))


def test_arguments_are_validated(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        to_tf_dataset(store, rank=0, world_size=2, input_context=tf.distribute.InputContext(2, 0, 1))
    with pytest.raises(ValueError, match="both rank and world_size"):
        to_tf_dataset(store, rank=1)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        to_tf_dataset(store, epoch=-1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        to_tf_dataset(store, 0)


def test_release_reads_when_tensorflow_was_imported_first(tmp_path: Path) -> None:
    """TensorFlow bundles an older RE2; loaded before pyarrow, pyarrow's regular expressions use it."""
    import subprocess
    import sys

    script = (
        "import sys, tensorflow, chexpert\n"
        "from chexpert.synth import synthesize\n"
        "print(len(chexpert.open(synthesize(sys.argv[1], patients=1, seed=0)).index()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 0


def test_a_split_and_class_balanced_epochs_like_the_numpy_loader(store: Store) -> None:
    import chexpert

    parts = chexpert.split_patients(store.index, {"train": 0.6, "valid": 0.4}, seed=3)
    for name, part in parts.items():
        rows = np.concatenate([b["row"] for b in _epoch(to_tf_dataset(store, 3, rows=part, seed=4))])
        assert sorted(rows.tolist()) == np.flatnonzero(np.isin(store.index.path, part.path)).tolist(), name
    targets = apply("u-ones", parts["train"])
    observation = next(o for o in targets.observations if 0 < targets.positive(o).sum() < len(targets))
    numpy_loader = NumpyLoader(store, 3, rows=parts["train"], policy="u-ones", seed=4, balance=observation)
    dataset = to_tf_dataset(store, 3, rows=parts["train"], policy="u-ones", seed=4, balance=observation)
    for _ in range(2):  # epochs 0 and 1
        assert [b["row"].tolist() for b in _epoch(dataset)] == [b["row"].tolist() for b in numpy_loader]
