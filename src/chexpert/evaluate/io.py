"""Read predictions, ground truth and radiologist files into study-level tables keyed by study.

Every file is reduced to one row per study, keyed by ``schema.study_key`` (release prefix,
trailing slash and file name removed) and sorted by key, so that nothing downstream depends on
the order of the rows in a file. Columns are matched by name, never by position.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, Union, cast

import numpy as np
import pandas as pd

from chexpert import schema
from chexpert.errors import CSVFormatError, InvalidArgumentError
from chexpert.evaluate import AGE_BANDS, AGGREGATES, SUBGROUPS
from chexpert.index import Index
from chexpert.index import read_csv as read_index_csv
from chexpert.safeio import csv_frame as _frame_from_bytes
from chexpert.safeio import read_csv_text as _read_source
from chexpert.safeio import read_text_csv as read_text_csv
from chexpert.subgroups import DEMOGRAPHIC_COLUMNS, UNKNOWN, age_band, group_order, subgroup_of_rows
from chexpert.validation import check_choice

__all__ = [
    "ScoreRangeWarning",
    "Source",
    "StudyTable",
    "read_predictions",
    "read_truth",
    "read_radiologists",
    "read_metadata",
    "study_metadata",
    "subgroup_of",
    "subgroup_order",
    "align",
    "COLUMN_ALIASES",
    "expand_user",
]

Source = Union[str, "os.PathLike[str]", pd.DataFrame]
_T = TypeVar("_T")

#: Projection of a study with frontal images of more than one projection, or with none.
MIXED, NO_FRONTAL = "mixed", "no frontal"

_SHOWN = 8  # studies named in an error message

#: Other names of the observations, accepted as column names of predictions, truth and radiologists
#: (matched after spaces and underscores are made one space, ignoring case): CheXlocalize's
#: "Airspace Opacity", and torchxrayvision's names, which call Pleural Effusion "Effusion" and
#: write some names with underscores (``xrv.datasets.CheX_Dataset`` renames the column; its
#: ``default_pathologies`` spell "Enlarged Cardiomediastinum", "Lung Lesion", "Fracture" and
#: "Lung Opacity" as CheXpert does).
COLUMN_ALIASES: dict[str, str] = {
    "airspace opacity": "Lung Opacity",
    "effusion": "Pleural Effusion",
    **{name.lower(): name for name in schema.OBSERVATIONS},
}


def _alias_key(column: str) -> str:
    return " ".join(str(column).replace("_", " ").split()).lower()


def _canonical_columns(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``frame`` with observation columns under their CheXpert names (see :data:`COLUMN_ALIASES`).

    Two columns naming one observation (``Effusion`` and ``Pleural Effusion``) are an error.
    """
    renamed = {}
    for column in frame.columns:
        if column in schema.OBSERVATIONS or column in schema.METADATA_COLUMNS or column == "Study":
            continue
        target = COLUMN_ALIASES.get(_alias_key(column))
        if target is not None:
            renamed[column] = target
    if not renamed:
        return frame
    names = [renamed.get(c, c) for c in frame.columns]
    twice = sorted({n for n in names if names.count(n) > 1 and n in schema.OBSERVATIONS})
    if twice:
        sources = [f"{c!r}" for c in frame.columns if renamed.get(c, c) in twice]
        raise CSVFormatError(f"columns {', '.join(sources)} all name {', '.join(map(repr, twice))}; keep one", file=name)
    return frame.rename(columns=renamed)


def expand_user(source: _T) -> _T:
    """A path with ``~`` expanded (``os.path.expanduser``); anything else (a DataFrame, an Index) unchanged.

    >>> import os; expand_user("~/x.csv") == os.path.join(os.path.expanduser("~"), "x.csv")
    True
    """
    if isinstance(source, str | os.PathLike):
        text = os.fspath(cast("str | os.PathLike[str]", source))
        if text.startswith("~"):
            return cast(_T, os.path.expanduser(text))
    return source


