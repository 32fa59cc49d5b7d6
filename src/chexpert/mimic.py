"""MIMIC-CXR-JPG (PhysioNet) read into the same :class:`~chexpert.index.Index` as CheXpert.

A download is the folder holding ``mimic-cxr-2.0.0-metadata.csv.gz`` (one row per image),
``mimic-cxr-2.0.0-split.csv.gz`` (the split of each image) and the two label files
``mimic-cxr-2.0.0-chexpert.csv.gz`` and ``mimic-cxr-2.0.0-negbio.csv.gz`` (one row per
*study*), with the images under ``files/p10/p10000032/s50414267/<dicom_id>.jpg``. The CSVs may
be gzipped or not; passing the ``files`` folder finds the CSVs beside it.

How the files become Index rows (one per metadata row):

- ``path`` is the image's path below the download, ``files/pNN/pSUBJECT/sSTUDY/DICOM.jpg``.
- ``patient`` is ``subject_id`` and ``study`` is ``study_id``, both int32 (the ids are 8 digits;
  CheXpert's study numbers fit int16, MIMIC's do not). Study ids are unique across the dataset,
  so ``Index.study_ids`` and ``Index.study_keys`` (``pSUBJECT/sSTUDY``) use them as they are.
  ``view`` numbers the images of a study 1, 2, ... in metadata order.
- ``split``: MIMIC's train / validate / test become ``schema.SPLITS``' train / valid / test.
- ``frontal``: ``ViewPosition`` PA, AP, AP AXIAL and the decubitus views are frontal; LATERAL,
  LL and XTABLE LATERAL lateral. Anything else (about 15,800 empty cells, LAO, RAO, SWIMMERS)
  is unknown: ``frontal`` False *and* ``extra["view"]`` "Unknown", which ``select(views=...)``
  leaves out of both views. ``projection`` is AP, PA or LL where the position says so, else none.
- ``labels``: the raw codes of the chexpert file (``labels="negbio"`` takes NegBio's), mapped
  by column name: the files list the observations alphabetically, not in CheXpert's order.
  Both sources are also in ``extra["labels_chexpert"]`` / ``extra["labels_negbio"]``. A study
  without a label row keeps all-blank labels and ``extra["labeled"]`` False.
- sex and age are not part of MIMIC-CXR-JPG: "Unknown" and 0.
- ``extra``: ``dicom_id``, ``view_position``, ``view``, ``study_date`` (datetime64[D]),
  ``study_time`` (timedelta64[ms]; ``80556.875`` is 08:05:56.875), ``study_datetime``,
  ``procedure`` (PerformedProcedureStepDescription), ``procedure_code``, ``image_rows``,
  ``image_columns``, ``labeled``.

Every disagreement is a :class:`~chexpert.errors.Problem` with file and row (``problems()``,
``chexpert verify``): rows that cannot be read, images missing from the split file (left out of
the Index: their split is unknown), split rows disagreeing with the metadata on study or subject
(the metadata's ids are kept), split rows without an image, patients in two splits, studies
without labels, label rows without images or naming another subject, duplicates, unknown views.

>>> release = chexpert.open("~/data/mimic-cxr-jpg")
>>> test = release.index("test")
>>> release.kind, test.study_keys()[0]
('mimic', 'p19199350/s51727787')
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from chexpert import schema
from chexpert.errors import CSVFormatError, ImageReadError, Problem, ReadError, ReleaseNotFoundError
from chexpert.index import Index, concat
from chexpert.release import SYNTH_MARKER, Listing, Release
from chexpert.safeio import read as _read
from chexpert.schema import MAX_CSV_BYTES, MAX_IMAGE_BYTES, MAX_MARKER_BYTES
from chexpert.validation import check_choice

__all__ = ["MimicRelease", "LABEL_SOURCES", "is_mimic", "open_mimic", "read_mimic", "find_files", "VIEWS"]

#: Where ``Index.labels`` can come from.
LABEL_SOURCES: Final[tuple[str, ...]] = ("chexpert", "negbio")
#: ``extra["view"]`` values.
VIEWS: Final[tuple[str, ...]] = ("Frontal", "Lateral", "Unknown")

_STR = np.dtypes.StringDType()
_DICT = pa.dictionary(pa.int32(), pa.string())
# Any 2.x version of each file, gzipped or not.
_FILE_PATTERNS: Final = {role: re.compile(r"^mimic-cxr-2\.\d+\.\d+-" + role + r"\.csv(\.gz)?$") for role in schema.MIMIC_FILES}
# Per-row lines of one kind of problem before the rest become one summary line.
_PER_KIND: Final = 50
_LABEL_CODES = {"1.0": schema.Code.POSITIVE, "0.0": schema.Code.NEGATIVE, "-1.0": schema.Code.UNCERTAIN, "": schema.Code.BLANK,
                "1": schema.Code.POSITIVE, "0": schema.Code.NEGATIVE, "-1": schema.Code.UNCERTAIN}  # fmt: skip
_CATEGORICAL: Final = ("PerformedProcedureStepDescription", "ViewPosition", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                       "PatientOrientationCodeSequence_CodeMeaning")  # fmt: skip
# Checked in the header but not read: nothing uses them.
_UNUSED: Final = ("ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning")
_PROJECTION = {"AP": 0, "PA": 1, "LL": 2, "AP AXIAL": 0, "AP LLD": 0, "AP RLD": 0, "PA LLD": 1, "PA RLD": 1}


# -- finding the files ------------------------------------------------------------------------------


def find_files(root: str | os.PathLike[str]) -> tuple[Path, dict[str, Path]] | None:
    """The folder holding the MIMIC-CXR-JPG CSVs for ``root`` and each CSV found there (by role),
    or None when ``root`` is not such a download. ``root`` may be that folder or its ``files`` folder.

    >>> find_files("/nonexistent") is None
    True
    """
    path = Path(root)
    candidates = [path, path.parent] if path.name == "files" else [path]
    for folder in candidates:
        try:
            names = sorted(p.name for p in folder.iterdir())
        except OSError:
            continue
        found: dict[str, Path] = {}
        for role, pattern in _FILE_PATTERNS.items():
            matches = [n for n in names if pattern.match(n)]
            if matches:  # the latest version; a .csv.gz and a .csv of one version: the gzip, as published
                found[role] = folder / max(matches, key=lambda n: (n.split("-")[2], n.endswith(".gz")))
        if "metadata" in found:
            return folder, found
    return None


def is_mimic(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a MIMIC-CXR-JPG download (or its ``files`` folder).

    >>> is_mimic("/nonexistent")
    False
    """
    return find_files(root) is not None


