"""Ranking metrics in numpy: AUROC, average precision, ROC/PR curves, bootstrap and DeLong.

Every function takes study-level scores (float) and labels (bool) as 1-D arrays of equal length.
Ties are handled as scikit-learn does: AUROC counts a tied positive/negative pair as one half
(the trapezoid under the ROC curve, whose tied stretches are diagonal), average precision steps
once per distinct score.

The bootstrap works on a matrix of resample *counts* (how often each study was drawn in each
resample) rather than on resampled copies: each task is sorted once and all resamples are scored
together with cumulative sums in integer arithmetic, so 2,000 resamples cost a few array passes.
The matrix is drawn and scored in blocks of resamples (:func:`bootstrap_blocks`), so memory stays
bounded at any number of studies, and the numbers do not depend on the block size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from statistics import NormalDist

import numpy as np

from chexpert.errors import InvalidArgumentError
from chexpert.validation import check_int

__all__ = [
    "UndefinedMetricWarning",
    "FewPositivesWarning",
    "MIN_POSITIVES",
    "midranks",
    "auroc",
    "average_precision",
    "roc_curve",
    "precision_recall_curve",
    "BLOCK_BYTES",
    "bootstrap_blocks",
    "bootstrap_counts",
    "SortedScores",
    "bootstrap_auroc",
    "bootstrap_average_precision",
    "bootstrap_roc_vertices",
    "percentile_interval",
    "delong_components",
    "delong",
    "delong_interval",
    "delong_test",
    "CALIBRATION_BINS",
    "brier_score",
    "reliability_bins",
    "expected_calibration_error",
]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data given (e.g. AUROC of a task with one class only); it is NaN."""


class FewPositivesWarning(UndefinedMetricWarning):
    """An observation has fewer than :data:`MIN_POSITIVES` positive (or negative) studies: its AUROC is
    reported, but no interval, since a bootstrap or DeLong interval from so few studies is narrow and
    meaningless."""


