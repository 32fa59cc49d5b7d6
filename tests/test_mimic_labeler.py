"""The labeler on MIMIC-CXR's reports: the reports zip and folder read directly with study_id, and
agreement with the distributed label files per observation."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from chexpert import schema
from chexpert.labeler import label_report
from chexpert.labeler.files import label_file
from chexpert.labeler.mimic import agreement
from chexpert.synth.mimic import REPORTS_ZIP, synthesize_mimic


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_mimic(tmp_path_factory.mktemp("mimic-reports"), patients=25, seed=7)


def test_zip_and_folder_give_the_same_labels_with_study_ids(mimic_root: Path, tmp_path: Path) -> None:
    label_file(mimic_root / REPORTS_ZIP, tmp_path / "zip.csv", sections="report")
    folder = tmp_path / "reports"
    with zipfile.ZipFile(mimic_root / REPORTS_ZIP) as archive:
        archive.extractall(folder)
        names = sorted(n for n in archive.namelist() if n.endswith(".txt"))
    label_file(folder, tmp_path / "folder.csv", sections="report")
    a, b = pd.read_csv(tmp_path / "zip.csv", dtype=str), pd.read_csv(tmp_path / "folder.csv", dtype=str)
    assert list(a.columns[:3]) == ["path", "subject_id", "study_id"]
    pd.testing.assert_frame_equal(a, b)
    assert a["path"].tolist() == names
    first = names[0].split("/")
    assert (a.loc[0, "subject_id"], a.loc[0, "study_id"]) == (first[2][1:], first[3][1:-4])


def test_removed_identifiers_do_not_change_the_labels() -> None:
    plain = "FINDINGS: There is a small left pleural effusion. No pneumothorax.\nIMPRESSION: Small left pleural effusion."
    masked = "FINDINGS: Compared to ___ there is a small left pleural effusion. No pneumothorax, as told to Dr. ___ at ___.\n" \
             "IMPRESSION: Small left pleural effusion."  # fmt: skip
    assert label_report(plain, sections="report").codes.tolist() == label_report(masked, sections="report").codes.tolist()


def test_agreement_with_the_label_files_per_observation(mimic_root: Path, tmp_path: Path) -> None:
    label_file(mimic_root / REPORTS_ZIP, tmp_path / "ours.csv", sections="report")
    chex = agreement(tmp_path / "ours.csv", mimic_root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    neg = agreement(tmp_path / "ours.csv", mimic_root / "mimic-cxr-2.0.0-negbio.csv.gz")
    assert list(chex.index) == [*schema.OBSERVATIONS, "all"]
    labelled = len(pd.read_csv(mimic_root / "mimic-cxr-2.0.0-chexpert.csv.gz"))
    # Every label row with a report is compared (the planted label-only row has none).
    assert int(chex.loc["Edema", "studies"]) == labelled - 1
    assert chex.loc["all", "agreement"] > 0.95  # the look-alike's reports say what its chexpert file says
    assert neg.loc["all", "agreement"] < chex.loc["all", "agreement"]  # NegBio read some hedges as positive


def test_agreement_counts_by_name_not_column_order() -> None:
    ours = pd.DataFrame({"study_id": ["1", "2"], **{o: ["1.0", ""] for o in schema.OBSERVATIONS}})
    theirs = pd.DataFrame({"subject_id": ["9", "9"], "study_id": ["2", "1"], **{o: ["", "1.0"] for o in sorted(schema.OBSERVATIONS, reverse=True)}})
    theirs.loc[0, "Edema"] = "0.0"  # study 2: ours blank, theirs negative
    found = agreement(ours, theirs)
    assert found.loc["Cardiomegaly", "agreement"] == 1.0 and found.loc["Edema", "agreement"] == 0.5
    assert found.loc["Edema", "theirs_negative"] == 1 and found.loc["Edema", "ours_blank"] == 1


def test_cli_label_reads_the_zip_and_compares(mimic_root: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "chexpert", "label", str(mimic_root / REPORTS_ZIP), "--out", str(tmp_path / "l.csv"), "--quiet",
                          "--sections", "report", "--compare", str(mimic_root / "mimic-cxr-2.0.0-chexpert.csv.gz")],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Agreement with" in out.stdout and "Pleural Effusion" in out.stdout
