"""Figures: the files written, and that what is drawn is the evaluation's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chexpert import schema
from chexpert.evaluate import evaluate, metrics

pytest.importorskip("matplotlib")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

from chexpert import plots  # noqa: E402  (after the skip: plots needs matplotlib)

N = 50
TASKS = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion", "Fracture")


@pytest.fixture(scope="module")
def evaluation():
    rng = np.random.default_rng(0)
    studies = [f"CheXpert-v1.0/test/patient{64741 + i}/study1" for i in range(N)]
    labels = pd.DataFrame((rng.random((N, len(TASKS))) < 0.3).astype(int), columns=list(TASKS)).assign(Study=studies)
    # Continuous scores: no ties, so the band's reference below can read the curve at vertices.
    scores = labels[list(TASKS)] * 0.3 + rng.random((N, len(TASKS))) * 0.7
    readers = {name: labels.assign(**{t: np.where(rng.random(N) < 0.8, labels[t], 1 - labels[t]) for t in TASKS}) for name in ("bc4", "bc6")}
    return evaluate(scores.assign(Study=studies), labels, radiologists=readers, bootstrap=200, seed=1)


def test_save_plots_writes_png_and_svg_per_task_and_a_summary(evaluation, tmp_path):
    from PIL import Image

    written = plots.save_plots(evaluation, tmp_path / "plots", observations=["Pleural Effusion"])
    names = sorted(p.name for p in written)
    assert names == sorted(f"{stem}.{fmt}" for stem in ("pleural-effusion", "summary", "reliability") for fmt in ("png", "svg"))
    with Image.open(tmp_path / "plots" / "pleural-effusion.png") as image:
        assert image.format == "PNG" and image.size == (1800, 870)
    svg = (tmp_path / "plots" / "summary.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "Pleural Effusion" in svg and f"{evaluation.mean_auroc:.3f}" in svg  # text stays text
    with pytest.raises(ValueError, match="formats"):
        plots.save_plots(evaluation, tmp_path, formats=["jpg"])


def test_roc_figure_draws_the_curve_radiologists_and_titles_of_the_evaluation(evaluation):
    figure = plots.roc_figure(evaluation, "Edema")
    roc, pr = figure.axes
    j = evaluation.data.observations.index("Edema")
    y, s = evaluation.data.labels[:, j], evaluation.data.scores[:, j]
    fpr, tpr, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    model = next(line for line in roc.get_lines() if line.get_label() == "model")
    np.testing.assert_allclose(np.asarray(model.get_xdata()), fpr)
    np.testing.assert_allclose(np.asarray(model.get_ydata()), tpr)
    row = evaluation.table.loc["Edema"]
    assert f"AUROC {row['auroc']:.3f}" in roc.get_title() and f"{row['auroc_lo']:.3f}-{row['auroc_hi']:.3f}" in roc.get_title()
    assert f"AUPRC {row['auprc']:.3f}" in pr.get_title()
    for reader in evaluation.radiologists[evaluation.radiologists["observation"] == "Edema"].itertuples():
        label = f"{reader.radiologist} ({'under' if reader.under_curve else 'above'} curve)"
        marker = next(line for line in roc.get_lines() if line.get_label() == label)
        assert (np.asarray(marker.get_xdata())[0], np.asarray(marker.get_ydata())[0]) == pytest.approx((1 - reader.specificity, reader.sensitivity))
        point = next(line for line in pr.get_lines() if line.get_label() == reader.radiologist)
        assert (np.asarray(point.get_xdata())[0], np.asarray(point.get_ydata())[0]) == pytest.approx((reader.sensitivity, reader.ppv))
    assert len(roc.collections) == 1 and len(pr.collections) == 1  # the two bootstrap bands
    with pytest.raises(ValueError, match="was not scored"):
        plots.roc_figure(evaluation, "Pneumonia")


def test_bands_are_pointwise_percentiles_of_the_resampled_curves(evaluation):
    j = evaluation.data.observations.index("Edema")
    y, s = evaluation.data.labels[:, j], evaluation.data.scores[:, j]
    counts = metrics.bootstrap_counts(N, evaluation.bootstrap, evaluation.seed)
    sensitivity, precision = [], []
    for b in range(counts.shape[1]):
        rows = np.repeat(np.arange(N), counts[:, b])
        if y[rows].all() or not y[rows].any():
            continue
        fpr, tpr, _ = sklearn_metrics.roc_curve(y[rows], s[rows], drop_intermediate=False)
        # Without ties the curve is a staircase: at each rate, the top of the last step reached.
        sensitivity.append(tpr[np.searchsorted(fpr, plots._GRID, side="right") - 1])
        p, r, _ = sklearn_metrics.precision_recall_curve(y[rows], s[rows])
        p, r = p[:-1][::-1], r[:-1][::-1]  # from the highest threshold down, without sklearn's end point
        precision.append(p[np.minimum(np.searchsorted(r, plots._GRID, side="left"), len(r) - 1)])
    bands = plots._bands(evaluation, j)
    assert bands is not None  # the evaluation has bootstrap resamples
    roc_band, pr_band = bands
    np.testing.assert_allclose(roc_band, metrics.percentile_interval(np.array(sensitivity), evaluation.level), atol=1e-12)
    np.testing.assert_allclose(pr_band, metrics.percentile_interval(np.array(precision), evaluation.level), atol=1e-12)
    assert (roc_band[0] <= roc_band[1]).all() and roc_band[0, 0] >= 0 and roc_band[1, -1] == 1.0


def test_summary_shows_the_five_competition_tasks_and_every_observation(evaluation):
    figure = plots.summary_figure(evaluation)
    titles = [ax.get_title() for ax in figure.axes]
    for task in schema.COMPETITION_TASKS:
        assert any(title.startswith(task + "\n") for title in titles)
    forest = figure.axes[-1]
    assert [t.get_text() for t in forest.get_yticklabels()] == list(evaluation.table.index)
    assert f"mean AUROC of the 5 competition tasks {evaluation.mean_auroc:.3f}" in figure.get_suptitle()
    assert "radiologists under ROC" in figure.get_suptitle()


def test_reliability_diagram_draws_the_bins_of_the_ece(evaluation):
    figure = plots.reliability_figure(evaluation, ["Edema", "Fracture"])
    assert len(figure.axes) == 2
    j = evaluation.data.observations.index("Edema")
    count, mean, positive = metrics.reliability_bins(evaluation.data.scores[:, j], evaluation.data.labels[:, j])
    points = next(line for line in figure.axes[0].get_lines() if line.get_label() == "fraction positive")
    np.testing.assert_allclose(np.asarray(points.get_xdata()), mean[count > 0])
    np.testing.assert_allclose(np.asarray(points.get_ydata()), positive[count > 0])
    assert f"ECE {evaluation.table.loc['Edema', 'ece']:.3f}" in figure.axes[0].get_title()
    with pytest.raises(ValueError, match="not scored"):
        plots.reliability_figure(evaluation, ["No Finding"])


def test_without_bootstrap_the_roc_title_quotes_delong(evaluation):
    from chexpert.evaluate import evaluate as score

    data = evaluation.data
    frame = pd.DataFrame(data.scores, columns=list(data.observations)).assign(Study=list(data.studies))
    truth = pd.DataFrame(data.labels.astype(int), columns=list(data.observations)).assign(Study=list(data.studies))
    delong = score(frame, truth, bootstrap=0)
    lo, hi = delong.table.loc["Edema", ["auroc_delong_lo", "auroc_delong_hi"]]
    assert f"{lo:.3f}-{hi:.3f}" in plots.roc_figure(delong, "Edema").axes[0].get_title()
