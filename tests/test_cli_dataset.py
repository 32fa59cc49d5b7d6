"""`chexpert info` and `chexpert cite`, run as a user would, in a real subprocess too."""

from __future__ import annotations

import json
import subprocess
import sys

from chexpert import schema
from chexpert.cli import main


def test_info_json_structure_and_counts(small_release, capsys):
    assert main(["info", str(small_release), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["release"] == "small"
    assert set(info["splits"]) == {"train", "valid", "test"}
    train = info["splits"]["train"]
    assert {"images", "studies", "patients", "frontal", "lateral", "projection", "sex", "labels"} <= set(train)
    assert train["patients"] == 12 and info["splits"]["valid"]["patients"] >= 2
    assert train["frontal"] + train["lateral"] == train["images"]
    assert set(train["projection"]) == set(schema.PROJECTIONS)
    assert sum(train["projection"].values()) == train["images"]
    assert sum(train["sex"].values()) == train["images"]
    assert list(train["labels"]) == list(schema.OBSERVATIONS)
    for states in train["labels"].values():
        assert set(states) == {"positive", "uncertain", "negative", "blank"}
        assert sum(states.values()) == train["images"]
    valid = info["splits"]["valid"]["labels"]
    assert all(s["uncertain"] == 0 and s["blank"] == 0 for s in valid.values())


def test_info_needs_only_the_csvs(small_release, tmp_path, capsys):
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    for name in ("train.csv", "valid.csv"):
        (folder / name).write_bytes((small_release / name).read_bytes())
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["patients"] == 12


def test_info_table_in_a_subprocess(small_release):
    run = subprocess.run([sys.executable, "-m", "chexpert", "info", str(small_release)], capture_output=True, text=True, check=True)
    assert "Pleural Effusion" in run.stdout and "patients" in run.stdout


def test_missing_download_is_a_message_not_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "chexpert", "info", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 1  # a handled failure; 2 is for usage errors only
    assert "Traceback" not in run.stderr
    assert "Research Use Agreement" in run.stderr and "CheXpert-v1.0-small.zip" in run.stderr


def test_cite(capsys):
    assert main(["cite"]) == 0
    out = capsys.readouterr().out
    assert "@inproceedings{irvin2019chexpert" in out and "Research Use Agreement" in out
    assert "redistribute" in out
