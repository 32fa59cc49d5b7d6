"""How fast do chexpert's loaders deliver images, against the peers and the physical limits?

Run: python bench/loaders.py [--sizes 224 320] [--images 5000]

One run, one core (torch.set_num_threads(1), num_workers=0, TF and OpenCV pinned to one thread),
on the same 5,000-image small-release look-alike (generated once by chexpert.synth into
bench-data/, git-ignored), at 224x224 and 320x320, batches of 64, shuffled. Every figure is the
best of a few passes with the page cache warm (files and store read once before timing).

Rows:
- chexpert store -> uint8 batches: ``StoreArrays.batch``, the gather every loader does;
- chexpert store, torch DataLoader: ``chexpert.frameworks.torch.dataloader`` as a user calls it;
- chexpert store, NumPy/JAX iterator: ``NumpyLoader``;
- chexpert JPEG Dataset (no store): ``JPEGDataset`` in a plain DataLoader;
- torchxrayvision CheX_Dataset, with the transforms of its README (XRayCenterCrop, XRayResizer);
- LibAUC CheXpert, mode "train" (its default augmentation) and "valid" (none);
- TFDS ``chexpert`` (built once from the look-alike), decoded and resized with tf.image;
- limits: bare libjpeg-turbo (simplejpeg) grayscale decode of the same JPEG bytes, from memory;
  memcpy bandwidth (numpy copy of a batch into a preallocated buffer) expressed in images/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

_common.one_core()

import numpy as np  # noqa: E402

BATCH = 64


def drain(loader: object, images_of: Callable[[object], int]) -> Callable[[], int]:
    def run() -> int:
        return sum(images_of(batch) for batch in loader)  # type: ignore[attr-defined]

    return run


def ours_store(root: Path, size: int, n: int) -> dict[str, float]:
    from chexpert.frameworks.numpy import NumpyLoader, StoreArrays
    from chexpert.frameworks.torch import dataloader
    from chexpert.release import open_release
    from chexpert.sampling import EpochSampler
    from chexpert.store import prepare

    release = open_release(root)
    store = prepare(
        release,
        _common.BENCH_DATA / "stores" / f"small-{size}-pad",
        size=size,
        index=release.index("train").take(np.arange(n)),
        workers=os.cpu_count() or 1,
        overwrite=True,
    )
    np.asarray(store.images).sum()  # page cache warm, as for the JPEG peers
    arrays = StoreArrays(store, policy="u-ones")
    sampler = EpochSampler(len(arrays), BATCH, seed=0)
    epoch = [0]

    def gather() -> int:
        epoch[0] += 1
        return sum(len(arrays.batch(b)["image"]) for b in sampler.batches(epoch[0]))

    loader = dataloader(store, batch_size=BATCH, policy="u-ones")
    numpy_loader = NumpyLoader(store, batch_size=BATCH, policy="u-ones")
    return {
        "chexpert store -> uint8 batches (gather)": _common.rate(gather, repeat=5),
        "chexpert store, torch DataLoader": _common.rate(drain(loader, lambda b: len(b["image"])), repeat=5),
        "chexpert store, NumPy/JAX iterator": _common.rate(drain(numpy_loader, lambda b: len(b["image"])), repeat=5),
    }


def ours_jpeg(root: Path, size: int, n: int) -> float:
    from torch.utils.data import DataLoader, Subset

    from chexpert.frameworks.torch import JPEGDataset

    dataset = Subset(JPEGDataset(root, size=size, splits="train", policy="u-ones"), range(n))
    return _common.rate(drain(DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0), lambda b: len(b["image"])), repeat=2)


def torchxrayvision(root: Path, size: int, n: int) -> float:
    import torchvision
    import torchxrayvision as xrv
    from torch.utils.data import DataLoader, Subset

    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = xrv.datasets.CheX_Dataset(imgpath=str(root), csvpath=str(root / "train.csv"), views=["*"], unique_patients=False, transform=transform)
    dataset = Subset(dataset, range(n))
    return _common.rate(drain(DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0), lambda b: len(b["img"])), repeat=2)


def libauc(root: Path, size: int, n: int, mode: str) -> float:
    import contextlib
    import io

    from libauc.datasets import CheXpert
    from torch.utils.data import DataLoader, Subset

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dataset = CheXpert(
            csv_path=str(root / "train.csv"),
            image_root_path=str(root) + "/",
            image_size=size,
            class_index=-1,
            use_frontal=False,
            use_upsampling=False,
            mode=mode,
        )
    dataset = Subset(dataset, range(n))
    return _common.rate(drain(DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0), lambda b: len(b[0])), repeat=2)


def tfds_chexpert(root: Path, size: int, n: int) -> float:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    builder = tfds.builder("chexpert", data_dir=str(_common.BENCH_DATA / "tfds"))
    if not builder.is_prepared():
        print("building TFDS chexpert from the look-alike (once) ...", flush=True)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root.parent)))
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    dataset = (
        builder.as_dataset(split="train", shuffle_files=True)
        .take(n)
        .shuffle(1_000, seed=0)
        .map(lambda x: (tf.image.resize(x["image"], (size, size)), x["label"]))
        .batch(BATCH)
        .with_options(options)
    )
    return _common.rate(drain(tfds.as_numpy(dataset), lambda b: len(b[0])), repeat=2)


def bare_decode(root: Path, n: int) -> float:
    import simplejpeg

    from chexpert.release import open_release

    release = open_release(root)
    data = [release.read_bytes(str(p)) for p in release.index("train").path[:n]]

    def run() -> int:
        for jpeg in data:
            simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
        return len(data)

    return _common.rate(run, repeat=3)


def memcpy(size: int) -> float:
    source = np.random.default_rng(0).integers(0, 256, (BATCH * 16, size, size), dtype=np.uint8)
    target = np.empty((BATCH, size, size), dtype=np.uint8)

    def run() -> int:
        for start in range(0, len(source), BATCH):
            np.copyto(target, source[start : start + BATCH])
        return len(source)

    return _common.rate(run, repeat=5, min_seconds=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    parser.add_argument("--images", type=int, default=_common.SMALL_IMAGES)
    parser.add_argument("--skip", nargs="*", default=[], help="peers to leave out: torchxrayvision libauc tfds")
    args = parser.parse_args()
    root = _common.small_release()
    n = args.images
    bare = bare_decode(root, n)
    for size in args.sizes:
        results: list[tuple[str, float]] = []
        results += list(ours_store(root, size, n).items())
        results.append(("chexpert JPEG Dataset (no store)", ours_jpeg(root, size, n)))
        peers = {
            "torchxrayvision": lambda size=size: [("torchxrayvision CheX_Dataset", torchxrayvision(root, size, n))],
            "libauc": lambda size=size: [(f"LibAUC CheXpert (mode={m})", libauc(root, size, n, m)) for m in ("train", "valid")],
            "tfds": lambda size=size: [("TFDS chexpert + tf.image.resize", tfds_chexpert(root, size, n))],
        }
        for name, run in peers.items():
            if name in args.skip:
                continue
            try:
                results += run()
            except ImportError as exc:
                print(f"({name} skipped: {exc})")
        results.append(("limit: bare simplejpeg GRAY decode", bare))
        results.append(("limit: memcpy bandwidth", memcpy(size)))
        reference = {
            "xrv": dict(results).get("torchxrayvision CheX_Dataset", 0.0),
            "bare decode": bare,
            "memcpy": dict(results)["limit: memcpy bandwidth"],
        }
        title = f"{n:,} small-release look-alike images -> {size}x{size}, batches of {BATCH}, one core ({time.strftime('%Y-%m-%d')})"
        _common.table(title, results, reference)
        store = dict(results)["chexpert store, torch DataLoader"]
        jpeg = dict(results)["chexpert JPEG Dataset (no store)"]
        xrv = reference["xrv"] or float("nan")
        if size == 320:
            print(
                f"target: store (torch DataLoader) >= 50,000 img/s, >= 60x torchxrayvision, >= 0.5x memcpy: "
                f"{store:,.0f} img/s, {store / xrv:.0f}x, {store / reference['memcpy']:.2f}x"
            )
        if size == 224:
            print(f"target: JPEG Dataset >= 2x torchxrayvision: {jpeg / xrv:.2f}x")


if __name__ == "__main__":
    main()
