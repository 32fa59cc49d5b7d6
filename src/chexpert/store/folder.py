"""The store folder: which entries are ours, one prepare at a time, atomic files, write errors."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from chexpert.errors import (
    ChexpertError,
    StaleStoreError,
    StoreError,
    option,
)
from chexpert.fileio import create_new
from chexpert.safeio import open_regular, read_bytes
from chexpert.schema import MAX_JOURNAL_BYTES, MAX_JSON_BYTES
from chexpert.store.format import FORMAT, IMAGES, INDEX, MANIFEST, PLAN, check_files, damage_message, read_npy_header
from chexpert.store.identity import same_store

_V1_JOURNAL = ".journal"  # format 1 named its journal without an id
# The start of every index.npz that prepare writes: a stored zip member "path.npy" dated
# 1980-01-01 00:00 (np.savez dates members with the current time).
_INDEX_MAGIC: Final = b"PK\x03\x04"
_INDEX_MEMBER: Final = struct.pack("<HHH", 0, 0, 0x21)  # method stored, time 00:00, date 1980-01-01


def work_name(ident: str) -> str:
    return f".images.{ident}.npy"


def compact_name(ident: str) -> str:
    return f".images.{ident}.compact"


def journal_name(ident: str) -> str:
    return f".journal.{ident}"


def _tmp_name(name: str, ident: str) -> str:
    return f"{name}.{ident}.tmp"


NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def fresh(path: Path) -> IO[bytes]:
    """``path`` created anew for writing: a file or link left at this name of ours (a killed run's) goes first, as a name."""
    path.unlink(missing_ok=True)
    return create_new(path)


@dataclass
class _Folder:
    """What a store folder holds: its manifest and plan (if this format's), and which entries are ours."""

    manifest: dict[str, Any] | None
    plan: dict[str, Any] | None
    ours: list[str]
    foreign: list[str]


def _read_ours(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A JSON document of this format at ``path``, or None and why it is not one."""
    try:
        doc = json.loads(read_bytes(path, limit=MAX_JSON_BYTES))  # a FIFO or device: unreadable, never waited on
    except (OSError, ValueError) as exc:
        return None, f"not JSON: {exc}" if isinstance(exc, ValueError) else f"unreadable: {exc.strerror or exc}"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None, f"not a {FORMAT} document"
    return doc, ""


def _survey(out: Path) -> _Folder:
    """Sort the entries of ``out`` into ours (provably written by prepare) and foreign ones."""
    names = sorted(os.listdir(out))
    docs: list[dict[str, Any]] = []
    found: dict[str, dict[str, Any] | None] = {MANIFEST: None, PLAN: None}
    for name in (MANIFEST, PLAN):
        if name in names:
            doc, why = _read_ours(out / name)
            if doc is None:
                raise StoreError(
                    f"{out / name} is not a chexpert store's ({why}); prepare writes only into a new or empty folder, "
                    "a store it made or an interrupted preparation: choose another folder"
                )
            found[name] = doc
            docs.append(doc)
    ids = {str(doc["store_id"]) for doc in docs if doc.get("store_id")}
    ours, foreign = [], []
    for name in names:
        path = out / name
        if name in (MANIFEST, PLAN):
            ours.append(name)
        elif not _regular(path):
            foreign.append(name)
        elif any(name in (work_name(i), compact_name(i), journal_name(i)) or name.endswith(f".{i}.tmp") for i in ids):
            ours.append(name)
        elif name in (IMAGES, INDEX) and any(_carries_our_header(path, doc, exact=doc is found[MANIFEST]) for doc in docs):
            ours.append(name)
        elif name == _V1_JOURNAL and any(doc.get("format_version") == 1 for doc in docs) and _is_journal(path):
            ours.append(name)
        elif name.endswith(".tmp") and name.startswith(PLAN + ".") and _orphan_plan(path, name):
            ours.append(name)
        else:
            foreign.append(name)
    return _Folder(found[MANIFEST], found[PLAN], ours, foreign)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _carries_our_header(path: Path, doc: dict[str, Any], *, exact: bool) -> bool:
    """images.npy with the header prepare writes for ``doc``'s shape (``exact``: a manifest's; else
    a plan's, perhaps with skipped rows dropped), or index.npz as prepare writes it.

    Headers survive truncation and damage further in, so a damaged store is still provably ours.
    """
    try:
        with open_regular(path) as f:
            if path.name == INDEX:
                head = f.read(38)
                return head[:4] == _INDEX_MAGIC and head[8:14] == _INDEX_MEMBER and head[26:38] == b"\x08\x00\x00\x00path.npy"
            header = read_npy_header(f)
    except OSError:
        return False
    if header is None:
        return False
    shape, _ = header
    try:
        planned = tuple(int(v) for v in doc["shape"])
    except (KeyError, TypeError, ValueError):
        return False
    if len(planned) != 3 or len(shape) != 3:
        return False
    return shape == planned if exact else shape[1:] == planned[1:] and shape[0] <= planned[0]


def _is_journal(path: Path) -> bool:
    try:
        lines = read_bytes(path, limit=MAX_JOURNAL_BYTES).split(b"\n")[:-1]
        return all(isinstance(json.loads(line), dict) and "rows" in json.loads(line) for line in lines)
    except (OSError, ValueError):
        return False


def _orphan_plan(path: Path, name: str) -> bool:
    """A plan that a kill left before its rename: ours if it is a whole plan of the id in its name."""
    doc, _ = _read_ours(path)
    return doc is not None and name == _tmp_name(PLAN, str(doc.get("store_id")))


def prepare_folder(out: Path, plan: dict[str, Any], on_error: str, overwrite: bool) -> str:
    """ "done" (a matching, sound store exists), "resume" or "fresh"; clears what is ours to replace."""
    folder = _survey(out)
    if folder.foreign:
        shown = ", ".join(folder.foreign[:5]) + (f" and {len(folder.foreign) - 5} more" if len(folder.foreign) > 5 else "")
        raise StoreError(
            f"{out} holds files that prepare did not write or cannot prove it wrote ({shown}); it replaces only its own "
            "files: choose an empty or new folder, or move those files away"
        )
    manifest, interrupted = folder.manifest, folder.plan
    what, changes = None, []
    if manifest is not None:
        changes = same_store(manifest, plan, on_error)
        if not changes and not overwrite:
            problems = check_files(out, manifest)
            if problems:
                raise StoreError(damage_message(out, problems, same_arguments=True))
            remove(out, [n for n in folder.ours if n not in (MANIFEST, IMAGES, INDEX)])
            return "done"
        what = "a store of other data or parameters"
    elif interrupted is not None:
        if interrupted == plan and not overwrite:
            return "resume"
        what = "an interrupted preparation of other data or parameters"
        changes = same_store(interrupted, plan, on_error) or ["format or shape"]
    if what is not None and changes and not overwrite:
        raise StaleStoreError(f"{out} holds {what} ({'; '.join(changes)}); pass {option('overwrite')} to replace it")
    _clear(out, folder.ours)
    return "fresh"


def _clear(out: Path, ours: Sequence[str]) -> None:
    """Remove our entries: data first, the documents that prove the rest ours last.

    A run killed halfway leaves a folder whose remaining entries are still provably ours.
    """
    anchors = [n for n in (PLAN, MANIFEST) if n in ours]
    remove(out, [*(n for n in ours if n not in anchors), *reversed(anchors)])


@contextlib.contextmanager
def locked(out: Path, needed: int) -> Iterator[tuple[int, int]]:
    """Hold an exclusive lock on the store folder (made if needed): one prepare writes at a time.

    Yields the locked descriptor and its inode, so that forked workers can drop their copy.
    """
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file, not a folder: a store needs a folder of its own (new, empty, or a store to resume or replace)")
    with writing(out, needed):
        out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # no advisory locks (Windows): one prepare per folder is up to the user
        yield -1, -1
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"{out} is being written by another prepare (or the worker processes of a killed one are still ending); run again when it has finished"
            ) from None
        yield fd, os.fstat(fd).st_ino
    finally:
        os.close(fd)


@contextlib.contextmanager
def writing(out: Path, needed: int) -> Iterator[None]:
    """Turn an OSError of writing the store into one naming the store and saying how to go on."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ChexpertError | _StoreWriteError):
            raise
        raise write_error(exc, out, needed) from None


class _StoreWriteError(OSError):
    """An OSError of writing the store, already naming the store (an OSError for callers)."""


def write_error(exc: OSError, out: Path, needed: int) -> OSError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        text = (
            f"{exc.strerror or exc} while writing the store (about {needed / 1e9:.3g} GB when finished); "
            "free space and run prepare again with the same arguments: it resumes where it stopped"
        )
    else:
        text = f"cannot write the store: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return _StoreWriteError(exc.errno, text, str(out))


def remove(out: Path, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def write_atomic(path: Path, data: bytes, ident: str) -> None:
    tmp = path.with_name(_tmp_name(path.name, ident))
    with fresh(tmp) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
