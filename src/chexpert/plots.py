"""ROC and precision-recall figures of an :class:`~chexpert.evaluate.Evaluation`, with radiologists and bootstrap bands.

Matplotlib is optional (``pip install chexpert[plots]``) and is used through its object API with
the Agg canvas, so plotting never touches pyplot's global state or needs a display.

The shaded band is the pointwise percentile interval (the evaluation's level) of the bootstrap
resamples' curves: sensitivity at each false-positive rate for ROC (the top of a vertical step,
linear in between, as the radiologist comparison reads the curve), precision at each recall
for precision-recall (the step the average precision sums over).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.evaluate import metrics
from chexpert.fileio import atomic_writer

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from chexpert.evaluate import Evaluation

__all__ = ["roc_figure", "summary_figure", "reliability_figure", "save_plots"]

_GRID = np.linspace(0.0, 1.0, 201)
_MODEL = "#1f5fa8"
_BAND = "#8fb4e3"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_READER_COLORS = ("#d95f02", "#7570b3", "#1b9e77", "#e7298a", "#66a61e", "#a6761d", "#666666", "#e6ab02")
_FORMATS = ("png", "svg")


# Applied only while our figures are made and saved, never to the caller's matplotlib settings.
_STYLE: dict[Any, Any] = {"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9.5, "svg.fonttype": "none"}


@contextlib.contextmanager
def _style() -> Iterator[type[Figure]]:
    """matplotlib's Figure class, under our style; a clear error when matplotlib is missing."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        raise ModuleNotFoundError("plots need matplotlib: pip install 'chexpert[plots]'") from None
    with matplotlib.rc_context(_STYLE):
        yield Figure


def _columnwise_searchsorted(x: np.ndarray, at: np.ndarray, side: str) -> np.ndarray:
    """``np.searchsorted(x[:, b], at, side)`` for every column b of ``x`` (each sorted), as ``(columns, len(at))``.

    One lexicographic sort of all (column, value) pairs, vertices and queries together; on equal
    values the order of the two kinds decides the side, so the result is exact.
    """
    rows, columns = x.shape
    is_query = np.r_[np.zeros(rows * columns, dtype=bool), np.ones(len(at) * columns, dtype=bool)]
    values = np.r_[x.T.ravel(), np.tile(at, columns)]
    column = np.r_[np.repeat(np.arange(columns), rows), np.repeat(np.arange(columns), len(at))]
    # side="right" counts vertices equal to the query, so they sort first on ties.
    kind = is_query if side == "right" else ~is_query
    order = np.lexsort((kind, values, column))
    vertices_so_far = np.cumsum(~is_query[order])
    found = np.empty(len(order), dtype=np.int64)
    found[order] = vertices_so_far - column[order] * rows
    return found[rows * columns :].reshape(columns, len(at))


