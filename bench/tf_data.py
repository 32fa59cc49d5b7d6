"""How fast does tf.data deliver CheXpert batches from a prepared store, against decoding the JPEGs?

Run: python bench/tf_data.py [--root RELEASE] [--patients 500] [--sizes 224 320] [--batch-size 64]

Without --root a look-alike small release is synthesised (its JPEGs have the real sizes and
encoding). In one run, for each size:
- chexpert: ``chexpert.frameworks.tf.to_tf_dataset`` over a store prepared at that size (no decoding);
- peer: the tf.data pipeline a user of TFDS's ``chexpert`` (which keeps the JPEGs) writes:
  read_file -> decode_jpeg(channels=1) -> resize_with_pad -> uint8 -> batch, parallel map, prefetch.
Both deliver (B, size, size, 1) uint8 batches; the ratio is chexpert / peer. For scale, the same
store read by ``chexpert.frameworks.numpy.NumpyLoader`` (no framework at all) is printed too:
the gap between it and tf.data is what crossing into the tf.data runtime costs.

``bench/loaders.py`` imports :func:`tf_data_rate` to report tf.data beside the PyTorch loaders.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _rate(dataset: Iterable[object], count: object, seconds: float) -> float:
    """Images per second over whole passes of ``dataset`` after one warm-up pass, for at least ``seconds``."""
    for _ in dataset:  # warm-up: page cache, tf.data autotuning, thread pools
        pass
    images, started = 0, time.perf_counter()
    while True:
        for batch in dataset:
            images += int(count(batch))  # type: ignore[operator]
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return images / elapsed


def tf_data_rate(store: object, *, batch_size: int = 64, seconds: float = 3.0) -> float:
    """Images per second that ``to_tf_dataset`` delivers from ``store`` (shuffled, u-ones targets).

    >>> tf_data_rate(open_store("chexpert-320"))  # doctest: +SKIP
    4521.3
    """
    from chexpert.frameworks.tf import to_tf_dataset

    dataset = to_tf_dataset(store, batch_size, policy="u-ones")  # type: ignore[arg-type]
    return _rate(dataset, lambda batch: batch["image"].shape[0], seconds)


def numpy_rate(store: object, *, batch_size: int = 64, seconds: float = 3.0) -> float:
    """Images per second of ``NumpyLoader`` over ``store``: the ceiling without a framework."""
    from chexpert.frameworks.numpy import NumpyLoader

    return _rate(NumpyLoader(store, batch_size, policy="u-ones"), lambda batch: len(batch["row"]), seconds)  # type: ignore[arg-type]


def jpeg_tf_data_rate(files: list[str], size: int, *, batch_size: int = 64, seconds: float = 3.0) -> float:
    """Images per second of the usual tf.data JPEG pipeline over ``files`` at ``size``."""
    import tensorflow as tf

    def load(path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=1)
        return tf.cast(tf.image.resize_with_pad(image, size, size, antialias=True), tf.uint8)

    dataset = (
        tf.data.Dataset.from_tensor_slices(files)
        .shuffle(len(files), seed=0)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return _rate(dataset, lambda batch: batch.shape[0], seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="a CheXpert release (default: synthesise one)")
    parser.add_argument("--patients", type=int, default=500, help="training patients to synthesise (default 500)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per loader")
    args = parser.parse_args(argv)

    from chexpert.release import open_release
    from chexpert.store import prepare
    from chexpert.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        workers = os.cpu_count() or 1
        root = args.root or synthesize(Path(tmp) / "release", patients=args.patients, seed=0, workers=workers)
        release = open_release(root)
        index = release.index("train")
        files = [release.locate(p) for p in index.path.tolist()]
        if any("!" in f for f in files):
            sys.exit("the JPEG peer reads files: pass an unpacked release folder as --root")
        import tensorflow as tf

        print(f"{len(index)} training images, batch {args.batch_size}, {workers} cores, TensorFlow {tf.__version__}")
        print(f"{'size':>5} {'chexpert tf.data (store)':>26} {'tf.data JPEG decode':>21} {'ratio':>7} {'NumPy loader (store)':>22}")
        for size in args.sizes:
            store = prepare(release, Path(tmp) / f"store-{size}", size=size, index=index, workers=workers)
            ours = tf_data_rate(store, batch_size=args.batch_size, seconds=args.seconds)
            peer = jpeg_tf_data_rate(files, size, batch_size=args.batch_size, seconds=args.seconds)
            ceiling = numpy_rate(store, batch_size=args.batch_size, seconds=args.seconds)
            print(f"{size:>5} {ours:>20,.0f} img/s {peer:>15,.0f} img/s {ours / peer:>6.1f}x {ceiling:>16,.0f} img/s")


if __name__ == "__main__":
    main()
