"""Scoring files as the competition did: study keys, joins, errors, radiologists, subgroups, compare, CLI."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chexpert import schema, synth
from chexpert.cli import main
from chexpert.errors import CSVFormatError
from chexpert.evaluate import FewPositivesWarning, UndefinedMetricWarning, compare, evaluate, metrics, operating_points
from chexpert.index import read_csv

sklearn_metrics = pytest.importorskip("sklearn.metrics")

N_STUDIES = 48
# The released radiologist files put Lung Lesion before Lung Opacity; these go further and reverse all.
READER_COLUMNS = ("Study", *reversed(schema.OBSERVATIONS))


@dataclass
class Files:
    """A look-alike validation set written to disk, and what was written, for independent checks."""

    truth: Path  # valid.csv, per image, the release's header and spellings
    predictions: Path  # per image, Path column
    readers: list[Path]  # study-level 0/1, columns in another order
    labels: pd.DataFrame  # per study (index: study key), 0/1
    scores: pd.DataFrame  # per image: "study" column plus the observations
    image_rows: pd.DataFrame  # the truth rows as written (strings)


def _study(i: int, split: str = "valid") -> str:
    first = schema.PATIENT_RANGES[split][0]
    return f"{split}/patient{first + i:05d}/study1"


def write_files(directory: Path, *, seed: int = 0, n: int = N_STUDIES, readers: int = 3) -> Files:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 14)) < 0.3).astype(int)
    truth_rows, prediction_rows = [], []
    for i in range(n):
        sex, age, projection = rng.choice(["Male", "Female"]), int(rng.integers(18, 91)), rng.choice(["AP", "PA"])
        for view in range(1, int(rng.integers(1, 4)) + 1):
            lateral = view == 3
            path = f"CheXpert-v1.0-small/{_study(i)}/view{view}_{'lateral' if lateral else 'frontal'}.jpg"
            truth_rows.append([path, sex, str(age), "Lateral" if lateral else "Frontal", "" if lateral else projection, *(f"{x:.1f}" for x in labels[i])])
            # Rounded scores make ties between studies common.
            prediction_rows.append([path, *np.round(np.clip(0.35 * labels[i] + 0.65 * rng.random(14), 0, 1), 2)])
    image_rows = pd.DataFrame(truth_rows, columns=list(schema.CSV_COLUMNS))
    predictions = pd.DataFrame(prediction_rows, columns=["Path", *schema.OBSERVATIONS])
    image_rows.to_csv(directory / "valid.csv", index=False)
    predictions.to_csv(directory / "predictions.csv", index=False)
    studies = [_study(i) for i in range(n)]
    reader_paths = []
    for r in range(readers):
        reads = np.where(rng.random((n, 14)) < 0.8, labels, 1 - labels)
        frame = pd.DataFrame(reads, columns=list(schema.OBSERVATIONS)).assign(Study=[f"CheXpert-v1.0/{s}" for s in studies])
        reader_paths.append(directory / f"bc{4 + 2 * r}.csv")
        frame[list(READER_COLUMNS)].to_csv(reader_paths[-1], index=False)
    scores = predictions.assign(study=[p.split("/", 1)[1].rsplit("/", 1)[0] for p in predictions["Path"]]).drop(columns="Path")
    return Files(
        directory / "valid.csv",
        directory / "predictions.csv",
        reader_paths,
        pd.DataFrame(labels, index=studies, columns=list(schema.OBSERVATIONS)),
        scores,
        image_rows,
    )


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return write_files(tmp_path)


def _study_scores(files: Files, how: str = "max") -> pd.DataFrame:
    return files.scores.groupby("study").agg(how).loc[files.labels.index]


# Scores: per study, like scikit-learn on the study-level table built independently with pandas.


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_image_predictions_are_scored_per_study_like_sklearn(files, aggregate):
    result = evaluate(files.predictions, files.truth, aggregate=aggregate, bootstrap=200)
    scores = _study_scores(files, aggregate)
    assert result.n_studies == N_STUDIES
    assert list(result.table.index) == list(schema.OBSERVATIONS)
    for observation in schema.OBSERVATIONS:
        y, s = files.labels[observation].to_numpy(), scores[observation].to_numpy()
        row = result.table.loc[observation]
        assert row["positives"] == y.sum() and row["negatives"] == N_STUDIES - y.sum()
        assert row["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
        assert row["auprc"] == pytest.approx(sklearn_metrics.average_precision_score(y, s), abs=1e-12)
        assert row["auroc_lo"] < row["auroc"] < row["auroc_hi"]
        assert row["auroc_delong_lo"] < row["auroc"] < row["auroc_delong_hi"]
        assert row["auprc_lo"] < row["auprc"] < row["auprc_hi"]
    expected_mean = np.mean([result.table.loc[t, "auroc"] for t in schema.COMPETITION_TASKS])
    assert result.mean_auroc == pytest.approx(expected_mean)
    assert result.mean_auroc_ci[0] < result.mean_auroc < result.mean_auroc_ci[1]


def test_intervals_are_percentiles_of_the_shared_resamples(files):
    result = evaluate(files.predictions, files.truth, bootstrap=300, seed=4)
    scores = _study_scores(files)
    counts = metrics.bootstrap_counts(N_STUDIES, 300, 4)
    for j, observation in enumerate(schema.OBSERVATIONS):
        resampled = metrics.bootstrap_auroc(scores[observation].to_numpy(), files.labels[observation].to_numpy(), counts)
        np.testing.assert_array_equal(result.bootstrap_auroc[:, j], resampled)
        lo, hi = np.nanpercentile(resampled, [2.5, 97.5])
        assert (result.table.loc[observation, "auroc_lo"], result.table.loc[observation, "auroc_hi"]) == pytest.approx((lo, hi), abs=1e-15)
    competition = [schema.OBSERVATIONS.index(t) for t in schema.COMPETITION_TASKS]
    lo, hi = np.nanpercentile(result.bootstrap_auroc[:, competition].mean(axis=1), [2.5, 97.5])
    assert result.mean_auroc_ci == pytest.approx((lo, hi), abs=1e-15)


def test_row_order_never_matters(files, tmp_path):
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(9)
    predictions = pd.read_csv(files.predictions)
    predictions.sample(frac=1.0, random_state=1).to_csv(shuffled / "predictions.csv", index=False)
    files.image_rows.sample(frac=1.0, random_state=2).to_csv(shuffled / "valid.csv", index=False)
    readers = []
    for path in files.readers:
        frame = pd.read_csv(path)
        readers.append(shuffled / path.name)
        frame.iloc[rng.permutation(len(frame))].to_csv(readers[-1], index=False)
    a = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=500, seed=3, aggregate="mean")
    b = evaluate(shuffled / "predictions.csv", shuffled / "valid.csv", radiologists=readers, bootstrap=500, seed=3, aggregate="mean")
    assert a.to_json() == b.to_json()
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.radiologists, b.radiologists, check_exact=True)
    np.testing.assert_array_equal(a.bootstrap_auroc, b.bootstrap_auroc)


def test_study_level_files_join_across_release_prefixes_and_trailing_slashes(tmp_path):
    rng = np.random.default_rng(2)
    n = 30
    studies = [_study(i, "test") for i in range(n)]
    labels = (rng.random((n, 14)) < 0.4).astype(int)
    truth = pd.DataFrame(labels, columns=list(schema.OBSERVATIONS)).assign(Study=[f"CheXpert-v1.0/{s}" for s in studies])
    truth[["Study", *schema.OBSERVATIONS]].to_csv(tmp_path / "groundtruth.csv", index=False)
    scores = rng.random((n, 5))
    predictions = pd.DataFrame(scores, columns=list(schema.COMPETITION_TASKS)).assign(Study=[f"CheXpert-v1.0-small/{s}/" for s in studies])
    result = evaluate(predictions, tmp_path / "groundtruth.csv", bootstrap=0)
    assert list(result.table.index) == [o for o in schema.OBSERVATIONS if o in schema.COMPETITION_TASKS]
    for j, task in enumerate(schema.COMPETITION_TASKS):
        expected = sklearn_metrics.roc_auc_score(labels[:, schema.OBSERVATIONS.index(task)], scores[:, j])
        assert result.table.loc[task, "auroc"] == pytest.approx(expected, abs=1e-12)
    assert result.table["auroc_lo"].isna().all()
    assert result.to_json()["mean_auroc_ci"] == [None, None] and result.to_json()["mean_auroc"] is not None


def test_truth_as_an_index_or_a_dataframe_gives_the_same_numbers(files):
    from_path = evaluate(files.predictions, files.truth, bootstrap=100)
    from_index = evaluate(files.predictions, read_csv(files.truth), bootstrap=100)
    frame = files.image_rows.copy()
    for observation in schema.OBSERVATIONS:
        frame[observation] = frame[observation].astype(float)
    from_frame = evaluate(pd.read_csv(files.predictions), frame, bootstrap=100)
    assert from_path.to_json() == from_index.to_json() == from_frame.to_json()


# Errors name the file and the studies.


def _rewrite(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = path.with_name("edited_" + path.name)
    edit(frame).to_csv(out, index=False)
    return out


STUDY0, STUDY1 = _study(0), _study(1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f[~f["Path"].str.contains(STUDY1 + "/")], rf"missing: {STUDY1}\b"),
        (lambda f: pd.concat([f, f.iloc[:1].assign(Path=f"CheXpert-v1.0-small/{_study(900)}/view1_frontal.jpg")]), rf"not in the truth .*{_study(900)}"),
        (lambda f: pd.concat([f, f.iloc[:1]]), rf"Path appears more than once: {STUDY0}/view1_frontal.jpg"),
        (lambda f: f.assign(Edema=np.where(f["Path"].str.contains(STUDY1 + "/"), "", f["Edema"])), rf"NaN .*{STUDY1}\b.*'Edema'"),
        (lambda f: f.assign(Edema=np.where(f["Path"].str.contains(STUDY0 + "/"), "inf", f["Edema"])), rf"or infinite for {STUDY0}\b.*'Edema'"),
        (lambda f: f.assign(Edema=np.where(f["Path"].str.contains(STUDY0 + "/"), "high", f["Edema"])), rf"'Edema' is not a number for {STUDY0} \('high'\)"),
        (
            lambda f: f.rename(columns={"Pleural Effusion": "Pleural Effusions"}),
            r"unknown predictions column\(s\) 'Pleural Effusions'; valid: .*Pleural Effusion",
        ),
        (lambda f: f.assign(Path=np.where(f.index == 0, "images/view1.jpg", f["Path"])), r"not a CheXpert study path on row 2 'images/view1.jpg'"),
        (lambda f: f.drop(columns=list(schema.OBSERVATIONS)), r"none of the 14 observations"),
    ],
    ids=["missing", "extra", "duplicate", "nan", "infinite", "text", "column", "path", "no-observation"],
)
def test_bad_predictions_raise_errors_naming_file_and_studies(files, edit, message):
    bad = _rewrite(files.predictions, edit)
    with pytest.raises(CSVFormatError, match=message) as raised:
        evaluate(bad, files.truth, bootstrap=0)
    assert raised.value.file == str(bad)


def test_duplicate_study_rows_are_an_error(files):
    predictions = _study_scores(files).reset_index(names="Study")
    evaluate(predictions, files.truth, bootstrap=0)
    with pytest.raises(CSVFormatError, match=f"Study appears more than once: {STUDY1}"):
        evaluate(pd.concat([predictions, predictions.iloc[[1]]]), files.truth, bootstrap=0)


def test_truth_images_of_a_study_must_agree(files):
    row = files.image_rows.iloc[[0]]
    assert STUDY0 in row["Path"].iloc[0]
    flipped = "1.0" if row["Edema"].iloc[0] == "0.0" else "0.0"
    extra = row.assign(Path=f"CheXpert-v1.0-small/{STUDY0}/view9_frontal.jpg", Edema=flipped)
    path = files.truth.with_name("disagree.csv")
    pd.concat([files.image_rows, extra]).to_csv(path, index=False)
    with pytest.raises(CSVFormatError, match=rf"disagree .*'Edema'.*: {STUDY0}$"):
        evaluate(files.predictions, path, bootstrap=0)


@pytest.mark.parametrize(("value", "shown"), [("-1.0", "-1"), ("", "nan")])
def test_truth_must_be_zero_or_one(files, value, shown):
    bad = _rewrite(files.truth, lambda f: f.assign(Edema=np.where(f["Path"].str.contains(STUDY0 + "/"), value, f["Edema"])))
    with pytest.raises(CSVFormatError, match=rf"truth 'Edema' must be 0 or 1 .*{STUDY0} \({shown}\)"):
        evaluate(files.predictions, bad, bootstrap=0)


def test_study_level_truth_must_label_what_is_predicted(files, tmp_path):
    truth = files.labels[["Edema"]].reset_index(names="Study")
    with pytest.raises(CSVFormatError, match=r"predictions score 'No Finding'.*which the truth .* does not label"):
        evaluate(files.predictions, truth, bootstrap=0)


def test_radiologist_missing_a_study_is_an_error(files):
    bad = _rewrite(files.readers[0], lambda f: f.iloc[1:])
    with pytest.raises(CSVFormatError, match=rf"radiologist 'edited_bc4'.*missing: {STUDY0}\b") as raised:
        evaluate(files.predictions, files.truth, radiologists=[bad], bootstrap=0)
    assert raised.value.file == str(bad)


def test_undefined_task_is_nan_with_a_named_warning(files):
    truth = files.labels.assign(Fracture=0).reset_index(names="Study")
    with pytest.warns(UndefinedMetricWarning, match="Fracture: AUROC is undefined with 0 positives among 48 studies"):
        result = evaluate(files.predictions, truth, radiologists=files.readers, bootstrap=100)
    fracture = result.to_json()["tasks"]["Fracture"]
    assert fracture["auroc"] is None and fracture["auroc_ci"] == [None, None] and fracture["auroc_delong_ci"] == [None, None]
    assert fracture["auprc"] is None and fracture["auprc_ci"] == [None, None] and fracture["positives"] == 0
    assert fracture["radiologists_under_curve"] is None and fracture["resamples"] == 0
    for reader in fracture["radiologists"].values():  # no positives: no sensitivity, no curve to be under
        assert reader["sensitivity"] is None and reader["curve_sensitivity"] is None and reader["under_curve"] is None
        assert reader["specificity"] is not None
    assert result.to_json()["mean_auroc"] is not None  # Fracture is not a competition task
    # Undefined numbers are NaN, never pd.NA: a row of the table holds plain floats.
    row = result.table.loc["Fracture"]
    assert all(isinstance(row[c], float) and math.isnan(row[c]) for c in ("auroc", "auroc_lo", "auprc", "radiologists_under_curve"))


# Radiologists.


def _curve_sensitivity_by_segments(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """Highest sensitivity of sklearn's ROC polyline at ``fpr``, segment by segment."""
    xs, ys, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    best = 0.0
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= fpr + 1e-12 and fpr - 1e-12 <= x1:
            best = max(best, y1 if x1 == x0 else y0 + (y1 - y0) * (fpr - x0) / (x1 - x0))
    return best


