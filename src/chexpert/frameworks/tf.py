"""tf.data from a prepared store: uint8 batches gathered straight from the memory map.

No JPEG is decoded: each batch is one sorted gather from ``images.npy`` (a ``tf.numpy_function``
in a parallel, order-keeping tf.data map), in the order of
:class:`chexpert.sampling.EpochSampler`, so the same seed and epoch give the same batches as the
PyTorch and NumPy loaders. Each pass over the dataset is the next epoch, which is what Keras'
``fit(epochs=...)`` and ``Dataset.repeat()`` do.

>>> from chexpert import open_store
>>> ds = to_tf_dataset(open_store("chexpert-320"), batch_size=64, policy="u-ones", as_supervised=True)
>>> [tuple(t.shape) for t in next(iter(ds))]
[(64, 320, 320, 1), (64, 14), (64, 14)]
>>> model.fit(ds, epochs=3)  # your Keras model; not run as a doctest  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from chexpert.frameworks.numpy import StoreArrays, balance_weights
from chexpert.index import Index
from chexpert.policy import Policy, SoftLabels
from chexpert.sampling import EpochPasses, EpochSampler, shard_of

if TYPE_CHECKING:
    from chexpert.store import Store

__all__ = ["to_tf_dataset"]


def to_tf_dataset(
    store: Store | StoreArrays,
    batch_size: int = 64,
    *,
    policy: str | Policy = "u-ignore",
    rows: np.ndarray | Sequence[int] | Index | None = None,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    as_supervised: bool = False,
    soft_labels: SoftLabels | None = None,
    balance: str | Sequence[str] | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of batches from a prepared store.

    Elements are dicts: ``image`` (B, H, W, 1) uint8, ``targets`` (B, K) float32 and ``mask``
    (B, K) bool under ``policy``, ``row`` (B,) int64 store rows, and ``classes`` (B, K) int64 when
    the policy has three-way (U-MultiClass) columns. ``as_supervised=True`` gives
    ``(image, targets, weights)`` tuples instead, the mask as float32 weights, for Keras.

    The first pass is epoch ``epoch``, each further pass the next. ``rows`` selects store rows:
    row numbers, a boolean mask, or an Index such as a split (``chexpert.split_patients``),
    matched by image path. ``balance`` (an observation, or several) samples class-balanced epochs
    with replacement, as the PyTorch and NumPy loaders do (same rows for a seed and epoch). Shard
    with ``rank``/``world_size`` or a ``tf.distribute.InputContext``
    (``distribute_datasets_from_function``); ``batch_size`` is then per input pipeline
    (``input_context.get_per_replica_batch_size(global_batch)``).

    >>> import tensorflow as tf
    >>> strategy = tf.distribute.get_strategy()  # the default; a MirroredStrategy spreads batches over GPUs
    >>> ds = strategy.distribute_datasets_from_function(
    ...     lambda ctx: to_tf_dataset(store, ctx.get_per_replica_batch_size(256), input_context=ctx))
    """
    pipeline = (input_context.input_pipeline_id, input_context.num_input_pipelines) if input_context is not None else None
    rank, world_size = shard_of(rank, world_size, given=pipeline, given_by="input_context")
    arrays = StoreArrays.of(store, policy=policy, rows=rows, soft_labels=soft_labels)
    sampler = EpochSampler(
        len(arrays), batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last,
        weights=balance_weights(arrays.policy_targets, balance),
    )  # fmt: skip
    passes = _Passes(sampler, epoch)
    # One Python call per pass lays out the epoch's batches; the per-batch Python work is then
    # the gather alone. (A from_generator source would be a second Python thread per batch, and
    # the two contend for the GIL: several times slower.)
    positions = (
        tf.data.Dataset.range(1)
        .map(lambda _: tf.numpy_function(passes.next, [], [tf.int64, tf.int64], stateful=True))
        .flat_map(lambda padded, lengths: tf.data.Dataset.from_tensor_slices((padded, lengths)))
        .map(lambda padded, length: padded[:length])
    )
    height, width = arrays.images.shape[1:]
    k = len(arrays.observations)
    names = ["image", "targets", "mask", "row"] + (["classes"] if arrays.classes is not None else [])
    dtypes = [tf.uint8, tf.float32, tf.bool, tf.int64, tf.int64][: len(names)]
    shapes = [(None, height, width, 1), (None, k), (None, k), (None,), (None, k)][: len(names)]

    def gather(batch_positions: np.ndarray) -> list[np.ndarray]:
        batch = arrays.batch(batch_positions)
        batch["image"] = batch["image"][..., None]
        return [batch[name] for name in names]

    def read(batch_positions: tf.Tensor) -> dict[str, tf.Tensor] | tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        tensors = tf.numpy_function(gather, [batch_positions], dtypes, stateful=False)
        for tensor, shape in zip(tensors, shapes):
            tensor.set_shape(shape)
        batch = dict(zip(names, tensors))
        if as_supervised:
            return batch["image"], batch["targets"], tf.cast(batch["mask"], tf.float32)
        return batch

    dataset = positions.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(sampler)))
    return dataset.prefetch(tf.data.AUTOTUNE)


class _Passes(EpochPasses):
    """Each pass over the dataset is the next epoch: its batches as a padded (batches, size) array and lengths."""

    def __init__(self, sampler: EpochSampler, epoch: int) -> None:
        super().__init__(sampler, epoch)
        self._lock = threading.Lock()  # tf.data may call next() from several threads

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            epoch = self.next_epoch()
        batches = list(self.sampler.batches(epoch))
        padded = np.zeros((len(batches), self.sampler.batch_size), dtype=np.int64)
        lengths = np.array([len(b) for b in batches], dtype=np.int64)
        for i, batch in enumerate(batches):
            padded[i, : len(batch)] = batch
        return padded, lengths
