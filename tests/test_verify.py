"""verify: a clean release passes; each kind of damage is one named line with file and row."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chexpert
from chexpert.cli import main
from chexpert.synth import synth_rows, write_csv
from tests.conftest import alive, as_a_terminal_starts_it, live_children, tree_digest


@pytest.fixture
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
        {"kind": "missing", "severity": "error", "file": str(damaged / "train.csv"), "row": 2, "message": f"image {path!r} not found in the download"}
    ]
    assert main(["verify", str(damaged)]) == 1
    text = capsys.readouterr().out
    assert "1 problem" in text and "row 2" in text


# ------------------------------------------------------------------------------ an incomplete download


def test_a_missing_split_is_a_problem(damaged):
    (damaged / "valid.csv").unlink()
    shutil.rmtree(damaged / "valid")
    report = chexpert.verify(damaged)
    assert not report.ok
    assert [(p.kind, p.file) for p in report.problems] == [("split", str(damaged))]
    assert "valid.csv is missing" in report.problems[0].message


def test_a_truncated_look_alike_is_checked_against_what_synth_wrote(damaged):
    lines = (damaged / "train.csv").read_bytes().splitlines(keepends=True)
    (damaged / "train.csv").write_bytes(b"".join(lines[:-3]))
    report = chexpert.verify(damaged)
    count = [p for p in report.problems if p.kind == "count"]
    assert [(p.file, p.row) for p in count] == [(str(damaged / "train.csv"), None)]
    assert f"has {len(lines) - 4} rows; chexpert synth wrote {len(lines) - 1}" in count[0].message


@pytest.fixture
def csvs_only(real_train_csv: Path, tmp_path: Path) -> Path:
    """The real train.csv in a release folder, as extracted without its images."""
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    (folder / "train.csv").write_bytes(gzip.decompress(real_train_csv.read_bytes()))
    return folder


def test_csvs_without_images_is_one_problem_not_223414(csvs_only, capsys):
    report = chexpert.verify(csvs_only)
    assert sorted(p.kind for p in report.problems) == ["no-images", "split"]  # valid.csv is not there either
    no_images = next(p for p in report.problems if p.kind == "no-images")
    assert "no image found for any of the 223,414 rows" in no_images.message
    assert "wrong root, or images not extracted?" in no_images.message
    assert main(["verify", str(csvs_only), "--json"]) == 1
    assert len(capsys.readouterr().out) < 5_000  # was 54 MB


def test_a_mostly_missing_split_is_one_line(csvs_only, small_release):
    """A few images of the real train.csv present, the rest missing: one summary line, and the
    published count of rows is right (223,414), so no count problem."""
    paths = chexpert.open(csvs_only).index("train").path.tolist()[:3]
    jpeg = next((small_release / "train").rglob("*.jpg")).read_bytes()
    for path in paths:
        target = _file(csvs_only, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg)
    report = chexpert.verify(csvs_only)
    missing = [p for p in report.problems if p.kind == "missing"]
    assert len(missing) == 1 and missing[0].row is None
    assert "the images of 223,411 of its 223,414 rows are not in the download (rows 5, 6, 7, 8, 9, ...)" in missing[0].message
    assert not any(p.kind == "count" for p in report.problems)


def test_published_counts_are_checked_for_a_real_release(csvs_only, small_release):
    data = (csvs_only / "train.csv").read_bytes()
    (csvs_only / "train.csv").write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])  # a truncated download
    (csvs_only / "valid.csv").write_bytes((small_release / "valid.csv").read_bytes())  # too few rows
    report = chexpert.verify(csvs_only)
    counts = {Path(p.file).name: p.message for p in report.problems if p.kind == "count"}
    assert set(counts) == {"train.csv", "valid.csv"}
    assert "train.csv of CheXpert-v1.0-small has 223,414" in counts["train.csv"]
    assert "valid.csv of CheXpert-v1.0-small has 234" in counts["valid.csv"]


@pytest.mark.parametrize(("patients", "studies_problem"), [(500, False), (499, True)])
def test_the_test_set_counts(csvs_only, patients, studies_problem):
    """668 images of 500 studies (torchxrayvision's CheXlocalize_Dataset documents both)."""
    write_csv(csvs_only / "test_labels.csv", synth_rows("test", patients=patients, seed=3))
    report = chexpert.verify(csvs_only)
    counts = [p.message for p in report.problems if p.kind == "count" and p.file.endswith("test_labels.csv")]
    assert any("test_labels.csv of CheXpert-v1.0-small has 668" in m for m in counts)  # the look-alike's rows differ
    assert any("the CheXpert test set has 500" in m for m in counts) == studies_problem


# ------------------------------------------------------------------------------ severities and order


def test_crlf_and_bom_are_warnings(damaged, capsys):
    data = (damaged / "train.csv").read_bytes()
    (damaged / "train.csv").write_bytes(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    report = chexpert.verify(damaged)
    assert report.ok
    assert {(p.kind, p.severity) for p in report.problems} == {("bom", "warning"), ("crlf", "warning")}
    assert main(["verify", str(damaged), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["errors"] == 0 and out["warnings"] == 2
    assert {p["severity"] for p in out["problems"]} == {"warning"}
    assert main(["verify", str(damaged)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("OK ") and "2 warning(s)" in text and "crlf (warning)" in text


def test_rarer_problem_kinds_are_listed_first(damaged, capsys):
    paths = _train_paths(damaged)
    for path in paths[:4]:
        _file(damaged, path).unlink()
    lines = (damaged / "train.csv").read_bytes().splitlines(keepends=True)
    (damaged / "train.csv").write_bytes(b"".join(lines[:-1]))  # one row fewer than synth wrote
    assert main(["verify", str(damaged)]) == 1
    text = capsys.readouterr().out.splitlines()
    assert text[0].endswith(" images listed): 1 count, 1 unlisted, 4 missing")
    listed = [line.split()[0] for line in text[1:]]
    assert listed == ["count", "unlisted", "missing", "missing", "missing", "missing"]


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.fixture(scope="module")
def slow_release(tmp_path_factory):
    """6,000 full-resolution images (hard links of one): minutes of decoding on two cores."""
    root = chexpert.synthesize(tmp_path_factory.mktemp("slow"), release="full", patients=1, seed=2)
    row = next(r for r in synth_rows(patients=1, seed=2, release="full") if r["Frontal/Lateral"] == "Frontal")
    jpeg = root / row["Path"].removeprefix("CheXpert-v1.0/")
    rows = []
    for patient in range(1, 3001):
        for study in (1, 2):
            path = f"CheXpert-v1.0/train/patient{patient:05d}/study{study}/view1_frontal.jpg"
            target = root / path.removeprefix("CheXpert-v1.0/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(jpeg, target)
            rows.append(dict(row, Path=path))
    write_csv(root / "train.csv", rows)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("workers_seen", [1, 2], ids=["as-workers-start", "while-decoding"])
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_decode_ends_at_once_with_one_line(slow_release, workers_seen, sig, code, word):
    """Ctrl-C or SIGTERM (to the whole process group, as a terminal sends it) during verify
    --decode: one line, exit 130 or 143, no worker traceback, the workers gone, no waiting for the
    queued images. The group is frozen the moment the first (or second) worker exists, so that the
    signal lands in that exact moment: the first is where a worker has not yet learnt to ignore
    it and the parent does not yet hold the pool it must stop (once: a traceback, or a hang)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "chexpert", "verify", str(slow_release), "--decode", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_a_terminal_starts_it,  # not what this test run inherited (SIGINT ignored under nohup)
    )
    deadline = time.monotonic() + 120
    while len(workers := live_children(process.pid)) < workers_seen and time.monotonic() < deadline:
        pass  # no sleep: catch the first worker as early as possible
    os.killpg(process.pid, signal.SIGSTOP)
    assert process.poll() is None and len(workers) >= workers_seen, "the workers never started"
    os.killpg(process.pid, sig)
    os.killpg(process.pid, signal.SIGCONT)
    out, err = process.communicate(timeout=60)  # the queued images would take minutes: it stopped
    assert process.returncode == code
    assert err.splitlines() == [f"chexpert verify: {word}"], err
    assert out == ""
    assert not any(alive(pid) for pid in workers + live_children(process.pid))
