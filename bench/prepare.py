"""How fast does ``chexpert prepare`` turn JPEGs into a store, per core and on 2 workers?

Run: python bench/prepare.py [--size 320]

On the look-alikes in bench-data/ (generated once by chexpert.synth): the 5,000-image
small-release set and a few hundred full-resolution images. Each row is a complete, fresh
``prepare`` (index, fingerprint, decode, resize, write, fsync, manifest) timed end to end, with
the page cache warm. Rows:

- limit: bare libjpeg-turbo (simplejpeg) grayscale decode of the same JPEG bytes at full size,
  from memory, one core: the reference "bare decode" of the targets;
- limit: the same bare decode in 2 forked processes: how far this machine lets decoding scale;
- limit: writing the output pixels alone (pwrite of 256-image chunks into a new file, fsync),
  which prepare must also do: per image, prepare costs at least decode + write;
- decode_resized alone: chexpert.imaging's decode + resize per image, from memory, one core
  (what prepare does per image, without the store);
- prepare, resize pad / crop / squash, 1 and 2 workers.

Targets (issue 3): prepare >= 90% of bare decode per core; 2 workers >= 1.8x one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

_common.one_core()

import numpy as np  # noqa: E402


def bare_decode(data: list[bytes]) -> float:
    import simplejpeg

    def run() -> int:
        for jpeg in data:
            simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
        return len(data)

    return _common.rate(run, repeat=2)


_DATA: list[bytes] = []


def _decode_slice(bounds: tuple[int, int]) -> int:
    import simplejpeg

    for jpeg in _DATA[bounds[0] : bounds[1]]:
        simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
    return bounds[1] - bounds[0]


def bare_decode_processes(data: list[bytes], processes: int) -> float:
    """Bare decode in ``processes`` forked processes: how far this machine lets decoding scale."""
    import multiprocessing

    _DATA[:] = data
    step = max(1, len(data) // (8 * processes))
    slices = [(start, min(start + step, len(data))) for start in range(0, len(data), step)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return _common.rate(lambda: sum(pool.map(_decode_slice, slices, chunksize=1)), repeat=2)


def write_limit(n: int, size: int) -> float:
    """Images per second that writing the pixels alone allows: pwrite of 256-image chunks into a new file."""
    import os

    chunk = np.random.default_rng(0).integers(0, 256, (256, size, size), dtype=np.uint8)

    def run() -> int:
        path = Path(tempfile.mkdtemp(prefix="bench-write-", dir=_common.BENCH_DATA)) / "images.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            for start in range(0, n, len(chunk)):
                os.pwrite(fd, memoryview(chunk[: n - start]).cast("B"), start * size * size)
            os.fsync(fd)
        finally:
            os.close(fd)
            shutil.rmtree(path.parent)
        return n

    return _common.rate(run, repeat=2)


def decode_resized(data: list[bytes], size: int, mode: str) -> float:
    from chexpert.imaging import decode_resized as decode

    def run() -> int:
        for jpeg in data:
            decode(jpeg, size, mode)
        return len(data)

    return _common.rate(run, repeat=2)


def prepare_rate(root: Path, size: int, mode: str, workers: int, repeat: int) -> float:
    from chexpert.release import open_release
    from chexpert.store import prepare

    release = open_release(root)
    best = 0.0
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=_common.BENCH_DATA))
        try:
            start = time.perf_counter()
            store = prepare(release, out / "store", size=size, resize=mode, splits="train", workers=workers)
            best = max(best, len(store) / (time.perf_counter() - start))
        finally:
            shutil.rmtree(out)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--modes", nargs="+", default=["pad", "crop", "squash"])
    parser.add_argument("--releases", nargs="+", choices=["small", "full"], default=["small", "full"])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per row (default 3)")
    args = parser.parse_args()
    from chexpert.release import open_release

    releases = {"small": ("small-release look-alike", _common.small_release), "full": ("full-resolution look-alike", _common.full_release)}
    for label, make in (releases[name] for name in args.releases):
        root = make()
        release = open_release(root)
        paths = release.index("train").path
        data = [release.read_bytes(str(p)) for p in paths]
        bare = bare_decode(data)
        rows: list[tuple[str, float]] = [
            ("limit: bare simplejpeg GRAY decode (1 core)", bare),
            ("limit: bare decode in 2 processes", bare_decode_processes(data, 2)),
            ("limit: writing the pixels (pwrite + fsync)", write_limit(len(paths), args.size)),
        ]
        scaling: dict[str, float] = {}
        for mode in args.modes:
            rows.append((f"decode_resized alone, {mode} (1 core)", decode_resized(data, args.size, mode)))
            one = prepare_rate(root, args.size, mode, 1, args.repeat)
            two = prepare_rate(root, args.size, mode, 2, args.repeat)
            rows += [(f"prepare {mode}, 1 worker", one), (f"prepare {mode}, 2 workers", two)]
            scaling[mode] = two / one
        title = f"{label}: {len(paths):,} images ({np.mean([len(d) for d in data]) / 1e3:.0f} kB mean) -> {args.size}x{args.size}"
        _common.table(title, rows, {"bare decode": bare})
        print(f"{'scaling of bare decode, 2 processes / 1':48s} {dict(rows)['limit: bare decode in 2 processes'] / bare:10.2f}x")
        for mode, ratio in scaling.items():
            print(f"{'scaling of prepare, 2 workers / 1, ' + mode:48s} {ratio:10.2f}x")


if __name__ == "__main__":
    main()
