"""Score predictions against the truth: per-task AUROC/AUPRC with intervals, radiologists, comparisons."""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexpert import schema
from chexpert.discover import open_dataset
from chexpert.errors import CSVFormatError, InvalidArgumentError
from chexpert.evaluate import SUBGROUPS, io, metrics, operating
from chexpert.evaluate.io import Source
from chexpert.evaluate.metrics import FewPositivesWarning, UndefinedMetricWarning
from chexpert.index import Index
from chexpert.release import Release
from chexpert.testset import resolve_truth
from chexpert.validation import check_choice

__all__ = [
    "StudyScores",
    "Evaluation",
    "Comparison",
    "evaluate",
    "compare",
    "operating_points",
    "apply_thresholds",
    "MAJORITY",
    "mean_auroc_tasks",
    "mean_auroc_label",
]

#: The name of the radiologists' majority vote among the readers (the CheXpert paper's "RadMaj").
MAJORITY = "RadMaj"


@dataclass(frozen=True, eq=False)
class StudyScores:
    """The aligned study-level inputs of an evaluation; row i of every array is ``studies[i]``.

    ``readers`` maps each radiologist to ``(studies, observations)`` 0/1 reads, NaN where that
    radiologist's file lacks the observation. ``name`` names the predictions in messages.
    """

    studies: np.ndarray
    observations: tuple[str, ...]
    scores: np.ndarray
    labels: np.ndarray
    readers: Mapping[str, np.ndarray] = field(default_factory=dict)
    name: str = "<predictions>"
    #: The radiologists whose majority vote is the reader :data:`MAJORITY` (empty: no vote).
    majority_of: tuple[str, ...] = ()

    def take(self, rows: np.ndarray) -> StudyScores:
        """The studies selected by a boolean mask or integer positions (kept in key order)."""
        return StudyScores(
            self.studies[rows],
            self.observations,
            self.scores[rows],
            self.labels[rows],
            {name: reads[rows] for name, reads in self.readers.items()},
            self.name,
            self.majority_of,
        )


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The scores of one prediction file, as tidy tables.

    ``table`` has one row per observation (index ``observation``): ``positives``, ``negatives``,
    ``auroc`` with its bootstrap percentile interval ``auroc_lo``/``auroc_hi`` and DeLong's
    ``auroc_delong_lo``/``auroc_delong_hi``, ``auprc`` with ``auprc_lo``/``auprc_hi``,
    ``resamples`` (bootstrap resamples holding both classes), ``radiologists`` (how many read the
    observation) and ``radiologists_under_curve``, ``brier`` (Brier score) and ``ece`` (expected
    calibration error over 10 equal-width bins of [0, 1], weighted by count; both NaN when scores
    leave [0, 1]). An observation with fewer than :data:`~chexpert.evaluate.metrics.MIN_POSITIVES`
    positive (or negative) studies keeps its AUROC but has no interval (a
    :class:`~chexpert.evaluate.metrics.FewPositivesWarning` says so). ``radiologists`` has one row per radiologist
    and observation with confusion counts, sensitivity, specificity, the model curve's sensitivity
    at the radiologist's false-positive rate, and ``under_curve``; with three or more readers a
    last row per observation is their majority vote, :data:`MAJORITY` ("RadMaj", of
    ``data.majority_of``), which ``radiologists`` and ``radiologists_under_curve`` do not count. ``bootstrap_auroc`` holds the
    AUROC of every resample ``(bootstrap, observations)``. ``subgroups`` holds one Evaluation per
    subgroup when ``by`` is set.
    """

    n_studies: int
    table: pd.DataFrame
    mean_auroc: float
    mean_auroc_ci: tuple[float, float]
    radiologists: pd.DataFrame
    bootstrap_auroc: np.ndarray
    data: StudyScores
    bootstrap: int
    seed: int
    level: float
    aggregate: str
    by: str | None = None
    subgroups: Mapping[str, Evaluation] = field(default_factory=dict)
    #: The observations ``mean_auroc`` averages (:func:`mean_auroc_tasks`).
    mean_auroc_tasks: tuple[str, ...] = ()

    @property
    def mean_auroc_label(self) -> str:
        """What ``mean_auroc`` averages, for tables: "mean of 5 competition tasks" or "... 4 of 5 ... (no Edema)"."""
        return mean_auroc_label(self.mean_auroc_tasks)

    @property
    def interval(self) -> str:
        """Which AUROC interval the tables show: "bootstrap" (percentile), or "DeLong" when ``bootstrap`` is 0."""
        return "bootstrap" if self.bootstrap else "DeLong"

    def auroc_interval(self, observation: str) -> tuple[float, float]:
        """The AUROC interval the tables show for ``observation`` (see :attr:`interval`); NaN where there is none."""
        row = self.table.loc[observation]
        columns = ("auroc_lo", "auroc_hi") if self.bootstrap else ("auroc_delong_lo", "auroc_delong_hi")
        return float(row[columns[0]]), float(row[columns[1]])

    @property
    def mean_radiologists_under_curve(self) -> float:
        """The leaderboard's "radiologists under ROC": mean over the five competition tasks (NaN unless all have readers)."""
        if not set(schema.COMPETITION_TASKS) <= set(self.table.index):
            return math.nan
        counts = self.table.loc[list(schema.COMPETITION_TASKS), "radiologists_under_curve"]
        return math.nan if counts.isna().any() else float(counts.astype(float).mean())

    def to_json(self) -> dict[str, Any]:
        """Everything the ``evaluate`` tables show, as plain JSON types (NaN written as null).

        Top level: ``n_studies``, ``level``, ``bootstrap``, ``seed``, ``aggregate``, ``tasks``,
        ``mean_auroc``, ``mean_auroc_ci`` and ``mean_radiologists_under_curve`` (the leaderboard's
        "radiologists under ROC"); with subgroups also ``by`` and ``subgroups`` (each an object
        like this one). Each task: ``auroc``, ``auroc_ci`` (bootstrap percentile),
        ``auroc_delong_ci``, ``auprc``, ``auprc_ci``, ``positives``, ``negatives``, ``resamples``,
        ``brier``, ``ece``,
        ``radiologists_under_curve`` (null where undefined or unread) and ``radiologists``: per
        radiologist who read it, ``sensitivity``, ``specificity``, ``ppv``, ``npv``, the counts
        ``tp``/``fp``/``tn``/``fn``, ``curve_sensitivity`` (the model's sensitivity at the
        radiologist's false-positive rate) and ``under_curve`` (null where the curve is undefined).

        >>> evaluation = evaluate("predictions.csv", "CheXpert-v1.0-small/valid.csv", radiologists=["bc4.csv"])
        >>> evaluation.to_json()["tasks"]["Edema"]["radiologists"]["bc4"]["sensitivity"]
        1.0
        """
        readers: dict[str, dict[str, Any]] = {}
        for point in self.radiologists.itertuples(index=False):
            curve = _number(point.curve_sensitivity)
            readers.setdefault(str(point.observation), {})[str(point.radiologist)] = {
                "sensitivity": _number(point.sensitivity),
                "specificity": _number(point.specificity),
                "ppv": _number(point.ppv),
                "npv": _number(point.npv),
                **{count: int(getattr(point, count)) for count in ("tp", "fp", "tn", "fn")},
                "curve_sensitivity": curve,
                "under_curve": None if curve is None else bool(point.under_curve),
            }
        tasks = {}
        for observation, row in self.table.iterrows():
            under = _number(row["radiologists_under_curve"])
            tasks[str(observation)] = {
                "auroc": _number(row["auroc"]),
                "auroc_ci": [_number(row["auroc_lo"]), _number(row["auroc_hi"])],
                "auroc_delong_ci": [_number(row["auroc_delong_lo"]), _number(row["auroc_delong_hi"])],
                "auprc": _number(row["auprc"]),
                "auprc_ci": [_number(row["auprc_lo"]), _number(row["auprc_hi"])],
                "positives": int(row["positives"]),
                "negatives": int(row["negatives"]),
                "resamples": int(row["resamples"]),
                "brier": _number(row["brier"]),
                "ece": _number(row["ece"]),
                "radiologists_under_curve": None if under is None else int(under),
                "radiologists": readers.get(str(observation), {}),
            }
        result: dict[str, Any] = {
            "n_studies": self.n_studies,
            "level": self.level,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "aggregate": self.aggregate,
            "tasks": tasks,
            "mean_auroc": _number(self.mean_auroc),
            "mean_auroc_ci": [_number(x) for x in self.mean_auroc_ci],
            "mean_auroc_tasks": list(self.mean_auroc_tasks),
            "mean_radiologists_under_curve": _number(self.mean_radiologists_under_curve),
            "interval": self.interval,
            "radmaj_of": list(self.data.majority_of),
        }
        if self.by is not None:
            result["by"] = self.by
            result["subgroups"] = {name: sub.to_json() for name, sub in self.subgroups.items()}
        return result

    def to_frame(self) -> pd.DataFrame:
        """``table`` of all studies and of every subgroup, stacked with a ``group`` column ("all" first)."""
        parts = [self.table.reset_index().assign(group="all", n_studies=self.n_studies)]
        for name, sub in self.subgroups.items():
            parts.append(sub.table.reset_index().assign(group=name, n_studies=sub.n_studies))
        frame = pd.concat(parts, ignore_index=True)
        return frame[["group", "n_studies", *[c for c in frame.columns if c not in ("group", "n_studies")]]]


