"""The test set as released: a look-alike (chexpert synth --release test) read through the public API."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import chexpert
from chexpert import schema
from chexpert.cli import main
from chexpert.errors import CSVFormatError, InvalidArgumentError
from chexpert.evaluate import evaluate
from chexpert.testset import find_test_set
from chexpert.verify import verify
from tests.conftest import predictions_for

pytestmark = pytest.mark.filterwarnings("ignore::chexpert.evaluate.metrics.UndefinedMetricWarning")

TEST_PATIENTS = 8
LABELS = "chexpert-test-set-labels"
IMAGES = "CheXlocalize/CheXpert"


@pytest.fixture(scope="module")
def test_root(look_alike: Callable[..., Path]) -> Path:
    """A look-alike test set and CheXlocalize (read-only by convention: copy before damaging it)."""
    return look_alike(release="test", patients=TEST_PATIENTS, seed=5)


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def study(path: str) -> str:
    return "/".join(path.split("/")[-4:-1]) if path.endswith(".jpg") else "/".join(path.rstrip("/").split("/")[-3:])


def test_the_look_alike_reads_back_as_released(test_root: Path) -> None:
    release = chexpert.open(test_root)
    assert release.kind == "full"  # CheXlocalize ships full-resolution images
    assert release.splits == ("valid", "test")
    test = release.index("test")
    truth = {study(r["Study"]): r for r in read_rows(test_root / LABELS / "groundtruth.csv")}
    assert len(truth) == TEST_PATIENTS and test.counts()["studies"] == TEST_PATIENTS
    for key, labels in zip(test.study_keys().tolist(), test.labels.tolist()):
        assert labels == [int(truth[key][o]) for o in schema.OBSERVATIONS]
    # test_labels.csv has no demographics: unknown sex and age, the view from the file name.
    assert (test.sex == schema.SEXES.index("Unknown")).all() and (test.age == 0).all()
    assert test.frontal.tolist() == ["_frontal." in p for p in test.path.tolist()]
    # val_labels.csv says valid/, the images are in val/: every path resolves and decodes.
    valid = release.index("valid")
    assert valid.counts()["patients"] == TEST_PATIENTS // 2
    assert release.locate(str(valid.path[0])).endswith("/CheXlocalize/CheXpert/val/patient64541/study1/view1_frontal.jpg")
    report = verify(release, decode=True, workers=1)
    assert report.ok, report.problems
    assert report.decoded == len(test) + len(valid)


def test_groundtruth_alone_indexes_the_test_images(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    expected = chexpert.open(root).index("test")
    (root / IMAGES / "test_labels.csv").unlink()
    release = chexpert.open(root)
    assert release.splits == ("valid", "test")
    test = release.index("test")
    assert sorted(test.path.tolist()) == sorted(expected.path.tolist())
    order = np.argsort(test.path.tolist())
    assert (test.labels[order] == expected.labels[np.argsort(expected.path.tolist())]).all()
    assert verify(release).ok


def test_a_groundtruth_study_without_images_is_named_with_its_row(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    truth = root / LABELS / "groundtruth.csv"
    with open(truth, "a") as f:
        f.write("CheXpert-v1.0/test/patient65001/study1" + ",0" * 14 + "\n")
    row = TEST_PATIENTS + 2
    # With test_labels.csv, verify compares the two.
    missing = [p for p in verify(root).problems if p.kind == "missing"]
    assert [(Path(p.file).name, p.row) for p in missing] == [("groundtruth.csv", row)]
    assert "patient65001/study1" in missing[0].message
    # Without it, the test split comes from groundtruth.csv: reading it names file and row.
    (root / IMAGES / "test_labels.csv").unlink()
    with pytest.raises(CSVFormatError, match=rf"groundtruth\.csv, row {row}: study 'test/patient65001/study1' has no images"):
        chexpert.open(root).index("test")
    problems = verify(root).problems
    assert [(Path(p.file).name, p.row) for p in problems if p.kind == "missing"] == [("groundtruth.csv", row)]
    # Nor have the radiologists read it.
    # All eight readers are checked: the consensus panel is radiologists/groundtruth/bc1_gt.csv and so on.
    assert sorted(Path(p.file).stem.removesuffix("_gt") for p in problems if p.kind == "coverage") == ["bc1", "bc2", "bc3", "bc4", "bc5", "bc6", "bc7", "bc8"]


def test_damaged_groundtruth_values_are_named(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    (root / IMAGES / "test_labels.csv").unlink()
    truth = root / LABELS / "groundtruth.csv"
    lines = truth.read_text().splitlines()
    cells = lines[3].split(",")
    cells[schema.OBSERVATIONS.index("Edema") + 1] = "0.5"
    lines[3] = ",".join(cells)
    truth.write_text("\n".join(lines) + "\n")
    with pytest.raises(CSVFormatError, match=r"groundtruth\.csv, row 4: Edema '0.5' is not valid"):
        chexpert.open(root).index("test")


def test_chexlocalize_label_spellings_are_tolerated(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    expected = chexpert.open(root).index("test")
    labels = root / IMAGES / "test_labels.csv"
    text = labels.read_text().replace("1.0", "1").replace("0.0", "0").replace("Lung Opacity", "Airspace Opacity")
    labels.write_text(text)
    test = chexpert.open(root).index("test")
    assert (test.labels == expected.labels).all() and test.path.tolist() == expected.path.tolist()
    lines = text.splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",yes"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(CSVFormatError, match=r"test_labels\.csv, row 3: Support Devices 'yes' is not valid"):
        chexpert.open(root).index("test")
    problems = verify(root).problems
    assert [(Path(p.file).name, p.row, p.kind) for p in problems if p.kind == "label"] == [("test_labels.csv", 3, "label")]


def test_evaluate_scores_a_release_with_its_benchmark_radiologists(test_root: Path, tmp_path: Path) -> None:
    release = chexpert.open(test_root)
    predictions = predictions_for(release.index("test"), tmp_path / "predictions.csv")
    found = evaluate(predictions, test_root, bootstrap=50)
    readers = sorted((test_root / LABELS / "radiologists" / "benchmark_radiologists").glob("bc*.csv"))
    assert [p.stem for p in readers] == ["bc4", "bc6", "bc8"]
    explicit = evaluate(predictions, test_root / LABELS / "groundtruth.csv", radiologists=readers, bootstrap=50)
    pd.testing.assert_frame_equal(found.table, explicit.table)
    assert set(found.radiologists["radiologist"]) == {"bc4", "bc6", "bc8", "RadMaj"}
    consensus = evaluate(predictions, release, radiologists="consensus", bootstrap=0)
    assert set(consensus.radiologists["radiologist"]) == {"bc1", "bc2", "bc3", "bc5", "bc7", "RadMaj"}
    # The consensus radiologists' majority is the ground truth.
    votes = np.stack([consensus.data.readers[name] for name in ("bc1", "bc2", "bc3", "bc5", "bc7")]).sum(axis=0)
    assert ((votes >= 3) == consensus.data.labels).all()
    assert (consensus.data.readers["RadMaj"] == consensus.data.labels).all()
    everyone = evaluate(predictions, release, radiologists="all", bootstrap=0)
    assert list(everyone.data.readers) == ["bc1", "bc2", "bc3", "bc4", "bc5", "bc6", "bc7", "bc8", "RadMaj"]
    assert everyone.data.majority_of == ("bc4", "bc6", "bc8")  # the paper's RadMaj: the benchmark three
    assert len(evaluate(predictions, test_root, radiologists="none", bootstrap=0).radiologists) == 0


def test_evaluate_command_with_a_release_as_truth(test_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = predictions_for(chexpert.open(test_root).index("test"), tmp_path / "predictions.csv")
    assert main(["evaluate", "--predictions", str(predictions), "--truth", str(test_root), "--bootstrap", "20", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["n_studies"] == TEST_PATIENTS
    assert main(["evaluate", "--predictions", str(predictions), "--truth", str(test_root), "--radiologists", "all", "--bootstrap", "0"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ("bc1", "bc4", "bc8"))
    assert main(["evaluate", "--predictions", str(predictions), "--truth", str(test_root), "--split", "valid"]) == 1
    assert "studies of the truth" in capsys.readouterr().err


def test_the_split_follows_the_predictions(test_root: Path, tmp_path: Path) -> None:
    release = chexpert.open(test_root)
    valid = predictions_for(release.index("valid"), tmp_path / "valid.csv")
    result = evaluate(valid, test_root, bootstrap=0)
    assert result.n_studies == TEST_PATIENTS // 2 and len(result.radiologists) == 0
    both = pd.concat([pd.read_csv(valid), pd.read_csv(predictions_for(release.index("test"), tmp_path / "test.csv"))])
    with pytest.raises(InvalidArgumentError, match=r"test, valid split\(s\).*split='test'"):
        evaluate(both, test_root)
    with pytest.raises(InvalidArgumentError, match="only the test set comes with radiologists"):
        evaluate(valid, test_root, radiologists="benchmark")


def test_a_radiologist_file_missing_studies_is_named(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    bc6 = root / LABELS / "radiologists" / "benchmark_radiologists" / "bc6.csv"
    lines = bc6.read_text().splitlines()
    dropped = study(lines[2].split(",")[0])
    bc6.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    predictions = predictions_for(chexpert.open(root).index("test"), tmp_path / "predictions.csv")
    with pytest.raises(CSVFormatError, match=rf"bc6\.csv: radiologist 'bc6' and truth must cover the same studies; 1 studies .* missing: {dropped}"):
        evaluate(predictions, root, bootstrap=0)
    problems = verify(root).problems
    assert [(Path(p.file).name, p.kind) for p in problems] == [("bc6.csv", "coverage")]
    assert f"lacks 1 studies of groundtruth.csv: {dropped}" in problems[0].message


def test_a_zipped_release_is_scored_in_place(test_root: Path, tmp_path: Path) -> None:
    archive = tmp_path / "chexpert-test.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(test_root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(test_root).as_posix())
    release = chexpert.open(archive)
    assert release.splits == ("valid", "test") and release.layout == "zip"
    files = find_test_set(release)
    assert files.truth is not None and files.truth.label.endswith("chexpert-test.zip!chexpert-test-set-labels/groundtruth.csv")
    predictions = predictions_for(release.index("test"), tmp_path / "predictions.csv")
    assert evaluate(predictions, archive, bootstrap=0).n_studies == TEST_PATIENTS


def test_prepare_and_loaders_take_the_test_split(test_root: Path, tmp_path: Path) -> None:
    from chexpert.frameworks.numpy import NumpyLoader

    release = chexpert.open(test_root)
    store = chexpert.prepare(release, tmp_path / "store", size=64, splits="test")
    test = release.index("test")
    assert len(store) == len(test)
    batches = list(NumpyLoader(store, batch_size=4, shuffle=False))
    assert sum(len(b["image"]) for b in batches) == len(test)


def test_a_small_release_and_chexlocalize_side_by_side(test_root: Path, tmp_path: Path) -> None:
    root = copy_of(test_root, tmp_path)
    chexpert.synthesize(root, release="small", patients=4, valid_patients=TEST_PATIENTS // 2, seed=5)
    release = chexpert.open(root)
    assert release.kind == "small" and release.splits == ("train", "valid", "test")
    valid = release.index("valid")
    # valid.csv and its own valid/ win over CheXlocalize's val_labels.csv and full-size val/ copy.
    assert release.locate(str(valid.path[0])).endswith("CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg")
    assert release.index("test").counts()["studies"] == TEST_PATIENTS
    report = verify(release)
    assert report.ok, report.problems