class ScoreRangeWarning(UserWarning):
    """Prediction scores outside [0, 1]: ranked as given (AUROC and AUPRC depend only on their order).

    Some released competition models wrote scores above 1. Operating points, being thresholds on
    probabilities, refuse such scores.
    """


def _listing(items: Iterable[object]) -> str:
    """The first few items, and how many more there are: "a, b and 7 more"."""
    texts = [str(x) for x in items]
    shown = ", ".join(texts[:_SHOWN])
    return shown + (f" and {len(texts) - _SHOWN} more" if len(texts) > _SHOWN else "")


@dataclass(frozen=True, eq=False)
class StudyTable:
    """Values per study: ``values[i, j]`` belongs to ``studies[i]`` and ``observations[j]``.

    ``studies`` are sorted and unique; ``observations`` follow ``schema.OBSERVATIONS`` order.
    ``metadata`` (image-level sources only) has one row per study with ``sex``, ``age`` and
    ``projection``.
    """

    name: str
    studies: np.ndarray
    observations: tuple[str, ...]
    values: np.ndarray
    metadata: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.studies)

    def column(self, observation: str) -> np.ndarray:
        """The values of one observation, one per study."""
        return self.values[:, self.observations.index(observation)]

    def select(self, observations: Sequence[str]) -> np.ndarray:
        """``(studies, len(observations))`` values; NaN for observations this table lacks."""
        out = np.full((len(self.studies), len(observations)), np.nan)
        for j, name in enumerate(observations):
            if name in self.observations:
                out[:, j] = self.column(name)
        return out


def _source_name(source: Source | Index, role: str) -> str:
    """How messages name a source: its path, or its kind."""
    if isinstance(source, pd.DataFrame) and isinstance(source.attrs.get("source"), str):
        return str(source.attrs["source"])  # a file read into memory (e.g. from a zip) keeps its name
    if isinstance(source, pd.DataFrame | Index):
        return f"<{role} {type(source).__name__}>"
    return os.fspath(source)


def _load(source: Source | bytes, role: str, name: str | None = None) -> tuple[pd.DataFrame, str]:
    """The source as a DataFrame (of strings when read from a file), and the name used in messages.

    A missing file, a folder, a zip or other binary file, an empty file and a file with a header
    but no rows are errors naming the file. ``source`` may be bytes already read (``name`` names them).
    """
    if isinstance(source, bytes):
        name = name or f"<{role} bytes>"
        frame = _frame_from_bytes(source, name, role)
    else:
        source = expand_user(source)
        name = _source_name(source, role)
        if isinstance(source, pd.DataFrame):
            frame = source.reset_index(drop=True)
        else:
            frame = _frame_from_bytes(_read_source(name, role), name, role)
    if len(frame) == 0:
        raise CSVFormatError(f"{role} has a header but no rows", file=name)
    return _canonical_columns(frame, name), name


def _is_image_path(value: str) -> bool | None:
    """Whether a key names an image (a file below its study folder) rather than a study; None
    when it names neither (reported as such by ``_keys``)."""
    parts = [p for p in schema.strip_release_prefix(value.strip()).split("/") if p]
    if not any(p.startswith("study") for p in parts):
        return None
    return any(p.startswith("study") for p in parts[:-1])


def _check_one_level(frame: pd.DataFrame, name: str, role: str) -> None:
    """Refuse a file mixing image rows and study rows: their scores would otherwise be combined
    as if the study's own row were one more of its images (its maximum or mean taken silently).

    A row's level is that of its ``Path`` (an image path, or a study path), else of its ``Study``.
    """
    first: dict[bool, tuple[int, str, str]] = {}  # image level? -> its first row
    paths = frame["Path"].astype(str).tolist() if "Path" in frame.columns else [""] * len(frame)
    studies = frame["Study"].astype(str).tolist() if "Study" in frame.columns else [""] * len(frame)
    for row, (path, study) in enumerate(zip(paths, studies)):
        column, value = ("Path", path) if path.strip() else ("Study", study)
        level = _is_image_path(value)
        if level is None:
            continue
        first.setdefault(level, (row + 2, column, value))
        if len(first) == 2:
            (i_row, i_col, i_val), (s_row, s_col, s_val) = first[True], first[False]
            raise CSVFormatError(
                f"{role} mixes image-level and study-level rows (row {i_row}: {i_col} {i_val!r} is an image; "
                f"row {s_row}: {s_col} {s_val!r} is a study); give one row per image or one per study, not both",
                file=name,
            )