@dataclass(frozen=True, eq=False)
class Comparison:
    """Two prediction files on the same studies: per-task AUROC difference (a - b), paired bootstrap and DeLong.

    ``table`` has one row per observation scored by both (index ``observation``): ``auroc_a``,
    ``auroc_b``, ``difference``, its paired bootstrap interval ``difference_lo``/``difference_hi``,
    DeLong's interval ``delong_lo``/``delong_hi``, ``z`` and the two-sided ``p_value``.
    """

    n_studies: int
    names: tuple[str, str]
    table: pd.DataFrame
    mean_auroc_a: float
    mean_auroc_b: float
    mean_difference: float
    mean_difference_ci: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, NaN as null."""
        tasks = {
            str(observation): {
                "auroc_a": _number(row["auroc_a"]),
                "auroc_b": _number(row["auroc_b"]),
                "difference": _number(row["difference"]),
                "difference_ci": [_number(row["difference_lo"]), _number(row["difference_hi"])],
                "delong_ci": [_number(row["delong_lo"]), _number(row["delong_hi"])],
                "z": _number(row["z"]),
                "p_value": _number(row["p_value"]),
            }
            for observation, row in self.table.iterrows()
        }
        return {
            "n_studies": self.n_studies,
            "a": self.names[0],
            "b": self.names[1],
            "tasks": tasks,
            "mean_auroc_a": _number(self.mean_auroc_a),
            "mean_auroc_b": _number(self.mean_auroc_b),
            "mean_difference": _number(self.mean_difference),
            "mean_difference_ci": [_number(x) for x in self.mean_difference_ci],
        }


def _number(value: Any) -> float | None:
    """``value`` as a float for JSON; None for NaN (and for pd.NA or None)."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _warn(message: str, stacklevel: int = 4) -> None:
    """Warn at the caller of the public function (``_score`` sits between them by default)."""
    warnings.warn(message, UndefinedMetricWarning, stacklevel=stacklevel)


