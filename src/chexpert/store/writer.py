"""prepare(): plan, decode in workers straight into the images file, journal, resume, finish."""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from chexpert import errors
from chexpert.discover import open_dataset as open_release
from chexpert.errors import (
    ChexpertError,
    ImageDecodeError,
    ImageReadError,
    InvalidArgumentError,
    ReadError,
    ReleaseNotFoundError,
    StoreError,
    option,
)
from chexpert.imaging import RESIZE_MODES, decode_resized, one_thread_per_worker
from chexpert.index import Index
from chexpert.parallel import run_chunks
from chexpert.release import Release
from chexpert.safeio import open_regular, read_bytes
from chexpert.schema import MAX_JOURNAL_BYTES
from chexpert.store.folder import (
    NOFOLLOW,
    compact_name,
    fresh,
    fsync_folder,
    journal_name,
    locked,
    prepare_folder,
    remove,
    work_name,
    write_atomic,
    write_error,
    writing,
)
from chexpert.store.format import (
    IMAGES,
    INDEX,
    MANIFEST,
    PLAN,
    Store,
    block_checksums,
    file_digests,
    index_npz_bytes,
    json_bytes,
    make_plan,
    npy_header_bytes,
    open_store,
    read_npy_header,
    row_digests,
)
from chexpert.store.identity import select_rows
from chexpert.validation import check_choice, check_int

#: What :func:`prepare` does with an image it cannot read or decode: raise (default), leave the
#: row out of the store, or keep the row with black pixels. Skipped and blanked rows are listed
#: in the manifest either way.
ON_ERROR: Final[tuple[str, ...]] = ("raise", "skip", "blank")
_JOURNAL_DIGESTS: Final = "xxh3_64"  # the journal's key for the digest of each row
# Rows per unit of work, at most: enough that bookkeeping is negligible, few enough that a kill
# loses little, progress moves smoothly and the last chunks end together. Chunks are also capped
# in bytes and shrunk so that every worker gets several (see _chunk_rows).
_CHUNK_ROWS = 64
_CHUNK_BYTES = 8 * 2**20
_CHUNKS_PER_WORKER = 8
# Decoded rows are checksummed and written this many bytes at a time, while still in the CPU's cache.
_WRITE_BYTES = 2 * 2**20
# A journal append (and the data sync before it) happens at most this often.
_SYNC_SECONDS = 1.0


def prepare(
    source: Release | Index | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: int = 320,
    resize: str = "pad",
    splits: str | Sequence[str] | None = None,
    index: Index | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    on_error: str = "raise",
    overwrite: bool = False,
    mp_context: str | None = None,
) -> Store:
    """Decode every selected image once into a store at ``out`` and return it opened.

    ``source`` is a :class:`~chexpert.release.Release`, anything ``chexpert.open`` accepts, or
    an :class:`~chexpert.index.Index` bound to its release (what ``release.index()``,
    :func:`chexpert.select` and :func:`chexpert.split_patients` return): its rows, in its order,
    make the store. Otherwise the rows are those of ``index`` or of ``splits`` (default: every
    split with a CSV). ``resize`` is ``"pad"``, ``"crop"`` or ``"squash"`` (see
    :func:`chexpert.imaging.resize`). ``workers`` processes decode in parallel (``mp_context``:
    "fork", "spawn" or "forkserver"; default: the platform's). ``progress(done, total)`` is
    called as rows finish. ``on_error`` is one of :data:`ON_ERROR`: it applies to any image that
    cannot be read or decoded (missing, unreadable, corrupt, not a regular file).

    If ``out`` holds a finished store of the same source and parameters it is returned as is
    (a damaged one is an error saying so); an interrupted run of the same is resumed; a store or
    interrupted run of anything else raises :class:`~chexpert.errors.StaleStoreError`.
    ``overwrite=True`` rebuilds whatever prepare made there. Files prepare cannot prove it
    wrote are never removed: a folder holding any is refused. Images that failed before an
    interruption stay failed when the run resumes. The source is only read. A full disk raises
    an OSError naming the store; the next run with the same arguments resumes.

    >>> parts = chexpert.split_patients(chexpert.select(release.index("train"), views="Frontal"))
    >>> store = prepare(parts["train"], "store-224", size=224, workers=2)
    >>> len(store) == len(parts["train"]), store.images.shape[1:]
    (True, (224, 224))
    """
    check_choice("resize", resize, RESIZE_MODES)
    check_choice("on_error", on_error, ON_ERROR)
    size = check_int("size", size, low=8, high=4096)
    workers = check_int("workers", workers, low=1)
    check_choice("mp_context", mp_context, (None, *multiprocessing.get_all_start_methods()))
    release, index = _rows_of(source, splits, index)
    out = Path(out).expanduser().absolute()
    plan = make_plan(release, index, size, resize)
    n = len(index)
    ident = plan["store_id"]
    needed = n * size * size
    with locked(out, needed) as lock:
        state = prepare_folder(out, plan, on_error, overwrite)
        if state == "done":
            if progress is not None:
                progress(n, n)
            return open_store(out)
        journal = out / journal_name(ident)
        with writing(out, needed):
            if state == "fresh":
                _start(out, plan)
            _recover(out, plan, on_error)
            done, _, _ = _read_journal(journal, n)  # cuts a torn last line
        chunk = _chunk_rows(n, size, workers)
        todo = _missing_ranges(done, n, chunk)
        job = _Job(release, index.path, str(out / work_name(ident)), str(out), needed, size, resize, on_error,
                   lock=lock, parent=os.getpid())  # fmt: skip
        _run(job, journal, todo, workers, mp_context, progress, n - sum(b - a for a, b in todo))
        _, failures, digests = _read_journal(journal, n)
        if failures and on_error == "raise":
            # Recorded by an earlier run with on_error="skip" or "blank".
            _raise_failure(index.path, *min(failures.items()))
        with writing(out, needed):
            _finish(out, plan, index, failures, digests, on_error)
    return open_store(out)


