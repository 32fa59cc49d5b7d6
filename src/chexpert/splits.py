"""A split's rows from whichever label file the release has, read into an :class:`~chexpert.index.Index`.

The release's own CSVs (``train.csv``, ``valid.csv``) go straight to :func:`chexpert.read_csv`;
CheXlocalize's image-level label files (``val_labels.csv``, ``test_labels.csv``, columns in any
order, metadata columns optional) and the study-level ``groundtruth.csv`` of the test set are
rewritten to the release's header first (see :mod:`chexpert.testset` for the tolerances). This
module sits below :mod:`chexpert.release`: it needs only what a release gives
(``csv_bytes``, ``list_images``, ``root``), so the release can index itself without importing the
test-set module above it.

>>> index = read_split(release, "valid")
>>> index
Index(77 images: valid=77)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from chexpert import schema
from chexpert.errors import CSVFormatError, InvalidArgumentError, Problem
from chexpert.index import Index, check_csv, read_csv

if TYPE_CHECKING:
    from chexpert.release import Release

__all__ = ["OBSERVATION_ALIASES", "read_split", "check_split"]

#: Other names the released files give observations (CheXlocalize says Airspace Opacity).
OBSERVATION_ALIASES: Final[dict[str, str]] = {"Airspace Opacity": "Lung Opacity"}

_INTEGER_SPELLINGS: Final[dict[str, str]] = {"1": "1.0", "0": "0.0", "-1": "-1.0"}
_IMAGE = re.compile(r"^(?P<split>train|valid|test)/patient(?P<patient>\d{5})/study(?P<study>\d+)/view(?P<view>\d+)_(?P<kind>frontal|lateral)\.(?:jpg|png)$")


# ---------------------------------------------------------------------------------------------
# A split's rows from whichever file the release has
# ---------------------------------------------------------------------------------------------


def read_split(release: Release, split: str) -> Index:
    """Index ``split`` of ``release`` from its CSV, whatever form the CSV has (strict: raises).

    A CSV with the release's header goes straight to :func:`chexpert.read_csv`; CheXlocalize's
    label files and the study-level ``groundtruth.csv`` are read as the module docstring says.
    Errors name the file and the row of the file as it is on disk.

    >>> read_split(release, "test").counts()["studies"]  # 500 in the real test set
    20
    """
    index, problems, _lines, label = _split_rows(release, split, strict=True)
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more problems; run `chexpert verify` for all)" if len(problems) > 1 else ""
        raise CSVFormatError(first.message + more, file=first.file, row=first.row)
    if index is None:  # pragma: no cover  (a parse without problems always gives an index)
        raise CSVFormatError("no rows could be read", file=label)
    return index


def check_split(release: Release, split: str) -> tuple[Index | None, list[Problem], np.ndarray, str]:
    """Like :func:`read_split` but collecting problems: (index, problems, line of each row, file label).

    >>> index, problems, lines, label = check_split(release, "test")
    """
    return _split_rows(release, split, strict=False)


def _split_rows(release: Release, split: str, *, strict: bool) -> tuple[Index | None, list[Problem], np.ndarray, str]:
    data, label = release.csv_bytes(split)
    header = _header(data)
    if tuple(header) == schema.CSV_COLUMNS or not header:
        index, problems, lines = (read_csv(data, file=label), [], np.array([], np.int64)) if strict else check_csv(data, file=label)
        return index, problems, lines, label
    if "Study" in header and "Path" not in header:
        return _from_groundtruth(release, split, data, label, strict)
    canonical, problems = _canonical_image_rows(data, label, split)
    if canonical is None:
        return None, problems, np.array([], np.int64), label
    if strict:
        return read_csv(canonical, file=label), [], np.array([], np.int64), label
    index, found, lines = check_csv(canonical, file=label)
    return index, problems + found, lines, label


def _header(data: bytes) -> list[str]:
    first = data.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")
    return next(csv.reader([first.decode("utf-8", "replace")]), [])


def _rows(data: bytes) -> list[list[str]]:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    return list(csv.reader(io.StringIO(text, newline="")))


def _observation_of(column: str) -> str | None:
    name = OBSERVATION_ALIASES.get(column.strip(), column.strip())
    return name if name in schema.OBSERVATIONS else None


def _label_columns(header: Sequence[str], label: str, key: str) -> tuple[dict[str, int], list[Problem]]:
    """Position of each observation in ``header``; problems for unknown, repeated or missing columns."""
    positions: dict[str, int] = {}
    unknown, repeated = [], []
    for i, column in enumerate(header):
        name = _observation_of(column)
        if name is None:
            if column not in (key, *schema.METADATA_COLUMNS):
                unknown.append(column)
        elif name in positions:
            repeated.append(column)
        else:
            positions[name] = i
    problems = []
    missing = [o for o in schema.OBSERVATIONS if o not in positions]
    details = []
    if missing:
        details.append("missing " + ", ".join(map(repr, missing)))
    if unknown:
        details.append("unexpected " + ", ".join(map(repr, unknown)))
    if repeated:
        details.append("repeated " + ", ".join(map(repr, repeated)))
    if details:
        problems.append(
            Problem(
                "header",
                label,
                1,
                f"header is not a label file's: {'; '.join(details)}. Expected {key} and the 14 observations: " + ", ".join(schema.OBSERVATIONS),
            )
        )
    return positions, problems


def _canonical_image_rows(data: bytes, label: str, split: str) -> tuple[bytes | None, list[Problem]]:
    """An image-level label file rewritten with the release's header, row for row (so that line
    numbers stay those of the file): metadata the file lacks is filled in as unknown."""
    rows = _rows(data)
    header = rows[0]
    if "Path" not in header:
        return None, [Problem("header", label, 1, f"needs a Path column (or Study, for study-level truth); columns are {header}")]
    positions, problems = _label_columns(header, label, "Path")
    if problems:
        return None, problems
    where = {name: header.index(name) for name in schema.METADATA_COLUMNS if name in header}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(schema.CSV_COLUMNS)
    for row in rows[1:]:
        cells = {name: row[i] if i < len(row) else "" for name, i in where.items()}
        path = cells["Path"]
        if "Frontal/Lateral" not in where:
            cells["Frontal/Lateral"] = "Lateral" if "_lateral." in path else "Frontal"
        cells.setdefault("Sex", "Unknown")
        cells.setdefault("Age", "0")
        cells.setdefault("AP/PA", "")
        for name, i in positions.items():
            value = row[i].strip() if i < len(row) else ""
            cells[name] = _INTEGER_SPELLINGS.get(value, value)
        writer.writerow([cells[c] for c in schema.CSV_COLUMNS])
    return buffer.getvalue().encode(), problems


def study_labels(data: bytes, label: str) -> tuple[list[tuple[int, str, list[str]]], list[Problem]]:
    """(line, study key, 14 label spellings) per row of a study-level file, and its problems."""
    rows = _rows(data)
    header = rows[0]
    positions, problems = _label_columns(header, label, "Study")
    if problems:
        return [], problems
    key_at = header.index("Study")
    out: list[tuple[int, str, list[str]]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        value = row[key_at] if key_at < len(row) else ""
        try:
            key = schema.study_key(value)
        except InvalidArgumentError:
            problems.append(Problem("path", label, line, f"Study {value!r} is not a CheXpert study path (split/patientNNNNN/studyN)"))
            continue
        if key in seen:
            problems.append(Problem("duplicate", label, line, f"Study {value!r} already appears on row {seen[key]}"))
            continue
        seen[key] = line
        spellings = []
        for name in schema.OBSERVATIONS:
            i = positions[name]
            cell = row[i].strip() if i < len(row) else ""
            spelled = _INTEGER_SPELLINGS.get(cell, cell)
            if spelled not in ("1.0", "0.0"):
                problems.append(Problem("label", label, line, f"{name} {cell!r} is not valid; the test set's labels are 0 or 1"))
                spelled = "0.0"
            spellings.append(spelled)
        out.append((line, key, spellings))
    return out, problems


def _from_groundtruth(release: Release, split: str, data: bytes, label: str, strict: bool) -> tuple[Index | None, list[Problem], np.ndarray, str]:
    """Index the images present under each study of a study-level file (groundtruth.csv)."""
    studies, problems = study_labels(data, label)
    if strict and problems:
        return None, problems, np.array([], np.int64), label
    present, _ = release.list_images()
    by_study: dict[str, list[tuple[int, str]]] = {}
    for name in present:
        match = _IMAGE.match(name)
        if match is not None:
            by_study.setdefault(name.rsplit("/", 1)[0], []).append((int(match["view"]), name))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(schema.CSV_COLUMNS)
    lines = []
    for line, key, spellings in studies:
        if not key.startswith(split + "/"):
            problems.append(Problem("split", label, line, f"Study {key!r} is not in the {split} split"))
            continue
        images = sorted(by_study.get(key, ()))
        if not images:
            problems.append(
                Problem(
                    "missing",
                    label,
                    line,
                    f"study {key!r} has no images in {release.root}; is the test set's image folder (CheXlocalize's test/) beside its labels?",
                )
            )
            continue
        for _, path in images:
            frontal = "_frontal." in path
            writer.writerow([path, "Unknown", "0", "Frontal" if frontal else "Lateral", "", *spellings])
            lines.append(line)
    if strict and problems:
        return None, problems, np.array([], np.int64), label
    index, found, rows = check_csv(buffer.getvalue().encode(), file=label)
    # Rows of the rebuilt table map back to the study's line in the file.
    line_of = np.asarray(lines, dtype=np.int64)
    problems += [Problem(p.kind, p.file, int(line_of[p.row - 2]) if p.row and p.row >= 2 else p.row, p.message) for p in found]
    if strict and problems:
        return None, problems, np.array([], np.int64), label
    return index, problems, line_of[rows - 2] if len(rows) else rows, label
