"""How fast does ``chexpert prepare`` turn JPEGs into a store: per core, against the JPEG Dataset, on 1 vs 2 workers?

Run: python bench/prepare.py [--size 320] [--releases small full large] [--repeat 3]

On look-alikes generated once by chexpert.synth into bench-data/ (git-ignored): the 5,000-image
small-release set, a few hundred full-resolution images, and a 20,000-image small-release set
for scaling. Each prepare row is a complete, fresh ``prepare`` (index, fingerprint, decode,
resize, checksum, write, fsync, manifest) timed end to end with the page cache warm; every figure
is the best of ``--repeat`` rounds, each round running every contender of a table once (so that
a burst of load on a shared machine hurts all alike). Rows and targets (issue 8):

small release, per resize mode, against "decode + area":
- limit: libjpeg-turbo (simplejpeg) grayscale decode + OpenCV INTER_AREA resize to the mode's
  geometry, from memory, one core. Target: prepare, 1 worker >= 0.9 of it.
- limit: the same, reading each file through the release first (what prepare must also do);
- decode_resized alone: chexpert.imaging's decode + resize, from memory, one core;
- prepare, 1 and 2 workers.
full-resolution release: prepare against the JPEG Dataset (``JPEGDataset`` in a torch DataLoader,
  batches of 16, ``num_workers`` = workers) at the same worker count. Target: prepare >= it.
20,000 images (pad): prepare on 1 and 2 workers, and bare decode in 1 and 2 processes (how far
  this machine lets decoding scale). Target: near-linear, 2 workers >= 1.8x one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

_common.one_core()

import numpy as np  # noqa: E402

LARGE_IMAGES = 20_000
_LARGE_PATIENTS = 6_700  # a little over LARGE_IMAGES training images with synth's seed 0


def large_release() -> Path:
    """bench-data/large/CheXpert-v1.0-small with exactly 20,000 training images."""
    return _common.look_alike("large", LARGE_IMAGES, _LARGE_PATIENTS)


def geometry(h: int, w: int, size: int, mode: str) -> tuple[int, int]:
    if mode == "squash":
        return size, size
    scale = size / (max(h, w) if mode == "pad" else min(h, w))
    return round(h * scale), round(w * scale)


def decode_area(data: list[bytes], size: int, mode: str) -> Callable[[], int]:
    """The reference: simplejpeg decode (DCT-reduced as prepare does for big images) + cv2 INTER_AREA."""
    import cv2
    import simplejpeg

    from chexpert.imaging import _min_decoded

    headers = [simplejpeg.decode_jpeg_header(jpeg)[:2] for jpeg in data]

    def run() -> int:
        for jpeg, (h, w) in zip(data, headers):
            min_h, min_w = _min_decoded(size, mode, h, w)
            image = simplejpeg.decode_jpeg(jpeg, colorspace="GRAY", min_height=min_h, min_width=min_w)[:, :, 0]
            new_h, new_w = geometry(h, w, size, mode)
            if (new_h, new_w) != image.shape:
                cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        return len(data)

    return run


def read_decode_area(release: object, paths: list[str], size: int, mode: str) -> Callable[[], int]:
    """The reference with each file read through the release first (from the page cache)."""

    def run() -> int:
        data = [release.read_bytes(p) for p in paths]  # type: ignore[attr-defined]
        return decode_area(data, size, mode)()

    return run


def decode_resized(data: list[bytes], size: int, mode: str) -> Callable[[], int]:
    from chexpert.imaging import decode_resized as decode

    def run() -> int:
        for jpeg in data:
            decode(jpeg, size, mode)
        return len(data)

    return run


def prepare_run(root: Path, size: int, mode: str, workers: int) -> Callable[[], int]:
    """One complete, fresh prepare of the release's train split into a new folder (removed after)."""
    from chexpert.release import open_release
    from chexpert.store import prepare

    release = open_release(root)

    def run() -> int:
        out = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=_common.BENCH_DATA))
        try:
            store = prepare(release, out / "store", size=size, resize=mode, splits="train", workers=workers, mp_context="fork")
            return len(store)
        finally:
            shutil.rmtree(out)

    return run


