"""Fixtures shared by the test files: look-alike releases and prepared stores (made once a session
through ``look_alike`` and ``prepared_store``), the real train.csv, and helpers several files use."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import signal
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest

from chexpert import schema
from chexpert.index import Index
from chexpert.store import Store, prepare
from chexpert.synth import synthesize

_TENSORFLOW_TESTS = Path(__file__).parent / "tensorflow"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/tensorflow out unless it is named on the command line (see its conftest)."""
    if collection_path == _TENSORFLOW_TESTS:
        named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        return not any(path == _TENSORFLOW_TESTS or _TENSORFLOW_TESTS in path.parents for path in named)
    return None


# The integrations the README promises. Locally a missing one is a skip (install what you use);
# under CI (CI=true, as every CI service sets it) a test skipped for want of one fails instead, so
# that CI cannot pass without testing what the README says works.
_PROMISED = re.compile(r"\b(torch|torchvision|tensorflow|tensorflow_datasets|datasets|webdataset|jax|pydicom|chromium)\b", re.IGNORECASE)


def _promised_skip(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    if not report.skipped or os.environ.get("CI", "").lower() != "true" or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    match = _PROMISED.search(reason)
    return f"CI=true: skipped for want of {match.group(1)}, an integration the README promises ({reason})" if match else None


_Report = TypeVar("_Report", pytest.CollectReport, pytest.TestReport)


def _fail_a_promised_skip(report: _Report) -> _Report:
    failure = _promised_skip(report)
    if failure is not None:
        report.outcome = "failed"
        report.longrepr = failure
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    return _fail_a_promised_skip((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    return _fail_a_promised_skip((yield))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    if not any(path == _TENSORFLOW_TESTS or _TENSORFLOW_TESTS in path.parents for path in named):
        terminalreporter.write_line("tests/tensorflow ran not here but in a process of its own: pytest tests/tensorflow (scripts/test runs both)")


@pytest.fixture(scope="session")
def real_train_csv() -> Path:
    """The real CheXpert train.csv (223,414 rows) shipped inside torchxrayvision."""
    # find_spec locates the package without importing it (importing torchxrayvision imports torch).
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision (the real train.csv fixture) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "chexpert_train.csv.gz"
    if not path.is_file():
        pytest.skip("torchxrayvision has no chexpert_train.csv.gz")
    return path


#: The look-alike that the training tests share (about 105 train images: 14 steps of 8 an epoch).
TRAIN_LOOK_ALIKE: dict[str, int] = {"patients": 30, "valid_patients": 10, "seed": 4}
#: A look-alike with a handful of images in each of train, valid and test (the hf, tf.data and tfds tests).
TINY_LOOK_ALIKE: dict[str, int] = {"patients": 3, "valid_patients": 2, "test_patients": 2, "seed": 10}
#: Side of the images in the training tests' store.
TRAIN_SIZE = 32
#: Side of the images in the prepared-store tests' reference store, and the files a store is.
STORE_SIZE = 48
STORE_FILES = ("images.npy", "index.npz", "manifest.json")
#: The tags a labeler gold-set case may carry (the development set and the external set alike).
GOLD_TAGS = frozenset(
    {
        "negation", "uncertainty", "list", "comparison", "hard-exclusion", "abbreviation", "misspelling",
        "multiple-mentions", "normal", "chf", "device", "pseudo-negation", "other-abnormality", "structure-only",
        "scope", "indication", "no-spaces", "uppercase", "convention",
    }
)  # fmt: skip


@pytest.fixture(scope="session")
def look_alike(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``look_alike(**options)``: ``chexpert.synthesize(folder, **options)``, written once a test run
    (once an xdist worker) for each set of options and shared by every test file that asks for the same.

    Read-only by convention: copy it before damaging or writing into it. The folder the release
    stands in holds nothing else (a tfds manual folder can be its parent).
    """
    made: dict[tuple[tuple[str, object], ...], Path] = {}
    signature = inspect.signature(synthesize)

    def make(**options: Any) -> Path:
        # Keyed on every argument, defaults filled in: release="small" given or left out is one release.
        bound = signature.bind(None, **options)
        bound.apply_defaults()
        key = tuple(sorted((name, value) for name, value in bound.arguments.items() if name != "out"))
        if key not in made:
            made[key] = synthesize(tmp_path_factory.mktemp("look-alike"), **options)
        return made[key]

    return make


@pytest.fixture(scope="session")
def prepared_store(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Store]:
    """``prepared_store(release, size=...)``: the release prepared at that size, once a test run (once
    an xdist worker) for each release and size. Read-only by convention: copy it before damaging it."""
    made: dict[tuple[Path, int], Store] = {}

    def make(release: Path, *, size: int) -> Store:
        key = (Path(release).resolve(), size)
        if key not in made:
            made[key] = prepare(release, tmp_path_factory.mktemp("store") / "store", size=size)
        return made[key]

    return make


@pytest.fixture(scope="session")
def small_release(look_alike: Callable[..., Path]) -> Path:
    """A small-release look-alike folder (read-only by convention: copy before damaging it)."""
    return look_alike(release="small", patients=12, seed=7, test_patients=2)


@pytest.fixture(scope="session")
def reference_store(small_release: Path, prepared_store: Callable[..., Store]) -> Path:
    """The small release prepared at STORE_SIZE, once: what every damaged or resumed store must equal."""
    return prepared_store(small_release, size=STORE_SIZE).path


@pytest.fixture(scope="session")
def train_release(look_alike: Callable[..., Path]) -> Path:
    """The training tests' look-alike (TRAIN_LOOK_ALIKE; read-only by convention)."""
    return look_alike(**TRAIN_LOOK_ALIKE)


@pytest.fixture(scope="session")
def train_store(train_release: Path, prepared_store: Callable[..., Store]) -> Store:
    """The training tests' look-alike prepared at TRAIN_SIZE (read-only by convention)."""
    return prepared_store(train_release, size=TRAIN_SIZE)


def same_store_files(a: Path, b: Path) -> bool:
    """Whether two stores hold byte-identical files."""
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in STORE_FILES)


def predictions_for(index: Index, path: Path, seed: int = 0) -> Path:
    """Example predictions for ``index`` written to ``path``: probabilities that lean towards the labels."""
    rng = np.random.default_rng(seed)
    labels = (index.labels == 1).astype(float)
    scores = np.clip(0.45 * labels + 0.55 * rng.random(labels.shape), 0, 1)
    frame = pd.DataFrame(scores, columns=list(schema.OBSERVATIONS))
    frame.insert(0, "Path", index.path.astype(object))
    frame.to_csv(path, index=False)
    return path


def tree_digest(root: Path) -> str:
    """A hash of every file name, size, mtime and content below ``root`` (to prove nothing was written)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def rank_failure(stderr: str) -> str:
    """What to show of a failed torchrun's stderr: a rank's own last words (faulthandler's
    "Fatal Python error" and its stack, when the rank aborted) and the end, torchrun's summary."""
    at = stderr.find("Fatal Python error")
    head = stderr[at : at + 6000] + "\n[...]\n" if at >= 0 else ""
    return head + stderr[-3000:]


def as_a_terminal_starts_it() -> None:
    """``preexec_fn`` for a child that a test will send SIGINT or SIGTERM: the dispositions a
    terminal gives a command, whatever this test run inherited.

    A test run started with SIGINT ignored (nohup, a background job of a non-interactive shell,
    some CI runners, pytest-xdist workers) passes that on to every child, and a Ctrl-C sent to the
    child would never arrive: the test would then test nothing, or fail, depending on how it was
    started. Every signal-sending test sets its child's dispositions through this.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # nothing held either


def with_sigint_ignored() -> None:
    """``preexec_fn`` for a child started as ``nohup`` or a background job starts it: SIGINT ignored."""
    as_a_terminal_starts_it()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def live_children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children that are not zombies (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
