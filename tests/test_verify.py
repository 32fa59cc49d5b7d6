"""verify: a clean release passes; each kind of damage is one named line with file and row."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chexpert
from chexpert.cli import main
from chexpert.synth import synth_rows, write_csv
from tests.conftest import tree_digest


@pytest.fixture()
def damaged(small_release: Path, tmp_path: Path) -> Path:
    """A private copy of the look-alike release, free to damage."""
    return Path(shutil.copytree(small_release, tmp_path / "CheXpert-v1.0-small"))


def _train_paths(root: Path) -> list[str]:
    return chexpert.open(root).index("train").path.tolist()


def _file(root: Path, csv_path: str) -> Path:
    return root / csv_path.removeprefix("CheXpert-v1.0-small/")


def test_clean_release_is_ok_and_untouched(small_release):
    before = tree_digest(small_release)
    report = chexpert.verify(small_release, decode=True, workers=2)
    assert report.ok, report.problems
    assert report.decoded == report.images > 0
    assert tree_digest(small_release) == before


def test_each_damage_is_reported_with_file_and_row(damaged):
    paths = _train_paths(damaged)
    rows = {p: i + 2 for i, p in enumerate(paths)}  # CSV line numbers (header is line 1)
    missing, empty, truncated, png, rgba, deep, small = paths[0], paths[1], paths[2], paths[3], paths[4], paths[5], paths[6]
    _file(damaged, missing).unlink()
    _file(damaged, empty).write_bytes(b"")
    data = _file(damaged, truncated).read_bytes()
    _file(damaged, truncated).write_bytes(data[: len(data) // 3])
    gray = np.asarray(Image.open(_file(damaged, png)))

    def save(path: str, image: Image.Image, fmt: str) -> None:
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        _file(damaged, path).write_bytes(buffer.getvalue())

    save(png, Image.fromarray(gray), "PNG")
    save(rgba, Image.fromarray(gray).convert("RGBA"), "PNG")
    save(deep, Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
    save(small, Image.fromarray(gray).resize((200, 240)), "JPEG")
    extra = damaged / "train" / "patient00001" / "study99" / "view1_frontal.jpg"
    extra.parent.mkdir()
    extra.write_bytes(_file(damaged, paths[7]).read_bytes())

    report = chexpert.verify(damaged, decode=True, workers=1)
    found = {(p.kind, p.row) for p in report.problems}
    assert ("missing", rows[missing]) in found
    assert ("decode", rows[empty]) in found
    assert ("decode", rows[truncated]) in found
    assert ("format", rows[png]) in found
    assert ("mode", rows[rgba]) in found and ("format", rows[rgba]) in found
    assert ("mode", rows[deep]) in found
    assert ("size", rows[small]) in found
    assert any(p.kind == "unlisted" and "study99" in p.file for p in report.problems)
    for problem in report.problems:
        if problem.row is not None:
            assert problem.file.endswith("train.csv")
    # Nothing else is flagged: every listed problem is one of the damages made above.
    damaged_rows = {rows[p] for p in (missing, empty, truncated, png, rgba, deep, small)}
    assert {p.row for p in report.problems if p.row is not None} == damaged_rows


def test_csv_problems_appear_in_the_report(damaged):
    rows = synth_rows("train", patients=12, seed=7)
    rows[3] = {**rows[3], "Edema": "yes"}
    rows.append(dict(rows[5]))
    write_csv(damaged / "train.csv", rows, newline="\r\n")
    report = chexpert.verify(damaged)
    kinds = {(p.kind, p.row) for p in report.problems}
    assert ("label", 5) in kinds
    assert ("duplicate", len(rows) + 1) in kinds
    assert ("crlf", 1) in kinds


def test_cli_json_report_and_exit_code(damaged, capsys):
    assert main(["verify", str(damaged), "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["ok"] is True and clean["problems"] == []
    path = _train_paths(damaged)[0]
    _file(damaged, path).unlink()
    assert main(["verify", str(damaged), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["problems"] == [
        {"kind": "missing", "file": str(damaged / "train.csv"), "row": 2, "message": f"image {path!r} not found in the download"}
    ]
    assert main(["verify", str(damaged)]) == 1
    text = capsys.readouterr().out
    assert "1 problem" in text and "row 2" in text
