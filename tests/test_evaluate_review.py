"""Evaluation a reviewer accepts: calibration, RadMaj, thresholds carried across splits, aliases, the public layout."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import chexpert
from chexpert import schema
from chexpert.cli import main
from chexpert.errors import CSVFormatError
from chexpert.evaluate import FewPositivesWarning, apply_thresholds, evaluate, metrics, operating_points
from chexpert.synth.testset import synthesize_test
from tests.conftest import predictions_for

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")

LABELS = "chexpert-test-set-labels"


@pytest.fixture(scope="module")
def root(look_alike: Callable[..., Path]) -> Path:
    """A look-alike test set (40 studies) in the public repository's layout, with valid studies."""
    return look_alike(release="test", patients=40, valid_patients=16, seed=7)


@pytest.fixture(scope="module")
def test_predictions(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return predictions_for(chexpert.open(root).index("test"), tmp_path_factory.mktemp("p") / "test.csv", seed=1)


@pytest.fixture(scope="module")
def valid_predictions(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return predictions_for(chexpert.open(root).index("valid"), tmp_path_factory.mktemp("p") / "valid.csv", seed=2)


def _direct_ece(p: np.ndarray, y: np.ndarray) -> float:
    """ECE written out: 10 bins [0, .1), ..., [.9, 1], each weighted by its share of studies."""
    total = 0.0
    for b in range(10):
        low, high = b / 10, (b + 1) / 10
        inside = [(pi, yi) for pi, yi in zip(p.tolist(), y.tolist()) if (low <= pi < high) or (b == 9 and pi == 1.0)]
        if inside:
            mean_p = sum(pi for pi, _ in inside) / len(inside)
            mean_y = sum(yi for _, yi in inside) / len(inside)
            total += len(inside) / len(p) * abs(mean_y - mean_p)
    return total


# Calibration equals an independent computation on the look-alike test set's example predictions.


def test_brier_and_ece_equal_independent_computations(root: Path, test_predictions: Path) -> None:
    result = evaluate(test_predictions, root, bootstrap=0)
    truth = pd.read_csv(root / LABELS / "groundtruth.csv").assign(Study=lambda f: f["Study"].map(schema.study_key)).set_index("Study")
    images = pd.read_csv(test_predictions).assign(Study=lambda f: f["Path"].map(schema.study_key))
    per_study = images.groupby("Study")[list(schema.OBSERVATIONS)].max().loc[truth.index]
    checked = 0
    for observation in schema.OBSERVATIONS:
        p, y = per_study[observation].to_numpy(), truth[observation].to_numpy()
        row = result.table.loc[observation]
        assert abs(row["brier"] - sklearn_metrics.brier_score_loss(y, p)) <= 1e-9
        assert abs(row["ece"] - _direct_ece(p, y)) <= 1e-9
        checked += row["ece"] > 0
    assert checked >= 10  # not a table of zeros


def test_reliability_bins_sum_to_the_studies_and_a_perfect_forecast_has_no_error() -> None:
    p = np.array([0.0, 0.1, 0.1, 0.35, 0.999, 1.0])
    count, mean, positive = metrics.reliability_bins(p, np.array([0, 0, 1, 0, 1, 1]))
    assert count.sum() == 6 and count.tolist() == [1, 2, 0, 1, 0, 0, 0, 0, 0, 2] and np.isnan(mean[2])
    assert metrics.expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0
    with pytest.raises(chexpert.errors.InvalidArgumentError, match="probabilities"):
        metrics.brier_score(np.array([1.5]), np.array([1]))


# The public repository's layout: consensus is radiologists/groundtruth/bc*_gt.csv; all is eight.


@pytest.mark.parametrize("layout", ["public", "folders"])
def test_both_layouts_find_the_consensus_five_and_all_eight(layout: str, root: Path, test_predictions: Path, tmp_path: Path) -> None:
    if layout == "public":
        where = root
        assert sorted(p.name for p in (root / LABELS / "radiologists" / "groundtruth").iterdir()) == [f"bc{i}_gt.csv" for i in (1, 2, 3, 5, 7)]
    else:
        # The same reads moved to the other layout (synthesizing anew would cost a minute).
        where = tmp_path / "folders"
        shutil.copytree(root, where)
        public = where / LABELS / "radiologists"
        for source, folder in ((public / "groundtruth", "consensus_radiologists"), (public / "benchmark_radiologists", "benchmark_radiologists")):
            (where / LABELS / folder).mkdir()
            for file in source.iterdir():
                file.rename(where / LABELS / folder / file.name.replace("_gt", ""))
        shutil.rmtree(public)
    consensus = evaluate(test_predictions, where, radiologists="consensus", bootstrap=0)
    assert [n for n in consensus.data.readers if n != "RadMaj"] == ["bc1", "bc2", "bc3", "bc5", "bc7"]
    everyone = evaluate(test_predictions, where, radiologists="all", bootstrap=0)
    assert [n for n in everyone.data.readers if n != "RadMaj"] == [f"bc{i}" for i in range(1, 9)]
    assert (everyone.table["radiologists"] == 8).all()
    # Same reads in both layouts (the same seed): the files differ only in where they are.
    if layout == "folders":
        from_public = evaluate(test_predictions, root, radiologists="all", bootstrap=0)
        pd.testing.assert_frame_equal(from_public.radiologists, everyone.radiologists)


def test_the_writer_lays_out_readers_as_asked(tmp_path: Path) -> None:
    from chexpert.testset import find_test_set

    for layout, consensus in (("public", "radiologists/groundtruth/bc1_gt.csv"), ("folders", "consensus_radiologists/bc1.csv")):
        out = synthesize_test(tmp_path / layout, patients=1, valid_patients=0, readers=layout)
        assert (out / LABELS / consensus).is_file()
        files = find_test_set(out)
        assert (sorted(files.consensus), sorted(files.benchmark)) == (["bc1", "bc2", "bc3", "bc5", "bc7"], ["bc4", "bc6", "bc8"])
    with pytest.raises(chexpert.errors.InvalidArgumentError, match="readers"):
        synthesize_test(tmp_path / "x", patients=1, readers="flat")


# RadMaj: the majority of the three benchmark radiologists, a point on the curve and a row in the tables.


def test_radmaj_is_the_benchmark_majority_and_is_not_counted_among_readers(root: Path, test_predictions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = evaluate(test_predictions, root, radiologists="all", bootstrap=0)
    assert result.data.majority_of == ("bc4", "bc6", "bc8")
    vote = (np.stack([result.data.readers[name] for name in ("bc4", "bc6", "bc8")]).sum(axis=0) >= 2).astype(float)
    np.testing.assert_array_equal(result.data.readers["RadMaj"], vote)
    points = result.radiologists.set_index(["radiologist", "observation"])
    for j, observation in enumerate(result.data.observations):
        y, v = result.data.labels[:, j], vote[:, j].astype(bool)
        row = points.loc[("RadMaj", observation)]
        assert (row["tp"], row["fp"]) == ((v & y).sum(), (v & ~y).sum())
        under = sum(bool(points.loc[(f"bc{i}", observation), "under_curve"]) for i in range(1, 9))
        counted = result.table.loc[observation, "radiologists_under_curve"]
        assert math.isnan(counted) or counted == under  # RadMaj is not counted among the eight
    assert "RadMaj" in result.to_json()["tasks"]["Edema"]["radiologists"]
    assert main(["evaluate", "--predictions", str(test_predictions), "--truth", str(root), "--bootstrap", "0"]) == 0
    assert "RadMaj" in capsys.readouterr().out
    assert "RadMaj" not in evaluate(test_predictions, root, bootstrap=0, majority=False).data.readers
    two = evaluate(test_predictions, root / LABELS / "groundtruth.csv", radiologists=sorted((root / LABELS).rglob("bc[46].csv")), bootstrap=0)
    assert "RadMaj" not in two.data.readers  # a majority needs three readers


# Thresholds fitted on valid, applied to test.


def test_thresholds_from_a_previous_evaluation_are_applied_unchanged(
    root: Path, valid_predictions: Path, test_predictions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--predictions", str(valid_predictions), "--truth", str(root), "--bootstrap", "0", "--operating-point", "youden",
            "--operating-point", "sensitivity=0.9", "--operating-point", "sensitivity=0", "--json"]  # fmt: skip
    assert main(argv) == 0
    fitted = tmp_path / "valid.json"
    fitted.write_text(capsys.readouterr().out)
    document = json.loads(fitted.read_text())
    assert main(["evaluate", "--predictions", str(test_predictions), "--truth", str(root), "--bootstrap", "0", "--thresholds-from", str(fitted), "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)["applied_thresholds"]
    assert applied["from"] == str(fitted)
    test = evaluate(test_predictions, root, bootstrap=0)
    python = apply_thresholds(test, fitted)
    # Thresholds undefined on valid (an observation with one class there) are left out, with a warning.
    defined = [p for p in document["operating_points"] if (p["tp"] + p["fn"]) and (p["fp"] + p["tn"])]
    assert len(applied["points"]) == len(python) == len(defined) > 10
    for point, fit in zip(python.to_dict(orient="records"), defined):
        j = test.data.observations.index(point["observation"])
        threshold = math.inf if fit["threshold"] is None else fit["threshold"]
        assert point["threshold"] == threshold  # the valid split's threshold, not refitted
        called = test.data.scores[:, j] >= threshold
        y = test.data.labels[:, j]
        assert (point["tp"], point["fp"], point["tn"], point["fn"]) == ((called & y).sum(), (called & ~y).sum(), (~called & ~y).sum(), (~called & y).sum())
        assert point["fitted_sensitivity"] == fit["sensitivity"]
    # A sensitivity of 0 needs no study called positive: +inf, written null in JSON, read back as +inf.
    assert (python.loc[python["target"] == 0.0, "tp"] + python.loc[python["target"] == 0.0, "fp"] == 0).all()
    # The same from the DataFrame in Python.
    valid = evaluate(valid_predictions, root, bootstrap=0)
    direct = apply_thresholds(test, operating_points(valid, youden=True, sensitivity=[0.9, 0.0]))
    pd.testing.assert_frame_equal(direct[["threshold", "tp", "fp", "tn", "fn"]], python[["threshold", "tp", "fp", "tn", "fn"]])
    assert main(["evaluate", "--predictions", str(test_predictions), "--truth", str(root), "--bootstrap", "0", "--thresholds-from", str(fitted)]) == 0
    assert "Thresholds from" in capsys.readouterr().out


def test_thresholds_for_an_unscored_observation_or_without_points_are_errors(
    root: Path, test_predictions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = evaluate(test_predictions, root, bootstrap=0)
    points = operating_points(test, youden=True)
    only_edema = pd.read_csv(test_predictions)[["Path", "Edema"]]
    with pytest.raises(CSVFormatError, match="'Cardiomegaly'.*do not score"):
        apply_thresholds(evaluate(only_edema, root, bootstrap=0), points)
    empty = tmp_path / "plain.json"
    empty.write_text(json.dumps(test.to_json()))
    assert main(["evaluate", "--predictions", str(test_predictions), "--truth", str(root), "--thresholds-from", str(empty)]) == 1
    assert "holds no operating points" in capsys.readouterr().err


# Column names of torchxrayvision; ~ in paths.


def test_torchxrayvision_names_are_read_as_chexpert_observations(root: Path, test_predictions: Path) -> None:
    frame = pd.read_csv(test_predictions)
    renamed = frame.rename(columns={"Pleural Effusion": "Effusion", "Enlarged Cardiomediastinum": "Enlarged_Cardiomediastinum", "Lung Lesion": "lung lesion"})
    expected = evaluate(frame, root, bootstrap=0)
    got = evaluate(renamed, root, bootstrap=0)
    pd.testing.assert_frame_equal(expected.table, got.table)
    both = frame.assign(Effusion=frame["Pleural Effusion"])
    with pytest.raises(CSVFormatError, match="'Pleural Effusion', 'Effusion' all name 'Pleural Effusion'"):
        evaluate(both, root, bootstrap=0)


def test_a_tilde_is_expanded_in_every_path(root: Path, test_predictions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(test_predictions, home / "p.csv")
    shutil.copy(root / LABELS / "groundtruth.csv", home / "groundtruth.csv")
    for name in ("bc4", "bc6", "bc8"):
        shutil.copy(root / LABELS / "radiologists" / "benchmark_radiologists" / f"{name}.csv", home / f"{name}.csv")
    monkeypatch.setenv("HOME", str(home))
    result = evaluate("~/p.csv", "~/groundtruth.csv", radiologists=["~/bc4.csv", "~/bc6.csv", "~/bc8.csv"], bootstrap=0)
    assert result.n_studies == 40 and result.data.majority_of == ("bc4", "bc6", "bc8")


# Intervals: DeLong's shown when the bootstrap is off; none under five positive studies.


def test_without_bootstrap_the_table_shows_delong_and_few_positives_get_no_interval(
    root: Path, test_predictions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(test_predictions, root, bootstrap=0)
    few = [o for o in result.table.index if 0 < min(result.table.loc[o, "positives"], result.table.loc[o, "negatives"]) < 5]
    many = [o for o in result.table.index if min(result.table.loc[o, "positives"], result.table.loc[o, "negatives"]) >= 5]
    assert few and many, result.table[["positives", "negatives"]]
    named = {str(w.message).split(":")[0] for w in caught if w.category is FewPositivesWarning}
    assert named == set(few)
    assert result.interval == "DeLong"
    for observation in few:
        assert not math.isnan(result.table.loc[observation, "auroc"]) and all(math.isnan(x) for x in result.auroc_interval(observation))
        assert math.isnan(evaluate(test_predictions, root, bootstrap=50).table.loc[observation, "auroc_lo"])
    assert main(["evaluate", "--predictions", str(test_predictions), "--truth", str(root), "--bootstrap", "0"]) == 0
    captured = capsys.readouterr()
    assert "intervals from DeLong's variance" in captured.out
    for observation in many:
        lo, hi = result.auroc_interval(observation)
        assert f"{lo:.3f}-{hi:.3f}" in captured.out
    assert f"warning: {few[0]}: " in captured.err
