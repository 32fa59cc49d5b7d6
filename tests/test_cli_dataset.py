"""`chexpert info` and `chexpert cite`, run as a user would, in a real subprocess too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import chexpert
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


# ------------------------------------------------------------------------------ not a release


def _info(path: Path | str) -> subprocess.CompletedProcess[str]:
    # A timeout: `info /` once walked /proc; it must answer, not hang.
    return subprocess.run([sys.executable, "-m", "chexpert", "info", str(path)], capture_output=True, text=True, timeout=120)


def _one_line_failure(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("chexpert info: ")
    return lines[0]


def test_info_of_the_root_folder_is_one_line_without_download_instructions():
    line = _one_line_failure(_info("/"))
    assert "no CheXpert release in /" in line
    assert "Research Use Agreement" not in line  # nothing is missing: the path is wrong
    assert "Pass the CheXpert zip, the folder it unpacks to, or the folder that holds the zips" in line


def test_info_of_a_path_inside_a_release_says_which_folder_to_pass(small_release):
    for inside in (small_release / "valid.csv", small_release / "train", small_release / "train" / "patient00001"):
        line = _one_line_failure(_info(inside))
        assert f"pass the folder that holds train.csv ({small_release})" in line, line
        assert "Research Use Agreement" not in line


def test_info_of_other_non_releases(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a release")
    assert "is neither a folder nor a zip archive" in _one_line_failure(_info(text))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "is neither a folder nor a zip archive" in _one_line_failure(_info(fifo))
    unrelated = tmp_path / "photos"
    (unrelated / "2019").mkdir(parents=True)
    (unrelated / "2019" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    line = _one_line_failure(_info(unrelated))
    assert "no CheXpert release in" in line and "Research Use Agreement" not in line
    # Where the data really is missing, say how to get it.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "Research Use Agreement" in _one_line_failure(_info(empty))
    assert "Research Use Agreement" in _one_line_failure(_info(tmp_path / "CheXpert-v1.0-small.zip"))  # not downloaded yet
    line = _one_line_failure(_info(tmp_path / "typo"))
    assert line.endswith("typo does not exist.")


def test_discovery_looks_at_a_bounded_number_of_entries(tmp_path, monkeypatch):
    import chexpert.release

    monkeypatch.setattr(chexpert.release, "_MAX_ENTRIES", 50)
    for i in range(200):
        (tmp_path / f"folder{i:03d}" / "sub").mkdir(parents=True)
    with pytest.raises(chexpert.ReleaseNotFoundError, match="stopped after 50 entries"):
        chexpert.open(tmp_path)


def test_the_cli_says_kind_as_an_option(small_release, tmp_path):
    for name in ("CheXpert-v1.0-small", "CheXpert-v1.0"):
        (tmp_path / name).mkdir()
        shutil.copy(small_release / "train.csv", tmp_path / name / "train.csv")
    line = _one_line_failure(_info(tmp_path))
    assert "choose one with --kind small or --kind full" in line
    with pytest.raises(chexpert.ChexpertError, match="kind='small'"):
        chexpert.open(tmp_path)
