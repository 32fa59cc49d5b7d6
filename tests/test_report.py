"""The report page: self-contained, the release's counts, every score, and it renders in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from PIL import Image

from chexpert import schema
from chexpert.evaluate import evaluate
from chexpert.release import open_release
from chexpert.report import STATE_COLORS, render_report, write_report
from chexpert.store import Store
from chexpert.train import get_recipe, predict, train
from tests.conftest import TRAIN_SIZE

WIDTH, HEIGHT = 1280, 4200
pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")


@pytest.fixture(scope="module")
def page(train_release: Path, train_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    release = open_release(train_release)
    recipe = get_recipe("demo").replace(size=TRAIN_SIZE, batch_size=16, max_steps=8, checkpoint_every=2, log_every=1)
    run = train(train_store, base / "run", recipe)
    predict(run, train_store).write(base / "predictions.csv")
    result = evaluate(base / "predictions.csv", train_release / "valid.csv", bootstrap=50)
    return write_report(base / "report.html", train_store, release=release, run=run, evaluation=result, title="A test report", subtitle="look-alike")


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])


def test_the_page_is_self_contained_and_holds_counts_and_scores(page: Path, train_release: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "url(" not in html and "@import" not in html
    release = open_release(train_release)
    counts = release.index("train").counts()
    assert f"<td>train</td><td>{counts['images']:,}</td><td>{counts['frontal']:,}</td><td>{counts['lateral']:,}</td><td>{counts['studies']:,}</td>" in html
    for observation in schema.OBSERVATIONS:
        assert f"<td>{observation}</td>" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    # 12 samples; prevalence, training, ROC, precision-recall and calibration figures; scored images and mistakes.
    scored = html.count('<figure class="sample"') - 12
    mistakes = html.count('<figure class="sample mistake"')
    assert 0 < scored <= 8 and 0 < mistakes <= 10
    assert len(images) == 12 + 5 + scored + mistakes
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()


def test_the_evaluation_sections_hold_the_evaluation_s_numbers(page: Path, train_release: Path) -> None:
    from chexpert.evaluate import operating_points
    from chexpert.report import policy_sentence
    from chexpert.train import open_run

    html = page.read_text(encoding="utf-8")
    for heading in ("Precision-recall curves", "Calibration", "Confusion at the operating point", "By view and by sex",
                    "Validation images with the model's scores", "most confident false positives", "most confident false negatives"):  # fmt: skip
        assert heading in html, heading
    run = open_run(page.parent / "run")
    assert f"<b>Policy:</b> {policy_sentence(run.recipe.resolved_policy())}" in html.replace("&#x27;", "'")
    result = evaluate(page.parent / "predictions.csv", train_release / "valid.csv", bootstrap=50)
    # Confusion matrices: Youden's point of each competition task, counts as operating_points gives them.
    points = operating_points(result, youden=True, radiologists=False).set_index("observation")
    for task in schema.COMPETITION_TASKS:
        p = points.loc[task]
        assert (f"<h3>{task} <small>score ≥ {p['threshold']:.3f}</small></h3>" in html) and (
            f'<td class="hit">{int(p["tp"])}</td><td class="miss">{int(p["fn"])}</td>' in html
        )
    # The most confident false positive: the highest score of a negative among the competition tasks.
    columns = [result.data.observations.index(t) for t in schema.COMPETITION_TASKS]
    scores, labels = result.data.scores[:, columns], result.data.labels[:, columns]
    i, k = np.unravel_index(np.argmax(np.where(labels, -np.inf, scores)), scores.shape)
    first = html.split("most confident false positives")[1]
    assert first.index(f"{result.data.studies[i]}</span><b>{schema.COMPETITION_TASKS[k]}</b> scored {scores[i, k]:.3f}") < first.index("</figure>")
    # Fewer than five positives: a warning, and no interval on that row.
    few = [o for o in result.table.index if 0 < result.table.loc[o, "positives"] < 5]
    assert few and all(f"<td>{o}</td><td>{int(result.table.loc[o, 'positives'])} of" in html for o in few)
    assert html.count("too few for an interval") == len(
        [o for o in result.table.index if 0 < min(result.table.loc[o, "positives"], result.table.loc[o, "negatives"]) < 5]
    )
    assert 'class="warn">⚠ Fewer than 5 positive' in html


def test_a_saliency_overlay_is_shown_beside_each_scored_image(page: Path, train_release: Path, train_store: Store) -> None:
    from chexpert.store import open_store

    asked: list[tuple[str, str]] = []

    def saliency(path: str, observation: str) -> np.ndarray:
        asked.append((path, observation))
        return np.full((16, 16, 3), (250, 0, 250), np.uint8)

    root = train_release
    result = evaluate(page.parent / "predictions.csv", root / "valid.csv", bootstrap=0)
    html = render_report(open_store(train_store.path), evaluation=result, saliency=saliency)
    assert asked and all(path.startswith("valid/") and observation in schema.COMPETITION_TASKS for path, observation in asked)
    assert html.count('alt="saliency of ') == len(asked) == html.count('<figure class="sample') - 12
    assert "95% interval (DeLong)" in html  # with bootstrap 0 the table shows DeLong's interval


def test_without_matplotlib_figures_the_page_keeps_its_tables(page: Path, train_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chexpert.report as report

    monkeypatch.setattr(report, "_figure_class", lambda: None)
    release = open_release(train_release)
    html = render_report(index=release.index(), release=release)
    assert "<table>" in html and html.count("data:image/png") == 12  # the sample images only
    result = evaluate(page.parent / "predictions.csv", train_release / "valid.csv", bootstrap=0)
    with_scores = render_report(index=release.index(), release=release, evaluation=result)
    assert "Confusion at the operating point" in with_scores and "Calibration" not in with_scores


def test_the_page_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (scripts/test installs Debian's chromium package)")
    shot = tmp_path / "page.png"
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    assert pixels.std() > 30, "the screenshot is blank"
    header = pixels[20:60, 100:400]
    assert (header[..., 2] > header[..., 0] + 40).mean() > 0.9, "the header's blue band is missing"

    def near(color: str, tolerance: int = 12) -> int:
        return int((np.abs(pixels - _rgb(color)).max(axis=-1) <= tolerance).sum())

    assert near(STATE_COLORS["positive"]) > 2000, "the prevalence chart's positive bars are missing"
    assert near(STATE_COLORS["uncertain"]) > 1000, "the uncertain bars are missing"
    assert near("#1f5fa8") > 3000, "the ROC curves and AUROC bars are missing"
    # The sample images are greyscale pictures, not empty boxes.
    grey = (np.abs(pixels[..., 0] - pixels[..., 1]) < 3) & (np.abs(pixels[..., 1] - pixels[..., 2]) < 3) & (pixels[..., 0] > 40) & (pixels[..., 0] < 215)
    assert grey.sum() > 12 * 120 * 120
