"""Filters over an :class:`~chexpert.index.Index`, and patient-level splits and folds.

Splits are by patient, so no patient's images are ever on both sides, and stratified on the
five competition tasks. Stratification: each patient gets a signature, the set of ``stratify``
observations positive on any of their images (32 strata for the five tasks). Patients are
ordered by stratum (strata in a seeded random order, patients within a stratum shuffled), and
this sequence is dealt to the parts like cards: each part's share is spread evenly over the whole
sequence, so every stratum (a run of the sequence) is split in the requested fractions, to
within about one patient, and the part sizes in patients are exact to rounding. With equal
fractions (:func:`kfold`) this is a round robin, as scikit-learn's StratifiedKFold deals classes.

>>> train = chexpert.open("CheXpert-v1.0-small").index(["train"])
>>> parts = split_patients(select(train, views="Frontal"), seed=1)
>>> sorted(parts), len(parts["valid"])
(['test', 'train', 'valid'], 16)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.index import ROW_FIELDS, Index, observation_position
from chexpert.validation import check_choice

__all__ = ["select", "deduplicate", "split_patients", "kfold", "DEFAULT_FRACTIONS", "DEDUPLICATE_PER", "DEDUPLICATE_KEEP"]

DEFAULT_FRACTIONS: tuple[tuple[str, float], ...] = (("train", 0.8), ("valid", 0.1), ("test", 0.1))
#: What :func:`deduplicate` keeps one row of.
DEDUPLICATE_PER: tuple[str, ...] = ("study", "patient")
#: Which row :func:`deduplicate` keeps, or how it merges them.
DEDUPLICATE_KEEP: tuple[str, ...] = ("first-frontal", "first", "merge")


def select(
    index: Index,
    *,
    views: str | Iterable[str] | None = None,
    projections: str | Iterable[str] | None = None,
    sex: str | Iterable[str] | None = None,
    age: tuple[int, int] | None = None,
    age_known: bool | None = None,
    splits: str | Iterable[str] | None = None,
    labels: Mapping[str, int | str | Iterable[int | str]] | None = None,
    patients: int | Iterable[int] | None = None,
) -> Index:
    """The rows of ``index`` that pass every filter given (None = no filter), in their order.

    ``views``, ``projections``, ``sex`` and ``splits`` take names from ``schema.VIEWS``,
    ``schema.PROJECTIONS``, ``schema.SEXES`` and ``schema.SPLITS`` (one or several). ``age`` is an
    inclusive (lo, hi) range of known ages: rows of unknown age (0) never pass it. ``age_known``
    keeps rows whose age is known (True) or unknown (False). ``labels`` maps an observation to the
    codes allowed for it: ``schema.Code`` values or their names (``"positive"``, ``"uncertain"``,
    ...). ``patients`` are patient numbers (patient00001 -> 1).

    >>> frontal_pa = select(index, views="Frontal", projections="PA")
    >>> edema_known = select(index, labels={"Edema": ("positive", "negative")})
    >>> len(index), len(frontal_pa), len(edema_known)
    (27, 3, 6)
    """
    keep = np.ones(len(index), dtype=bool)
    if views is not None:
        keep &= np.isin((~index.frontal).astype(np.int8), _positions("view", views, schema.VIEWS))
        if "view" in index.extra:  # MIMIC-CXR: an unknown view is neither frontal nor lateral
            keep &= index.extra["view"] != "Unknown"
    if projections is not None:
        keep &= np.isin(index.projection, _positions("projection", projections, schema.PROJECTIONS))
    if sex is not None:
        keep &= np.isin(index.sex, _positions("sex", sex, schema.SEXES))
    if splits is not None:
        keep &= np.isin(index.split, _positions("split", splits, schema.SPLITS))
    if age is not None:
        lo, hi = _age_range(age)
        keep &= (index.age >= lo) & (index.age <= hi) & (index.age != 0)
    if age_known is not None:
        if not isinstance(age_known, bool | np.bool_):
            raise InvalidArgumentError(f"age_known must be True, False or None, got {age_known!r}")
        keep &= (index.age != 0) == age_known
    if labels is not None:
        if not isinstance(labels, Mapping):
            raise InvalidArgumentError(f"labels must map observation -> allowed codes, got {type(labels).__name__}")
        for observation, allowed in labels.items():
            keep &= np.isin(index.labels[:, observation_position(observation)], _codes(observation, allowed))
    if patients is not None:
        keep &= np.isin(index.patient, _patient_numbers(patients))
    return index.take(keep)


def deduplicate(index: Index, per: str = "study", *, keep: str = "first-frontal") -> Index:
    """One row per study (or per patient) of ``index``, in the order of the rows kept.

    ``keep``:

    - ``"first-frontal"`` (default): the first frontal image of each study (patient), in index
      order; groups without a frontal image are left out. One image per study is how models are
      often trained and how the competition scored (per study).
    - ``"first"``: the first image of each group, of any view.
    - ``"merge"``: torchxrayvision's ``unique_patients=True`` (``CheX_Dataset``), with ``per=
      "patient"``: one row per patient with the path, view and metadata of the patient's first row
      and, for each observation, the first non-blank code among the patient's rows in index order
      (pandas ``groupby().first()`` skips blanks), so one row's labels may come from several
      studies and images. Select views first, as torchxrayvision does (its default is PA only):
      ``deduplicate(select(index, views="Frontal", projections="PA"), "patient", keep="merge")``.

    "First" is index order: for an index read from the release's CSV, the lowest view of the
    earliest study. Patients are told apart by split and number.

    >>> one_per_study = deduplicate(train)
    >>> like_torchxrayvision = deduplicate(select(train, projections="PA"), "patient", keep="merge")
    >>> len(train), len(one_per_study), len(like_torchxrayvision)
    (27, 22, 2)
    """
    check_choice("per", per, DEDUPLICATE_PER)
    check_choice("keep", keep, DEDUPLICATE_KEEP)
    study = index.study_ids()
    group = study if per == "study" else index.patient_ids()
    if keep == "merge":
        return _merge(index, group)
    candidates = np.flatnonzero(index.frontal) if keep == "first-frontal" else np.arange(len(index))
    _, first = np.unique(group[candidates], return_index=True)  # np.unique returns first occurrences
    return index.take(np.sort(candidates[first]))


def _merge(index: Index, group: np.ndarray) -> Index:
    """One row per group: its first row, with each observation's first non-blank code in the group."""
    order = np.argsort(group, kind="stable")  # by group, index order within a group
    keys = group[order]
    groups, first = np.unique(keys, return_index=True)
    labels = np.full((len(groups), len(schema.OBSERVATIONS)), int(schema.Code.BLANK), dtype=np.int8)
    for j in range(len(schema.OBSERVATIONS)):
        codes = index.labels[order, j]
        known = codes != schema.Code.BLANK
        present, first_known = np.unique(keys[known], return_index=True)
        labels[np.searchsorted(groups, present), j] = codes[known][first_known]
    rows = order[first]  # each group's first row
    appearance = np.argsort(rows, kind="stable")  # groups in the order their first rows come
    merged = index.take(rows[appearance])
    return Index(**{name: getattr(merged, name) for name in ROW_FIELDS if name != "labels"}, labels=labels[appearance], release=index.release)


