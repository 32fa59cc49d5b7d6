"""Tests that import TensorFlow run in their own pytest process (scripts/test runs it second).

TensorFlow and PyTorch loaded into one process can crash it (they bundle clashing native
libraries); the tests that need TensorFlow therefore never share a process with those that need
torch. A session that already has torch loaded stops here instead of crashing later.
"""

from __future__ import annotations

import sys

import pytest

if "torch" in sys.modules:
    pytest.exit(
        "tests/tensorflow must run in a pytest process of its own (torch is already loaded here): "
        "run `pytest tests/tensorflow` separately, as scripts/test does",
        returncode=4,
    )
