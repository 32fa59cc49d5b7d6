"""One root exception, with subclasses that are also the matching built-in errors.

Catch ``ChexpertError`` to handle anything this package raises on purpose; catch
``FileNotFoundError`` or ``ValueError`` as usual and these are included.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ChexpertError",
    "ReleaseNotFoundError",
    "CSVFormatError",
    "ImageDecodeError",
    "StoreError",
    "StaleStoreError",
    "Problem",
]


class ChexpertError(Exception):
    """Root of every error that chexpert raises deliberately."""


class ReleaseNotFoundError(ChexpertError, FileNotFoundError):
    """The folder or zip given is not (or not all of) a CheXpert download.

    The message says what to download from where and where to put it.
    """


class CSVFormatError(ChexpertError, ValueError):
    """A CSV file breaks the release's format; the message names file, row and value."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None) -> None:
        where = ""
        if file is not None:
            where = f"{file}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        super().__init__(where + message)
        self.file = file
        self.row = row


class ImageDecodeError(ChexpertError, ValueError):
    """An image file is empty, truncated, corrupt or of an unsupported kind."""

    def __init__(self, message: str, *, file: str | None = None) -> None:
        super().__init__(f"{file}: {message}" if file else message)
        self.file = file


class StoreError(ChexpertError, ValueError):
    """A prepared store is missing, incomplete or of an unknown format version."""


class StaleStoreError(StoreError):
    """A prepared store was made from other source data or other parameters."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a download, as listed in ``verify``'s report.

    ``row`` is the 1-based line number in ``file`` (the header is line 1), or None when the problem
    is not about a CSV row.
    """

    kind: str
    file: str
    row: int | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return f"{where}: {self.message}"
