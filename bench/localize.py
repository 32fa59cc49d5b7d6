"""How fast are CheXlocalize's run-length masks decoded in numpy, against pycocotools (C)?

Run: python bench/localize.py   (one core)

The set is the size of CheXlocalize's test segmentations: 500 images x 10 observations at
2,320 x 2,828 pixels, a third of the masks non-empty (blobs and thin lines, as drawn findings
give). Both decoders must give the same masks, which the script checks before printing.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from chexpert.localize import decode_rle, encode_rle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402

H, W = 2320, 2828
IMAGES, TASKS = 500, 10


def masks(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    """``n`` encoded masks: empty, an ellipse, or a polyline band."""
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    shapes = []
    for k in range(24):  # a few distinct shapes, reused: encoding is not what is measured
        mask = np.zeros((H, W), bool)
        if k % 3 == 1:
            cy, cx, ry, rx = rng.uniform(500, 1800), rng.uniform(500, 2300), rng.uniform(80, 500), rng.uniform(80, 500)
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        elif k % 3 == 2:
            x = np.linspace(200, 2600, 800).astype(int)
            y = (600 + 300 * np.sin(x / 400 + k)).astype(int)
            for d in range(-12, 13):
                mask[np.clip(y + d, 0, H - 1), x] = True
        shapes.append(encode_rle(mask))
    for i in range(n):
        out.append(shapes[i % len(shapes)])
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    encoded = masks(rng, IMAGES * TASKS)
    sample = encoded[:60]
    ours = best_of(lambda: [decode_rle(m) for m in sample], repeat=3) / len(sample)
    try:
        from pycocotools import mask as coco
    except ImportError:
        coco = None
    print(f"{len(encoded):,} masks of {H}x{W} (CheXlocalize's test set: {IMAGES} images x {TASKS} observations)")
    print(f"  chexpert.localize.decode_rle (numpy): {ours * 1e3:8.2f} ms a mask, {ours * len(encoded):7.1f} s for the set")
    if coco is None:
        print("  pycocotools not installed: no peer measured")
        return
    as_bytes = [{"size": m["size"], "counts": str(m["counts"]).encode()} for m in sample]
    for m, b in zip(sample[:24], as_bytes[:24]):
        if not (decode_rle(m) == coco.decode(b).astype(bool)).all():
            raise SystemExit("decoders disagree")
    theirs = best_of(lambda: [coco.decode(b) for b in as_bytes], repeat=3) / len(sample)
    print(f"  pycocotools.mask.decode (C):          {theirs * 1e3:8.2f} ms a mask, {theirs * len(encoded):7.1f} s for the set")
    print(f"  ratio numpy / pycocotools: {ours / theirs:.2f}x the time")


if __name__ == "__main__":
    main()
