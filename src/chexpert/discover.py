"""The one way in: recognise a download and hand it to the module that reads it.

Each reader module (:mod:`chexpert.release` for the CheXpert release and its test set, which is
laid out like it; :mod:`chexpert.plus` for CheXpert Plus; :mod:`chexpert.mimic` for
MIMIC-CXR-JPG) knows only its own dataset and never
imports another reader or this module. This module holds the small registry that chooses among
them: the first :class:`Reader` whose ``recognise`` says yes opens the download, and the CheXpert
release reader, which names what is wrong with anything it cannot open, is the fallback. A new
dataset joins with :func:`register` (its module's ``READER`` added to :data:`READERS` below).

>>> sorted(kinds())
['full', 'mimic', 'plus', 'small']
>>> release = open_dataset("~/data/chexpert-plus")
>>> release.kind
'plus'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chexpert import mimic, plus, schema
from chexpert.errors import InvalidArgumentError, ReleaseNotFoundError
from chexpert.release import Release, open_release
from chexpert.validation import check_choice

__all__ = ["Reader", "READERS", "register", "kinds", "open_dataset"]


@dataclass(frozen=True)
class Reader:
    """How to recognise one kind of download and open it.

    ``kinds``: the ``kind=`` values that ask for this reader (and no other); ``recognise(path)``
    must answer quickly, without raising, for any absolute path (missing, a file, a folder);
    ``open(path, kind)`` returns the :class:`~chexpert.release.Release` (or subclass) and raises
    a :class:`~chexpert.errors.ChexpertError` naming the file when it cannot; ``what`` names the
    download in the message when ``kind`` asks for it and ``recognise`` says no.
    """

    name: str
    kinds: tuple[str, ...]
    recognise: Callable[[Path], bool]
    open: Callable[[Path, str | None], Release]
    what: str


def _plus_is_here(path: Path) -> bool:
    return path.is_dir() and plus.is_plus(path)


def _open_plus(path: Path, kind: str | None) -> Release:
    return plus.open_plus(path)


#: The readers tried in order before the CheXpert release's (the fallback).
READERS: list[Reader] = [
    Reader("plus", ("plus",), _plus_is_here, _open_plus, "CheXpert Plus CSV (df_chexpert_plus_*.csv)"),
]


def register(reader: Reader) -> None:
    """Add ``reader`` (a new dataset) to those :func:`open_dataset` tries, after the ones there.

    Not run here: it would add a reader for the rest of the process.

    >>> register(Reader("mimic", ("mimic",), lambda p: False, lambda p, k: None, "MIMIC-CXR"))  # doctest: +SKIP
    """
    if any(r.name == reader.name for r in READERS):
        raise InvalidArgumentError(f"a reader named {reader.name!r} is registered already")
    READERS.append(reader)


def _mimic_is_here(path: Path) -> bool:
    return path.is_dir() and mimic.is_mimic(path)


def _open_mimic(path: Path, kind: str | None) -> Release:
    return mimic.open_mimic(path)


register(Reader("mimic", ("mimic",), _mimic_is_here, _open_mimic, "MIMIC-CXR-JPG metadata file (mimic-cxr-2.0.0-metadata.csv.gz)"))


def kinds() -> tuple[str, ...]:
    """Every ``kind=`` value :func:`open_dataset` accepts.

    >>> kinds()
    ('small', 'full', 'plus', 'mimic')
    """
    return (*schema.RELEASE_KINDS, *(k for r in READERS for k in r.kinds))


def open_dataset(root: str | os.PathLike[str], *, kind: str | None = None) -> Release:
    """Recognise the download at ``root`` (a folder or a zip) and open it (this is ``chexpert.open``).

    ``kind`` chooses: "small" or "full" pick the CheXpert release when ``root`` holds both (or the
    original inside a Plus download), "plus" insists on CheXpert Plus, "mimic" on MIMIC-CXR-JPG. Anything that is not a
    download is a :class:`~chexpert.errors.ReleaseNotFoundError` saying what to pass instead.

    >>> release = open_dataset("~/data/CheXpert-v1.0-small")
    >>> release.kind, release.layout, release.splits
    ('small', 'folder', ('train', 'valid', 'test'))
    """
    if kind is not None:
        check_choice("kind", kind, kinds())
    path = Path(root).expanduser().absolute()
    try:
        path.stat()
    except OSError:
        return open_release(path)  # raises the error that says what is wrong with the path
    for reader in READERS:
        if (kind is None or kind in reader.kinds) and reader.recognise(path):
            return reader.open(path, kind)
        if kind in reader.kinds:
            raise ReleaseNotFoundError(f"{path} holds no {reader.what}")
    return open_release(path, kind=kind)
