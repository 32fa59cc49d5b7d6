"""How fast are 2,000 paired bootstrap resamples of AUROC over 500 studies x 14 observations?

Run: python bench/evaluate.py   (one core: BLAS/OpenMP threads are pinned to 1)

The issue's target is under 2 seconds. The peer is the loop every repository writes: draw the
studies of a resample, call ``sklearn.metrics.roc_auc_score`` per observation and per model. It
is timed on a subset of resamples (the same index matrix) and extrapolated to 2,000; on that
subset both give the same AUROCs, which the script checks before printing.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from chexpert import schema  # noqa: E402
from chexpert.evaluate import compare, evaluate, metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402

STUDIES, RESAMPLES, SEED = 500, 2000, 0
PEER_RESAMPLES = 100


def make_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (studies, 14) with the test set's spread of prevalences; two models' scores, rounded to make ties."""
    rng = np.random.default_rng(SEED)
    prevalence = np.linspace(0.03, 0.45, len(schema.OBSERVATIONS))
    labels = rng.random((STUDIES, len(prevalence))) < prevalence
    a = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.5 * labels))), 3)
    b = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.2 * labels))), 3)
    return labels, a, b


def ours(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Paired bootstrap: one count matrix, every task, both models; returns the (resamples, tasks) differences."""
    counts = metrics.bootstrap_counts(STUDIES, RESAMPLES, SEED)
    return np.stack(
        [metrics.bootstrap_auroc(a[:, j], labels[:, j], counts) - metrics.bootstrap_auroc(b[:, j], labels[:, j], counts) for j in range(labels.shape[1])],
        axis=1,
    )


def sklearn_loop(labels: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int) -> np.ndarray:
    """The usual loop over resamples and tasks, on the same draws as ours (the first ``resamples`` rows)."""
    from sklearn.metrics import roc_auc_score

    draws = np.random.default_rng(SEED).integers(0, STUDIES, size=(RESAMPLES, STUDIES))[:resamples]
    out = np.full((resamples, labels.shape[1]), np.nan)
    for r, rows in enumerate(draws):
        for j in range(labels.shape[1]):
            y = labels[rows, j]
            if y.all() or not y.any():
                continue
            out[r, j] = roc_auc_score(y, a[rows, j]) - roc_auc_score(y, b[rows, j])
    return out


def main() -> None:
    labels, a, b = make_data()
    differences = ours(labels, a, b)
    start = time.perf_counter()
    reference = sklearn_loop(labels, a, b, PEER_RESAMPLES)
    peer_seconds = (time.perf_counter() - start) * RESAMPLES / PEER_RESAMPLES
    np.testing.assert_allclose(differences[:PEER_RESAMPLES], reference, atol=1e-12)
    ours_seconds = best_of(lambda: ours(labels, a, b))

    studies = [f"test/patient{64741 + i}/study1" for i in range(STUDIES)]
    truth = pd.DataFrame(labels.astype(int), columns=list(schema.OBSERVATIONS)).assign(Study=studies)
    first = pd.DataFrame(a, columns=list(schema.OBSERVATIONS)).assign(Study=studies)
    second = pd.DataFrame(b, columns=list(schema.OBSERVATIONS)).assign(Study=studies)
    compare_seconds = best_of(lambda: compare(first, second, truth, bootstrap=RESAMPLES, seed=SEED))
    evaluate_seconds = best_of(lambda: evaluate(first, truth, bootstrap=RESAMPLES, seed=SEED))

    print(f"Paired bootstrap of AUROC: {RESAMPLES:,} resamples x {STUDIES} studies x {len(schema.OBSERVATIONS)} observations x 2 models, one core")
    print(f"{'':60s} {'seconds':>8s} {'vs chexpert':>12s}")
    rows = [
        ("chexpert metrics.bootstrap_auroc (counts + 28 calls)", ours_seconds),
        (f"sklearn roc_auc_score loop ({PEER_RESAMPLES} resamples timed, x{RESAMPLES // PEER_RESAMPLES})", peer_seconds),
        ("chexpert.evaluate.compare (DataFrames in; DeLong too)", compare_seconds),
        ("chexpert.evaluate.evaluate (one model; AUPRC bootstrap too)", evaluate_seconds),
    ]
    for name, seconds in rows:
        print(f"{name:60s} {seconds:8.3f} {seconds / ours_seconds:11.1f}x")
    print(f"\nsklearn loop / chexpert: {peer_seconds / ours_seconds:,.0f}x faster; target < 2 s: {'met' if ours_seconds < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
