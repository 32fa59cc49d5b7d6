"""Issue 14, second round of attacks: variations of each class, against the CLI and the Python API.

Anything that might hang or explode runs in a child with a timeout and an address-space limit.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from chexpert.cli import main
from chexpert.labeler import LongReportWarning, label_reports
from chexpert.labeler.files import label_file
from chexpert.labeler.pipeline import LONGEST_REPORT

LONG = "No effusion. " + "x " * LONGEST_REPORT + "Large pneumothorax."


# --- the labeler's bound per report is counted, never silent --------------------------------------


def test_label_reports_says_how_many_reports_were_cut() -> None:
    with pytest.warns(LongReportWarning, match=r"^2 reports were longer than 200,000 characters"):
        label_reports([LONG, "No effusion.", LONG], sections="report")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        label_reports(["No effusion.", "x" * LONGEST_REPORT])  # at the bound: read whole, no warning


def test_label_file_and_the_cli_summary_count_the_cut_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "reports.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "report"], ["1", LONG], ["2", "No effusion."]])
    summary = label_file(source, tmp_path / "a.csv", column="report", sections="report")
    assert summary.cut == 1
    assert main(["label", str(source), "--out", str(tmp_path / "b.csv"), "--column", "report", "--quiet"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 report was longer than 200,000 characters and read only that far" in out
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(LONG)
    (folder / "b.txt").write_text(LONG)
    assert label_file(folder, tmp_path / "c.csv").cut == 2
