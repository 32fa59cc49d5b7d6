"""``chexpert label``: free-text reports to the 14 CheXpert observations."""

from __future__ import annotations

import argparse

from chexpert.cli._common import path_name, positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from chexpert.labeler.sections import SECTIONS

    label = sub.add_parser(
        "label",
        help="label free-text reports with the 14 observations (1.0 / 0.0 / -1.0 / blank), like CheXpert's labeler",
        description="Label every report of INPUT with the 14 CheXpert observations and write OUT: the input's rows in "
        "order, their identifying columns, and one column per observation named as in train.csv with 1.0 (positive), "
        "0.0 (negative), -1.0 (uncertain) or empty (not mentioned). INPUT is a CSV (the reports in --column, or a "
        "headerless one-column CSV as the original labeler takes), a folder of .txt reports or a zip of them "
        "(MIMIC-CXR's reports folder or mimic-cxr-reports.zip, which add subject_id and study_id). Streams: any size "
        "labels in bounded memory.",
    )
    label.add_argument("input", type=path_name, metavar="INPUT", help="CSV of reports, a folder of .txt reports, or a zip of them")
    label.add_argument("--out", type=path_name, required=True, help="CSV to write (not replaced unless --overwrite)")
    label.add_argument("--column", metavar="NAME", help="the column holding the report text (default: a headerless one-column CSV)")
    label.add_argument("--keep", metavar="COLUMN", nargs="*", help="input columns to copy to OUT (default: every column but the reports)")
    label.add_argument(
        "--sections",
        choices=SECTIONS,
        default="impression",
        help="what to read: the impression (else findings, else the report; the original's choice; default), "
        "the findings (else impression), or the whole report but indication, history, comparison and technique",
    )
    label.add_argument("--workers", type=positive_int, default=1, help="labelling processes (default 1)")
    label.add_argument("--encoding", default="utf-8-sig", help="text encoding of INPUT (default utf-8, with or without a BOM)")
    label.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    label.add_argument("--quiet", action="store_true", help="no progress bar")
    label.add_argument(
        "--compare",
        metavar="LABELS",
        help="also print per-observation agreement with a MIMIC-CXR label file (mimic-cxr-2.0.0-chexpert.csv.gz or -negbio), joined by study_id",
    )
    label.set_defaults(func=_label)


def _label(args: argparse.Namespace) -> int:
    import codecs
    import os

    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from chexpert.errors import InvalidArgumentError
    from chexpert.labeler.files import label_file
    from chexpert.progress import console

    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise InvalidArgumentError(f"unknown encoding {args.encoding!r} (for example utf-8, latin-1, cp1252)") from None
    folder = os.path.isdir(args.input)
    amount = MofNCompleteColumn() if folder else DownloadColumn()
    with Progress(
        TextColumn("[bold]label"),
        BarColumn(),
        amount,
        TextColumn("{task.fields[reports]:,} reports"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        disable=args.quiet,
        transient=False,
    ) as bar:
        task = bar.add_task("label", total=None, reports=0)
        summary = label_file(
            args.input,
            args.out,
            column=args.column,
            keep=args.keep,
            sections=args.sections,
            workers=args.workers,
            encoding=args.encoding,
            overwrite=args.overwrite,
            progress=lambda reports, done, total: bar.update(task, completed=done, total=total, reports=reports),
        )
    out = console()
    rate = summary.reports / summary.seconds if summary.seconds > 0 else 0.0
    parts = ", ".join(f"{name} {count:,}" for name, count in summary.parts.items() if count)
    out.print(f"{summary.out}: {summary.reports:,} reports labelled ({parts}) in {summary.seconds:.1f} s, {rate:,.0f} reports/s")
    if summary.cut:
        from chexpert.schema import LONGEST_REPORT

        out.print(
            f"{summary.cut:,} report{'s were' if summary.cut > 1 else ' was'} longer than {LONGEST_REPORT:,} characters "
            "and read only that far (chexpert.label_report(text).explain() shows where)"
        )
    table = Table(show_edge=False)
    for heading in ("", "positive", "negative", "uncertain", "blank"):
        table.add_column(heading, justify="left" if not heading else "right")
    for observation, states in summary.counts.items():
        table.add_row(observation, *(f"{states[s]:,}" for s in ("positive", "negative", "uncertain", "blank")))
    out.print(table)
    if args.compare:
        from chexpert.labeler.mimic import agreement

        found = agreement(summary.out, args.compare)
        compared = Table(title=f"Agreement with {args.compare} ({int(found['studies'].iloc[0]):,} studies in both)", show_edge=False)
        for heading in ("", "agreement", "positive agreement", "kappa"):
            compared.add_column(heading, justify="left" if not heading else "right")
        for observation, row in found.iterrows():
            compared.add_row(str(observation), *(f"{row[c]:.3f}" if row[c] == row[c] else "-" for c in ("agreement", "positive_agreement", "kappa")))
        out.print(compared)
    return 0