def test_radiologists_are_matched_by_column_name_and_counted_under_the_curve(files):
    result = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=0)
    scores = _study_scores(files)
    # The three radiologists, then their majority vote (RadMaj), which the counts below leave out.
    assert list(result.radiologists["radiologist"].unique()) == ["bc4", "bc6", "bc8", "RadMaj"]
    for observation in schema.OBSERVATIONS:
        y, s = files.labels[observation].to_numpy(), scores[observation].to_numpy()
        under = 0
        for path in files.readers:
            reads = (
                pd.read_csv(path)
                .assign(Study=lambda f: f["Study"].str.replace("CheXpert-v1.0/", ""))
                .set_index("Study")
                .loc[files.labels.index, observation]
                .to_numpy()
            )
            sensitivity, specificity = reads[y == 1].mean(), 1 - reads[y == 0].mean()
            curve = _curve_sensitivity_by_segments(s, y, 1 - specificity)
            row = result.radiologists.set_index(["radiologist", "observation"]).loc[(path.stem, observation)]
            assert (row["sensitivity"], row["specificity"]) == pytest.approx((sensitivity, specificity))
            assert row["curve_sensitivity"] == pytest.approx(curve)
            assert row["tp"] == (reads[y == 1] == 1).sum() and row["fp"] == (reads[y == 0] == 1).sum()
            if abs(curve - sensitivity) > 1e-9:
                assert bool(row["under_curve"]) == (curve > sensitivity)
            under += bool(row["under_curve"])
        assert result.table.loc[observation, "radiologists_under_curve"] == under
        assert result.table.loc[observation, "radiologists"] == 3
    expected = np.mean([result.table.loc[t, "radiologists_under_curve"] for t in schema.COMPETITION_TASKS])
    assert result.mean_radiologists_under_curve == pytest.approx(expected)