def _undefined(observation: str, positives: int, n: int) -> str:
    return f"{observation}: AUROC is undefined with {positives} positives among {n} studies; reported as NaN"


def _check_arguments(bootstrap: int, level: float, by: str | None = None) -> None:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int | np.integer) or bootstrap < 0:
        raise InvalidArgumentError(f"bootstrap must be a whole number of resamples >= 0 (0 turns intervals off); got {bootstrap!r}")
    if not 0.0 < level < 1.0:
        raise InvalidArgumentError(f"level must be between 0 and 1, e.g. 0.95; got {level!r}")
    if by is not None:
        check_choice("by", by, SUBGROUPS)


def _labels(truth: io.StudyTable, observations: Sequence[str], predictions_name: str) -> np.ndarray:
    missing = [o for o in observations if o not in truth.observations]
    if missing:
        raise CSVFormatError(
            f"predictions score {', '.join(map(repr, missing))}, which the truth ({truth.name}) does not label",
            file=predictions_name,
        )
    return truth.select(observations).astype(bool)


def _mean_over_competition(values: np.ndarray, observations: Sequence[str]) -> np.ndarray:
    """Mean over the five competition tasks along the last axis; NaN unless all five are present."""
    if not set(schema.COMPETITION_TASKS) <= set(observations):
        return np.full(values.shape[:-1], np.nan)
    columns = [observations.index(t) for t in schema.COMPETITION_TASKS]
    return values[..., columns].mean(axis=-1)


def mean_auroc_tasks(aurocs: Mapping[str, float]) -> tuple[str, ...]:
    """The observations "the mean AUROC" averages: the competition tasks whose AUROC is defined.

    When none of the five competition tasks is scored at all (a model of other observations),
    every observation with a defined AUROC. Used by ``evaluate`` and by ``train`` to rank its
    checkpoints, so both mean the same thing; tables say how many tasks it covers.

    >>> mean_auroc_tasks({"Edema": 0.9, "Atelectasis": float("nan"), "Cardiomegaly": 0.8})
    ('Cardiomegaly', 'Edema')
    """

    def defined(name: str) -> bool:
        value = aurocs[name]
        return value is not None and not math.isnan(float(value))

    scored = [t for t in schema.COMPETITION_TASKS if t in aurocs]
    if scored:
        return tuple(t for t in scored if defined(t))
    return tuple(o for o in schema.OBSERVATIONS if o in aurocs and defined(o))


