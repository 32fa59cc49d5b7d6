"""scripts/imports.py on small planted package trees: each fault is found, named, and fails --check.

The trees are packages named ``chexpert`` (the script places their modules with its own LAYERS),
written in a temporary folder and read through ``--root``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "imports.py"

# A clean tree: layered modules importing down, a subpackage whose modules import each other
# without a circle, a private *module* used by a sibling (allowed), and an upward import made only
# under TYPE_CHECKING (never run, not counted).
CLEAN = {
    "__init__.py": "from chexpert.release import Release\n__version__ = '0'\n",
    "schema.py": "COLUMNS = ()\n",
    "errors.py": "from chexpert import schema\n",
    "version.py": "__version__ = '0'\n",
    "release.py": "from chexpert.errors import schema\nfrom chexpert.version import __version__\nclass Release: ...\n",
    "verify.py": "from typing import TYPE_CHECKING\nfrom chexpert.release import Release\nif TYPE_CHECKING:\n    from chexpert.cli import main\n",
    "labeler/__init__.py": "from chexpert.labeler.pipeline import label\n",
    "labeler/pipeline.py": "from chexpert.labeler.sections import SECTIONS\nfrom .explain import Explained\ndef label(): ...\n",
    "labeler/sections.py": "SECTIONS = ()\n",
    "labeler/explain.py": "from chexpert.labeler.sections import SECTIONS\nclass Explained: ...\n",
    "cli/__init__.py": "from chexpert.cli._common import console\nfrom chexpert.verify import Release\ndef main(): ...\n",
    "cli/_common.py": "def console(): ...\n",
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "chexpert"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def _run(package: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(package), *options], capture_output=True, text=True, timeout=120)


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    package = _tree(tmp_path, CLEAN)
    run = _run(package, "--check")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "import circles: 0" in run.stdout and "upward imports: 0" in run.stdout
    assert "import circles inside subpackages: 0" in run.stdout
    assert "private names imported from a sibling module: 0" in run.stdout
    assert "no layer" not in run.stdout


# Each case: files added to the clean tree, and what the report must then say.
PLANTED = {
    "two circles": (
        {
            "schema.py": "from chexpert.errors import Problem\n",
            "errors.py": "from chexpert import schema\nclass Problem: ...\n",
            "index.py": "def load():\n    from chexpert.splits import read  # lazy, but a dependency all the same\n",
            "splits.py": "from chexpert.index import load\ndef read(): ...\n",
        },
        ["import circles: 2", "{errors, schema}: errors -> schema; schema -> errors", "{index, splits}: index -> splits; splits -> index"],
    ),
    "two upward imports": (
        {
            "schema.py": "from chexpert.release import Release\n",
            "index.py": "from chexpert import __version__  # the front door, from below\n",
        },
        [
            "upward imports: 2",
            "schema (layer 0) -> release (layer 4): chexpert/schema.py:1",
            "index (layer 3) -> __init__ (layer front door): chexpert/index.py:1",
        ],
    ),
    "an unlayered module nothing imports": (
        {"mystery.py": "X = 1\n"},
        ["modules with no layer (add them to LAYERS): mystery"],
    ),
    "an unlayered package": (
        {"attic/__init__.py": "", "attic/old.py": "from chexpert.schema import COLUMNS\n"},
        ["modules with no layer (add them to LAYERS): attic"],
    ),
    "a circle inside a subpackage": (
        {"labeler/sections.py": "from chexpert.labeler.explain import Explained\nSECTIONS = ()\n"},
        ["import circles inside subpackages: 1", "chexpert.labeler: {explain, sections}"],
    ),
    "a submodule importing its own package's front": (
        {"labeler/sections.py": "from chexpert.labeler import label\nSECTIONS = ()\n"},
        ["import circles inside subpackages: 1", "chexpert.labeler: {__init__, explain, pipeline, sections}"],
    ),
    "a private name of a sibling": (
        {"labeler/explain.py": "from .sections import _HEADINGS\nclass Explained: ...\n", "labeler/sections.py": "SECTIONS = ()\n_HEADINGS = {}\n"},
        ["private names imported from a sibling module: 1", "chexpert.labeler: explain -> sections._HEADINGS (chexpert/labeler/explain.py:1)"],
    ),
    "a private name of a top-level sibling": (
        {"verify.py": "from chexpert.release import _read\n", "release.py": "def _read(): ...\n"},
        ["private names imported from a sibling module: 1", "chexpert: verify -> release._read (chexpert/verify.py:1)"],
    ),
    "an import of a module that does not exist": (
        {"verify.py": "from chexpert.vanished import gone\n"},
        ["imports of modules that do not exist: 1", "chexpert.vanished: chexpert/verify.py:1"],
    ),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_a_planted_fault_is_named_and_fails_the_check(tmp_path: Path, case: str) -> None:
    files, said = PLANTED[case]
    package = _tree(tmp_path, {**CLEAN, **files})
    report = _run(package)
    assert report.returncode == 0, report.stderr  # the report alone never fails
    for line in said:
        assert line in report.stdout, report.stdout
    check = _run(package, "--check")
    assert check.returncode == 1, check.stdout


def test_one_circle_or_one_upward_import_fails(tmp_path: Path) -> None:
    # The issue allowed one of each; the tree reached none, so the limits are zero and the first
    # new circle or upward import is reported at once.
    files = {
        "schema.py": "from chexpert.errors import Problem\n",
        "errors.py": "from chexpert import schema\nclass Problem: ...\n",
        "index.py": "from chexpert.release import Release\n",
    }
    run = _run(_tree(tmp_path, {**CLEAN, **files}), "--check")
    assert run.returncode == 1, run.stdout
    assert "import circles: 1" in run.stdout and "upward imports: 1" in run.stdout


def test_the_real_package_passes() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