def _rows_of(source: Release | Index | str | os.PathLike[str], splits: str | Sequence[str] | None, index: Index | None) -> tuple[Release, Index]:
    if isinstance(source, Index):
        if index is not None or splits is not None:
            raise InvalidArgumentError("the source is an Index, which gives the rows already: pass no splits or index")
        if source.release is None:
            raise InvalidArgumentError(
                "the Index is not bound to a release, so its images cannot be read; make it with release.index() "
                "(select and split_patients keep the binding) or index.with_release(release)"
            )
        return source.release, select_rows(source.release, None, source)
    release = source if isinstance(source, Release) else open_release(source)
    return release, select_rows(release, splits, index)


def _create_images(path: Path, shape: Sequence[int]) -> None:
    """A sparse .npy file of the final size: rows are filled in any order, untouched bytes read as 0."""
    header = npy_header_bytes(shape)
    with fresh(path) as f:
        f.write(header)
        f.truncate(len(header) + int(np.prod(shape)))


def _start(out: Path, plan: dict[str, Any]) -> None:
    # The plan comes first: it proves every file named with its id ours, whenever a kill lands.
    ident = plan["store_id"]
    write_atomic(out / PLAN, json_bytes(plan), ident)
    _create_images(out / work_name(ident), plan["shape"])
    fresh(out / journal_name(ident)).close()


def _recover(out: Path, plan: dict[str, Any], on_error: str) -> None:
    """Make an interrupted run's folder resumable: pixels at their work name, a journal."""
    ident = plan["store_id"]
    work, journal = out / work_name(ident), out / journal_name(ident)
    if not work.exists() and (out / IMAGES).exists():
        os.replace(out / IMAGES, work)  # a kill between finishing's rename and its manifest
    reset = not work.exists()
    if not reset and on_error != "skip":
        with open_regular(work) as f:
            header = read_npy_header(f)
        # An earlier run with on_error="skip" had already dropped rows; the others need them back.
        reset = header is None or header[0][0] != plan["shape"][0]
    if reset:
        remove(out, (work_name(ident), compact_name(ident), INDEX))
        _create_images(work, plan["shape"])
        fresh(journal).close()
    elif not journal.exists():
        fresh(journal).close()


# -- the journal ---------------------------------------------------------------------------------


