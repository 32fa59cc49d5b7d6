"""``chexpert evaluate`` and ``chexpert compare``: score prediction files per study."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chexpert import schema
from chexpert.cli._common import non_negative_int, path_name
from chexpert.errors import InvalidArgumentError
from chexpert.evaluate import AGGREGATES, SUBGROUPS

if TYPE_CHECKING:
    import pandas as pd

    from chexpert.evaluate import Comparison, Evaluation

_CRITERIA = "youden, radiologists, sensitivity=X or specificity=X"
_CRITERION_LABELS = {"sensitivity": "sens.", "specificity": "spec.", "radiologists": "rads' spec."}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scoring = sub.add_parser(
        "evaluate",
        help="score predictions per study: AUROC/AUPRC with intervals, radiologists under the curve, plots",
        description="Score a predictions CSV (per image with a Path column, or per study with a Study column) "
        "against valid.csv, a study-level groundtruth.csv, or a release folder or zip (its test set's groundtruth.csv "
        "or its valid.csv, chosen by the split the predictions are in, with the test set's radiologists found "
        "automatically), joined by study.",
    )
    scoring.add_argument(
        "--predictions",
        type=path_name,
        required=True,
        metavar="CSV",
        help="model scores, one column per observation: probabilities in [0, 1] "
        "(other finite scores are ranked as given, with a warning; --operating-point needs [0, 1])",
    )
    _common(scoring)
    scoring.add_argument(
        "--radiologists",
        action="append",
        default=None,
        metavar="CSV|GROUP",
        help="a radiologist's study-level 0/1 reads (repeat for each); with a release as --truth, a group of its "
        "radiologists instead: benchmark (default for the test set), consensus, all or none",
    )
    scoring.add_argument("--by", choices=SUBGROUPS, help="also score each subgroup of studies")
    scoring.add_argument(
        "--metadata",
        type=path_name,
        metavar="CSV",
        help="valid.csv or test.csv giving sex/age/projection for --by when the truth is study-level; "
        "the CheXpert Plus folder (or its CSV) for race, ethnicity and insurance",
    )
    scoring.add_argument(
        "--operating-point",
        action="append",
        default=[],
        type=_criterion,
        metavar="CRITERION",
        help=f"also report a threshold per observation: {_CRITERIA} (repeatable)",
    )
    scoring.add_argument(
        "--thresholds-from",
        type=path_name,
        metavar="EVAL.json",
        help="apply the thresholds of a previous evaluate --operating-point ... --json (fitted on another split, say valid) to these predictions",
    )
    scoring.add_argument("--plots", type=path_name, metavar="DIR", help="write ROC, precision-recall and reliability (calibration) plots (PNG and SVG) to DIR")
    scoring.add_argument("--json", action="store_true", help="print JSON instead of tables")
    scoring.set_defaults(func=_evaluate)

    comparing = sub.add_parser(
        "compare",
        help="compare two prediction files on the same studies (paired bootstrap, DeLong)",
        description="Per-observation AUROC difference A - B with a paired bootstrap interval and DeLong's test.",
    )
    comparing.add_argument("a", metavar="A.csv", help="first predictions file")
    comparing.add_argument("b", metavar="B.csv", help="second predictions file")
    _common(comparing)
    comparing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    comparing.set_defaults(func=_compare)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--truth",
        type=path_name,
        required=True,
        metavar="CSV|ROOT",
        help="valid.csv (per image), a study-level file such as groundtruth.csv, or a release folder or zip",
    )
    parser.add_argument("--split", choices=("valid", "test"), help="with a release as --truth: the split to score (default: the predictions')")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="max", help="how image scores become a study score (default: max)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=2000, metavar="N", help="bootstrap resamples of studies; 0 for none (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: 0)")


def _radiologists(values: list[str] | None) -> list[str] | str | None:
    """``--radiologists`` as ``evaluate`` takes it: files, one group name, or None (not given)."""
    from chexpert.testset import RADIOLOGIST_GROUPS

    if values and any(v in RADIOLOGIST_GROUPS for v in values):
        if len(values) > 1:
            raise InvalidArgumentError(f"--radiologists takes files or one of {', '.join(RADIOLOGIST_GROUPS)}, not both: {' '.join(values)}")
        return values[0]
    return values


def _criterion(spec: str) -> tuple[str, float | None]:
    """One ``--operating-point`` value, checked while parsing so that mistakes are usage errors."""
    name, _, value = spec.partition("=")
    if name in ("youden", "radiologists") and not value:
        return name, None
    if name in ("sensitivity", "specificity") and value:
        try:
            target = float(value)
        except ValueError:
            target = math.nan
        if 0.0 <= target <= 1.0:
            return name, target
        raise argparse.ArgumentTypeError(f"{spec!r}: the target must be a number in [0, 1]")
    raise argparse.ArgumentTypeError(f"{spec!r} is not one of {_CRITERIA}")


def _criteria(specs: list[tuple[str, float | None]]) -> dict[str, Any]:
    """Parsed ``--operating-point`` values as keyword arguments of :func:`operating_points`."""
    chosen: dict[str, Any] = {"sensitivity": [], "specificity": [], "youden": False, "radiologists": False}
    for name, target in specs:
        if target is None:
            chosen[name] = True
        else:
            chosen[name].append(target)
    return chosen


def _quietly(run: Callable[[], Any]) -> Any:
    """Run ``run``, printing its scoring warnings as one line each on stderr (stdout may be JSON)."""
    from chexpert.evaluate import ScoreRangeWarning, UndefinedMetricWarning
    from chexpert.mimic import UnlabeledStudiesWarning

    ours = (UndefinedMetricWarning, ScoreRangeWarning, UnlabeledStudiesWarning)
    with warnings.catch_warnings(record=True) as caught:
        for category in ours:
            warnings.simplefilter("always", category)
        result = run()
    for warning in caught:
        if issubclass(warning.category, ours):
            print(f"warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return result


def _evaluate(args: argparse.Namespace) -> int:
    from chexpert.evaluate import evaluate, operating_points

    criteria = _criteria(args.operating_point)
    result: Evaluation = _quietly(
        lambda: evaluate(
            args.predictions,
            args.truth,
            radiologists=_radiologists(args.radiologists),
            split=args.split,
            aggregate=args.aggregate,
            bootstrap=args.bootstrap,
            seed=args.seed,
            by=args.by,
            metadata=args.metadata,
        )
    )
    points = _quietly(lambda: operating_points(result, **criteria)) if args.operating_point else None
    applied = None
    if args.thresholds_from:
        from chexpert.evaluate import apply_thresholds

        applied = _quietly(lambda: apply_thresholds(result, args.thresholds_from))
    if args.plots:
        from chexpert.plots import save_plots

        try:
            written = save_plots(result, args.plots)
        except ModuleNotFoundError as exc:
            print(f"chexpert evaluate: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(written)} plot files to {args.plots}", file=sys.stderr)
    if args.json:
        output = result.to_json()
        if points is not None:
            output["operating_points"] = json.loads(points.to_json(orient="records"))
        if applied is not None:
            output["applied_thresholds"] = {"from": args.thresholds_from, "points": json.loads(applied.to_json(orient="records"))}
        print(json.dumps(output, indent=2))
        return 0
    _print_evaluation(result, args.predictions)
    if points is not None:
        _print_operating_points(points)
    if applied is not None:
        _print_operating_points(applied, f"Thresholds from {args.thresholds_from} applied to these studies (fitted rates in brackets)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from chexpert.evaluate import compare

    result: Comparison = _quietly(
        lambda: compare(args.a, args.b, args.truth, split=args.split, aggregate=args.aggregate, bootstrap=args.bootstrap, seed=args.seed)
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    _print_comparison(result)
    return 0


def _console() -> Any:
    """The shared console (no wrapping when not on a terminal)."""
    from chexpert.progress import console

    return console()


#: What a cell shows for a number that is undefined (a task or subgroup without positives, say).
_UNDEFINED = "–"


def _missing(value: Any) -> bool:
    """Whether ``value`` is NaN, None or pd.NA: undefined numbers, shown as :data:`_UNDEFINED`."""
    try:
        return math.isnan(float(value))
    except TypeError:  # None, pd.NA
        return True


def _f(value: Any, digits: int = 3) -> str:
    return _UNDEFINED if _missing(value) else f"{float(value):.{digits}f}"


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    return _UNDEFINED if _missing(lo) or _missing(hi) else f"{float(lo):.{digits}f}-{float(hi):.{digits}f}"


def _name(observation: str) -> str:
    return f"[bold]{observation}[/bold]" if observation in schema.COMPETITION_TASKS else observation


def _print_evaluation(result: Evaluation, predictions: str) -> None:
    from rich.table import Table

    console = _console()
    level = f"{result.level:.0%}"
    source = f"{result.bootstrap} bootstrap resamples" if result.bootstrap else "DeLong's variance (--bootstrap 0)"
    table = Table(
        title=f"{predictions}: {result.n_studies} studies, {level} intervals from {source}",
        caption=f"Competition tasks in bold. No interval with fewer than {_min_positives()} positive (or negative) studies. "
        "ECE: 10 equal-width bins, weighted by count.",
        show_edge=False,
    )
    table.add_column("Observation")
    table.add_column("Pos.", justify="right")
    table.add_column("AUROC", justify="right")
    table.add_column(f"{level} CI", justify="right")
    table.add_column("AUPRC", justify="right")
    table.add_column("Brier", justify="right")
    table.add_column("ECE", justify="right")
    readers = bool(result.table["radiologists"].any())
    if readers:
        table.add_column("Rads under", justify="right")
    for observation, row in result.table.iterrows():
        cells = [
            _name(str(observation)), str(int(row["positives"])), _f(row["auroc"]), _ci(*result.auroc_interval(str(observation))),
            _f(row["auprc"]), _f(row["brier"]), _f(row["ece"]),
        ]  # fmt: skip
        if readers:
            under = row["radiologists_under_curve"]
            cells.append(_UNDEFINED if _missing(under) else f"{int(under)}/{int(row['radiologists'])}")
        table.add_row(*cells)
    if not _missing(result.mean_auroc):
        footer = [result.mean_auroc_label, "", _f(result.mean_auroc), _ci(*result.mean_auroc_ci), "", "", ""]
        if readers:
            footer.append(_f(result.mean_radiologists_under_curve, 1))
        table.add_section()
        table.add_row(*footer, style="bold")
    console.print(table)
    if readers:
        _print_radiologists(console, result)
    if result.subgroups:
        _print_subgroups(console, result)


def _print_radiologists(console: Any, result: Evaluation) -> None:
    from rich.table import Table

    table = Table(title="Radiologists: sensitivity / specificity (model's sensitivity at their false-positive rate)", show_edge=False)
    table.add_column("Observation")
    names = list(dict.fromkeys(result.radiologists["radiologist"]))
    for name in names:
        table.add_column(name, justify="right")
    by_task = result.radiologists.set_index(["observation", "radiologist"])
    for observation in result.table.index:
        cells = [_name(str(observation))]
        for name in names:
            if (observation, name) not in by_task.index:
                cells.append(_UNDEFINED)
                continue
            point = by_task.loc[(observation, name)]
            if _missing(point["curve_sensitivity"]):
                curve = _UNDEFINED  # no curve without positives and negatives: neither under nor above
            else:
                curve = f"{_f(point['curve_sensitivity'], 2)}, {'under' if point['under_curve'] else 'above'}"
            cells.append(f"{_f(point['sensitivity'], 2)} / {_f(point['specificity'], 2)} ({curve})")
        table.add_row(*cells)
    console.print(table)


def _print_subgroups(console: Any, result: Evaluation) -> None:
    from rich.table import Table

    table = Table(title=f"AUROC by {result.by} ({result.level:.0%} {result.interval} interval)", show_edge=False)
    table.add_column("Observation")
    groups = {"all": result, **result.subgroups}
    for name, sub in groups.items():
        table.add_column(f"{name}\nn={sub.n_studies}", justify="right")
    for observation in result.table.index:
        cells = [sub.table.loc[observation] for sub in groups.values()]
        table.add_row(
            _name(str(observation)),
            *(f"{_f(c['auroc'])}\n{_ci(*sub.auroc_interval(str(observation)), 2)}" for c, sub in zip(cells, groups.values())),
        )
    if not math.isnan(result.mean_auroc):
        table.add_section()
        table.add_row(result.mean_auroc_label, *(f"{_f(sub.mean_auroc)}\n{_ci(*sub.mean_auroc_ci, 2)}" for sub in groups.values()), style="bold")
    console.print(table)


def _min_positives() -> int:
    from chexpert.evaluate import metrics

    return metrics.MIN_POSITIVES


def _print_operating_points(points: pd.DataFrame, title: str = "Operating points (positive when score >= threshold)") -> None:
    from rich.table import Table

    fitted = "fitted_sensitivity" in points.columns
    table = Table(title=title, show_edge=False)
    for column in ("Observation", "Criterion", "Threshold", "Sens.", "Spec.", "TP", "FP", "TN", "FN"):
        table.add_column(column, justify="left" if column in ("Observation", "Criterion") else "right")
    for row in points.itertuples(index=False):
        label = _CRITERION_LABELS.get(row.criterion, row.criterion)
        criterion = row.criterion if _missing(row.target) else f"{label} >= {row.target:.3f}"
        sensitivity, specificity = _f(row.sensitivity), _f(row.specificity)
        if fitted:
            sensitivity += f" ({_f(row.fitted_sensitivity)})"
            specificity += f" ({_f(row.fitted_specificity)})"
        table.add_row(
            _name(row.observation), criterion, _f(row.threshold, 4), sensitivity, specificity,
            *(str(int(getattr(row, c))) for c in ("tp", "fp", "tn", "fn")),
        )  # fmt: skip
    _console().print(table)


def _print_comparison(result: Comparison) -> None:
    from rich.table import Table

    a, b = result.names
    table = Table(title=f"A = {a}\nB = {b}\n{result.n_studies} studies; AUROC difference A - B", show_edge=False)
    for column in ("Observation", "AUROC A", "AUROC B", "A - B", "95% CI bootstrap", "95% CI DeLong", "p DeLong"):
        table.add_column(column, justify="left" if column == "Observation" else "right")
    for observation, row in result.table.iterrows():
        table.add_row(
            _name(str(observation)), _f(row["auroc_a"]), _f(row["auroc_b"]), _signed(row["difference"]),
            _signed_ci(row["difference_lo"], row["difference_hi"]), _signed_ci(row["delong_lo"], row["delong_hi"]), _p(row["p_value"]),
        )  # fmt: skip
    if not math.isnan(result.mean_difference):
        table.add_section()
        table.add_row(
            "Mean of 5 competition tasks", _f(result.mean_auroc_a), _f(result.mean_auroc_b), _signed(result.mean_difference),
            _signed_ci(*result.mean_difference_ci), "", "", style="bold",
        )  # fmt: skip
    _console().print(table)


def _signed(value: Any) -> str:
    return _UNDEFINED if _missing(value) else f"{float(value):+.3f}"


def _signed_ci(lo: Any, hi: Any) -> str:
    return _UNDEFINED if _missing(lo) or _missing(hi) else f"{float(lo):+.2f} to {float(hi):+.2f}"


def _p(value: Any) -> str:
    if _missing(value):
        return _UNDEFINED
    return "<0.001" if value < 0.001 else f"{value:.3f}"
