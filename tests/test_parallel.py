"""chexpert.parallel.run_chunks, and its one signal and shutdown policy proven for every caller.

Each caller is run as a real command in its own process group (as a terminal runs it) with
SIGINT's disposition set to the default in the child, so that the test does not depend on how
pytest itself was started (a pytest started with SIGINT ignored would pass that on, and Python
then installs no KeyboardInterrupt handler). The group is frozen the moment a worker exists, the
signal sent to the whole group, the group thawed: one line, exit 130/143, no worker left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
