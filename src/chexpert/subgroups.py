"""The fairness view: patients split by sex, age band, race, ethnicity or insurance, and label prevalence per group.

Sex and age come with every release; race, ethnicity and insurance with CheXpert Plus (its
demographic columns, in ``Index.extra``). Prevalence is counted per study (a study is positive
for an observation when any of its images is labelled positive) with a Wilson score interval.
``chexpert info --by`` prints it; ``evaluate(by=...)`` scores AUROC per group the same way.

>>> index = chexpert.open("~/data/chexpert-plus").index("train")
>>> prevalence(index, "race").loc[("Asian", "Edema"), ["studies", "positives"]].tolist()
[2, 0]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.validation import check_choice, check_number

if TYPE_CHECKING:
    import pandas as pd

    from chexpert.index import Index

__all__ = ["BY", "DEMOGRAPHIC_COLUMNS", "UNKNOWN", "age_band", "subgroup_of_rows", "group_order", "prevalence", "wilson_interval"]

#: What rows can be grouped by: schema's subgroups, and ``view`` (frontal, lateral, or unknown:
#: MIMIC-CXR keeps views it cannot place), which only an index's rows have.
BY: Final[tuple[str, ...]] = (*schema.SUBGROUPS, "view")
#: The Plus column behind each demographic grouping.
DEMOGRAPHIC_COLUMNS: Final[dict[str, str]] = {"race": "race", "ethnicity": "ethnicity", "insurance": "insurance_type"}
#: The group of a row whose value is missing.
UNKNOWN: Final = "Unknown"
#: Groups of ``by="view"``: MIMIC-CXR keeps views it cannot place as Unknown (``Index.extra["view"]``).
VIEW_GROUPS: Final[tuple[str, ...]] = ("Frontal", "Lateral", UNKNOWN)


def age_band(age: np.ndarray) -> np.ndarray:
    """The age band of each age (0 is unknown), as ``chexpert.schema.AGE_BANDS`` defines them.

    >>> age_band(np.array([0, 35, 85])).tolist()
    ['unknown', '<40', '80+']
    """
    bands = np.full(len(age), schema.AGE_BANDS[0][0], dtype=object)
    for label, low, high in schema.AGE_BANDS:
        bands[(age >= low) & (age <= high)] = label
    return bands


def subgroup_of_rows(index: Index, by: str) -> np.ndarray:
    """The group of every row (object array of names).

    >>> plus_index = chexpert.open("~/data/chexpert-plus").index("train")
    >>> subgroup_of_rows(plus_index, "insurance")[:2]
    array(['Medicare', 'Medicare'], dtype=object)
    """
    check_choice("by", by, BY)
    if by == "sex":
        return np.asarray(schema.SEXES, dtype=object)[index.sex]
    if by == "projection":
        return np.asarray(schema.PROJECTIONS, dtype=object)[index.projection]
    if by == "age-band":
        return age_band(index.age)
    if by == "view":
        if "view" in index.extra:
            return index.extra["view"].astype(object)
        return np.asarray(schema.VIEWS, dtype=object)[(~index.frontal).astype(np.int8)]
    column = DEMOGRAPHIC_COLUMNS[by]
    if column not in index.extra:
        raise InvalidArgumentError(f"grouping by {by} needs CheXpert Plus demographics (column {column!r}); this index has none. Open the Plus download.")
    values = index.extra[column].astype(object)
    values[values == ""] = UNKNOWN
    return values


def group_order(by: str, groups: object) -> list[str]:
    """Groups in reading order: the vocabulary's order where there is one, then by name, Unknown last."""
    vocabulary: tuple[str, ...] = {
        "sex": schema.SEXES, "projection": schema.PROJECTIONS, "age-band": tuple(b[0] for b in schema.AGE_BANDS),
        "race": schema.RACES, "ethnicity": schema.ETHNICITIES, "insurance": schema.INSURANCE_TYPES, "view": VIEW_GROUPS,
    }[by]  # fmt: skip
    rank = {g: i for i, g in enumerate(vocabulary)}
    return sorted({str(g) for g in groups}, key=lambda g: (g in (UNKNOWN, "unknown"), rank.get(g, len(rank)), g))  # type: ignore[attr-defined]


def wilson_interval(positives: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for n = 0).

    >>> [round(x, 3) for x in wilson_interval(5, 10)]
    [0.237, 0.763]
    """
    if n == 0:
        return math.nan, math.nan
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = positives / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if positives == 0 else max(0.0, centre - half)), (1.0 if positives == n else min(1.0, centre + half))


def prevalence(index: Index, by: str, *, level: float = 0.95) -> pd.DataFrame:
    """Studies, patients and positive prevalence per group and observation, with Wilson intervals.

    One row per (group, observation): ``studies``, ``patients``, ``positives``, ``prevalence``,
    ``lo``, ``hi``. A study belongs to the group of its first image.

    >>> prevalence(index, "sex").loc[("Male", "Edema"), ["studies", "patients", "positives"]].tolist()
    [22, 4, 3]
    """
    import pandas as pd

    check_number("level", level, low=0, high=1, open_low=True, open_high=True)
    groups = subgroup_of_rows(index, by)
    studies = index.study_ids()
    order = np.lexsort((index.view, studies))
    first = order[np.r_[True, studies[order][1:] != studies[order][:-1]]] if len(order) else order
    study_of_row = np.searchsorted(studies[first], studies)
    positive = np.zeros((len(first), len(schema.OBSERVATIONS)), dtype=bool)
    np.logical_or.at(positive, study_of_row, index.labels == schema.Code.POSITIVE)
    study_group = groups[first]
    patients = index.patient_ids()[first]
    rows = []
    for group in group_order(by, study_group):
        members = study_group == group
        n = int(members.sum())
        for j, observation in enumerate(schema.OBSERVATIONS):
            k = int(positive[members, j].sum())
            lo, hi = wilson_interval(k, n, level)
            rows.append({"group": group, "observation": observation, "studies": n, "patients": len(np.unique(patients[members])),
                         "positives": k, "prevalence": k / n if n else math.nan, "lo": lo, "hi": hi})  # fmt: skip
    return pd.DataFrame(rows).set_index(["group", "observation"])
