"""Train on CheXpert, test on MIMIC-CXR: `chexpert predict RUN MIMIC --split test`, then
`chexpert evaluate --truth MIMIC --split test`, scored per study; the report page names both datasets."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

import chexpert
from chexpert import schema
from chexpert.evaluate import evaluate
from chexpert.mimic import MimicRelease, UnlabeledStudiesWarning, truth_index
from chexpert.report import render_report
from chexpert.store import Store
from chexpert.synth.mimic import synthesize_mimic
from chexpert.train import get_recipe, train
from tests.conftest import TRAIN_SIZE

pytestmark = [
    pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning"),
    pytest.mark.filterwarnings("ignore::chexpert.mimic.UnlabeledStudiesWarning"),
]


@pytest.fixture(scope="module")
def run_and_mimic(train_store: Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("external")
    recipe = get_recipe("demo").replace(size=TRAIN_SIZE, batch_size=16, max_steps=4, checkpoint_every=2, keep_best=1, log_every=1)
    train(train_store, base / "run", recipe)
    mimic = synthesize_mimic(base / "mimic", patients=30, test_patients=8, seed=4)
    return base / "run", mimic


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=600)


def test_predict_then_evaluate_on_the_mimic_test_split(run_and_mimic: tuple[Path, Path], tmp_path: Path) -> None:
    run, mimic = run_and_mimic
    out = tmp_path / "mimic-test.csv"
    predicted = _cli("predict", str(run), str(mimic), "--split", "test", "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr
    images = pd.read_csv(out)
    test = chexpert.open(mimic).index("test")
    assert sorted(images["Path"]) == sorted(test.path.tolist())  # every test image, by its MIMIC path
    scored = _cli("evaluate", "--predictions", str(out), "--truth", str(mimic), "--split", "test", "--json")
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["n_studies"] == len(np.unique(test.study))
    # The same scores from the library, per study, against labels read as u-zeros.
    library = evaluate(str(out), str(mimic), split="test", bootstrap=50)
    truth = truth_index(test)
    first = np.unique(test.study, return_index=True)[1]
    for observation in library.table.index:
        j = schema.OBSERVATIONS.index(observation)
        assert int(library.table.loc[observation, "positives"]) == int(truth.labels[first, j].sum())
    # Without --split, the split is found from the predicted studies (MIMIC keys carry none).
    inferred = evaluate(str(out), str(mimic), bootstrap=50)
    assert inferred.n_studies == library.n_studies


def test_uncertain_and_unlabeled_read_as_negative_with_a_warning(run_and_mimic: tuple[Path, Path]) -> None:
    _, mimic = run_and_mimic
    index = chexpert.open(mimic).index()
    truth = truth_index(index)
    assert set(np.unique(truth.labels).tolist()) <= {0, 1}
    np.testing.assert_array_equal(truth.labels == 1, index.labels == schema.Code.POSITIVE)
    from chexpert.mimic import resolve_truth

    release = chexpert.open(mimic)
    assert isinstance(release, MimicRelease)
    quirks = json.loads((mimic / "QUIRKS.json").read_text())
    unlabeled = quirks["unlabeled"][0]
    split = schema.SPLITS[int(index.split[index.study == unlabeled][0])]
    assert split == "test"  # planted there, so that the external test meets it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_truth(release, np.array([]), split=split)
    assert any(issubclass(w.category, UnlabeledStudiesWarning) and f"s{unlabeled}" in str(w.message) for w in caught)


def test_report_page_names_the_training_and_the_test_dataset(run_and_mimic: tuple[Path, Path], tmp_path: Path) -> None:
    run, mimic = run_and_mimic
    from chexpert.train import open_run, predict

    predictions = predict(run, mimic, split="test")
    predictions.write(tmp_path / "p.csv")
    result = evaluate(tmp_path / "p.csv", mimic, split="test", bootstrap=20)
    release = chexpert.open(mimic)
    page = render_report(index=release.index("test"), release=release, run=open_run(run), evaluation=result, trained_on="CheXpert")
    assert "Results on MIMIC-CXR-JPG, trained on CheXpert" in page
