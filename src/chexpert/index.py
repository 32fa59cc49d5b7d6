"""CSV -> typed columnar table: one row per image, every raw label state kept.

The CSV is parsed by Arrow and validated with vectorised comparisons; no Python object is made
per row. Every value the released files do not use is an error naming the file and the row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from chexpert import schema
from chexpert.errors import CSVFormatError, InvalidArgumentError, Problem, ReleaseNotFoundError
from chexpert.safeio import gunzip, read_bytes
from chexpert.schema import MAX_TABLE_BYTES

if TYPE_CHECKING:
    import pandas as pd

    from chexpert.release import Release

__all__ = ["Index", "read_csv", "check_csv", "concat", "observation_position"]

_STR = np.dtypes.StringDType()
_BOM = b"\xef\xbb\xbf"
_NO_LINES = np.array([], dtype=np.int64)
_DICT = pa.dictionary(pa.int32(), pa.string())
# Code of each spelling in schema.LABEL_SPELLINGS order; the last entry backs invalid cells.
_LABEL_CODES = np.array([int(c) for c in schema.LABEL_SPELLINGS.values()] + [0], dtype=np.int8)
#: Per-row arrays of Index, in the order they appear in to_pandas() (read by the modules that
#: rebuild an Index field by field: selection, the store, the Hugging Face export).
ROW_FIELDS = ("path", "split", "patient", "study", "view", "frontal", "projection", "sex", "age", "labels")


@dataclass(frozen=True, eq=False)
class Index:
    """One row per image, as columnar numpy arrays of equal length.

    Categorical columns hold positions in the matching ``schema`` tuple (``split`` in
    ``schema.SPLITS``, ``projection`` in ``schema.PROJECTIONS``, ``sex`` in ``schema.SEXES``).
    ``labels`` keeps all four raw states as ``schema.Code`` values; ``age`` 0 means unknown.
    ``patient`` is int32 and ``study`` int16 for CheXpert (study numbers within a patient); MIMIC-CXR
    (:mod:`chexpert.mimic`) stores its 8-digit ``subject_id`` and ``study_id`` as int32, and study
    numbers from 1,000 up are taken as dataset-wide ids by ``study_ids`` and ``study_keys``.
    ``extra`` holds further per-row columns of other releases, numpy arrays with one entry (or
    row) per image: CheXpert Plus puts its report sections, demographics, both label sources and
    DICOM header elements there (see :mod:`chexpert.plus`). They follow ``take`` and ``concat``.

    >>> index = read_csv(b"Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(schema.OBSERVATIONS).encode()
    ...     + b"\\nCheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,"
    ...     + b"1.0,,,,,,,,,0.0,,,,1.0\\n", file="train.csv")
    >>> len(index), int(index.patient[0]), index.labels[0, :2].tolist()
    (1, 1, [1, -2])
    """

    path: np.ndarray
    split: np.ndarray
    patient: np.ndarray
    study: np.ndarray
    view: np.ndarray
    frontal: np.ndarray
    projection: np.ndarray
    sex: np.ndarray
    age: np.ndarray
    labels: np.ndarray
    release: Release | None = field(default=None, repr=False)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.path)
        for name in ROW_FIELDS:
            if len(getattr(self, name)) != n:
                raise InvalidArgumentError(f"Index.{name} has {len(getattr(self, name))} rows, Index.path has {n}")
        for name, column in self.extra.items():
            if len(column) != n:
                raise InvalidArgumentError(f"Index.extra[{name!r}] has {len(column)} rows, Index.path has {n}")
        if self.labels.ndim != 2 or self.labels.shape[1] != len(schema.OBSERVATIONS):
            raise InvalidArgumentError(f"Index.labels must be (N, {len(schema.OBSERVATIONS)}), got {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.path)

    def __repr__(self) -> str:
        splits = ", ".join(f"{s}={int((self.split == i).sum())}" for i, s in enumerate(schema.SPLITS) if (self.split == i).any())
        return f"Index({len(self)} images: {splits})"

    def take(self, rows: np.ndarray | Sequence[int]) -> Index:
        """Return the rows given by integer positions or a boolean mask, in that order.

        >>> bool(index.take(index.frontal).frontal.all())
        True
        """
        rows = np.asarray(rows)
        if rows.dtype == bool and len(rows) != len(self):
            raise InvalidArgumentError(f"boolean mask has {len(rows)} entries for {len(self)} rows")
        return Index(
            **{name: getattr(self, name)[rows] for name in ROW_FIELDS},
            release=self.release,
            extra={name: column[rows] for name, column in self.extra.items()},
        )

    def with_release(self, release: Release | None) -> Index:
        """Return the same rows bound to ``release`` (used to read their images)."""
        return Index(**{name: getattr(self, name) for name in ROW_FIELDS}, release=release, extra=self.extra)

    def with_extra(self, **columns: np.ndarray) -> Index:
        """Return the same rows with ``columns`` added to (or replacing those in) ``extra``.

        >>> races = np.array(["White"] * len(index))
        >>> index.with_extra(race=races).extra["race"][:2]
        array(['White', 'White'], dtype='<U5')
        """
        return Index(**{name: getattr(self, name) for name in ROW_FIELDS}, release=self.release, extra={**self.extra, **columns})

    def study_ids(self) -> np.ndarray:
        """An int64 per row, equal for the images of one study and distinct between studies.

        >>> ids = index.study_ids(); len(np.unique(ids))  # number of studies
        22
        """
        if self._wide_ids():  # MIMIC-CXR: study ids are unique across the dataset (below 10**8)
            return self.split.astype(np.int64) * 100_000_000 + self.study
        return (self.split.astype(np.int64) * 1_000_000 + self.patient) * 1_000 + self.study

    def patient_ids(self) -> np.ndarray:
        """An int64 per row, equal for the images of one patient within a split.

        >>> len(np.unique(index.patient_ids()))  # number of patients
        4
        """
        scale = 100_000_000 if self._wide_ids() else 1_000_000
        return self.split.astype(np.int64) * scale + self.patient

    def _wide_ids(self) -> bool:
        """Whether ``study`` holds dataset-wide study ids (MIMIC-CXR's ``study_id``, 50,000,000 and
        up) rather than CheXpert's per-patient study numbers (1 to a few dozen)."""
        return len(self.study) > 0 and int(self.study.max()) >= 1_000

    def study_keys(self) -> np.ndarray:
        """``split/patientNNNNN/studyN`` per row, the key ``schema.study_key`` gives
        (``pSUBJECT/sSTUDY`` for MIMIC-CXR, whose paths do not name the split).

        >>> index.study_keys()[0]
        'train/patient00001/study1'
        """
        if self._wide_ids():  # MIMIC-CXR: ``pSUBJECT/sSTUDY``, as schema.study_key reads its paths
            return "p" + self.patient.astype(_STR) + "/s" + self.study.astype(_STR)
        split = np.asarray(schema.SPLITS, dtype=_STR)[self.split]
        patient = np.char.zfill(self.patient.astype(_STR), 5)
        return split + "/patient" + patient + "/study" + self.study.astype(_STR)

    def observation(self, name: str) -> np.ndarray:
        """The raw int8 codes of one observation.

        >>> index.observation("Edema")
        array([ 0, -2, -2, -1, ...], dtype=int8)
        """
        return self.labels[:, observation_position(name)]

    def counts(self) -> dict[str, object]:
        """Images, studies, patients, views, projections, sexes and label states, as plain ints.

        >>> index.counts()["labels"]["Edema"]
        {'positive': 5, 'uncertain': 2, 'negative': 1, 'blank': 19}
        """
        unknown = self.extra["view"] == "Unknown" if "view" in self.extra else np.zeros(len(self), dtype=bool)
        states = {"positive": schema.Code.POSITIVE, "uncertain": schema.Code.UNCERTAIN, "negative": schema.Code.NEGATIVE, "blank": schema.Code.BLANK}
        return {
            "images": len(self),
            "studies": len(np.unique(self.study_ids())),
            "patients": len(np.unique(self.patient_ids())),
            "frontal": int(self.frontal.sum()),
            "lateral": int((~self.frontal & ~unknown).sum()),
            **({"view_unknown": int(unknown.sum())} if "view" in self.extra else {}),  # MIMIC-CXR's unplaceable views
            "projection": dict(zip(schema.PROJECTIONS, np.bincount(self.projection, minlength=len(schema.PROJECTIONS)).tolist())),
            "sex": dict(zip(schema.SEXES, np.bincount(self.sex, minlength=len(schema.SEXES)).tolist())),
            "age_unknown": int((self.age == 0).sum()),
            "labels": {name: {state: int((self.labels[:, j] == code).sum()) for state, code in states.items()} for j, name in enumerate(schema.OBSERVATIONS)},
        }

    def to_pandas(self) -> pd.DataFrame:
        """A readable DataFrame: categories spelled out, labels as nullable Int8 (blank = <NA>)."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "Path": self.path.astype(object),
                "split": pd.Categorical.from_codes(self.split, schema.SPLITS),
                "patient": self.patient,
                "study": self.study,
                "view": self.view,
                "Frontal/Lateral": pd.Categorical.from_codes((~self.frontal).astype(np.int8), schema.VIEWS),
                "AP/PA": pd.Categorical.from_codes(self.projection, schema.PROJECTIONS),
                "Sex": pd.Categorical.from_codes(self.sex, schema.SEXES),
                "Age": self.age,
            }
        )
        for j, name in enumerate(schema.OBSERVATIONS):
            column = pd.array(self.labels[:, j], dtype="Int8")
            column[self.labels[:, j] == schema.Code.BLANK] = pd.NA
            frame[name] = column
        for key, values in self.extra.items():
            if values.ndim == 2 and values.shape[1] == len(schema.OBSERVATIONS):  # label codes of another source
                for j, name in enumerate(schema.OBSERVATIONS):
                    column = pd.array(values[:, j], dtype="Int8")
                    column[values[:, j] == schema.Code.BLANK] = pd.NA
                    frame[f"{key}:{name}"] = column
            elif values.ndim == 1:
                frame[key] = values.astype(object) if values.dtype.kind == "T" else values
        return frame


def observation_position(name: str) -> int:
    """Column of ``name`` in ``Index.labels``; the error lists the valid names.

    >>> observation_position("Edema")
    5
    """
    try:
        return schema.OBSERVATIONS.index(name)
    except ValueError:
        raise InvalidArgumentError(f"unknown observation {name!r}; valid: {', '.join(schema.OBSERVATIONS)}") from None


def concat(indexes: Sequence[Index]) -> Index:
    """Stack several indexes (e.g. train and valid) into one; they must share a release.

    >>> both = concat([train, valid])
    >>> both
    Index(104 images: train=27, valid=77)
    """
    if not indexes:
        raise InvalidArgumentError("concat needs at least one Index")
    release = indexes[0].release
    shared = [k for k in indexes[0].extra if all(k in ix.extra for ix in indexes[1:])]  # columns every part has
    return Index(
        **{name: np.concatenate([getattr(ix, name) for ix in indexes]) for name in ROW_FIELDS},
        release=release,
        extra={k: np.concatenate([ix.extra[k] for ix in indexes]) for k in shared},
    )


def read_csv(source: str | os.PathLike[str] | bytes, *, file: str | None = None) -> Index:
    """Parse a CheXpert ``train.csv`` / ``valid.csv`` (also gzipped) into an :class:`Index`.

    Raises :class:`~chexpert.errors.CSVFormatError` naming the file and row of the first problem
    (and how many more there are). Byte-order marks and CRLF line endings are accepted.

    >>> index = read_csv("CheXpert-v1.0-small/train.csv")
    >>> index.labels.shape  # (223414, 14) for the real train.csv
    (27, 14)
    """
    index, problems, _ = _parse(source, file=file, strict=True)
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more problems; run `chexpert verify` for all)" if len(problems) > 1 else ""
        raise CSVFormatError(first.message + more, file=first.file, row=first.row)
    return index  # type: ignore[return-value]  # _parse returns an index whenever it found no problem


def check_csv(source: str | os.PathLike[str] | bytes, *, file: str | None = None) -> tuple[Index | None, list[Problem], np.ndarray]:
    """Parse like :func:`read_csv` but collect every problem instead of raising.

    Returns the index of the rows that parsed (None if the file is unreadable), the problems
    (including, as warnings, those ``read_csv`` tolerates: a BOM and CRLF line endings, which
    mean the file was re-saved but read the same), and each indexed row's line number in the
    file (the header is line 1).

    >>> index, problems, lines = check_csv(b"Path\\n", file="train.csv")
    >>> problems[0].kind
    'header'
    """
    return _parse(source, file=file, strict=False)


def _load_bytes(source: str | os.PathLike[str] | bytes, file: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), file or "<bytes>"
    name = file or os.fspath(source)
    try:
        data = read_bytes(source, limit=MAX_TABLE_BYTES)  # a FIFO or device is refused by name
    except FileNotFoundError:
        raise ReleaseNotFoundError(f"{name}: file not found") from None
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, limit=MAX_TABLE_BYTES, file=name)  # bounded: a gzip bomb stops at the cap
    return data, name


def _parse(source: str | os.PathLike[str] | bytes, *, file: str | None, strict: bool) -> tuple[Index | None, list[Problem], np.ndarray]:
    data, name = _load_bytes(source, file)
    problems: list[Problem] = []

    def problem(kind: str, row: int | None, message: str, severity: str = "error") -> None:
        problems.append(Problem(kind, name, row, message, severity))

    if data.startswith(_BOM):
        data = data[len(_BOM) :]
        if not strict:
            problem("bom", 1, "starts with a UTF-8 byte-order mark; the released CSVs have none (re-saved by another program?)", "warning")
    if b"\r\n" in data[:4096]:
        data = data.replace(b"\r\n", b"\n")
        if not strict:
            problem("crlf", 1, "has CRLF (Windows) line endings; the released CSVs use LF (re-saved by another program?)", "warning")
    if not data.strip():
        problem("empty", None, "is empty; expected the header " + ",".join(schema.CSV_COLUMNS))
        return None, problems, _NO_LINES

    header = data.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
    if tuple(header) != schema.CSV_COLUMNS:
        missing = [c for c in schema.CSV_COLUMNS if c not in header]
        extra = [c for c in header if c not in schema.CSV_COLUMNS]
        detail = []
        if missing:
            detail.append("missing " + ", ".join(repr(c) for c in missing))
        if extra:
            detail.append("unexpected " + ", ".join(repr(c) for c in extra))
        if not detail:
            detail.append("columns in another order")
        problem("header", 1, "header is not CheXpert's: " + "; ".join(detail) + ". Expected: " + ",".join(schema.CSV_COLUMNS))
        return None, problems, _NO_LINES

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                # Categorical columns are dictionary-encoded while parsing: validating them is then
                # a look-up of a handful of distinct spellings, not of every cell.
                column_types={c: pa.string() if c in ("Path", "Age") else _DICT for c in schema.CSV_COLUMNS},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        # Arrow names the line in its message ("Row #12: Expected 19 columns, got 18").
        problem("malformed", None, f"cannot be parsed as CSV: {exc}")
        return None, problems, _NO_LINES
    table = table.combine_chunks()

    n = table.num_rows
    ok = np.ones(n, dtype=bool)

    def bad_rows(mask: np.ndarray, kind: str, column: str, expected: str) -> None:
        values = table.column(column)
        for i in np.flatnonzero(mask)[: 20 if not strict else 1]:
            problem(kind, int(i) + 2, f"{column} {values[int(i)].as_py()!r} is not valid; expected {expected}")
        ok[mask] = False

    # Path: checked against the scheme, then cut at "/" to read split, patient, study and view.
    paths = table.column("Path").chunk(0) if n else pa.array([], pa.string())
    matched = _numpy(pc.match_substring_regex(paths, schema.PATH_PATTERN.pattern))
    if not matched.all():
        for i in np.flatnonzero(~matched)[: 20 if not strict else 1]:
            value = paths[int(i)].as_py()
            if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
                why = "is an absolute path; CSV paths are relative to the release's parent folder"
            elif ".." in value.replace("\\", "/").split("/"):
                why = "contains '..', which would escape the release folder"
            else:
                why = "does not follow CheXpert's scheme [CheXpert-v1.0[-small]/]split/patientNNNNN/studyN/viewN_frontal|lateral.jpg"
            problem("path", int(i) + 2, f"Path {value!r} {why}")
        ok &= matched
        paths = pc.if_else(pa.array(matched), paths, "train/patient00000/study0/view0_frontal.jpg")
    pieces = pc.split_pattern(paths, "/")
    ends = _numpy(pieces.offsets)[1:]
    split_piece, patient_piece, study_piece, file_piece = (pieces.values.take(pa.array(ends - k)) for k in (4, 3, 2, 1))
    split = _codes(split_piece, schema.SPLITS)
    patient = _numpy(pc.cast(pc.utf8_slice_codeunits(patient_piece, len("patient")), pa.int32()))
    study = _numpy(pc.cast(pc.utf8_slice_codeunits(study_piece, len("study")), pa.int16()))
    view_word = pc.list_element(pc.split_pattern(file_piece, "_", max_splits=1), 0)
    view = _numpy(pc.cast(pc.utf8_slice_codeunits(view_word, len("view")), pa.int16()))
    path_frontal = _numpy(pc.match_substring(file_piece, "_frontal."))

    # Categorical metadata.
    sex = _codes(table.column("Sex"), schema.SEXES)
    bad_rows(sex < 0, "value", "Sex", "one of " + ", ".join(schema.SEXES))
    view_code = _codes(table.column("Frontal/Lateral"), schema.VIEWS)
    bad_rows(view_code < 0, "value", "Frontal/Lateral", "Frontal or Lateral")
    frontal = view_code == 0
    mismatch = (view_code >= 0) & matched & (frontal != path_frontal)
    for i in np.flatnonzero(mismatch)[:20]:
        word = table.column("Frontal/Lateral")[int(i)].as_py()
        problem("value", int(i) + 2, f"Frontal/Lateral {word!r} contradicts the file name {paths[int(i)].as_py()!r}")
    ok &= ~mismatch
    projection = _codes(table.column("AP/PA"), schema.PROJECTIONS, empty="none")
    bad_rows(projection < 0, "value", "AP/PA", "AP, PA, LL, RL or empty")

    age_column = table.column("Age")
    age_valid = _numpy(pc.match_substring_regex(age_column, r"^\d{1,3}$"))
    bad_rows(~age_valid, "value", "Age", "a whole number of years")
    age = _numpy(pc.cast(pc.if_else(pa.array(age_valid), age_column, "0"), pa.int16()))

    # Labels: the four spellings of the released files, nothing else.
    labels = np.empty((n, len(schema.OBSERVATIONS)), dtype=np.int8)
    for j, observation in enumerate(schema.OBSERVATIONS):
        position = _codes(table.column(observation), tuple(schema.LABEL_SPELLINGS))
        bad_rows(position < 0, "label", observation, "1.0, 0.0, -1.0 or empty")
        labels[:, j] = _LABEL_CODES[position]

    # Duplicate images: the same Path twice would be counted and trained on twice.
    key = ((split.astype(np.int64) * 1_000_000 + patient) * 1_000 + study) * 1_000 + view
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    if same.any():
        dup = np.zeros(n, dtype=bool)
        dup[order[1:][same]] = True
        dup &= matched
        for i in np.flatnonzero(dup)[: 20 if not strict else 1]:
            firsts = np.flatnonzero(key == key[i])
            problem("duplicate", int(i) + 2, f"Path {paths[int(i)].as_py()!r} already appears on row {int(firsts[0]) + 2}")
        ok &= ~dup

    problems.sort(key=lambda p: p.row or 0)
    rows = np.flatnonzero(ok)
    index = Index(
        path=np.asarray(table.column("Path").to_numpy(), dtype=_STR)[rows],
        split=split[rows],
        patient=patient[rows],
        study=study[rows],
        view=view[rows],
        frontal=frontal[rows],
        projection=projection[rows],
        sex=sex[rows],
        age=age[rows],
        labels=labels[rows],
    )
    return index, problems, rows + 2


def _codes(values: pa.ChunkedArray | pa.Array, vocabulary: Sequence[str], *, empty: str | None = None) -> np.ndarray:
    """Position of each value in ``vocabulary`` as int8, -1 where absent (``empty`` names "")."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not pa.types.is_dictionary(values.type):
        values = pc.dictionary_encode(values)
    lookup = {name: i for i, name in enumerate(vocabulary)}
    if empty is not None:
        lookup[""] = lookup[empty]
    table = np.array([lookup.get(v, -1) for v in values.dictionary.to_pylist()] + [-1], dtype=np.int8)
    return table[_numpy(values.indices)] if len(values) else np.array([], np.int8)


def _numpy(array: pa.Array) -> np.ndarray:
    """A null-free Arrow array as numpy (booleans unpacked)."""
    return np.asarray(array.to_numpy(zero_copy_only=False))