def interleaved(contenders: dict[str, Callable[[], int]], rounds: int) -> dict[str, tuple[float, float]]:
    """Best images/s of each contender, by wall clock and by this process's CPU time, over
    ``rounds`` rounds that run every contender once: a burst of load on this shared machine
    then hurts every contender alike instead of whichever ran during it."""
    best = {name: (0.0, 0.0) for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            count = run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (max(best[name][0], count / wall), max(best[name][1], count / cpu if cpu > 0 else 0.0))
    return best


def jpeg_dataset_run(root: Path, size: int, workers: int) -> Callable[[], int]:
    """JPEGDataset through a torch DataLoader with ``workers`` worker processes, end to end (workers' start included)."""
    import torch
    from torch.utils.data import DataLoader

    from chexpert.frameworks.torch import JPEGDataset

    torch.set_num_threads(1)
    dataset = JPEGDataset(root, size=size, splits="train")

    def run() -> int:
        loader = DataLoader(dataset, batch_size=16, num_workers=workers, multiprocessing_context="fork")
        return sum(len(batch["image"]) for batch in loader)

    return run


_DATA: list[bytes] = []


def _decode_slice(bounds: tuple[int, int]) -> int:
    import simplejpeg

    for jpeg in _DATA[bounds[0] : bounds[1]]:
        simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
    return bounds[1] - bounds[0]


def bare_decode_processes(data: list[bytes], processes: int) -> int:
    """Bare decode in ``processes`` forked processes (started inside): how far this machine lets decoding scale."""
    _DATA[:] = data
    step = max(1, len(data) // (8 * processes))
    slices = [(start, min(start + step, len(data))) for start in range(0, len(data), step)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return sum(pool.map(_decode_slice, slices, chunksize=1))


def small(size: int, modes: list[str], repeat: int) -> list[str]:
    from chexpert.release import open_release

    root = _common.small_release()
    release = open_release(root)
    paths = [str(p) for p in release.index("train").path]
    data = [release.read_bytes(p) for p in paths]
    verdicts = []
    for mode in modes:
        one_core = interleaved(
            {
                "decode+area": decode_area(data, size, mode),
                "read+decode+area": read_decode_area(release, paths, size, mode),
                "decode_resized": decode_resized(data, size, mode),
                "prepare 1": prepare_run(root, size, mode, 1),
            },
            repeat,
        )
        two = interleaved({"prepare 2": prepare_run(root, size, mode, 2)}, repeat)["prepare 2"][0]
        rows = [
            (f"limit: decode + INTER_AREA, {mode} (1 core)", one_core["decode+area"][0]),
            (f"limit: read file + decode + INTER_AREA, {mode}", one_core["read+decode+area"][0]),
            (f"decode_resized alone, {mode} (1 core)", one_core["decode_resized"][0]),
            (f"prepare {mode}, 1 worker", one_core["prepare 1"][0]),
            (f"prepare {mode}, 2 workers", two),
        ]
        _common.table(f"small-release look-alike: {len(paths):,} images ({np.mean([len(d) for d in data]) / 1e3:.0f} kB mean) -> {size}x{size} {mode}",
                      rows, {"decode+area": rows[0][1], "read+decode+area": rows[1][1]})  # fmt: skip
        cpu = {name: rate for name, (_, rate) in one_core.items()}
        print(f"{'  by CPU time (1 core): prepare / decode+area':48s} {cpu['prepare 1'] / cpu['decode+area']:10.2f}x"
              f"   prepare / read+decode+area {cpu['prepare 1'] / cpu['read+decode+area']:.2f}x")  # fmt: skip
        verdicts.append(
            f"target: prepare {mode}, 1 worker >= 0.90 of decode + INTER_AREA: {rows[3][1] / rows[0][1]:.2f} by wall clock, "
            f"{cpu['prepare 1'] / cpu['decode+area']:.2f} by CPU time ({cpu['prepare 1'] / cpu['read+decode+area']:.2f} of read + decode + INTER_AREA)"
        )
    return verdicts


def full(size: int, repeat: int) -> list[str]:
    from chexpert.release import open_release

    root = _common.full_release()
    release = open_release(root)
    paths = [str(p) for p in release.index("train").path]
    data = [release.read_bytes(p) for p in paths]
    rows = [("limit: decode (DCT 1/8) + INTER_AREA, pad (1 core)", _common.rate(decode_area(data, size, "pad"), repeat=repeat))]
    verdicts = []
    for workers in (1, 2):
        best = interleaved({"jpeg": jpeg_dataset_run(root, size, workers), "prepare": prepare_run(root, size, "pad", workers)}, repeat)
        jpeg, ours = best["jpeg"][0], best["prepare"][0]
        rows += [(f"JPEG Dataset, DataLoader num_workers={workers}", jpeg), (f"prepare pad, {workers} worker{'s' * (workers > 1)}", ours)]
        verdicts.append(f"target: full-resolution prepare >= JPEG Dataset at {workers} worker{'s' * (workers > 1)}: {ours / jpeg:.2f}x")
    _common.table(f"full-resolution look-alike: {len(paths):,} images ({np.mean([len(d) for d in data]) / 1e6:.1f} MB mean) -> {size}x{size} pad",
                  rows, {"decode+area": rows[0][1]})  # fmt: skip
    return verdicts


def large(size: int, repeat: int) -> list[str]:
    from chexpert.release import open_release

    root = large_release()
    release = open_release(root)
    data = [release.read_bytes(str(p)) for p in release.index("train").path]
    best = interleaved(
        {
            "bare 1": lambda: bare_decode_processes(data, 1),
            "bare 2": lambda: bare_decode_processes(data, 2),
            "prepare 1": prepare_run(root, size, "pad", 1),
            "prepare 2": prepare_run(root, size, "pad", 2),
        },
        repeat,
    )
    rows = [
        ("limit: bare decode, 1 process", best["bare 1"][0]),
        ("limit: bare decode, 2 processes", best["bare 2"][0]),
        ("prepare pad, 1 worker", best["prepare 1"][0]),
        ("prepare pad, 2 workers", best["prepare 2"][0]),
    ]
    _common.table(f"scaling: {len(data):,} small-release look-alike images -> {size}x{size} pad", rows, {"1 worker": rows[2][1]})
    return [
        f"target: prepare 2 workers / 1 >= 1.8 (near-linear): {rows[3][1] / rows[2][1]:.2f}x "
        f"(this machine's bare decode scales {rows[1][1] / rows[0][1]:.2f}x; {os.cpu_count()} cores, shared)"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--modes", nargs="+", default=["pad", "crop", "squash"])
    parser.add_argument("--releases", nargs="+", choices=["small", "full", "large"], default=["small", "full", "large"])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per row (default 3)")
    args = parser.parse_args()
    print(f"bench/prepare.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    verdicts = []
    if "small" in args.releases:
        verdicts += small(args.size, args.modes, args.repeat)
    if "full" in args.releases:
        verdicts += full(args.size, args.repeat)
    if "large" in args.releases:
        verdicts += large(args.size, max(1, args.repeat - 1))
    print()
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
