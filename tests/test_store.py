"""The prepared store: pixels, index and manifest; resuming after SIGKILL; staleness; bad images."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chexpert.store.writer as store_writer
from chexpert import schema
from chexpert.errors import ImageDecodeError, ImageReadError, ReleaseNotFoundError, StaleStoreError, StoreError
from chexpert.imaging import decode_resized
from chexpert.index import ROW_FIELDS
from chexpert.release import open_release
from chexpert.store import FORMAT, FORMAT_VERSION, StaleStoreWarning, open_store, prepare
from chexpert.synth import synthesize
from tests.conftest import STORE_FILES, tree_digest
from tests.conftest import STORE_SIZE as SIZE
from tests.conftest import same_store_files as same_files


@pytest.fixture
def reference(reference_store: Path) -> Path:
    """An uninterrupted single-process store of the whole small release (conftest's, shared: read-only)."""
    return reference_store


@pytest.fixture
def damaged(small_release: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the release with one truncated JPEG and one missing; returns it and their CSV paths."""
    root = tmp_path / "damaged" / small_release.name
    shutil.copytree(small_release, root)
    paths = [str(p) for p in open_release(root).index("train").path]
    truncated, missing = paths[3], paths[10]
    jpeg = root.parent / truncated
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    (root.parent / missing).unlink()
    return root, [truncated, missing]


def test_pixels_index_and_manifest_are_what_the_release_holds(small_release: Path, reference: Path) -> None:
    release = open_release(small_release)
    index = release.index()
    store = open_store(reference, source=small_release, size=SIZE, resize="pad")
    assert len(store) == len(index) == store.images.shape[0]
    assert store.images.shape[1:] == (SIZE, SIZE) and store.images.dtype == np.uint8
    assert not store.images.flags.writeable
    for i in (0, 7, len(index) - 1):
        path = str(index.path[i])
        np.testing.assert_array_equal(store.images[i], decode_resized(release.read_bytes(path), SIZE, "pad"))
    for name in ROW_FIELDS:
        np.testing.assert_array_equal(getattr(store.index, name), getattr(index, name))
    assert store.index.release is None and store.with_release(release).index.release is release
    manifest = store.manifest
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION == 2
    assert len(manifest["store_id"]) == 16
    checksums = manifest["checksums"]
    assert checksums["algorithm"] == "xxh3_64 of rows' xxh3_64" and checksums["rows"] == 16 and len(checksums["blocks"]) == -(-len(index) // 16)
    assert manifest["files"]["index.npz"]["bytes"] == (reference / "index.npz").stat().st_size
    assert manifest["params"] == {"size": SIZE, "resize": "pad", "on_error": "raise"}
    assert manifest["source"]["release"] == "small"
    assert set(manifest["source"]["csv_sha256"]) == set(release.splits)
    assert manifest["source"]["rows"] == len(index)
    assert manifest["code"]["sha256"] and manifest["code"]["chexpert"]
    assert store.skipped == [] and store.blanked == []
    # Nothing but the three documented files is left behind.
    assert sorted(p.name for p in reference.iterdir()) == sorted(STORE_FILES)


def test_store_is_readable_with_numpy_alone(reference: Path) -> None:
    images = np.load(reference / "images.npy", mmap_mode="r")
    with np.load(reference / "index.npz", allow_pickle=False) as index:
        assert set(index.files) == {f"{name}" for name in ROW_FIELDS}
        assert index["path"].dtype.kind == "S" and index["labels"].shape == (len(images), len(schema.OBSERVATIONS))
        assert index["path"][0].decode().startswith("CheXpert-v1.0-small/")
    manifest = json.loads((reference / "manifest.json").read_text())
    assert list(images.shape) == manifest["shape"]


def test_workers_zips_and_spawn_give_the_same_bytes(small_release: Path, reference: Path, tmp_path: Path) -> None:
    prepare(small_release, tmp_path / "two", size=SIZE, workers=2)
    assert same_files(reference, tmp_path / "two")
    zipped = synthesize(tmp_path / "zip", release="small", patients=12, seed=7, test_patients=2, layout="zip")
    prepare(zipped, tmp_path / "spawned", size=SIZE, workers=2, mp_context="spawn")
    assert same_files(reference, tmp_path / "spawned")


def test_a_selection_keeps_its_rows_in_order(small_release: Path, reference: Path, tmp_path: Path) -> None:
    release = open_release(small_release)
    index = release.index()
    rows = np.array([9, 2, 30, 4])
    store = prepare(release, tmp_path / "selection", size=SIZE, index=index.take(rows))
    np.testing.assert_array_equal(store.images, open_store(reference).images[rows])
    np.testing.assert_array_equal(store.index.path, index.path[rows])
    valid = prepare(release, tmp_path / "valid", size=SIZE, splits="valid")
    assert (valid.index.split == schema.SPLITS.index("valid")).all() and len(valid) == (index.split == 1).sum()


def test_prepare_never_writes_to_the_source(small_release: Path, tmp_path: Path) -> None:
    before = tree_digest(small_release)
    prepare(small_release, tmp_path / "store", size=32, workers=2)
    assert tree_digest(small_release) == before


def test_a_finished_store_is_returned_without_work(reference: Path, small_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(store_writer, "decode_resized", fail)
    calls: list[tuple[int, int]] = []
    store = prepare(small_release, reference, size=SIZE, progress=lambda done, total: calls.append((done, total)))
    assert len(store) == calls[-1][0] == calls[-1][1]


# -- crash safety ----------------------------------------------------------------------------------

_RUNNER = textwrap.dedent(
    """
    import sys, time
    import chexpert.store.writer as writer
    # Small units of work and a journal commit after each, paced so that a kill lands mid-run.
    writer._CHUNK_ROWS, writer._SYNC_SECONDS = 4, 0.0
    decode = writer.decode_resized
    def paced(*args, **kwargs):
        time.sleep(0.01)
        return decode(*args, **kwargs)
    writer.decode_resized = paced
    writer.prepare(sys.argv[1], sys.argv[2], size=int(sys.argv[3]))
    """
)


def _journal(out: Path) -> Path | None:
    found = sorted(out.glob(".journal.*")) if out.is_dir() else []
    return found[0] if found else None


def _journaled_rows(out: Path) -> int:
    journal = _journal(out)
    try:
        lines = journal.read_bytes().split(b"\n")[:-1] if journal is not None else []
    except FileNotFoundError:
        return 0
    return sum(json.loads(line)["rows"][1] - json.loads(line)["rows"][0] for line in lines)


def _start_and_kill(source: Path, out: Path, after_rows: int) -> None:
    """Run prepare in a real process and SIGKILL it once the journal holds ``after_rows`` rows."""
    process = subprocess.Popen([sys.executable, "-c", _RUNNER, str(source), str(out), str(SIZE)])
    try:
        deadline = time.monotonic() + 60
        while _journaled_rows(out) < after_rows:
            if process.poll() is not None:
                pytest.fail(f"prepare finished (rc={process.returncode}) before it could be killed")
            if time.monotonic() > deadline:
                pytest.fail("prepare made no progress in 60 s")
            time.sleep(0.002)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def test_sigkill_at_any_point_leaves_nothing_or_a_resumable_store(
    small_release: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "store"
    n = len(open_store(reference))
    for after_rows in (0, 4, 20, 36):
        _start_and_kill(small_release, out, after_rows)
        assert _journaled_rows(out) >= after_rows
        assert not (out / "manifest.json").exists()
        with pytest.raises(StoreError, match="interrupted|not a chexpert store"):
            open_store(out)

    # The resumed run decodes only what the journal does not hold, and ends byte-identical.
    already = _journaled_rows(out)
    assert 36 <= already < n
    decoded = []
    original = store_writer.decode_resized

    def counting(data: bytes, size: int, mode: str, *, file: str | None = None, **kwargs: Any) -> np.ndarray:
        decoded.append(file)
        return original(data, size, mode, file=file, **kwargs)

    monkeypatch.setattr(store_writer, "decode_resized", counting)
    calls: list[tuple[int, int]] = []
    store = prepare(small_release, out, size=SIZE, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (already, n) and calls[-1] == (n, n)
    assert len(decoded) == n - already
    assert same_files(out, reference)
    assert sorted(p.name for p in out.iterdir()) == sorted(STORE_FILES)
    assert len(store) == n


def test_a_torn_journal_line_is_dropped_and_the_run_resumes(small_release: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _start_and_kill(small_release, out, 8)
    journal = _journal(out)
    assert journal is not None
    with open(journal, "ab") as f:
        f.write(b'{"rows":[40,4')  # what a kill in the middle of an append leaves
    prepare(small_release, out, size=SIZE)
    assert same_files(out, reference)


def test_a_damaged_journal_line_says_what_works_and_it_does(small_release: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _start_and_kill(small_release, out, 8)
    journal = _journal(out)
    assert journal is not None
    journal.write_bytes(b"{not json}\n" + journal.read_bytes())  # a whole line damaged, not a torn tail
    with pytest.raises(StoreError, match=r"line 1: unreadable journal record.*prepare again with overwrite=True") as caught:
        prepare(small_release, out, size=SIZE)
    assert str(journal) in str(caught.value)
    # The advice: the same call with overwrite=True. (Before, it resumed into the same error.)
    prepare(small_release, out, size=SIZE, overwrite=True)
    assert same_files(out, reference)


def test_other_parameters_do_not_resume_an_interrupted_run(small_release: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _start_and_kill(small_release, out, 4)
    with pytest.raises(StaleStoreError, match="size 48 -> 32"):
        prepare(small_release, out, size=32)
    store = prepare(small_release, out, size=SIZE, resize="pad", overwrite=False)
    assert same_files(out, reference) and len(store) == len(open_store(reference))


# -- staleness -------------------------------------------------------------------------------------


def test_opening_with_other_source_or_parameters_says_what_changed(small_release: Path, reference: Path, tmp_path: Path) -> None:
    with pytest.raises(StaleStoreError, match="size is 48, not 64"):
        open_store(reference, size=64)
    with pytest.raises(StaleStoreError, match="resize is 'pad', not 'crop'"):
        open_store(reference, resize="crop")
    with pytest.raises(StaleStoreError, match=r"selected rows differ \(2 selected, the store holds"):
        open_store(reference, source=small_release, splits="valid")

    edited = tmp_path / "edited" / small_release.name
    shutil.copytree(small_release, edited)
    csv = edited / "train.csv"
    lines = csv.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[-1] = "1.0\n" if cells[-1].strip() != "1.0" else "0.0\n"  # one label of one image
    csv.write_text("".join([lines[0], ",".join(cells), *lines[2:]]))
    with pytest.raises(StaleStoreError, match="the train CSV changed"):
        open_store(reference, source=edited)
    open_store(reference, source=small_release, size=SIZE)  # the unchanged source is fine

    full = synthesize(tmp_path / "full", release="full", patients=2, seed=7, valid_patients=1)
    with pytest.raises(StaleStoreError, match="release is full, the store was made from small"):
        open_store(reference, source=full)


def test_prepare_over_a_store_of_other_data_needs_overwrite(small_release: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    with pytest.raises(StaleStoreError, match="size 48 -> 32"):
        prepare(small_release, out, size=32)
    assert same_files(out, reference)  # untouched
    store = prepare(small_release, out, size=32, overwrite=True)
    assert store.images.shape[1:] == (32, 32)
    assert open_store(out).size == 32


def test_a_store_from_other_producing_code_warns(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["code"]["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(StaleStoreWarning, match="other producing code"):
        open_store(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_store(reference)


def test_the_code_fingerprint_covers_the_function_that_writes_the_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """identity sits below the writer, so it reads writer.decode_range as text: edited, the hash changes."""
    import inspect

    from chexpert.store import identity

    assert identity._pixel_code() == inspect.getsource(store_writer.decode_range)
    before = identity.code_identity()["sha256"]
    source = Path(store_writer.__file__).read_text(encoding="utf-8")
    edited = source.replace("pixels[j] = 0\n", "pixels[j] = 1\n", 1)
    assert edited != source
    (tmp_path / "writer.py").write_text(edited, encoding="utf-8")
    monkeypatch.setattr(identity, "__file__", str(tmp_path / "identity.py"))  # where it looks for writer.py
    monkeypatch.setattr(identity, "_CODE_IDENTITY", {})
    assert identity.code_identity()["sha256"] != before
    (tmp_path / "writer.py").write_text(source.replace("def decode_range(", "def decode_rows("), encoding="utf-8")
    monkeypatch.setattr(identity, "_CODE_IDENTITY", {})
    with pytest.raises(RuntimeError, match="no function decode_range"):
        identity.code_identity()


def test_unknown_format_version_and_foreign_folders_are_refused(reference: Path, small_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    shutil.copytree(reference, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="version 99"):
        open_store(out)
    with pytest.raises(StoreError, match="not a chexpert store"):
        open_store(tmp_path)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="holiday.jpg"):
        prepare(small_release, foreign, size=SIZE, overwrite=True)
    assert (foreign / "holiday.jpg").read_bytes() == b"x"


# -- unreadable images -----------------------------------------------------------------------------


def test_an_unreadable_image_raises_by_default_naming_the_file(damaged: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, (truncated, missing) = damaged
    with pytest.raises(ImageDecodeError) as caught:
        prepare(root, tmp_path / "store", size=SIZE, splits="train")
    assert caught.value.file == truncated and truncated in str(caught.value) and "on_error" in str(caught.value)
    # The rows before it are kept: the next run resumes, here skipping what cannot be read.
    store = prepare(root, tmp_path / "store", size=SIZE, splits="train", on_error="skip")
    fresh = prepare(root, tmp_path / "fresh", size=SIZE, splits="train", on_error="skip")
    assert same_files(tmp_path / "store", tmp_path / "fresh")
    assert [r["path"] for r in store.skipped] == [truncated, missing] == [r["path"] for r in fresh.skipped]
    assert "ImageDecodeError" in store.skipped[0]["error"] and "ReleaseNotFoundError" in store.skipped[1]["error"]


def test_skip_leaves_rows_out_and_blank_keeps_them_black(damaged: tuple[Path, list[str]], small_release: Path, tmp_path: Path) -> None:
    root, bad = damaged
    whole = prepare(small_release, tmp_path / "whole", size=SIZE, splits="train")
    paths = [str(p) for p in whole.index.path]
    bad_rows = [paths.index(p) for p in bad]
    keep = [i for i in range(len(paths)) if i not in bad_rows]

    skipped = prepare(root, tmp_path / "skip", size=SIZE, splits="train", on_error="skip", workers=2)
    assert len(skipped) == len(paths) - 2 and skipped.manifest["shape"][0] == len(skipped)
    np.testing.assert_array_equal(skipped.images, whole.images[keep])
    np.testing.assert_array_equal(skipped.index.path, whole.index.path[keep])
    assert [(r["row"], r["path"]) for r in skipped.skipped] == list(zip(bad_rows, bad))

    blanked = prepare(root, tmp_path / "blank", size=SIZE, splits="train", on_error="blank")
    assert len(blanked) == len(paths) and [r["path"] for r in blanked.blanked] == bad and blanked.skipped == []
    assert (blanked.images[bad_rows] == 0).all()
    np.testing.assert_array_equal(blanked.images[keep], whole.images[keep])

    # A store with failures remembers its policy: asking for another one is a different store.
    with pytest.raises(StaleStoreError, match="on_error 'blank' -> 'skip'"):
        prepare(root, tmp_path / "blank", size=SIZE, splits="train", on_error="skip")
    # A missing image raises FileNotFoundError (ReleaseNotFoundError) under the default policy.
    release = open_release(root)
    index = release.index("train")
    with pytest.raises(ReleaseNotFoundError, match="not found"):
        prepare(release, tmp_path / "raise", size=SIZE, index=index.take(np.array([bad_rows[1]])))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize": "stretch"}, "resize must be one of pad, crop, squash"),
        ({"on_error": "ignore"}, "on_error must be one of raise, skip, blank"),
        ({"size": 0}, "size must be an integer from 8 to 4096"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"splits": "holdout"}, "split 'holdout' is not in this release; valid: train, valid, test"),
        ({"mp_context": "threads"}, "mp_context must be one of"),
    ],
)
def test_arguments_are_checked_up_front(small_release: Path, tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(small_release, tmp_path / "store", **kwargs)  # type: ignore[arg-type]  # bad values on purpose: the checks under test
    assert not (tmp_path / "store").exists()


def test_only_one_prepare_writes_to_a_folder_at_a_time(small_release: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "store"
    out.mkdir()
    holder = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreError, match="being written by another prepare"):
            prepare(small_release, out, size=SIZE)
    finally:
        os.close(holder)
    assert len(prepare(small_release, out, size=32, splits="valid")) == 2


@pytest.mark.parametrize("then", ["skip", "blank"])
def test_a_crash_while_finishing_resumes_to_the_same_bytes(damaged: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    root, _ = damaged
    fresh = prepare(root, tmp_path / "fresh", size=SIZE, splits="train", on_error=then)
    written = store_writer.write_atomic

    def crash_before_manifest(path: Path, data: bytes, ident: str) -> None:
        if path.name == "manifest.json":
            raise KeyboardInterrupt("killed after compacting, before the manifest")
        written(path, data, ident)

    monkeypatch.setattr(store_writer, "write_atomic", crash_before_manifest)
    with pytest.raises(KeyboardInterrupt):
        prepare(root, tmp_path / "store", size=SIZE, splits="train", on_error="skip")
    with pytest.raises(StoreError, match="interrupted"):
        open_store(tmp_path / "store")
    monkeypatch.setattr(store_writer, "write_atomic", written)
    # Resuming with skip finishes the compacted store; with blank, the dropped rows come back.
    store = prepare(root, tmp_path / "store", size=SIZE, splits="train", on_error=then)
    assert same_files(tmp_path / "store", tmp_path / "fresh") and len(store) == len(fresh)


def test_the_prepare_command(small_release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chexpert.cli import main

    out = tmp_path / "store"
    argv = ["prepare", str(small_release), "--out", str(out), "--size", "32", "--views", "frontal", "--splits", "train", "--workers", "2", "--quiet"]
    assert main(argv) == 0
    store = open_store(out)
    release = open_release(small_release)
    train = release.index("train")
    np.testing.assert_array_equal(store.index.path, train.path[train.frontal])
    assert f"{len(store):,} images of 32x32 (pad)" in capsys.readouterr().out
    # Other parameters over an existing store: a clear error and exit code 2, then --overwrite.
    assert main([*argv[:5], "64", *argv[6:]]) == 1
    assert "size 32 -> 64" in capsys.readouterr().err
    assert main([*argv[:5], "64", *argv[6:], "--overwrite"]) == 0
    assert open_store(out).size == 64


def _unreadable(root: Path) -> dict[str, str]:
    """Make three train images unreadable in three ways; returns CSV path -> what was done."""
    paths = [str(p) for p in open_release(root).index("train").path]
    folder, fifo, device, denied, chexpert_error = paths[5], paths[11], paths[25], paths[17], paths[33]
    for path in (folder, fifo, device):
        (root.parent / path).unlink()
    (root.parent / folder).mkdir()  # a directory named x.jpg
    os.mkfifo(root.parent / fifo)  # reading it would block for ever
    (root.parent / device).symlink_to("/dev/zero")  # reading it would never end
    return {folder: "ImageReadError", fifo: "ImageReadError", device: "ImageReadError", denied: "PermissionError", chexpert_error: "ChexpertError"}


@pytest.fixture
def unreadable(small_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    """A release copy where reading five images fails: a folder at an image's name, a FIFO, a link
    to /dev/zero, and (injected, as a non-root user or another reader meets them) a
    PermissionError and a ChexpertError."""
    from chexpert.errors import ChexpertError
    from chexpert.release import Release

    root = tmp_path / "unreadable" / small_release.name
    shutil.copytree(small_release, root)
    bad = _unreadable(root)
    original = Release.read_bytes
    by_kind = {kind: path for path, kind in bad.items()}

    def read_bytes(self: Release, path: str) -> bytes:
        if path == by_kind["PermissionError"]:
            raise PermissionError(13, "Permission denied", str(self.root.parent / path))
        if path == by_kind["ChexpertError"]:
            raise ChexpertError(f"{path}: zip member fails its CRC-32")
        return original(self, path)

    monkeypatch.setattr(Release, "read_bytes", read_bytes)  # inherited by forked workers
    return root, bad


@pytest.mark.parametrize("workers", [1, 2])
def test_any_unreadable_image_follows_on_error(unreadable: tuple[Path, dict[str, str]], small_release: Path, tmp_path: Path, workers: int) -> None:
    """Before: only ImageDecodeError and FileNotFoundError were per-image; ImageReadError (a folder at an
    image's name), a PermissionError or another ChexpertError stopped prepare whatever on_error said."""
    root, bad = unreadable
    paths = [str(p) for p in open_release(small_release).index("train").path]
    rows = sorted(paths.index(p) for p in bad)
    skipped = prepare(root, tmp_path / "skip", size=SIZE, splits="train", on_error="skip", workers=workers)
    assert [r["row"] for r in skipped.skipped] == rows and len(skipped) == len(paths) - len(bad)
    assert {r["path"]: r["error"].split(":")[0] for r in skipped.skipped} == bad
    assert all(r["path"] in r["error"] for r in skipped.skipped)  # every message names its file
    blanked = prepare(root, tmp_path / "blank", size=SIZE, splits="train", on_error="blank", workers=workers)
    assert [r["row"] for r in blanked.blanked] == rows and (blanked.images[rows] == 0).all()
    with pytest.raises(ImageReadError, match=r"on_error='skip' or on_error='blank' goes on without it") as caught:
        prepare(root, tmp_path / "raise", size=SIZE, splits="train", workers=workers)
    assert isinstance(caught.value, OSError) and caught.value.file in bad and Path(caught.value.file).name in str(caught.value)


def test_the_command_line_says_on_error_as_the_command_line_does(
    unreadable: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chexpert.cli import main

    root, bad = unreadable
    assert main(["prepare", str(root), "--out", str(tmp_path / "store"), "--size", "32", "--splits", "train", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(--on-error skip or --on-error blank goes on without it; finished rows are kept)" in err
    assert main(["prepare", str(root), "--out", str(tmp_path / "store"), "--size", "32", "--splits", "train", "--on-error", "skip", "--quiet"]) == 0
    assert f"{len(bad)} unreadable images skipped" in capsys.readouterr().out


# -- from a split to a store -------------------------------------------------------------------------


def test_a_store_of_one_part_of_a_patient_split(small_release: Path, reference: Path, tmp_path: Path) -> None:
    """split_patients / select give an Index bound to the release: prepare takes it as the source or as index=."""
    import chexpert

    release = chexpert.open(small_release)
    frontal = chexpert.select(release.index("train"), views="Frontal")
    parts = chexpert.split_patients(frontal, {"train": 0.75, "valid": 0.25}, seed=1)
    store = chexpert.prepare(parts["train"], tmp_path / "train", size=SIZE)
    np.testing.assert_array_equal(store.index.path, parts["train"].path)
    assert store.index.frontal.all() and len(store) == len(parts["train"])
    full = open_store(reference)
    row_of = {str(path): row for row, path in enumerate(full.index.path)}
    rows = np.array([row_of[str(path)] for path in parts["train"].path])
    np.testing.assert_array_equal(store.images, full.images[rows])  # the same pixels as in the whole store
    again = prepare(release, tmp_path / "train", size=SIZE, index=parts["train"])  # the same store: found done
    assert again.manifest == store.manifest
    with pytest.raises(StaleStoreError, match="selected rows differ"):
        prepare(parts["valid"], tmp_path / "train", size=SIZE)
    with pytest.raises(ValueError, match="not bound to a release"):
        prepare(parts["train"].with_release(None), tmp_path / "unbound", size=SIZE)
    with pytest.raises(ValueError, match="pass no splits or index"):
        prepare(parts["train"], tmp_path / "both", size=SIZE, splits="train")


def test_forked_workers_after_opencv_started_its_threads(small_release: Path, reference: Path, tmp_path: Path) -> None:
    """Before: workers set OpenCV's thread count, which hangs in a child forked after the parent's
    OpenCV thread pool started (as any resize of a large image in the parent does)."""
    script = textwrap.dedent(
        """
        import sys, numpy as np, cv2
        from chexpert.store import prepare
        cv2.setNumThreads(4)
        cv2.resize(np.zeros((2000, 2000), np.uint8), (3000, 3000))
        prepare(sys.argv[1], sys.argv[2], size=int(sys.argv[3]), workers=2, mp_context="fork")
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(small_release), str(tmp_path / "store"), str(SIZE)], stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, stderr = process.communicate(timeout=120)
    finally:  # a hung worker must not outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr.decode()
    assert same_files(tmp_path / "store", reference)
