"""Under CI=true a test skipped for want of an integration the README promises fails (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_skip_for_a_promised_integration_fails_only_under_ci(tmp_path: Path, ci: str) -> None:
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_needs_jax():\n    pytest.importorskip('jax.no_such_module')\n\n"
        "def test_needs_a_platform():\n    pytest.skip('reads /proc')\n"
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", "-rA", str(tmp_path / "test_x.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if ci:
        assert run.returncode == 1, run.stdout
        assert "an integration the README promises" in run.stdout and "1 failed, 1 skipped" in run.stdout
    else:
        assert run.returncode == 0, run.stdout
        assert "2 skipped" in run.stdout
