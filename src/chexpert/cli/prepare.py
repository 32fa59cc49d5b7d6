"""``chexpert prepare`` (make a store) and ``chexpert verify-store`` (check one, every pixel)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from chexpert import schema
from chexpert.cli._common import add_plus_options, open_root, path_name, positive_int
from chexpert.progress import shown

_VIEWS = ("all", "frontal", "lateral")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from chexpert.imaging import RESIZE_MODES
    from chexpert.store import ON_ERROR

    prepare = sub.add_parser(
        "prepare",
        help="decode every selected image once into a memory-mappable uint8 store (resumable)",
        description="Decode every selected image once, resize it and write a store that numpy can memory-map. "
        "A run that is interrupted (Ctrl-C, a kill, a full disk) resumes where it stopped when started again with "
        "the same arguments. Only files prepare wrote are ever replaced.",
    )
    prepare.add_argument("root", type=path_name, help="release folder, zip, or the folder holding them")
    prepare.add_argument("--out", type=path_name, required=True, help="store folder to write (new, empty, or an earlier run's)")
    prepare.add_argument("--size", type=positive_int, default=320, help="side of the square images in pixels (default 320)")
    prepare.add_argument("--resize", choices=RESIZE_MODES, default="pad", help="keep the aspect ratio and pad, cut the centre, or squash (default pad)")
    prepare.add_argument("--splits", nargs="+", choices=schema.SPLITS, help="splits to prepare (default: every split with a CSV)")
    prepare.add_argument("--views", choices=_VIEWS, default="all", help="frontal or lateral images only (default all)")
    prepare.add_argument("--kind", choices=schema.RELEASE_KINDS, help="which release, when ROOT holds both")
    add_plus_options(prepare)
    prepare.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    prepare.add_argument(
        "--on-error", choices=ON_ERROR, default="raise", help="an unreadable image stops the run (raise), is left out (skip) or kept black (blank)"
    )
    prepare.add_argument("--overwrite", action="store_true", help="rebuild the store at --out (of other data or parameters, or damaged) from scratch")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    prepare.set_defaults(func=_prepare)

    verify = sub.add_parser(
        "verify-store",
        help="check a prepared store: files, index and every pixel against its checksums",
        description="Read every pixel of a prepared store and compare each block of rows with the checksum the "
        "manifest holds; check the index and the files' lengths. Exit 1 naming the file and rows of each problem.",
    )
    verify.add_argument("store", type=path_name, help="the store folder (the --out of prepare)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    verify.set_defaults(func=_verify_store)


@contextmanager
def _progress_bar(label: str, unit: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress callback drawing a bar on stderr, when stderr is a terminal (a bar in a log is noise)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from chexpert.progress import console

    disabled = quiet or not sys.stderr.isatty()
    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console(stderr=True), disable=disabled, transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _prepare(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from chexpert.progress import console
    from chexpert.store import prepare

    release = open_root(args)
    index = release.index(args.splits)
    if args.views != "all":
        from chexpert.selection import select

        index = select(index, views=args.views.capitalize())  # MIMIC-CXR's unknown views are neither
    workers = args.workers or os.cpu_count() or 1
    started = time.perf_counter()
    with _progress_bar("prepare", "images", args.quiet) as progress:
        store = prepare(
            index, args.out, size=args.size, resize=args.resize, workers=workers,
            on_error=args.on_error, overwrite=args.overwrite, progress=progress,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    out = console()
    out.print(f"{store.path}: {len(store):,} images of {store.size}x{store.size} ({store.resize}) in {seconds:.1f} s", markup=False)
    for what, rows in (("skipped", store.skipped), ("blanked", store.blanked)):
        if rows:
            out.print(f"[yellow]{len(rows)} unreadable images {what}[/yellow] (listed in {escape(str(store.path / 'manifest.json'))}), "
                      f"first: {escape(rows[0]['error'])}")  # fmt: skip
    return 0


def _verify_store(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from chexpert.progress import console
    from chexpert.safeio import read_bytes
    from chexpert.schema import MAX_JSON_BYTES
    from chexpert.store import MANIFEST, verify_store

    path = Path(args.store).expanduser().absolute()
    with _progress_bar("verify-store", "rows", args.quiet) as progress:
        problems = verify_store(path, progress=progress)
    out = console()
    summary: dict[str, Any] = {"store": str(path), "ok": not problems, "problems": [dataclasses.asdict(p) for p in problems]}
    if not problems:
        manifest = json.loads(read_bytes(path / MANIFEST, limit=MAX_JSON_BYTES))
        summary["images"] = int(manifest["shape"][0])
        summary["checksum_blocks"] = len(manifest["checksums"]["blocks"])
    if args.json:
        print(json.dumps(summary, indent=1))
    elif problems:
        for problem in problems:
            out.print(shown(problem), markup=False, highlight=False)
        if all(p.kind != "manifest" for p in problems):
            out.print(f"{shown(path)}: {len(problems)} problem{'s' if len(problems) != 1 else ''}; prepare it again with --overwrite "
                      "and the same arguments to rebuild it", markup=False, highlight=False)  # fmt: skip
    else:
        out.print(f"{shown(path)}: OK, {summary['images']:,} images, {summary['checksum_blocks']:,} checksum blocks and the index match "
                  "the manifest", markup=False, highlight=False)  # fmt: skip
    return 1 if problems else 0
