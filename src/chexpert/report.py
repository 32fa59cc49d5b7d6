"""The HTML page of a release and a run: counts, label prevalence, sample images, training curve, ROC curves, AUROCs.

With an evaluation the page also shows precision-recall curves, calibration (reliability
diagrams, Brier score, ECE), the confusion matrix of each competition task at the chosen
operating point (Youden's by default), AUROC by view and by sex where the index knows them,
validation images with the model's scores (and a saliency overlay when ``saliency=`` gives
one), and the five most confident false positives and false negatives.

One self-contained file: styles inline, every picture an embedded PNG (``data:`` URI), no script
and no request to anywhere, so it opens offline, from a mail attachment or an archive, and shows
the same in ten years. Figures need matplotlib (``pip install 'chexpert[plots]'``); without it
the page keeps its tables.

Not run as a doctest (seconds of figures; tests/test_report.py writes such pages):

>>> write_report("demo/report.html", store, release=release, run=run, evaluation=result)  # doctest: +SKIP
PosixPath('demo/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from chexpert import schema
from chexpert.fileio import atomic_write
from chexpert.index import Index
from chexpert.version import __version__

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from chexpert.evaluate import Evaluation
    from chexpert.policy import Policy
    from chexpert.release import Release
    from chexpert.store import Store
    from chexpert.train.run import Run

__all__ = ["write_report", "render_report", "policy_sentence", "STATE_COLORS", "Saliency"]

#: ``saliency=`` of :func:`render_report`: given an image path (release prefix removed, e.g.
#: ``valid/patient64541/study1/view1_frontal.jpg``) and an observation, an RGB uint8 overlay of
#: that image for that observation (e.g. a class-activation map blended over it), or None.
Saliency = Callable[[str, str], "np.ndarray | None"]

#: Colour of each raw label state, in the charts and the image captions.
STATE_COLORS: Final[dict[str, str]] = {"positive": "#c0392b", "uncertain": "#e69f00", "negative": "#2e86c1", "blank": "#b3b6b7"}
_MODEL_COLOR = "#1f5fa8"
_TASK_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
_SAMPLES = 12
_THUMB = 208
_SCORED_SAMPLES = 8
_MISTAKES = 5

_CSS = """
:root { --ink:#1d2733; --muted:#5d6d7e; --line:#e3e8ee; --card:#ffffff; --bg:#f4f6f9; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:linear-gradient(120deg,#123a66,#1f5fa8); color:#fff; padding:28px 40px 24px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; }
header p { margin:0; opacity:.85; }
main { max-width:1240px; margin:0 auto; padding:24px 32px 48px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:20px 24px; margin:0 0 20px; }
h2 { margin:0 0 12px; font-size:19px; }
h2 small { font-weight:400; color:var(--muted); font-size:14px; margin-left:8px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(170px,1fr)); gap:12px; margin:0 0 20px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.card .value { font-size:26px; font-weight:650; color:var(--accent); }
.card .label { color:var(--muted); font-size:13px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:6px 10px; border-bottom:1px solid var(--line); }
th:first-child, td:first-child { text-align:left; }
th { color:var(--muted); font-weight:600; font-size:13px; }
tr.task td:first-child { font-weight:650; }
tr.mean td { font-weight:650; border-top:2px solid var(--ink); }
.bar { display:inline-block; height:10px; background:var(--accent); border-radius:2px; vertical-align:middle; margin-right:8px; }
.na { color:var(--muted); }
img.figure { width:100%; height:auto; display:block; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(190px,1fr)); gap:14px; }
.sample { margin:0; border:1px solid var(--line); border-radius:8px; overflow:hidden; background:#fff; }
.sample img { width:100%; display:block; background:#000; }
.sample figcaption { padding:6px 8px 8px; font-size:12px; line-height:1.35; }
.sample .where { color:var(--muted); display:block; margin-bottom:3px; overflow-wrap:anywhere; }
.chip { display:inline-block; padding:0 6px; margin:1px 2px 1px 0; border-radius:9px; color:#fff; font-size:11px; }
.legend span { margin-right:14px; font-size:13px; }
.legend i { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.note { color:var(--muted); font-size:13px; margin:8px 0 0; }
code { background:#eef2f7; padding:1px 5px; border-radius:4px; font-size:13px; }
footer { color:var(--muted); font-size:13px; text-align:center; padding:0 0 32px; }
.warn { color:#9a5b00; background:#fff4e0; border:1px solid #f0c36d; border-radius:6px; padding:6px 10px; font-size:13px; margin:10px 0 0; }
td .flag { color:#9a5b00; font-size:12px; }
.matrices { display:grid; grid-template-columns:repeat(auto-fit,minmax(210px,1fr)); gap:14px; }
.matrix { border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.matrix h3 { margin:0 0 6px; font-size:14px; }
.matrix table td, .matrix table th { padding:4px 6px; text-align:center; font-size:13px; }
.matrix td.hit { background:#e3f1e8; font-weight:650; } .matrix td.miss { background:#fbe6e4; font-weight:650; }
.matrix p { margin:6px 0 0; font-size:12px; color:var(--muted); }
.scores { margin:4px 0 0; font-size:11.5px; }
.scores div { display:flex; align-items:center; gap:4px; line-height:1.5; }
.scores .name { flex:0 0 92px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.scores .track { flex:1; height:7px; background:#edf0f4; border-radius:2px; position:relative; }
.scores .fill { position:absolute; left:0; top:0; bottom:0; background:var(--accent); border-radius:2px; }
.scores .pos .fill { background:#c0392b; }
.scores .value { flex:0 0 34px; text-align:right; }
.pair { display:grid; grid-template-columns:1fr 1fr; }
.mistake figcaption b { color:#9a5b00; }
.policy { font-size:14px; margin:10px 0 0; }
"""


def _png(figure: Figure, dpi: int = 96) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError:
        return None
    return Figure


def _num(value: Any) -> float:
    """A table cell as a float; missing (None, NaN, pandas' NA) as NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _interval(lo: Any, hi: Any) -> str:
    if math.isnan(_num(lo)) and math.isnan(_num(hi)):
        return _fmt(lo)
    return f"{_fmt(lo)} – {_fmt(hi)}"


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    return '<span class="na">–</span>' if math.isnan(number) else f"{number:.{digits}f}"


# -- parts of the page -----------------------------------------------------------------------------


def _counts_table(index: Index) -> str:
    rows = []
    for i, split in enumerate(schema.SPLITS):
        part = index.take(index.split == i)
        if len(part) == 0:
            continue
        c = part.counts()
        rows.append(
            f"<tr><td>{split}</td><td>{c['images']:,}</td><td>{c['frontal']:,}</td><td>{c['lateral']:,}</td>"
            f"<td>{c['studies']:,}</td><td>{c['patients']:,}</td></tr>"
        )
    return "<table><tr><th>split</th><th>images</th><th>frontal</th><th>lateral</th><th>studies</th><th>patients</th></tr>" + "".join(rows) + "</table>"


def _prevalence_figure(index: Index) -> str | None:
    """One bar chart per label state: the share of training images (else all) in that state, per observation."""
    figure_class = _figure_class()
    if figure_class is None:
        return None
    train = index.split == schema.SPLITS.index("train")
    labels = index.labels[train] if train.any() else index.labels
    n = max(len(labels), 1)
    figure = figure_class(figsize=(13, 4.6), layout="constrained")
    axes = figure.subplots(1, 4, sharey=True)
    y = np.arange(len(schema.OBSERVATIONS))[::-1]
    for ax, (state, code) in zip(axes, (("positive", 1), ("uncertain", -1), ("negative", 0), ("blank", -2))):
        share = (labels == code).sum(axis=0) / n
        ax.barh(y, share, color=STATE_COLORS[state], height=0.72)
        ax.set_title(state, fontsize=12, color=STATE_COLORS[state] if state != "blank" else "#555555", fontweight="bold")
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1], ["0", "50%", "100%"])
        ax.grid(True, axis="x", color="#e5e5e5", linewidth=0.6)
        ax.set_axisbelow(True)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
        for yi, value in zip(y, share):
            if value > 0:
                ax.text(min(value + 0.02, 0.98), yi, f"{value:.0%}", va="center", ha="left" if value < 0.8 else "right", fontsize=8, color="#333333")
    axes[0].set_yticks(y, schema.OBSERVATIONS)
    for label in axes[0].get_yticklabels():
        label.set_fontweight("bold" if label.get_text() in schema.COMPETITION_TASKS else "normal")
    return _png(figure)


def _sample_rows(index: Index, count: int) -> list[int]:
    """A varied, deterministic choice: a positive frontal image per competition task, No Finding, laterals, then the rest."""
    chosen: list[int] = []
    # Visit rows in a fixed shuffled order, so that the picks come from many patients.
    order = np.random.default_rng(0).permutation(len(index))

    def take(mask: np.ndarray) -> None:
        for row in order[mask[order]]:
            if int(row) not in chosen:
                chosen.append(int(row))
                return

    for task in schema.COMPETITION_TASKS:
        take((index.observation(task) == schema.Code.POSITIVE) & index.frontal)
    take((index.observation("No Finding") == schema.Code.POSITIVE) & index.frontal)
    take((index.observation("Support Devices") == schema.Code.POSITIVE) & index.frontal)
    take(~index.frontal)
    take((index.labels == schema.Code.UNCERTAIN).any(axis=1))
    for row in order.tolist():
        if len(chosen) >= count:
            break
        if row not in chosen:
            chosen.append(row)
    return chosen[:count]


def _chips(codes: np.ndarray) -> str:
    chips = []
    for name, code in zip(schema.OBSERVATIONS, codes):
        if code == schema.Code.POSITIVE:
            chips.append(f'<span class="chip" style="background:{STATE_COLORS["positive"]}">{html.escape(name)}</span>')
        elif code == schema.Code.UNCERTAIN:
            chips.append(f'<span class="chip" style="background:{STATE_COLORS["uncertain"]}">{html.escape(name)}?</span>')
    return "".join(chips) or f'<span class="chip" style="background:{STATE_COLORS["blank"]}">nothing positive</span>'


def _samples(store: Store | None, index: Index, release: Release | None) -> str:
    from chexpert.imaging import decode_resized

    split = index.split == schema.SPLITS.index("train")
    rows = np.flatnonzero(split) if split.any() else np.arange(len(index))
    picked = rows[_sample_rows(index.take(rows), _SAMPLES)]
    figures = []
    for row in picked.tolist():
        path = str(index.path[row])
        if release is not None:
            pixels = decode_resized(release.read_bytes(path), _THUMB, "pad", file=path)
        elif store is not None:
            pixels = np.asarray(store.images[row])
        else:
            continue
        where = "/".join(schema.strip_release_prefix(path).split("/")[1:])
        view = "frontal " + schema.PROJECTIONS[int(index.projection[row])] if index.frontal[row] else "lateral"
        figures.append(
            f'<figure class="sample"><img src="{_image_uri(pixels)}" alt="{html.escape(path)}">'
            f'<figcaption><span class="where">{html.escape(where)} · {view}</span>{_chips(index.labels[row])}</figcaption></figure>'
        )
    legend = (
        f'<p class="note"><span class="chip" style="background:{STATE_COLORS["positive"]}">positive</span> '
        f'<span class="chip" style="background:{STATE_COLORS["uncertain"]}">uncertain?</span> '
        "labels of each image as the CSV gives them (negative and blank not shown).</p>"
    )
    return '<div class="grid">' + "".join(figures) + "</div>" + legend


def _training_figure(run: Run) -> str | None:
    figure_class = _figure_class()
    log, valid = run.log(), run.validation()
    if figure_class is None or len(log) == 0:
        return None
    figure = figure_class(figsize=(13, 4.2), layout="constrained")
    loss_ax, auroc_ax = figure.subplots(1, 2)
    steps, loss = log["step"].to_numpy(), log["loss"].to_numpy(dtype=float)
    loss_ax.plot(steps, loss, color="#9db7d5", linewidth=1, label="loss per logged step")
    if len(loss) >= 5:
        window = max(3, len(loss) // 10)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        loss_ax.plot(steps[window - 1 :], smooth, color=_MODEL_COLOR, linewidth=2.2, label=f"moving mean of {window}")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title("Training loss", fontweight="bold")
    loss_ax.grid(True, color="#e5e5e5", linewidth=0.6)
    loss_ax.legend(frameon=False)
    if len(valid):
        vsteps = valid["step"].to_numpy()
        tasks = [t for t in schema.COMPETITION_TASKS if t in valid.columns]
        for task, color in zip(tasks, _TASK_COLORS):
            auroc_ax.plot(vsteps, valid[task].to_numpy(dtype=float), marker="o", markersize=4, color=color, linewidth=1.4, label=task)
        auroc_ax.plot(vsteps, valid["mean_auroc"].to_numpy(dtype=float), marker="s", color="black", linewidth=2.4, label="mean")
        kept = {c.step for c in run.checkpoints}
        chosen = valid[valid["step"].isin(kept)]
        auroc_ax.scatter(
            chosen["step"], chosen["mean_auroc"], s=160, facecolors="none", edgecolors="#c0392b", linewidths=1.8, zorder=5, label="kept for the ensemble"
        )
        auroc_ax.set_ylim(max(0.0, float(np.nanmin(valid[[*tasks, "mean_auroc"]].to_numpy(dtype=float))) - 0.05), 1.0)
        auroc_ax.legend(frameon=False, fontsize=9, loc="lower right", ncol=2)
    else:
        auroc_ax.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=auroc_ax.transAxes, color="#777777")
    auroc_ax.set_xlabel("step")
    auroc_ax.set_ylabel("validation AUROC (per study)")
    auroc_ax.set_title("Validation at each checkpoint", fontweight="bold")
    auroc_ax.grid(True, color="#e5e5e5", linewidth=0.6)
    return _png(figure)


def _auroc_table(evaluation: Evaluation) -> str:
    table = evaluation.table
    level = f"{evaluation.level:.0%}"
    head = (
        f"<tr><th>observation</th><th>positive studies</th><th>AUROC</th><th>{level} interval ({evaluation.interval})</th><th></th>"
        f"<th>AUPRC</th><th>{level} interval</th><th>Brier</th><th>ECE</th></tr>"
    )
    few = set(_few(evaluation))
    rows = []
    names = [t for t in schema.COMPETITION_TASKS if t in table.index] + [o for o in table.index if o not in schema.COMPETITION_TASKS]
    for name in names:
        row = table.loc[name]
        auroc = _num(row["auroc"])
        width = 0 if math.isnan(auroc) else max(0.0, (auroc - 0.5) * 2) * 120
        interval = '<span class="flag">⚠ too few for an interval</span>' if name in few else _interval(*evaluation.auroc_interval(str(name)))
        rows.append(
            f'<tr class="{"task" if name in schema.COMPETITION_TASKS else ""}"><td>{html.escape(str(name))}</td>'
            f"<td>{int(row['positives'])} of {evaluation.n_studies}</td><td>{_fmt(auroc)}</td>"
            f"<td>{interval}</td>"
            f'<td style="text-align:left"><span class="bar" style="width:{width:.0f}px"></span></td>'
            f"<td>{_fmt(row['auprc'])}</td><td>{_interval(row['auprc_lo'], row['auprc_hi'])}</td>"
            f"<td>{_fmt(row['brier'])}</td><td>{_fmt(row['ece'])}</td></tr>"
        )
    if not math.isnan(evaluation.mean_auroc):
        lo, hi = evaluation.mean_auroc_ci
        rows.insert(
            len([n for n in names if n in schema.COMPETITION_TASKS]),
            f'<tr class="mean"><td>{html.escape(evaluation.mean_auroc_label)}</td><td></td><td>{_fmt(evaluation.mean_auroc)}</td>'
            f"<td>{_fmt(lo)} – {_fmt(hi)}</td><td></td><td></td><td></td><td></td><td></td></tr>",
        )
    table_html = "<table>" + head + "".join(rows) + "</table>"
    if few:
        from chexpert.evaluate import metrics

        table_html += (
            f'<p class="warn">⚠ Fewer than {metrics.MIN_POSITIVES} positive (or negative) studies: {html.escape(", ".join(sorted(few)))}. '
            "Their AUROC is shown without an interval: an interval from so few studies is narrow and meaningless.</p>"
        )
    return table_html


def _roc_figure(evaluation: Evaluation) -> str | None:
    if _figure_class() is None:
        return None
    from chexpert.plots import summary_figure

    return _png(summary_figure(evaluation), dpi=80)


# -- evaluation: curves, calibration, operating point, breakdowns, scored images ---------------------

_UNCERTAIN_AS = {
    "ignore": "left out of the loss (U-Ignore)",
    "zeros": "trained as negative (U-Zeros)",
    "ones": "trained as positive (U-Ones)",
    "multiclass": "trained as a third class beside negative and positive (U-MultiClass)",
    "self-trained": "trained towards a model's soft label (U-SelfTrained)",
}


def policy_sentence(policy: Policy) -> str:
    """What a label policy means, in one sentence.

    >>> from chexpert.policy import get_policy
    >>> policy_sentence(get_policy("u-ones"))
    'Uncertain labels were trained as positive (U-Ones) and labels the report does not mention as negative.'
    """

    def uncertain(name: str) -> str:
        if name == "smooth-ones":
            lo, hi = policy.smooth_ones
            return f"trained towards a random value in [{lo:g}, {hi:g}] (label smoothing towards one)"
        if name == "smooth-zeros":
            lo, hi = policy.smooth_zeros
            return f"trained towards a random value in [{lo:g}, {hi:g}] (label smoothing towards zero)"
        return _UNCERTAIN_AS[name]

    blank = "as negative" if policy.blank == "negative" else "left out of the loss"
    sentence = f"Uncertain labels were {uncertain(policy.uncertain)} and labels the report does not mention {blank}"
    overrides = dict(policy.per_observation)
    if overrides:
        sentence += "; except " + ", ".join(f"{o}, whose uncertain labels were {uncertain(p)}" for o, p in overrides.items())
    return sentence + "."


def _tasks(evaluation: Evaluation) -> list[str]:
    competition = [t for t in schema.COMPETITION_TASKS if t in evaluation.data.observations]
    return competition or list(evaluation.data.observations[:5])


def _few(evaluation: Evaluation) -> list[str]:
    from chexpert.evaluate import metrics

    table = evaluation.table
    return [str(o) for o in table.index if 0 < min(int(table.loc[o, "positives"]), int(table.loc[o, "negatives"])) < metrics.MIN_POSITIVES]


def _pr_figure(evaluation: Evaluation) -> str | None:
    if _figure_class() is None:
        return None
    from chexpert import plots

    tasks = _tasks(evaluation)
    with plots._style() as figure_class:
        figure = figure_class(figsize=(4 * len(tasks), 4.6), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(tasks)))
        for ax, observation in zip(axes, tasks):
            bands = plots._bands(evaluation, evaluation.data.observations.index(observation))
            plots._draw_pr(ax, evaluation, observation, None if bands is None else bands[1])
            ax.set_title(f"{observation}\n" + ax.get_title().removeprefix("Precision-recall: "), fontsize=11)
            legend = ax.get_legend()
            if legend is not None and ax is not axes[0]:
                legend.remove()
        return _png(figure, dpi=80)


def _calibration_figure(evaluation: Evaluation) -> str | None:
    if _figure_class() is None or evaluation.table["ece"].isna().all():
        return None
    from chexpert.plots import reliability_figure

    return _png(reliability_figure(evaluation, _tasks(evaluation)), dpi=80)


def _operating_points(evaluation: Evaluation, thresholds: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per competition task: given ``thresholds`` (rows of operating_points or apply_thresholds), else Youden's."""
    from chexpert.evaluate import UndefinedMetricWarning, operating_points

    if thresholds is None:
        if evaluation.table["brier"].isna().any():
            return None  # scores outside [0, 1]: thresholds are on probabilities
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            thresholds = operating_points(evaluation, youden=True, radiologists=False)
    tasks = _tasks(evaluation)
    chosen = thresholds[thresholds["observation"].isin(tasks)].drop_duplicates("observation")
    return chosen.set_index("observation").reindex([t for t in tasks if t in set(chosen["observation"])])


def _criterion_text(points: pd.DataFrame) -> str:
    criteria = sorted(set(points["criterion"]))
    if criteria == ["youden"]:
        return "Youden's point (highest sensitivity + specificity)"
    return "criterion " + ", ".join(html.escape(str(c)) for c in criteria)


def _confusion(evaluation: Evaluation, points: pd.DataFrame) -> str:
    cards = []
    for observation, row in points.iterrows():
        if math.isnan(_num(row["threshold"])):
            cards.append(f'<div class="matrix"><h3>{html.escape(str(observation))}</h3><p>undefined: one class only</p></div>')
            continue
        tp, fp, tn, fn = (int(row[c]) for c in ("tp", "fp", "tn", "fn"))
        cards.append(
            f'<div class="matrix"><h3>{html.escape(str(observation))} <small>score ≥ {_num(row["threshold"]):.3f}</small></h3>'
            "<table><tr><th></th><th>called positive</th><th>called negative</th></tr>"
            f'<tr><th>positive</th><td class="hit">{tp}</td><td class="miss">{fn}</td></tr>'
            f'<tr><th>negative</th><td class="miss">{fp}</td><td class="hit">{tn}</td></tr></table>'
            f"<p>sensitivity {_fmt(row['sensitivity'])} · specificity {_fmt(row['specificity'])} · PPV {_fmt(row['ppv'])}</p></div>"
        )
    return '<div class="matrices">' + "".join(cards) + "</div>"


def _study_rows(index: Index, studies: np.ndarray) -> dict[str, int]:
    """The index row shown for each study: its first frontal image, else its first image."""
    keys = np.asarray(index.study_keys().tolist(), dtype=object)
    wanted = set(studies.astype(str).tolist())
    rows: dict[str, int] = {}
    order = np.lexsort((np.asarray(index.path.tolist(), dtype=object), ~np.asarray(index.frontal, dtype=bool)))
    for row in order.tolist():
        key = keys[row]
        if key in wanted and key not in rows:
            rows[key] = int(row)
    return rows


def _breakdown(evaluation: Evaluation, index: Index) -> str | None:
    """AUROC of the competition tasks per view (projection of the frontal images) and per sex, where known."""
    from chexpert.evaluate import io, scoring

    rows = _study_rows(index, evaluation.data.studies)
    if len(rows) != len(evaluation.data.studies):
        return None
    # Every image of the studies: the projection of a study is that of all its frontal images.
    keys = np.asarray(index.study_keys().tolist(), dtype=object)
    everything = io._from_index(index.take(np.flatnonzero(np.isin(keys, evaluation.data.studies.astype(str)))))[2]
    metadata = everything.loc[evaluation.data.studies.astype(str)]
    tasks = _tasks(evaluation)
    lines = []
    for by in ("projection", "sex"):
        groups = io.subgroup_of(metadata, by)
        known = [g for g in io.subgroup_order(by, groups) if g not in ("Unknown", "none", io.NO_FRONTAL)]
        if len(known) < 2:  # one group is the whole evaluation again
            continue
        for group in known:
            part = evaluation.data.take(groups == group)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scored = scoring._score(part, bootstrap=0, seed=0, level=evaluation.level, aggregate=evaluation.aggregate)
            cells = "".join(f"<td>{_fmt(scored.table.loc[t, 'auroc'])}</td>" for t in tasks)
            label = {"projection": "view", "sex": "sex"}[by]
            lines.append(f"<tr><td>{label}: {html.escape(str(group))}</td><td>{len(part.studies)}</td>{cells}<td>{_fmt(scored.mean_auroc)}</td></tr>")
    if not lines:
        return None
    head = "<tr><th>studies</th><th>n</th>" + "".join(f"<th>{html.escape(t)}</th>" for t in tasks) + "<th>mean</th></tr>"
    return "<table>" + head + "".join(lines) + "</table>"


def _pixels(row: int, index: Index, store: Store | None, release: Release | None) -> np.ndarray | None:
    from chexpert.imaging import decode_resized

    path = str(index.path[row])
    if release is not None:
        try:
            return decode_resized(release.read_bytes(path), _THUMB, "pad", file=path)
        except Exception:  # noqa: BLE001 - a release without this image: fall back to the store's pixels
            pass
    if store is not None and len(store.index) == len(index):
        return np.asarray(store.images[row])
    return None


def _overlay(saliency: Saliency | None, path: str, observation: str) -> np.ndarray | None:
    if saliency is None:
        return None
    picture = saliency(schema.strip_release_prefix(path), observation)
    if picture is None:
        return None
    picture = np.asarray(picture)
    if picture.dtype != np.uint8 or picture.ndim not in (2, 3):
        raise TypeError(f"saliency({path!r}, {observation!r}) must return a uint8 image (H, W) or (H, W, 3); got {picture.dtype} {picture.shape}")
    return picture


def _score_bars(evaluation: Evaluation, i: int, tasks: Sequence[str]) -> str:
    lines = []
    for task in tasks:
        j = evaluation.data.observations.index(task)
        score = float(evaluation.data.scores[i, j])
        positive = bool(evaluation.data.labels[i, j])
        width = min(max(score, 0.0), 1.0) * 100
        lines.append(
            f'<div class="{"pos" if positive else ""}"><span class="name" title="{html.escape(task)}">{html.escape(task)}</span>'
            f'<span class="track"><span class="fill" style="width:{width:.0f}%"></span></span><span class="value">{score:.2f}</span></div>'
        )
    return '<div class="scores">' + "".join(lines) + "</div>"


def _figure_html(pixels: np.ndarray, overlay: np.ndarray | None, path: str, caption: str, css: str = "sample") -> str:
    pictures = f'<img src="{_image_uri(pixels)}" alt="{html.escape(path)}">'
    if overlay is not None:
        pictures = f'<div class="pair">{pictures}<img src="{_image_uri(overlay)}" alt="saliency of {html.escape(path)}"></div>'
    return f'<figure class="{css}">{pictures}<figcaption>{caption}</figcaption></figure>'


def _scored_samples(evaluation: Evaluation, index: Index, store: Store | None, release: Release | None, saliency: Saliency | None) -> str | None:
    """Validation studies with the model's score per competition task (red bar: labelled positive)."""
    rows = _study_rows(index, evaluation.data.studies)
    tasks = _tasks(evaluation)
    order = np.random.default_rng(0).permutation(len(evaluation.data.studies))
    # Studies with a positive competition task first, so that the scores can be read against labels.
    columns = [evaluation.data.observations.index(t) for t in tasks]
    positive = np.asarray(evaluation.data.labels[:, columns].any(axis=1), dtype=bool)
    picked = [int(i) for i in order if positive[i]][: _SCORED_SAMPLES - 2] + [int(i) for i in order if not positive[i]][:2]
    figures = []
    for i in picked[:_SCORED_SAMPLES]:
        study = str(evaluation.data.studies[i])
        if study not in rows:
            continue
        row = rows[study]
        pixels = _pixels(row, index, store, release)
        if pixels is None:
            continue
        top = tasks[int(np.argmax(evaluation.data.scores[i, columns]))]
        overlay = _overlay(saliency, str(index.path[row]), top)
        caption = f'<span class="where">{html.escape(study)}{" · saliency: " + html.escape(top) if overlay is not None else ""}</span>{_score_bars(evaluation, i, tasks)}'
        figures.append(_figure_html(pixels, overlay, str(index.path[row]), caption))
    if not figures:
        return None
    return (
        '<div class="grid">' + "".join(figures) + "</div>"
        '<p class="note">Bars: the model\'s score per competition task for the study (max over its images); '
        "red where the study is labelled positive, blue where negative.</p>"
    )


def _mistakes(evaluation: Evaluation, index: Index, store: Store | None, release: Release | None, saliency: Saliency | None) -> str | None:
    """The five most confident false positives (highest scores of negatives) and false negatives (lowest of positives)."""
    rows = _study_rows(index, evaluation.data.studies)
    tasks = _tasks(evaluation)
    columns = [evaluation.data.observations.index(t) for t in tasks]
    scores, labels = evaluation.data.scores[:, columns], evaluation.data.labels[:, columns]
    parts = []
    for kind, wrong, confidence in (("false positive", ~labels, scores), ("false negative", labels, -scores)):
        i, k = np.nonzero(wrong)
        # Most confident first; ties broken by study, then task, so the page is the same every time.
        order = np.lexsort((k, i, -confidence[i, k]))[:_MISTAKES]
        figures = []
        for position in order.tolist():
            study, task = str(evaluation.data.studies[i[position]]), tasks[int(k[position])]
            score = float(scores[i[position], k[position]])
            pixels = _pixels(rows[study], index, store, release) if study in rows else None
            caption = (
                f'<span class="where">{html.escape(study)}</span><b>{html.escape(task)}</b> scored {score:.3f}, '
                f"labelled {'negative' if kind == 'false positive' else 'positive'}"
            )
            if pixels is None:
                figures.append(f'<figure class="sample mistake"><figcaption>{caption}</figcaption></figure>')
            else:
                overlay = _overlay(saliency, str(index.path[rows[study]]), task)
                figures.append(_figure_html(pixels, overlay, str(index.path[rows[study]]), caption, "sample mistake"))
        if figures:
            parts.append(f'<h2 style="margin-top:14px">{len(figures)} most confident {kind}s</h2><div class="grid">' + "".join(figures) + "</div>")
    return "".join(parts) or None


def _evaluation_sections(
    evaluation: Evaluation, index: Index | None, store: Store | None, release: Release | None,
    thresholds: pd.DataFrame | None, saliency: Saliency | None,
) -> list[str]:  # fmt: skip
    sections = []
    pr = _pr_figure(evaluation)
    if pr is not None:
        sections.append(
            f"<section><h2>Precision-recall curves <small>with {evaluation.level:.0%} bootstrap bands; the dotted line is the prevalence</small></h2>"
            f'<img class="figure" src="{pr}" alt="precision-recall curves"></section>'
        )
    calibration = _calibration_figure(evaluation)
    if calibration is not None:
        sections.append(
            "<section><h2>Calibration <small>fraction positive against the mean score in 10 equal-width bins; "
            "ECE weights each bin by its share of studies</small></h2>"
            f'<img class="figure" src="{calibration}" alt="reliability diagrams"></section>'
        )
    points = _operating_points(evaluation, thresholds)
    if points is not None and len(points):
        sections.append(
            f"<section><h2>Confusion at the operating point <small>{_criterion_text(points)}, per study</small></h2>{_confusion(evaluation, points)}</section>"
        )
    if index is not None:
        breakdown = _breakdown(evaluation, index)
        if breakdown is not None:
            sections.append(
                "<section><h2>By view and by sex <small>AUROC per group (no interval; groups are small)</small></h2>"
                f'{breakdown}<p class="note">View: the projection of a study\'s frontal images (AP or PA); studies with only '
                "lateral images are left out, as is unknown sex.</p></section>"
            )
        samples = _scored_samples(evaluation, index, store, release, saliency)
        if samples is not None:
            sections.append(f"<section><h2>Validation images with the model's scores <small>one image per study</small></h2>{samples}</section>")
        mistakes = _mistakes(evaluation, index, store, release, saliency)
        if mistakes is not None:
            sections.append(
                f"<section><h2>Hardest mistakes <small>competition tasks: negatives scored highest, positives scored lowest</small></h2>{mistakes}</section>"
            )
    return sections


# -- the page ----------------------------------------------------------------------------------------


def render_report(
    store: Store | None = None,
    *,
    index: Index | None = None,
    release: Release | None = None,
    run: Run | None = None,
    evaluation: Evaluation | None = None,
    title: str = "CheXpert report",
    subtitle: str = "",
    notes: Sequence[str] = (),
    facts: Mapping[str, str] | None = None,
    thresholds: pd.DataFrame | None = None,
    saliency: Saliency | None = None,
    trained_on: str | None = None,
    tested_on: str | None = None,
) -> str:
    """The page as a string; see :func:`write_report`.

    >>> page = render_report(index=release.index(), release=release)
    """
    if index is None:
        if store is None:
            index = release.index() if release is not None else None
        else:
            index = store.index
    cards: list[tuple[str, str]] = []
    sections: list[str] = []
    if index is not None:
        c = index.counts()
        cards += [(f"{c['images']:,}", "images"), (f"{c['studies']:,}", "studies"), (f"{c['patients']:,}", "patients")]
        prevalence = _prevalence_figure(index)
        body = _counts_table(index)
        if prevalence is not None:
            body += (
                '<h2 style="margin-top:18px">Label states <small>share of training images in each state, per observation '
                "(competition tasks in bold)</small></h2>"
                f'<img class="figure" src="{prevalence}" alt="label prevalence per state">'
            )
        sections.append(f"<section><h2>The release <small>{html.escape(str(getattr(release, 'root', '') or ''))}</small></h2>{body}</section>")
        sections.append(f"<section><h2>Sample images <small>training images with their labels</small></h2>{_samples(store, index, release)}</section>")
    if run is not None:
        recipe = run.recipe
        summary = run.summary()
        policy = recipe.policy if isinstance(recipe.policy, str) else "custom policy"
        cards.append((f"{summary.get('steps', 0):,}", f"training steps ({recipe.model}, {policy})"))
        if summary.get("seconds"):
            cards.append((f"{summary['seconds']:.0f} s", f"training time, {summary.get('images_per_second') or 0:,.0f} img/s"))
        figure = _training_figure(run)
        kept = ", ".join(f"step {c.step:,} ({_fmt(c.metric)})" for c in run.checkpoints)
        text = (
            f'<p class="note">{html.escape(recipe.model)}, {recipe.channels} input channel{"s" if recipe.channels > 1 else ""}, '
            f"{recipe.network_size}×{recipe.network_size}, batch {recipe.batch_size}, Adam at {recipe.lr:g}, policy {html.escape(str(policy))}. "
            f"Ensemble: the {len(run.checkpoints)} best checkpoints by mean validation AUROC: {kept}.</p>"
            f'<p class="policy"><b>Policy:</b> {html.escape(policy_sentence(recipe.resolved_policy()))}</p>'
        )
        sections.append(
            "<section><h2>Training <small>loss per step and validation AUROC at each checkpoint</small></h2>"
            + (f'<img class="figure" src="{figure}" alt="training curve">' if figure else "")
            + text
            + "</section>"
        )
    if evaluation is not None:
        if not math.isnan(evaluation.mean_auroc):
            lo, hi = evaluation.mean_auroc_ci
            cards.insert(0, (f"{evaluation.mean_auroc:.3f}", f"mean AUROC, {len(evaluation.mean_auroc_tasks) or 5} tasks ({_fmt(lo)}–{_fmt(hi)})"))
        roc = _roc_figure(evaluation)
        if tested_on is None and getattr(release, "kind", None) == "mimic":
            tested_on = "MIMIC-CXR-JPG"
        heading = "Validation results" if tested_on is None else f"Results on {html.escape(tested_on)}"
        if trained_on is not None:
            heading += f", trained on {html.escape(trained_on)}"
        sections.append(
            f"<section><h2>{heading} <small>{evaluation.n_studies} studies, per study (max over views), "
            f"{evaluation.bootstrap} bootstrap resamples</small></h2>{_auroc_table(evaluation)}"
            + (
                f'<h2 style="margin-top:22px">ROC curves <small>with {evaluation.level:.0%} bootstrap bands</small></h2>'
                f'<img class="figure" src="{roc}" alt="ROC curves">'
                if roc
                else ""
            )
            + "</section>"
        )
        sections += _evaluation_sections(evaluation, index, store, release, thresholds, saliency)
    for key, value in (facts or {}).items():
        cards.append((html.escape(value), html.escape(key)))
    card_html = "".join(f'<div class="card"><div class="value">{v}</div><div class="label">{label}</div></div>' for v, label in cards)
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header><main>"
        f'<div class="cards">{card_html}</div>{"".join(sections)}{note_html}</main>'
        f"<footer>Written by chexpert {__version__}. Self-contained: no scripts, no requests.</footer></body></html>\n"
    )


def write_report(
    path: str | os.PathLike[str],
    store: Store | None = None,
    **kwargs: Any,
) -> Path:
    """Write the page to ``path`` (atomically) and return the path.

    Give a ``store`` (counts, prevalence, samples from its pixels) or an ``index``, the
    ``release`` for sharper samples decoded from the originals, a ``run`` (training curve and
    recipe), an ``evaluation`` (AUROC table, ROC and precision-recall curves, calibration,
    confusion at the operating point, breakdowns, scored images and hardest mistakes), and
    ``title``, ``subtitle``, ``notes`` and ``facts`` (extra cards: label -> value) for the text.
    ``thresholds`` (rows of :func:`~chexpert.evaluate.operating_points` or
    :func:`~chexpert.evaluate.apply_thresholds`) choose the operating point of the confusion
    matrices (default: Youden's on the evaluation itself); ``saliency`` (see :data:`Saliency`)
    adds an overlay beside each scored image. ``trained_on`` and
    ``tested_on`` name the datasets in the results' heading (an external test: "CheXpert",
    "MIMIC-CXR-JPG test"; ``tested_on`` defaults to MIMIC-CXR-JPG for a MIMIC ``release``).

    Not run as a doctest (seconds of figures; tests/test_report.py writes such pages):

    >>> write_report("report.html", store, release=release, run=run, evaluation=result)  # doctest: +SKIP
    PosixPath('report.html')
    """
    path = Path(path)
    page = render_report(store, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, page)
    return path