def _read_journal(path: Path, n: int) -> tuple[list[tuple[int, int]], dict[int, str], dict[int, int]]:
    """Finished row ranges, the rows that failed (row -> error) and the digest of every finished
    row; drops a torn last line."""
    data = read_bytes(path, limit=MAX_JOURNAL_BYTES)
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # A kill mid-append leaves a partial line; cut it so the next append starts clean.
        with open(path, "r+b") as f:
            f.truncate(end)
    ranges: list[tuple[int, int]] = []
    failures: dict[int, str] = {}
    digests: dict[int, int] = {}
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            record = json.loads(line)
            start, stop = int(record["rows"][0]), int(record["rows"][1])
            rows = [int(digest, 16) for digest in record[_JOURNAL_DIGESTS]]
            failed = {int(row): str(error) for row, error in record.get("failed", [])}
            if not (0 <= start < stop <= n and len(rows) == stop - start):
                raise ValueError("rows out of range")
        except (ValueError, KeyError, TypeError, IndexError):
            raise StoreError(
                f"{path}, line {number}: unreadable journal record (damaged?); prepare again with {option('overwrite')} to start this store over"
            ) from None
        ranges.append((start, stop))
        failures.update(failed)
        digests.update(zip(range(start, stop), rows))
    return ranges, failures, digests


