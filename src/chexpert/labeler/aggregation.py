"""From mentions to the 14 labels of a report, as the original labeler aggregated them.

- positive wins over uncertain and negative, uncertain over negative, blank when not mentioned;
- heart failure ("CHF", "congestive heart failure") mentioned positively or uncertainly makes
  Cardiomegaly at least uncertain;
- No Finding is 1.0 when no observation other than Support Devices is positive or uncertain
  and no other abnormality (emphysema, hernia, ...) is mentioned positively or uncertainly (the
  original's rule: its No Finding phrases were exactly such mentions); blank otherwise.

>>> from chexpert.labeler import label_report
>>> result = label_report("Findings suggest CHF.")
>>> result["Edema"].value, result["Cardiomegaly"].value, result["Cardiomegaly"].reason
(-1.0, -1.0, 'heart failure mentioned: at least uncertain')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from chexpert.labeler.vocabulary import OTHER
from chexpert.schema import OBSERVATIONS

__all__ = ["Reading", "Labels", "aggregate", "NO_FINDING"]

NO_FINDING: Final = "No Finding"
_SUPPORT_DEVICES: Final = "Support Devices"
_COLUMN: Final[dict[str, int]] = {name: i for i, name in enumerate(OBSERVATIONS)}
_RANK: Final[dict[float, int]] = {1.0: 3, -1.0: 2, 0.0: 1}
_REASONS: Final[dict[float, str]] = {1.0: "a positive mention", -1.0: "uncertain mention", 0.0: "every mention negated"}
HEART_FAILURE_REASON: Final = "heart failure mentioned: at least uncertain"


class Reading(NamedTuple):
    """How one mention reads: its observation (or "Other abnormality"), value, implied observations."""

    observation: str
    value: float
    implies: tuple[str, ...] = ()


class Labels(NamedTuple):
    """The 14 values (None for blank) in CSV order, a reason for each, and which readings implied what."""

    values: list[float | None]
    reasons: list[str]
    implied: dict[str, list[int]]  # observation -> indices of the readings that made it at least uncertain
    others: list[int]  # indices of the other-abnormality readings that took No Finding away


def aggregate(readings: Sequence[Reading]) -> Labels:
    """Aggregate the readings of one report into its 14 labels.

    >>> labels = aggregate([Reading("Edema", 0.0), Reading("Edema", -1.0), Reading("Pneumothorax", 0.0)])
    >>> labels.values[5], labels.values[9], labels.values[0], labels.reasons[0]
    (-1.0, 0.0, None, 'Edema positive or uncertain')
    """
    values: list[float | None] = [None] * len(OBSERVATIONS)
    implied: dict[str, list[int]] = {}
    others: list[int] = []
    for i, (observation, value, implies) in enumerate(readings):
        if observation == OTHER:
            if value != 0.0:
                others.append(i)
            continue
        column = _COLUMN[observation]
        current = values[column]
        if current is None or _RANK[value] > _RANK[current]:
            values[column] = value
        if implies and value != 0.0:
            for target in implies:
                implied.setdefault(target, []).append(i)
    reasons = [_REASONS[v] if v is not None else "not mentioned" for v in values]
    for target in implied:
        column = _COLUMN[target]
        current = values[column]
        if current is None or current == 0.0:
            values[column] = -1.0
            reasons[column] = HEART_FAILURE_REASON
    blockers = [OBSERVATIONS[j] for j in range(1, len(OBSERVATIONS)) if values[j] in (1.0, -1.0) and OBSERVATIONS[j] != _SUPPORT_DEVICES]
    if blockers:
        reasons[0] = f"{', '.join(blockers)} positive or uncertain"
    elif others:
        reasons[0] = "another abnormality mentioned"
    else:
        values[0] = 1.0
        reasons[0] = "nothing but Support Devices positive or uncertain"
    return Labels(values, reasons, implied, others if not blockers else [])
