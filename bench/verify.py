"""How long does verifying a 20,000-image small-release look-alike take?

Run: python bench/verify.py [--images 20000]
The look-alike is generated once into bench-data/ (git-ignored) and reused.

Compared in the same run:
- structural verify (CSV checks + existence by listing folders) against the naive way, one
  os.path.exists per CSV row, which is what a loop over the CSV does;
- verify --decode on 1 and 2 workers against bare libjpeg-turbo decoding of the same files
  (the physical limit: verify decodes and checks every header on top of that).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import best_of

import chexpert
from chexpert.release import SYNTH_MARKER
from chexpert.synth import synthesize

HERE = Path(__file__).resolve().parent


def look_alike(images: int) -> Path:
    patients = max(1, round(images / 3.46))  # about 3.46 images per patient in the real train.csv
    root = HERE.parent / "bench-data" / f"verify-{patients}"
    release = root / "CheXpert-v1.0-small"
    if (release / "train.csv").exists() and not (release / SYNTH_MARKER).exists():
        # Written before synth left its marker: verify would check it against the published counts.
        raise SystemExit(f"{root} was written by an older chexpert synth; delete it and run again")
    if not (release / "train.csv").exists():
        print(f"generating a look-alike with {patients:,} patients in {root} (once) ...", flush=True)
        synthesize(root, release="small", patients=patients, seed=0, workers=os.cpu_count() or 1)
    return release


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args()
    root = look_alike(args.images)
    release = chexpert.open(root)
    paths = release.index().path.tolist()
    print(f"{len(paths):,} images at {root}")

    rows: list[tuple[str, float]] = []
    report = chexpert.verify(root)  # once first: imports, and the page cache warmed for both contenders
    assert report.ok, report.problems[:3]
    rows.append(("verify (structural: CSVs + listing), best of 3", best_of(lambda: chexpert.verify(root))))
    base = root.parent
    rows.append(("naive: os.path.exists per row, best of 3", best_of(lambda: [os.path.exists(base / p) for p in paths])))
    for workers in (1, 2):
        seconds, report = timed(lambda workers=workers: chexpert.verify(root, decode=True, workers=workers))
        assert report.ok and report.decoded == len(paths)
        rows.append((f"verify --decode, {workers} worker(s)", seconds))

    import simplejpeg

    def bare() -> None:
        for p in paths:
            with open(base / p, "rb") as f:
                simplejpeg.decode_jpeg(f.read(), colorspace="GRAY")

    seconds, _ = timed(bare)
    rows.append(("bare simplejpeg decode, 1 core", seconds))

    print(f"{'':42s} {'seconds':>8s} {'img/s':>9s}")
    for name, seconds in rows:
        print(f"{name:42s} {seconds:8.2f} {len(paths) / seconds:9,.0f}")
    structural, naive = rows[0][1], rows[1][1]
    print(f"structural verify vs one-stat-per-row existence check: {naive / structural:.2f}x")
    print(f"verify --decode on 1 worker vs bare decode: {rows[-1][1] / rows[2][1]:.2f} of bare decode speed")
    print(f"verify --decode scaling 1 -> 2 workers: {rows[2][1] / rows[3][1]:.2f}x")


if __name__ == "__main__":
    main()