def _chunk_rows(n: int, size: int, workers: int) -> int:
    """Rows per chunk: at most _CHUNK_ROWS and _CHUNK_BYTES, at least _CHUNKS_PER_WORKER chunks
    per worker (so that the last ones, of a few slow full-resolution images, end together)."""
    return max(1, min(_CHUNK_ROWS, _CHUNK_BYTES // (size * size), -(-n // (_CHUNKS_PER_WORKER * workers))))


def _missing_ranges(done: list[tuple[int, int]], n: int, chunk: int) -> list[tuple[int, int]]:
    covered = np.zeros(n, dtype=bool)
    for start, stop in done:
        covered[start:stop] = True
    todo = []
    missing = np.flatnonzero(~covered)
    if len(missing):
        # Split the missing rows into runs of consecutive rows, then into chunks.
        breaks = np.flatnonzero(np.diff(missing) != 1) + 1
        for run in np.split(missing, breaks):
            for start in range(int(run[0]), int(run[-1]) + 1, chunk):
                todo.append((start, min(start + chunk, int(run[-1]) + 1)))
    return todo


# -- decoding, in this process or in workers -------------------------------------------------------


@dataclass
class _Job:
    release: Release
    paths: np.ndarray
    images: str  # the work images file
    out: str  # the store folder (named in write errors)
    needed: int  # bytes of pixels when finished (named in disk-full errors)
    size: int
    resize: str
    on_error: str
    lock: tuple[int, int] = (-1, -1)  # the parent's lock on the folder: descriptor and inode
    parent: int = 0  # the parent's process id
    offset: int = 0
    fd: int = -1
    pixels: np.ndarray | None = field(default=None, repr=False)


def _init_worker(job: _Job) -> _Job:
    """The job as one decoding process holds it (run by chexpert.parallel once per worker)."""
    if os.getpid() != job.parent:
        # A forked worker shares the parent's locked descriptor; dropping it lets the lock end
        # with the parent, so that a killed run can be resumed at once.
        try:
            if os.fstat(job.lock[0]).st_ino == job.lock[1]:
                os.close(job.lock[0])
        except OSError:
            pass
        one_thread_per_worker()
    with open(job.images, "rb") as f:
        header = read_npy_header(f)
    if header is None:
        raise StoreError(f"{job.images}: not the images file prepare made")
    job.offset = header[1]
    job.fd = os.open(job.images, os.O_WRONLY | getattr(os, "O_BINARY", 0) | NOFOLLOW)
    job.pixels = np.empty((max(1, _WRITE_BYTES // (job.size * job.size)), job.size, job.size), dtype=np.uint8)
    return job


def _close_job(job: _Job) -> None:
    """Close the images file of a job decoded in this process (workers close theirs by ending)."""
    if job.fd >= 0:
        os.close(job.fd)
        job.fd = -1


def decode_range(job: _Job, rows: tuple[int, int]) -> tuple[int, int, list[tuple[int, str]], list[str]]:
    """Decode rows [start, stop) and write their pixels; the failures and each row's digest.

    A few rows at a time: decoded into a buffer small enough to stay in the CPU's cache, digested
    and written (one pwrite) while they are there.
    """
    if job.pixels is None:  # pragma: no cover - only reachable by misuse
        raise RuntimeError("worker not initialised")
    start, stop = rows
    failed: list[tuple[int, str]] = []
    digests: list[str] = []
    row_bytes = job.size * job.size
    for first in range(start, stop, len(job.pixels)):
        last = min(first + len(job.pixels), stop)
        pixels = job.pixels[: last - first]
        for j, path in enumerate(job.paths[first:last].tolist()):
            row = first + j
            try:
                decode_resized(job.release.read_bytes(path), job.size, job.resize, file=path, out=pixels[j])
            except (ChexpertError, OSError) as exc:  # whatever keeps this one image from being read
                pixels[j] = 0
                failed.append((row, f"{type(exc).__name__}: {exc}"))
                if job.on_error == "raise":
                    # Stop at once; rows already journaled are kept for the resumed run.
                    return start, start, failed, []
        digests += [f"{digest:016x}" for digest in row_digests(pixels)]
        try:
            _write_at(job.fd, memoryview(pixels).cast("B"), job.offset + first * row_bytes)  # type: ignore[arg-type]  # ndarray is a Buffer
        except OSError as exc:
            raise write_error(exc, Path(job.out), job.needed) from None
    return start, stop, failed, digests


def _write_at(fd: int, data: memoryview, position: int) -> None:
    """Write all of ``data`` at ``position`` (one pwrite where the platform has it)."""
    while len(data):
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, data, position)
        else:  # Windows: each worker has its own descriptor, so seek + write does not race
            os.lseek(fd, position, os.SEEK_SET)
            written = os.write(fd, data)
        data, position = data[written:], position + written


def _run(
    job: _Job,
    journal_path: Path,
    todo: list[tuple[int, int]],
    workers: int,
    mp_context: str | None,
    progress: Callable[[int, int], None] | None,
    already: int,
) -> None:
    total = len(job.paths)
    if progress is not None:
        progress(already, total)
    if not todo:
        return
    # The pool starts here, before the journal's thread: forking a process that runs it is best
    # avoided. Workers write their rows themselves; Ctrl-C, SIGTERM or a failed row stops them
    # at once (chexpert.parallel's policy), and the journal keeps what was written for a resume.
    with run_chunks(decode_range, todo, workers=workers, state=job, setup=_init_worker, teardown=_close_job, ordered=False, mp_context=mp_context) as results:
        journal = _Journal(journal_path, Path(job.images), Path(job.out), job.needed)
        done = already
        failure = None
        try:
            for start, stop, failed, digests in results:
                if stop > start:
                    journal.add(json_bytes({"rows": [start, stop], "failed": failed, _JOURNAL_DIGESTS: digests}, line=True))
                    done += stop - start
                    if progress is not None:
                        progress(done, total)
                if failed and job.on_error == "raise":
                    failure = failed[0]
                    break
        except BaseException:
            with contextlib.suppress(OSError):  # the first error is the one to report
                journal.close()
            raise
    journal.close()
    if failure is not None:
        _raise_failure(job.paths, *failure)


class _Journal:
    """Appends finished ranges to the journal from a thread, so that decoding goes on meanwhile.

    Each append first syncs the pixels to disk (so the journal never claims rows that a power
    cut could lose), at most once per ``_SYNC_SECONDS``.
    """

    def __init__(self, path: Path, images: Path, out: Path, needed: int) -> None:
        self._out, self._needed = out, needed
        self._images = os.open(images, os.O_RDONLY)
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o666), "ab")
        self._lines: list[bytes] = []
        self._closed = False
        self._error: BaseException | None = None
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="chexpert-prepare-journal", daemon=True)
        self._thread.start()

    def add(self, line: bytes) -> None:
        if self._error is not None:
            raise self._error
        with self._wake:
            self._lines.append(line)
            self._wake.notify()

    def _loop(self) -> None:
        try:
            with writing(self._out, self._needed):
                while True:
                    with self._wake:
                        self._wake.wait_for(lambda: self._lines or self._closed)
                        lines, self._lines = self._lines, []
                    if lines:
                        os.fsync(self._images)
                        self._file.write(b"".join(lines))
                        self._file.flush()
                    with self._wake:
                        if self._closed and not self._lines:
                            return
                        self._wake.wait_for(lambda: self._closed, timeout=_SYNC_SECONDS)
        except BaseException as exc:  # noqa: BLE001  (handed to the main thread by add() and close())
            self._error = exc

    def close(self) -> None:
        """Write what is pending and stop; raises what the thread met, if anything."""
        if self._thread.is_alive():
            with self._wake:
                self._closed = True
                self._wake.notify()
            self._thread.join()
        if not self._file.closed:
            os.close(self._images)
            try:
                self._file.close()
            except OSError as exc:  # the last flush, on a full disk
                self._error = self._error or write_error(exc, self._out, self._needed)
        if self._error is not None:
            raise self._error


def _raise_failure(paths: np.ndarray, row: int, error: str) -> None:
    """Raise the error recorded for ``row`` ("TypeName: message", the message naming the file).

    Its kind as recorded when it is one of chexpert's (an ImageDecodeError, an ImageReadError, a
    missing image's ReleaseNotFoundError); any other OSError of reading is an ImageReadError.
    """
    kind, _, message = error.partition(": ")
    message += f" ({option('on_error', 'skip')} or {option('on_error', 'blank')} goes on without it; finished rows are kept)"
    if kind in (ReleaseNotFoundError.__name__, FileNotFoundError.__name__):
        raise ReleaseNotFoundError(message)
    known = getattr(errors, kind, None)
    cls = known if isinstance(known, type) and issubclass(known, ImageDecodeError | ReadError) else ImageReadError
    exc = cls(message)
    exc.file = str(paths[row])
    raise exc


# -- finishing -----------------------------------------------------------------------------------


def _finish(out: Path, plan: dict[str, Any], index: Index, failures: dict[int, str], digests: dict[int, int], on_error: str) -> None:
    ident, size = plan["store_id"], plan["shape"][1]
    work = out / work_name(ident)
    n = len(index)
    block = plan["checksums"]["rows"]
    bad = np.array(sorted(failures), dtype=np.int64)
    manifest = dict(plan)
    manifest["params"] = dict(plan["params"], on_error=on_error)
    records = [{"row": int(r), "path": str(index.path[r]), "error": failures[int(r)]} for r in bad]
    manifest["skipped"] = records if on_error == "skip" else []
    manifest["blanked"] = records if on_error == "blank" else []
    if on_error == "skip" and len(bad):
        if len(bad) == n:
            raise StoreError(f"none of the {n} images could be read, so there is nothing to store; the first: {records[0]['error']}")
        keep = np.setdiff1d(np.arange(n), bad)
        _compact(work, out / compact_name(ident), keep)
        index = index.take(keep)
        manifest["shape"] = [len(keep), size, size]
        blocks = block_checksums(file_digests(work, len(keep), size), block)
    else:
        try:
            blocks = block_checksums([digests[row] for row in range(n)], block)
        except KeyError as missing:  # pragma: no cover - every range was journaled before finishing
            raise StoreError(f"{out}: the journal has no digest of row {missing}; prepare again with {option('overwrite')}") from None
    manifest["checksums"] = dict(plan["checksums"], blocks=blocks)
    with open(work, "rb") as f:
        os.fsync(f.fileno())
    index_bytes = index_npz_bytes(index)
    write_atomic(out / INDEX, index_bytes, ident)
    manifest["files"] = {
        IMAGES: {"bytes": work.stat().st_size},
        INDEX: {"bytes": len(index_bytes), "sha256": hashlib.sha256(index_bytes).hexdigest()},
    }
    os.replace(work, out / IMAGES)
    fsync_folder(out)
    write_atomic(out / MANIFEST, json_bytes(manifest), ident)
    remove(out, (journal_name(ident), PLAN))


def _compact(work: Path, target_path: Path, keep: np.ndarray) -> None:
    """Drop skipped rows: copy the kept ones into a new file that replaces the images file."""
    with open_regular(work) as f:
        header = read_npy_header(f)
    if header is None:  # pragma: no cover - checked by _recover
        raise StoreError(f"{work}: not the images file prepare made")
    shape, _ = header
    if shape[0] == len(keep):
        return  # compacted by an earlier run that stopped before the manifest
    source = np.load(work, mmap_mode="r")
    fresh(target_path).close()  # never through a link left at the name
    target = np.lib.format.open_memmap(target_path, mode="w+", dtype=np.uint8, shape=(len(keep), *shape[1:]))
    step = max(1, _CHUNK_BYTES // (shape[1] * shape[2]))
    for start in range(0, len(keep), step):
        target[start : start + step] = source[keep[start : start + step]]
    target.flush()
    del target, source
    with open(target_path, "rb") as f:
        os.fsync(f.fileno())
    os.replace(target_path, work)