# -- reading the CSVs -------------------------------------------------------------------------------


def source_bytes(source: str | os.PathLike[str] | bytes, within: tuple[str, ...] | None = None) -> bytes:
    """The bytes of a MIMIC-CXR CSV (given as bytes or a path, read bounded and inside ``within``),
    gunzipped when compressed; verify counts the metadata's rows through it."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        name = os.fspath(source)
        folders = within or (os.path.realpath(os.path.dirname(name) or "."),)
        data = _read(None, name, MAX_CSV_BYTES, ReadError, lambda: folders)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ReadError(f"is not a readable gzip file ({exc})", file=None if isinstance(source, bytes) else os.fspath(source)) from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    return data.replace(b"\r\n", b"\n") if b"\r" in data[:4096] else data


def _table(data: bytes, name: str, columns: Sequence[str], categorical: Sequence[str] = ()) -> pa.Table:
    """The CSV as strings (empty cells empty, never null), columns checked by name (any order);
    ``categorical`` ones dictionary-encoded while parsing (checking them is then a look-up of a
    handful of spellings, not of every cell)."""
    if not data[:65536].strip():
        raise CSVFormatError("is empty; expected the header " + ",".join(columns), file=name)
    header = [h.strip('"') for h in data[: data.find(b"\n") if b"\n" in data[:65536] else 65536].decode("utf-8", "replace").split(",")]
    missing = [c for c in columns if c not in header]
    if missing:
        raise CSVFormatError(f"header lacks {', '.join(map(repr, missing))}; expected the columns " + ",".join(columns), file=name, row=1)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(column_types={h: _DICT if h in categorical else pa.string() for h in header}, include_columns=[c for c in columns if c not in _UNUSED],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )  # fmt: skip
    except pa.ArrowInvalid as exc:
        raise CSVFormatError(f"cannot be parsed as CSV: {exc}", file=name) from None
    return table.combine_chunks()


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.chunk(0) if column.num_chunks == 1 else (column.combine_chunks() if column.num_chunks else pa.array([], pa.string()))


def _integers(values: pa.Array, digits: int = 9, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, 0 where invalid; valid mask) of cells of 1 to ``digits`` decimal digits
    (exactly ``digits`` when ``exact``)."""
    low, high = (10 ** (digits - 1) if exact else 0), 10**digits - 1
    try:  # the common case, every cell a number: one cast, no regular expression
        numbers = _np(pc.cast(values, pa.int64())).astype(np.int64)
        parsed = np.ones(len(numbers), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pattern = rf"^\d{{{digits}}}$" if exact else rf"^\d{{1,{digits}}}$"
        parsed = _np(pc.match_substring_regex(values, pattern)).astype(bool)
        numbers = _np(pc.cast(pc.if_else(pa.array(parsed), values, "0"), pa.int64())).astype(np.int64)
    valid = parsed & (numbers >= low) & (numbers <= high)
    return np.where(valid, numbers, 0), valid


class _Problems:
    """Problems, at most :data:`_PER_KIND` lines per kind and file, then one line with the count."""

    def __init__(self) -> None:
        self.found: list[Problem] = []
        self._more: dict[tuple[str, str, str], int] = {}

    def rows(self, kind: str, file: str, rows: np.ndarray, message: Any, severity: str = "error", what: str = "rows") -> None:
        """One problem per row (``message(i)`` for row position ``i``); ``rows`` are 0-based data rows."""
        rows = np.asarray(rows)
        for i in rows[:_PER_KIND].tolist():
            self.found.append(Problem(kind, file, int(i) + 2, message(int(i)), severity))
        if len(rows) > _PER_KIND:
            self.found.append(
                Problem(kind, file, int(rows[_PER_KIND]) + 2, f"... and {len(rows) - _PER_KIND:,} more {what} like these (from this row on)", severity)
            )


def _labels(data: bytes, name: str, problems: _Problems) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A label file: (subject, study, codes (N, 14) in ``schema.OBSERVATIONS`` order, data row of each)."""
    table = _table(data, name, schema.MIMIC_LABEL_COLUMNS, categorical=schema.OBSERVATIONS)
    subject, ok_subject = _integers(_column(table, "subject_id"))
    study, ok_study = _integers(_column(table, "study_id"))
    ok = ok_subject & ok_study
    problems.rows("value", name, np.flatnonzero(~ok), lambda i: f"subject_id {table['subject_id'][i].as_py()!r} / study_id "
                  f"{table['study_id'][i].as_py()!r}: ids must be whole numbers; the row is left out")  # fmt: skip
    codes = np.empty((table.num_rows, len(schema.OBSERVATIONS)), dtype=np.int8)
    for j, observation in enumerate(schema.OBSERVATIONS):  # by name: the file's order is alphabetical
        values = _encoded(_column(table, observation))
        vocabulary = values.dictionary.to_pylist()
        lookup = np.array([_LABEL_CODES.get(v, 99) for v in vocabulary] + [99], dtype=np.int8)
        column = lookup[_np(values.indices)] if table.num_rows else np.array([], np.int8)
        bad = column == 99
        if bad.any():
            problems.rows("label", name, np.flatnonzero(bad), lambda i, o=observation: f"{o} {table[o][i].as_py()!r} is not valid; "
                          "expected 1.0, 0.0, -1.0 or empty; read as blank")  # fmt: skip
            column[bad] = schema.Code.BLANK
        codes[:, j] = column
    rows = np.flatnonzero(ok)
    subject, study, codes = subject[rows], study[rows], codes[rows]
    order = np.argsort(study, kind="stable")
    repeated = np.zeros(len(study), dtype=bool)
    repeated[order[1:]] = study[order][1:] == study[order][:-1]
    if repeated.any():
        first_row = {int(v): int(r) for v, r in zip(study[order][::-1].tolist(), rows[order][::-1].tolist())}
        study_at = dict(zip(rows.tolist(), study.tolist()))
        problems.rows("duplicate", name, rows[np.flatnonzero(repeated)],
                      lambda i: f"study_id {study_at[i]} already has a label row (row {first_row[study_at[i]] + 2}); this one is left out")  # fmt: skip
        keep = ~repeated
        subject, study, codes, rows = subject[keep], study[keep], codes[keep], rows[keep]
    return subject, study, codes, rows


def read_mimic(
    metadata: str | os.PathLike[str] | bytes,
    split: str | os.PathLike[str] | bytes | None,
    chexpert: str | os.PathLike[str] | bytes | None,
    negbio: str | os.PathLike[str] | bytes | None = None,
    *,
    labels: str = "chexpert",
    names: Mapping[str, str] | None = None,
) -> tuple[Index, list[Problem]]:
    """Join MIMIC-CXR-JPG's metadata, split and label files into an :class:`Index` (one row per
    image that the split file places) and every problem found (see the module's description).

    Each source is a path (gzipped or not) or the bytes of one; ``names`` gives the file names
    used in messages for bytes. A missing split or label file is passed as None.

    >>> index, problems = read_mimic("mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-jpg/mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz")
    >>> len(index), len(problems)  # the look-alike plants the release's quirks
    (15, 7)
    """
    check_choice("labels", labels, LABEL_SOURCES)
    sources = {"metadata": metadata, "split": split, "chexpert": chexpert, "negbio": negbio}
    label = {role: (names or {}).get(role) or (os.fspath(s) if isinstance(s, str | os.PathLike) else schema.MIMIC_FILES[role] + ".gz")
             for role, s in sources.items()}  # fmt: skip
    found = _Problems()
    meta_name = label["metadata"]
    table = _table(source_bytes(metadata), meta_name, schema.MIMIC_METADATA_COLUMNS, categorical=_CATEGORICAL)
    n = table.num_rows
    dicom = _column(table, "dicom_id")
    subject, ok_subject = _integers(_column(table, "subject_id"))
    study, ok_study = _integers(_column(table, "study_id"))
    ok = ok_subject & ok_study & _np(pc.greater(pc.utf8_length(dicom), 0)).astype(bool)
    found.rows("value", meta_name, np.flatnonzero(~ok), lambda i: f"dicom_id {table['dicom_id'][i].as_py()!r}, subject_id "
               f"{table['subject_id'][i].as_py()!r}, study_id {table['study_id'][i].as_py()!r}: an image needs a dicom_id and whole-number ids; "
               "the image is left out")  # fmt: skip
    st = None if split is None else _table(source_bytes(split), label["split"], schema.MIMIC_SPLIT_COLUMNS, categorical=("split",))
    # One hash pass over every dicom_id of both files; duplicates and the join are then integer work.
    s_dicom = _column(st, "dicom_id") if st is not None else pa.array([], pa.string())
    ns = len(s_dicom)
    codes = _np(pc.dictionary_encode(pa.concat_arrays([dicom, s_dicom])).indices).astype(np.int64) if n + ns else np.zeros(0, np.int64)
    m_code, s_key = codes[:n], codes[n:]
    distinct = int(codes.max()) + 1 if len(codes) else 0
    first_meta = np.full(distinct, -1, dtype=np.int64)
    first_meta[m_code[::-1]] = np.arange(n)[::-1]
    repeated = np.flatnonzero(first_meta[m_code] != np.arange(n))
    if len(repeated):
        found.rows("duplicate", meta_name, repeated, lambda i: f"dicom_id {dicom[i].as_py()!r} already appears on row {int(first_meta[m_code[i]]) + 2}; "
                   "this row is left out")  # fmt: skip
        ok[repeated] = False

    # The split of each image, by dicom_id.
    split_code = np.full(n, -1, dtype=np.int8)
    if st is None:
        found.found.append(Problem("missing", label["split"], None, "split file not found; every image is left out (its split is unknown)"))
    else:
        split_name = label["split"]
        s_subject, s_ok_subject = _integers(_column(st, "subject_id"))
        s_study, s_ok_study = _integers(_column(st, "study_id"))
        values = _encoded(_column(st, "split"))
        lookup = np.array([schema.SPLITS.index(schema.MIMIC_SPLITS[v]) if v in schema.MIMIC_SPLITS else -1
                           for v in values.dictionary.to_pylist()] + [-1], dtype=np.int8)  # fmt: skip
        s_code = lookup[_np(values.indices)] if ns else np.array([], np.int8)
        bad = (s_code < 0) | ~s_ok_subject | ~s_ok_study
        found.rows("value", split_name, np.flatnonzero(bad), lambda i: f"split {st['split'][i].as_py()!r} (subject_id {st['subject_id'][i].as_py()!r}, "
                   f"study_id {st['study_id'][i].as_py()!r}) is not valid; expected train, validate or test and whole-number ids")  # fmt: skip
        first_split = np.full(distinct, -1, dtype=np.int64)
        first_split[s_key[::-1]] = np.arange(ns)[::-1]
        s_repeated = first_split[s_key] != np.arange(ns)
        found.rows("duplicate", split_name, np.flatnonzero(s_repeated), lambda i: f"dicom_id {s_dicom[i].as_py()!r} already appears on row "
                   f"{int(first_split[s_key[i]]) + 2}; this row is ignored")  # fmt: skip
        usable = ~bad & ~s_repeated
        row_of_key = np.full(distinct, -1, dtype=np.int64)
        row_of_key[s_key[usable]] = np.flatnonzero(usable)
        match = row_of_key[m_code]
        in_split = match >= 0
        split_code[in_split] = s_code[match[in_split]]
        not_in = np.flatnonzero(ok & ~in_split)
        found.rows("not-in-split", meta_name, not_in, lambda i: f"image {dicom[i].as_py()} (study s{study[i]}) is not in {Path(split_name).name}; "
                   "its split is unknown, so it is left out of the index", what="images")  # fmt: skip
        disagree = np.flatnonzero(in_split & ok & ((s_subject[np.maximum(match, 0)] != subject) | (s_study[np.maximum(match, 0)] != study)))
        found.rows("split-disagrees", split_name, match[disagree], lambda r: f"dicom_id {s_dicom[r].as_py()}: subject_id {s_subject[r]} / study_id "
                   f"{s_study[r]} here, but {_meta_ids(subject, study, match, r)} in {Path(meta_name).name}; the metadata's ids are used")  # fmt: skip
        # Split rows whose image is not in the metadata.
        found.rows("split-only", split_name, np.flatnonzero(usable & (first_meta[s_key] < 0)), lambda i: f"dicom_id {s_dicom[i].as_py()} is not in "
                   f"{Path(meta_name).name}; no image has this row", what="rows")  # fmt: skip
    ok &= split_code >= 0

    # Patients (and so studies) in more than one split: the splits are patient-disjoint.
    rows_ok = np.flatnonzero(ok)
    order = rows_ok[np.lexsort((split_code[rows_ok], subject[rows_ok]))]
    if len(order):
        change = np.flatnonzero((subject[order][1:] == subject[order][:-1]) & (split_code[order][1:] != split_code[order][:-1]))
        found.rows("split-leak", meta_name, order[change + 1], lambda i: f"subject {subject[i]} is in {_split_names(subject, split_code, ok, int(subject[i]))}; "
                   "MIMIC-CXR's splits are patient-disjoint", what="patients")  # fmt: skip

    # Labels, by study_id.
    study_array = pa.array(study)
    imaged_studies = pa.array(study[ok])
    sources_codes: dict[str, np.ndarray] = {}
    labeled = np.zeros(n, dtype=bool)
    for role in LABEL_SOURCES:
        source = sources[role]
        name = label[role]
        codes = np.full((n, len(schema.OBSERVATIONS)), schema.Code.BLANK, dtype=np.int8)
        if source is None:
            found.found.append(Problem("missing", name, None, f"{role} label file not found; its labels are left blank"))
            sources_codes[role] = codes
            continue
        l_subject, l_study, l_codes, l_rows = _labels(source_bytes(source), name, found)
        # A hash look-up of each image's study among the label rows (the files are not sorted by study).
        where = _np(pc.fill_null(pc.index_in(study_array, value_set=pa.array(l_study)), -1)).astype(np.int64)
        has = where >= 0
        row_of = np.maximum(where, 0)
        codes[has] = l_codes[row_of[has]]
        sources_codes[role] = codes
        if role == labels:
            labeled = has.copy()
        other = np.flatnonzero(has & ok & (l_subject[np.where(has, row_of, 0)] != subject))
        first_image = _first_of_study(study, other)
        found.rows("label-subject", name, l_rows[row_of[first_image]], lambda r, lr=l_rows, ls=l_study, lj=l_subject: f"study_id {_label_study(lr, ls, r)} is labelled for subject "
                   f"{_label_subject(lr, lj, r)}, but its images belong to another subject in {Path(meta_name).name}", what="rows")  # fmt: skip
        imaged = _np(pc.is_in(pa.array(l_study), value_set=imaged_studies)).astype(bool)
        found.rows("label-only", name, l_rows[~imaged], lambda r, lr=l_rows, ls=l_study: f"study_id {_label_study(lr, ls, r)} has labels but no image in the index",
                   what="rows")  # fmt: skip
        without = _first_of_study(study, np.flatnonzero(ok & ~has))
        found.rows("unlabeled", meta_name, without, lambda i, file=Path(name).name: f"study s{study[i]} (subject {subject[i]}) has no row in {file}; "
                   "its labels are blank", "warning", what="studies")  # fmt: skip

    # Views.
    position = _encoded(_column(table, "ViewPosition"))
    words = position.dictionary.to_pylist()
    kinds = np.array([0 if w in schema.MIMIC_FRONTAL else 1 if w in schema.MIMIC_LATERAL else 2 for w in words] + [2], dtype=np.int8)
    view_kind = kinds[_np(position.indices)] if n else np.array([], np.int8)
    projections = np.array([_PROJECTION.get(w, 4) for w in words] + [4], dtype=np.int8)
    projection = projections[_np(position.indices)] if n else np.array([], np.int8)
    unknown = np.flatnonzero(ok & (view_kind == 2))
    if len(unknown):
        spelled = sorted({repr(words[k]) for k in np.unique(_np(position.indices)[unknown]).tolist()})
        found.found.append(Problem("view-unknown", meta_name, int(unknown[0]) + 2, f"{len(unknown):,} images have a ViewPosition that is neither frontal "
                                   f"nor lateral ({', '.join(spelled)}); their view is 'Unknown' (extra['view']), kept in the index", "warning"))  # fmt: skip

    # Dates and times.
    date_text = _column(table, "StudyDate")
    date_value, date_ok = _integers(date_text, 8, exact=True)
    year, month, day = date_value // 10_000, date_value // 100 % 100, date_value % 100
    date_ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    study_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    if date_ok.any():
        y, m, d = year[date_ok], month[date_ok], day[date_ok]
        study_date[date_ok] = ((y - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (m - 1).astype("timedelta64[M]")).astype("datetime64[D]") + (
            d - 1
        ).astype("timedelta64[D]")
    bad_date = ok & ~date_ok & _np(pc.greater(pc.utf8_length(date_text), 0)).astype(bool)
    found.rows("value", meta_name, np.flatnonzero(bad_date), lambda i: f"StudyDate {date_text[i].as_py()!r} is not a date YYYYMMDD; left empty",
               "warning")  # fmt: skip
    time_text = _column(table, "StudyTime")
    try:  # every cell a number: one cast
        seconds = _np(pc.cast(time_text, pa.float64())).astype(np.float64)
        time_ok = np.isfinite(seconds) & (seconds >= 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        time_ok = _np(pc.match_substring_regex(time_text, r"^\d{1,6}(\.\d*)?$")).astype(bool)
        seconds = _np(pc.cast(pc.if_else(pa.array(time_ok), time_text, "0"), pa.float64())).astype(np.float64)
    # HHMMSS.fff written as a number: no leading zeros, so 80556.875 is 08:05:56.875.
    ms = np.rint(seconds * 1000).astype(np.int64)
    hh, mm, ss = ms // 10_000_000, ms // 100_000 % 100, ms % 100_000
    time_ok &= (hh < 24) & (mm < 60) & (ss < 60_000)
    study_time = np.where(time_ok, hh * 3_600_000 + mm * 60_000 + ss, 0).astype("timedelta64[ms]")
    study_time[~time_ok] = np.timedelta64("NaT")
    bad_time = ok & ~time_ok & _np(pc.greater(pc.utf8_length(time_text), 0)).astype(bool)
    found.rows("value", meta_name, np.flatnonzero(bad_time), lambda i: f"StudyTime {time_text[i].as_py()!r} is not a time HHMMSS[.fff]; left empty",
               "warning")  # fmt: skip
    image_rows, _ = _integers(_column(table, "Rows"), 6)
    image_columns, _ = _integers(_column(table, "Columns"), 6)

    # Assemble, in metadata order.
    rows = np.flatnonzero(ok)
    subject_text = pc.cast(pa.array(subject[rows]), pa.string())
    study_text = pc.cast(pa.array(study[rows]), pa.string())
    dicom_rows = dicom.take(pa.array(rows))
    path = pc.binary_join_element_wise(
        "files/p", pc.utf8_slice_codeunits(subject_text, 0, 2), "/p", subject_text, "/s", study_text, "/", dicom_rows, ".jpg", ""
    )
    kept_study = study[rows]
    view = np.zeros(len(rows), dtype=np.int16)
    if len(rows):
        by_study = np.argsort(kept_study, kind="stable")
        starts = np.r_[True, kept_study[by_study][1:] != kept_study[by_study][:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(rows)), 0))
        view[by_study] = (np.arange(len(rows)) - group_start + 1).astype(np.int16)
    as_str = _strings
    extra: dict[str, np.ndarray] = {
        "dicom_id": as_str(dicom_rows),
        "view_position": as_str(_column(table, "ViewPosition").take(pa.array(rows))),
        "view": np.asarray(VIEWS, dtype=_STR)[view_kind[rows]],
        "study_date": study_date[rows],
        "study_time": study_time[rows],
        "study_datetime": study_date[rows].astype("datetime64[ms]") + study_time[rows],
        "procedure": as_str(_column(table, "PerformedProcedureStepDescription").take(pa.array(rows))),
        "procedure_code": as_str(_column(table, "ProcedureCodeSequence_CodeMeaning").take(pa.array(rows))),
        "image_rows": image_rows[rows].astype(np.int32),
        "image_columns": image_columns[rows].astype(np.int32),
        "labeled": labeled[rows],
        "metadata_row": (rows + 2).astype(np.int64),  # line in the metadata CSV (the header is line 1)
        **{f"labels_{role}": codes[rows] for role, codes in sources_codes.items()},
    }
    index = Index(
        path=as_str(path),
        split=split_code[rows],
        patient=subject[rows].astype(np.int32),
        study=kept_study.astype(np.int32),
        view=view,
        frontal=view_kind[rows] == 0,
        projection=projection[rows],
        sex=np.full(len(rows), schema.SEXES.index("Unknown"), dtype=np.int8),
        age=np.zeros(len(rows), dtype=np.int16),
        labels=sources_codes[labels][rows],
        extra=extra,
    )
    return index, found.found


def _encoded(values: pa.Array) -> pa.DictionaryArray:
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def _strings(values: pa.Array) -> np.ndarray:
    """A string or dictionary column as a StringDType array (a dictionary's few words made once)."""
    if pa.types.is_dictionary(values.type):
        words = np.asarray(values.dictionary.to_pylist() or [""], dtype=_STR)
        return words[_np(values.indices)] if len(values) else np.array([], dtype=_STR)
    return np.asarray(_np(values), dtype=_STR)


def _meta_ids(subject: np.ndarray, study: np.ndarray, match: np.ndarray, split_row: int) -> str:
    i = int(np.flatnonzero(match == split_row)[0])
    return f"{subject[i]} / {study[i]}"


def _split_names(subject: np.ndarray, split_code: np.ndarray, ok: np.ndarray, who: int) -> str:
    codes = np.unique(split_code[ok & (subject == who)])
    return " and ".join(schema.SPLITS[c] for c in codes.tolist())


def _first_of_study(study: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The first of ``rows`` (metadata positions) of each study, in row order."""
    if not len(rows):
        return rows
    _, first = np.unique(study[rows], return_index=True)
    return np.sort(rows[first])


def _label_study(rows: np.ndarray, study: np.ndarray, r: int) -> int:
    return int(study[int(np.flatnonzero(rows == r)[0])])


def _label_subject(rows: np.ndarray, subject: np.ndarray, r: int) -> int:
    return int(subject[int(np.flatnonzero(rows == r)[0])])


# -- the release ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MimicRelease(Release):
    """A MIMIC-CXR-JPG download (kind "mimic"); see the module's description.

    ``labels`` says which label file fills ``Index.labels`` ("chexpert" or "negbio").
    """

    csv_files: Mapping[str, Path] = field(default_factory=dict, repr=False)
    labels: str = "chexpert"

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that have images, in ``schema.SPLITS`` order."""
        present = set(np.unique(self.full_index().split).tolist())
        return tuple(s for i, s in enumerate(schema.SPLITS) if i in present)

    def csv_bytes(self, split: str) -> tuple[bytes, str]:
        """What a split's rows are made of, as bytes for fingerprints (a store records their hash):
        the metadata, split and chosen label file as on disk, and the label source's name. The
        label given to messages is the metadata file."""
        within = (os.path.realpath(self.root),)
        parts = [_read(None, str(self.csv_files[role]), MAX_CSV_BYTES, ReadError, lambda: within)
                 for role in ("metadata", "split", self.labels) if role in self.csv_files]  # fmt: skip
        return b"\0".join([*parts, self.labels.encode()]), str(self.csv_files["metadata"])

    def full_index(self) -> Index:
        """Every image the files place, with all extras, bound to this release (cached)."""
        cached = self._cache.get("index")
        if cached is None:
            files = self.csv_files
            within = (os.path.realpath(self.root),)
            read = {role: source_bytes(files[role], within) if role in files else None for role in schema.MIMIC_FILES}
            names = {role: str(files.get(role, self.root / (schema.MIMIC_FILES[role] + ".gz"))) for role in schema.MIMIC_FILES}
            index, problems = read_mimic(read["metadata"] or b"", read["split"], read["chexpert"], read["negbio"], labels=self.labels, names=names)
            cached = index.with_release(self)
            self._cache["index"] = cached
            self._cache["problems"] = problems
        return cast(Index, cached)

    def index(self, splits: str | Sequence[str] | None = None) -> Index:
        """The images of ``splits`` (default: all), MIMIC columns in ``extra``.

        >>> release = chexpert.open("~/data/mimic-cxr-jpg")
        >>> test = release.index("test")
        >>> test
        Index(3 images: test=3)
        """
        full = self.full_index()
        if splits is None:
            return full
        names = (splits,) if isinstance(splits, str) else tuple(splits)
        for name in names:
            check_choice("split", name, schema.SPLITS)
            if name not in self.splits:
                raise ReleaseNotFoundError(f"{self.csv_files.get('split', self.root)} places no image in {name} (splits present: {', '.join(self.splits)})")
        return concat([full.take(full.split == schema.SPLITS.index(s)) for s in names])

    def problems(self) -> list[Problem]:
        """Everything found wrong or inconsistent while reading and joining the CSVs."""
        self.full_index()
        return list(cast(list[Problem], self._cache.get("problems", [])))

    def locate(self, path: str) -> str:
        """The file of an Index ``path`` (``files/pNN/pSUBJECT/sSTUDY/DICOM.jpg``)."""
        return str(self.root / self._relative(path))

    def read_bytes(self, path: str) -> bytes:
        """The bytes of the image at an Index ``path``, read as safely as any release image."""
        name = self.locate(path)
        try:
            return _read(None, name, MAX_IMAGE_BYTES, ImageReadError, lambda: (os.path.realpath(self.root),))
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{path}: image not found at {name}") from None

    def list_images(self) -> tuple[set[str], list[Problem]]:
        """Every ``.jpg`` under ``files/``, as Index paths."""
        listing = self.listing()
        return listing.present, list(listing.problems)

    def listing(self) -> Listing:
        """Every file under ``files/`` (``.jpg`` in ``present``), found by listing folders."""
        present: set[str] = set()
        odd: dict[str, tuple[str, str]] = {}
        problems: list[Problem] = []
        unreadable: set[str] = set()
        for key, kind in _walk(self.root / "files", "files", problems, unreadable):
            if kind == "file":
                present.add(key)
            else:
                odd[key] = ("not-a-file", f"is {kind}, not a file")
        return Listing(present, odd, frozenset(unreadable), tuple(problems))

    def look_alike(self) -> dict[str, Any] | None:
        """The marker ``chexpert synth --release mimic`` wrote beside the CSVs, or None."""
        if "look_alike" not in self._cache:
            found = None
            try:
                marker = json.loads(_read(None, str(self.root / SYNTH_MARKER), MAX_MARKER_BYTES, ReadError, lambda: (os.path.realpath(self.root),)))
                if isinstance(marker, dict) and marker.get("format") == "chexpert-synth":
                    found = marker
            except (OSError, ValueError):
                pass
            self._cache["look_alike"] = found
        return cast("dict[str, Any] | None", self._cache["look_alike"])

    def _relative(self, path: str) -> str:
        normal = path.replace("\\", "/")
        match = schema.MIMIC_PATH_PATTERN.match(normal)
        if match is None or match["dicom"] is None:
            from chexpert.errors import InvalidArgumentError

            raise InvalidArgumentError(f"not a MIMIC-CXR-JPG image path (files/pNN/pSUBJECT/sSTUDY/DICOM.jpg): {path!r}")
        return f"files/p{match['group']}/p{match['subject']}/s{match['study']}/{match['dicom']}.jpg"


def _walk(folder: Path, key: str, problems: list[Problem], unreadable: set[str]) -> Iterator[tuple[str, str]]:
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.append(Problem("unreadable", str(folder), None, f"cannot be listed ({exc.strerror or exc}); its images are unknown"))
        unreadable.add(key + "/")
        return
    for entry in entries:
        sub = f"{key}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), sub, problems, unreadable)
        elif entry.name.endswith(".jpg"):
            yield sub, "file" if entry.is_file(follow_symlinks=True) else "a link or special file"


def open_mimic(root: str | os.PathLike[str], *, labels: str = "chexpert") -> MimicRelease:
    """Open the MIMIC-CXR-JPG download at ``root`` (the folder of the CSVs, or its ``files`` folder).

    ``labels``: "chexpert" (default) or "negbio", the file whose codes fill ``Index.labels``.

    >>> release = open_mimic("~/data/mimic-cxr-jpg", labels="negbio")
    >>> release.kind
    'mimic'
    """
    check_choice("labels", labels, LABEL_SOURCES)
    path = Path(root).expanduser().absolute()
    found = find_files(path)
    if found is None:
        raise ReleaseNotFoundError(f"{path} holds no MIMIC-CXR-JPG metadata file (mimic-cxr-2.0.0-metadata.csv.gz); pass the folder of the download")
    folder, files = found
    return MimicRelease(root=folder, kind="mimic", layout="folder", csvs=(), sources=(), files=(), csv_files=files, labels=labels)


# -- external evaluation ----------------------------------------------------------------------------


class UnlabeledStudiesWarning(UserWarning):
    """Predicted studies that have no row in the label file, scored as all negative."""


def truth_index(index: Index) -> Index:
    """The study-level truth of MIMIC rows for ``chexpert evaluate``: 1 where the label file says
    positive, 0 otherwise (negative, uncertain and blank), as the u-zeros policy reads them, for
    every image (images of a study share their labels; ``evaluate`` collapses them to the study).

    Studies without a label row (``extra["labeled"]`` False) read as all negative, like the label
    file's rows with every cell empty (the labeler found nothing); ``evaluate`` warns about them.

    >>> release = chexpert.open("~/data/mimic-cxr-jpg")
    >>> truth = truth_index(release.index("test"))
    >>> truth.labels.dtype, int(truth.labels.max()) <= 1
    (dtype('int8'), True)
    """
    binary = (index.labels == schema.Code.POSITIVE).astype(np.int8)
    return Index(**{name: getattr(index, name) for name in ("path", "split", "patient", "study", "view", "frontal", "projection", "sex", "age")},
                 labels=binary, release=index.release, extra=index.extra)  # fmt: skip


def resolve_truth(release: MimicRelease, studies: np.ndarray, *, split: str | None = None, radiologists: Any = None) -> tuple[Index, Any, Index]:
    """What ``evaluate`` scores against when the truth is a MIMIC-CXR-JPG download: the split's
    images with :func:`truth_index` labels, no radiologists, the split's Index as metadata.

    ``split`` ("valid" or "test") is required unless every predicted study is found in one split.

    >>> release = chexpert.open("~/data/mimic-cxr-jpg")
    >>> studies = release.index("test").study_keys()
    >>> truth, readers, metadata = resolve_truth(release, studies, split="test")
    >>> len(truth) == len(metadata), readers
    (True, ())
    """
    import warnings

    from chexpert.errors import InvalidArgumentError, option

    if radiologists not in (None, "none", ()):
        raise InvalidArgumentError("MIMIC-CXR-JPG comes with no radiologists' reads; leave radiologists out")
    full = release.full_index()
    if split is None:
        keys = set(np.asarray(studies).astype(str).tolist())
        predicted = np.fromiter((k in keys for k in full.study_keys().tolist()), dtype=bool, count=len(full))
        in_split = {schema.SPLITS[int(c)] for c in np.unique(full.split[predicted]).tolist()}
        if len(in_split) != 1:
            raise InvalidArgumentError(f"the predicted studies are in the split(s) {', '.join(sorted(in_split)) or 'none'} of {release.root}; "
                                       f"choose one with {option('split', 'test')}")  # fmt: skip
        split = in_split.pop()
    chosen = check_choice("split", split, ("valid", "test"))
    index = release.index(chosen)
    unlabeled = ~index.extra["labeled"]
    if unlabeled.any():
        without = np.unique(index.study_keys()[unlabeled])
        shown = ", ".join(without[:5].tolist()) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
        warnings.warn(
            f"{len(without)} {chosen} studies have no row in the label file and are scored as all negative: {shown}", UnlabeledStudiesWarning, stacklevel=3
        )
    return truth_index(index), (), index
