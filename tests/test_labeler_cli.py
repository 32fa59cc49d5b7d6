"""``chexpert label``: CSV and folder inputs, the output's shape, bad input, interrupts, a full
disk, and bounded memory on a file far larger than what a run may hold, in real processes."""

from __future__ import annotations

import csv
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chexpert.cli import main
from chexpert.errors import InvalidArgumentError, ReadError
from chexpert.labeler import label_report
from chexpert.labeler.files import label_file
from chexpert.schema import MAX_REPORT, OBSERVATIONS
from tests.conftest import as_a_terminal_starts_it, tree_digest, with_sigint_ignored

SPELLING = {1.0: "1.0", 0.0: "0.0", -1.0: "-1.0", None: ""}
REPORTS = [
    "FINDINGS: Heart size is normal. Small left effusion.\nIMPRESSION: Small left pleural effusion, no pneumothorax.",
    "IMPRESSION:\n1. Possible right lower lobe pneumonia.\n2. ET tube 4 cm above the carina.",
    "",
    'No acute cardiopulmonary process, "normal" study.',
    "Findings consistent with CHF.\nModerate cardiomegaly.",
]


def _run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="60")
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, env=env, **kwargs)


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    return path


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def _expected(text: str, sections: str = "impression") -> list[str]:
    return [SPELLING[v] for v in label_report(text, sections=sections).labels.values()]


def test_a_csv_with_a_header_keeps_rows_in_order_and_their_columns(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "reports.csv", [["study_id", "report", "site"]] + [[f"s{i}", text, "A"] for i, text in enumerate(REPORTS)])
    before = tree_digest(tmp_path)
    out = tmp_path / "out" / "labels.csv"
    out.parent.mkdir()
    run = _run("label", str(source), "--out", str(out), "--column", "report", "--quiet")
    assert run.returncode == 0, run.stderr
    rows = _read_csv(out)
    assert rows[0] == ["study_id", "site", *OBSERVATIONS]
    assert [row[:2] for row in rows[1:]] == [[f"s{i}", "A"] for i in range(len(REPORTS))]
    assert [row[2:] for row in rows[1:]] == [_expected(text) for text in REPORTS]
    assert {cell for row in rows[1:] for cell in row[2:]} <= {"1.0", "0.0", "-1.0", ""}
    assert f"{out}: {len(REPORTS)} reports labelled" in run.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.csv"]  # no temporary file left
    # the input is untouched
    (out.parent / "labels.csv").unlink()
    out.parent.rmdir()
    assert tree_digest(tmp_path) == before


def test_keep_chooses_the_identifying_columns(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "r.csv", [["a", "text", "b"], ["1", "No effusion.", "x"]])
    assert main(["label", str(source), "--out", str(tmp_path / "o.csv"), "--column", "text", "--keep", "b", "--quiet"]) == 0
    assert _read_csv(tmp_path / "o.csv") == [["b", *OBSERVATIONS], ["x", "1.0"] + [""] * 9 + ["0.0", "", "", ""]]


def test_a_headerless_one_column_csv_as_the_original_labeler_takes(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "reports.csv", [[text] for text in REPORTS])
    with source.open("a") as file:
        file.write("\n")  # a blank line is no record
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--sections", "report", "--quiet")
    assert run.returncode == 0, run.stderr
    rows = _read_csv(tmp_path / "o.csv")
    assert rows[0] == ["row", "Reports", *OBSERVATIONS]
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(1, len(REPORTS) + 1)]  # to match results back
    assert [row[1] for row in rows[1:]] == REPORTS
    assert [row[2:] for row in rows[1:]] == [_expected(text, "report") for text in REPORTS]


def test_a_headerless_csv_numbers_its_reports_and_counts_empty_ones(tmp_path: Path) -> None:
    source = tmp_path / "reports.csv"
    source.write_text('No effusion.\n""\n\n"Mild edema,\nno effusion."\n', encoding="utf-8")
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--sections", "report")
    assert run.returncode == 0, run.stderr
    rows = _read_csv(tmp_path / "o.csv")
    assert [row[:2] for row in rows[1:]] == [["1", "No effusion."], ["2", ""], ["3", "Mild edema,\nno effusion."]]
    assert rows[2][2:] == [""] * len(OBSERVATIONS)  # the empty report: blank throughout
    assert "3 reports labelled" in run.stdout and "empty 1" in run.stdout, run.stdout


