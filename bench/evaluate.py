"""How fast are 2,000 paired bootstrap resamples of AUROC over 500 studies x 14 observations, and how much memory does the bootstrap take at a million studies?

Run: python bench/evaluate.py   (one core: BLAS/OpenMP threads are pinned to 1)

Speed. The issue's target is under 2 seconds. The peer is the loop every repository writes: draw
the studies of a resample, call ``sklearn.metrics.roc_auc_score`` per observation and per model.
It is timed on a subset of resamples (the same index matrix) and extrapolated to 2,000; on that
subset both give the same AUROCs, which the script checks before printing. chexpert's path is
the one ``evaluate``/``compare`` take: resamples drawn in blocks (``metrics.bootstrap_blocks``),
each task sorted once (``metrics.SortedScores``).

Memory. Peak memory (tracemalloc: every numpy buffer) of drawing and scoring one observation's
bootstrap at a million studies, for chexpert's blocks and for the single ``(resamples, n)`` draw
that chexpert made before (a draw, its histogram, an int32 copy and its transpose, at once). Both
are measured at a few resamples (the old way allocates 24 bytes per study and resample) and
extrapolated to 2,000 resamples: the old way grows with resamples, the blocks do not. Both give
the same AUROCs, which the script checks.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from chexpert import schema  # noqa: E402
from chexpert.evaluate import compare, evaluate, metrics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402

STUDIES, RESAMPLES, SEED = 500, 2000, 0
PEER_RESAMPLES = 100
MANY_STUDIES, FEW_RESAMPLES = 1_000_000, 24


def make_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (studies, 14) with the test set's spread of prevalences; two models' scores, rounded to make ties."""
    rng = np.random.default_rng(SEED)
    prevalence = np.linspace(0.03, 0.45, len(schema.OBSERVATIONS))
    labels = rng.random((STUDIES, len(prevalence))) < prevalence
    a = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.5 * labels))), 3)
    b = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.2 * labels))), 3)
    return labels, a, b


def ours(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Paired bootstrap as compare() does it: blocks of resamples, each task sorted once; (resamples, tasks) differences."""
    k = labels.shape[1]
    tasks = [(metrics.SortedScores(a[:, j], labels[:, j]), metrics.SortedScores(b[:, j], labels[:, j])) for j in range(k)]
    out = np.empty((RESAMPLES, k))
    for columns, counts in metrics.bootstrap_blocks(STUDIES, RESAMPLES, SEED):
        for j, (first, second) in enumerate(tasks):
            out[columns, j] = first.bootstrap_auroc(counts) - second.bootstrap_auroc(counts)
    return out


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


def single_draw_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """bootstrap_counts as chexpert drew it before blocks: one (resamples, n) int64 index matrix."""
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int64)
    draws += np.arange(resamples, dtype=np.int64)[:, None] * n
    counts = np.bincount(draws.ravel(), minlength=resamples * n).astype(np.int32).reshape(resamples, n)
    return np.ascontiguousarray(counts.T)


def peak(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """Peak traced bytes while ``fn`` runs (beyond what was allocated before), and its result."""
    tracemalloc.start()
    try:
        result = fn()
        return float(tracemalloc.get_traced_memory()[1]), result
    finally:
        tracemalloc.stop()


def memory_rows() -> list[tuple[str, float, float, float]]:
    """(name, peak bytes measured, peak bytes at 2,000 resamples, seconds per 1,000 resamples) for both ways."""
    rng = np.random.default_rng(1)
    labels = rng.random(MANY_STUDIES) < 0.2
    scores = np.round(rng.random(MANY_STUDIES) + 0.3 * labels, 3)

    def blocks() -> np.ndarray:
        task = metrics.SortedScores(scores, labels)
        out = np.empty(FEW_RESAMPLES)
        for columns, counts in metrics.bootstrap_blocks(MANY_STUDIES, FEW_RESAMPLES, SEED):
            out[columns] = task.bootstrap_auroc(counts)
        return out

    def single() -> np.ndarray:
        return metrics.bootstrap_auroc(scores, labels, single_draw_counts(MANY_STUDIES, FEW_RESAMPLES, SEED))

    rows, results = [], []
    for name, fn, grows in (
        ("chexpert bootstrap_blocks + SortedScores", blocks, False),
        ("one (resamples, n) draw (chexpert before; 24 B/study/resample)", single, True),
    ):
        start = time.perf_counter()
        used, result = peak(fn)
        seconds = time.perf_counter() - start
        results.append(result)
        rows.append((name, used, used * RESAMPLES / FEW_RESAMPLES if grows else used, seconds * 1000 / FEW_RESAMPLES))
    np.testing.assert_array_equal(results[0], results[1])
    return rows


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
    print(f"{'':64s} {'seconds':>8s} {'vs chexpert':>12s}")
    rows = [
        ("chexpert bootstrap_blocks + SortedScores (28 tasks)", ours_seconds),
        (f"sklearn roc_auc_score loop ({PEER_RESAMPLES} resamples timed, x{RESAMPLES // PEER_RESAMPLES})", peer_seconds),
        ("chexpert.evaluate.compare (DataFrames in; DeLong too)", compare_seconds),
        ("chexpert.evaluate.evaluate (one model; AUPRC bootstrap too)", evaluate_seconds),
    ]
    for name, seconds in rows:
        print(f"{name:64s} {seconds:8.3f} {seconds / ours_seconds:11.1f}x")
    print(f"\nsklearn loop / chexpert: {peer_seconds / ours_seconds:,.0f}x faster; target < 2 s: {'met' if ours_seconds < 2 else 'MISSED'}")

    print(f"\nBootstrap memory at {MANY_STUDIES:,} studies, one observation (peak traced MiB; measured at {FEW_RESAMPLES} resamples)")
    print(f"{'':64s} {'measured':>9s} {'at 2,000':>10s} {'s/1,000 resamples':>18s}")
    memory = memory_rows()
    for name, measured, extrapolated, seconds in memory:
        print(f"{name:64s} {measured / 2**20:9.0f} {extrapolated / 2**20:10.0f} {seconds:18.1f}")
    print(
        f"one draw / blocks at 2,000 resamples: {memory[1][2] / memory[0][2]:,.0f}x the memory; time per resample: blocks / one draw {memory[0][3] / memory[1][3]:.2f}x"
    )


if __name__ == "__main__":
    main()
