"""Score predictions exactly as the CheXpert competition did: per study, joined by key, with intervals.

>>> from chexpert.evaluate import evaluate
>>> result = evaluate("predictions.csv", "CheXpert-v1.0-small/valid.csv", radiologists=["bc4.csv"])
>>> result.table.loc["Edema", ["auroc", "auroc_lo", "auroc_hi", "radiologists_under_curve"]].round(2).tolist()
[0.88, 0.72, 1.0, 0.0]
>>> round(result.to_json()["mean_auroc"], 3)
0.936

Modules: ``io`` (reading and joining files by study key), ``metrics`` (AUROC, AUPRC, bootstrap,
DeLong in numpy), ``operating`` (radiologists against the ROC curve, thresholds), ``scoring``
(the functions below). They load on first use, so that ``chexpert --help`` does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chexpert import schema

if TYPE_CHECKING:
    from chexpert.evaluate.io import ScoreRangeWarning
    from chexpert.evaluate.metrics import FewPositivesWarning, UndefinedMetricWarning
    from chexpert.evaluate.scoring import MAJORITY, Comparison, Evaluation, StudyScores, apply_thresholds, compare, evaluate, operating_points

__all__ = [
    "evaluate",
    "compare",
    "operating_points",
    "apply_thresholds",
    "MAJORITY",
    "Evaluation",
    "Comparison",
    "StudyScores",
    "UndefinedMetricWarning",
    "FewPositivesWarning",
    "ScoreRangeWarning",
    "AGGREGATES",
    "SUBGROUPS",
    "AGE_BANDS",
]

#: How image-level predictions become one score per study.
AGGREGATES: tuple[str, ...] = ("max", "mean")
#: Study attributes that ``by=`` can split on, and the age bands (both from chexpert.schema).
SUBGROUPS: tuple[str, ...] = schema.SUBGROUPS
AGE_BANDS: tuple[tuple[str, int, int], ...] = schema.AGE_BANDS

_LAZY = {
    "UndefinedMetricWarning": "metrics",
    "FewPositivesWarning": "metrics",
    "ScoreRangeWarning": "io",
    **dict.fromkeys(("Comparison", "Evaluation", "StudyScores", "compare", "evaluate", "operating_points", "apply_thresholds", "MAJORITY"), "scoring"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"chexpert.evaluate.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'chexpert.evaluate' has no attribute {name!r}")
