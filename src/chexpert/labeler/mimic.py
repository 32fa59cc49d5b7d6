"""MIMIC-CXR's reports for the labeler, and how our labels agree with the distributed label files.

MIMIC-CXR ships one free-text report per study, ``files/p10/p10000032/s50414267.txt``, as a
folder or as ``mimic-cxr-reports.zip``; removed identifiers are written ``___``. ``chexpert
label`` reads either directly (:func:`zip_reports`, and :func:`report_ids` for the folder) and
adds ``subject_id`` and ``study_id`` columns, so that its output joins the released
``mimic-cxr-2.0.0-chexpert.csv.gz`` / ``-negbio.csv.gz`` by study; :func:`agreement` compares them
per observation (``chexpert label ... --compare FILE`` prints it).

>>> report_ids("files/p10/p10000032/s50414267.txt")
('10000032', '50414267')
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from chexpert import schema
from chexpert.errors import ChexpertError, CSVFormatError, option
from chexpert.safeio import check_regular

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ID_COLUMNS", "report_ids", "zip_reports", "agreement", "STATES"]

#: Columns added after ``path`` for MIMIC-CXR reports.
ID_COLUMNS: Final[tuple[str, str]] = ("subject_id", "study_id")
#: The four label states, in the order of :func:`agreement`'s confusion columns.
STATES: Final[tuple[str, ...]] = ("positive", "negative", "uncertain", "blank")
_CODES: Final = {"1.0": 1, "0.0": 0, "-1.0": -1, "": -2, "1": 1, "0": 0, "-1": -1}


def report_ids(path: str) -> tuple[str, str] | None:
    """``(subject_id, study_id)`` of a MIMIC-CXR report path, or None for any other path.

    >>> report_ids("notes/a.txt") is None
    True
    """
    match = schema.MIMIC_PATH_PATTERN.match(path.replace("\\", "/"))
    if match is None or not path.endswith(".txt"):
        return None
    return match["subject"], match["study"]


def zip_reports(path: Path, encoding: str, limit: int) -> tuple[list[str], Iterator[tuple[list[str], str]], int, list[int]]:
    """The ``.txt`` members of a reports zip, in name order: (header, rows of ([path, subject_id,
    study_id] or [path], text), member count, a one-item list counting members read).

    >>> header, rows, total, done = zip_reports(Path("mimic-cxr-jpg/mimic-cxr-reports.zip"), "utf-8", 1 << 24)
    >>> header, total
    (['path', 'subject_id', 'study_id'], 10)
    """
    try:
        check_regular(path)  # a FIFO or device named like a zip is refused by name, never waited on
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ChexpertError(f"{path}: not a readable zip archive ({exc})") from None
    members = sorted((i for i in archive.infolist() if not i.is_dir() and i.filename.endswith(".txt")), key=lambda i: i.filename)
    if not members:
        archive.close()
        raise ChexpertError(f"{path}: no .txt reports in this zip")
    mimic = all(report_ids(i.filename) is not None for i in members)
    header = ["path", *ID_COLUMNS] if mimic else ["path"]
    done = [0]

    def rows() -> Iterator[tuple[list[str], str]]:
        with archive:
            for info in members:
                if info.file_size > limit:
                    raise CSVFormatError(
                        f"report is {info.file_size:,} bytes, more than the {limit:,} a report may have; not read", file=f"{path}!{info.filename}"
                    )
                with archive.open(info) as member:
                    data = member.read(limit + 1)  # the declared size may lie: read no more than the limit
                if len(data) > limit:
                    raise CSVFormatError(f"report inflates past {limit:,} bytes; not read", file=f"{path}!{info.filename}")
                try:
                    text = data.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise CSVFormatError(f"not {encoding} text ({exc.reason} at byte {exc.start}); pass {option('encoding', 'latin-1')} or the files' encoding",
                                         file=f"{path}!{info.filename}") from None  # fmt: skip
                done[0] += 1
                ids = report_ids(info.filename)
                yield ([info.filename, *ids] if mimic and ids is not None else [info.filename]), text

    return header, rows(), len(members), done


def _read_table(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.astype(str).replace({"nan": "", "<NA>": ""})
    data = Path(source).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def agreement(ours: str | os.PathLike[str] | pd.DataFrame, theirs: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Per observation, how our labels (``chexpert label``'s output for MIMIC reports) agree with a
    distributed label file (``mimic-cxr-2.0.0-chexpert.csv.gz`` or ``-negbio``), joined by
    ``study_id`` and compared by name (their columns are alphabetical).

    Columns: ``studies`` (in both), ``agreement`` (share with the same state of the four),
    ``positive_agreement`` (both positive, over either positive), ``kappa`` (Cohen's, four states),
    and ``ours_STATE`` / ``theirs_STATE`` counts. The last row, ``all``, pools every observation.

    >>> # any two label files compare; here the release's NegBio labels against its CheXpert labels
    >>> table = agreement("mimic-cxr-jpg/mimic-cxr-2.0.0-negbio.csv.gz", "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz")
    >>> table.loc["all", ["studies", "agreement"]].round(3).tolist()
    [140.0, 0.964]
    """
    import pandas as pd

    a, b = _read_table(ours), _read_table(theirs)
    for name, frame in (("our labels", a), ("the label file", b)):
        missing = [c for c in ("study_id", *schema.OBSERVATIONS) if c not in frame.columns]
        if missing:
            raise CSVFormatError(f"{name} lack the column(s) {', '.join(map(repr, missing))}")
    joined = a[["study_id", *schema.OBSERVATIONS]].merge(b[["study_id", *schema.OBSERVATIONS]], on="study_id", suffixes=("_ours", "_theirs"))
    rows = {}
    pooled_a: list[np.ndarray] = []
    pooled_b: list[np.ndarray] = []
    for name in (*schema.OBSERVATIONS, "all"):
        if name == "all":
            x, y = np.concatenate(pooled_a), np.concatenate(pooled_b)
        else:
            x = joined[f"{name}_ours"].map(_CODES).fillna(-9).to_numpy(dtype=np.int64)
            y = joined[f"{name}_theirs"].map(_CODES).fillna(-9).to_numpy(dtype=np.int64)
            pooled_a.append(x)
            pooled_b.append(y)
        codes = np.array([1, 0, -1, -2])
        same = float((x == y).mean()) if len(x) else np.nan
        either = (x == 1) | (y == 1)
        positive = float(((x == 1) & (y == 1)).sum() / either.sum()) if either.any() else np.nan
        expected = sum(float((x == c).mean() * (y == c).mean()) for c in codes) if len(x) else np.nan
        kappa = (same - expected) / (1 - expected) if len(x) and expected < 1 else np.nan
        row: dict[str, float] = {"studies": len(x), "agreement": same, "positive_agreement": positive, "kappa": kappa}
        for state, code in zip(STATES, codes.tolist()):
            row[f"ours_{state}"] = int((x == code).sum())
            row[f"theirs_{state}"] = int((y == code).sum())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
