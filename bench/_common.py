"""Shared by the loader and prepare benchmarks: the look-alike releases in bench-data/ and timing.

The releases are generated once by ``chexpert.synth`` (seed 0) into ``bench-data/`` (git-ignored)
and reused by later runs:

- ``small``: a small-release look-alike whose train.csv is cut to exactly 5,000 images (the
  issue's measurement set); valid.csv is kept, as TFDS's builder wants it;
- ``full``: a full-resolution look-alike of a few hundred images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DATA = Path(__file__).resolve().parent.parent / "bench-data"
SMALL_IMAGES = 5_000
# Patients that give a little over SMALL_IMAGES training images with synth's seed 0.
_SMALL_PATIENTS = 1_650
_FULL_PATIENTS = 70


def one_core() -> None:
    """Pin every library to one thread: the benchmarks measure per-core throughput."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[name] = "1"
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def small_release() -> Path:
    """bench-data/small/CheXpert-v1.0-small with exactly 5,000 training images."""
    return look_alike("small", SMALL_IMAGES, _SMALL_PATIENTS)


def look_alike(name: str, images: int, patients: int) -> Path:
    """bench-data/NAME/CheXpert-v1.0-small with exactly ``images`` training images (made once).

    ``patients`` must give at least that many images; train.csv is cut to ``images`` rows.
    """
    root = BENCH_DATA / name / "CheXpert-v1.0-small"
    csv = root / "train.csv"
    if not csv.exists() or csv.read_bytes().count(b"\n") != images + 1:
        from chexpert.synth import synthesize

        print(f"generating the {images:,}-image small look-alike into {root.parent} (once) ...", flush=True)
        synthesize(root.parent, release="small", patients=patients, seed=0, workers=os.cpu_count() or 1, overwrite=True)
        lines = (root / "train.csv").read_bytes().splitlines(keepends=True)
        if len(lines) - 1 < images:
            raise RuntimeError(f"synth gave {len(lines) - 1} training images, fewer than {images}; ask for more patients")
        (root / "train.csv").write_bytes(b"".join(lines[: images + 1]))
    return root


def full_release() -> Path:
    """bench-data/full/CheXpert-v1.0: a few hundred full-resolution images."""
    root = BENCH_DATA / "full" / "CheXpert-v1.0"
    if not (root / "train.csv").exists():
        from chexpert.synth import synthesize

        print(f"generating the full-resolution look-alike into {root.parent} (once) ...", flush=True)
        synthesize(root.parent, release="full", patients=_FULL_PATIENTS, seed=0, workers=os.cpu_count() or 1, overwrite=True)
    return root


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fewest seconds one call of ``fn`` took over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rate(fn: Callable[[], int], *, repeat: int = 3, min_seconds: float = 0.0) -> float:
    """Best images per second over ``repeat`` runs of ``fn`` (which returns how many images it made)."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        while time.perf_counter() - start < min_seconds:
            count += fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


def table(title: str, rows: list[tuple[str, float]], reference: dict[str, float]) -> None:
    """Print images/s per row, and the ratio of each to every reference rate."""
    print(f"\n{title}")
    header = f"{'':48s} {'img/s':>10s}" + "".join(f" {'vs ' + name:>18s}" for name in reference)
    print(header)
    print("-" * len(header))
    for name, value in rows:
        ratios = "".join(f" {value / ref:17.2f}x" if ref else f" {'-':>18s}" for ref in reference.values())
        print(f"{name:48s} {value:10,.0f}{ratios}")