#: Fewest positive (and negative) studies for which ``evaluate`` reports intervals.
MIN_POSITIVES = 5


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise InvalidArgumentError(f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise InvalidArgumentError("labels must be 0/1 or boolean")
        labels = labels.astype(bool)
    return scores, labels


def warn_undefined(message: str) -> None:
    """Warn that a metric is undefined (an :class:`UndefinedMetricWarning` at the caller's caller)."""
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks.

    >>> midranks(np.array([0.3, 0.1, 0.3, 0.7])).tolist()
    [2.5, 1.0, 2.5, 4.0]
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / (positives x negatives), ties count one half).

    Equal to ``sklearn.metrics.roc_auc_score``; NaN with :class:`UndefinedMetricWarning` when the
    labels hold one class only.

    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    scores, labels = _check(scores, labels)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        warn_undefined(f"AUROC is undefined with {positives} positives and {negatives} negatives")
        return math.nan
    rank_sum = midranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def _descending_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order sorting scores from high to low, and the end (exclusive) of each run of equal scores."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    ends = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, len(scores)]
    return order, ends


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC vertices as counts: ``(false_positives, true_positives, thresholds)``.

    Vertex k predicts positive every study scoring at least ``thresholds[k]``; vertex 0 is the
    origin (threshold +inf). Counts are integers so that callers can compare exactly; divide by the
    numbers of negatives and positives for rates. As ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``.

    >>> fp, tp, thr = roc_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    >>> fp.tolist(), tp.tolist(), thr.tolist()
    ([0, 0, 1, 2], [0, 1, 2, 2], [inf, 0.9, 0.5, 0.1])
    """
    scores, labels = _check(scores, labels)
    order, ends = _descending_groups(scores)
    cumulative_tp = np.cumsum(labels[order], dtype=np.int64)
    tp = np.r_[0, cumulative_tp[ends - 1]]
    fp = np.r_[0, ends] - tp
    thresholds = np.r_[np.inf, scores[order][ends - 1]]
    return fp, tp, thresholds


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` from the highest threshold down, one point per distinct score.

    >>> p, r, t = precision_recall_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))
    >>> p.tolist(), r.tolist()
    ([1.0, 0.6666666666666666, 0.5], [0.5, 1.0, 1.0])
    """
    fp, tp, thresholds = roc_curve(scores, labels)
    positives = tp[-1]
    precision = tp[1:] / (tp[1:] + fp[1:])
    recall = tp[1:] / positives if positives else np.full(len(tp) - 1, np.nan)
    return precision, recall, thresholds[1:]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall gained) x precision, no interpolation.

    Equal to ``sklearn.metrics.average_precision_score``; NaN with :class:`UndefinedMetricWarning`
    when there is no positive.

    >>> average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.8333333333333333
    """
    scores, labels = _check(scores, labels)
    if not labels.any():
        warn_undefined("average precision is undefined without positives")
        return math.nan
    precision, recall, _ = precision_recall_curve(scores, labels)
    return float(max(0.0, np.sum(np.diff(recall, prepend=0.0) * precision)))


#: Bytes of resample draws held at once by :func:`bootstrap_blocks` (and so by evaluate and compare).
BLOCK_BYTES = 64 * 2**20


def bootstrap_blocks(
    n: int, resamples: int, seed: int | np.random.Generator | None = 0, *, block_bytes: int | None = None
) -> Iterator[tuple[slice, np.ndarray]]:
    """The columns of :func:`bootstrap_counts` a block at a time: ``(columns, counts)``, counts ``(n, b)`` int32.

    Resample b draws its ``n`` studies right after resample b - 1 from one generator, so the
    blocks put together are exactly ``bootstrap_counts(n, resamples, seed)`` whatever their size,
    and so is every result computed from them. A block holds ``b = max(2, block_bytes // (8 n))``
    resamples (``block_bytes`` defaults to :data:`BLOCK_BYTES`, 64 MiB), so memory stays bounded
    however many studies and resamples: drawing a block (the int64 draws, their histogram, the
    int32 block handed out) takes about ``3 x block_bytes``, about 200 MiB by default, up to four
    million studies, and about 48 bytes per study beyond (blocks of two resamples); one draw of
    all resamples at once took ``24 n resamples`` bytes, 45 GiB for 2,000 resamples of a million
    studies. A block never holds a single resample unless
    ``resamples`` is 1: summing one column, numpy's einsum takes another summation order, and
    average precision could change in the last bit.

    >>> [(columns.start, columns.stop, counts.shape) for columns, counts in bootstrap_blocks(5, 5, block_bytes=80)]
    [(0, 2, (5, 2)), (2, 5, (5, 3))]
    """
    n, resamples = check_int("n", n, low=1), check_int("resamples", resamples, low=0)
    rng = np.random.default_rng(seed)
    step = max(2, check_int("block_bytes", BLOCK_BYTES if block_bytes is None else block_bytes, low=1) // (8 * n))
    first = 0
    while first < resamples:
        b = min(step, resamples - first)
        if resamples - first - b == 1:
            b += 1  # no block of one resample (see above)
        # Drawing (b, n) after (first, n) continues the generator's stream exactly as one
        # (resamples, n) draw would: the same studies for every seed, whatever the block size.
        draws = rng.integers(0, n, size=(b, n), dtype=np.int64)
        draws += np.arange(b, dtype=np.int64)[:, None] * n
        histogram = np.bincount(draws.ravel(), minlength=b * n)
        del draws
        # One copy: transposed (a study's counts contiguous, for gathers by study) and narrowed.
        yield slice(first, first + b), np.array(histogram.reshape(b, n).T, dtype=np.int32, order="C")
        first += b


def bootstrap_counts(n: int, resamples: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """``(n, resamples)`` int32 matrix: how often each of ``n`` studies is drawn in each resample.

    Column b is the histogram of resample b's ``n`` draws with replacement (the rows of one
    ``(resamples, n)`` index matrix from ``np.random.default_rng(seed)``, drawn in blocks by
    :func:`bootstrap_blocks`, so besides the result only a bounded block is held). The same
    matrix, indexed by the same sorted studies, serves every task and both models of a paired
    comparison. Scoring many studies, iterate :func:`bootstrap_blocks` instead: this matrix
    alone is ``4 n resamples`` bytes.

    >>> counts = bootstrap_counts(5, 3, seed=0)
    >>> counts.shape, counts.sum(axis=0).tolist()
    ((5, 3), [5, 5, 5])
    """
    n, resamples = check_int("n", n, low=1), check_int("resamples", resamples, low=0)
    out = np.empty((n, resamples), dtype=np.int32)
    for columns, counts in bootstrap_blocks(n, resamples, seed):
        out[:, columns] = counts
    return out


class SortedScores:
    """One task's scores sorted once, to score any number of blocks of bootstrap resamples.

    Holds where each run of tied scores starts and ends among negatives and positives; each
    call then costs a gather and a cumulative sum over the block's counts (see
    :func:`bootstrap_auroc` and :func:`bootstrap_average_precision`, which call it).

    >>> task = SortedScores(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> task.bootstrap_auroc(np.array([[1, 2], [1, 0], [1, 1], [1, 1]], np.int32)).tolist()  # studies x resamples
    [0.75, 1.0]
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores, labels = _check(scores, labels)
        order = np.argsort(scores, kind="stable")
        ordered = scores[order]
        new_run = np.r_[True, ordered[1:] != ordered[:-1]]
        starts = np.flatnonzero(new_run)
        ends = np.r_[starts[1:], len(ordered)]
        is_positive = labels[order]
        self.n = len(scores)
        # Integer sums stay exact; int32 holds them while 2 n^2 < 2^31.
        self.dtype = np.int32 if len(scores) < 30_000 else np.int64
        self.positive_order = order[is_positive]
        self.negative_order = order[~is_positive]
        self.positive_run = (np.cumsum(new_run) - 1)[is_positive]
        self.negatives_before = np.r_[0, np.cumsum(~is_positive)]
        self.positives_before = np.r_[0, np.cumsum(is_positive)]
        self.starts, self.ends = starts, ends

    def _weights(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resampled weight of each positive (in score order), and the cumulative weight of negatives."""
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[0] != self.n:
            raise InvalidArgumentError(f"counts must be (n={self.n}, resamples), got {counts.shape}")
        return counts[self.positive_order].astype(self.dtype, copy=False), self._cumsum(counts[self.negative_order])

    def _cumsum(self, weights: np.ndarray) -> np.ndarray:
        """Row k: resampled weight of the first k rows (row 0 is zero)."""
        out = np.zeros((len(weights) + 1, weights.shape[1]), dtype=self.dtype)
        np.cumsum(weights, axis=0, dtype=self.dtype, out=out[1:])
        return out

    def bootstrap_auroc(self, counts: np.ndarray) -> np.ndarray:
        """AUROC of every resample (column) of ``counts``; NaN where one class is missing."""
        positive_weights, below = self._weights(counts)
        run = self.positive_run
        twice_pairs = below[self.negatives_before[self.starts[run]]] + below[self.negatives_before[self.ends[run]]]
        numerator = np.einsum("ij,ij->j", positive_weights, twice_pairs)
        n_positive = positive_weights.sum(axis=0, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return numerator / (2.0 * n_positive * below[-1])

    def bootstrap_average_precision(self, counts: np.ndarray) -> np.ndarray:
        """Average precision of every resample (column) of ``counts``; NaN where it has no positive."""
        positive_weights, negatives = self._weights(counts)
        positives = self._cumsum(positive_weights)
        run = np.unique(self.positive_run)
        start, end = self.starts[run], self.ends[run]
        at_least = positives[-1] - positives[self.positives_before[start]]
        gained = positives[self.positives_before[end]] - positives[self.positives_before[start]]
        selected = at_least + negatives[-1] - negatives[self.negatives_before[start]]
        with np.errstate(invalid="ignore", divide="ignore"):
            # A run drawn zero times gains nothing, so its undefined precision does not matter.
            precision = at_least / np.maximum(selected, 1)
            return np.einsum("ij,ij->j", gained, precision) / positives[-1]


def bootstrap_auroc(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of every resample given by ``counts`` (see :func:`bootstrap_counts`); NaN where one class is missing.

    A resample is the original studies weighted by their counts, so its AUROC is the weighted
    Mann-Whitney statistic: for each positive, the weight of negatives scoring lower plus half the
    weight of tied negatives. After one sort both are a cumulative sum over negatives read at the
    start and at the end of the positive's run of ties. Integer arithmetic: exact. To score
    several blocks of resamples, sort once with :class:`SortedScores`.

    >>> bootstrap_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), np.ones((4, 1), np.int32)).tolist()
    [0.75]
    """
    return SortedScores(scores, labels).bootstrap_auroc(counts)


def bootstrap_average_precision(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Average precision of every resample given by ``counts``; NaN where it has no positive.

    Only runs of ties holding a positive gain recall; at such a run the precision is the weight
    of positives over the weight of all studies scoring at least the run's score.

    >>> bootstrap_average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), np.ones((4, 1), np.int32)).round(4).tolist()
    [0.8333]
    """
    return SortedScores(scores, labels).bootstrap_average_precision(counts)


def bootstrap_roc_vertices(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC vertices of every resample: ``(false_positives, true_positives)``, each ``(distinct scores + 1, resamples)``.

    Row k counts the resampled studies scoring at least the k-th highest distinct score (row 0
    is the origin), as :func:`roc_curve` does for the original studies; the last row holds each
    resample's numbers of negatives and positives. Used to draw bootstrap bands.

    >>> fp, tp = bootstrap_roc_vertices(np.array([0.9, 0.5, 0.1]), np.array([1, 0, 0]), np.array([[2], [1], [0]]))
    >>> fp[:, 0].tolist(), tp[:, 0].tolist()
    ([0, 0, 1, 1], [0, 2, 2, 2])
    """
    scores, labels = _check(scores, labels)
    order, ends = _descending_groups(scores)
    weights = np.asarray(counts)[order].astype(np.int64)
    tp = np.cumsum(np.where(labels[order, None], weights, 0), axis=0)[ends - 1]
    seen = np.cumsum(weights, axis=0)[ends - 1]
    zero = np.zeros((1, weights.shape[1]), dtype=np.int64)
    return np.vstack([zero, seen - tp]), np.vstack([zero, tp])


def percentile_interval(values: np.ndarray, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Percentile interval ``[lo, hi]`` of bootstrap ``values`` along ``axis``, ignoring NaN resamples.

    Linear interpolation between order statistics (numpy's default); NaN when no resample is defined.

    >>> percentile_interval(np.arange(101.0)).round(6).tolist()
    [2.5, 97.5]
    """
    values = np.asarray(values, dtype=np.float64)
    tail = 50.0 * (1.0 - level)
    if values.size == 0 or np.isnan(values).all(axis=axis).all():
        shape = list(values.shape)
        del shape[axis]
        return np.full([2, *shape], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, which is the answer
        return np.nanpercentile(values, [tail, 100.0 - tail], axis=axis)


def delong_components(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components, in O(n log n) by midranks (Sun & Xu, 2014).

    ``scores`` is ``(models, n)`` (or 1-D for one model). Returns ``v10`` ``(models, positives)``:
    for each positive, the fraction of negatives it outranks (ties one half); and ``v01``
    ``(models, negatives)``: for each negative, the fraction of positives that outrank it.
    The AUROC is the mean of either.

    >>> v10, v01 = delong_components(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> v10.tolist(), v01.tolist()
    ([[0.5, 1.0]], [[1.0, 0.5]])
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    _, labels = _check(scores[0], labels)
    positives, negatives = scores[:, labels], scores[:, ~labels]
    m, n = positives.shape[1], negatives.shape[1]
    v10 = np.empty((len(scores), m))
    v01 = np.empty((len(scores), n))
    for r in range(len(scores)):
        combined = midranks(np.r_[positives[r], negatives[r]])
        v10[r] = (combined[:m] - midranks(positives[r])) / n
        v01[r] = 1.0 - (combined[m:] - midranks(negatives[r])) / m
    return v10, v01


def delong(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of one or more models on the same studies and DeLong's covariance matrix of them.

    ``scores`` is ``(models, n)`` (or 1-D). Returns ``(aucs (models,), covariance (models, models))``;
    NaN with :class:`UndefinedMetricWarning` when there are fewer than two positives or negatives.

    >>> aucs, cov = delong(np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9]), np.array([0, 0, 1, 1, 0, 1]))
    >>> round(float(aucs[0]), 4), round(float(cov[0, 0]), 4)
    (0.8889, 0.0247)
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    labels = np.asarray(labels).astype(bool)
    m = int(labels.sum())
    n = len(labels) - m
    k = len(scores)
    if m < 2 or n < 2:
        warn_undefined(f"DeLong's variance needs two positives and two negatives, got {m} and {n}")
        return np.full(k, np.nan), np.full((k, k), np.nan)
    v10, v01 = delong_components(scores, labels)
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return v10.mean(axis=1), covariance


def delong_interval(scores: np.ndarray, labels: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval of one model's AUROC from DeLong's variance, clipped to [0, 1].

    >>> [round(x, 3) for x in delong_interval(np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9]), np.array([0, 0, 1, 1, 0, 1]))]
    [0.581, 1.0]
    """
    aucs, covariance = delong(np.asarray(scores)[None], labels)
    half = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(covariance[0, 0])
    return max(0.0, float(aucs[0] - half)), min(1.0, float(aucs[0] + half))


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """DeLong's paired test of two models' AUROCs on the same studies.

    Returns ``difference`` (a - b), its normal interval ``lo``/``hi``, ``z`` and the two-sided ``p_value``.

    >>> labels = np.array([0, 0, 1, 1, 0, 1])
    >>> round(delong_test(np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9]), np.array([0.2, 0.1, 0.3, 0.4, 0.5, 0.6]), labels)["p_value"], 3)
    0.724
    """
    aucs, covariance = delong(np.vstack([scores_a, scores_b]), labels)
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    if math.isnan(difference) or math.isnan(variance):
        return {"difference": math.nan, "lo": math.nan, "hi": math.nan, "z": math.nan, "p_value": math.nan}
    if variance <= 0.0:
        # Identical rankings (or both perfect): no evidence of a difference, or certainty of one.
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        half = 0.0
    else:
        z = difference / math.sqrt(variance)
        half = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(variance)
    return {
        "difference": difference,
        "lo": difference - half,
        "hi": difference + half,
        "z": z,
        "p_value": math.erfc(abs(z) / math.sqrt(2.0)),
    }


#: Bins of :func:`reliability_bins` and :func:`expected_calibration_error`: equal-width on [0, 1].
CALIBRATION_BINS = 10


def _check_probabilities(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = _check(scores, labels)
    if len(scores) == 0:
        raise InvalidArgumentError("calibration needs at least one study")
    if not ((scores >= 0.0) & (scores <= 1.0)).all():
        raise InvalidArgumentError("calibration needs probabilities in [0, 1]; apply a sigmoid to logits")
    return scores, labels


def brier_score(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome.

    Equal to ``sklearn.metrics.brier_score_loss``; 0 is perfect, 0.25 is always saying 0.5.

    >>> brier_score(np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0]))
    0.13666666666666666
    """
    scores, labels = _check_probabilities(scores, labels)
    return float(np.mean((scores - labels) ** 2))


def reliability_bins(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of predicted probability: ``(count, mean score, fraction positive)``, each ``(bins,)``.

    Bins are ``bins`` equal-width intervals of [0, 1]: bin b holds scores in
    ``[b / bins, (b + 1) / bins)``, the last one also holds 1.0. Empty bins have count 0 and NaN
    means. The points (mean score, fraction positive) are a reliability diagram.

    >>> count, mean, positive = reliability_bins(np.array([0.05, 0.15, 0.12, 1.0]), np.array([0, 1, 0, 1]), bins=2)
    >>> count.tolist(), mean.tolist(), positive.tolist()
    ([3, 1], [0.10666666666666667, 1.0], [0.3333333333333333, 1.0])
    """
    scores, labels = _check_probabilities(scores, labels)
    bins = check_int("bins", bins, low=1)
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(which, weights=scores, minlength=bins) / count
        positive = np.bincount(which, weights=labels.astype(np.float64), minlength=bins) / count
    return count, mean, positive


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: the count-weighted mean of |fraction positive - mean score| over bins.

    The bins are those of :func:`reliability_bins` (10 equal-width bins of [0, 1] by default);
    each bin weighs its share of the studies, empty bins weigh nothing.

    >>> expected_calibration_error(np.array([0.05, 0.15, 0.12, 1.0]), np.array([0, 1, 0, 1]), bins=2)
    0.16999999999999998
    """
    count, mean, positive = reliability_bins(scores, labels, bins)
    filled = count > 0
    return float(np.sum(count[filled] * np.abs(positive[filled] - mean[filled])) / count.sum())