def mean_auroc_label(tasks: Sequence[str]) -> str:
    """How a table names the mean over ``tasks`` (:func:`mean_auroc_tasks`).

    >>> mean_auroc_label(("Atelectasis", "Cardiomegaly", "Consolidation", "Pleural Effusion"))
    'Mean of 4 of 5 competition tasks (no Edema)'
    """
    competition = schema.COMPETITION_TASKS
    if tasks and not set(tasks) <= set(competition):
        return f"Mean of {len(tasks)} observations"
    if len(tasks) == len(competition):
        return "Mean of 5 competition tasks"
    missing = [t for t in competition if t not in tasks]
    return f"Mean of {len(tasks)} of 5 competition tasks (no {', '.join(missing)})"


def _mean_over(values: np.ndarray, observations: Sequence[str], tasks: Sequence[str]) -> np.ndarray:
    """Mean over ``tasks`` along the last axis; NaN when there are none."""
    if not tasks:
        return np.full(values.shape[:-1], np.nan)
    return values[..., [list(observations).index(t) for t in tasks]].mean(axis=-1)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = metrics.percentile_interval(values, level)
    return float(lo), float(hi)


def _bootstrap(
    models: Sequence[np.ndarray], labels: np.ndarray, bootstrap: int, seed: int, *, average_precision: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per model (scores ``(studies, tasks)``): AUROC and average precision of every resample, ``(bootstrap, tasks)``.

    NaN for tasks with one class. Every model is scored on the same resamples (a paired
    bootstrap), drawn and scored a block at a time (:func:`metrics.bootstrap_blocks`) with each
    task sorted once, so memory stays bounded whatever the number of studies.
    """
    n, k = labels.shape
    positives = labels.sum(axis=0)
    defined = [j for j in range(k) if 0 < positives[j] < n]
    tasks = [{j: metrics.SortedScores(scores[:, j], labels[:, j]) for j in defined} for scores in models]
    results = [(np.full((bootstrap, k), np.nan), np.full((bootstrap, k), np.nan)) for _ in models]
    if bootstrap and defined:
        for columns, counts in metrics.bootstrap_blocks(n, bootstrap, seed):
            for sorted_tasks, (aurocs, aps) in zip(tasks, results):
                for j, task in sorted_tasks.items():
                    aurocs[columns, j] = task.bootstrap_auroc(counts)
                    if average_precision:
                        aps[columns, j] = task.bootstrap_average_precision(counts)
    return results


def _score(data: StudyScores, *, bootstrap: int, seed: int, level: float, aggregate: str, context: str = "") -> Evaluation:
    n, observations = len(data.studies), data.observations
    [(resampled, resampled_ap)] = _bootstrap([data.scores], data.labels, bootstrap, seed)
    rows, reader_rows, one_class = [], [], []
    for j, observation in enumerate(observations):
        scores, labels = data.scores[:, j], data.labels[:, j]
        positives = int(labels.sum())
        row: dict[str, Any] = {"observation": observation, "positives": positives, "negatives": n - positives}
        defined = 0 < positives < n
        if not defined:
            _warn(context + _undefined(observation, positives, n))
        with warnings.catch_warnings():
            # Undefined cases were reported once above, with the observation's name.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            row["auroc"] = metrics.auroc(scores, labels) if defined else math.nan
            row["auroc_delong_lo"], row["auroc_delong_hi"] = metrics.delong_interval(scores, labels, level) if defined else (math.nan, math.nan)
            row["auprc"] = metrics.average_precision(scores, labels) if positives else math.nan
        row["auroc_lo"], row["auroc_hi"] = _interval(resampled[:, j], level)
        row["auprc_lo"], row["auprc_hi"] = _interval(resampled_ap[:, j], level)
        row["resamples"] = int(np.isfinite(resampled[:, j]).sum())
        if defined and row["resamples"] < bootstrap:
            one_class.append(f"{observation} {bootstrap - row['resamples']}")
        if defined and min(positives, n - positives) < metrics.MIN_POSITIVES:
            # An interval from a handful of positives is narrow and meaningless: show none.
            warnings.warn(
                f"{context}{observation}: {positives} positive and {n - positives} negative studies, fewer than {metrics.MIN_POSITIVES} of one class; "
                "its AUROC is shown without an interval",
                FewPositivesWarning,
                stacklevel=3,
            )
            for column in ("auroc_lo", "auroc_hi", "auroc_delong_lo", "auroc_delong_hi", "auprc_lo", "auprc_hi"):
                row[column] = math.nan
        in_unit = bool(((scores >= 0.0) & (scores <= 1.0)).all())
        row["brier"] = metrics.brier_score(scores, labels) if in_unit else math.nan
        row["ece"] = metrics.expected_calibration_error(scores, labels) if in_unit else math.nan
        points = [
            {"radiologist": name, "observation": observation, **operating.reader_point(reads[:, j], labels, scores)}
            for name, reads in data.readers.items()
            if not np.isnan(reads[:, j]).all()  # this radiologist's file lacks the observation
        ]
        reader_rows += points
        individual = [p for p in points if p["radiologist"] != MAJORITY]
        row["radiologists"] = len(individual)
        # A float column: NaN (not pd.NA) where undefined, so that a row read from the table holds
        # plain floats (a nullable column turns every NaN of the row into pd.NA).
        row["radiologists_under_curve"] = float(sum(bool(p["under_curve"]) for p in individual)) if individual and defined else math.nan
        rows.append(row)
    if one_class:
        _warn(f"{context}bootstrap resamples holding one class only are left out of the intervals (of {bootstrap}): {', '.join(one_class)}")
    columns = [
        "positives", "negatives", "auroc", "auroc_lo", "auroc_hi", "auroc_delong_lo", "auroc_delong_hi",
        "auprc", "auprc_lo", "auprc_hi", "resamples", "radiologists", "radiologists_under_curve", "brier", "ece",
    ]  # fmt: skip
    table = pd.DataFrame(rows).set_index("observation")[columns]
    reader_table = pd.DataFrame(
        reader_rows,
        columns=["radiologist", "observation", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv", "curve_sensitivity", "under_curve"],
    )
    tasks = mean_auroc_tasks(table["auroc"].to_dict())
    mean = float(_mean_over(table["auroc"].to_numpy(), observations, tasks))
    return Evaluation(
        n_studies=n,
        table=table,
        mean_auroc=mean,
        mean_auroc_ci=_interval(_mean_over(resampled, observations, tasks), level),
        mean_auroc_tasks=tasks,
        radiologists=reader_table,
        bootstrap_auroc=resampled,
        data=data,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
        aggregate=aggregate,
    )


def _opened(truth: Any) -> Any:
    """A download given as the truth (a folder or a zip) opened through ``chexpert.open``, which
    recognises every dataset (MIMIC-CXR-JPG as well as the CheXpert release); anything else unchanged."""
    if isinstance(truth, str | os.PathLike):
        path = Path(truth).expanduser()
        if path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)):
            return open_dataset(path)
    return truth


def evaluate(
    predictions: Source,
    truth: Source | Index | Release,
    *,
    radiologists: Sequence[Source] | Mapping[str, Source] | str | None = None,
    split: str | None = None,
    aggregate: str = "max",
    bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    by: str | None = None,
    metadata: Source | Index | None = None,
    majority: bool = True,
) -> Evaluation:
    """Score predictions per study as the CheXpert competition did, with intervals and radiologists.

    ``predictions``: CSV path or DataFrame with a ``Path`` (per image, combined per study by
    ``aggregate``, "max" or "mean") or ``Study`` column and any of the 14 observations as columns.
    ``truth``: ``valid.csv``, an Index, a study-level file such as ``groundtruth.csv``, or a
    release (folder, zip or :class:`~chexpert.release.Release`): then the ``split`` ("valid" or
    "test"; default: the one the predictions are in) is scored against its released labels (the
    test set's ``groundtruth.csv``), see :func:`chexpert.testset.resolve_truth`.
    ``radiologists``: study-level 0/1 files (a mapping gives them names); with a release, a group
    of its radiologists ("benchmark", the default for the test set, "consensus", "all" or "none").
    Studies are joined by key:
    both sides must hold the same studies, and row order never matters. ``bootstrap`` resamples
    of studies (``seed``, shared by every task) give percentile intervals at ``level``. ``by``
    ("sex", "age-band", "projection") scores each subgroup too, from the truth's image metadata or
    from ``metadata`` (an Index, ``valid.csv`` or ``test.csv``) when the truth is study-level.
    Resamples are drawn and scored in blocks (:func:`~chexpert.evaluate.metrics.bootstrap_blocks`:
    about 200 MiB of working memory at any number of studies, the same numbers as one draw).
    Scores outside [0, 1] are ranked as given, with a :class:`~chexpert.evaluate.ScoreRangeWarning`.
    With ``majority`` and three or more radiologists, their majority vote is one more reader,
    :data:`MAJORITY` ("RadMaj"), as in the CheXpert paper: of the three benchmark radiologists
    (bc4, bc6, bc8) when they are among the readers, else of all of them (a study is positive when
    more than half of those who read the observation call it positive).

    >>> result = evaluate("predictions.csv", "CheXpert-v1.0-small/valid.csv")
    >>> result.table.loc["Edema", ["auroc", "auroc_lo", "auroc_hi"]].round(3).tolist()
    [0.876, 0.72, 1.0]
    >>> round(result.mean_auroc, 3)
    0.936
    """
    _check_arguments(bootstrap, level, by)
    predictions, truth, metadata = io.expand_user(predictions), io.expand_user(truth), io.expand_user(metadata)
    if isinstance(radiologists, Mapping):
        radiologists = {name: io.expand_user(s) for name, s in radiologists.items()}
    elif isinstance(radiologists, Sequence) and not isinstance(radiologists, str):
        radiologists = [io.expand_user(s) for s in radiologists]
    elif radiologists is not None:
        radiologists = io.expand_user(radiologists)
    predicted = io.read_predictions(predictions, aggregate=aggregate)
    truth, radiologists, found_metadata = resolve_truth(
        _opened(truth), predicted.studies, split=split, radiologists=radiologists, predictions_name=predicted.name
    )
    truth_table = io.read_truth(truth)
    scores = io.align(predicted, truth_table, "predictions")
    observations = scores.observations
    readers = {name: io.align(table, truth_table, f"radiologist {name!r}").select(observations) for name, table in io.read_radiologists(radiologists).items()}
    voters: tuple[str, ...] = ()
    if majority:
        voters, vote = _majority(readers)
        if voters:
            readers[MAJORITY] = vote
    data = StudyScores(truth_table.studies, observations, scores.values, _labels(truth_table, observations, scores.name), readers, scores.name, voters)
    score = functools.partial(_score, bootstrap=bootstrap, seed=seed, level=level, aggregate=aggregate)
    result = score(data)
    if by is None:
        return result
    if metadata is None and truth_table.metadata is None:
        metadata = found_metadata
    groups = io.subgroup_of(io.study_metadata(truth_table, metadata), by)
    subgroups = {}
    for group in io.subgroup_order(by, groups):  # a loop, not a comprehension: warnings point at the caller
        subgroups[group] = score(data.take(groups == group), context=f"{by} {group}: ")
    return replace(result, by=by, subgroups=subgroups)


def _majority(readers: Mapping[str, np.ndarray]) -> tuple[tuple[str, ...], np.ndarray]:
    """The voters and their majority vote ``(studies, observations)``: 1 where more than half of those
    who read the observation say positive, NaN where fewer than three read it. No voters: fewer than three readers.

    >>> reads = {"bc4": np.array([[1.0]]), "bc6": np.array([[0.0]]), "bc8": np.array([[1.0]])}
    >>> _majority(reads)[1].tolist()
    [[1.0]]
    """
    from chexpert.testset import BENCHMARK_READERS

    if MAJORITY in readers:
        raise InvalidArgumentError(f"a radiologist is named {MAJORITY!r}, the name of the radiologists' majority vote; rename the file or pass majority=False")
    benchmark = [name for name in readers if name.lower() in BENCHMARK_READERS]
    voters = tuple(benchmark) if len(benchmark) == len(BENCHMARK_READERS) else tuple(readers)
    if len(voters) < 3:
        return (), np.empty((0, 0))
    reads = np.stack([readers[name] for name in voters])
    counted = (~np.isnan(reads)).sum(axis=0)
    votes = np.nansum(reads, axis=0)
    return voters, np.where(counted >= 3, (2 * votes > counted).astype(np.float64), np.nan)


def compare(
    a: Source,
    b: Source,
    truth: Source | Index | Release,
    *,
    split: str | None = None,
    aggregate: str = "max",
    bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Comparison:
    """Compare two prediction files on the same studies: paired bootstrap and DeLong's test per task.

    Both files are scored on the observations they share; the bootstrap draws one set of resamples
    for both files and every task, so the interval of the difference is paired. ``truth`` and
    ``split`` are as in :func:`evaluate` (a release is scored on the split the predictions are in).

    >>> result = compare("densenet.csv", "resnet.csv", "CheXpert-v1.0-small/valid.csv")
    >>> result.table.loc["Edema", ["difference", "p_value"]].round(3).tolist()
    [0.182, 0.317]
    """
    _check_arguments(bootstrap, level)
    a, b, truth = io.expand_user(a), io.expand_user(b), io.expand_user(truth)
    predicted = io.read_predictions(a, aggregate=aggregate)
    truth = resolve_truth(_opened(truth), predicted.studies, split=split, radiologists="none", predictions_name=predicted.name)[0]
    truth_table = io.read_truth(truth)
    first = io.align(predicted, truth_table, "predictions")
    second = io.align(io.read_predictions(b, aggregate=aggregate), truth_table, "predictions")
    observations = tuple(o for o in first.observations if o in second.observations)
    if not observations:
        raise CSVFormatError(f"no observation is scored by both {first.name} and {second.name}")
    labels = _labels(truth_table, observations, first.name)
    n = len(truth_table)
    # One set of resamples for both files: the interval of the difference is paired.
    (resampled_a, _), (resampled_b, _) = _bootstrap([first.select(observations), second.select(observations)], labels, bootstrap, seed, average_precision=False)
    differences = resampled_a - resampled_b
    aurocs = np.full((2, len(observations)), np.nan)
    rows = []
    for j, observation in enumerate(observations):
        y, pair = labels[:, j], (first.column(observation), second.column(observation))
        if not 0 < y.sum() < n:
            _warn(_undefined(observation, int(y.sum()), n), stacklevel=3)
            test = {"difference": math.nan, "lo": math.nan, "hi": math.nan, "z": math.nan, "p_value": math.nan}
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                aurocs[:, j] = [metrics.auroc(s, y) for s in pair]
                test = metrics.delong_test(*pair, y, level)
        lo, hi = _interval(differences[:, j], level)
        rows.append(
            {
                "observation": observation,
                "auroc_a": aurocs[0, j],
                "auroc_b": aurocs[1, j],
                "difference": aurocs[0, j] - aurocs[1, j],
                "difference_lo": lo,
                "difference_hi": hi,
                "delong_lo": test["lo"],
                "delong_hi": test["hi"],
                "z": test["z"],
                "p_value": test["p_value"],
            }
        )
    means = _mean_over_competition(aurocs, observations)
    return Comparison(
        n_studies=n,
        names=(first.name, second.name),
        table=pd.DataFrame(rows).set_index("observation"),
        mean_auroc_a=float(means[0]),
        mean_auroc_b=float(means[1]),
        mean_difference=float(means[0] - means[1]),
        mean_difference_ci=_interval(_mean_over_competition(differences, observations), level),
    )


def operating_points(
    evaluation: Evaluation,
    *,
    sensitivity: Sequence[float] = (),
    specificity: Sequence[float] = (),
    youden: bool = True,
    radiologists: bool = True,
) -> pd.DataFrame:
    """Thresholds per observation with their confusion counts, one row per observation and criterion.

    ``criterion`` is "sensitivity" or "specificity" (the threshold reaching at least ``target``
    with the best other rate), "youden" (maximum sensitivity + specificity - 1) or "radiologists"
    (at least the radiologists' mean specificity on that observation; only where they read it).
    A study is called positive when its score is at least ``threshold``. Thresholds are
    probabilities: scores outside [0, 1] (accepted by :func:`evaluate` with a warning, since
    ranking them is well defined) raise :class:`~chexpert.errors.CSVFormatError` here.

    >>> points = operating_points(result, sensitivity=[0.9])
    >>> points.loc[points.observation == "Edema", ["criterion", "threshold", "sensitivity"]].round(2).to_dict("records")
    [{'criterion': 'sensitivity', 'threshold': 0.45, 'sensitivity': 1.0}, {'criterion': 'youden', 'threshold': 0.45, 'sensitivity': 1.0}]
    """
    if isinstance(sensitivity, int | float) or isinstance(specificity, int | float):
        raise TypeError("sensitivity= and specificity= take sequences of targets, e.g. [0.9, 0.95]")
    data, rows = evaluation.data, []
    outside = io._outside_unit_interval(data.scores, data.studies, data.observations)
    if outside is not None:
        raise CSVFormatError(
            f"operating points are thresholds on probabilities, but {outside}; pass scores in [0, 1] (apply a sigmoid to logits)",
            file=data.name,
        )
    mean_specificity = evaluation.radiologists.groupby("observation")["specificity"].mean() if radiologists else pd.Series(dtype=float)
    for j, observation in enumerate(data.observations):
        scores, labels = data.scores[:, j], data.labels[:, j]
        criteria: list[tuple[str, float, dict[str, Any]]] = []
        criteria += [("sensitivity", t, {"sensitivity": t}) for t in sensitivity]
        criteria += [("specificity", t, {"specificity": t}) for t in specificity]
        if youden:
            criteria.append(("youden", math.nan, {"youden": True}))
        if observation in mean_specificity.index and not math.isnan(mean_specificity[observation]):
            target = float(mean_specificity[observation])
            criteria.append(("radiologists", target, {"specificity": target}))
        for criterion, target, keywords in criteria:
            point = operating.threshold(scores, labels, **keywords)
            rows.append({"observation": observation, "criterion": criterion, "target": target, **point})
    columns = ["observation", "criterion", "target", "threshold", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv"]
    return pd.DataFrame(rows, columns=columns)


_POINT_COLUMNS = ["observation", "criterion", "target", "threshold", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "ppv", "npv"]


def _fitted_thresholds(source: str | os.PathLike[str] | Mapping[str, Any] | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The operating points of ``source`` as a frame (``_POINT_COLUMNS``), and its name for messages."""
    name = "<thresholds>"
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        path = Path(name).expanduser()
        if not path.is_file():
            raise CSVFormatError("thresholds file not found (the --json output of evaluate with --operating-point)", file=name)
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CSVFormatError(f"is not the JSON that evaluate --json writes: {exc}", file=name) from None
    if isinstance(source, Mapping):
        records = source.get("operating_points")
        if not isinstance(records, list) or not records:
            raise CSVFormatError("holds no operating points; write it with evaluate --operating-point CRITERION --json", file=name)
        frame = pd.DataFrame.from_records(records)
    elif isinstance(source, pd.DataFrame):
        frame = source
    else:
        raise InvalidArgumentError(
            f"thresholds must be a path to evaluate's JSON, that JSON as a dict, or operating_points()' DataFrame; got {type(source).__name__}"
        )
    missing = [c for c in _POINT_COLUMNS if c not in frame.columns]
    if missing:
        raise CSVFormatError(f"operating points lack the field(s) {', '.join(missing)}", file=name)
    return frame, name


def apply_thresholds(evaluation: Evaluation, thresholds: str | os.PathLike[str] | Mapping[str, Any] | pd.DataFrame) -> pd.DataFrame:
    """Apply thresholds fitted on another split (say valid) to this evaluation's studies (say test).

    ``thresholds``: the ``--json`` output of ``chexpert evaluate --operating-point ...`` (a path or
    the parsed dict), or the DataFrame of :func:`operating_points`. Returns the rows of
    :func:`operating_points` (same columns) with each fitted threshold kept as it was and the
    confusion counts and rates measured here, plus ``fitted_sensitivity`` and
    ``fitted_specificity`` (the rates where the threshold was chosen). A study is positive when
    its score is at least the threshold. An observation the thresholds name but this evaluation
    did not score is an error; a threshold that was undefined where it was fitted (one class
    only) is left out with an :class:`UndefinedMetricWarning`. JSON writes an infinite threshold
    (no study called positive) as null: it is read back as +inf when the fitted counts hold both
    classes.

    >>> valid = evaluate("valid_predictions.csv", "CheXpert-v1.0-small/valid.csv")
    >>> points = operating_points(valid, sensitivity=[0.9])
    >>> test = apply_thresholds(evaluate("test_predictions.csv", "CheXpert-v1.0-small/test_labels.csv"), points)
    >>> test.columns.tolist()
    ['observation', 'criterion', 'target', 'threshold', 'tp', 'fp', 'tn', 'fn', 'sensitivity', 'specificity', 'ppv', 'npv', 'fitted_sensitivity', 'fitted_specificity']
    """
    frame, name = _fitted_thresholds(thresholds)
    data = evaluation.data
    unknown = sorted(set(map(str, frame["observation"])) - set(data.observations))
    if unknown:
        raise CSVFormatError(f"thresholds for {', '.join(map(repr, unknown))}, which these predictions do not score ({data.name})", file=name)
    outside = io._outside_unit_interval(data.scores, data.studies, data.observations)
    if outside is not None:
        raise CSVFormatError(f"thresholds are on probabilities, but {outside}; pass scores in [0, 1] (apply a sigmoid to logits)", file=data.name)
    rows, undefined = [], []
    for point in frame.to_dict(orient="records"):
        observation = str(point["observation"])
        value = point["threshold"]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            fitted_positives = int(point["tp"]) + int(point["fn"])
            fitted_negatives = int(point["fp"]) + int(point["tn"])
            if not (fitted_positives and fitted_negatives):
                undefined.append(f"{observation} ({point['criterion']})")
                continue
            value = math.inf  # JSON's null for a threshold above every score
        j = data.observations.index(observation)
        counts = operating.confusion(data.scores[:, j] >= float(value), data.labels[:, j])
        rows.append({
            **{k: point[k] for k in ("observation", "criterion", "target")}, "threshold": float(value), **counts,
            "fitted_sensitivity": point["sensitivity"], "fitted_specificity": point["specificity"],
        })  # fmt: skip
    if undefined:
        _warn(f"thresholds undefined where they were fitted (one class only), left out: {', '.join(undefined)}", stacklevel=3)
    out = pd.DataFrame(rows, columns=[*_POINT_COLUMNS, "fitted_sensitivity", "fitted_specificity"])
    out["target"] = pd.to_numeric(out["target"], errors="coerce")
    for column in ("fitted_sensitivity", "fitted_specificity"):
        out[column] = pd.to_numeric(out[column], errors="coerce")
    return out