def test_radiologist_column_order_does_not_change_anything(files, tmp_path):
    canonical = []
    for path in files.readers:
        frame = pd.read_csv(path)
        canonical.append(tmp_path / f"canonical_{path.name}")
        frame[["Study", *schema.OBSERVATIONS]].to_csv(canonical[-1], index=False)
    a = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=0)
    b = evaluate(files.predictions, files.truth, radiologists=dict(zip(["bc4", "bc6", "bc8"], canonical)), bootstrap=0)
    pd.testing.assert_frame_equal(a.radiologists, b.radiologists, check_exact=True)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


def test_radiologists_reading_a_subset_of_observations(files):
    reads = pd.read_csv(files.readers[0])[["Study", "Edema", "Cardiomegaly"]]
    result = evaluate(files.predictions, files.truth, radiologists=[reads], bootstrap=0)
    assert set(result.radiologists["observation"]) == {"Edema", "Cardiomegaly"}
    assert result.radiologists["radiologist"].unique().tolist() == ["radiologist 1"]
    assert result.table.loc["Edema", "radiologists"] == 1 and pd.isna(result.table.loc["Atelectasis", "radiologists_under_curve"])
    assert result.to_json()["tasks"]["Atelectasis"]["radiologists_under_curve"] is None
    assert math.isnan(result.mean_radiologists_under_curve)


