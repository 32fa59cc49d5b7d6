"""Filters (against a pandas reading of the real train.csv) and patient-level splits and folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chexpert import schema
from chexpert.index import Index, read_csv
from chexpert.selection import deduplicate, kfold, select, split_patients

TASKS = [schema.OBSERVATIONS.index(o) for o in schema.COMPETITION_TASKS]


def make_index(patients: np.ndarray, labels: np.ndarray) -> Index:
    """An Index of one frontal image per row; the view number is the row number, so rows are unique."""
    n = len(patients)
    views = np.arange(1, n + 1)
    path = np.array(
        [f"CheXpert-v1.0-small/train/patient{p:05d}/study1/view{v}_frontal.jpg" for p, v in zip(patients, views)],
        dtype=np.dtypes.StringDType(),
    )
    return Index(
        path=path,
        split=np.zeros(n, dtype=np.int8),
        patient=np.asarray(patients, dtype=np.int32),
        study=np.ones(n, dtype=np.int16),
        view=views.astype(np.int16),
        frontal=np.ones(n, dtype=bool),
        projection=np.zeros(n, dtype=np.int8),
        sex=np.zeros(n, dtype=np.int8),
        age=np.full(n, 50, dtype=np.int16),
        labels=np.asarray(labels, dtype=np.int8),
    )


@st.composite
def indexes(draw: st.DrawFn) -> Index:
    patients = np.array(draw(st.lists(st.integers(1, 60), min_size=1, max_size=200)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.choice(np.array([int(c) for c in schema.Code], dtype=np.int8), size=(len(patients), len(schema.OBSERVATIONS)))
    return make_index(patients, labels)


fractions_strategy = st.lists(st.integers(1, 20), min_size=1, max_size=5).map(lambda weights: {f"part{i}": w / sum(weights) for i, w in enumerate(weights)})


def part_of(parts: dict[str, Index]) -> dict[int, str]:
    """Patient -> the one part holding it; fails if a patient is in two parts."""
    owner: dict[int, str] = {}
    for name, part in parts.items():
        for patient in np.unique(part.patient).tolist():
            assert patient not in owner, f"patient {patient} in {owner[patient]} and {name}"
            owner[patient] = name
    return owner


# ---------------------------------------------------------------------------------------------
# Properties of splits and folds


@settings(max_examples=150, deadline=None)
@given(index=indexes(), fractions=fractions_strategy, seed=st.integers(0, 2**32 - 1))
def test_split_partitions_patients_and_rows(index, fractions, seed):
    parts = split_patients(index, fractions, seed=seed)
    assert list(parts) == list(fractions)
    owner = part_of(parts)
    assert set(owner) == set(index.patient.tolist())
    rows = np.concatenate([part.view for part in parts.values()])  # view = row number
    assert sorted(rows.tolist()) == list(range(1, len(index) + 1))
    for part in parts.values():
        assert (np.diff(part.view) > 0).all()  # rows keep their order
    # Sizes in patients are the fractions, to rounding.
    total = len(owner)
    for name, fraction in fractions.items():
        assert abs(len(np.unique(parts[name].patient)) - fraction * total) < 1
    # Deterministic by seed, and independent of the rows' order.
    again = split_patients(index, fractions, seed=seed)
    assert all(np.array_equal(again[name].path, parts[name].path) for name in parts)
    shuffled = index.take(np.random.default_rng(0).permutation(len(index)))
    assert part_of(split_patients(shuffled, fractions, seed=seed)) == owner


@settings(max_examples=100, deadline=None)
@given(index=indexes(), k=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_kfold_held_out_parts_partition_patients_with_balanced_sizes(index, k, seed):
    patients = set(index.patient.tolist())
    if k > len(patients):
        with pytest.raises(ValueError, match=f"k={k} folds need at least {k} patients"):
            kfold(index, k, seed=seed)
        return
    folds = kfold(index, k, seed=seed)
    assert len(folds) == k
    owner = part_of({f"fold{i}": held_out for i, (_, held_out) in enumerate(folds)})
    assert set(owner) == patients
    sizes = [len(np.unique(held_out.patient)) for _, held_out in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, held_out in folds:
        assert not set(train.patient.tolist()) & set(held_out.patient.tolist())
        assert len(train) + len(held_out) == len(index)
    again = kfold(index, k, seed=seed)
    assert all(np.array_equal(a[1].path, b[1].path) for a, b in zip(folds, again))


def test_seeds_give_different_splits():
    rng = np.random.default_rng(0)
    index = make_index(rng.integers(1, 500, size=2000), rng.choice([-2, -1, 0, 1], size=(2000, 14)))
    a, b = (part_of(split_patients(index, seed=s)) for s in (0, 1))
    assert sum(a[p] != b[p] for p in a) > len(a) * 0.2


def test_split_and_kfold_validate_arguments():
    index = make_index(np.arange(1, 11), np.zeros((10, 14)))
    with pytest.raises(ValueError, match="sum to 1"):
        split_patients(index, {"train": 0.8, "valid": 0.1})
    with pytest.raises(ValueError, match="once"):
        split_patients(index, [("train", 0.5), ("train", 0.5)])
    with pytest.raises(ValueError, match=r"fraction of part 'train' must be in \(0, 1\]"):
        split_patients(index, {"train": 1.1, "valid": -0.1})
    with pytest.raises(ValueError, match="unknown observation 'Effusion'; valid: No Finding"):
        split_patients(index, stratify=("Effusion",))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        split_patients(index, seed=-3)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        kfold(index, 1)


# ---------------------------------------------------------------------------------------------
# The real train.csv


@pytest.fixture(scope="module")
def real(real_train_csv: Path) -> Index:
    return read_csv(real_train_csv)


@pytest.fixture(scope="module")
def frame(real_train_csv: Path) -> pd.DataFrame:
    """An independent pandas reading of the same file."""
    frame = pd.read_csv(real_train_csv)
    frame["patient"] = frame["Path"].str.extract(r"patient(\d+)", expand=False).astype(int)
    return frame


def patient_positive_rates(index: Index) -> np.ndarray:
    patients, inverse = np.unique(index.patient, return_inverse=True)
    positive = np.zeros((len(patients), len(TASKS)), dtype=bool)
    for j, column in enumerate(TASKS):
        positive[inverse[index.labels[:, column] == schema.Code.POSITIVE], j] = True
    return positive.mean(axis=0)


def image_positive_rates(index: Index) -> np.ndarray:
    return (index.labels[:, TASKS] == schema.Code.POSITIVE).mean(axis=0)


def test_split_is_stratified_on_the_competition_tasks(real):
    parts = split_patients(real, seed=0)
    total_patients = len(np.unique(real.patient))
    whole_patients, whole_images = patient_positive_rates(real), image_positive_rates(real)
    for (name, fraction), part in zip((("train", 0.8), ("valid", 0.1), ("test", 0.1)), parts.values()):
        assert abs(len(np.unique(part.patient)) - fraction * total_patients) < 1
        assert abs(len(part) / len(real) - fraction) < 0.01, name  # images follow patients
        # A random 10% of patients misses these by about 0.005; stratified, they are ~10x closer.
        assert np.abs(patient_positive_rates(part) - whole_patients).max() < 0.0015, name
        assert np.abs(image_positive_rates(part) - whole_images).max() < 0.01, name


def test_kfold_is_stratified_on_the_real_file(real):
    whole = patient_positive_rates(real)
    for train, held_out in kfold(real, 5, seed=2):
        assert np.abs(patient_positive_rates(held_out) - whole).max() < 0.0015
        assert abs(len(held_out) / len(real) - 0.2) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "reference"),
    [
        ({"views": "Frontal"}, lambda f: f["Frontal/Lateral"] == "Frontal"),
        ({"views": ["Lateral"]}, lambda f: f["Frontal/Lateral"] == "Lateral"),
        ({"projections": ("PA", "LL")}, lambda f: f["AP/PA"].isin(["PA", "LL"])),
        ({"projections": "none"}, lambda f: f["AP/PA"].isna()),
        ({"sex": "Female"}, lambda f: f["Sex"] == "Female"),
        ({"sex": ("Male", "Unknown")}, lambda f: f["Sex"].isin(["Male", "Unknown"])),
        ({"age": (40, 60)}, lambda f: f["Age"].between(40, 60)),
        ({"age": (0, 20)}, lambda f: f["Age"].between(1, 20)),  # age 0 means unknown
        ({"age_known": False}, lambda f: f["Age"] == 0),
        ({"age_known": True}, lambda f: f["Age"] != 0),
        ({"splits": "train"}, lambda f: f["Age"] > -1),
        ({"splits": ["valid", "test"]}, lambda f: f["Age"] < -1),
        ({"labels": {"Edema": ("positive", "uncertain")}}, lambda f: f["Edema"].isin([1, -1])),
        ({"labels": {"Edema": "blank", "Cardiomegaly": 1}}, lambda f: f["Edema"].isna() & (f["Cardiomegaly"] == 1)),
        ({"labels": {"No Finding": [schema.Code.NEGATIVE, schema.Code.POSITIVE]}}, lambda f: f["No Finding"].notna()),
        ({"patients": [1, 2, 3, 64540]}, lambda f: f["patient"].isin([1, 2, 3, 64540])),
        ({"patients": np.arange(100, 200)}, lambda f: f["patient"].between(100, 199)),
        (
            {"views": "Frontal", "projections": "AP", "sex": "Male", "age": (50, 70), "labels": {"Pleural Effusion": [1]}},
            lambda f: (f["AP/PA"] == "AP") & (f["Sex"] == "Male") & f["Age"].between(50, 70) & (f["Pleural Effusion"] == 1),
        ),
    ],
)
def test_filters_match_pandas_on_the_real_file(real, frame, kwargs, reference):
    mask = reference(frame).to_numpy(dtype=bool)
    selected = select(real, **kwargs)
    assert len(selected) == int(mask.sum())
    assert np.array_equal(selected.path, frame["Path"].to_numpy()[mask])


def test_filter_counts_from_the_issue(real):
    assert len(select(real, views="Frontal")) == 191_027
    assert len(select(real, projections="AP")) == 161_590
    assert len(select(real, sex="Unknown")) == 1
    assert len(select(real, age_known=False)) == 3
    assert len(select(real, labels={"Pleural Effusion": "uncertain"})) == 11_628


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"views": "frontal"}, "unknown view 'frontal'; valid: Frontal, Lateral"),
        ({"projections": ["AP", "LAT"]}, "unknown projection 'LAT'; valid: AP, PA, LL, RL, none"),
        ({"sex": "F"}, "unknown sex 'F'; valid: Male, Female, Unknown"),
        ({"splits": "validation"}, "unknown split 'validation'; valid: train, valid, test"),
        ({"labels": {"Edema": "maybe"}}, "unknown label code 'maybe' for 'Edema'; valid: positive"),
        ({"labels": {"Edema": 2}}, "unknown label code 2"),
        ({"labels": {"Oedema": 1}}, "unknown observation 'Oedema'"),
        ({"age": (60, 40)}, "empty"),
        ({"age": 40}, "inclusive"),
        ({"age_known": "yes"}, "True, False or None"),
        ({"patients": ["patient00001"]}, "patient numbers"),
    ],
)
def test_select_validates_values(kwargs, message):
    index = make_index(np.arange(1, 4), np.zeros((3, 14)))
    with pytest.raises(ValueError, match=message):
        select(index, **kwargs)


# ---------------------------------------------------------------------------------------------
# De-duplication per study and per patient


def test_first_frontal_image_per_study_and_per_patient_against_pandas(real, frame):
    frame = frame.assign(study=frame["Path"].str.extract(r"/study(\d+)/", expand=False).astype(int))
    frontal = frame[frame["Frontal/Lateral"] == "Frontal"]
    for per, keys in (("study", ["patient", "study"]), ("patient", ["patient"])):
        expected = frontal.groupby(keys, sort=False).head(1)["Path"].to_numpy()
        ours = deduplicate(real, per)
        assert np.array_equal(ours.path, expected), per
        assert ours.frontal.all()
    assert len(deduplicate(real, "study")) == frontal.groupby(["patient", "study"]).ngroups
    first_any = frame.groupby(["patient", "study"], sort=False).head(1)["Path"].to_numpy()
    assert np.array_equal(deduplicate(real, "study", keep="first").path, first_any)


def test_deduplicate_keeps_index_order_and_skips_studies_without_a_frontal_image():
    patients = np.array([3, 3, 1, 1, 2])
    index = make_index(patients, np.zeros((5, 14), dtype=np.int8))
    index = Index(
        **{
            **{name: getattr(index, name) for name in ("path", "split", "patient", "study", "view", "projection", "sex", "age", "labels")},
            "frontal": np.array([False, True, True, True, False]),
        }
    )
    assert deduplicate(index, "patient").path.tolist() == [index.path[1], index.path[2]]  # patient 2 has no frontal image
    assert deduplicate(index, "patient", keep="first").path.tolist() == [index.path[0], index.path[2], index.path[4]]
    with pytest.raises(ValueError, match="per must be one of study, patient"):
        deduplicate(index, "image")
    with pytest.raises(ValueError, match="keep must be one of first-frontal, first, merge"):
        deduplicate(index, keep="last")


def test_merge_takes_each_observations_first_non_blank_code():
    blank, unc, pos, neg = (int(c) for c in (schema.Code.BLANK, schema.Code.UNCERTAIN, schema.Code.POSITIVE, schema.Code.NEGATIVE))
    labels = np.full((4, 14), blank, dtype=np.int8)
    labels[0, 5], labels[1, 5], labels[1, 6], labels[2, 6], labels[3, 2] = unc, pos, neg, pos, pos
    index = make_index(np.array([7, 7, 7, 4]), labels)
    merged = deduplicate(index, "patient", keep="merge")
    assert merged.patient.tolist() == [7, 4] and merged.path.tolist() == [index.path[0], index.path[3]]
    assert merged.labels[0, 5] == unc and merged.labels[0, 6] == neg and merged.labels[0, 2] == blank
    assert merged.labels[1, 2] == pos and (merged.labels[1, [5, 6]] == blank).all()


@pytest.mark.parametrize(("views", "selection"), [(["PA"], {"views": "Frontal", "projections": "PA"}), (["*"], {})])
def test_merge_per_patient_is_torchxrayvisions_unique_patients(tmp_path, real_train_csv, real, views, selection):
    xrv = pytest.importorskip("torchxrayvision")
    from chexpert.policy import apply

    theirs = xrv.datasets.CheX_Dataset(imgpath=str(tmp_path), csvpath=str(real_train_csv), views=views, unique_patients=True)
    merged = deduplicate(select(real, **selection), "patient", keep="merge")
    assert len(merged) == len(theirs) > 20_000
    np.testing.assert_array_equal(merged.path, theirs.csv["Path"].to_numpy())
    np.testing.assert_array_equal(merged.patient, theirs.csv["patientid"].astype(int).to_numpy())
    ours = apply("torchxrayvision", merged)
    assert [o.replace("Pleural Effusion", "Effusion") for o in ours.observations] == list(theirs.pathologies)
    np.testing.assert_array_equal(~ours.mask, np.isnan(theirs.labels))
    np.testing.assert_array_equal(ours.targets, np.nan_to_num(theirs.labels, nan=0.0))
    # A merge, not a pick: some patients' labels come from more than their first image.
    position = {path: i for i, path in enumerate(real.path.tolist())}
    assert (merged.labels != real.labels[[position[path] for path in merged.path.tolist()]]).any()
