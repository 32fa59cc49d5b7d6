"""CheXpert Plus as released: the CSV, both report labelers' files, RadGraph-XL, PNGs and DICOMs, in one Index.

A Plus download is a folder holding ``df_chexpert_plus_*.csv`` (one row per image, 27 text
columns after an optional unnamed index column), ``chexbert_labels/{report,findings,impression}_fixed.json``
(JSON lines keyed by ``path_to_image``), ``radgraph-XL-annotations/section_{findings,impression}.json``,
``PNG/png_chexpert_plus_chunk_N.zip`` and ``DICOM/`` (folders or zips). :func:`open_plus` (or
``chexpert.open``, which recognises the CSV) returns a :class:`PlusRelease`, a
:class:`~chexpert.release.Release` whose ``index()`` gives the same :class:`~chexpert.index.Index`
as every other release, so that ``prepare``, the loaders and ``evaluate`` take it as they are.

Where the Plus columns live: the Index's own columns (path, split, patient, study, view, frontal,
projection, sex, age, labels) come from the Plus CSV, ``labels`` from the label source chosen
(``labels="report"`` by default: CheXbert on the whole report); everything else is in
``Index.extra``, one array per column, following ``take`` and ``concat``:

- every other CSV column by its name (``report``, ``section_findings``, ..., ``race``,
  ``insurance_type``, ``path_to_dcm``; text as numpy strings, "" where the cell is empty, a literal
  "None" kept as "None");
- ``labels_report``, ``labels_findings``, ``labels_impression`` (int8 codes, null -> blank) and,
  when the original release is found, ``labels_original`` and ``in_original`` (bool);
- ``report_copy``: 0 for the first report text of a study, 1, 2... for other copies of it.

Everything that disagrees is a :class:`~chexpert.errors.Problem` in ``release.problems()`` (and in
``chexpert verify``): rows whose metadata differ from the original release's, rows only one side
has, images and DICOMs that cannot be found, label lines for unknown images, and studies whose
images carry differently anonymised copies of the report with different labels. Nothing is dropped.

>>> release = chexpert.open("~/data/chexpert-plus")
>>> train = release.index("train")
>>> train.extra["race"][:3].tolist(), train.extra["labels_impression"].shape
(['Unknown', 'Unknown', 'Unknown'], (20, 14))
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from chexpert import schema
from chexpert.errors import ChexpertError, CSVFormatError, ImageReadError, InvalidArgumentError, Problem, ReadError, ReleaseNotFoundError
from chexpert.index import Index, concat
from chexpert.release import Release, open_release
from chexpert.safeio import open_zip as _archive
from chexpert.safeio import read as _read
from chexpert.schema import MAX_CSV_BYTES, MAX_IMAGE_BYTES, MAX_PLUS_HEADER_BYTES, MAX_RADGRAPH_BYTES
from chexpert.validation import check_choice

__all__ = [
    "PLUS_COLUMNS",
    "SECTIONS",
    "LABEL_SOURCES",
    "IMAGE_SOURCES",
    "DEMOGRAPHICS",
    "PlusRelease",
    "is_plus",
    "open_plus",
    "read_plus_csv",
    "read_labels",
    "radgraph",
    "dicom_header_columns",
]

SECTIONS: Final[tuple[str, ...]] = schema.PLUS_SECTIONS
#: The 27 columns of ``df_chexpert_plus_*.csv`` in order.
PLUS_COLUMNS: Final[tuple[str, ...]] = schema.PLUS_COLUMNS
#: Where ``Index.labels`` of a Plus index come from: a CheXbert file, or the original release.
LABEL_SOURCES: Final[tuple[str, ...]] = ("report", "findings", "impression", "original")
#: Which files ``read_bytes`` returns for a row: the PNGs, the DICOMs, or the original JPEGs.
IMAGE_SOURCES: Final[tuple[str, ...]] = ("png", "dicom", "jpg")
#: Demographic columns of the Plus CSV (besides age and sex, which are Index columns).
DEMOGRAPHICS: Final[tuple[str, ...]] = ("race", "ethnicity", "interpreter_needed", "insurance_type", "recent_bmi", "deceased")

_CSV_GLOB: Final = re.compile(r"^df_chexpert_plus.*\.csv$", re.IGNORECASE)
_LABEL_FILES: Final = schema.PLUS_LABEL_FILES
_RADGRAPH_FILES: Final = schema.PLUS_RADGRAPH_FILES
_TAIL: Final = re.compile(r"(patient\d{5}/study\d+/view\d+_(?:frontal|lateral))\.(\w+)$", re.IGNORECASE)
_PATH: Final = re.compile(
    r"^(?P<split>train|valid|test)/patient(?P<patient>\d{5})/study(?P<study>\d+)/view(?P<view>\d+)_(?P<kind>frontal|lateral)\.(?:jpg|png)$"
)
_STR = np.dtypes.StringDType()
_SHOWN = 20  # rows named per kind of problem in a strict error
_INT16_MAX = int(np.iinfo(np.int16).max)
_BLANK = int(schema.Code.BLANK)


def is_plus(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a folder holding a CheXpert Plus CSV (``df_chexpert_plus_*.csv``).

    >>> is_plus("/nonexistent")
    False
    """
    return _plus_csv(Path(root)) is not None