@functools.lru_cache(maxsize=8)
def _bands(evaluation: Evaluation, j: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise bootstrap intervals ``(roc (2, grid), pr (2, grid))``, or None without resamples."""
    data = evaluation.data
    if evaluation.bootstrap == 0:
        return None
    curves = [
        _resampled_curves(data.scores[:, j], data.labels[:, j], counts)
        for _, counts in metrics.bootstrap_blocks(len(data.studies), evaluation.bootstrap, evaluation.seed)
    ]
    sensitivity = np.concatenate([c[0] for c in curves])
    if not len(sensitivity):
        return None
    precision = np.concatenate([c[1] for c in curves])
    return metrics.percentile_interval(sensitivity, evaluation.level), metrics.percentile_interval(precision, evaluation.level)


def _resampled_curves(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and precision on the grid, ``(resamples holding both classes, grid)`` each, for a block of resamples."""
    fp, tp = metrics.bootstrap_roc_vertices(scores, labels, counts)
    defined = (fp[-1] > 0) & (tp[-1] > 0)
    if not defined.any():
        return np.zeros((0, len(_GRID))), np.zeros((0, len(_GRID)))
    fpr, tpr = fp[:, defined] / fp[-1, defined], tp[:, defined] / tp[-1, defined]
    columns = np.arange(fpr.shape[1])[:, None]
    # Sensitivity at each false-positive rate: top of a vertical step, linear across a sloped one.
    k = np.clip(_columnwise_searchsorted(fpr, _GRID, "right") - 1, 0, len(fpr) - 1)
    following = np.minimum(k + 1, len(fpr) - 1)
    x0, x1 = fpr[k, columns], fpr[following, columns]
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(x1 > x0, (_GRID - x0) / (x1 - x0), 0.0)
    sensitivity = tpr[k, columns] + (tpr[following, columns] - tpr[k, columns]) * fraction
    # Precision at each recall: that of the highest threshold reaching it. Thresholds above every
    # study drawn select nothing; a recall of -1 keeps them out of reach (and the column sorted).
    selected = fp[1:, defined] + tp[1:, defined]
    recall = np.where(selected > 0, tpr[1:], -1.0)
    k = np.minimum(_columnwise_searchsorted(recall, _GRID, "left"), len(recall) - 1)
    precision = tp[1:, defined][k, columns] / selected[k, columns]
    return sensitivity, precision


def _readers(evaluation: Evaluation, observation: str) -> list[tuple[str, float, float, float, bool]]:
    """(name, false-positive rate, sensitivity, precision, under the curve) of each radiologist who read ``observation``."""
    rows = evaluation.radiologists[evaluation.radiologists["observation"] == observation]
    return [
        (r.radiologist, 1.0 - r.specificity, r.sensitivity, r.ppv, bool(r.under_curve))
        for r in rows.itertuples(index=False)
        if not math.isnan(r.specificity) and not math.isnan(r.sensitivity)
    ]


def _reader_style(evaluation: Evaluation, name: str) -> tuple[str, str]:
    from chexpert.evaluate.scoring import MAJORITY

    if name == MAJORITY:
        return "*", "#000000"  # the radiologists' majority vote stands out from the readers
    names = list(dict.fromkeys(evaluation.radiologists["radiologist"]))
    i = names.index(name)
    return _MARKERS[i % len(_MARKERS)], _READER_COLORS[i % len(_READER_COLORS)]


def _square(ax: Axes) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _ci_text(lo: float, hi: float, level: float) -> str:
    return "" if math.isnan(lo) or math.isnan(hi) else f" ({level:.0%} CI {lo:.3f}-{hi:.3f})"


def _metric_text(name: str, row: Any, key: str, level: float, interval: tuple[float, float] | None = None) -> str:
    """``AUROC 0.912 (95% CI ...)``, or why the metric is undefined (a task or subgroup with one class).

    ``interval`` overrides the row's ``<key>_lo``/``<key>_hi`` (DeLong's when the bootstrap is off).
    """
    value = float(row[key])
    if math.isnan(value):
        return f"{name} undefined ({int(row['positives'])} positive, {int(row['negatives'])} negative)"
    lo, hi = interval if interval is not None else (float(row[key + "_lo"]), float(row[key + "_hi"]))
    return f"{name} {value:.3f}{_ci_text(lo, hi, level)}"


def _legend(ax: Axes, **options: Any) -> None:
    """A legend, if anything drawn has a label (a task without positives may have none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def _draw_roc(ax: Axes, evaluation: Evaluation, observation: str, band: np.ndarray | None, *, compact: bool = False) -> None:
    j = evaluation.data.observations.index(observation)
    row = evaluation.table.loc[observation]
    fp, tp, _ = metrics.roc_curve(evaluation.data.scores[:, j], evaluation.data.labels[:, j])
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", linewidth=1)
    if band is not None:
        ax.fill_between(_GRID, band[0], band[1], color=_BAND, alpha=0.45, linewidth=0, label=f"bootstrap {evaluation.level:.0%} band")
    if fp[-1] and tp[-1]:
        ax.plot(fp / fp[-1], tp / tp[-1], color=_MODEL, linewidth=2, label="model")
    for name, fpr, sensitivity, _, under in _readers(evaluation, observation):
        marker, color = _reader_style(evaluation, name)
        ax.plot(
            [fpr], [sensitivity], marker=marker, markersize=9, linestyle="none", color=color,
            markeredgecolor="black", markeredgewidth=0.8, label=f"{name} ({'under' if under else 'above'} curve)",
        )  # fmt: skip
    _square(ax)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    auroc = _metric_text("AUROC", row, "auroc", evaluation.level, evaluation.auroc_interval(observation))
    if compact:
        ax.set_title(f"{observation}\n{auroc}", fontsize=12)
        _legend(ax, loc="lower right", fontsize=8.5, framealpha=0.9)
    else:
        ax.set_title(f"ROC: {auroc}")
        _legend(ax, loc="lower right", framealpha=0.9)


def _draw_pr(ax: Axes, evaluation: Evaluation, observation: str, band: np.ndarray | None) -> None:
    j = evaluation.data.observations.index(observation)
    row = evaluation.table.loc[observation]
    precision, recall, _ = metrics.precision_recall_curve(evaluation.data.scores[:, j], evaluation.data.labels[:, j])
    prevalence = row["positives"] / evaluation.n_studies
    ax.axhline(prevalence, linestyle=":", color="#999999", linewidth=1, label=f"prevalence {prevalence:.2f}")
    if band is not None:
        ax.fill_between(_GRID, band[0], band[1], color=_BAND, alpha=0.45, linewidth=0, step="pre", label=f"bootstrap {evaluation.level:.0%} band")
    if row["positives"]:
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color=_MODEL, linewidth=2, label="model")
    for name, _, sensitivity, ppv, _ in _readers(evaluation, observation):
        marker, color = _reader_style(evaluation, name)
        ax.plot([sensitivity], [ppv], marker=marker, markersize=9, linestyle="none", color=color, markeredgecolor="black", markeredgewidth=0.8, label=name)
    _square(ax)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(f"Precision-recall: {_metric_text('AUPRC', row, 'auprc', evaluation.level)}")
    _legend(ax, loc="lower left", framealpha=0.9)


def roc_figure(evaluation: Evaluation, observation: str) -> Figure:
    """One observation: ROC (left) and precision-recall (right) curves, bootstrap bands, radiologists' points.

    >>> roc_figure(result, "Edema").savefig("edema.png")
    """
    if observation not in evaluation.data.observations:
        raise InvalidArgumentError(f"{observation!r} was not scored; scored: {', '.join(evaluation.data.observations)}")
    bands = _bands(evaluation, evaluation.data.observations.index(observation))
    row = evaluation.table.loc[observation]
    with _style() as Figure:
        # A fixed layout: constrained layout would double the time to save, and these panels are regular.
        figure = Figure(figsize=(12, 5.8))
        figure.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.86, wspace=0.22)
        roc_ax, pr_ax = figure.subplots(1, 2)
        _draw_roc(roc_ax, evaluation, observation, None if bands is None else bands[0])
        _draw_pr(pr_ax, evaluation, observation, None if bands is None else bands[1])
        figure.suptitle(f"{observation}: {int(row['positives'])} positive of {evaluation.n_studies} studies", fontsize=14, fontweight="bold")
    return figure


def _summary_tasks(evaluation: Evaluation) -> list[str]:
    competition = [t for t in schema.COMPETITION_TASKS if t in evaluation.data.observations]
    return competition or list(evaluation.data.observations[:5])


def summary_figure(evaluation: Evaluation) -> Figure:
    """ROC of the five competition tasks and a forest plot of every observation's AUROC with its interval.

    >>> summary_figure(result).savefig("summary.png")
    """
    tasks = _summary_tasks(evaluation)
    bands = [_bands(evaluation, evaluation.data.observations.index(t)) for t in tasks]
    title = f"{evaluation.n_studies} studies"
    if not math.isnan(evaluation.mean_auroc):
        lo, hi = evaluation.mean_auroc_ci
        what = evaluation.mean_auroc_label.replace("Mean of 5", "mean AUROC of the 5").replace("Mean of", "mean AUROC of")
        title += f"  ·  {what} {evaluation.mean_auroc:.3f}{_ci_text(lo, hi, evaluation.level)}"
    if not math.isnan(evaluation.mean_radiologists_under_curve):
        readers = int(evaluation.table.loc[list(schema.COMPETITION_TASKS), "radiologists"].max())
        title += f"  ·  radiologists under ROC {evaluation.mean_radiologists_under_curve:.1f} of {readers}"
    with _style() as Figure:
        figure = Figure(figsize=(20, 9.6), layout="constrained")
        grid = figure.add_gridspec(2, 5, height_ratios=(1.0, 0.8))
        for column, (observation, band) in enumerate(zip(tasks, bands)):
            _draw_roc(figure.add_subplot(grid[0, column]), evaluation, observation, None if band is None else band[0], compact=True)
        _draw_forest(figure.add_subplot(grid[1, :]), evaluation)
        figure.suptitle(title, fontsize=14, fontweight="bold")
    return figure


def _draw_forest(ax: Axes, evaluation: Evaluation) -> None:
    table = evaluation.table
    names = list(table.index)
    y = np.arange(len(names))[::-1]
    competition = np.array([n in schema.COMPETITION_TASKS for n in names])
    auroc = table["auroc"].to_numpy(dtype=float)
    lo, hi = np.array([evaluation.auroc_interval(str(name)) for name in names], dtype=float).reshape(-1, 2).T
    has_ci = ~np.isnan(lo)
    ax.hlines(y[has_ci], lo[has_ci], hi[has_ci], color="#555555", linewidth=2)
    ax.plot(auroc[competition], y[competition], "o", color=_MODEL, markersize=8, label="competition task")
    ax.plot(auroc[~competition], y[~competition], "o", color="white", markeredgecolor=_MODEL, markersize=7, label="other observation")
    if not math.isnan(evaluation.mean_auroc):
        ax.axvline(
            evaluation.mean_auroc,
            color=_MODEL,
            linestyle="--",
            linewidth=1,
            label=f"mean of {len(evaluation.mean_auroc_tasks) or 5} tasks {evaluation.mean_auroc:.3f}",
        )
    ax.set_yticks(y, names)
    for label, bold in zip(ax.get_yticklabels(), competition):
        label.set_fontweight("bold" if bold else "normal")
    finite = np.r_[lo, auroc][np.isfinite(np.r_[lo, auroc])]
    low = float(finite.min()) if len(finite) else 0.5
    ax.set_xlim(max(0.0, math.floor(low * 20) / 20 - 0.01), 1.005)
    ax.set_xlabel(f"AUROC (dot) and {evaluation.level:.0%} {evaluation.interval} interval (bar)")
    ax.set_title("All scored observations")
    ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
    ax.legend(loc="best", fontsize=8.5, framealpha=0.9)


def _draw_reliability(ax: Axes, evaluation: Evaluation, observation: str) -> None:
    j = evaluation.data.observations.index(observation)
    row = evaluation.table.loc[observation]
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", linewidth=1, label="perfectly calibrated")
    scores, labels = evaluation.data.scores[:, j], evaluation.data.labels[:, j]
    if math.isnan(float(row["ece"])):
        ax.text(0.5, 0.5, "scores outside [0, 1]:\nno calibration", ha="center", va="center", transform=ax.transAxes, color="#777777")
    else:
        count, mean, positive = metrics.reliability_bins(scores, labels)
        filled = count > 0
        edges = np.linspace(0.0, 1.0, metrics.CALIBRATION_BINS + 1)
        # Bars: the share of studies in each bin (the weights of the ECE), under the points.
        ax.bar(edges[:-1], count / count.sum(), width=np.diff(edges), align="edge", color=_BAND, alpha=0.5, label="share of studies")
        ax.plot(mean[filled], positive[filled], marker="o", color=_MODEL, linewidth=1.8, markersize=5, label="fraction positive")
    _square(ax)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction positive")
    ax.set_title(f"{observation}\nECE {float(row['ece']):.3f} · Brier {float(row['brier']):.3f}", fontsize=11)


def reliability_figure(evaluation: Evaluation, observations: Sequence[str] | None = None) -> Figure:
    """Reliability diagrams: per observation (default the five competition tasks), the fraction
    positive against the mean score in 10 equal-width bins, with each bin's share of studies.

    >>> reliability_figure(result).savefig("reliability.png")
    """
    tasks = list(observations or _summary_tasks(evaluation))
    unknown = [o for o in tasks if o not in evaluation.data.observations]
    if unknown:
        raise InvalidArgumentError(f"{', '.join(map(repr, unknown))} not scored; scored: {', '.join(evaluation.data.observations)}")
    with _style() as Figure:
        figure = Figure(figsize=(4 * len(tasks), 4.6), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(tasks)))
        for ax, observation in zip(axes, tasks):
            _draw_reliability(ax, evaluation, observation)
        _legend(axes[0], loc="upper left", fontsize=8.5, framealpha=0.9)
        figure.suptitle("Calibration (10 equal-width bins; ECE weights each bin by its studies)", fontsize=13, fontweight="bold")
    return figure


def _slug(observation: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", observation.lower()).strip("-")


def save_plots(
    evaluation: Evaluation,
    directory: str | os.PathLike[str],
    *,
    observations: Sequence[str] | None = None,
    formats: Sequence[str] = _FORMATS,
) -> list[Path]:
    """Write ``<observation>.png/.svg`` for each observation, ``summary.png/.svg`` and ``reliability.png/.svg``; return the paths.

    ``observations`` defaults to every scored one. Subgroups are not plotted separately.

    >>> save_plots(result, "plots", observations=["Edema"], formats=["png"])
    [PosixPath('plots/edema.png'), PosixPath('plots/summary.png'), PosixPath('plots/reliability.png')]
    """
    unknown = [f for f in formats if f not in _FORMATS]
    if unknown:
        raise InvalidArgumentError(f"formats must be among {', '.join(_FORMATS)}; got {', '.join(unknown)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = [(_slug(o), roc_figure(evaluation, o)) for o in (observations or evaluation.data.observations)]
    figures.append(("summary", summary_figure(evaluation)))
    figures.append(("reliability", reliability_figure(evaluation)))
    with _style():
        for stem, figure in figures:
            for fmt in formats:
                path = out / f"{stem}.{fmt}"
                with atomic_writer(path) as handle:  # never through a link planted at the name
                    figure.savefig(handle, format=fmt, dpi=150 if fmt == "png" else None)
                written.append(path)
    return written
