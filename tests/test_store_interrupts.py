"""A full disk, Ctrl-C and SIGTERM during a real `chexpert prepare`: one line, the right exit code, a resumable store."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import STORE_SIZE as SIZE
from tests.conftest import as_a_terminal_starts_it, same_store_files

# The real command line (chexpert.cli.main) with two forked workers, decoding paced so that a
# signal lands mid-run.
_COMMAND = textwrap.dedent(
    """
    import sys, time
    import chexpert.store.writer as writer
    writer._CHUNK_ROWS, writer._SYNC_SECONDS = 4, 0.0
    decode = writer.decode_resized
    def paced(*args, **kwargs):
        time.sleep(float(sys.argv[1]))
        return decode(*args, **kwargs)
    writer.decode_resized = paced
    from chexpert.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _argv(source: Path, out: Path) -> list[str]:
    return ["prepare", str(source), "--out", str(out), "--size", str(SIZE), "--workers", "2"]


def _run(args: list[str], preexec_fn: Callable[[], object] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; whatever of it is left after 120 s is killed."""
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def _journaled_rows(out: Path) -> int:
    journals = sorted(out.glob(".journal.*")) if out.is_dir() else []
    if not journals:
        return 0
    lines = journals[0].read_bytes().split(b"\n")[:-1]
    return sum(json.loads(line)["rows"][1] - json.loads(line)["rows"][0] for line in lines)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_to_the_process_group_is_one_line_and_the_store_resumes(
    small_release: Path, reference_store: Path, tmp_path: Path, sig: int, code: int, word: str
) -> None:
    """As a terminal does: the signal reaches the command and every worker of its pool at once."""
    out = tmp_path / "store"
    process = subprocess.Popen(
        [sys.executable, "-c", _COMMAND, "0.02", *_argv(small_release, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
        preexec_fn=as_a_terminal_starts_it,  # and its dispositions, not what this test run inherited
    )
    try:
        deadline = time.monotonic() + 60
        while _journaled_rows(out) < 16:
            assert process.poll() is None, f"prepare ended before the signal: {process.communicate()}"
            assert time.monotonic() < deadline, "prepare made no progress in 60 s"
            time.sleep(0.005)
        os.killpg(process.pid, sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code
    assert stderr == f"chexpert prepare: {word}\n" and stdout == ""
    assert not (out / "manifest.json").exists() and 16 <= _journaled_rows(out) < 55
    # The same command resumes and ends with the uninterrupted run's bytes.
    resumed = _run([sys.executable, "-c", _COMMAND, "0", *_argv(small_release, out)])
    assert resumed.returncode == 0, resumed.stderr
    assert same_store_files(out, reference_store)


@contextlib.contextmanager
def _small_disk(folder: Path, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` at ``folder``; yields "tmpfs", or "rlimit" where mounting is not allowed."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode:
        yield "rlimit"
        return
    try:
        yield "tmpfs"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_line_naming_the_store_and_the_next_run_resumes(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    """Real ENOSPC from a small tmpfs where we may mount one (else EFBIG from RLIMIT_FSIZE)."""
    disk = tmp_path / "disk"
    # 96 KiB: room for the plan, the sparse images file's header and a few blocks of pixels, not for the store.
    with _small_disk(disk, "96k") as how:
        out = disk / "store"

        def lower_limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

        # preexec_fn only where needed: it makes subprocess fork this (perhaps threaded) process.
        full = _run([sys.executable, "-c", _COMMAND, "0", *_argv(small_release, out)], preexec_fn=lower_limit if how == "rlimit" else None)
        assert full.returncode == 1, full.stderr
        assert full.stderr.count("\n") == 1 and "Traceback" not in full.stderr
        reason = "No space left on device" if how == "tmpfs" else "File too large"
        assert full.stderr.startswith(f"chexpert prepare: {out}: {reason} while writing the store (about ")
        assert "free space and run prepare again with the same arguments: it resumes where it stopped" in full.stderr
        done = _journaled_rows(out)
        assert not (out / "manifest.json").exists()
        if how == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        resumed = _run([sys.executable, "-c", _COMMAND, "0", *_argv(small_release, out)])
        assert resumed.returncode == 0, resumed.stderr
        assert same_store_files(out, reference_store)
        assert done < 55
