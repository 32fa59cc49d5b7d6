"""The ``chexpert`` command: thin argument parsing over the library.

Each command group lives in its own module exposing ``register(subparsers)``; the module adds a
sub-parser whose ``func`` default takes the parsed arguments and returns an exit code.

Exit codes: 0 success; 1 problems found or the run failed (a :class:`ChexpertError`, an
unreadable or unwritable file), with one line on stderr; 2 usage errors only (argparse); 130 when
interrupted by Ctrl-C and 143 by SIGTERM, with one line and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from chexpert.errors import ChexpertError, command_line_spelling

# Module names under chexpert.cli, in the order their commands appear in --help.
_COMMAND_MODULES: tuple[str, ...] = (
    "dataset",  # info, verify, cite
    "synth",  # synth
    "prepare",  # prepare
    "export",  # export
    "evaluate",  # evaluate, compare
    "label",  # label
    "train",  # train, predict, demo
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


# The signal that ended the run, if one did. A signal sent to the whole process group also ends
# the workers, and the parent may see their end (a broken pool) before its own handler runs: the
# run still ended because of the signal, and says so in one line.
_stopped_by: list[int] = []


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser (every command registered)."""
    parser = argparse.ArgumentParser(
        prog="chexpert",
        description="Read, verify, prepare, load and score the CheXpert chest radiograph dataset.",
    )
    parser.add_argument("--version", action="version", version=f"chexpert {_version()}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"chexpert.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"chexpert.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    """The version of the package that runs (not of whatever distribution is installed)."""
    from chexpert.version import __version__

    return __version__


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stopped_by.append(signum)
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chexpert`` command; returns the exit code.

    >>> main(["cite"])
    @inproceedings{irvin2019chexpert,
    ...
    0
    """
    parser = build_parser()
    if argv is not None and any("\x00" in str(a) for a in argv):  # only in-process: exec cannot pass one
        parser.error("an argument holds a NUL character, which no file name or value can")
    args = parser.parse_args(argv)
    with command_line_spelling():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    _stopped_by.clear()
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:  # sorted below; anything unexpected is re-raised
        if isinstance(exc, _Terminated) or _stopped_by:
            print(f"chexpert {args.command}: terminated", file=sys.stderr)
            return 143
        if isinstance(exc, KeyboardInterrupt):
            print(f"chexpert {args.command}: interrupted", file=sys.stderr)
            return 130
        if isinstance(exc, ChexpertError):
            return _fail(args.command, str(exc))
        if isinstance(exc, OSError):
            # Unreadable input, unwritable output, a full disk: the library names the file in the error.
            return _fail(args.command, _os_message(exc))
        raise
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fail(command: str, message: str) -> int:
    # One line, whatever the names in it hold: a path with a newline or an escape sequence is
    # shown escaped (as Python writes it), so that it can neither split the error nor drive the terminal.
    from chexpert.progress import shown

    message = shown(message)
    print(f"chexpert {command}: {message}", file=sys.stderr)
    return EXIT_FAILED


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or exc.__class__.__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return str(exc) or reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
