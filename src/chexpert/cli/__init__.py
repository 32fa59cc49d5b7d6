"""The ``chexpert`` command: thin argument parsing over the library.

Each command group lives in its own module exposing ``register(subparsers)``; the module adds a
sub-parser whose ``func`` default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from chexpert.errors import ChexpertError

# Module names under chexpert.cli, in the order their commands appear in --help.
_COMMAND_MODULES: tuple[str, ...] = (
    "dataset",  # info, verify, cite
    "synth",  # synth
    "prepare",  # prepare
    "export",  # export
    "evaluate",  # evaluate, compare
)


def build_parser() -> argparse.ArgumentParser:
    """Return the full argument parser (every command registered)."""
    parser = argparse.ArgumentParser(
        prog="chexpert",
        description="Read, verify, prepare, load and score the CheXpert chest radiograph dataset.",
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chexpert`` command.

    >>> main(["cite"])  # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ChexpertError as exc:
        print(f"chexpert {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
