"""``chexpert demo``, shortened: every step runs and the report carries the scores it printed."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from chexpert import schema
from chexpert.evaluate import evaluate


def test_a_shortened_demo_writes_a_report_with_its_numbers(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "chexpert", "demo", str(out), "--patients", "40", "--valid-patients", "40", "--steps", "12",
               "--size", "32", "--bootstrap", "50", "--workers", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    for step in ("synth", "chexpert info", "chexpert verify --decode", "chexpert prepare", "chexpert train", "chexpert predict", "chexpert evaluate", "report"):
        assert f"=== {step}" in result.stdout, step
    report = out / "report.html"
    page = report.read_text(encoding="utf-8")
    match = re.search(r"Mean AUROC of the 5 competition tasks (\d\.\d{3})", result.stdout)
    assert match is not None, result.stdout[-2000:]
    assert f'<div class="value">{match.group(1)}</div>' in page
    scored = evaluate(out / "predictions.csv", out / "CheXpert-v1.0-small" / "valid.csv", bootstrap=50)
    for task in schema.COMPETITION_TASKS:
        auroc = float(scored.table.loc[task, "auroc"])
        if not math.isnan(auroc):
            assert f"<td>{auroc:.3f}</td>" in page, task
    assert page.count("data:image/png;base64,") >= 12 + 3  # samples, prevalence, training curve, ROC curves
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "url(" not in page
    assert (out / "predictions-studies.csv").is_file() and (out / "run" / "summary.json").is_file()