def _file_bytes(source: Source | Index, role: str) -> bytes | None:
    """The bytes of a source given by path, read once (a pipe can be read only once); None otherwise."""
    if isinstance(source, pd.DataFrame | Index):
        return None
    return _read_source(os.fspath(expand_user(source)), role)


def _has_release_header(data: bytes) -> bool:
    """Whether the CSV text starts with the header of the release's train/valid/test CSVs."""
    return data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace") == ",".join(schema.CSV_COLUMNS)


def _keys(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    """``schema.study_key`` of every row; an error names the rows that are not study paths."""
    keys, bad = [], []
    for row, value in enumerate(frame[column].astype(str)):
        try:
            keys.append(schema.study_key(value))
        except ValueError:
            bad.append(f"row {row + 2} {value!r}")
            keys.append("")
    if bad:
        raise CSVFormatError(f"{column} is not a CheXpert study path on {_listing(bad)}", file=name)
    return np.asarray(keys, dtype=object)


def _numbers(frame: pd.DataFrame, columns: Sequence[str], keys: np.ndarray, name: str) -> np.ndarray:
    """The columns as float64; an error names the studies holding text that is not a number."""
    values = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        raw = frame[column]
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        text = raw.astype(str).str.strip()
        bad = np.isnan(numbers) & ~(raw.isna().to_numpy() | text.isin(["", "nan", "NaN"]).to_numpy())
        if bad.any():
            shown = [f"{k} ({v!r})" for k, v in zip(keys[bad], raw[bad])]
            raise CSVFormatError(f"{column!r} is not a number for {_listing(shown)}", file=name)
        values[:, j] = numbers
    return values


def _observation_columns(frame: pd.DataFrame, name: str, role: str) -> list[str]:
    """Observation columns of ``frame`` in ``schema.OBSERVATIONS`` order; unknown columns are errors."""
    known = set(schema.OBSERVATIONS) | set(schema.METADATA_COLUMNS) | {"Study"}
    unknown = [c for c in frame.columns if c not in known]
    if unknown:
        raise CSVFormatError(
            f"unknown {role} column(s) {', '.join(map(repr, unknown))}; valid: Path or Study, then any of " + ", ".join(schema.OBSERVATIONS),
            file=name,
        )
    columns = [c for c in schema.OBSERVATIONS if c in frame.columns]
    if not columns:
        raise CSVFormatError(f"{role} file has none of the 14 observations as a column: " + ", ".join(schema.OBSERVATIONS), file=name)
    if len(set(frame.columns)) != len(frame.columns):
        repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        raise CSVFormatError(f"column(s) {', '.join(map(repr, repeated))} appear twice", file=name)
    return columns


def _key_column(frame: pd.DataFrame, name: str, role: str, allowed: tuple[str, ...] = ("Study", "Path")) -> str:
    for column in allowed:
        if column in frame.columns:
            return column
    raise CSVFormatError(f"{role} file needs a {' or a '.join(allowed)} column; columns are {list(frame.columns)}", file=name)


def _duplicates(keys: np.ndarray) -> list[str]:
    unique, counts = np.unique(keys.astype(str), return_counts=True)
    return unique[counts > 1].tolist()


def _study_level(frame: pd.DataFrame, name: str, role: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A file with one row per study (``Study`` column): its keys, observation columns and values."""
    _key_column(frame, name, role, ("Study",))
    columns = _observation_columns(frame, name, role)
    keys = _keys(frame, "Study", name)
    repeated = _duplicates(keys)
    if repeated:
        raise CSVFormatError(f"Study appears more than once: {_listing(repeated)}", file=name)
    return keys, columns, _numbers(frame, columns, keys, name)


def _check_binary(values: np.ndarray, studies: np.ndarray, columns: Sequence[str], name: str, role: str) -> None:
    for j, column in enumerate(columns):
        bad = ~np.isin(values[:, j], (0.0, 1.0))
        if bad.any():
            shown = [f"{k} ({v:g})" for k, v in zip(studies[bad], values[bad, j])]
            raise CSVFormatError(f"{role} {column!r} must be 0 or 1 (blank and uncertain are not allowed): {_listing(shown)}", file=name)


def read_predictions(source: Source, *, aggregate: str = "max") -> StudyTable:
    """Read model scores, per image (``Path`` column) or per study (``Study`` column), into one row per study.

    Image scores become study scores by ``aggregate`` ("max" or "mean"). Scores should be
    probabilities in [0, 1], but any finite number is accepted: AUROC and AUPRC depend only on the
    order of the scores, so scores outside [0, 1] (logits, or the slightly-over-1 scores of some
    released competition models) are scored as given, with a :class:`ScoreRangeWarning`
    (:func:`~chexpert.evaluate.operating_points` refuses them). NaN, infinite or empty scores,
    duplicate rows and paths that are not CheXpert's raise
    :class:`~chexpert.errors.CSVFormatError` naming the studies.

    >>> table = read_predictions("predictions.csv")
    >>> table.studies[:1], table.observations[:2]
    (array(['valid/patient64541/study1'], dtype=object), ('No Finding', 'Enlarged Cardiomediastinum'))
    """
    check_choice("aggregate", aggregate, AGGREGATES)
    frame, name = _load(source, "predictions")
    _check_one_level(frame, name, "predictions")
    key_column = _key_column(frame, name, "predictions")
    columns = _observation_columns(frame, name, "predictions")
    keys = _keys(frame, key_column, name)
    scores = _numbers(frame, columns, keys, name)
    bad = ~np.isfinite(scores)
    rows = bad.any(axis=1)
    if rows.any():
        observation = columns[int(np.argmax(bad[rows][0]))]
        raise CSVFormatError(
            f"scores NaN (or empty) or infinite for {_listing(np.unique(keys[rows]))} (first in {observation!r}); "
            "every study needs a finite score for every observation in the file",
            file=name,
        )
    _warn_outside_unit_interval(scores, keys, columns, name)
    identity = keys if key_column == "Study" else frame[key_column].map(schema.strip_release_prefix).to_numpy(dtype=object)
    repeated = _duplicates(identity)
    if repeated:
        raise CSVFormatError(f"{key_column} appears more than once: {_listing(repeated)}", file=name)
    # Sort by (study, image) first so that a mean sums in the same order however the file is sorted.
    order = np.lexsort((identity.astype(str), keys.astype(str)))
    studies, first = np.unique(keys[order].astype(str), return_index=True)
    ordered = scores[order]
    if aggregate == "max":
        values = np.maximum.reduceat(ordered, first, axis=0)
    else:
        values = np.add.reduceat(ordered, first, axis=0) / np.diff(np.r_[first, len(order)])[:, None]
    return StudyTable(name, studies.astype(object), tuple(columns), values)


def _outside_unit_interval(values: np.ndarray, keys: np.ndarray, columns: Sequence[str], rows: str = "studies") -> str | None:
    """How many ``rows`` of ``values`` hold a score outside [0, 1], the scores' range and the first study; None if none.

    >>> _outside_unit_interval(np.array([[0.2], [1.77]]), np.array(["valid/patient64541/study1", "valid/patient64542/study1"]), ["Edema"])
    "1 of 2 studies score outside [0, 1] (from 0.2 to 1.77; first valid/patient64542/study1 in 'Edema')"
    """
    outside = (values < 0.0) | (values > 1.0)
    any_outside = outside.any(axis=1)
    if not any_outside.any():
        return None
    first = int(np.argmax(any_outside))
    observation = columns[int(np.argmax(outside[first]))]
    return (
        f"{int(any_outside.sum())} of {len(values)} {rows} score outside [0, 1] (from {values.min():g} to {values.max():g}; "
        f"first {keys[first]} in {observation!r})"
    )


def _warn_outside_unit_interval(scores: np.ndarray, keys: np.ndarray, columns: Sequence[str], name: str) -> None:
    described = _outside_unit_interval(scores, keys, columns, "rows")
    if described is not None:
        warnings.warn(
            f"{name}: {described}; they are ranked as given (AUROC and AUPRC depend only on the order of the scores), but operating points need probabilities",
            ScoreRangeWarning,
            stacklevel=4,
        )


def _image_metadata(
    keys: np.ndarray,
    paths: np.ndarray,
    sex: np.ndarray,
    age: np.ndarray,
    projection: np.ndarray,
    frontal: np.ndarray,
    demographics: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per study (sorted): the sex, age (and Plus demographics) of its first image, the projection of its frontal images."""
    frame = pd.DataFrame({"study": keys.astype(object), "path": paths.astype(object), "sex": sex, "age": age.astype(np.int64),
                          **{name: values.astype(object) for name, values in (demographics or {}).items()}})  # fmt: skip
    frontal_projection = projection.astype(object)
    frontal_projection[~np.asarray(frontal, dtype=bool)] = None
    frame["frontal_projection"] = frontal_projection
    frame = frame.sort_values(["study", "path"], kind="stable")
    grouped = frame.groupby("study", sort=True)
    out = grouped[["sex", "age", *(demographics or {})]].first()
    projections = grouped["frontal_projection"].agg(lambda p: sorted(set(p.dropna())))
    out["projection"] = [p[0] if len(p) == 1 else (MIXED if p else NO_FRONTAL) for p in projections]
    out.index.name = None
    return out


def _from_index(index: Index) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Image rows of an Index as (keys, labels as float with blank -> NaN, per-study metadata)."""
    keys = index.study_keys().astype(object)
    labels = index.labels.astype(np.float64)
    labels[index.labels == schema.Code.BLANK] = np.nan
    metadata = _image_metadata(
        keys,
        index.path,
        np.asarray(schema.SEXES, dtype=object)[index.sex],
        index.age,
        np.asarray(schema.PROJECTIONS, dtype=object)[index.projection],
        index.frontal,
        {by: subgroup_of_rows(index, by) for by in DEMOGRAPHIC_COLUMNS if DEMOGRAPHIC_COLUMNS[by] in index.extra},
    )
    return keys, labels, metadata


def _metadata_from_frame(frame: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    projection = frame["AP/PA"].fillna("").astype(str).replace("", "none").to_numpy(dtype=object)
    age = pd.to_numeric(frame["Age"], errors="coerce").fillna(0).to_numpy()
    sex = frame["Sex"].astype(str).to_numpy(dtype=object)
    frontal = (frame["Frontal/Lateral"] == "Frontal").to_numpy()
    return _image_metadata(keys, frame["Path"].to_numpy(dtype=object), sex, age, projection, frontal)


def _from_image_frame(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    keys = _keys(frame, "Path", name)
    missing = [c for c in schema.OBSERVATIONS if c not in frame.columns]
    if missing:
        raise CSVFormatError(f"truth is missing the observation column(s) {', '.join(map(repr, missing))}", file=name)
    labels = _numbers(frame, schema.OBSERVATIONS, keys, name)
    metadata = _metadata_from_frame(frame, keys) if set(schema.METADATA_COLUMNS) <= set(frame.columns) else None
    return keys, labels, metadata


def _per_study(keys: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Collapse image labels to studies, which must agree within a study (ties of NaN count as equal)."""
    studies, inverse = np.unique(keys.astype(str), return_inverse=True)
    first = np.zeros(len(studies), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(keys))[::-1]
    values = labels[first]
    same = (labels == values[inverse]) | (np.isnan(labels) & np.isnan(values[inverse]))
    if not same.all():
        rows = ~same.all(axis=1)
        observation = schema.OBSERVATIONS[int(np.argmin(same[rows][0]))]
        raise CSVFormatError(
            f"images of one study disagree on their labels (first in {observation!r}): {_listing(np.unique(keys[rows]))}",
            file=name,
        )
    return studies.astype(object), values


def read_truth(source: Source | Index) -> StudyTable:
    """Read the ground truth, one row per study, every label 0 or 1.

    Accepts a CheXpert ``valid.csv`` (per image, read and checked by ``chexpert.index.read_csv``;
    images of a study must agree), an :class:`~chexpert.index.Index`, a DataFrame with a ``Path``
    column, or a study-level file like the test set's ``groundtruth.csv`` (``Study`` column, any
    subset of the observations, integer 0/1). Image-level sources also give each study's sex,
    age and projection for ``by=``.

    >>> truth = read_truth("CheXpert-v1.0-small/valid.csv")
    >>> len(truth), truth.metadata.columns.tolist()
    (60, ['sex', 'age', 'projection'])
    """
    metadata: pd.DataFrame | None = None
    name = _source_name(source, "truth")
    columns = list(schema.OBSERVATIONS)
    if isinstance(source, Index):
        keys, labels, metadata = _from_index(source)
    elif (data := _file_bytes(source, "truth")) is not None and _has_release_header(data):
        keys, labels, metadata = _from_index(read_index_csv(data, file=name))
    else:
        frame, name = _load(data if data is not None else source, "truth", name)
        _check_one_level(frame, name, "truth")
        if "Path" in frame.columns and "Study" not in frame.columns:
            keys, labels, metadata = _from_image_frame(frame, name)
        else:
            keys, columns, labels = _study_level(frame, name, "truth")
    if len(keys) == 0:
        raise CSVFormatError("truth has a header but no rows", file=name)
    studies, values = _per_study(keys, labels, name)
    _check_binary(values, studies, columns, name, "truth")
    if metadata is not None:
        metadata = metadata.loc[studies.astype(str)]
    return StudyTable(name, studies, tuple(columns), values, metadata)


def read_radiologists(sources: Sequence[Source] | Mapping[str, Source]) -> dict[str, StudyTable]:
    """Read radiologists' study-level 0/1 reads, keyed by a name (file stem, or the mapping's key).

    Columns are matched by name: the released files put Lung Lesion before Lung Opacity.

    >>> readers = read_radiologists(["bc4.csv", "bc6.csv", "bc8.csv"])
    >>> list(readers)
    ['bc4', 'bc6', 'bc8']
    """
    if isinstance(sources, Mapping):
        named = list(sources.items())
    else:
        if isinstance(sources, str | os.PathLike | pd.DataFrame):
            sources = [sources]
        named = [(Path(os.fspath(s)).stem if not isinstance(s, pd.DataFrame) else f"radiologist {i + 1}", s) for i, s in enumerate(sources)]
    readers: dict[str, StudyTable] = {}
    for label, source in named:
        unique = label if label not in readers else f"{label} ({len(readers) + 1})"
        frame, name = _load(source, "radiologist")
        _check_one_level(frame, name, "radiologist")
        keys, columns, values = _study_level(frame, name, "radiologist")
        order = np.argsort(keys.astype(str), kind="stable")
        _check_binary(values[order], keys[order], columns, name, "radiologist")
        readers[unique] = StudyTable(name, keys[order], tuple(columns), values[order])
    return readers


def read_metadata(source: Source | Index) -> pd.DataFrame:
    """Per-study sex, age and projection from an Index or an image-level CSV/DataFrame (e.g. ``test.csv``).

    Used by ``by=`` when the truth is study-level and so carries no metadata.

    >>> read_metadata("CheXpert-v1.0-small/test_labels.csv").columns.tolist()
    ['sex', 'age', 'projection']
    """
    if isinstance(source, Index):
        return _from_index(source)[2]
    source = expand_user(source)
    if not isinstance(source, pd.DataFrame) and (Path(source).is_dir() or Path(source).name.startswith("df_chexpert_plus")):
        # A release folder (CheXpert Plus for race, ethnicity and insurance) or the Plus CSV itself.
        from chexpert.discover import open_dataset as open_release

        return _from_index(open_release(Path(source).parent if Path(source).is_file() else source).index())[2]
    data = _file_bytes(source, "metadata")
    name = _source_name(source, "metadata")
    if data is not None and _has_release_header(data):
        return _from_index(read_index_csv(data, file=name))[2]
    frame, name = _load(data if data is not None else source, "metadata", name)
    missing = [c for c in schema.METADATA_COLUMNS if c not in frame.columns]
    if missing:
        raise CSVFormatError(f"metadata needs the columns {', '.join(schema.METADATA_COLUMNS)}; missing {', '.join(missing)}", file=name)
    return _metadata_from_frame(frame, _keys(frame, "Path", name))


def study_metadata(truth: StudyTable, source: Source | Index | None = None) -> pd.DataFrame:
    """Sex, age and projection of each truth study (in the truth's order), from ``source`` or the truth itself.

    >>> study_metadata(read_truth("CheXpert-v1.0-small/groundtruth.csv"), "CheXpert-v1.0-small/test_labels.csv").shape
    (20, 3)
    """
    if source is None:
        if truth.metadata is None:
            raise CSVFormatError(
                "by= needs each study's sex, age and projection, which this study-level truth lacks; "
                "pass metadata= (--metadata): an Index, valid.csv or test.csv",
                file=truth.name,
            )
        return truth.metadata
    frame = read_metadata(source)
    missing = np.setdiff1d(truth.studies.astype(str), frame.index.to_numpy(dtype=str))
    if len(missing):
        raise CSVFormatError(f"metadata lacks {len(missing)} studies of the truth: {_listing(missing)}", file=_source_name(source, "metadata"))
    return frame.loc[truth.studies.astype(str)]


def subgroup_of(metadata: pd.DataFrame, by: str) -> np.ndarray:
    """The subgroup label of every study (rows of ``metadata``) for ``by`` in :data:`SUBGROUPS`.

    >>> subgroup_of(pd.DataFrame({"sex": ["Male"], "age": [85], "projection": ["AP"]}), "age-band").tolist()
    ['80+']
    """
    check_choice("by", by, SUBGROUPS)
    if by == "sex":
        return metadata["sex"].to_numpy(dtype=object)
    if by == "projection":
        return metadata["projection"].to_numpy(dtype=object)
    if by in DEMOGRAPHIC_COLUMNS:
        if by not in metadata.columns:
            raise InvalidArgumentError(
                f"by={by!r} needs CheXpert Plus demographics: pass the Plus download (or its CSV) as metadata= (--metadata), or a Plus index as the truth"
            )
        return metadata[by].fillna(UNKNOWN).to_numpy(dtype=object)
    return age_band(metadata["age"].to_numpy())


def subgroup_order(by: str, groups: Iterable[str]) -> list[str]:
    """Groups in a reading order: schema order for sex and projection, ascending age bands."""
    if by in DEMOGRAPHIC_COLUMNS:
        return group_order(by, groups)
    vocabulary = {"sex": schema.SEXES, "projection": (*schema.PROJECTIONS, MIXED, NO_FRONTAL), "age-band": tuple(b[0] for b in AGE_BANDS)}[by]
    rank = {g: i for i, g in enumerate(vocabulary)}
    return sorted(set(groups), key=lambda g: (rank.get(g, len(rank)), g))


def align(table: StudyTable, truth: StudyTable, role: str) -> StudyTable:
    """``table``, checked to hold exactly the truth's studies; both are sorted, so their rows then correspond.

    >>> truth = read_truth("CheXpert-v1.0-small/valid.csv")
    >>> predictions = read_predictions("predictions.csv")
    >>> align(predictions, truth, "predictions").studies[:1]
    array(['valid/patient64541/study1'], dtype=object)
    """
    studies = table.studies.astype(str)
    expected = truth.studies.astype(str)
    missing = np.setdiff1d(expected, studies)
    extra = np.setdiff1d(studies, expected)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"{len(missing)} studies of the truth ({truth.name}) are missing: {_listing(missing)}")
        if len(extra):
            parts.append(f"{len(extra)} studies are not in the truth ({truth.name}): {_listing(extra)}")
        raise CSVFormatError(f"{role} and truth must cover the same studies; " + "; ".join(parts), file=table.name)
    return table
