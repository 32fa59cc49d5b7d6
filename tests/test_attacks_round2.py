"""Issue 14, second round of attacks: variations of each class, against the CLI and the Python API.

Anything that might hang or explode runs in a child with a timeout and an address-space limit.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from chexpert.cli import main
from chexpert.labeler import LongReportWarning, label_reports
from chexpert.labeler.files import label_file
from chexpert.schema import LONGEST_REPORT

if TYPE_CHECKING:
    from chexpert.evaluate import Evaluation

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


# --- writers never write through a link planted in their folder ---------------------------------


def _small_evaluation() -> Evaluation:
    import numpy as np
    import pandas as pd

    from chexpert.evaluate import evaluate

    rng = np.random.default_rng(0)
    studies = [f"CheXpert-v1.0/test/patient{64741 + i}/study1" for i in range(30)]
    labels = pd.DataFrame({"Edema": (rng.random(30) < 0.4).astype(int)}).assign(Study=studies)
    scores = labels[["Edema"]] * 0.3 + rng.random((30, 1)) * 0.7
    return evaluate(scores.assign(Study=studies), labels, bootstrap=20, seed=1)


def _bait(tmp_path: Path) -> Path:
    bait = tmp_path / "outside" / "precious.txt"
    bait.parent.mkdir()
    bait.write_text("keep me")
    return bait


def test_save_plots_replaces_a_link_at_a_figure_name_rather_than_writing_through_it(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from chexpert.plots import save_plots

    bait = _bait(tmp_path)
    out = tmp_path / "plots"
    out.mkdir()
    (out / "edema.png").symlink_to(bait)
    (out / "summary.svg").symlink_to(bait)
    written = save_plots(_small_evaluation(), out)
    assert bait.read_text() == "keep me"
    assert all(p.is_file() and not p.is_symlink() for p in written)
    assert (out / "edema.png").read_bytes().startswith(b"\x89PNG")


def test_write_report_never_writes_through_a_link_at_its_temporary_name(tmp_path: Path, reference_store: Path) -> None:
    from chexpert.report import write_report
    from chexpert.store import open_store

    bait = _bait(tmp_path)
    out = tmp_path / "site"
    out.mkdir()
    (out / ".report.html.tmp").symlink_to(bait)  # the old fixed temporary name
    (out / "report.html").symlink_to(bait)
    write_report(out / "report.html", open_store(reference_store))
    assert bait.read_text() == "keep me"
    assert not (out / "report.html").is_symlink()
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_export_never_writes_through_a_link_planted_at_a_temporary_name_mid_run(tmp_path: Path, reference_store: Path) -> None:
    from chexpert.frameworks.webdataset import export_webdataset
    from chexpert.store import open_store

    bait = _bait(tmp_path)
    out = tmp_path / "shards"

    def plant(done: int, total: int) -> None:  # another process racing the export, between shards
        for name in ("chexpert-000001.tar.tmp", "chexpert-000002.tar.tmp", "manifest.json.tmp"):
            link = out / name
            if not link.is_symlink():
                link.symlink_to(bait)

    shards = export_webdataset(open_store(reference_store), out, shard_size=3, progress=plant)
    assert len(shards) >= 3
    assert bait.read_text() == "keep me"
    assert all(p.is_file() and not p.is_symlink() for p in shards)
    assert not (out / "manifest.json").is_symlink()


# --- bad arguments: one line, whatever the names hold ----------------------------------------------


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "x\x1b[2Jy", "tab\there\x85"])
@pytest.mark.parametrize("argv", [["info", "{}"], ["verify", "{}"], ["verify-store", "{}"], ["label", "{}", "--out", "o.csv", "--quiet"],
                                  ["evaluate", "--predictions", "{}", "--truth", "{}"]])  # fmt: skip
def test_a_path_with_control_characters_is_one_escaped_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str, argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([a.replace("{}", name) for a in argv]) == 1
    out, err = capsys.readouterr()
    text = err or out  # verify-store reports on stdout
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert "\x1b" not in text and "\r" not in text and "\x85" not in text
    assert repr(name)[1:-1] in text  # named, escaped as Python writes it


def test_a_nul_in_an_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["info", "a\x00b"])
    assert stopped.value.code == 2
    assert "NUL" in capsys.readouterr().err


def test_an_escape_sequence_in_a_csv_path_is_shown_escaped_by_verify(tmp_path: Path, small_release: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(small_release, copy)
    train = copy / "train.csv"
    lines = train.read_text().split("\n")
    lines[1] = lines[1].replace("view1", "vi\x1b[2Jew1", 1)
    train.write_text("\n".join(lines))
    assert main(["verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "vi\\x1b[2Jew1" in out


@pytest.mark.parametrize("blank", ["", " ", "\t"])
@pytest.mark.parametrize("argv", [["synth", "{}"], ["prepare", "release", "--out", "{}"], ["export", "store", "{}"], ["label", "{}", "--out", "o.csv"],
                                  ["label", "r.csv", "--out", "{}"], ["evaluate", "--predictions", "p.csv", "--truth", "t.csv", "--plots", "{}"],
                                  ["info", "{}"], ["verify-store", "{}"]])  # fmt: skip
def test_an_empty_name_is_a_usage_error_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], blank: str, argv: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main([a.replace("{}", blank) for a in argv])
    assert stopped.value.code == 2
    assert "names no file or folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


# --- duplicate columns: never a silent choice of one copy ------------------------------------------


def test_a_repeated_column_in_predictions_or_soft_labels_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chexpert.errors import CSVFormatError
    from chexpert.policy import read_soft_labels

    soft = tmp_path / "soft.csv"
    soft.write_text("Path,Edema,Edema\nCheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg,0.1,0.9\n")
    with pytest.raises(CSVFormatError, match=r"soft\.csv, row 1: soft-label column 'Edema' appears more than once"):
        read_soft_labels(soft)  # before: the first copy was taken, the second dropped without a word
    studies = [f"CheXpert-v1.0/test/patient{64741 + i}/study1" for i in range(6)]
    (tmp_path / "truth.csv").write_text("Study,Edema\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(studies)))
    (tmp_path / "pred.csv").write_text("Study,Edema,Edema\n" + "".join(f"{s},0.{i},0.5\n" for i, s in enumerate(studies)))
    argv = ["evaluate", "--predictions", str(tmp_path / "pred.csv"), "--truth", str(tmp_path / "truth.csv"), "--bootstrap", "10"]
    assert main(argv) == 1
    assert "predictions column 'Edema' appears more than once in the header" in capsys.readouterr().err


# --- export stopped by Ctrl-C or SIGTERM ------------------------------------------------------------


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_an_export_stopped_mid_run_leaves_no_temporary_file_and_is_named_unfinished(tmp_path: Path, small_release: Path, signum: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from chexpert.store import prepare
    from tests.conftest import as_a_terminal_starts_it

    store = tmp_path / "store"
    prepare(small_release, store, size=320)  # PNG shards of one image each: long enough to stop mid-run
    out = tmp_path / "shards"
    argv = [sys.executable, "-m", "chexpert", "export", str(store), str(out), "--format", "webdataset", "--shard-size", "1",
            "--image-format", "png", "--quiet"]  # fmt: skip
    child = subprocess.Popen(argv, preexec_fn=as_a_terminal_starts_it, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(n.endswith(".tar") for n in os.listdir(out))) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    child.send_signal(getattr(signal, signum))
    _, err = child.communicate(timeout=60)
    if child.returncode == 0:
        pytest.skip("the export finished before the signal arrived")
    assert child.returncode == {"SIGINT": 130, "SIGTERM": 143}[signum], err
    left = os.listdir(out)
    if "manifest.json" in left:
        pytest.skip("the signal arrived after the export's last write")
    assert left and all(n.startswith("chexpert-") and n.endswith(".tar") for n in left), left  # no .tmp, no manifest
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1
    assert "holds an unfinished export" in again.stderr and "no manifest.json" in again.stderr
    done = subprocess.run([*argv, "--overwrite"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.json").is_file()


# --- CheXlocalize masks: numbers that wrap around or are not numbers --------------------------------


@pytest.mark.parametrize("counts", ["[2**62, 2**62, 2**62, 2**62, 6]", "[10**30, 1]", "[7, -1]"])
def test_run_lengths_that_overflow_are_an_error_not_a_crash(counts: str) -> None:
    import subprocess
    import sys

    # In a child: before, runs of 2**62 wrapped the int64 sum to the image's size and np.repeat
    # crashed the interpreter (SIGSEGV); 10**30 was an OverflowError escaping as a traceback.
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "from chexpert.localize import decode_rle\n"
        f"try:\n    decode_rle({{'size': [2, 3], 'counts': {counts}}})\nexcept ValueError as exc:\n    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.startswith("refused: counts holds a"), done.stdout


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_polygon_point_that_is_not_finite_is_an_error(bad: float) -> None:
    from chexpert.localize import rasterize

    with pytest.raises(ValueError, match="not a finite number"):
        rasterize([[[0, 0], [bad, 1], [2, 2]]], (4, 4))  # before: drawn as some pixels, silently


# --- synth after a run that was killed ----------------------------------------------------------


def test_synth_after_a_killed_run_names_its_leftover_staging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "chexpert", "synth", str(out), "--patients", "300"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(n.startswith(".synth-") for n in os.listdir(out))) and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    left = [n for n in os.listdir(out) if n.startswith(".synth-")]
    assert left, "the run was killed before it made its staging folder"
    assert main(["synth", str(out / "again"), "--patients", "2"]) == 0  # elsewhere: no warning
    assert "warning" not in capsys.readouterr().err
    assert main(["synth", str(out), "--patients", "2", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {out} holds {left[0]}: staging left by a synth run that was killed" in " ".join(err.split())
    assert (out / left[0]).is_dir()  # not removed: nothing proves no other synth writes there


# --- labeler gold sets: duplicates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "text": "No effusion.", "labels": {"Pleural Effusion": 0.0}}',
          '{"id": "a", "text": "Effusion.", "labels": {"Pleural Effusion": 1.0}}'], r"row 2: id 'a' was already given on line 1"),
        (['{"id": "c", "text": "x", "labels": {"Edema": 1.0, "Edema": 0.0}}'], r"row 1: .*'Edema' given twice in one object"),
        (['{"id": "c", "id": "d", "text": "x", "labels": {}}'], r"row 1: .*'id' given twice"),
    ],
)  # fmt: skip
def test_a_gold_set_repeating_a_report_or_a_label_is_refused(tmp_path: Path, lines: list[str], message: str) -> None:
    from chexpert.errors import CSVFormatError
    from chexpert.labeler.evaluation import read_gold

    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(lines) + "\n")
    with pytest.raises(CSVFormatError, match=message):  # before: the later copy kept, or both scored, silently
        read_gold(gold)
