"""What prepare may touch in --out: only files it can prove it wrote; everything else is refused, intact."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chexpert.store.writer as store_writer
from chexpert.errors import StaleStoreError, StoreError
from chexpert.release import open_release
from chexpert.store import open_store, prepare
from tests.conftest import STORE_SIZE as SIZE
from tests.conftest import tree_digest


def _interrupted(small_release: Path, out: Path) -> None:
    """An interrupted preparation in ``out``: a plan, a journal and part of the pixels."""

    class Stop(BaseException):
        pass

    calls = []
    original = store_writer.decode_resized

    def stop_after_some(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(1)
        if len(calls) > 20:
            raise Stop
        return original(*args, **kwargs)

    store_writer.decode_resized = stop_after_some
    try:
        with pytest.raises(Stop):
            prepare(small_release, out, size=SIZE)
    finally:
        store_writer.decode_resized = original
    assert (out / ".plan.json").exists() and not (out / "manifest.json").exists()


@pytest.mark.parametrize("name", ["images.npy", "index.npz", "results.tmp", "index.npz.tmp", ".journal"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_own_files_is_refused_and_left_intact(small_release: Path, tmp_path: Path, name: str, overwrite: bool) -> None:
    """Before: a folder holding images.npy, index.npz or *.tmp (and no manifest) was emptied of them."""
    out = tmp_path / "mine"
    out.mkdir()
    np.save(out / "images.npy", np.arange(10, dtype=np.uint8)) if name == "images.npy" else (out / name).write_bytes(b"my own work")
    before = tree_digest(out)
    with pytest.raises(StoreError, match=rf"holds files that prepare did not write.*{name.replace('.', '[.]')}.*move those files away"):
        prepare(small_release, out, size=SIZE, overwrite=overwrite)
    assert tree_digest(out) == before


@pytest.mark.parametrize(
    "content", [b"not json {", b'{"name": "my experiment", "lr": 0.1}', b"[1, 2, 3]", b'{"format": "other-tool"}'], ids=["text", "json", "list", "other"]
)
def test_a_foreign_manifest_is_a_clear_refusal(small_release: Path, tmp_path: Path, content: bytes) -> None:
    """Before: a manifest.json that was not a store's raised KeyError (or was deleted)."""
    out = tmp_path / "experiment"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    np.save(out / "images.npy", np.zeros((3, 4, 4), np.uint8))
    before = tree_digest(out)
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=r"manifest\.json is not a chexpert store's"):
            prepare(small_release, out, size=SIZE, overwrite=overwrite)
    with pytest.raises(StoreError, match=r"manifest|not a chexpert store"):
        open_store(out)
    assert tree_digest(out) == before


