"""The index: exact counts on the real train.csv, and a clear error for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from chexpert import schema
from chexpert.errors import CSVFormatError
from chexpert.index import check_csv, concat, read_csv
from chexpert.synth import csv_bytes, synth_rows
from tests.real_counts import REAL_LABELS


@pytest.fixture(scope="module")
def real(real_train_csv):
    return read_csv(real_train_csv)


def test_real_train_csv_counts(real):
    counts = real.counts()
    assert counts["images"] == 223_414
    assert counts["studies"] == 187_641
    assert counts["patients"] == 64_540
    assert (counts["frontal"], counts["lateral"]) == (191_027, 32_387)
    assert counts["projection"] == {"AP": 161_590, "PA": 29_420, "LL": 16, "RL": 1, "none": 32_387}
    assert counts["sex"] == {"Male": 132_636, "Female": 90_777, "Unknown": 1}
    assert counts["age_unknown"] == 3
    for name, (pos, unc, neg, blank) in REAL_LABELS.items():
        assert counts["labels"][name] == {"positive": pos, "uncertain": unc, "negative": neg, "blank": blank}, name


def test_real_train_csv_values_match_pandas(real, real_train_csv):
    """Cell by cell against an independent reading with pandas (blank -> NaN)."""
    import pandas as pd

    frame = pd.read_csv(real_train_csv)
    assert real.path.astype(object).tolist() == frame["Path"].tolist()
    expected = frame[list(schema.OBSERVATIONS)].fillna(-2).to_numpy().astype(np.int8)
    np.testing.assert_array_equal(real.labels, expected)
    np.testing.assert_array_equal(real.age, frame["Age"].to_numpy())
    np.testing.assert_array_equal(real.frontal, (frame["Frontal/Lateral"] == "Frontal").to_numpy())
    assert real.labels.dtype == np.int8 and real.patient.dtype == np.int32


def test_row_fields_parsed_from_path():
    index = read_csv(csv_bytes(synth_rows("train", patients=3, seed=1)), file="train.csv")
    first = synth_rows("train", patients=3, seed=1)[0]["Path"]
    i = 0
    assert index.path[i] == first
    assert int(index.patient[i]) == 1 and int(index.study[i]) >= 1 and int(index.view[i]) == 1
    assert index.study_keys()[i] == schema.study_key(first)
    assert schema.SPLITS[index.split[i]] == "train"


def test_study_ids_group_images_of_a_study():
    rows = synth_rows("train", patients=20, seed=3)
    index = read_csv(csv_bytes(rows))
    keys = index.study_keys()
    ids = index.study_ids()
    for key in np.unique(keys):
        assert len(np.unique(ids[keys == key])) == 1
    assert len(np.unique(ids)) == len(np.unique(keys))


def test_take_and_concat_keep_rows_aligned():
    index = read_csv(csv_bytes(synth_rows("train", patients=10, seed=2)))
    lateral = index.take(~index.frontal)
    assert len(lateral) == int((~index.frontal).sum()) and not lateral.frontal.any()
    assert (lateral.projection == schema.PROJECTIONS.index("none")).all()
    both = concat([index.take([0, 1]), index.take([2])])
    assert both.path.tolist() == index.path[:3].tolist()
    np.testing.assert_array_equal(both.labels, index.labels[:3])
    with pytest.raises(ValueError, match="mask"):
        index.take(np.ones(len(index) + 1, dtype=bool))


def test_to_pandas_is_readable():
    index = read_csv(csv_bytes(synth_rows("train", patients=4, seed=4)))
    frame = index.to_pandas()
    assert list(frame.columns)[:1] == ["Path"]
    assert set(frame["Sex"].astype(str)) <= set(schema.SEXES)
    blank = index.labels == schema.Code.BLANK
    assert frame[list(schema.OBSERVATIONS)].isna().to_numpy().tolist() == blank.tolist()


# -- bad input -------------------------------------------------------------------------------------


def _rows(**override):
    rows = synth_rows("train", patients=8, seed=5)
    row = dict(rows[2])
    row.update(override)
    rows[2] = row
    return rows


@pytest.mark.parametrize("value", ["1", "yes", "2.0", "nan", " 1.0"])
def test_unknown_label_value_names_file_row_and_value(value):
    with pytest.raises(CSVFormatError) as caught:
        read_csv(csv_bytes(_rows(Edema=value)), file="train.csv")
    message = str(caught.value)
    assert "train.csv, row 4" in message and "Edema" in message and repr(value) in message
    assert caught.value.row == 4 and caught.value.file == "train.csv"


def test_every_bad_value_is_listed_by_check_csv():
    rows = synth_rows("train", patients=8, seed=5)
    rows[1] = {**rows[1], "Edema": "yes"}
    rows[3] = {**rows[3], "Sex": "M"}
    rows[4] = {**rows[4], "Age": "sixty"}
    index, problems, lines = check_csv(csv_bytes(rows), file="train.csv")
    assert [(p.kind, p.row) for p in problems] == [("label", 3), ("value", 5), ("value", 6)]
    # The good rows are indexed, the bad ones not; nothing is silently kept with a wrong value.
    assert index is not None
    assert len(index) == len(rows) - 3
    assert 3 not in lines.tolist() and 2 in lines.tolist()


@pytest.mark.parametrize(
    ("columns", "fragment"),
    [
        (schema.CSV_COLUMNS[:-1], "missing 'Support Devices'"),
        (tuple("Pleural Effusions" if c == "Pleural Effusion" else c for c in schema.CSV_COLUMNS), "unexpected 'Pleural Effusions'"),
        (schema.CSV_COLUMNS[:5] + tuple(reversed(schema.OBSERVATIONS)), "another order"),
    ],
)
def test_missing_renamed_or_reordered_column(columns, fragment):
    data = csv_bytes(synth_rows(patients=1), columns=columns)
    with pytest.raises(CSVFormatError, match=fragment) as caught:
        read_csv(data, file="valid.csv")
    assert "valid.csv, row 1" in str(caught.value)


def test_bom_and_crlf_are_read_identically_but_reported():
    rows = synth_rows(patients=4, seed=6)
    plain = read_csv(csv_bytes(rows))
    odd = csv_bytes(rows, newline="\r\n", bom=True)
    tolerant = read_csv(odd, file="train.csv")
    np.testing.assert_array_equal(tolerant.labels, plain.labels)
    assert tolerant.path.tolist() == plain.path.tolist()
    _, problems, _ = check_csv(odd, file="train.csv")
    assert sorted(p.kind for p in problems) == ["bom", "crlf"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("CheXpert-v1.0-small/train/../../etc/passwd", "'..'"),
        ("/data/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "absolute"),
        ("C:/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "absolute"),
        ("CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg", "scheme"),
    ],
)
def test_path_escaping_or_off_scheme(path, fragment):
    with pytest.raises(CSVFormatError, match=fragment) as caught:
        read_csv(csv_bytes(_rows(Path=path)), file="train.csv")
    assert caught.value.row == 4


def test_duplicate_row_names_both_rows():
    rows = synth_rows(patients=8, seed=5)
    rows.append(dict(rows[1]))
    with pytest.raises(CSVFormatError, match="already appears on row 3") as caught:
        read_csv(csv_bytes(rows), file="train.csv")
    assert caught.value.row == len(rows) + 1


def test_view_word_contradicting_file_name():
    rows = synth_rows(patients=3, seed=5)
    frontal = next(i for i, r in enumerate(rows) if r["Path"].endswith("_frontal.jpg"))
    rows[frontal] = {**rows[frontal], "Frontal/Lateral": "Lateral"}
    with pytest.raises(CSVFormatError, match="contradicts the file name"):
        read_csv(csv_bytes(rows), file="train.csv")


def test_empty_and_truncated_csv():
    with pytest.raises(CSVFormatError, match="empty"):
        read_csv(b"", file="train.csv")
    data = csv_bytes(synth_rows(patients=2))
    truncated = data[: data.rindex(b",")]  # the last row stops mid-way
    with pytest.raises(CSVFormatError, match="train.csv"):
        read_csv(truncated, file="train.csv")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        read_csv(tmp_path / "nothere.csv")
