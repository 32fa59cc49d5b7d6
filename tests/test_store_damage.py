"""Damaged stores: found on open (cheap checks) or by checksum (verify-store, check=True); rebuilt with overwrite."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from chexpert.errors import StoreError
from chexpert.store import open_store, prepare, verify_store
from chexpert.store.format import block_checksums, file_digests
from tests.conftest import STORE_SIZE as SIZE
from tests.conftest import same_store_files


def _truncate_images(store: Path) -> None:
    data = (store / "images.npy").read_bytes()
    (store / "images.npy").write_bytes(data[: len(data) - 5 * SIZE * SIZE])


def _corrupt_index(store: Path) -> None:
    data = bytearray((store / "index.npz").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    (store / "index.npz").write_bytes(bytes(data))


def _delete_images(store: Path) -> None:
    (store / "images.npy").unlink()


DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "truncated images.npy": (_truncate_images, "images.npy", r"truncated: [\d,]+ of [\d,]+ bytes \(rows 50-54 missing\)"),
    "corrupt index.npz": (_corrupt_index, "index.npz", "differ from the manifest's SHA-256"),
    "missing images.npy": (_delete_images, "images.npy", "cannot be read"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_store_is_named_and_rebuilt_by_overwrite(small_release: Path, reference_store: Path, tmp_path: Path, case: str) -> None:
    """Before: ValueError/BadZipFile from numpy, and prepare --overwrite with the same arguments said "done"."""
    damage, name, message = DAMAGE[case]
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    damage(out)
    with pytest.raises(StoreError, match=message) as caught:
        open_store(out)
    assert str(out / name) in str(caught.value) and "overwrite=True" in str(caught.value)
    assert [p.file for p in verify_store(out)] == [str(out / name)]
    # The same arguments without overwrite: the damage, and what to do about it.
    with pytest.raises(StoreError, match=rf"{name.replace('.', '[.]')}: .*Prepare it again with overwrite=True \(same arguments\)"):
        prepare(small_release, out, size=SIZE)
    store = prepare(small_release, out, size=SIZE, overwrite=True)
    assert same_store_files(out, reference_store) and len(store) == len(open_store(reference_store))
    assert verify_store(out) == []


def test_a_flipped_bit_is_found_by_its_checksum(reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    with open(out / "images.npy", "r+b") as f:
        offset = len(f.read()) - 30 * SIZE * SIZE  # inside row 25, of checksum block 1 (rows 16-31)
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))
    store = open_store(out)  # the cheap checks pass: same length, same headers
    assert len(store) == 55
    problems = verify_store(out)
    assert [(p.kind, p.file) for p in problems] == [("checksum", str(out / "images.npy"))]
    assert "rows 16-31 (checksum block 1)" in problems[0].message
    with pytest.raises(StoreError, match=r"images\.npy: rows 16-31 \(checksum block 1\) differ from their checksum"):
        open_store(out, check=True)
    open_store(reference_store, check=True)


def test_verify_store_command(reference_store: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chexpert", "verify-store", *args], capture_output=True, text=True)

    good = run(str(reference_store))
    assert good.returncode == 0 and good.stderr == ""
    assert good.stdout == f"{reference_store}: OK, 55 images, 4 checksum blocks and the index match the manifest\n"
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    with open(out / "images.npy", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 1]))
    _corrupt_index(out)
    bad = run(str(out))
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert f"{out / 'images.npy'}: rows 48-54 (checksum block 3) differ from their checksum (damaged on disk?)" in lines
    assert any(line.startswith(f"{out / 'index.npz'}: ") for line in lines)
    assert lines[-1].startswith(f"{out}: 2 problems; prepare it again with --overwrite")
    report = json.loads(run(str(out), "--json").stdout)
    assert report["ok"] is False and {p["file"] for p in report["problems"]} == {str(out / "images.npy"), str(out / "index.npz")}
    missing = run(str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "not a chexpert store" in missing.stdout


def test_checksums_come_from_the_pixels_whatever_the_workers(small_release: Path, reference_store: Path, tmp_path: Path) -> None:
    """Workers digest each row as they write it; reading the file back gives the same checksums."""
    manifest = json.loads((reference_store / "manifest.json").read_text())
    assert block_checksums(file_digests(reference_store / "images.npy", 55, SIZE), 16) == manifest["checksums"]["blocks"]
    two = prepare(small_release, tmp_path / "two", size=SIZE, workers=2)
    assert two.manifest["checksums"] == manifest["checksums"]


def test_a_store_changed_after_its_checksums_is_not_taken_for_sound(reference_store: Path, tmp_path: Path) -> None:
    """Rows appended to images.npy or a manifest lacking its checksums are damage, not a store."""
    out = tmp_path / "store"
    shutil.copytree(reference_store, out)
    with open(out / "images.npy", "ab") as f:
        f.write(np.zeros(SIZE * SIZE, np.uint8).tobytes())
    with pytest.raises(StoreError, match=r"images\.npy: [\d,]+ bytes; the manifest's shape makes"):
        open_store(out)
    shutil.copy(reference_store / "images.npy", out / "images.npy")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["checksums"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="lacks checksums"):
        open_store(out)