def _plus_csv(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    # Anything named like the CSV but a folder counts: a FIFO or a device in its place is then
    # refused by name when read, never passed over for another release in the folder.
    found = sorted(p for p in root.iterdir() if _CSV_GLOB.match(p.name) and not p.is_dir())
    return found[-1] if found else None  # the latest dated one


# -- reading the CSV -----------------------------------------------------------------------------


def _head(path: str) -> bytes:
    """The first bytes of a regular file ("" for anything else: the full read then names it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as f:
            return f.read(MAX_PLUS_HEADER_BYTES)
    except OSError:
        return b""


def _check_header(head: bytes, name: str, *, early: bool = False) -> tuple[list[str], list[str]]:
    """The 27 column names (and the header as written) from the file's first bytes; an error
    naming the file when its first line is not the Plus CSV's header. ``early``: a look before
    the whole file is read, where no bytes (not a regular file) leave the verdict to the read."""
    if not head and early:
        return list(PLUS_COLUMNS), list(PLUS_COLUMNS)
    head = head.removeprefix(b"\xef\xbb\xbf")
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) >= MAX_PLUS_HEADER_BYTES - 3:
        raise CSVFormatError(
            f"not a CheXpert Plus CSV: its first line is longer than {MAX_PLUS_HEADER_BYTES:,} bytes (the header is about 500)", file=name, row=1
        )
    try:
        header = next(iter(csv.reader([line.decode("utf-8", "replace").rstrip("\r")])), [])
    except csv.Error as exc:
        raise CSVFormatError(f"not a CheXpert Plus CSV: its header cannot be parsed ({exc})", file=name, row=1) from None
    columns = header[1:] if header and header[0] in ("", "Unnamed: 0") else header
    if tuple(columns) != PLUS_COLUMNS:
        missing = [c for c in PLUS_COLUMNS if c not in columns]
        extra = [c for c in columns if c not in PLUS_COLUMNS]
        detail = (["missing " + ", ".join(missing)] if missing else []) + (["unexpected " + ", ".join(extra)] if extra else []) or ["columns in another order"]
        raise CSVFormatError(f"not a CheXpert Plus CSV: {'; '.join(detail)}. Expected {len(PLUS_COLUMNS)} columns: {', '.join(PLUS_COLUMNS)}", file=name, row=1)
    return columns, header


def read_plus_csv(path: str | os.PathLike[str] | bytes, *, file: str | None = None) -> pa.Table:
    """The Plus CSV as an Arrow table of strings: every column text, only empty cells empty.

    Accession numbers keep their leading zeros and a literal "None" stays "None". The unnamed
    index column, if any, is dropped; the 27 columns must be there, in order.

    >>> read_plus_csv("chexpert-plus/df_chexpert_plus_240401.csv").num_columns
    27
    """
    if isinstance(path, bytes | bytearray):
        data, name = bytes(path), file or "<bytes>"
        _check_header(data[:MAX_PLUS_HEADER_BYTES], name, early=True)
    else:
        name = file or os.fspath(path)
        _check_header(_head(os.fspath(path)), name, early=True)  # before reading the whole file (up to 1 GiB)
        try:
            data = _read(None, os.fspath(path), MAX_CSV_BYTES, ReadError, lambda: (os.path.realpath(os.path.dirname(os.fspath(path)) or "."),))
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{name}: file not found") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    columns, header = _check_header(data[:MAX_PLUS_HEADER_BYTES], name)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(
                use_threads=True, block_size=16 << 20, column_names=["__index__", *columns] if len(header) != len(columns) else list(columns), skip_rows=1
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(["__index__", *columns], pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise CSVFormatError(f"cannot be parsed as CSV: {exc}", file=name) from None
    if "__index__" in table.column_names:
        table = table.drop_columns(["__index__"])
    return table.combine_chunks()


def _text(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=_STR) if table.num_rows else np.array([], _STR)


def _codes(values: np.ndarray, vocabulary: Sequence[str], empty: str) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(vocabulary)}
    unique, inverse = np.unique(values, return_inverse=True)
    table = np.array([lookup.get(u if u else empty, -1) for u in unique.tolist()] + [-1], dtype=np.int8)
    return table[inverse] if len(values) else np.array([], np.int8)


def _index_from_table(table: pa.Table, name: str, problems: list[Problem]) -> tuple[Index, np.ndarray]:
    """The Index of the rows that parse, and their positions in the CSV; the others become problems."""
    n = table.num_rows
    paths = _text(table, "path_to_image")
    parts = pc.extract_regex(table.column("path_to_image").combine_chunks(), _PATH.pattern) if n else None
    ok = np.asarray(pc.is_valid(parts).to_numpy(zero_copy_only=False)) if parts is not None else np.zeros(0, bool)

    def bad(mask: np.ndarray, message: Any) -> None:
        for i in np.flatnonzero(mask):
            problems.append(Problem("value", name, int(i) + 2, message(int(i))))

    bad(~ok, lambda i: f"path_to_image {str(paths[i])!r} does not follow split/patientNNNNN/studyN/viewN_frontal|lateral.jpg")
    if parts is not None:
        for part in ("study", "view"):  # Index columns of 16 bits: a number beyond them is no CheXpert path
            fits = ~ok | np.asarray(pc.fill_null(pc.less_equal(pc.utf8_length(parts.field(part)), len(str(_INT16_MAX))), False).to_numpy(zero_copy_only=False))
            fits &= ~ok | (np.asarray(pc.cast(pc.if_else(pa.array(fits), parts.field(part), "0"), pa.int32()).to_numpy(zero_copy_only=False)) <= _INT16_MAX)
            bad(~fits, lambda i, part=part: f"path_to_image {str(paths[i])!r}: its {part} number is beyond {_INT16_MAX:,}, more than any CheXpert path has")
            ok = ok & fits
    rows = np.flatnonzero(ok)
    if parts is not None:
        defaults = {"split": "train", "patient": "0", "study": "0", "view": "0", "kind": "frontal"}
        field = {k: pc.if_else(pa.array(ok), pc.fill_null(parts.field(k), v), v) for k, v in defaults.items()}
        split = _codes(np.asarray(field["split"].to_numpy(zero_copy_only=False), dtype=_STR), schema.SPLITS, "train")
        patient = np.asarray(pc.cast(field["patient"], pa.int32()).to_numpy(zero_copy_only=False))
        study = np.asarray(pc.cast(field["study"], pa.int16()).to_numpy(zero_copy_only=False))
        view = np.asarray(pc.cast(field["view"], pa.int16()).to_numpy(zero_copy_only=False))
        path_frontal = np.asarray(field["kind"].to_numpy(zero_copy_only=False)) == "frontal"
    else:
        split = np.array([], np.int8)
        patient = study = view = np.array([], np.int32)
        path_frontal = np.array([], bool)
    column_split = _codes(_text(table, "split"), schema.SPLITS, "")
    bad(ok & (column_split != split), lambda i: f"split {str(_text(table, 'split')[i])!r} disagrees with path_to_image {str(paths[i])!r}")
    frontal_word = _text(table, "frontal_lateral")
    view_code = _codes(frontal_word, schema.VIEWS, "")
    bad(ok & ((view_code < 0) | ((view_code == 0) != path_frontal)), lambda i: f"frontal_lateral {str(frontal_word[i])!r} does not match {str(paths[i])!r}")
    projection = _codes(_text(table, "ap_pa"), schema.PROJECTIONS, "none")
    bad(projection < 0, lambda i: f"ap_pa {str(_text(table, 'ap_pa')[i])!r} is not AP, PA, LL, RL or empty")
    projection[projection < 0] = schema.PROJECTIONS.index("none")
    sex = _codes(_text(table, "sex"), schema.SEXES, "Unknown")
    bad(sex < 0, lambda i: f"sex {str(_text(table, 'sex')[i])!r} is not Male, Female, Unknown or empty")
    sex[sex < 0] = schema.SEXES.index("Unknown")
    ages = table.column("age").combine_chunks()
    age_ok = np.asarray(pc.match_substring_regex(ages, r"^(\d{1,3}(\.0+)?)?$").to_numpy(zero_copy_only=False)) if n else np.zeros(0, bool)
    bad(~age_ok, lambda i: f"age {ages[i].as_py()!r} is not a whole number of years")
    cleaned = pc.if_else(pa.array(age_ok & (np.asarray(pc.utf8_length(ages).to_numpy(zero_copy_only=False)) > 0) if n else []), ages, "0") if n else ages
    age = np.asarray(pc.cast(pc.cast(cleaned, pa.float64()), pa.int16()).to_numpy(zero_copy_only=False)) if n else np.array([], np.int16)
    extra = {c: _text(table, c) for c in PLUS_COLUMNS if c not in ("path_to_image", "frontal_lateral", "ap_pa", "age", "sex", "split")}
    index = Index(
        path=paths[rows], split=split[rows], patient=patient[rows], study=study[rows], view=view[rows], frontal=path_frontal[rows],
        projection=projection[rows], sex=sex[rows], age=age[rows], labels=np.full((len(rows), len(schema.OBSERVATIONS)), _BLANK, np.int8),
        extra={k: v[rows] for k, v in extra.items()},
    )  # fmt: skip
    return index, rows


# -- label files ---------------------------------------------------------------------------------

_SPELLING: Final = {1.0: 1, 0.0: 0, -1.0: -1}


def read_labels(data: bytes, paths: np.ndarray, *, file: str) -> tuple[np.ndarray, list[Problem]]:
    """Join a CheXbert JSON-lines file to ``paths``: (N, 14) int8 codes, null kept as blank, and problems.

    Lines are matched by ``path_to_image``, whatever their order; a value other than 1.0, 0.0,
    -1.0 or null, a line for an unknown image, a repeated image and an image without a line are
    problems (its codes stay blank).

    >>> codes, problems = read_labels(b'{"path_to_image": "a.jpg", "Edema": 1.0}\\n', np.array(["a.jpg"]), file="x.json")
    >>> int(codes[0, 5]), len(problems)
    (1, 0)
    """
    problems: list[Problem] = []
    codes = np.full((len(paths), len(schema.OBSERVATIONS)), _BLANK, np.int8)
    position = {p: i for i, p in enumerate(paths.tolist())}
    seen = np.zeros(len(paths), dtype=bool)
    unknown = 0
    for line_number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        found: list[dict[str, list[Any]]] = []  # the keys each object repeats; the line's own object is parsed last
        try:
            record = json.loads(line, object_pairs_hook=functools.partial(_object, repeats=found))
            path = record["path_to_image"]
        except RecursionError:
            problems.append(Problem("label", file, line_number, "nests too deeply to be a label line"))
            continue
        except (ValueError, KeyError, TypeError):
            problems.append(Problem("label", file, line_number, "is not a JSON object with path_to_image"))
            continue
        if not isinstance(path, str):
            problems.append(Problem("label", file, line_number, f"path_to_image is a JSON {type(path).__name__}, not a string"))
            continue
        ambiguous = set()
        for key, values in found[-1].items():
            # The last value would win silently: two different values are an error and the field is
            # left blank; the same value twice is harmless but not as written by CheXbert (a warning).
            if len({json.dumps(v, sort_keys=True) for v in values}) > 1:
                ambiguous.add(key)
                problems.append(
                    Problem("label", file, line_number, f"carries {key} {len(values)} times with different values ({', '.join(map(repr, values))}); left blank")
                )
            else:
                problems.append(Problem("label", file, line_number, f"carries {key} {len(values)} times (the same value)", severity="warning"))
        if "path_to_image" in ambiguous:
            continue
        i = position.get(path)
        if i is None:
            unknown += 1
            if unknown <= _SHOWN:
                problems.append(Problem("label", file, line_number, f"labels an image that is not in the Plus CSV: {path!r}"))
            continue
        if seen[i]:
            problems.append(Problem("label", file, line_number, f"labels {path!r} a second time; the first line is kept"))
            continue
        seen[i] = True
        for j, name in enumerate(schema.OBSERVATIONS):
            value = record.get(name)
            if value is None or name in ambiguous:
                continue
            code = _SPELLING.get(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
            if code is None:
                problems.append(Problem("label", file, line_number, f"{name} is {value!r}; expected 1.0, 0.0, -1.0 or null"))
                continue
            codes[i, j] = code
    if unknown > _SHOWN:
        problems.append(Problem("label", file, None, f"{unknown - _SHOWN} more lines label images that are not in the Plus CSV"))
    if not seen.all():
        missing = np.flatnonzero(~seen)
        problems.append(
            Problem(
                "label",
                file,
                None,
                f"{len(missing)} images of the Plus CSV have no line (labels left blank), first: {', '.join(str(paths[i]) for i in missing[:3])}",
            )
        )
    return codes, problems


def _object(pairs: list[tuple[str, Any]], repeats: list[dict[str, list[Any]]]) -> dict[str, Any]:
    """A JSON object as a dict, noting the keys it carries more than once (with every value)."""
    repeated: dict[str, list[Any]] = {}
    repeats.append(repeated)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            repeated.setdefault(key, [out[key]]).append(value)
        out[key] = value
    return out


def radgraph(release: PlusRelease, section: str, index: Index | None = None) -> np.ndarray:
    """RadGraph-XL annotations of ``section`` ("findings" or "impression"), one object per index row.

    The file holds one element per CSV row whose section has at least two words, in CSV order;
    rows with a shorter section get None. A file whose length disagrees with the CSV is an error.

    >>> release = chexpert.open("~/data/chexpert-plus")
    >>> graphs = radgraph(release, "impression", release.index("valid"))
    >>> sorted(graphs[0]["entities"])[:2]
    ['1', '2']
    """
    check_choice("section", section, tuple(_RADGRAPH_FILES))
    path = release.root / "radgraph-XL-annotations" / _RADGRAPH_FILES[section]
    try:
        # The safe reader: a FIFO or /dev/zero behind the name is refused by name, never read.
        elements = json.loads(_read(None, str(path), MAX_RADGRAPH_BYTES, ReadError, lambda: (os.path.realpath(release.root),)))
    except FileNotFoundError:
        raise ReleaseNotFoundError(f"{path}: not found; RadGraph-XL annotations come with CheXpert Plus in radgraph-XL-annotations/") from None
    except ValueError as exc:
        raise CSVFormatError(f"is not a JSON array: {exc}", file=str(path)) from None
    except RecursionError:
        raise CSVFormatError("is not a JSON array: nested too deeply", file=str(path)) from None
    full = release.full_index()
    texts = full.extra[f"section_{section}"]
    words = np.array([len(t.split()) for t in texts.tolist()], dtype=np.int64)
    annotated = np.flatnonzero(words >= 2)
    if not isinstance(elements, list) or len(elements) != len(annotated):
        raise CSVFormatError(
            f"holds {len(elements) if isinstance(elements, list) else 'no'} elements, but {len(annotated)} rows of the Plus CSV have at least two words in section_{section}",
            file=str(path),
        )
    out = np.full(len(full), None, dtype=object)
    out[annotated] = elements
    if index is None:
        return out
    return out[_positions(full, index)]


def _keys(index: Index) -> np.ndarray:
    return index.study_ids() * 1000 + index.view


def _positions(full: Index, index: Index) -> np.ndarray:
    keys, wanted = _keys(full), _keys(index)
    order = np.argsort(keys, kind="stable")
    found = np.searchsorted(keys[order], wanted)
    found = np.clip(found, 0, len(order) - 1)
    hit = keys[order][found] == wanted
    if not hit.all():
        raise InvalidArgumentError(f"{int((~hit).sum())} rows of the index are not in this Plus release, e.g. {index.path[np.flatnonzero(~hit)[0]]}")
    return order[found]


# -- the release ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PlusRelease(Release):
    """A CheXpert Plus download (kind "plus"); see the module's description.

    ``images`` says which files rows read ("png", "dicom" or "jpg" from the original release),
    ``labels`` which label source fills ``Index.labels``, ``original`` the CheXpert release the
    rows are joined to (None when not found).
    """

    plus_csv: Path = Path()
    images: str = "png"
    labels: str = "report"
    original: Release | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that have rows in the Plus CSV, in ``schema.SPLITS`` order."""
        present = set(np.unique(self.full_index().split).tolist())
        return tuple(s for i, s in enumerate(schema.SPLITS) if i in present)

    def csv_bytes(self, split: str) -> tuple[bytes, str]:
        """The Plus CSV's bytes (one file holds every split) and its path."""
        return _read(None, str(self.plus_csv), MAX_CSV_BYTES, ReadError, lambda: (os.path.realpath(self.root),)), str(self.plus_csv)

    def full_index(self) -> Index:
        """Every row of the Plus CSV that parses, with all extras, bound to this release (cached)."""
        cached = self._cache.get("index")
        if cached is None:
            cached = self._build()
            self._cache["index"] = cached
        return cast(Index, cached)

    def index(self, splits: str | Sequence[str] | None = None) -> Index:
        """The rows of ``splits`` (default: all) with Plus columns in ``extra``.

        >>> release = chexpert.open("~/data/chexpert-plus")
        >>> valid = release.index("valid")
        >>> valid.extra["report"][0].splitlines()[0]
        'NARRATIVE:'
        """
        full = self.full_index()
        if splits is None:
            return full
        names = (splits,) if isinstance(splits, str) else tuple(splits)
        for name in names:
            if name not in self.splits:
                raise ReleaseNotFoundError(f"{self.plus_csv} has no {name} rows (splits present: {', '.join(self.splits)})")
        codes = [schema.SPLITS.index(s) for s in names]
        return concat([full.take(full.split == c) for c in codes])

    def problems(self) -> list[Problem]:
        """Everything found wrong or inconsistent while reading and joining (see the module's description)."""
        self.full_index()
        return list(cast(list[Problem], self._cache.get("problems", [])))

    def locate(self, path: str) -> str:
        """Where the file of a row is: a path, or ``archive.zip!member``."""
        archive, name = self._find(path)
        return f"{archive}!{name}" if archive else name

    def read_bytes(self, path: str) -> bytes:
        """The bytes of the row's image in the chosen source (PNG, DICOM or the original JPEG).

        Rows are found by the ``patientN/studyN/viewN_kind`` tail of their path in the zips and
        folders of the download, whatever the extension the CSV says.
        """
        if self.images == "jpg":
            if self.original is None:
                raise ReleaseNotFoundError(f"{path}: images='jpg' reads the original CheXpert release, which was not found beside {self.plus_csv}")
            return self.original.read_bytes(path)
        archive, name = self._find(path)
        try:
            # Read as safely as any release image: regular files only, capped, no link out of the download.
            return _read(archive, name, MAX_IMAGE_BYTES, ImageReadError, lambda: (os.path.realpath(self.root),))
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{path}: {self.images.upper()} file {name} not found") from None

    def list_images(self) -> tuple[set[str], list[Problem]]:
        """Keys ``split/patientN/studyN/viewN_kind.jpg`` of the rows whose file is present in the chosen source."""
        full = self.full_index()
        if self.images == "jpg" and self.original is not None:
            return self.original.list_images()
        files = self._files(self.images)
        splits = [schema.SPLITS[c] for c in full.split.tolist()]
        present = {p for p, split in zip(full.path.tolist(), splits) if files.matches(file_key(p), split)}
        return present, []

    # -- internals -------------------------------------------------------------------------

    def _find(self, path: str) -> tuple[Path | None, str]:
        files = self._files(self.images)
        key = file_key(path)
        if key is None:
            raise InvalidArgumentError(f"not a CheXpert image path: {path!r}")
        places = files.ambiguous.get(key)
        if places is not None:
            raise ImageReadError(
                f"{path}: {len(places)} {self.images.upper()} files for {key} ({', '.join(places[:3])}); which is meant cannot be known, so none is read"
            )
        found = files.get(key)
        split = path.replace("\\", "/").split("/", 1)[0]
        if found is None or (split in schema.SPLITS and not files.matches(key, split)):
            where = f" (only in the {files.split[key]} folder)" if found is not None else ""
            raise ReleaseNotFoundError(f"{path}: no {self.images.upper()} file for {key} in {self.root / ('PNG' if self.images == 'png' else 'DICOM')}{where}")
        return found

    def _files(self, kind: str) -> FoundFiles:
        """``patientN/studyN/viewN_kind`` -> (zip or None, member or path) of every PNG or DICOM file, listed once."""
        cached = self._cache.get(f"files-{kind}")
        if cached is None:
            cached = _list_files(self.root, kind)
            self._cache[f"files-{kind}"] = cached
        return cast(FoundFiles, cached)

    def _build(self) -> Index:
        problems: list[Problem] = []
        name = str(self.plus_csv)
        table = read_plus_csv(self.plus_csv)
        index, rows = _index_from_table(table, name, problems)
        csv_row = rows + 2  # the header is row 1; rows are records (reports span several lines)
        duplicate = _duplicates(index)
        for i in np.flatnonzero(duplicate):
            problems.append(Problem("duplicate", name, int(csv_row[i]), f"path_to_image {index.path[i]} appears twice; the later row is left out"))
        keep = ~duplicate
        index, csv_row = index.take(keep), csv_row[keep]
        extra: dict[str, np.ndarray] = {}
        for source, file_name in _LABEL_FILES.items():
            path = self.root / "chexbert_labels" / file_name
            try:
                # The safe reader: a FIFO, device or folder named like the file is a problem, never a wait.
                data = _read(None, str(path), MAX_CSV_BYTES, ReadError, lambda: (os.path.realpath(self.root),))
            except (FileNotFoundError, ReadError) as exc:
                why = "label file not found" if isinstance(exc, FileNotFoundError) else str(exc).removeprefix(f"{path}: ")
                problems.append(Problem("missing", str(path), None, f"{why}; its labels are left blank"))
                extra[f"labels_{source}"] = np.full((len(index), len(schema.OBSERVATIONS)), _BLANK, np.int8)
                continue
            codes, found = read_labels(data, index.path, file=str(path))
            extra[f"labels_{source}"] = codes
            problems += found
        extra["report_copy"] = _report_copies(index, extra["labels_report"], name, csv_row, problems)
        if self.original is not None:
            extra.update(_join_original(index, self.original, name, csv_row, problems))
        index = index.with_extra(**extra)
        labels = extra.get(f"labels_{self.labels}")
        if labels is None:
            raise ReleaseNotFoundError(
                f"labels='original' needs the original CheXpert release beside {self.plus_csv} (a CheXpert-v1.0 or -small folder or zip); none was found"
            )
        index = Index(**{f: getattr(index, f) for f in ("path", "split", "patient", "study", "view", "frontal", "projection", "sex", "age")},
                      labels=labels, release=self, extra=index.extra)  # fmt: skip
        problems += self._missing_dicoms(index, csv_row)
        self._cache["problems"] = problems
        return index

    def _missing_dicoms(self, index: Index, csv_row: np.ndarray) -> list[Problem]:
        files = self._files("dicom")
        if not files and not files.ambiguous:
            return [Problem("missing", str(self.root / "DICOM"), None, "no DICOM files found (path_to_dcm cannot be resolved)")]
        out = []
        for i, path in enumerate(index.extra["path_to_dcm"].tolist()):
            places = files.ambiguous.get(file_key(path) or "")
            if path and places is not None:
                out.append(
                    Problem(
                        "duplicate-member", str(self.plus_csv), int(csv_row[i]), f"path_to_dcm {path!r}: {len(places)} files, none read: {', '.join(places)}"
                    )
                )
            elif path and file_key(path) not in files:
                out.append(Problem("missing", str(self.plus_csv), int(csv_row[i]), f"path_to_dcm {path!r} points at no file in {self.root / 'DICOM'}"))
        return out


def file_key(path: str) -> str | None:
    """``patientN/studyN/viewN_kind`` of an image path or zip member (the key of :class:`FoundFiles`), or None."""
    match = _TAIL.search(path.replace("\\", "/"))
    return match[1] if match else None


class FoundFiles(dict[str, tuple[Path | None, str]]):
    """``patientN/studyN/viewN_kind`` -> (zip or None, member or path) of each image file found
    once; ``ambiguous`` holds the keys found in several places (two zips, a zip listing a member
    twice, a zip and a folder) with every place: those are refused, never one picked. ``split``
    holds the split of the keys found in a per-split folder (``PNG_train/``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ambiguous: dict[str, list[str]] = {}
        self.split: dict[str, str] = {}

    def add(self, key: str, where: tuple[Path | None, str], split: str | None) -> None:
        if key in self.ambiguous:
            self.ambiguous[key].append(_where(where))
            return
        first = self.get(key)
        if first is None:
            self[key] = where
            if split is not None:
                self.split[key] = split
            return
        del self[key]
        self.split.pop(key, None)
        self.ambiguous[key] = [_where(first), _where(where)]

    def matches(self, key: str | None, split: str) -> bool:
        """Whether the row of ``split`` with this key has one file (in its split's folder, if in one)."""
        return key is not None and key in self and self.split.get(key, split) == split


def _where(where: tuple[Path | None, str]) -> str:
    return f"{where[0]}!{where[1]}" if where[0] is not None else where[1]


# The folders of a Plus download holding images: PNG/ and DICOM/ (chunk zips or folders) as
# Stanford AIMI ships them, and the hosted mirror's per-split folders PNG_train/, DICOM_valid/...,
# whose paths drop the split (PNG_train/patient00001/study1/view1_frontal.png).
_IMAGE_DIR: Final = re.compile(r"^(png|dicom)(?:_(train|valid|test))?$", re.IGNORECASE)


def _image_dirs(root: Path, kind: str) -> list[tuple[Path, str | None]]:
    """The folders below ``root`` holding ``kind`` ("png" or "dicom") files, with their split (None: any)."""
    try:
        children = sorted(root.iterdir())
    except OSError:
        return []
    out = []
    for child in children:
        match = _IMAGE_DIR.match(child.name)
        if match and match[1].lower() == kind and child.is_dir():
            out.append((child, match[2].lower() if match[2] else None))
    return out


def _list_files(root: Path, kind: str) -> FoundFiles:
    """Every PNG (under ``PNG/``, ``PNG_<split>/``) or DICOM (``DICOM/``, ``DICOM_<split>/``) file,
    in zips or folders, by path tail."""
    suffixes = (".png",) if kind == "png" else (".dcm", ".dicom")
    found = FoundFiles()
    for folder, split in _image_dirs(root, kind):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for file_name in sorted(filenames):
                full = os.path.join(dirpath, file_name)
                if file_name.lower().endswith(".zip"):
                    try:
                        names = _archive(Path(full)).namelist()
                    except (zipfile.BadZipFile, OSError):
                        continue
                    for member in names:
                        key = file_key(member)
                        if key is not None and member.lower().endswith(suffixes):
                            found.add(key, (Path(full), member), split)
                    continue
                key = file_key(full)
                if key is not None and file_name.lower().endswith(suffixes):
                    found.add(key, (None, full), split)
    return found


def _duplicates(index: Index) -> np.ndarray:
    keys = _keys(index)
    order = np.argsort(keys, kind="stable")
    same = np.zeros(len(keys), dtype=bool)
    same[order[1:]] = keys[order][1:] == keys[order][:-1]
    return same


def _report_copies(index: Index, labels: np.ndarray, name: str, csv_row: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """Number each distinct report text within a study (0 first); a problem per study with several."""
    copy = np.zeros(len(index), dtype=np.int8)
    studies = index.study_ids()
    order = np.lexsort((index.view, studies))
    reports = index.extra["report"]
    starts = np.flatnonzero(np.r_[True, studies[order][1:] != studies[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts.tolist(), ends.tolist()):
        if end - start < 2:
            continue
        rows = order[start:end]
        texts = reports[rows].tolist()
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == 1:
            continue
        copy[rows] = [distinct.index(t) for t in texts]
        differ = [schema.OBSERVATIONS[j] for j in range(len(schema.OBSERVATIONS)) if len(set(labels[rows, j].tolist())) > 1]
        views = ", ".join(f"view{int(index.view[r])} (copy {int(copy[r])})" for r in rows)
        what = f"and their labels differ in {', '.join(differ)}" if differ else "with the same labels"
        problems.append(
            Problem(
                "report-copies",
                name,
                int(csv_row[rows[0]]),
                f"study {index.study_keys()[rows[0]]}: its images carry {len(distinct)} differently anonymised copies of the report ({views}) {what}",
            )
        )
    return copy


def _join_original(index: Index, original: Release, name: str, csv_row: np.ndarray, problems: list[Problem]) -> dict[str, np.ndarray]:
    """Original labels per Plus row, and problems where the two releases disagree."""
    theirs = original.index()
    mine_keys, their_keys = _keys(index), _keys(theirs)
    order = np.argsort(their_keys, kind="stable")
    found = np.clip(np.searchsorted(their_keys[order], mine_keys), 0, max(len(order) - 1, 0))
    hit = (their_keys[order][found] == mine_keys) if len(order) else np.zeros(len(index), bool)
    match = order[found]
    labels = np.full((len(index), len(schema.OBSERVATIONS)), _BLANK, np.int8)
    labels[hit] = theirs.labels[match[hit]]
    for i in np.flatnonzero(~hit):
        problems.append(Problem("not-in-original", name, int(csv_row[i]), f"{index.path[i]} is not in the original release ({original.root})"))
    fields = {
        "sex": lambda r, m: (schema.SEXES[index.sex[r]], schema.SEXES[theirs.sex[m]]),
        "age": lambda r, m: (int(index.age[r]), int(theirs.age[m])),
        "frontal_lateral": lambda r, m: (schema.VIEWS[int(not index.frontal[r])], schema.VIEWS[int(not theirs.frontal[m])]),
        "ap_pa": lambda r, m: (schema.PROJECTIONS[index.projection[r]], schema.PROJECTIONS[theirs.projection[m]]),
    }
    rows = np.flatnonzero(hit)
    m = match[rows]
    differs = {
        "sex": index.sex[rows] != theirs.sex[m],
        "age": (index.age[rows] != theirs.age[m]) & (index.age[rows] != 0),
        "frontal_lateral": index.frontal[rows] != theirs.frontal[m],
        "ap_pa": index.projection[rows] != theirs.projection[m],
    }
    for k in np.flatnonzero(np.any(np.stack(list(differs.values())), axis=0)) if len(rows) else []:
        r, mm = int(rows[k]), int(m[k])
        parts = [f"{f} {fields[f](r, mm)[0]!r} vs {fields[f](r, mm)[1]!r}" for f, d in differs.items() if d[k]]
        problems.append(Problem("disagrees", name, int(csv_row[r]), f"{index.path[r]}: Plus and the original release disagree: {'; '.join(parts)}"))
    absent = np.ones(len(theirs), dtype=bool)
    absent[match[hit]] = False
    for i in np.flatnonzero(absent):
        problems.append(
            Problem(
                "not-in-plus",
                str(original.root),
                None,
                f"{schema.strip_release_prefix(str(theirs.path[i]))} is in the original release but not in the Plus CSV",
            )
        )
    return {"labels_original": labels, "in_original": hit}


def open_plus(
    root: str | os.PathLike[str],
    *,
    images: str | None = None,
    labels: str = "report",
    original: str | os.PathLike[str] | Release | None = None,
) -> PlusRelease:
    """Open the CheXpert Plus download at ``root`` (the folder holding ``df_chexpert_plus_*.csv``).

    ``images``: "png", "dicom" or "jpg" (default: PNG if any, else DICOM, else the original
    JPEGs). ``labels``: one of :data:`LABEL_SOURCES` for ``Index.labels`` (default "report",
    CheXbert on the whole report). ``original``: the CheXpert release to join (default: a
    ``CheXpert-v1.0-small`` or ``CheXpert-v1.0`` folder or zip inside ``root``, if any).

    >>> release = open_plus("~/data/chexpert-plus", images="dicom")
    >>> release.kind
    'plus'
    """
    check_choice("labels", labels, LABEL_SOURCES)
    if images is not None:
        check_choice("images", images, IMAGE_SOURCES)
    path = Path(root).expanduser().absolute()
    plus_csv = _plus_csv(path)
    if plus_csv is None:
        raise ReleaseNotFoundError(f"{path} holds no CheXpert Plus CSV (df_chexpert_plus_*.csv); pass the folder of the Plus download")
    base: Release | None
    if isinstance(original, Release):
        base = original
    elif original is not None:
        base = open_release(original)
    else:
        base = _find_original(path)
    if images is None:
        images = "png" if _list_files(path, "png") else "dicom" if _list_files(path, "dicom") else "jpg"
    if images == "jpg" and base is None:
        raise ReleaseNotFoundError(f"{path} has no PNG or DICOM images and no original CheXpert release inside it to read JPEGs from")
    return PlusRelease(root=path, kind="plus", layout="folder", csvs=(), sources=(), plus_csv=plus_csv, images=images, labels=labels, original=base)


def _find_original(root: Path) -> Release | None:
    for child in sorted(root.iterdir()):
        stem = child.name.removesuffix(".zip")
        if stem in schema.RELEASE_DIRS.values() and (child.is_dir() or zipfile.is_zipfile(child)):
            try:
                return open_release(child)
            except ChexpertError:
                return None
    return None


def dicom_header_columns(release: PlusRelease, index: Index, elements: Iterable[str] | None = None) -> Index:
    """``index`` with one extra column per DICOM header element (``dicom_<Keyword>``, "" where absent).

    Reads each row's DICOM header only (no pixels). Rows without a DICOM file get "" everywhere
    and ``dicom_found`` False; ``chexpert verify`` lists them.

    >>> release = chexpert.open("~/data/chexpert-plus")
    >>> index = dicom_header_columns(release, release.index("valid"))
    >>> index.extra["dicom_Modality"][:3].tolist()
    ['DX', 'CR']
    """
    from chexpert import dicom

    keywords = tuple(elements) if elements is not None else dicom.PLUS_ELEMENTS
    files = release._files("dicom")
    columns = {k: np.full(len(index), "", dtype=_STR) for k in keywords}
    syntax = np.full(len(index), "", dtype=_STR)
    found = np.zeros(len(index), dtype=bool)
    for i, path in enumerate(index.path.tolist()):
        where = files.get(file_key(path) or "")
        if where is None:
            continue
        archive, member = where
        data = _read(archive, member, MAX_IMAGE_BYTES, ImageReadError, lambda: (os.path.realpath(release.root),))
        dataset = dicom.read(data, file=member, stop_before_pixels=True)
        for keyword, value in dicom.header(dataset, keywords).items():
            columns[keyword][i] = value
        syntax[i] = dicom.transfer_syntax(dataset)
        found[i] = True
    return index.with_extra(**{f"dicom_{k}": v for k, v in columns.items()}, dicom_TransferSyntaxUID=syntax, dicom_found=found)
