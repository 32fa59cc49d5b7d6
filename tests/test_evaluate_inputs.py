"""evaluate's input files attacked: mixed levels, zips, folders, FIFOs, empty and binary files.

Each is one line on stderr naming the file, exit 1, no traceback, never a hang.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chexpert.errors import CSVFormatError
from chexpert.evaluate import evaluate
from tests.test_evaluate import STUDY0, STUDY1, Files, write_files


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return write_files(tmp_path, n=12, readers=1)


def _cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=timeout, check=False)


def _one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _mixed(files: Files, out: Path, *, study_column: bool) -> Path:
    frame = pd.read_csv(files.predictions, dtype=str, keep_default_na=False)
    study_row = frame.iloc[:1].copy()
    if study_column:
        study_row = study_row.drop(columns="Path").assign(Study=STUDY1)
        frame = pd.concat([frame.assign(Study=""), study_row.assign(Path="")])[["Path", "Study", *frame.columns[1:]]]
    else:
        frame = pd.concat([frame, study_row.assign(Path=f"CheXpert-v1.0-small/{STUDY1}")])
    frame.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("study_column", [False, True], ids=["study-path-in-Path", "Study-column"])
def test_image_and_study_rows_in_one_file_are_refused(files: Files, tmp_path: Path, study_column: bool) -> None:
    mixed = _mixed(files, tmp_path / "mixed.csv", study_column=study_column)
    with pytest.raises(
        CSVFormatError, match=r"mixes image-level and study-level rows \(row 2: Path .*is an image; row \d+: (Path|Study) .*study1' is a study\)"
    ) as raised:
        evaluate(mixed, files.truth, bootstrap=0)
    assert raised.value.file == str(mixed)


def test_study_level_file_holding_image_paths_is_refused(files: Files, tmp_path: Path) -> None:
    frame = pd.DataFrame({"Study": [STUDY0, f"{STUDY1}/view1_frontal.jpg"], "Edema": ["0.5", "0.2"]})
    frame.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(CSVFormatError, match="mixes image-level and study-level"):
        evaluate(tmp_path / "p.csv", files.truth, bootstrap=0)


def test_mixed_truth_and_radiologist_files_are_refused(files: Files, tmp_path: Path) -> None:
    reader = pd.read_csv(files.readers[0], dtype=str)
    reader.loc[0, "Study"] = reader.loc[0, "Study"] + "/view1_frontal.jpg"
    reader.to_csv(tmp_path / "bc.csv", index=False)
    with pytest.raises(CSVFormatError, match="radiologist mixes image-level and study-level"):
        evaluate(files.predictions, files.truth, radiologists=[tmp_path / "bc.csv"], bootstrap=0)


def test_one_level_files_still_score(files: Files) -> None:
    result = evaluate(files.predictions, files.truth, radiologists=files.readers, bootstrap=0)
    assert result.n_studies == 12


def _zip(files: Files, out: Path, members: int) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(members):
            zf.write(files.predictions, f"p{i}.csv")
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    return fifo


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda f, t: _zip(f, t / "release.zip", 2), "is a zip archive, not a CSV"),
        (lambda f, t: _zip(f, t / "one.zip", 1), "is a zip archive, not a CSV"),
        (lambda f, t: Path(t), "not a folder"),
        (lambda f, t: _fifo(t), "is a FIFO that nothing wrote to within 5 s"),  # never a hang
        (lambda f, t: _write(t / "empty.csv", b""), "is empty"),
        (lambda f, t: _write(t / "blank.csv", b"\n\n"), "is empty"),
        (lambda f, t: _write(t / "bin.csv", np.random.default_rng(0).bytes(4096) + b"\0"), "binary data"),
        (lambda f, t: _write(t / "latin.csv", b"Path,Edema\nvalid/patient64541/study1/caf\xe9.jpg,0.5\n"), "not UTF-8 text (line 2)"),
        (lambda f, t: _write(t / "bomb.csv.gz", gzip.compress(b"Path," + b"x" * (1 << 24))), ""),
        (lambda f, t: Path("/dev/null"), "device"),
    ],
    ids=["zip-two-members", "zip-one-member", "folder", "fifo", "empty", "blank-lines", "binary", "latin-1", "gzip-ragged", "device"],
)
@pytest.mark.parametrize("role", ["predictions", "truth", "radiologists", "metadata"])
def test_files_that_are_not_csv_text_are_one_line(files: Files, tmp_path: Path, make: Callable[[Files, Path], Path], message: str, role: str) -> None:
    bad = make(files, tmp_path)
    argv = {"predictions": ["--predictions", str(bad), "--truth", str(files.truth)],
            "truth": ["--predictions", str(files.predictions), "--truth", str(bad)],
            "radiologists": ["--predictions", str(files.predictions), "--truth", str(files.truth), "--radiologists", str(bad)],
            "metadata": ["--predictions", str(files.predictions), "--truth", str(files.readers[0]), "--metadata", str(bad), "--by", "sex"]}[role]  # fmt: skip
    if role == "truth" and bad.is_dir():
        pytest.skip("a folder as --truth is a release folder")
    if role == "metadata" and bad.is_dir():
        pytest.skip("a folder as --metadata is a release folder")
    if role == "truth" and bad.suffix == ".zip":
        message = "holds no CheXpert release"  # a zip as --truth is taken for a release, and is none
    result = _cli("evaluate", *argv, "--bootstrap", "0", timeout=60)
    _one_line_failure(result, "chexpert evaluate: ", message)


def test_a_pipe_with_a_writer_is_read(files: Files, tmp_path: Path) -> None:
    """A named pipe whose writer comes, slowly, is read whole; so is ``<(command)``."""
    fifo = _fifo(tmp_path)

    def write() -> None:
        with open(fifo, "wb") as f:  # blocks until evaluate opens the FIFO
            data = files.predictions.read_bytes()
            f.write(data[:100])
            time.sleep(0.5)
            f.write(data[100:])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = evaluate(fifo, files.truth, bootstrap=0)
    finally:
        writer.join(timeout=30)
    assert result.n_studies == 12
    shell = subprocess.run(
        ["bash", "-c", f'"$0" -m chexpert evaluate --predictions <(cat "{files.predictions}") --truth "{files.truth}" --bootstrap 0 --json', sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shell.returncode == 0 and json.loads(shell.stdout)["n_studies"] == 12, shell.stderr


def test_gzipped_csv_is_still_read(files: Files, tmp_path: Path) -> None:
    packed = tmp_path / "p.csv.gz"
    packed.write_bytes(gzip.compress(files.predictions.read_bytes()))
    assert evaluate(packed, files.truth, bootstrap=0).n_studies == 12


def test_soft_labels_are_read_as_safely(files: Files, tmp_path: Path) -> None:
    """export --soft-labels (and train's) reads its CSV the same way: a zip or a FIFO is one line."""
    store = tmp_path / "store"
    store.mkdir()
    for bad, message in ((_zip(files, tmp_path / "soft.zip", 2), "is a zip archive"), (_fifo(tmp_path), "nothing wrote to")):
        result = _cli("export", str(store), str(tmp_path / "out"), "--format", "webdataset", "--policy", "chexpert-paper-best", "--soft-labels", str(bad))
        _one_line_failure(result, "chexpert export: ", str(bad), message)