def test_a_folder_of_text_reports(tmp_path: Path) -> None:
    root = tmp_path / "files"
    for i, text in enumerate(REPORTS):
        path = root / f"p1{i % 2}" / f"s{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "notes.md").write_text("Pneumothorax.")  # not a report
    out = tmp_path / "o.csv"
    run = _run("label", str(root), "--out", str(out), "--workers", "2", "--quiet")
    assert run.returncode == 0, run.stderr
    rows = _read_csv(out)
    assert rows[0] == ["path", *OBSERVATIONS]
    names = sorted((root / f"p1{i % 2}" / f"s{i}.txt").relative_to(root).as_posix() for i in range(len(REPORTS)))
    assert [row[0] for row in rows[1:]] == names
    for row in rows[1:]:
        assert row[1:] == _expected((root / row[0]).read_text(encoding="utf-8"))


def test_workers_write_the_same_file(tmp_path: Path) -> None:
    texts = [REPORTS[i % len(REPORTS)] + (f" {i}" if REPORTS[i % len(REPORTS)] else "") for i in range(1500)]
    source = _write_csv(tmp_path / "r.csv", [["id", "text"]] + [[str(i), t] for i, t in enumerate(texts)])
    one = label_file(source, tmp_path / "one.csv", column="text", chunk=64)
    two = label_file(source, tmp_path / "two.csv", column="text", workers=2, chunk=64)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert one.reports == two.reports == 1500
    assert one.counts == two.counts and one.parts == two.parts
    assert one.parts["empty"] == 300
    assert one.counts["Edema"]["positive"] == 300 and one.counts["Cardiomegaly"]["positive"] == 300


@pytest.mark.parametrize(
    ("rows", "argv", "message"),
    [
        ([["id", "text"], ["1", "x"]], [], "reports.csv, row 1: 2 columns ('id', 'text'): name the one with the reports with --column NAME"),
        ([["id", "text"], ["1", "x"]], ["--column", "report"], "reports.csv, row 1: no column 'report'; the columns are 'id', 'text'"),
        ([["id", "text"], ["1", "x"], ["2", "y", "z"]], ["--column", "text"], "reports.csv, row 3: 3 fields where the header has 2"),
        (
            [["text", "Edema"], ["x", "1.0"]],
            ["--column", "text"],
            "already has a column 'Edema', which the labels would repeat; choose the columns to keep with --keep COLUMN",
        ),
        ([["a"], ["b", "c"]], [], "reports.csv, row 2: 2 fields in a one-column file of reports"),
        ([], [], "reports.csv: the file is empty"),
    ],
)
def test_bad_csv_input_is_one_line_naming_file_and_row(tmp_path: Path, rows: list[list[str]], argv: list[str], message: str) -> None:
    source = _write_csv(tmp_path / "reports.csv", rows)
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--quiet", *argv)
    assert run.returncode == 1
    assert run.stderr.startswith("chexpert label: ") and message in run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert not (tmp_path / "o.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["reports.csv"]


def test_text_in_another_encoding(tmp_path: Path) -> None:
    source = tmp_path / "r.csv"
    source.write_bytes("text\nPleural effusion \u2013 r\u00e9solu. No pneumothorax.\n".encode("cp1252"))
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--column", "text", "--quiet")
    assert run.returncode == 1
    assert "r.csv, row 2: not utf-8-sig text" in run.stderr and "--encoding latin-1" in run.stderr
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--column", "text", "--encoding", "cp1252", "--quiet")
    assert run.returncode == 0, run.stderr
    row = dict(zip(*_read_csv(tmp_path / "o.csv")))
    assert (row["Pleural Effusion"], row["Pneumothorax"]) == ("1.0", "0.0")
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"No effusion \xe9.")
    run = _run("label", str(folder), "--out", str(tmp_path / "f.csv"), "--quiet")
    assert run.returncode == 1 and f"{folder / 'a.txt'}: not utf-8-sig text" in run.stderr


def test_a_report_larger_than_any_report_is_a_damaged_file(tmp_path: Path) -> None:
    source = tmp_path / "r.csv"
    source.write_text('text\n"' + "x" * (16 * 1024 * 1024 + 10) + '"\n')
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--column", "text", "--quiet")
    assert run.returncode == 1 and "r.csv, row 2: field larger than field limit" in run.stderr


