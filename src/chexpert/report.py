"""The HTML page of a release and a run: counts, label prevalence, sample images, training curve, ROC curves, AUROCs.

One self-contained file: styles inline, every picture an embedded PNG (``data:`` URI), no script
and no request to anywhere, so it opens offline, from a mail attachment or an archive, and shows
the same in ten years. Figures need matplotlib (``pip install 'chexpert[plots]'``); without it
the page keeps its tables.

>>> write_report("demo/report.html", store, release=release, run=run, evaluation=result)  # doctest: +SKIP
PosixPath('demo/report.html')
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from chexpert import __version__, schema
from chexpert.index import Index

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from chexpert.evaluate import Evaluation
    from chexpert.release import Release
    from chexpert.store import Store
    from chexpert.train.run import Run

__all__ = ["write_report", "render_report", "STATE_COLORS"]

#: Colour of each raw label state, in the charts and the image captions.
STATE_COLORS: Final[dict[str, str]] = {"positive": "#c0392b", "uncertain": "#e69f00", "negative": "#2e86c1", "blank": "#b3b6b7"}
_MODEL_COLOR = "#1f5fa8"
_TASK_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
_SAMPLES = 12
_THUMB = 208

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
    return (
        "<table><tr><th>split</th><th>images</th><th>frontal</th><th>lateral</th><th>studies</th><th>patients</th></tr>"
        + "".join(rows)
        + "</table>"
    )


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
        auroc_ax.scatter(chosen["step"], chosen["mean_auroc"], s=160, facecolors="none", edgecolors="#c0392b", linewidths=1.8, zorder=5, label="kept for the ensemble")
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
        f"<tr><th>observation</th><th>positive studies</th><th>AUROC</th><th>{level} interval</th><th></th>"
        f"<th>AUPRC</th><th>{level} interval</th></tr>"
    )
    rows = []
    names = [t for t in schema.COMPETITION_TASKS if t in table.index] + [o for o in table.index if o not in schema.COMPETITION_TASKS]
    for name in names:
        row = table.loc[name]
        auroc = _num(row["auroc"])
        width = 0 if math.isnan(auroc) else max(0.0, (auroc - 0.5) * 2) * 120
        rows.append(
            f'<tr class="{"task" if name in schema.COMPETITION_TASKS else ""}"><td>{html.escape(str(name))}</td>'
            f"<td>{int(row['positives'])} of {evaluation.n_studies}</td><td>{_fmt(auroc)}</td>"
            f"<td>{_interval(row['auroc_lo'], row['auroc_hi'])}</td>"
            f'<td style="text-align:left"><span class="bar" style="width:{width:.0f}px"></span></td>'
            f"<td>{_fmt(row['auprc'])}</td><td>{_interval(row['auprc_lo'], row['auprc_hi'])}</td></tr>"
        )
    if not math.isnan(evaluation.mean_auroc):
        lo, hi = evaluation.mean_auroc_ci
        rows.insert(
            len([n for n in names if n in schema.COMPETITION_TASKS]),
            f'<tr class="mean"><td>mean of the 5 competition tasks</td><td></td><td>{_fmt(evaluation.mean_auroc)}</td>'
            f"<td>{_fmt(lo)} – {_fmt(hi)}</td><td></td><td></td><td></td></tr>",
        )
    return "<table>" + head + "".join(rows) + "</table>"


def _roc_figure(evaluation: Evaluation) -> str | None:
    if _figure_class() is None:
        return None
    from chexpert.plots import summary_figure

    return _png(summary_figure(evaluation), dpi=80)


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
    trained_on: str | None = None,
    tested_on: str | None = None,
) -> str:
    """The page as a string; see :func:`write_report`.

    >>> page = render_report(index=release.index(), release=release)  # doctest: +SKIP
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
            cards.insert(0, (f"{evaluation.mean_auroc:.3f}", f"mean AUROC, 5 tasks ({_fmt(lo)}–{_fmt(hi)})"))
        roc = _roc_figure(evaluation)
        if tested_on is None and getattr(release, "kind", None) == "mimic":
            tested_on = "MIMIC-CXR-JPG"
        heading = "Validation results" if tested_on is None else f"Results on {html.escape(tested_on)}"
        if trained_on is not None:
            heading += f", trained on {html.escape(trained_on)}"
        sections.append(
            f"<section><h2>{heading} <small>{evaluation.n_studies} studies, per study (max over views), "
            f"{evaluation.bootstrap} bootstrap resamples</small></h2>{_auroc_table(evaluation)}"
            + (f'<h2 style="margin-top:22px">ROC curves <small>with {evaluation.level:.0%} bootstrap bands</small></h2>'
               f'<img class="figure" src="{roc}" alt="ROC curves">' if roc else "")
            + "</section>"
        )
    for key, value in (facts or {}).items():
        cards.append((html.escape(value), html.escape(key)))
    card_html = "".join(f'<div class="card"><div class="value">{v}</div><div class="label">{label}</div></div>' for v, label in cards)
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
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
    recipe), an ``evaluation`` (AUROC table and ROC curves), and ``title``, ``subtitle``, ``notes``
    and ``facts`` (extra cards: label -> value) for the text. ``trained_on`` and ``tested_on`` name
    the datasets in the results' heading (an external test: "CheXpert", "MIMIC-CXR-JPG test";
    ``tested_on`` defaults to MIMIC-CXR-JPG for a MIMIC ``release``).

    >>> write_report("report.html", store, release=release, run=run, evaluation=result)  # doctest: +SKIP
    PosixPath('report.html')
    """
    path = Path(path)
    page = render_report(store, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
