"""Operating points: radiologists against the model's ROC curve, and thresholds chosen on it.

The model's ROC curve is the polyline through the vertices of :func:`metrics.roc_curve` (one per
distinct score, as scikit-learn draws it): vertical or horizontal between distinct scores,
diagonal across a run of tied scores (the expected result of breaking the tie at random). Its
sensitivity at a false-positive rate f is the highest point of that polyline at f: the top of a
vertical step at f, otherwise linear interpolation between the vertices either side of f.
A radiologist is under the curve when that sensitivity is at least the radiologist's. All
comparisons are made on integer counts, so a radiologist exactly on the curve counts as under it.
"""

from __future__ import annotations

import math

import numpy as np

from chexpert.errors import InvalidArgumentError
from chexpert.evaluate.metrics import roc_curve, warn_undefined

__all__ = ["confusion", "reader_point", "curve_sensitivity", "threshold"]


def confusion(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Confusion counts of 0/1 ``predicted`` against 0/1 ``labels``, with the rates derived from them.

    >>> confusion(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))["sensitivity"]
    0.5
    """
    predicted = np.asarray(predicted).astype(bool)
    labels = np.asarray(labels).astype(bool)
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    return _counts(tp, fp, int(labels.sum()), int((~labels).sum()))


def _counts(tp: int, fp: int, positives: int, negatives: int) -> dict[str, float]:
    fn, tn = positives - tp, negatives - fp

    def ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": ratio(tp, positives),
        "specificity": ratio(tn, negatives),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
    }


def curve_sensitivity(scores: np.ndarray, labels: np.ndarray, false_positives: int, true_positives: int) -> tuple[float, bool]:
    """The model curve's sensitivity at a reader's false-positive count, and whether the reader is under it.

    ``false_positives`` and ``true_positives`` are the reader's counts on the same studies.

    >>> scores, labels = np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 0, 1, 0])
    >>> curve_sensitivity(scores, labels, false_positives=1, true_positives=2)
    (1.0, True)
    >>> curve_sensitivity(scores, labels, false_positives=0, true_positives=2)
    (0.5, False)
    """
    fp, tp, _ = roc_curve(scores, labels)
    positives, negatives = int(tp[-1]), int(fp[-1])
    if positives == 0 or negatives == 0:
        return math.nan, False
    k = int(np.searchsorted(fp, false_positives, side="right")) - 1
    if fp[k] == false_positives:
        return float(tp[k]) / positives, bool(tp[k] >= true_positives)
    run, rise = int(fp[k + 1] - fp[k]), int(tp[k + 1] - tp[k])
    across = false_positives - int(fp[k])
    # tp[k] + rise * across / run >= true_positives, multiplied through by run > 0.
    under = (int(tp[k]) - true_positives) * run + rise * across >= 0
    return (float(tp[k]) + rise * across / run) / positives, bool(under)


def reader_point(reads: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """A radiologist's confusion counts, sensitivity, specificity, and position against the model's curve.

    >>> point = reader_point(np.array([1, 0, 0, 0]), np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.2]))
    >>> point["sensitivity"], point["specificity"], point["under_curve"]
    (0.5, 1.0, True)
    """
    point: dict[str, float] = confusion(reads, labels)
    sensitivity, under = curve_sensitivity(scores, labels, int(point["fp"]), int(point["tp"]))
    point["curve_sensitivity"] = sensitivity
    point["under_curve"] = under
    return point


def threshold(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    sensitivity: float | None = None,
    specificity: float | None = None,
    youden: bool = False,
) -> dict[str, float]:
    """The threshold (positive when score >= threshold) meeting one criterion, with its confusion counts.

    Exactly one of: ``sensitivity`` (the highest threshold reaching at least that sensitivity, so
    the best specificity that allows), ``specificity`` (the lowest threshold keeping at least that
    specificity, so the best sensitivity), or ``youden`` (maximum sensitivity + specificity - 1;
    the highest threshold among equals). ``threshold`` is +inf when no study may be called positive.

    >>> point = threshold(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 0, 1, 0]), sensitivity=1.0)
    >>> point["threshold"], point["specificity"]
    (0.3, 0.5)
    """
    if sum((sensitivity is not None, specificity is not None, bool(youden))) != 1:
        raise InvalidArgumentError("give exactly one of sensitivity=, specificity= or youden=True")
    for name, target in (("sensitivity", sensitivity), ("specificity", specificity)):
        if target is not None and not 0.0 <= target <= 1.0:
            raise InvalidArgumentError(f"{name} must be in [0, 1]; got {target}")
    fp, tp, thresholds = roc_curve(scores, labels)
    positives, negatives = int(tp[-1]), int(fp[-1])
    if positives == 0 or negatives == 0:
        warn_undefined(f"operating points are undefined with {positives} positives and {negatives} negatives")
        return {"threshold": math.nan, **_counts(0, 0, positives, negatives)}
    tpr, tnr = tp / positives, (negatives - fp) / negatives
    if sensitivity is not None:
        k = int(np.argmax(tpr >= sensitivity))
    elif specificity is not None:
        k = int(np.flatnonzero(tnr >= specificity)[-1])
    else:
        k = int(np.argmax(tpr + tnr))
    return {"threshold": float(thresholds[k]), **_counts(int(tp[k]), int(fp[k]), positives, negatives)}