def test_the_output_is_never_an_existing_file_unless_asked(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "r.csv", [["No effusion."]])
    out = tmp_path / "o.csv"
    out.write_text("the user's own file\n")
    run = _run("label", str(source), "--out", str(out), "--quiet")
    assert run.returncode == 1 and "o.csv exists; pass --overwrite to replace it" in run.stderr
    assert out.read_text() == "the user's own file\n"
    run = _run("label", str(source), "--out", str(source), "--overwrite", "--quiet")
    assert run.returncode == 1 and "is the input: write the labels to another file" in run.stderr
    assert _read_csv(source) == [["No effusion."]]
    run = _run("label", str(source), "--out", str(tmp_path), "--quiet")
    assert run.returncode == 1 and "is a folder; give the CSV file to write" in run.stderr
    assert _run("label", str(source), "--out", str(out), "--overwrite", "--quiet").returncode == 0
    assert _read_csv(out)[1][:2] == ["1", "No effusion."]


def _reports_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("No effusion.")
    (root / "sub" / "b.txt").write_text("Small left effusion.")
    return root


@pytest.mark.parametrize("how", ["same-path", "nested", "symbolic-link", "hard-link", "dotted-path"])
def test_the_output_is_never_one_of_the_input_reports(tmp_path: Path, how: str) -> None:
    """Labels written over a report of the folder would replace it: refused as for a CSV input,
    whatever name the report is reached by."""
    root = _reports_folder(tmp_path / "reports")
    before = tree_digest(root)
    out = {
        "same-path": root / "a.txt",
        "nested": root / "sub" / "b.txt",
        "symbolic-link": tmp_path / "link.csv",
        "hard-link": tmp_path / "hard.csv",
        "dotted-path": root / "sub" / ".." / "a.txt",
    }[how]
    if how == "symbolic-link":
        out.symlink_to(root / "sub" / "b.txt")
    if how == "hard-link":
        os.link(root / "a.txt", out)
    with pytest.raises(InvalidArgumentError, match="is one of the input reports"):
        label_file(root, out, overwrite=True)
    assert tree_digest(root) == before
    run = _run("label", str(root), "--out", str(out), "--overwrite", "--quiet")
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "is one of the input reports" in run.stderr
    assert tree_digest(root) == before


def test_a_hard_link_of_the_csv_input_is_the_input(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "r.csv", [["No effusion."]])
    os.link(source, tmp_path / "o.csv")
    with pytest.raises(InvalidArgumentError, match="is the input"):
        label_file(source, tmp_path / "o.csv", overwrite=True)
    assert _read_csv(source) == [["No effusion."]]