def split_patients(
    index: Index,
    fractions: Mapping[str, float] | Sequence[tuple[str, float]] = DEFAULT_FRACTIONS,
    *,
    seed: int = 0,
    stratify: Sequence[str] | None = schema.COMPETITION_TASKS,
) -> dict[str, Index]:
    """Split ``index`` by patient into named parts of the given fractions (of patients).

    Every patient lands in exactly one part; each part keeps the rows in ``index`` order. The
    result depends only on the patients, their labels and ``seed``. ``stratify`` names the
    observations whose per-patient positivity is balanced across parts (None or () for none).

    >>> parts = split_patients(index, {"train": 0.9, "valid": 0.1}, seed=3)
    >>> set(parts["train"].patient) & set(parts["valid"].patient)
    set()
    """
    pairs = tuple(fractions.items()) if isinstance(fractions, Mapping) else tuple(fractions)
    names = [str(name) for name, _ in pairs]
    weights = np.array([_fraction(name, f) for name, f in pairs], dtype=np.float64)
    if not pairs or len(set(names)) != len(names):
        raise InvalidArgumentError(f"fractions must name each part once, got {names}")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise InvalidArgumentError(f"fractions must sum to 1, got {weights.sum():g} ({dict(zip(names, weights.tolist()))})")
    part = _assign(index, weights, seed, stratify)
    return {name: index.take(part == p) for p, name in enumerate(names)}


