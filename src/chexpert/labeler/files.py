"""Label a CSV of reports or a folder of ``.txt`` reports into a CSV of the 14 observations.

The input is read as a stream, labelled in chunks (in parallel with ``workers`` > 1) and written
as it goes, so that a file larger than memory is labelled in bounded memory. The output keeps
the input's rows in order with their identifying columns and adds the 14 observation columns
named as in CheXpert's ``train.csv``, with ``1.0``, ``0.0``, ``-1.0`` or an empty cell.

Inputs:

- a CSV with a header: the report text in ``column``; every other column is kept (or those in
  ``keep``);
- a headerless CSV of one column, as the original CheXpert labeler takes: every row is a report;
  the output starts with its number in a ``row`` column (from 1) and its text in a ``Reports``
  column, as the original's did. Blank lines
  are no records, in both kinds of CSV (as pandas reads them); an empty quoted cell ``""`` is an
  empty report, labelled blank throughout;
- a folder: every ``.txt`` file below it, in order of relative path; the output starts with that
  ``path`` (and, for MIMIC-CXR's ``files/pNN/pSUBJECT/sSTUDY.txt``, ``subject_id`` and ``study_id``);
- a zip of ``.txt`` reports (MIMIC-CXR's ``mimic-cxr-reports.zip``), read in place like a folder.

The output is written to a temporary file beside ``out`` and renamed into place when complete,
so an interrupted or failed run never leaves a partial ``out``; an existing ``out`` is replaced
only with ``overwrite``, and never when it is one of the inputs (the CSV, or any report of the
folder; compared as files, so a link or another name of an input is refused too).

Every report source is read as a regular file only (a FIFO or device named like a report is an
error naming it, never a wait) and bounded: a ``.txt`` report of more than :data:`MAX_REPORT` bytes
is refused by name, as a CSV cell of more than that many characters is.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from chexpert.errors import ChexpertError, CSVFormatError, InvalidArgumentError, option
from chexpert.fileio import create_new
from chexpert.labeler.pipeline import CHUNK, labelled_chunks
from chexpert.labeler.sections import SECTIONS
from chexpert.safeio import open_regular, read_bytes
from chexpert.schema import LONGEST_REPORT, MAX_REPORT, OBSERVATIONS, Code
from chexpert.validation import check_choice, check_int

__all__ = ["LabelSummary", "label_file", "REPORTS_COLUMN", "ROW_COLUMN", "PATH_COLUMN"]

#: The text column of a headerless input in the output (the original labeler's name for it).
REPORTS_COLUMN: Final = "Reports"
#: The first column of the output of a headerless CSV: the report's number in the file, from 1
#: (blank lines are no reports), so that labels match back to reports whatever is done to the output.
ROW_COLUMN: Final = "row"
#: The first column of the output of a folder of reports.
PATH_COLUMN: Final = "path"
_SPELLING: Final[dict[int, str]] = {Code.POSITIVE: "1.0", Code.NEGATIVE: "0.0", Code.UNCERTAIN: "-1.0", Code.BLANK: ""}

Progress = Callable[[int, int, int], None]  # reports done, units done, units in all (bytes of a CSV, files of a folder)


@dataclass(frozen=True)
class LabelSummary:
    """What :func:`label_file` did: rows written, parts read, label counts, time."""

    out: Path
    reports: int
    parts: dict[str, int]  # impression / findings / report / empty -> reports
    counts: dict[str, dict[str, int]]  # observation -> positive / negative / uncertain / blank -> reports
    seconds: float
    cut: int = 0  # reports longer than LONGEST_REPORT characters, read only that far


@dataclass
class _Source:
    """Rows of (kept values, report text) and the output header, read lazily."""

    header: list[str]
    rows: Iterator[tuple[list[str], str]]
    total: int  # bytes or files
    done: Callable[[], int]


def label_file(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    column: str | None = None,
    keep: Sequence[str] | None = None,
    sections: str = "impression",
    workers: int = 1,
    encoding: str = "utf-8-sig",
    overwrite: bool = False,
    chunk: int = CHUNK,
    progress: Progress | None = None,
) -> LabelSummary:
    """Label every report of ``input`` (a CSV or a folder of ``.txt`` files) into the CSV ``out``.

    >>> _ = Path("reports.csv").write_text("report\\nMild pulmonary edema. No effusion.\\nNo acute process.\\n")
    >>> summary = label_file("reports.csv", "labels.csv", column="report")
    >>> summary.counts["Edema"]
    {'positive': 1, 'negative': 0, 'uncertain': 0, 'blank': 1}
    """
    check_choice("sections", sections, SECTIONS)
    workers = check_int("workers", workers, low=1)
    chunk = check_int("chunk", chunk, low=1)
    source_path = Path(input)
    target = Path(out)
    if not source_path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(source_path))
    if target.is_dir():
        raise InvalidArgumentError(f"{target} is a folder; give the CSV file to write")
    if target.exists() and not source_path.is_dir() and _same(source_path, target):
        raise InvalidArgumentError(f"{target} is the input: write the labels to another file")
    if target.exists() and not overwrite:
        raise InvalidArgumentError(f"{target} exists; pass {option('overwrite')} to replace it")
    if target.exists() and source_path.is_dir():
        _not_an_input(source_path, target)
    started = time.perf_counter()
    counts = np.zeros((len(OBSERVATIONS), 4), dtype=np.int64)  # positive, negative, uncertain, blank
    parts = np.zeros(len(SECTIONS) + 1, dtype=np.int64)
    reports = 0
    long = [0]  # reports longer than the labeler reads
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(_open(source_path, column, keep, encoding))
        handle, partial = _temporary(target)
        try:
            with handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(source.header + list(OBSERVATIONS))
                pending: deque[list[list[str]]] = deque()
                with labelled_chunks(_texts(source.rows, chunk, pending, long), sections, workers) as results:
                    for codes, used in results:
                        kept = pending.popleft()
                        writer.writerows(values + [_SPELLING[c] for c in row] for values, row in zip(kept, codes.tolist()))
                        for state, code in enumerate((Code.POSITIVE, Code.NEGATIVE, Code.UNCERTAIN, Code.BLANK)):
                            counts[:, state] += (codes == code).sum(axis=0)
                        parts += np.bincount(used, minlength=len(parts))
                        reports += len(kept)
                        if progress is not None:
                            progress(reports, source.done(), source.total)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)  # ours: made by _temporary
            raise
    names = (*SECTIONS, "empty")
    states = ("positive", "negative", "uncertain", "blank")
    return LabelSummary(
        target,
        reports,
        {name: int(parts[i]) for i, name in enumerate(names)},
        {o: {s: int(counts[j, k]) for k, s in enumerate(states)} for j, o in enumerate(OBSERVATIONS)},
        time.perf_counter() - started,
        long[0],
    )


def _texts(rows: Iterator[tuple[list[str], str]], size: int, pending: deque[list[list[str]]], long: list[int]) -> Iterator[list[str]]:
    """Batches of report texts; each batch's kept values wait in ``pending`` for its labels.

    ``long[0]`` counts the reports longer than the labeler reads, so that the summary says so.
    """
    kept: list[list[str]] = []
    texts: list[str] = []
    for values, text in rows:
        if len(text) > LONGEST_REPORT:
            long[0] += 1
        kept.append(values)
        texts.append(text)
        if len(texts) == size:
            pending.append(kept)
            yield texts
            kept, texts = [], []
    if texts:
        pending.append(kept)
        yield texts


def _not_an_input(root: Path, target: Path) -> None:
    """Refuse an output that is one of the reports below ``root`` (the same file, by any name)."""
    try:
        st = target.stat()
    except OSError:
        return  # not there (or a dangling link): nothing of the input can be replaced
    for file in _report_files(root):
        with contextlib.suppress(OSError):
            other = file.stat()
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                raise InvalidArgumentError(f"{target} is one of the input reports ({file}): write the labels to another file")


def _report_files(root: Path) -> list[Path]:
    """Every ``.txt`` entry below ``root`` but folders, in order of relative path.

    FIFOs, devices and dangling links named like a report are listed, so that reading them names
    them rather than leaving them out without a word.
    """
    return sorted((p for p in root.rglob("*.txt") if not p.is_dir()), key=lambda p: p.relative_to(root).as_posix())


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _temporary(target: Path) -> tuple[IO[str], str]:
    """A new file beside ``target`` (same file system, so the final rename is atomic).

    Created exclusively (:func:`chexpert.fileio.create_new`: never through a link at the name),
    so it is ours to delete; with the usual permissions (the umask's), not the private ones of
    ``tempfile.mkstemp``, since it becomes the output.
    """
    for _ in range(100):
        name = str(target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        try:
            return create_new(name, "w", encoding="utf-8", newline=""), name
        except FileExistsError:
            continue
    raise FileExistsError(17, "cannot create a temporary file", str(target.parent))


@contextlib.contextmanager
def _open(path: Path, column: str | None, keep: Sequence[str] | None, encoding: str) -> Iterator[_Source]:
    if path.is_dir():
        if column is not None or keep is not None:
            raise InvalidArgumentError(f"{path} is a folder of .txt reports: {option('column')} and {option('keep')} are for a CSV")
        yield _folder(path, encoding)
        return
    if path.suffix.lower() == ".zip":  # a zip of .txt reports, such as MIMIC-CXR's mimic-cxr-reports.zip
        from chexpert.labeler.mimic import zip_reports

        if column is not None or keep is not None:
            raise InvalidArgumentError(f"{path} is a zip of .txt reports: {option('column')} and {option('keep')} are for a CSV")
        header, rows, total, done = zip_reports(path, encoding, MAX_REPORT)
        yield _Source(header, rows, total, lambda: done[0])
        return
    with open_regular(path) as raw:  # a FIFO or device is refused by name, never waited on
        counter = _Counting(raw)
        text = io.TextIOWrapper(counter, encoding=encoding, newline="")  # type: ignore[type-var]
        previous = csv.field_size_limit()
        csv.field_size_limit(MAX_REPORT)
        try:
            yield _csv(path, text, counter, column, keep)
        finally:
            csv.field_size_limit(previous)


class _Counting(io.RawIOBase):
    """A raw stream that counts the bytes read (for the progress bar)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def _csv(path: Path, text: io.TextIOWrapper[Any], counter: _Counting, column: str | None, keep: Sequence[str] | None) -> _Source:
    reader = csv.reader(text)
    line = 1

    def next_row() -> list[str] | None:
        nonlocal line
        try:
            row = next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            # The text is decoded a block ahead of the rows: find the line of the bad byte itself.
            raise CSVFormatError(
                f"not {text.encoding} text ({exc.reason}); pass {option('encoding', 'latin-1')} or the file's encoding",
                file=str(path),
                row=_undecodable_line(path, text.encoding),
            ) from None
        except csv.Error as exc:
            raise CSVFormatError(
                f"{exc} (reports are limited to {MAX_REPORT:,} characters)" if "field larger" in str(exc) else str(exc), file=str(path), row=reader.line_num
            ) from None
        line = reader.line_num
        return row

    first = next_row()
    if first is None:
        raise CSVFormatError("the file is empty: no header and no report", file=str(path))
    total = path.stat().st_size
    if column is None:
        if len(first) != 1:
            shown = ", ".join(repr(name) for name in first[:8]) + (", ..." if len(first) > 8 else "")
            raise CSVFormatError(f"{len(first)} columns ({shown}): name the one with the reports with {option('column', 'NAME')}", file=str(path), row=1)
        if keep is not None:
            raise InvalidArgumentError(f"{path} has no header: {option('keep')} needs {option('column')} and a header row")

        def headerless() -> Iterator[tuple[list[str], str]]:
            row: list[str] | None = first
            number = 0
            while row is not None:
                if len(row) > 1:
                    raise CSVFormatError(f"{len(row)} fields in a one-column file of reports (quote reports that hold commas)", file=str(path), row=line)
                if row:  # a blank line is no record (as pandas and the original labeler read it)
                    number += 1
                    yield [str(number), row[0]], row[0]
                row = next_row()

        return _Source([ROW_COLUMN, REPORTS_COLUMN], headerless(), total, lambda: counter.count)
    header = first
    if column not in header:
        raise CSVFormatError(f"no column {column!r}; the columns are {', '.join(repr(name) for name in header)}", file=str(path), row=1)
    if header.count(column) > 1:
        raise CSVFormatError(f"{header.count(column)} columns named {column!r}", file=str(path), row=1)
    text_at = header.index(column)
    if keep is None:
        kept_at = [i for i in range(len(header)) if i != text_at]
    else:
        missing = [name for name in keep if name not in header]
        if missing:
            raise CSVFormatError(f"no column {missing[0]!r} to keep; the columns are {', '.join(repr(n) for n in header)}", file=str(path), row=1)
        kept_at = [header.index(name) for name in keep]
    kept_names = [header[i] for i in kept_at]
    clashes = [name for name in kept_names if name in OBSERVATIONS]
    if clashes:
        raise InvalidArgumentError(
            f"{path} already has a column {clashes[0]!r}, which the labels would repeat; choose the columns to keep with {option('keep', 'COLUMN')}"
        )
    width = len(header)

    def rows() -> Iterator[tuple[list[str], str]]:
        while (row := next_row()) is not None:
            if len(row) != width:
                if not row:
                    continue  # a blank line
                raise CSVFormatError(f"{len(row)} fields where the header has {width}", file=str(path), row=line)
            yield [row[i] for i in kept_at], row[text_at]

    return _Source(kept_names, rows(), total, lambda: counter.count)


def _undecodable_line(path: Path, encoding: str) -> int | None:
    """The 1-based line of ``path`` holding its first byte that ``encoding`` cannot decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open_regular(path) as file:
        for number, line in enumerate(file, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError:
                return number
    return None


def _folder(root: Path, encoding: str) -> _Source:
    files = _report_files(root)
    if not files:
        raise ChexpertError(f"{root}: no .txt reports in this folder or below it")
    done = 0
    from chexpert.labeler.mimic import ID_COLUMNS, report_ids

    # MIMIC-CXR's reports (files/p10/p10000032/s50414267.txt) also get subject_id and study_id.
    ids = [report_ids(file.relative_to(root).as_posix()) for file in files]
    mimic = all(i is not None for i in ids)

    def rows() -> Iterator[tuple[list[str], str]]:
        nonlocal done
        for file, found in zip(files, ids):
            data = read_bytes(file, limit=MAX_REPORT)  # a regular file, or an error naming it
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise CSVFormatError(
                    f"not {encoding} text ({exc.reason} at byte {exc.start}); pass {option('encoding', 'latin-1')} or the files' encoding", file=str(file)
                ) from None
            done += 1
            yield [file.relative_to(root).as_posix(), *(found if mimic and found is not None else ())], text

    return _Source([PATH_COLUMN, *(ID_COLUMNS if mimic else ())], rows(), len(files), lambda: done)
