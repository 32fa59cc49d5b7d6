"""The main job end to end on a look-alike release: ``python -m chexpert.demo OUT``.

synth -> info -> verify --decode -> prepare -> train a tiny NumPy model from the store under the
U-Ones policy -> score it on the validation studies with ``evaluate`` (and plots, when matplotlib
is installed). Every step is the same call a user makes on the real data.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chexpert import schema

__all__ = ["main"]


def _step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def _features(images: np.ndarray, pool: int) -> np.ndarray:
    """Average-pooled pixels in [0, 1], one row per image (a deliberately small model)."""
    n, h, w = images.shape
    pooled = images.reshape(n, h // pool, pool, w // pool, pool).mean(axis=(2, 4), dtype=np.float32)
    flat = pooled.reshape(n, -1) / 255.0
    return np.hstack([flat, np.ones((n, 1), np.float32)])


def _train_logistic(x: np.ndarray, y: np.ndarray, mask: np.ndarray, *, steps: int = 300, lr: float = 0.5) -> np.ndarray:
    """Per-observation logistic regression by full-batch gradient descent, masked entries ignored."""
    mean, std = x[:, :-1].mean(axis=0), x[:, :-1].std(axis=0) + 1e-6
    x = np.hstack([(x[:, :-1] - mean) / std, x[:, -1:]])
    weights = np.zeros((x.shape[1], y.shape[1]), np.float32)
    counted = np.maximum(mask.sum(axis=0), 1)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ weights)))
        grad = x.T @ ((p - y) * mask) / counted + 1e-3 * weights
        weights -= lr * grad
    return np.vstack([weights[:-1] / std[:, None], weights[-1:] - (mean / std) @ weights[:-1]])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo into ``OUT`` (default ``demo-data``); reuses a release already there.

    >>> main(["demo-data"])  # doctest: +SKIP
    0
    """
    from chexpert.cli import main as cli
    from chexpert.policy import apply as apply_policy
    from chexpert.release import SYNTH_MARKER, open_release
    from chexpert.store import open_store, prepare

    parser = argparse.ArgumentParser(prog="python -m chexpert.demo", description=__doc__)
    parser.add_argument("out", nargs="?", default="demo-data")
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--valid-patients", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)

    root = out / "CheXpert-v1.0-small"
    _step(f"synth: a look-alike CheXpert-v1.0-small in {root}")
    if (root / SYNTH_MARKER).exists():
        print("(already there; delete it to make a new one)")
    else:
        cli(["synth", str(out), "--release", "small", "--patients", str(args.patients),
             "--valid-patients", str(args.valid_patients), "--seed", str(args.seed), "--workers", "2"])  # fmt: skip

    _step("chexpert info")
    cli(["info", str(root)])

    _step("chexpert verify --decode")
    if cli(["verify", str(root), "--decode"]) != 0:
        print("verify found problems; stopping", file=sys.stderr)
        return 1

    _step("chexpert prepare (64 x 64, padded)")
    release = open_release(root)
    store_path = out / "store-64"
    prepare(release, store_path, size=64, resize="pad", workers=2)
    store = open_store(store_path, source=release)
    print(store)

    _step("train: logistic regression on 8x8-pooled pixels, U-Ones, frontal training images")
    tasks = schema.COMPETITION_TASKS
    train_rows = np.flatnonzero((store.index.split == schema.SPLITS.index("train")) & store.index.frontal)
    targets = apply_policy("u-ones", store.index.labels[train_rows])
    columns = [targets.observations.index(t) for t in tasks]
    x = _features(np.asarray(store.images[np.sort(train_rows)]), pool=8)
    weights = _train_logistic(x, targets.targets[:, columns], targets.mask[:, columns].astype(np.float32))
    print(f"{len(train_rows):,} images, {x.shape[1] - 1} features, tasks: {', '.join(tasks)}")

    _step("predict the validation images and score per study (chexpert evaluate)")
    valid_rows = np.flatnonzero(store.index.split == schema.SPLITS.index("valid"))
    scores = 1 / (1 + np.exp(-(_features(np.asarray(store.images[valid_rows]), pool=8) @ weights)))
    import pandas as pd

    predictions = pd.DataFrame(scores, columns=list(tasks))
    predictions.insert(0, "Path", store.index.path[valid_rows].astype(object))
    predictions_csv = out / "predictions.csv"
    predictions.to_csv(predictions_csv, index=False)
    command = ["evaluate", "--predictions", str(predictions_csv), "--truth", str(root / "valid.csv"), "--bootstrap", "1000"]
    if importlib.util.find_spec("matplotlib") is not None:
        command += ["--plots", str(out / "plots")]
    cli(command)
    print(f"\nDone. Predictions: {predictions_csv}" + (f"; plots: {out / 'plots'}" if "--plots" in command else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