def kfold(
    index: Index,
    k: int,
    *,
    seed: int = 0,
    stratify: Sequence[str] | None = schema.COMPETITION_TASKS,
) -> list[tuple[Index, Index]]:
    """``k`` (train, held-out) pairs: patient-level folds, stratified like :func:`split_patients`.

    The held-out parts partition the patients; their sizes in patients differ by at most one.

    >>> [len(set(held_out.patient)) for train, held_out in kfold(index, 4, seed=0)]  # 4 patients
    [1, 1, 1, 1]
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise InvalidArgumentError(f"k must be an integer >= 2, got {k!r}")
    patients = len(np.unique(index.patient))
    if k > patients:
        raise InvalidArgumentError(f"k={k} folds need at least {k} patients; the index has {patients}")
    fold = _assign(index, np.full(k, 1.0 / k), seed, stratify)
    return [(index.take(fold != f), index.take(fold == f)) for f in range(k)]


def _assign(index: Index, weights: np.ndarray, seed: int, stratify: Sequence[str] | None) -> np.ndarray:
    """Part number per row, the same for all rows of a patient (see the module docstring)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    patients, row_patient = np.unique(index.patient, return_inverse=True)
    n = len(patients)
    stratum = np.zeros(n, dtype=np.int64)
    positives = np.zeros(n, dtype=np.int64)  # positive (image, observation) entries per patient
    columns = [] if stratify is None else [observation_position(o) for o in ((stratify,) if isinstance(stratify, str) else stratify)]
    for bit, column in enumerate(columns):
        counts = np.bincount(row_patient[index.labels[:, column] == schema.Code.POSITIVE], minlength=n)
        stratum |= (counts > 0).astype(np.int64) << bit
        positives += counts
    images = np.bincount(row_patient, minlength=n)

    rng = np.random.default_rng(seed)
    # Strata become contiguous runs in a random order; within one, patients are sorted by image
    # count and positive entries so that dealing also balances images per part, then shuffled.
    _, stratum = np.unique(stratum, return_inverse=True)
    stratum_rank = rng.permutation(stratum.max() + 1 if n else 0)[stratum]
    order = np.lexsort((rng.random(n), positives, images, stratum_rank))

    # Deal: part p's m-th of n_p patients ideally sits at (m + 0.5) / n_p along the sequence.
    counts = _largest_remainder(weights, n)
    ideal = np.concatenate([(np.arange(c) + 0.5) / c for c in counts if c]) if n else np.zeros(0)
    dealt = np.repeat(np.arange(len(weights)), counts)[np.argsort(ideal, kind="stable")]
    # A seeded rotation decides which stratum gets the rounding leftovers.
    dealt = np.roll(dealt, int(rng.integers(n)) if n else 0)

    part_of_patient = np.empty(n, dtype=np.int64)
    part_of_patient[order] = dealt
    return part_of_patient[row_patient]


def _largest_remainder(weights: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n``, each within one of ``weights * n``."""
    exact = weights * n
    counts = np.floor(exact).astype(np.int64)
    short = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def _fraction(name: str, value: Any) -> float:
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"fraction of part {name!r} must be a number, got {value!r}") from None
    if not 0.0 < fraction <= 1.0:
        raise InvalidArgumentError(f"fraction of part {name!r} must be in (0, 1], got {value!r}")
    return fraction


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, str | int | np.integer) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)


def _positions(what: str, values: str | Iterable[str], vocabulary: Sequence[str]) -> np.ndarray:
    values = _as_tuple(values)
    for value in values:
        if value not in vocabulary:
            raise InvalidArgumentError(f"unknown {what} {value!r}; valid: {', '.join(vocabulary)}")
    return np.array([vocabulary.index(v) for v in values], dtype=np.int8)


_CODE_NAMES = {code.name.lower(): code for code in schema.Code}


def _codes(observation: str, allowed: int | str | Iterable[int | str]) -> np.ndarray:
    codes = []
    for value in _as_tuple(allowed):
        if isinstance(value, str) and value.lower() in _CODE_NAMES:
            codes.append(int(_CODE_NAMES[value.lower()]))
        elif isinstance(value, int | np.integer) and not isinstance(value, bool) and int(value) in set(schema.Code):
            codes.append(int(value))
        else:
            valid = ", ".join(f"{name} ({int(code)})" for name, code in _CODE_NAMES.items())
            raise InvalidArgumentError(f"unknown label code {value!r} for {observation!r}; valid: {valid}")
    return np.array(codes, dtype=np.int8)


def _age_range(age: Any) -> tuple[int, int]:
    try:
        lo, hi = age
        lo, hi = int(lo), int(hi)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"age must be an inclusive (lo, hi) pair of whole years, got {age!r}") from None
    if lo > hi:
        raise InvalidArgumentError(f"age range ({lo}, {hi}) is empty: lo must be <= hi")
    return lo, hi


def _patient_numbers(patients: int | Iterable[int]) -> np.ndarray:
    if isinstance(patients, np.ndarray) and patients.dtype.kind in "iu":
        return patients.astype(np.int64, copy=False).ravel()
    values = _as_tuple(patients)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidArgumentError(f"patients must be patient numbers (patient00001 -> 1), got {value!r}")
    return np.array(values, dtype=np.int64)