# JSON, subgroups, operating points, comparisons.


def test_json_has_exactly_the_documented_structure(files):
    result = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=100, seed=0)
    document = json.loads(json.dumps(result.to_json()))
    assert set(document) == {
        "n_studies", "level", "bootstrap", "seed", "aggregate", "tasks", "mean_auroc", "mean_auroc_ci", "mean_auroc_tasks", "mean_radiologists_under_curve",
        "interval", "radmaj_of",
    }  # fmt: skip
    assert document["interval"] == "bootstrap" and document["radmaj_of"] == ["bc4", "bc6", "bc8"]
    assert (document["n_studies"], document["level"], document["bootstrap"], document["seed"], document["aggregate"]) == (N_STUDIES, 0.95, 100, 0, "max")
    assert list(document["tasks"]) == list(schema.OBSERVATIONS)
    readers = result.radiologists.set_index(["observation", "radiologist"])
    for observation, task in document["tasks"].items():
        row = result.table.loc[observation]
        assert set(task) == {
            "auroc", "auroc_ci", "auroc_delong_ci", "auprc", "auprc_ci", "positives", "negatives", "resamples",
            "radiologists_under_curve", "radiologists", "brier", "ece",
        }  # fmt: skip
        assert (task["brier"], task["ece"]) == (row["brier"], row["ece"])
        assert task["auroc"] == row["auroc"] and task["auroc_ci"] == [row["auroc_lo"], row["auroc_hi"]]
        assert task["auroc_delong_ci"] == [row["auroc_delong_lo"], row["auroc_delong_hi"]]
        assert task["auprc"] == row["auprc"] and task["auprc_ci"] == [row["auprc_lo"], row["auprc_hi"]]
        assert (task["positives"], task["negatives"], task["resamples"]) == (row["positives"], row["negatives"], row["resamples"])
        assert isinstance(task["radiologists_under_curve"], int) and task["radiologists_under_curve"] == row["radiologists_under_curve"]
        # What the radiologists' table shows: each one's sensitivity / specificity and the curve's sensitivity there.
        assert list(task["radiologists"]) == ["bc4", "bc6", "bc8", "RadMaj"]
        assert sum(r["under_curve"] for name, r in task["radiologists"].items() if name != "RadMaj") == task["radiologists_under_curve"]
        for name, reader in task["radiologists"].items():
            expected = readers.loc[(observation, name)]
            assert set(reader) == {"sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn", "curve_sensitivity", "under_curve"}
            for key in ("sensitivity", "specificity", "ppv", "npv", "curve_sensitivity"):
                assert reader[key] == expected[key], (observation, name, key)
            assert [reader[k] for k in ("tp", "fp", "tn", "fn")] == [int(expected[k]) for k in ("tp", "fp", "tn", "fn")]
            assert reader["under_curve"] is bool(expected["under_curve"])
    assert document["mean_auroc"] == result.mean_auroc and document["mean_auroc_ci"] == list(result.mean_auroc_ci)
    assert document["mean_radiologists_under_curve"] == result.mean_radiologists_under_curve
    assert document["mean_radiologists_under_curve"] == np.mean([document["tasks"][t]["radiologists_under_curve"] for t in schema.COMPETITION_TASKS])


