"""What every command shares: output through a pipe is never wrapped, one line per failure,
exit codes 0 / 1 (failed, problems found) / 2 (usage only), interrupts end with one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import chexpert
from chexpert.cli import main
from chexpert.errors import InvalidArgumentError, option
from tests.conftest import as_a_terminal_starts_it


def _run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80")  # what a narrow terminal or CI exports; must not matter
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def deep_release(small_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The look-alike release below a path far longer than a terminal line."""
    deep = tmp_path_factory.mktemp("x") / ("a-much-deeper-folder-than-yours" * 3) / ("and-deeper-still" * 3)
    deep.mkdir(parents=True)
    return Path(shutil.copytree(small_release, deep / small_release.name))


def test_output_through_a_pipe_is_never_wrapped(deep_release: Path, tmp_path: Path) -> None:
    assert len(str(deep_release)) > 160
    info = _run("info", str(deep_release))
    assert info.returncode == 0, info.stderr
    assert str(deep_release) in info.stdout.splitlines()[0]
    verify = _run("verify", str(deep_release))
    assert verify.returncode == 0, verify.stderr
    assert str(deep_release) in verify.stdout.splitlines()[0]
    store = tmp_path / ("store-in-a-folder-with-a-long-name" * 4)
    prepared = _run("prepare", str(deep_release), "--out", str(store), "--size", "16", "--workers", "1", "--quiet")
    assert prepared.returncode == 0, prepared.stderr
    assert f"{store}: " in prepared.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ["prepare", "ROOT", "--out", "OUT", "--size", "0"],
        ["prepare", "ROOT", "--out", "OUT", "--workers", "-1"],
        ["prepare", "ROOT", "--out", "OUT", "--size", "big"],
        ["verify", "ROOT", "--workers", "0"],
        ["export", "STORE", "OUT", "--format", "webdataset", "--shard-size", "0"],
        ["synth", "OUT", "--patients", "0"],
        ["evaluate", "--predictions", "P.csv", "--truth", "T.csv", "--bootstrap", "-5"],
        ["info"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: chexpert" in capsys.readouterr().err


def test_a_handled_failure_is_one_line_and_exit_1(tmp_path: Path) -> None:
    run = _run("prepare", str(tmp_path), "--out", str(tmp_path / "store"))
    assert run.returncode == 1
    assert run.stderr.startswith("chexpert prepare: ")
    assert "Traceback" not in run.stderr


def test_messages_speak_the_interface_in_use(small_release: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    both.mkdir()
    shutil.copytree(small_release, both / "CheXpert-v1.0-small")
    shutil.copytree(small_release, both / "CheXpert-v1.0")
    with pytest.raises(chexpert.ChexpertError, match="kind='small'"):
        chexpert.open(both)
    run = _run("info", str(both))
    assert run.returncode == 1
    assert "--kind small" in run.stderr and "kind='small'" not in run.stderr
    # main() run in-process leaves the Python spelling in place for the library afterwards
    assert main(["info", str(both)]) == 1
    assert option("kind", "small") == "kind='small'"


def test_invalid_arguments_are_chexpert_and_value_errors() -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        chexpert.apply_policy("u-twos", chexpert.read_csv(b"Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(chexpert.OBSERVATIONS).encode() + b"\n"))
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, chexpert.ChexpertError)
    assert "u-ones" in str(raised.value)  # the valid names are listed


def test_lazy_public_names_are_listed_in_all() -> None:
    for name in chexpert.__all__:
        assert getattr(chexpert, name) is not None


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupt_ends_a_parallel_run_with_one_line(tmp_path: Path, sig: int, code: int, word: str) -> None:
    # Ctrl-C reaches every process of the terminal's group: signal the whole group, as a terminal does.
    process = subprocess.Popen(
        [sys.executable, "-m", "chexpert", "synth", str(tmp_path / "out"), "--release", "full", "--patients", "300", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_a_terminal_starts_it,  # not what this test run inherited (SIGINT ignored under nohup, xdist)
    )
    try:
        deadline = time.monotonic() + 120
        while not any((tmp_path / "out").rglob("*.jpg")) and time.monotonic() < deadline:  # workers are drawing
            time.sleep(0.2)
        time.sleep(0.5)
        assert process.poll() is None, "the run ended before it could be interrupted; give it more work"
        os.killpg(process.pid, sig)
        _, err = process.communicate(timeout=60)  # 300 full-size patients take minutes: it stopped
    finally:
        if process.poll() is None:  # leave no orphans behind a failed test
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code
    assert err.strip() == f"chexpert synth: {word}", err
