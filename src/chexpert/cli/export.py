"""``chexpert export``: a prepared store as files another tool streams (WebDataset tar shards)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import numpy as np

from chexpert import schema
from chexpert.cli._common import add_plus_options, path_name, positive_int

#: What `--format` accepts.
FORMATS: tuple[str, ...] = ("webdataset",)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from chexpert.policy import PRESETS

    export = sub.add_parser(
        "export",
        help="write a prepared store as WebDataset tar shards (for training across machines)",
        description="Write a prepared store's images, raw labels and (with --policy) targets as tar shards that the "
        "webdataset library streams with its own node and worker splitting. Shards are copies of CheXpert images: "
        "the Research Use Agreement forbids sharing them.",
    )
    export.add_argument("store", type=path_name, help="a store made by `chexpert prepare`")
    export.add_argument("out", type=path_name, help="folder for the shards (new or empty)")
    export.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    export.add_argument("--shard-size", type=positive_int, default=5000, help="samples per shard (default 5000)")
    export.add_argument("--policy", choices=tuple(PRESETS), help="also write targets and mask under this uncertainty policy")
    export.add_argument(
        "--soft-labels",
        metavar="CSV",
        help="soft labels for the policy's U-SelfTrained columns (chexpert-paper-best: Consolidation): a Path column and a "
        "column per observation, e.g. a U-Ignore model's predictions on these images",
    )
    export.add_argument("--image-format", choices=("npy", "png"), default="npy", help="raw uint8 .npy (default) or lossless .png")
    export.add_argument("--seed", type=int, default=0, help="seed of the order samples are written in (default 0)")
    export.add_argument("--no-shuffle", action="store_true", help="write samples in store order")
    export.add_argument(
        "--splits",
        nargs="+",
        choices=schema.SPLITS,
        help="export these splits, each into its own folder OUT/SPLIT/ with its own shards and manifest (default: every row of the store in one set of shards)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    add_plus_options(export, what="check that the store was prepared from")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chexpert.errors import InvalidArgumentError
    from chexpert.frameworks.webdataset import MANIFEST, export_webdataset
    from chexpert.policy import get_policy, read_soft_labels
    from chexpert.progress import console
    from chexpert.store import open_store

    needs = get_policy(args.policy).soft_label_observations if args.policy else ()
    if needs and args.soft_labels is None:
        # Said before any work, in the command line's words.
        raise InvalidArgumentError(
            f"--policy {args.policy} uses U-SelfTrained for {', '.join(needs)}: its uncertain labels come from "
            "--soft-labels CSV (a Path column and a column per observation, e.g. a U-Ignore model's predictions on these images)"
        )
    soft_labels = read_soft_labels(args.soft_labels) if args.soft_labels is not None else None
    store = open_store(args.store)
    _check_source(store, args)
    # (folder, rows, what): one set of shards, or one per split so that no shard mixes splits.
    parts: list[tuple[Path, Any, str]] = [(Path(args.out), None, "")]
    if args.splits:
        present = [schema.SPLITS[c] for c in np.unique(store.index.split).tolist()]
        absent = [s for s in dict.fromkeys(args.splits) if s not in present]
        if absent:
            raise InvalidArgumentError(f"{store.path} has no {' or '.join(absent)} rows (its splits: {', '.join(present) or 'none'})")
        parts = [(Path(args.out) / s, store.index.split == schema.SPLITS.index(s), f" ({s})") for s in dict.fromkeys(args.splits)]
    for out, rows, what in parts:
        with Progress(
            TextColumn(f"[bold]export{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("samples"),
            TimeElapsedColumn(),
            console=console(stderr=True),
            disable=args.quiet,
        ) as bar:
            task = bar.add_task("export", total=len(store) if rows is None else int(rows.sum()))
            shards = export_webdataset(
                store,
                out,
                shard_size=args.shard_size,
                policy=args.policy,
                image_format=args.image_format,
                rows=rows,
                shuffle=not args.no_shuffle,
                seed=args.seed,
                overwrite=args.overwrite,
                soft_labels=soft_labels,
                progress=functools.partial(_advance, bar, task),
            )
        samples = len(store) if rows is None else int(rows.sum())
        console().print(f"{out}: {len(shards)} shards, {samples:,} samples; read them with the pattern in {MANIFEST}", markup=False, highlight=False)
    return 0


def _advance(bar: Any, task: Any, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


def _check_source(store: Any, args: argparse.Namespace) -> None:
    """``--images`` / ``--labels``: the store must have been prepared from those (CheXpert Plus)."""
    from chexpert.errors import InvalidArgumentError

    source = store.manifest.get("source", {})
    for option, recorded in (("images", source.get("images")), ("labels", source.get("labels"))):
        wanted = getattr(args, option)
        if wanted is None:
            continue
        if recorded is None and source.get("release") != "plus":
            raise InvalidArgumentError(f"--{option} {wanted}: {store.path} was prepared from the CheXpert {source.get('release')} release, not CheXpert Plus")
        if recorded is None:
            raise InvalidArgumentError(f"--{option} {wanted}: {store.path} does not record its {option} source; prepare it again with --{option} {wanted}")
        if recorded != wanted:
            raise InvalidArgumentError(
                f"--{option} {wanted}: {store.path} was prepared from {recorded} {option}; prepare another store with --{option} {wanted}"
            )
