"""Agreement of labels with a gold standard, as the CheXpert paper measured its labeler (Table 2).

Per observation, three binary tasks over the reports: *mention* (any of 1.0, 0.0, -1.0 against
blank; for No Finding, 1.0 against blank), *negation* (0.0 against the rest) and *uncertainty*
(-1.0 against the rest); each scored by F1. The paper's labeler scored macro F1 0.948 (mention),
0.899 (negation) and 0.770 (uncertainty) on its 1,000 reports.

Gold files are JSON lines: ``{"id": ..., "text": ..., "labels": {observation: 1.0 | 0.0 | -1.0}}``,
an observation absent from ``labels`` being blank.

>>> import numpy as np
>>> gold = np.array([[1, 0], [1, -2], [-2, -1]], dtype=np.int8)
>>> scores = f1_scores(gold, gold, observations=("A", "B"))
>>> scores["mention"]["A"], scores["negation"]["B"], scores["uncertainty"]["A"]
(Score(f1=1.0, precision=1.0, recall=1.0, cases=2), Score(f1=1.0, precision=1.0, recall=1.0, cases=1), Score(f1=nan, precision=nan, recall=nan, cases=0))
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np

from chexpert.errors import CSVFormatError, InvalidArgumentError
from chexpert.safeio import open_regular
from chexpert.schema import OBSERVATIONS, Code

__all__ = ["Score", "GoldSet", "read_gold", "f1_scores", "macro", "TASKS"]

#: The paper's three measures.
TASKS: Final[tuple[str, ...]] = ("mention", "negation", "uncertainty")
_VALUES: Final[dict[float, int]] = {1.0: Code.POSITIVE, 0.0: Code.NEGATIVE, -1.0: Code.UNCERTAIN}


class Score(NamedTuple):
    """F1 with its parts; ``cases`` counts the gold positives (NaN scores when there are none)."""

    f1: float
    precision: float
    recall: float
    cases: int


@dataclass(frozen=True)
class GoldSet:
    """Annotated reports: ids, texts, tags and their labels as an ``(n, 14)`` int8 array of codes."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    tags: tuple[tuple[str, ...], ...]
    codes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (json keeps the last of a repeated key silently)."""
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} given twice in one object")
    return dict(pairs)


def read_gold(path: str | os.PathLike[str]) -> GoldSet:
    """Read a JSON-lines gold file; a malformed line is a :class:`CSVFormatError` naming file and line."""
    ids: list[str] = []
    texts: list[str] = []
    tags: list[tuple[str, ...]] = []
    rows: list[list[int]] = []
    seen: dict[str, int] = {}  # id -> line: a report scored twice would weigh twice, or disagree with itself
    with open_regular(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as file:  # a FIFO is refused, never waited on
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record: dict[str, Any] = json.loads(line, object_pairs_hook=_unique_keys)
                labels = record["labels"]
                row = [int(Code.BLANK)] * len(OBSERVATIONS)
                for name, value in labels.items():
                    row[OBSERVATIONS.index(name)] = _VALUES[float(value)]
                ids.append(str(record["id"]))
                texts.append(str(record["text"]))
                tags.append(tuple(record.get("tags", ())))
            except (ValueError, KeyError, TypeError) as exc:
                raise CSVFormatError(f"not a gold record ({exc.__class__.__name__}: {exc})", file=str(path), row=number) from None
            if ids[-1] in seen:
                raise CSVFormatError(f"id {ids[-1]!r} was already given on line {seen[ids[-1]]}", file=str(path), row=number)
            seen[ids[-1]] = number
            rows.append(row)
    return GoldSet(tuple(ids), tuple(texts), tuple(tags), np.array(rows, dtype=np.int8).reshape(-1, len(OBSERVATIONS)))


def _score(truth: np.ndarray, guess: np.ndarray) -> Score:
    tp = int(np.sum(truth & guess))
    fp = int(np.sum(~truth & guess))
    fn = int(np.sum(truth & ~guess))
    cases = tp + fn
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / cases if cases else math.nan
    if cases == 0 and tp + fp == 0:
        return Score(math.nan, math.nan, math.nan, 0)
    f1 = 2 * tp / (2 * tp + fp + fn)
    return Score(f1, precision, recall, cases)


def f1_scores(gold: np.ndarray, predicted: np.ndarray, observations: Sequence[str] = OBSERVATIONS) -> dict[str, dict[str, Score]]:
    """``{task: {observation: Score}}`` for two ``(n, len(observations))`` arrays of codes."""
    gold = np.asarray(gold)
    predicted = np.asarray(predicted)
    if gold.shape != predicted.shape:
        raise InvalidArgumentError(f"gold {gold.shape} and predicted {predicted.shape} differ in shape")
    out: dict[str, dict[str, Score]] = {task: {} for task in TASKS}
    for j, name in enumerate(observations):
        g, p = gold[:, j], predicted[:, j]
        out["mention"][name] = _score(g != Code.BLANK, p != Code.BLANK)
        out["negation"][name] = _score(g == Code.NEGATIVE, p == Code.NEGATIVE)
        out["uncertainty"][name] = _score(g == Code.UNCERTAIN, p == Code.UNCERTAIN)
    return out


def macro(scores: dict[str, Score], *, min_cases: int = 1) -> float:
    """Mean F1 over observations with at least ``min_cases`` gold cases (NaN when none has).

    >>> macro({"A": Score(1.0, 1.0, 1.0, 5), "B": Score(0.5, 0.5, 0.5, 20)}, min_cases=10)
    0.5
    """
    values = [s.f1 for s in scores.values() if s.cases >= min_cases and not math.isnan(s.f1)]
    return float(np.mean(values)) if values else math.nan