def test_a_report_file_over_the_cap_is_refused_by_name(tmp_path: Path) -> None:
    root = _reports_folder(tmp_path / "reports")
    big = root / "sub" / "big.txt"
    with big.open("wb") as file:  # sparse: costs no disk
        file.truncate(MAX_REPORT + 1)
    with pytest.raises(ReadError, match=f"big.txt: is {MAX_REPORT + 1:,} bytes, more than the {MAX_REPORT:,}"):
        label_file(root, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    (root / "sub" / "big.txt").unlink()
    with (root / "sub" / "max.txt").open("wb") as file:
        file.write(b"No effusion. " + b" " * (MAX_REPORT - 13))
    assert label_file(root, tmp_path / "o.csv").reports == 3  # the cap itself is accepted


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dangling"])
def test_a_report_that_is_no_regular_file_is_named_never_waited_on(tmp_path: Path, kind: str) -> None:
    root = _reports_folder(tmp_path / "reports")
    odd = root / "sub" / "odd.txt"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "dev-zero":
        odd.symlink_to("/dev/zero")
    else:
        odd.symlink_to(root / "gone.txt")
    with pytest.raises(OSError, match="odd.txt"):
        label_file(root, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()
    # The same as the CSV input itself.
    source = tmp_path / "odd.csv"
    if kind == "fifo":
        os.mkfifo(source)
    elif kind == "dev-zero":
        source.symlink_to("/dev/zero")
    else:
        return  # a dangling link is a missing input, tested above
    with pytest.raises(ReadError, match="odd.csv: is a"):
        label_file(source, tmp_path / "o.csv")


def test_missing_input_and_unwritable_output(tmp_path: Path) -> None:
    run = _run("label", str(tmp_path / "nothing.csv"), "--out", str(tmp_path / "o.csv"), "--quiet")
    assert run.returncode == 1 and run.stderr == f"chexpert label: {tmp_path / 'nothing.csv'}: No such file or directory\n"
    source = _write_csv(tmp_path / "r.csv", [["No effusion."]])
    run = _run("label", str(source), "--out", str(tmp_path / "no-such-folder" / "o.csv"), "--quiet")
    assert run.returncode == 1 and "no-such-folder" in run.stderr and "No such file or directory" in run.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["label", "IN", "--out", "O.csv", "--workers", "0"],
        ["label", "IN", "--out", "O.csv", "--sections", "conclusion"],
        ["label", "IN"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: chexpert label" in capsys.readouterr().err


def test_an_unknown_encoding_is_one_line(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "r.csv", [["No effusion."]])
    run = _run("label", str(source), "--out", str(tmp_path / "o.csv"), "--encoding", "klingon", "--quiet")
    assert run.returncode == 1 and "unknown encoding 'klingon'" in run.stderr


def _big_input(path: Path, rows: int, *, padding: int = 0) -> Path:
    """A CSV of ``rows`` short reports; ``padding`` characters of identifier make it large cheaply."""
    pad = "p" * padding
    texts = ("No pneumothorax. Small left effusion.", "Possible pneumonia.", "Mild cardiomegaly. ET tube in place.")
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([f"{i}{pad}", texts[i % 3]])
    return path


def _label_in_a_session(source: Path, out_dir: Path, workers: str, preexec_fn: Callable[[], None]) -> subprocess.Popen[str]:
    """``chexpert label`` of ``source`` into ``out_dir``, in a session of its own (a process group to signal)."""
    command = [sys.executable, "-m", "chexpert", "label", str(source), "--out", str(out_dir / "o.csv"), "--column", "text", "--workers", workers, "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=preexec_fn)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_interrupted_run_leaves_nothing_behind(tmp_path: Path, sig: int, code: int, word: str, workers: str) -> None:
    source = _big_input(tmp_path / "big.csv", 400_000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _label_in_a_session(source, out_dir, workers, as_a_terminal_starts_it)  # not what this test run inherited (SIGINT ignored under nohup)
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well into the run
    assert process.poll() is None, "finished before it could be interrupted: make the input larger"
    os.killpg(process.pid, sig)  # as a terminal does: the whole process group
    out, err = process.communicate(timeout=120)
    assert process.returncode == code
    assert err == f"chexpert label: {word}\n"
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_command_started_with_sigint_ignored_keeps_ignoring_it(tmp_path: Path, workers: str) -> None:
    """POSIX asks a background job (``nohup``, ``cmd &`` in a script) to keep SIGINT ignored: a
    Ctrl-C meant for the terminal's foreground job does not stop it; SIGTERM still does."""
    source = _big_input(tmp_path / "big.csv", 60_000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _label_in_a_session(source, out_dir, workers, with_sigint_ignored)
    try:
        deadline = time.monotonic() + 120
        while not any(out_dir.iterdir()) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "finished before the signal: make the input larger"
        for _ in range(3):  # to the whole group, workers included, as a terminal sends it
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(0.05)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert (process.returncode, err) == (0, "")
    with (out_dir / "o.csv").open(newline="") as file:
        assert sum(1 for _ in csv.reader(file)) == 60_001


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    source = _big_input(tmp_path / "big.csv", 20_000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def small_disk() -> None:  # writes past 64 KiB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    run = subprocess.run(
        [sys.executable, "-m", "chexpert", "label", str(source), "--out", str(out_dir / "o.csv"), "--column", "text", "--quiet"],
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("chexpert label: ") and "File too large" in run.stderr and run.stderr.count("\n") == 1
    assert list(out_dir.iterdir()) == []


def _peak_rss_kib(argv: list[str]) -> int:
    """The peak resident memory of one run of ``chexpert`` (its own process, counted alone)."""
    code = (
        "import resource, subprocess, sys; "
        f"r = subprocess.run([sys.executable, '-m', 'chexpert', *{argv!r}]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return int(run.stdout.split()[-1])


@pytest.mark.slow
def test_a_file_larger_than_the_memory_bound_streams(tmp_path: Path) -> None:
    small = _big_input(tmp_path / "small.csv", 300)
    big = _big_input(tmp_path / "big.csv", 25_000, padding=4_000)  # ~100 MB, most of it identifiers
    size_mib = big.stat().st_size / 2**20
    assert size_mib > 95
    baseline = _peak_rss_kib(["label", str(small), "--out", str(tmp_path / "s.csv"), "--column", "text", "--quiet"])
    peak = _peak_rss_kib(["label", str(big), "--out", str(tmp_path / "b.csv"), "--column", "text", "--quiet"])
    growth_mib = (peak - baseline) / 1024
    # Holding the file would take more than its size; streaming holds a few chunks of rows.
    print(f"peak memory {peak / 1024:.0f} MiB for a {size_mib:.0f} MiB input, {baseline / 1024:.0f} MiB for a small one")
    assert growth_mib < 25, f"peak memory grew {growth_mib:.0f} MiB over the baseline for a {size_mib:.0f} MiB input"
    assert sum(1 for _ in (tmp_path / "b.csv").open()) == 25_001
