"""``chexpert info``, ``chexpert verify`` and ``chexpert cite``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chexpert import schema
from chexpert.citation import BIBTEX, RESEARCH_USE_TERMS
from chexpert.cli._common import add_plus_options, open_root, path_name, positive_int
from chexpert.progress import shown


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    info = sub.add_parser("info", help="count images, studies, patients, views and label states (CSVs only)")
    info.add_argument("root", type=path_name, help="release folder, zip, or the folder holding them")
    info.add_argument("--kind", choices=schema.RELEASE_KINDS, help="which release, when ROOT holds both")
    info.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_plus_options(info)
    info.add_argument(
        "--by",
        choices=("sex", "age-band", "race", "ethnicity", "insurance", "projection", "view"),
        help="also count studies and label prevalence (95%% Wilson interval) per group; race, ethnicity and insurance need CheXpert Plus",
    )
    info.set_defaults(func=_info)

    verify = sub.add_parser("verify", help="check the CSVs, their counts and every image; exit 1 on any error (warnings do not count)")
    verify.add_argument("root", type=path_name, help="release folder, zip, or the folder holding them")
    verify.add_argument("--kind", choices=schema.RELEASE_KINDS, help="which release, when ROOT holds both")
    verify.add_argument("--decode", action="store_true", help="also decode every image and check format, size and mode")
    verify.add_argument("--workers", type=positive_int, default=None, help="processes for --decode (default: all cores)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--partial",
        action="store_true",
        help="a copy of part of the images on purpose: images missing from the download are one warning counting them, not errors",
    )
    add_plus_options(verify)
    verify.set_defaults(func=_verify)

    cite = sub.add_parser("cite", help="print the BibTeX to cite and the research use terms")
    cite.set_defaults(func=_cite)


def _info(args: argparse.Namespace) -> int:
    release = open_root(args)
    index = release.index()
    splits = {}
    for code, split in enumerate(schema.SPLITS):
        rows = index.split == code
        if rows.any():
            splits[split] = index.take(rows).counts()
    result: dict[str, Any] = {"release": release.kind, "root": str(release.root), "layout": release.layout, "splits": splits}
    table = None
    if getattr(args, "by", None):
        from chexpert.subgroups import prevalence

        table = prevalence(index, args.by)
        result["by"] = args.by
        result["subgroups"] = {
            group: {"studies": int(part["studies"].iloc[0]), "patients": int(part["patients"].iloc[0]),
                    "prevalence": {obs: {"positives": int(r["positives"]), "prevalence": _number(r["prevalence"]), "ci": [_number(r["lo"]), _number(r["hi"])]}
                                   for obs, r in part.droplevel(0).iterrows()}}
            for group, part in table.groupby(level=0, sort=False)
        }  # fmt: skip
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    _print_info(result)
    if table is not None:
        _print_prevalence(args.by, table)
    return 0


def _number(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> null


def _print_prevalence(by: str, table: Any) -> None:
    from rich.table import Table

    from chexpert.progress import console as make_console

    groups = list(dict.fromkeys(table.index.get_level_values(0)))
    out = Table(title=f"Positive prevalence per study by {by} (95% Wilson interval)", show_edge=False)
    out.add_column("observation")
    for group in groups:
        first = table.loc[group].iloc[0]
        out.add_column(f"{group}\nn={int(first['studies']):,} studies", justify="right")
    for observation in schema.OBSERVATIONS:
        cells = []
        for group in groups:
            r = table.loc[(group, observation)]
            cells.append(f"{r['prevalence']:.1%}\n{r['lo']:.1%}-{r['hi']:.1%}" if r["studies"] else "-")
        out.add_row(observation, *cells)
    make_console().print(out)


def _print_info(result: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from chexpert.progress import console as make_console

    console = make_console()
    splits = result["splits"]
    names = list(splits)
    title = _dataset(result["release"])
    console.print(f"[bold]{title}[/bold] release ({result['layout']}) at {escape(result['root'])}")
    overview = Table(title="Images", show_edge=False)
    overview.add_column("")
    for name in names:
        overview.add_column(name, justify="right")
    rows: list[tuple[str, Any]] = [
        ("images", lambda s: s["images"]),
        ("studies", lambda s: s["studies"]),
        ("patients", lambda s: s["patients"]),
        ("frontal", lambda s: s["frontal"]),
        ("lateral", lambda s: s["lateral"]),
    ]
    if any("view_unknown" in s for s in splits.values()):
        rows.append(("view unknown", lambda s: s.get("view_unknown", 0)))
    rows += [(f"AP/PA {p}", lambda s, p=p: s["projection"][p]) for p in schema.PROJECTIONS]
    rows += [(f"sex {x}", lambda s, x=x: s["sex"][x]) for x in schema.SEXES]
    rows += [("age unknown (0)", lambda s: s["age_unknown"])]
    for label, get in rows:
        overview.add_row(label, *(f"{get(splits[n]):,}" for n in names))
    console.print(overview)
    for name in names:
        labels = Table(title=f"{name}: label states per observation", show_edge=False)
        labels.add_column("observation")
        for state in ("positive", "uncertain", "negative", "blank"):
            labels.add_column(state, justify="right")
        for observation, states in splits[name]["labels"].items():
            labels.add_row(observation, *(f"{v:,}" for v in states.values()))
        console.print(labels)


def _verify(args: argparse.Namespace) -> int:
    from chexpert.verify import verify

    release = open_root(args)
    if args.decode and sys.stderr.isatty() and not args.json:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("decoding", total=None)
            report = verify(release, decode=True, workers=args.workers, partial=args.partial, progress=lambda d, t: bar.update(task, completed=d, total=t))
    else:
        report = verify(release, decode=args.decode, workers=args.workers, partial=args.partial)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
    return 0 if report.ok else 1


def _print_report(report: Any) -> None:
    from collections import Counter

    from rich.markup import escape

    from chexpert.progress import console as make_console

    console = make_console()
    checked = f"{report.images:,} images listed" + (f", {report.decoded:,} decoded" if report.decoded else "")
    warnings = len(report.warnings)
    if report.ok and not warnings:
        console.print(f"[green]OK[/green] {_dataset(report.kind)} at {escape(report.root)}: {checked}, no problems")
        return
    # Rarer kinds first: a missing CSV must not scroll away under a thousand missing images.
    ordered = report.by_rarity()
    kinds = Counter((p.severity, p.kind) for p in ordered)
    summary = ", ".join(f"{n:,} {kind}" + (" (warning)" if severity == "warning" else "") for (severity, kind), n in kinds.items())
    if report.ok:
        console.print(f"[green]OK[/green] {_dataset(report.kind)} at {escape(report.root)}: {checked}, {warnings:,} warning(s): {summary}")
    else:
        errors = len(report.errors)
        console.print(
            f"[red]{errors:,} problem(s)[/red] in {_dataset(report.kind)} at {escape(report.root)} ({checked}"
            + (f", {warnings:,} warning(s)" if warnings else "")
            + f"): {summary}"
        )
    limit = 50
    for problem in ordered[:limit]:
        style = "yellow" if problem.is_error else "dim"
        label = problem.kind if problem.is_error else f"{problem.kind} (warning)"
        console.print(f"  [{style}]{escape(label)}[/{style}] {escape(shown(problem))}")
    if len(ordered) > limit:
        console.print(f"  ... and {len(ordered) - limit:,} more (--json lists all)")


def _dataset(kind: str) -> str:
    """How a release kind is named in the output."""
    return "MIMIC-CXR-JPG" if kind == "mimic" else f"CheXpert {kind}"


def _cite(args: argparse.Namespace) -> int:
    print(BIBTEX)
    print()
    print(RESEARCH_USE_TERMS)
    return 0
