"""Every file the package reads outside a release's images goes through the safe reader.

A FIFO nobody writes to, a link to ``/dev/zero`` or a folder, put where a store, an export or Plus
expects one of its files, is one line naming the file: never a hang, never a read until memory
runs out. Each case runs in a subprocess with a timeout and a memory limit, so that a regression
fails the test instead of hanging the suite or the machine.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from chexpert.errors import ReadError
from chexpert.safeio import check_regular, open_regular, read_bytes
from chexpert.synth.plus import synthesize_plus
from tests.conftest import STORE_SIZE

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs and /dev/zero")

KINDS = {"fifo": "FIFO", "dev-zero": "character device", "folder": "folder"}


def _plant(path: Path, kind: str) -> None:
    """Put ``kind`` at ``path`` in place of the file there."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()


def _limited() -> None:
    # Reading /dev/zero whole would take all memory: 3 GiB of address space ends it with a MemoryError.
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _python(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` (which prints a JSON object) in a fresh interpreter, bounded in time and memory."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=90, preexec_fn=_limited)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


_STORE = """
import contextlib, io, json, sys
from chexpert.cli import main
from chexpert.store import open_store, prepare, verify_store

store, release, out, size = sys.argv[1:]

def caught(call):
    try:
        call()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["ok", ""]

def command(*argv):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(list(argv))
    return [code, std.getvalue(), err.getvalue()]

print(json.dumps({
    "verify_store": [str(p) for p in verify_store(store)],
    "open_store": caught(lambda: open_store(store)),
    "verify-store": command("verify-store", store, "--json", "--quiet"),
    "export": command("export", store, out, "--format", "webdataset", "--quiet"),
    "prepare": caught(lambda: prepare(release, store, size=int(size), workers=1)),
}))
"""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["images.npy", "index.npz", "manifest.json"])
def test_a_store_file_that_is_no_regular_file_is_named(small_release: Path, reference_store: Path, tmp_path: Path, name: str, kind: str) -> None:
    """Before: verify-store and export hung on a FIFO images.npy or index.npz, and read /dev/zero
    until memory ran out."""
    store = tmp_path / "store"
    shutil.copytree(reference_store, store)
    _plant(store / name, kind)
    found = _python(_STORE, str(store), str(small_release), str(tmp_path / "shards"), str(STORE_SIZE))
    file, word = str(store / name), KINDS[kind]
    assert any(file in line and word in line for line in found["verify_store"]), found["verify_store"]
    kind_of_error, message = found["open_store"]
    assert kind_of_error in ("StoreError", "ReadError") and file in message and word in message
    code, out, err = found["verify-store"]
    assert code == 1 and err == "" and word in out and file in out
    code, out, err = found["export"]
    assert code == 1 and out == "" and err.count("\n") == 1 and file in err and word in err
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())
    # prepare into that folder: refused (the odd entry is not provably its own), never a wait.
    kind_of_error, message = found["prepare"]
    assert kind_of_error in ("StoreError", "ReadError", "StaleStoreError") and name in message
    assert (store / name).exists() or (store / name).is_symlink()  # left as it was


_PLUS = """
import json, sys
from chexpert.plus import open_plus, radgraph

root = sys.argv[1]
try:
    radgraph(open_plus(root, images="png"), "impression")
    graph = ["ok", ""]
except Exception as exc:
    graph = [type(exc).__name__, str(exc)]
problems = [str(p) for p in open_plus(root, images="png").problems()]
print(json.dumps({"radgraph": graph, "problems": problems}))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_plus_files_that_are_no_regular_files_are_named(tmp_path: Path, kind: str) -> None:
    """Before: radgraph() hung on a FIFO and read /dev/zero until memory ran out; a label file that
    was a FIFO was reported "not found"."""
    root = synthesize_plus(tmp_path / "plus", patients=3, valid_patients=1, seed=5)
    graph = root / "radgraph-XL-annotations" / "section_impression.json"
    labels = root / "chexbert_labels" / "report_fixed.json"
    assert labels.exists(), sorted(p.name for p in labels.parent.iterdir())
    _plant(graph, kind)
    _plant(labels, kind)
    found = _python(_PLUS, str(root))
    kind_of_error, message = found["radgraph"]
    assert kind_of_error == "ReadError" and str(graph) in message
    assert any(str(labels) in line and "left blank" in line and "not found" not in line for line in found["problems"])


@pytest.mark.parametrize("kind", KINDS)
def test_the_safe_reader_refuses_what_is_no_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "file"
    _plant(path, kind)
    for read in (lambda: read_bytes(path, limit=1 << 20), lambda: check_regular(path), lambda: open_regular(path).__enter__()):
        with pytest.raises(ReadError, match=f"{path}: is an? {KINDS[kind]}"):
            read()


def test_the_safe_reader_caps_the_size(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 101)
    assert read_bytes(path, limit=101) == b"x" * 101
    with pytest.raises(ReadError, match="is 101 bytes, more than the 100"):
        read_bytes(path, limit=100)
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "nothing", limit=100)
    with pytest.raises(FileNotFoundError):
        check_regular(path / "below-a-file")


_USER_FILES = """
import json, sys
from chexpert.index import read_csv
from chexpert.labeler.evaluation import read_gold
from chexpert.localize import read_masks
from chexpert.policy import read_soft_labels
from chexpert.schema import MAX_TABLE_BYTES

folder = sys.argv[1]
out = {}
for name, call in (
    ("train.csv", lambda path: read_csv(path)),
    ("soft.csv", lambda path: read_soft_labels(path)),
    ("gt_segmentations_val.json", lambda path: read_masks(path, "valid")),
    ("gold.jsonl", lambda path: read_gold(path)),
):
    try:
        call(folder + "/" + name)
        out[name] = ["ok", ""]
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_files_a_user_names_are_read_safely(tmp_path: Path, kind: str) -> None:
    """A CSV of one's own, soft labels, CheXlocalize JSON, a labeler gold set: a FIFO or /dev/zero
    given as one is an error naming it (before: a hang, or a read until memory ran out)."""
    names = ("train.csv", "soft.csv", "gt_segmentations_val.json", "gold.jsonl")
    for name in names:
        _plant(tmp_path / name, kind)
    found = _python(_USER_FILES, str(tmp_path))
    # Soft labels are read as evaluate reads its CSVs (i14b: a pipe with a writer, `<(command)`,
    # is read; one nobody writes to gets 5 s): a CSVFormatError naming the file, in evaluate's words.
    soft = {"fifo": "soft-label file is a FIFO that nothing wrote to", "dev-zero": "soft-label must be a CSV file, not a device or socket"}
    for name in names:
        kind_of_error, message = found[name]
        if name == "soft.csv":
            assert kind_of_error == "CSVFormatError" and f"{tmp_path / name}: {soft[kind]}" in message, (name, found[name])
        else:
            assert kind_of_error == "ReadError" and f"{tmp_path / name}: is a {KINDS[kind]}" in message, (name, found[name])


def test_a_gzipped_csv_is_inflated_no_further_than_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gzip members that would inflate to more than the cap: refused there, not inflated whole
    (before: gzip.decompress inflated whatever they held). The cap is lowered to keep the test small."""
    import gzip

    import chexpert.index
    from chexpert.index import read_csv

    cap = 8 << 20
    monkeypatch.setattr(chexpert.index, "MAX_TABLE_BYTES", cap)
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    bomb = tmp_path / "train.csv.gz"
    bomb.write_bytes(member * 9)
    with pytest.raises(ReadError, match=f"train.csv.gz: inflates to more than {cap:,} bytes"):
        read_csv(bomb)
    bomb.write_bytes(gzip.compress(b"Path,Sex\n"))
    with pytest.raises(Exception, match="train.csv.gz") as caught:  # inflated: now a CSV problem, not a size one
        read_csv(bomb)
    assert "inflates" not in str(caught.value)
