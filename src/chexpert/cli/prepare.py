"""``chexpert prepare``."""

from __future__ import annotations

import argparse
import os
import time

from chexpert import schema
from chexpert.cli._common import positive_int

_VIEWS = ("all", "frontal", "lateral")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from chexpert.imaging import RESIZE_MODES
    from chexpert.store import ON_ERROR

    prepare = sub.add_parser(
        "prepare",
        help="decode every selected image once into a memory-mappable uint8 store (resumable)",
        description="Decode every selected image once, resize it and write a store that numpy can memory-map. "
        "A run that is interrupted resumes where it stopped when started again with the same arguments.",
    )
    prepare.add_argument("root", help="release folder, zip, or the folder holding them")
    prepare.add_argument("--out", required=True, help="store folder to write (new, empty, or an earlier run's)")
    prepare.add_argument("--size", type=positive_int, default=320, help="side of the square images in pixels (default 320)")
    prepare.add_argument("--resize", choices=RESIZE_MODES, default="pad",
                         help="keep the aspect ratio and pad, cut the centre, or squash (default pad)")
    prepare.add_argument("--splits", nargs="+", choices=schema.SPLITS, help="splits to prepare (default: every split with a CSV)")
    prepare.add_argument("--views", choices=_VIEWS, default="all", help="frontal or lateral images only (default all)")
    prepare.add_argument("--kind", choices=schema.RELEASE_KINDS, help="which release, when ROOT holds both")
    prepare.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    prepare.add_argument("--on-error", choices=ON_ERROR, default="raise",
                         help="an unreadable image stops the run (raise), is left out (skip) or kept black (blank)")
    prepare.add_argument("--overwrite", action="store_true", help="replace a store of other data or parameters at --out")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from chexpert.cli._common import console
    from chexpert.release import open_release
    from chexpert.store import prepare

    release = open_release(args.root, kind=args.kind)
    index = release.index(args.splits)
    if args.views != "all":
        index = index.take(index.frontal if args.views == "frontal" else ~index.frontal)
    workers = args.workers or os.cpu_count() or 1
    progress_console = console(stderr=True)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=progress_console, disable=args.quiet, transient=False,
    ) as bar:
        task = bar.add_task("prepare", total=len(index))
        store = prepare(
            release, args.out, size=args.size, resize=args.resize, index=index, workers=workers,
            on_error=args.on_error, overwrite=args.overwrite,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    seconds = time.perf_counter() - started
    out = console()
    out.print(f"{store.path}: {len(store):,} images of {store.size}x{store.size} ({store.resize}) in {seconds:.1f} s")
    for what, rows in (("skipped", store.skipped), ("blanked", store.blanked)):
        if rows:
            out.print(f"[yellow]{len(rows)} unreadable images {what}[/yellow] (listed in {store.path / 'manifest.json'}), first: {rows[0]['error']}")
    return 0