def test_the_mean_covers_the_competition_tasks_scored_and_says_how_many(files: Files) -> None:
    predictions = pd.read_csv(files.predictions)[["Path", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"]]
    result = evaluate(predictions, files.truth, bootstrap=50)
    document = result.to_json()
    assert list(document["tasks"]) == ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis"]
    assert document["mean_auroc"] == pytest.approx(np.mean([document["tasks"][t]["auroc"] for t in document["tasks"]]), abs=1e-15)
    assert document["mean_auroc_tasks"] == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema"]
    assert result.mean_auroc_label == "Mean of 4 of 5 competition tasks (no Pleural Effusion)"


def test_a_task_without_positives_leaves_the_mean_and_says_so(files: Files) -> None:
    """train ranks checkpoints by this same mean (chexpert.train.loop._validate), so both mean one thing."""
    from chexpert.evaluate.scoring import mean_auroc_tasks

    truth = pd.read_csv(files.truth)
    truth["Edema"] = 0.0
    with pytest.warns(UndefinedMetricWarning, match="Edema"):
        result = evaluate(files.predictions, truth, bootstrap=20)
    expected = [t for t in schema.COMPETITION_TASKS if t != "Edema"]
    assert result.mean_auroc == pytest.approx(result.table.loc[expected, "auroc"].mean(), abs=1e-15)
    assert mean_auroc_tasks(result.table["auroc"].to_dict()) == result.mean_auroc_tasks == tuple(expected)
    assert "4 of 5" in result.mean_auroc_label and "no Edema" in result.mean_auroc_label


@pytest.mark.parametrize("by", ["sex", "age-band", "projection"])
def test_subgroups_are_scored_on_their_own_studies(files, by):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result = evaluate(files.predictions, files.truth, bootstrap=0, by=by)
    rows = files.image_rows.assign(study=files.scores["study"].to_numpy())
    first = rows.groupby("study").first().loc[files.labels.index]
    if by == "sex":
        groups = first["Sex"]
    elif by == "age-band":
        groups = pd.cut(first["Age"].astype(int), [0, 39, 59, 79, 200], labels=["<40", "40-59", "60-79", "80+"]).astype(str)
    else:
        groups = first["AP/PA"]  # each study's frontal images share one projection in the fixture
    assert set(result.subgroups) == set(groups)
    assert sum(sub.n_studies for sub in result.subgroups.values()) == N_STUDIES
    scores = _study_scores(files)
    for name, sub in result.subgroups.items():
        members = groups.index[groups == name]
        assert sub.n_studies == len(members)
        y, s = files.labels.loc[members, "Edema"], scores.loc[members, "Edema"]
        if 0 < y.sum() < len(y):
            assert sub.table.loc["Edema", "auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
    document = result.to_json()
    assert document["by"] == by and set(document["subgroups"]) == set(result.subgroups)
    assert set(document) == {*evaluate(files.predictions, files.truth, bootstrap=0).to_json(), "by", "subgroups"}
    frame = result.to_frame()
    assert frame["group"].iloc[0] == "all" and set(frame["group"]) == {"all", *result.subgroups}


def test_age_bands_are_documented_edges():
    from chexpert.evaluate.io import subgroup_of

    metadata = pd.DataFrame({"age": [0, 18, 39, 40, 59, 60, 79, 80, 90]})
    assert subgroup_of(metadata, "age-band").tolist() == ["unknown", "<40", "<40", "40-59", "40-59", "60-79", "60-79", "80+", "80+"]


def test_subgroups_of_study_level_truth_need_metadata(files):
    truth = files.labels.reset_index(names="Study")
    with pytest.raises(CSVFormatError, match="pass metadata="):
        evaluate(files.predictions, truth, bootstrap=0, by="sex")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        with_metadata = evaluate(files.predictions, truth, bootstrap=0, by="sex", metadata=files.truth)
        direct = evaluate(files.predictions, files.truth, bootstrap=0, by="sex")
    assert with_metadata.to_json() == direct.to_json()


def test_operating_points_from_an_evaluation(files):
    result = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=0)
    points = operating_points(result, sensitivity=[0.9], specificity=[0.8])
    assert set(points["criterion"]) == {"sensitivity", "specificity", "youden", "radiologists"}
    assert len(points) == 4 * 14
    scores = _study_scores(files)
    for row in points.itertuples():
        y, s = files.labels[row.observation].to_numpy(), scores[row.observation].to_numpy()
        called = s >= row.threshold
        assert (row.tp, row.fp, row.tn, row.fn) == (
            (called & (y == 1)).sum(),
            (called & (y == 0)).sum(),
            (~called & (y == 0)).sum(),
            (~called & (y == 1)).sum(),
        )
        if row.criterion == "sensitivity":
            assert row.sensitivity >= 0.9
        elif row.criterion in ("specificity", "radiologists"):
            assert row.specificity >= row.target
    mean_specificity = result.radiologists.groupby("observation")["specificity"].mean()
    radiologists = points[points["criterion"] == "radiologists"].set_index("observation")["target"]
    pd.testing.assert_series_equal(radiologists.sort_index(), mean_specificity.sort_index(), check_names=False)
    with pytest.raises(TypeError, match="sequences"):
        operating_points(result, sensitivity=0.9)  # type: ignore[arg-type]  # a number where sequences belong: the error under test


def test_compare_a_file_with_itself_and_with_a_worse_one(files, tmp_path):
    same = compare(files.predictions, files.predictions, files.truth, bootstrap=200)
    assert (same.table["difference"] == 0).all() and (same.table["p_value"] == 1).all()
    assert (same.table["difference_lo"] == 0).all() and (same.table["difference_hi"] == 0).all()
    rng = np.random.default_rng(4)
    noisy = pd.read_csv(files.predictions)
    for observation in schema.OBSERVATIONS:
        noisy[observation] = np.clip(noisy[observation] + rng.normal(0, 0.3, len(noisy)), 0, 1)
    noisy.sample(frac=1.0, random_state=0).to_csv(tmp_path / "noisy.csv", index=False)
    result = compare(files.predictions, tmp_path / "noisy.csv", files.truth, bootstrap=300, seed=2)
    a, b = _study_scores(files), noisy.assign(study=files.scores["study"].to_numpy()).drop(columns="Path").groupby("study").max().loc[files.labels.index]
    counts = metrics.bootstrap_counts(N_STUDIES, 300, 2)
    for observation in schema.OBSERVATIONS:
        y = files.labels[observation].to_numpy()
        row = result.table.loc[observation]
        assert row["auroc_a"] == pytest.approx(sklearn_metrics.roc_auc_score(y, a[observation]))
        assert row["auroc_b"] == pytest.approx(sklearn_metrics.roc_auc_score(y, b[observation]))
        paired = metrics.bootstrap_auroc(a[observation].to_numpy(), y, counts) - metrics.bootstrap_auroc(b[observation].to_numpy(), y, counts)
        assert (row["difference_lo"], row["difference_hi"]) == pytest.approx(tuple(np.nanpercentile(paired, [2.5, 97.5])), abs=1e-15)
        test = metrics.delong_test(a[observation].to_numpy(), b[observation].to_numpy(), y)
        assert row["p_value"] == pytest.approx(test["p_value"]) and row["z"] == pytest.approx(test["z"])
    assert result.mean_difference > 0 and result.mean_difference_ci[0] < result.mean_difference < result.mean_difference_ci[1]
    assert result.to_json()["b"] == str(tmp_path / "noisy.csv")


# The command line.


def test_cli_evaluate_json_is_the_library_result(files, capsys):
    argv = ["evaluate", "--predictions", str(files.predictions), "--truth", str(files.truth), "--bootstrap", "200", "--seed", "5"]
    for path in files.readers:
        argv += ["--radiologists", str(path)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=200, seed=5).to_json()
    assert printed == json.loads(json.dumps(expected))
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Mean of 5 competition tasks" in out and "Pleural Effusion" in out and "bc8" in out
    assert f"{expected['tasks']['Edema']['auroc']:.3f}" in out


def test_cli_evaluate_subgroups_and_operating_points(files, capsys):
    argv = ["evaluate", "--predictions", str(files.predictions), "--truth", str(files.truth), "--bootstrap", "50"]
    argv += ["--by", "sex", "--operating-point", "youden", "--operating-point", "sensitivity=0.9"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert set(document["subgroups"]) <= {"Male", "Female"} and document["by"] == "sex"
    assert {p["criterion"] for p in document["operating_points"]} == {"youden", "sensitivity"}
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AUROC by sex" in out and "Operating points" in out


def test_cli_errors_name_the_studies_and_exit_1(files, capsys):
    bad = _rewrite(files.predictions, lambda f: f[~f["Path"].str.contains(STUDY1 + "/")])
    assert main(["evaluate", "--predictions", str(bad), "--truth", str(files.truth), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and STUDY1 in captured.err and str(bad) in captured.err
    with pytest.raises(SystemExit):
        main(["evaluate", "--predictions", str(files.predictions), "--truth", str(files.truth), "--operating-point", "sensitivity=2"])
    assert "must be a number in [0, 1]" in capsys.readouterr().err


def test_cli_compare(files, capsys):
    argv = ["compare", str(files.predictions), str(files.predictions), "--truth", str(files.truth), "--bootstrap", "100"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["n_studies"] == N_STUDIES and document["mean_difference"] == 0.0
    assert document["tasks"]["Edema"]["p_value"] == 1.0 and document["tasks"]["Edema"]["difference_ci"] == [0.0, 0.0]
    assert main(argv) == 0
    assert "AUROC difference A - B" in capsys.readouterr().out


def test_synthesized_test_set_scores_alike_from_groundtruth_and_from_image_labels(tmp_path):
    rows = synth.synth_rows("test", patients=80, seed=3)
    (tmp_path / "test_labels.csv").write_bytes(synth.csv_bytes(rows))
    (tmp_path / "groundtruth.csv").write_bytes(synth.csv_bytes(synth.groundtruth_rows(rows), columns=("Study", *schema.OBSERVATIONS)))
    rng = np.random.default_rng(0)
    labels = np.array([[float(r[o]) for o in schema.COMPETITION_TASKS] for r in rows])
    predictions = pd.DataFrame(np.clip(0.4 * labels + 0.6 * rng.random(labels.shape), 0, 1), columns=list(schema.COMPETITION_TASKS))
    predictions.insert(0, "Path", [r["Path"] for r in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        from_groundtruth = evaluate(predictions, tmp_path / "groundtruth.csv", by="age-band", metadata=tmp_path / "test_labels.csv", bootstrap=100)
        from_images = evaluate(predictions, tmp_path / "test_labels.csv", by="age-band", bootstrap=100)
    assert from_groundtruth.n_studies == len({r["Path"].rsplit("/", 1)[0] for r in rows})
    assert from_groundtruth.to_json() == from_images.to_json()
    assert not math.isnan(from_groundtruth.mean_auroc)


# A task or a subgroup without positives: "–" in the tables, null in JSON, and the run goes on.


def _truth_without_fracture(files: Files) -> Path:
    """valid.csv with no positive Fracture, so Fracture's AUROC (and each subgroup's) is undefined."""
    return _rewrite(files.truth, lambda f: f.assign(Fracture="0.0"))


@pytest.mark.parametrize(
    "extra", [[], ["--json"], ["--by", "age-band"], ["--by", "sex", "--json"], ["--plots", "PLOTS"]], ids=["table", "json", "by", "by-json", "plots"]
)
def test_cli_goes_on_when_a_task_has_no_positives(files, tmp_path, capsys, extra):
    if "--plots" in extra:
        pytest.importorskip("matplotlib")
        extra = ["--plots", str(tmp_path / "plots")]
    truth = _truth_without_fracture(files)
    argv = ["evaluate", "--predictions", str(files.predictions), "--truth", str(truth), "--bootstrap", "50"]
    argv += [arg for path in files.readers for arg in ("--radiologists", str(path))]
    assert main([*argv, *extra]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "warning: Fracture: AUROC is undefined with 0 positives among 48 studies" in captured.err
    if "--json" in extra:
        document = json.loads(captured.out)
        groups = [document, *document.get("subgroups", {}).values()]
        assert len(groups) == (3 if "--by" in extra else 1)
        for group in groups:
            fracture = group["tasks"]["Fracture"]
            assert fracture["positives"] == 0 and fracture["auroc"] is None and fracture["auroc_ci"] == [None, None]
            assert fracture["radiologists_under_curve"] is None
        return
    rows = [[cell.strip() for cell in line.split("│")] for line in captured.out.splitlines() if line.strip().startswith("Fracture")]
    # The main table: no positives, every ranking number undefined ("–"), but the Brier score and
    # ECE are defined (how far the scores are from 0); the radiologists' table: a
    # specificity but no sensitivity, and no curve to be under or above.
    assert rows[0][1] == "0" and set(rows[0][2:5] + rows[0][7:]) == {"–"}, rows[0]
    assert all(0.0 <= float(cell) <= 1.0 for cell in rows[0][5:7]), rows[0]
    assert all(cell.startswith("– / 0.") and cell.endswith("(–)") for cell in rows[1][1:]), rows[1]
    if "--by" in extra:
        assert "AUROC by age-band" in captured.out and set(rows[2][1:]) == {"–"}, rows[2]
    if "--plots" in extra:
        assert (tmp_path / "plots" / "fracture.png").stat().st_size > 0 and (tmp_path / "plots" / "summary.svg").stat().st_size > 0
        assert "AUROC undefined (0 positive, 48 negative)" in (tmp_path / "plots" / "fracture.svg").read_text()


def test_subgroup_without_positives_is_scored_as_undefined(files):
    # Positives for Edema only among men: the women's Edema AUROC is undefined, the rest is scored.
    sex = files.image_rows.assign(study=files.scores["study"].to_numpy()).groupby("study")["Sex"].first()
    labels = files.labels.copy()
    labels.loc[sex.index[sex == "Female"], "Edema"] = 0
    truth = labels.reset_index(names="Study")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(files.predictions, truth, bootstrap=100, by="sex", metadata=files.truth)
    assert any(str(w.message).startswith("sex Female: Edema: AUROC is undefined with 0 positives") for w in caught)
    assert {w.category for w in caught} <= {UndefinedMetricWarning, FewPositivesWarning} and {w.filename for w in caught} == {__file__}
    women = result.subgroups["Female"]
    assert math.isnan(women.table.loc["Edema", "auroc"]) and not math.isnan(women.table.loc["Cardiomegaly", "auroc"])
    assert women.to_json()["tasks"]["Edema"]["auroc"] is None
    assert not math.isnan(result.subgroups["Male"].table.loc["Edema", "auroc"])


# Scores outside [0, 1]: ranked as given, with a named warning; operating points refuse them.


def test_scores_outside_the_unit_interval_are_ranked_with_a_warning(files, tmp_path, capsys):
    from chexpert.evaluate import ScoreRangeWarning

    # As two released leaderboard models did: scores up to 1.77 and 2.81. A monotone change of
    # scale keeps every ranking, so AUROC, AUPRC and radiologists under the curve are unchanged.
    frame = pd.read_csv(files.predictions)
    scaled = frame.assign(**{o: frame[o] * 2.81 for o in schema.OBSERVATIONS})
    scaled.to_csv(tmp_path / "scaled.csv", index=False)
    with pytest.warns(ScoreRangeWarning, match=r"scaled.csv: \d+ of \d+ rows score outside \[0, 1\] \(from 0 to 2.81; first valid/patient\d+/study1 in"):
        result = evaluate(tmp_path / "scaled.csv", files.truth, radiologists=files.readers, bootstrap=100)
    expected = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=100)
    for column in ("auroc", "auroc_lo", "auroc_hi", "auprc", "auprc_lo", "auprc_hi", "radiologists_under_curve"):
        np.testing.assert_allclose(result.table[column].to_numpy(dtype=float), expected.table[column].to_numpy(dtype=float), rtol=1e-12, err_msg=column)
    # Thresholds are probabilities: operating points refuse what is not one, naming the file.
    with pytest.raises(CSVFormatError, match=r"operating points are thresholds on probabilities, but \d+ of 48 studies score outside \[0, 1\]") as raised:
        operating_points(result, sensitivity=[0.9])
    assert raised.value.file == str(tmp_path / "scaled.csv")
    assert len(operating_points(expected, sensitivity=[0.9])) == 3 * 14  # probabilities: fine
    # Negative scores (logits) too.
    frame.assign(Edema=np.log(frame["Edema"] + 0.01)).to_csv(tmp_path / "logits.csv", index=False)
    with pytest.warns(ScoreRangeWarning, match="in 'Edema'"):
        logits = evaluate(tmp_path / "logits.csv", files.truth, bootstrap=0)
    assert logits.table.loc["Edema", "auroc"] == pytest.approx(expected.table.loc["Edema", "auroc"], abs=1e-12)
    # The command line: one warning line, the scores, exit 0; with --operating-point one error line, exit 1.
    argv = ["evaluate", "--predictions", str(tmp_path / "scaled.csv"), "--truth", str(files.truth), "--bootstrap", "0"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tasks"]["Edema"]["auroc"] == pytest.approx(expected.table.loc["Edema", "auroc"])
    assert [line for line in captured.err.splitlines() if "outside [0, 1]" in line][0].startswith("warning: ")
    assert main([*argv, "--operating-point", "youden"]) == 1
    captured = capsys.readouterr()
    assert "operating points are thresholds on probabilities" in captured.err.splitlines()[-1] and "Traceback" not in captured.err


# The bootstrap is drawn and scored in blocks, with the numbers of one draw.


def _block_case() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """700 studies, prevalences from 0.4% (resamples without positives) to 50%, rounded scores (ties)."""
    rng = np.random.default_rng(21)
    labels = (rng.random((700, 14)) < np.linspace(0.004, 0.5, 14)).astype(int)
    a = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.5 * labels))), 2)
    b = np.round(1 / (1 + np.exp(-(rng.normal(size=labels.shape) + 1.0 * labels))), 2)
    studies = [f"test/patient{64741 + i}/study1" for i in range(700)]
    frames = [pd.DataFrame(x, columns=list(schema.OBSERVATIONS)).assign(Study=studies) for x in (labels, a, b)]
    return frames[0], frames[1], frames[2]


def _sha256(values: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


@pytest.mark.parametrize("block_bytes", [1, 8 * 700 * 7, None])
def test_bootstrap_in_blocks_gives_the_numbers_of_the_single_draw(monkeypatch, block_bytes):
    if block_bytes is not None:
        monkeypatch.setattr(metrics, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(metrics, "MIN_POSITIVES", 1)  # the hashes below include the intervals of rare tasks
    truth, a, b = _block_case()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        result = evaluate(a, truth, bootstrap=600, seed=11)
        paired = compare(a, b, truth, bootstrap=600, seed=11)
    # Computed by the implementation that drew one (600, 700) matrix (commit 90a5931). AUROCs of
    # resamples are exact (integer sums, one division): the same bits on any machine.
    assert _sha256(result.bootstrap_auroc) == "3b52b0c47762983552fdceec4e52641c1f555a7f4462f5b73862391fa97b4830"
    assert _sha256(result.table[["auroc_lo", "auroc_hi"]].to_numpy()) == "62a44eb8fd648f2d2ec6607d6813e16db92ef6777a4bf8895d3b8630b9956812"
    assert [x.hex() for x in result.mean_auroc_ci] == ["0x1.ae682ffb05ca9p-1", "0x1.bdd08da720da6p-1"]
    assert _sha256(paired.table[["difference_lo", "difference_hi"]].to_numpy()) == "561911903c51d7d3faf35a3d8b3b58cbb1ce666ba71256d5eb5b6c0478294afc"
    assert [x.hex() for x in paired.mean_difference_ci] == ["0x1.172daaa17259fp-4", "0x1.e9a648e3e54e2p-4"]
    # Average precision sums floats: compared with the single-matrix computation on this machine.
    draws = np.random.default_rng(11).integers(0, 700, size=(600, 700))
    counts = np.stack([np.bincount(row, minlength=700) for row in draws], axis=1).astype(np.int32)
    for j, observation in enumerate(schema.OBSERVATIONS):
        y, s = truth[observation].to_numpy(), a[observation].to_numpy()
        if 0 < y.sum() < len(y):
            lo, hi = metrics.percentile_interval(metrics.bootstrap_average_precision(s, y, counts))
            assert (result.table.loc[observation, "auprc_lo"], result.table.loc[observation, "auprc_hi"]) == (lo, hi), observation


# Files that are not prediction files: one line, exit 1.


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d.mkdir(), d)[1], "predictions must be a CSV file, not a folder"),
        (lambda d: d, "predictions file not found"),
        (lambda d: (d.write_bytes(b""), d)[1], "predictions file is empty"),
        (lambda d: (d.write_text("Path,Edema\n"), d)[1], "predictions has a header but no rows"),
    ],
    ids=["folder", "missing", "empty", "header-only"],
)
def test_cli_predictions_that_are_not_a_csv_file(files, tmp_path, capsys, make, message):
    path = make(tmp_path / "predictions")
    for role, argv in (
        ("predictions", ["evaluate", "--predictions", str(path), "--truth", str(files.truth)]),
        ("truth", ["evaluate", "--predictions", str(files.predictions), "--truth", str(path)]),
        ("predictions", ["compare", str(files.predictions), str(path), "--truth", str(files.truth)]),
    ):
        assert main([*argv, "--json"]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
        if role == "truth" and path.is_dir():
            # A folder as --truth is a release (its valid.csv or test set): one line saying none is there.
            assert captured.err.startswith("chexpert evaluate: found no CSV") and str(path) in captured.err
            continue
        assert captured.err.startswith(f"chexpert {argv[0]}: {path}: {message.replace('predictions', role)}")


def test_cli_truth_with_the_release_header_and_no_rows(files, tmp_path, capsys):
    header_only = tmp_path / "valid.csv"
    header_only.write_text(",".join(schema.CSV_COLUMNS) + "\n")
    assert main(["evaluate", "--predictions", str(files.predictions), "--truth", str(header_only)]) == 1
    assert capsys.readouterr().err == f"chexpert evaluate: {header_only}: truth has a header but no rows\n"
