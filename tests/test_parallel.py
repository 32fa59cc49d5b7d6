"""chexpert.parallel.run_chunks, and its one signal and shutdown policy proven for every caller.

Each caller is run as a real command in its own process group (as a terminal runs it) with
SIGINT's disposition set to the default in the child, so that the test does not depend on how
pytest itself was started (a pytest started with SIGINT ignored would pass that on, and Python
then installs no KeyboardInterrupt handler). The group is frozen the moment a worker exists, the
signal sent to the whole group, the group thawed: one line, exit 130/143, no worker left.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chexpert.labeler.pipeline import AHEAD_PER_WORKER, labelled_chunks
from chexpert.parallel import run_chunks
from chexpert.synth import synthesize
from chexpert.synth.plus import synthesize_plus
from tests.conftest import alive, as_a_terminal_starts_it, live_children

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _square(state: int, value: int) -> int:
    return value * value + state


def _pid(state: None, value: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def _fail_on_three(state: None, value: int) -> int:
    if value == 3:
        raise LookupError(f"chunk {value}")
    return value


def _pid_and_value(state: None, value: int) -> tuple[int, int]:
    time.sleep(0.01)
    return os.getpid(), value


def _sleep_long(state: None, value: int) -> int:
    time.sleep(60)
    return value


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_order_from_this_process_or_workers(workers: int) -> None:
    with run_chunks(_square, list(range(10)), workers=workers, state=1) as results:
        assert list(results) == [v * v + 1 for v in range(10)]
    with run_chunks(_square, list(range(10)), workers=workers, state=0, ordered=False) as results:
        assert sorted(results) == [v * v for v in range(10)]


def test_workers_do_the_work_and_a_failure_in_a_chunk_reaches_the_caller() -> None:
    with run_chunks(_pid, list(range(6)), workers=2) as results:
        assert os.getpid() not in set(results)
    with pytest.raises(LookupError, match="chunk 3"), run_chunks(_fail_on_three, list(range(6)), workers=2) as results:
        list(results)


def test_leaving_the_block_early_kills_busy_workers_at_once() -> None:
    """Four chunks of a minute each: leaving after none is read must not wait for them."""
    started = time.monotonic()
    # Children an earlier test of this session left (a resource tracker, a forkserver) are not ours.
    before = set(live_children(os.getpid()))
    with run_chunks(_sleep_long, [1, 2, 3, 4], workers=2) as results:
        workers = [p for p in live_children(os.getpid()) if alive(p) and p not in before]
        assert results is not None
    assert time.monotonic() - started < 30, "the pool waited for its chunks"
    assert workers and not any(alive(p) for p in workers)


class _Counted:
    """An iterator of chunks that counts how many were read from it."""

    def __init__(self, chunks: list[int]) -> None:
        self.read = 0
        self._chunks = iter(chunks)

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> int:
        value = next(self._chunks)
        self.read += 1
        return value


@pytest.mark.parametrize("ordered", [True, False])
def test_a_stream_is_read_no_further_ahead_than_asked(ordered: bool) -> None:
    """A generator of chunks is never read more than ``ahead`` chunks past what the caller took,
    and is read that far (the workers are kept fed)."""
    source = _Counted(list(range(40)))
    taken = []
    most = 0
    with run_chunks(_pid_and_value, source, workers=2, ahead=3, ordered=ordered) as results:
        for pid, value in results:
            taken.append(value)
            most = max(most, source.read - len(taken))
            assert source.read - len(taken) <= 3
            assert pid != os.getpid()
    assert (taken if ordered else sorted(taken)) == list(range(40))
    assert most == 3


def test_a_stream_defaults_to_two_chunks_a_worker_and_a_short_one_runs_here() -> None:
    source = _Counted(list(range(20)))
    with run_chunks(_pid_and_value, source, workers=3) as results:
        assert next(results)[1] == 0
        assert source.read == 2 * 3 + 1
        assert [value for _, value in results] == list(range(1, 20))
    with run_chunks(_pid_and_value, iter([7]), workers=3) as results:
        assert list(results) == [(os.getpid(), 7)]  # one chunk: no pool, as for a list of one


def test_a_stream_read_one_chunk_ahead_is_read_to_its_end() -> None:
    # One chunk read ahead is not a stream of one chunk: the rest must still come.
    with run_chunks(_pid_and_value, iter(range(5)), workers=2, ahead=1) as results:
        assert [value for _, value in results] == list(range(5))


def test_leaving_a_stream_early_kills_busy_workers_at_once() -> None:
    started = time.monotonic()
    before = set(live_children(os.getpid()))
    source = _Counted([1, 2, 3, 4, 5, 6])
    with run_chunks(_sleep_long, source, workers=2) as results:
        workers = [p for p in live_children(os.getpid()) if alive(p) and p not in before]
        assert results is not None
    assert time.monotonic() - started < 30, "the pool waited for its chunks"
    assert workers and not any(alive(p) for p in workers)
    assert source.read == 4  # two a worker, no more


def _chunks_then_a_failure(n: int) -> Iterator[int]:
    yield from range(n)
    raise LookupError(f"the source failed after {n} chunks")


@pytest.mark.parametrize("n", [1, 5, 12])
def test_a_failing_stream_reaches_the_caller_and_leaves_no_worker(n: int) -> None:
    """Before the pool (in the first read-ahead), or while it runs: the error comes out, once."""
    before = set(live_children(os.getpid()))
    seen: list[int] = []

    def read_all() -> None:
        with run_chunks(_pid_and_value, _chunks_then_a_failure(n), workers=2) as results:
            seen.extend(value for _, value in results)

    with pytest.raises(LookupError, match=f"after {n} chunks"):
        read_all()
    assert seen == list(range(len(seen))) and len(seen) <= n
    assert not [p for p in live_children(os.getpid()) if alive(p) and p not in before]


def test_the_labeler_reads_its_batches_no_further_ahead_than_two_a_worker() -> None:
    texts = ["No effusion.", "Possible pneumonia.", "Mild cardiomegaly. ET tube in place.", ""]
    batches = [[texts[(i + j) % 4] for j in range(5)] for i in range(30)]
    source = _Counted(batches)  # type: ignore[arg-type]  # batches of texts, counted as ints are
    got = []
    most = 0
    with labelled_chunks(source, "report", 2) as results:  # type: ignore[arg-type]
        for codes, _ in results:
            got.append(codes)
            most = max(most, source.read - len(got))
    assert most == AHEAD_PER_WORKER * 2
    with labelled_chunks(iter(batches), "report", 1) as results:
        assert [c.tolist() for c, _ in results] == [c.tolist() for c in got]


@contextlib.contextmanager
def _command(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "chexpert", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_a_terminal_starts_it,
    )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def _interrupt_when_workers_run(argv: list[str], sig: int, code: int, word: str) -> None:
    with _command(argv) as process:
        deadline = time.monotonic() + 120
        while not (workers := live_children(process.pid)):
            assert process.poll() is None, f"ended before a worker started: {process.communicate()}"
            assert time.monotonic() < deadline, "no worker started in 120 s"
        os.killpg(process.pid, signal.SIGSTOP)
        os.killpg(process.pid, sig)
        os.killpg(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == code, err
        assert err.splitlines() == [f"chexpert {argv[0]}: {word}"], err
        assert not any(alive(pid) for pid in workers + live_children(process.pid))


SIGNALS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("release"), release="full", patients=30, valid_patients=2, seed=4)


@pytest.fixture(scope="module")
def plus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_plus(tmp_path_factory.mktemp("plus"), patients=8, valid_patients=3, seed=5)


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_verify_decode_stops_on_a_signal(release: Path, sig: int, code: int, word: str) -> None:
    _interrupt_when_workers_run(["verify", str(release), "--decode", "--workers", "2"], sig, code, word)


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_verify_of_a_plus_download_stops_on_a_signal(plus: Path, sig: int, code: int, word: str) -> None:
    _interrupt_when_workers_run(["verify", str(plus), "--decode", "--workers", "2"], sig, code, word)


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_prepare_stops_on_a_signal(release: Path, tmp_path: Path, sig: int, code: int, word: str) -> None:
    _interrupt_when_workers_run(["prepare", str(release), "--out", str(tmp_path / "store"), "--size", "64", "--workers", "2"], sig, code, word)


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_synth_stops_on_a_signal(tmp_path: Path, sig: int, code: int, word: str) -> None:
    _interrupt_when_workers_run(["synth", str(tmp_path / "out"), "--release", "full", "--patients", "40", "--workers", "2"], sig, code, word)


def _reports(path: Path, rows: int) -> Path:
    """A CSV of ``rows`` short reports of several kinds (every part read, empty ones too)."""
    texts = (
        "No pneumothorax. Small left effusion.",
        "IMPRESSION: Possible pneumonia.",
        "FINDINGS: Mild cardiomegaly. ET tube in place.",
        "",
        "Heart size normal. IMPRESSION: No acute process.",
    )
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)] + (f" {i} mm nodule." if i % 7 == 0 else "")])
    return path


@pytest.mark.parametrize(("sig", "code", "word"), SIGNALS)
def test_label_stops_on_a_signal(tmp_path: Path, sig: int, code: int, word: str) -> None:
    source = _reports(tmp_path / "reports.csv", 60_000)
    _interrupt_when_workers_run(["label", str(source), "--out", str(tmp_path / "o.csv"), "--column", "text", "--workers", "2", "--quiet"], sig, code, word)
    assert not (tmp_path / "o.csv").exists()


def test_label_with_workers_writes_what_one_process_writes(tmp_path: Path) -> None:
    """Enough reports for every worker to take several batches of 256, the last one short."""
    source = _reports(tmp_path / "reports.csv", 256 * 9 + 17)
    outputs = []
    for workers in ("1", "3"):
        out = tmp_path / f"o{workers}.csv"
        run = subprocess.run(
            [sys.executable, "-m", "chexpert", "label", str(source), "--out", str(out), "--column", "text", "--workers", workers, "--quiet"],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") == 256 * 9 + 17 + 1
