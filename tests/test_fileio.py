"""fileio.create_folder: a staging folder is one the call made, never a name planted in advance."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest

from chexpert import fileio
from chexpert.synth import synthesize


def _predictable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the random part of fileio's names 00000000, 00000001, ... so that a test can plant the first."""
    counter = itertools.count()
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: f"{next(counter):0{2 * n}x}")


def test_create_folder_skips_a_name_taken_by_a_link_and_makes_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _predictable_names(monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / f".stage-{os.getpid()}.00000000"
    planted.symlink_to(elsewhere)
    made = fileio.create_folder(tmp_path, ".stage-")
    assert made == tmp_path / f".stage-{os.getpid()}.00000001"
    assert made.is_dir() and not made.is_symlink()
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert planted.is_symlink() and os.readlink(planted) == str(elsewhere)


def test_create_folder_gives_up_with_file_exists_error_when_every_name_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: "0" * (2 * n))
    (tmp_path / f".stage-{os.getpid()}.00000000").write_text("not ours")
    with pytest.raises(FileExistsError):
        fileio.create_folder(tmp_path, ".stage-")
    assert (tmp_path / f".stage-{os.getpid()}.00000000").read_text() == "not ours"


def test_synth_never_stages_through_a_link_planted_at_its_staging_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _predictable_names(monkeypatch)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    planted = out / f".synth-{os.getpid()}.00000000"
    planted.symlink_to(elsewhere)
    root = synthesize(out, patients=1, valid_patients=0, seed=3)
    assert (root / "train.csv").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    assert planted.is_symlink()  # and the link, not synth's, left where it was
    assert sorted(p.name for p in out.iterdir()) == sorted([root.name, planted.name])
