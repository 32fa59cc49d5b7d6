"""One root exception, with subclasses that are also the matching built-in errors.

Catch ``ChexpertError`` to handle anything this package raises on purpose; catch
``FileNotFoundError`` or ``ValueError`` as usual and these are included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ChexpertError",
    "ReleaseNotFoundError",
    "CSVFormatError",
    "ImageDecodeError",
    "ReadError",
    "ImageReadError",
    "InvalidArgumentError",
    "StoreError",
    "StaleStoreError",
    "AnnotationError",
    "RunError",
    "Problem",
    "SEVERITIES",
    "option",
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


class ReadError(ChexpertError, OSError):
    """A file of the download is there but cannot be read safely.

    It cannot be opened (no permission, an input/output error), is not a regular file (a folder,
    a FIFO, a device), is larger than any file of its kind, is a symbolic link leading out of the
    release, or is a damaged zip member (bad CRC-32, a declared size beyond the cap). The message
    names the file and why; it never quotes the file's content. ``errno`` is set when the system
    gave one.

    >>> str(ReadError("permission denied", file="train.csv"))
    'train.csv: permission denied'
    """

    def __init__(self, message: str, *, file: str | None = None, errno: int | None = None) -> None:
        super().__init__(f"{file}: {message}" if file else message)
        self.file = file
        if errno is not None:
            self.errno = errno


class ImageReadError(ReadError):
    """An image named by a CSV row is there but cannot be read (see :class:`ReadError` for why).

    A missing image is a :class:`ReleaseNotFoundError` instead; both are ``OSError`` s, so
    ``except OSError`` takes either.
    """


class InvalidArgumentError(ChexpertError, ValueError):
    """An argument has a value this package cannot use; the message lists what it can use.

    Raised by the ``check_*`` helpers in :mod:`chexpert.validation`, so that one ``except`` in the
    command line (and in callers) handles every bad argument.
    """


class StoreError(ChexpertError, ValueError):
    """A prepared store is missing, incomplete or of an unknown format version."""


class StaleStoreError(StoreError):
    """A prepared store was made from other source data or other parameters."""


class AnnotationError(ChexpertError, ValueError):
    """A localization file (CheXlocalize's segmentation or polygon JSON) is damaged or does not
    fit its image; the message names the file, the image and the observation."""


class RunError(ChexpertError, ValueError):
    """A training run folder is not a run, is incomplete, or was started with another recipe or data."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a download, as listed in ``verify``'s report.

    ``row`` is the 1-based line number in ``file`` (the header is line 1), or None when the problem
    is not about a CSV row. ``severity`` is ``"error"`` (the download is not as released: verify
    fails) or ``"warning"`` (worth knowing, harmless to every use: a CSV re-saved with CRLF line
    endings, say).

    >>> str(Problem("crlf", "train.csv", 1, "has CRLF line endings", severity="warning"))
    'train.csv, row 1: has CRLF line endings'
    """

    kind: str
    file: str
    row: int | None
    message: str
    severity: str = "error"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidArgumentError(f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}")

    @property
    def is_error(self) -> bool:
        """True unless the problem is only a warning."""
        return self.severity == "error"

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        return f"{where}: {self.message}"


#: Severities of a :class:`Problem`, gravest first.
SEVERITIES: Final[tuple[str, ...]] = ("error", "warning")


_UNSET: Final = object()
# Set by the command line's main() for the commands it runs: messages then name its options, not
# Python parameters. A context variable, not a module global: a command run inside another (the
# demo runs `chexpert verify`), a thread or an asyncio task each see the spelling of their caller,
# and leaving a command restores the caller's spelling instead of turning it off for everyone.
_COMMAND_LINE: ContextVar[bool] = ContextVar("chexpert_command_line_spelling", default=False)


@contextlib.contextmanager
def command_line_spelling(on: bool = True) -> Iterator[None]:
    """Within the block, :func:`option` spells arguments as command-line options (``chexpert``'s main uses it).

    >>> with command_line_spelling():
    ...     option("overwrite")
    '--overwrite'
    >>> option("overwrite")
    'overwrite=True'
    """
    token = _COMMAND_LINE.set(on)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(name: str, value: object = _UNSET) -> str:
    """An argument as the interface in use spells it, for messages that tell the user what to pass.

    >>> option("on_error", "skip"), option("overwrite")
    ("on_error='skip'", 'overwrite=True')
    >>> with command_line_spelling():
    ...     option("on_error", "skip"), option("overwrite")
    ('--on-error skip', '--overwrite')
    """
    if _COMMAND_LINE.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is _UNSET or value is True else f"{flag} {value}"
    return f"{name}={True if value is _UNSET else value!r}"
