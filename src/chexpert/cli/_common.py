"""What every command shares: argument types that make bad values usage errors, the Plus options.

Output meant for a person goes through :func:`chexpert.progress.console`, which never wraps lines
when the output is not a terminal: a path or a count split over two lines breaks whatever reads the
output, and where the split falls would depend on the length of the path. Nor does it pass on a
control character a name read from a file or given on the command line holds (an escape sequence
in a CSV's Path would drive the terminal): those are shown escaped, as Python writes them
(:func:`chexpert.progress.shown`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["path_name", "positive_int", "non_negative_int", "int_from", "add_plus_options", "open_root"]


def path_name(text: str) -> str:
    """An argparse type for a file or folder name: an empty or blank name is a usage error.

    Without it ``''`` would be taken as the current folder, and a command would write there.

    >>> path_name("out")
    'out'
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} names no file or folder")
    return text


def int_from(low: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting whole numbers >= ``low``; anything else is a usage error.

    >>> int_from(1)("4")
    4
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: ``--size``, ``--workers``, ``--shard-size`` and other counts that must be at least 1.
positive_int = int_from(1)
#: Counts where 0 means "none" (``--bootstrap 0``, ``--test-patients 0``).
non_negative_int = int_from(0)


def add_plus_options(parser: argparse.ArgumentParser, what: str = "read") -> None:
    """``--images`` and ``--labels``: which files and which labels of a CheXpert Plus download."""
    from chexpert.plus import IMAGE_SOURCES, LABEL_SOURCES

    parser.add_argument("--images", choices=IMAGE_SOURCES, default=None,
                        help=f"CheXpert Plus only: {what} the PNGs, the DICOMs or the original release's JPEGs (default: PNG if any, else DICOM, else JPEG)")  # fmt: skip
    parser.add_argument("--labels", choices=LABEL_SOURCES, default=None,
                        help=f"CheXpert Plus only: {what} the labels of CheXbert on the whole report (default), the findings, the impression, or the original release")  # fmt: skip


def open_root(args: argparse.Namespace) -> Any:
    """The release at ``args.root`` (``--kind``), a CheXpert Plus download opened with ``--images``
    and ``--labels``; those two on any other release are an error, not ignored.

    >>> open_root(argparse.Namespace(root="CheXpert-v1.0-small", kind=None, images=None, labels=None)).kind
    'small'
    >>> open_root(argparse.Namespace(root="CheXpert-v1.0-small", kind=None, images="png", labels=None))
    Traceback (most recent call last):
    chexpert.errors.InvalidArgumentError: ...
    """
    from chexpert.discover import open_dataset
    from chexpert.errors import InvalidArgumentError
    from chexpert.plus import open_plus

    release = open_dataset(args.root, kind=getattr(args, "kind", None))
    images, labels = getattr(args, "images", None), getattr(args, "labels", None)
    if images is None and labels is None:
        return release
    if release.kind != "plus":
        given = " and ".join(f"--{name}" for name, value in (("images", images), ("labels", labels)) if value is not None)
        raise InvalidArgumentError(f"{given} choose among the sources of a CheXpert Plus download; {release.root} is the CheXpert {release.kind} release")
    original = getattr(release, "original", None)
    return open_plus(release.root, images=images, labels=labels or "report", original=original)