def test_a_file_dropped_into_a_store_stops_overwrite(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    (out / "notes.txt").write_text("my notes")
    before = tree_digest(out)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        prepare(small_release, out, size=32, overwrite=True)
    assert tree_digest(out) == before


@pytest.mark.parametrize("name", ["images.npy", "index.npz"])
def test_a_users_file_in_place_of_a_stores_is_not_replaced(small_release: Path, reference_store: Path, tmp_path: Path, name: str) -> None:
    """A look-alike at a store's name beside a real manifest: not provably ours, so not removed."""
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    (out / name).unlink()
    if name == "images.npy":
        np.save(out / name, np.ones((5, 48, 48), np.uint8))  # the user's own array, another shape
    else:
        np.savez(out / name, weights=np.ones(3))  # np.savez, not prepare's writer
    before = tree_digest(out)
    with pytest.raises(StoreError, match=rf"cannot prove it wrote \({name.replace('.', '[.]')}\)"):
        prepare(small_release, out, size=32, overwrite=True)
    assert tree_digest(out) == before


def test_a_users_file_in_an_interrupted_preparation_is_not_removed(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _interrupted(small_release, out)
    np.save(out / "images.npy", np.arange(7, dtype=np.uint8))  # during a run there is no images.npy of ours
    (out / "index.npz.tmp").write_bytes(b"mine")
    before = tree_digest(out)
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=r"images\.npy, index\.npz\.tmp"):
            prepare(small_release, out, size=SIZE, overwrite=overwrite)
    assert tree_digest(out) == before
    (out / "images.npy").unlink()
    (out / "index.npz.tmp").unlink()
    prepare(small_release, out, size=SIZE)
    assert all((out / n).read_bytes() == (reference_store / n).read_bytes() for n in ("images.npy", "index.npz", "manifest.json"))


def test_what_prepare_wrote_is_replaced_with_overwrite(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    """Its own store, its own interrupted run and its own temporary files are all provably its."""
    out = tmp_path / "store"
    _interrupted(small_release, out)
    ident = json.loads((out / ".plan.json").read_text())["store_id"]
    (out / f"index.npz.{ident}.tmp").write_bytes(b"half an index")  # a kill during an atomic write
    assert sorted(p.name for p in out.iterdir()) == sorted([".plan.json", f".images.{ident}.npy", f".journal.{ident}", f"index.npz.{ident}.tmp"])
    store = prepare(small_release, out, size=32, overwrite=True)
    assert store.size == 32 and sorted(p.name for p in out.iterdir()) == ["images.npy", "index.npz", "manifest.json"]
    store = prepare(small_release, out, size=SIZE, overwrite=True)
    assert (out / "images.npy").read_bytes() == (reference_store / "images.npy").read_bytes()


def test_a_plan_orphaned_by_a_kill_before_its_rename_is_ours(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    out.mkdir()
    plan = json.loads((reference_store / "manifest.json").read_text())
    for key in ("skipped", "blanked", "files"):
        del plan[key]
    (out / f".plan.json.{plan['store_id']}.tmp").write_text(json.dumps(plan))
    prepare(small_release, out, size=SIZE)
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "index.npz", "manifest.json"]
    # Half a plan proves nothing: refused, kept.
    other = tmp_path / "other"
    other.mkdir()
    (other / ".plan.json.0123456789abcdef.tmp").write_text('{"format": "chexpert-st')
    with pytest.raises(StoreError, match="cannot prove"):
        prepare(small_release, other, size=SIZE)


def test_a_format_1_store_is_stale_with_advice_and_overwrite_rebuilds_it(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("store_id", "checksums", "files"):
        del manifest[key]
    manifest["format_version"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleStoreError, match=r"version 1.*prepare it again with overwrite=True"):
        open_store(out)
    with pytest.raises(StaleStoreError, match="format version 1 -> 2"):
        prepare(small_release, out, size=SIZE)
    prepare(small_release, out, size=SIZE, overwrite=True)
    assert (out / "manifest.json").read_bytes() == (reference_store / "manifest.json").read_bytes()


def test_out_that_is_a_file_is_one_clear_line(small_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chexpert.cli import main

    target = tmp_path / "store"
    target.write_text("a file")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        prepare(small_release, target, size=SIZE)
    assert main(["prepare", str(small_release), "--out", str(target), "--size", "32", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "is a file, not a folder" in err
    assert target.read_text() == "a file"


@contextlib.contextmanager
def _read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write: a read-only tmpfs (as root), else a folder without write permission."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("root, but cannot mount a read-only tmpfs here")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.chmod(0o500)
        try:
            yield folder
        finally:
            folder.chmod(0o700)


@pytest.mark.parametrize("inside", [True, False])
def test_an_unwritable_out_is_one_clear_line(small_release: Path, tmp_path: Path, inside: bool) -> None:
    with _read_only_folder(tmp_path) as folder:
        out = folder / "store" if inside else folder
        result = subprocess.run(
            [sys.executable, "-m", "chexpert", "prepare", str(small_release), "--out", str(out), "--size", "32", "--workers", "1"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"chexpert prepare: {out}: cannot write the store: " in result.stderr
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr


def test_prepare_never_writes_to_the_source_nor_outside_out(small_release: Path, tmp_path: Path) -> None:
    release = open_release(small_release)
    before = tree_digest(small_release)
    (tmp_path / "beside.txt").write_text("x")
    prepare(release, tmp_path / "store", size=SIZE, workers=2, overwrite=True)
    assert tree_digest(small_release) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "store"]
