"""Prepared store: every selected image decoded once, resized, and kept as uint8 pixels on disk.

A store is a folder that numpy alone can read (format version 1)::

    images.npy     (N, size, size) uint8, C order: np.load(STORE / "images.npy", mmap_mode="r")
    index.npz      the Index columns with plain dtypes (``path`` as UTF-8 fixed-width bytes);
                   row i describes images[i]
    manifest.json  format and version, parameters, source fingerprint, producing code, and every
                   row that could not be decoded (skipped or blanked); written last, by rename

A folder without ``manifest.json`` is not a store. While :func:`prepare` runs it also holds
``.plan.json`` (the manifest to be, so that a re-run knows whether it may resume) and ``.journal``
(one JSON line per finished range of rows). Pixels go straight into a preallocated
``images.npy``; a range is journaled only after its pixels are written and synced, so a run
killed at any moment leaves either nothing of value or a state that the next run with the same
arguments resumes, finishing only the missing ranges. Every row's bytes depend only on its
image and the parameters, so the resumed result is byte-identical to an uninterrupted run.

>>> store = prepare("~/data/CheXpert-v1.0-small", "~/data/chexpert-320", size=320, workers=8)  # doctest: +SKIP
>>> store.images.shape, store.images.dtype  # doctest: +SKIP
((223414, 320, 320), dtype('uint8'))
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from chexpert import __version__, schema
from chexpert.errors import ImageDecodeError, InvalidArgumentError, ReleaseNotFoundError, StaleStoreError, StoreError
from chexpert.imaging import RESIZE_MODES, decode_resized
from chexpert.index import _ROW_FIELDS, Index
from chexpert.parallel import quiet_worker
from chexpert.release import Release, open_release

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ON_ERROR",
    "Store",
    "StaleStoreWarning",
    "prepare",
    "open_store",
    "source_fingerprint",
]

FORMAT: Final = "chexpert-store"
FORMAT_VERSION: Final = 1
#: What :func:`prepare` does with an image it cannot read or decode: raise (default), leave the
#: row out of the store, or keep the row with black pixels. Skipped and blanked rows are listed
#: in the manifest either way.
ON_ERROR: Final[tuple[str, ...]] = ("raise", "skip", "blank")

IMAGES, INDEX, MANIFEST = "images.npy", "index.npz", "manifest.json"
_PLAN, _JOURNAL = ".plan.json", ".journal"
_TMP_SUFFIX = ".tmp"
# Every name prepare() may leave in a store folder (besides *.tmp), in the order to remove them:
# the manifest first, so that from then on no reader takes the folder for a store.
_WORK_FILES: Final = (MANIFEST, _PLAN, _JOURNAL, INDEX, IMAGES, IMAGES + ".compact")
# Rows per unit of work, at most: enough that bookkeeping is negligible, few enough that a kill
# loses little and progress moves smoothly. Chunks are also capped in bytes and shrunk so that
# every worker gets several (see _chunk_rows).
_CHUNK_ROWS = 256
_CHUNK_BYTES = 32 * 2**20
# A journal append (and the data sync before it) happens at most this often.
_SYNC_SECONDS = 1.0
_STR = np.dtypes.StringDType()


class StaleStoreWarning(UserWarning):
    """The store was written by other producing code (chexpert version or decoders) than this one."""


@dataclass(frozen=True, eq=False)
class Store:
    """A prepared store opened read-only: pixels memory-mapped, index in memory.

    ``images[i]`` is the image of ``index`` row i, ``size`` x ``size`` uint8 grayscale.

    >>> store = open_store("~/data/chexpert-320")  # doctest: +SKIP
    >>> store.images[store.index.frontal][:64].mean()  # doctest: +SKIP
    """

    path: Path
    images: np.ndarray
    index: Index
    manifest: dict[str, Any] = field(repr=False)
    size: int
    resize: str

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} images at {self.size}x{self.size}, resize={self.resize!r})"

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Images left out because they could not be read (``on_error="skip"``): path and error."""
        return list(self.manifest.get("skipped", []))

    @property
    def blanked(self) -> list[dict[str, Any]]:
        """Rows kept with black pixels because their image could not be read (``on_error="blank"``)."""
        return list(self.manifest.get("blanked", []))

    def with_release(self, release: Release | None) -> Store:
        """The same store with its index bound to ``release`` (to read the original images)."""
        return Store(self.path, self.images, self.index.with_release(release), self.manifest, self.size, self.resize)


# -- public API ------------------------------------------------------------------------------


def prepare(
    source: Release | str | os.PathLike[str],
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

    ``source`` is a :class:`~chexpert.release.Release` or anything ``chexpert.open`` accepts.
    The rows are those of ``index`` (a selection, in its order) or of ``splits`` (default: every
    split with a CSV). ``resize`` is ``"pad"``, ``"crop"`` or ``"squash"`` (see
    :func:`chexpert.imaging.resize`). ``workers`` processes decode in parallel (``mp_context``:
    "fork", "spawn" or "forkserver"; default: the platform's). ``progress(done, total)`` is
    called as rows finish. ``on_error`` is one of :data:`ON_ERROR`.

    If ``out`` holds a finished store of the same source and parameters it is returned as is;
    an interrupted run of the same is resumed; a store or interrupted run of anything else
    raises :class:`~chexpert.errors.StaleStoreError` unless ``overwrite=True``. Images that
    failed before an interruption stay failed when the run resumes. The source is only read.

    >>> store = prepare(release, "store-224", size=224, splits="valid")  # doctest: +SKIP
    >>> len(store), store.images.shape[1:]  # doctest: +SKIP
    (234, (224, 224))
    """
    if resize not in RESIZE_MODES:
        raise InvalidArgumentError(f"resize must be one of {', '.join(RESIZE_MODES)}, not {resize!r}")
    if on_error not in ON_ERROR:
        raise InvalidArgumentError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not 8 <= size <= 4096:
        raise InvalidArgumentError(f"size must be an integer from 8 to 4096, not {size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise InvalidArgumentError(f"workers must be a positive integer, not {workers!r}")
    if mp_context not in (None, *multiprocessing.get_all_start_methods()):
        raise InvalidArgumentError(f"mp_context must be one of {', '.join(multiprocessing.get_all_start_methods())} or None, not {mp_context!r}")
    release = source if isinstance(source, Release) else open_release(source)
    index = _select(release, splits, index)
    size = int(size)
    out = Path(out).expanduser().absolute()
    plan = _plan(release, index, size, resize)

    n = len(index)
    with _locked(out) as lock:
        state = _existing_state(out, plan, on_error, overwrite)
        if state == "done":
            if progress is not None:
                progress(n, n)
            return open_store(out)
        if state == "resume" and on_error != "skip" and np.load(out / IMAGES, mmap_mode="r").shape[0] != n:
            # An earlier run with on_error="skip" had already dropped rows; the others need them back.
            _remove(out, _WORK_FILES)
            state = "fresh"
        if state == "fresh":
            _start(out, plan, n, size)
        done, _ = _read_journal(out / _JOURNAL)
        todo = _missing_ranges(done, n, _chunk_rows(n, size, workers))
        job = _Job(release, index.path, str(out / IMAGES), size, resize, on_error, lock=lock, parent=os.getpid())
        _run(job, out, todo, workers, mp_context, progress, n - sum(b - a for a, b in todo))
        _, failures = _read_journal(out / _JOURNAL)
        if failures and on_error == "raise":
            # Recorded by an earlier run with on_error="skip" or "blank".
            _raise_failure(index, *min(failures.items()))
        _finish(out, plan, index, failures, on_error)
    return open_store(out)


def open_store(
    path: str | os.PathLike[str],
    *,
    source: Release | str | os.PathLike[str] | None = None,
    splits: str | Sequence[str] | None = None,
    index: Index | None = None,
    size: int | None = None,
    resize: str | None = None,
) -> Store:
    """Open the store at ``path`` read-only (pixels memory-mapped).

    With ``source`` (a Release or a path), check that the store was made from it: same release
    kind and CSVs and, when ``splits`` or ``index`` is given, the same rows. ``size`` and
    ``resize`` check the parameters. A mismatch raises :class:`~chexpert.errors.StaleStoreError`
    saying what changed. A store made by other producing code warns (:class:`StaleStoreWarning`).

    >>> store = open_store("chexpert-320", source="~/data/CheXpert-v1.0-small", size=320)  # doctest: +SKIP
    """
    path = Path(path).expanduser().absolute()
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        if (path / _PLAN).exists():
            raise StoreError(
                f"{path}: preparation was interrupted and the store is incomplete; run prepare again with the same arguments to resume"
            )
        raise StoreError(f"{path} is not a chexpert store (no {MANIFEST}); make one with `chexpert prepare`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this chexpert {__version__} reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    params = manifest["params"]
    changes = []
    if size is not None and size != params["size"]:
        changes.append(f"size is {params['size']}, not {size}")
    if resize is not None and resize != params["resize"]:
        changes.append(f"resize is {params['resize']!r}, not {resize!r}")
    if source is not None:
        release = source if isinstance(source, Release) else open_release(source)
        expected = None if splits is None and index is None else _select(release, splits, index)
        changes += _source_changes(manifest["source"], _fingerprint(release, expected, manifest["source"]["csv_sha256"]))
    if changes:
        raise StaleStoreError(
            f"{path} was prepared from other data or parameters: {'; '.join(changes)}. "
            "Run prepare again with overwrite=True (--overwrite)."
        )
    code = _code_identity()
    if manifest["code"] != code:
        warnings.warn(
            f"{path} was written by chexpert {manifest['code'].get('chexpert')} with other producing code "
            f"({_dict_changes(manifest['code'], code)}); its pixels may differ from what this version writes",
            StaleStoreWarning,
            stacklevel=2,
        )
    images = np.load(path / IMAGES, mmap_mode="r")
    if images.shape != tuple(manifest["shape"]) or images.dtype != np.uint8:
        raise StoreError(f"{path / IMAGES} is {images.shape} {images.dtype}; the manifest says {tuple(manifest['shape'])} uint8")
    return Store(path, images, _load_index(path / INDEX, len(images)), manifest, int(params["size"]), str(params["resize"]))


def source_fingerprint(release: Release, index: Index) -> dict[str, Any]:
    """What identifies a store's source: release kind, SHA-256 of each CSV used, and of the rows.

    >>> source_fingerprint(release, release.index("valid"))["csv_sha256"].keys()  # doctest: +SKIP
    dict_keys(['valid'])
    """
    return _fingerprint(release, index, None)


# -- planning and checking -----------------------------------------------------------------------


def _select(release: Release, splits: str | Sequence[str] | None, index: Index | None) -> Index:
    if index is not None and splits is not None:
        raise InvalidArgumentError("give splits or index, not both (select the splits in the index)")
    if index is None:
        if isinstance(splits, str):
            splits = (splits,)
        if splits is not None:
            for split in splits:
                if split not in release.splits:
                    raise InvalidArgumentError(f"split {split!r} is not in this release; valid: {', '.join(release.splits)}")
        index = release.index(splits)
    if len(index) == 0:
        raise InvalidArgumentError("the selection is empty: nothing to prepare")
    return index


def _hash_index(index: Index) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(index.path.tolist()).encode("utf-8"))
    for name in _ROW_FIELDS[1:]:
        column = np.ascontiguousarray(getattr(index, name))
        digest.update(f"|{name}:{column.dtype.str}:{column.shape}|".encode())
        digest.update(column.tobytes())
    return digest.hexdigest()


def _fingerprint(release: Release, index: Index | None, splits_of: dict[str, str] | None) -> dict[str, Any]:
    """The source description; ``index`` None describes only CSVs (those named in ``splits_of``)."""
    if index is not None:
        names = [schema.SPLITS[s] for s in np.unique(index.split)]
    else:
        names = list(splits_of or release.splits)
    csv: dict[str, str] = {}
    for split in names:
        try:
            csv[split] = hashlib.sha256(release.csv_bytes(split)[0]).hexdigest()
        except ReleaseNotFoundError:
            csv[split] = "missing"
    found: dict[str, Any] = {"release": release.kind, "csv_sha256": csv}
    if index is not None:
        found["rows"] = len(index)
        found["rows_sha256"] = _hash_index(index)
    return found


def _source_changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    changes = []
    if stored["release"] != now["release"]:
        changes.append(f"release is {now['release']}, the store was made from {stored['release']}")
    for split, digest in now["csv_sha256"].items():
        before = stored["csv_sha256"].get(split)
        if before is None:
            changes.append(f"the store has no {split} rows")
        elif digest == "missing":
            changes.append(f"the source has no {split} CSV any more")
        elif before != digest:
            changes.append(f"the {split} CSV changed since the store was made")
    if "rows_sha256" in now and now["rows_sha256"] != stored["rows_sha256"]:
        changes.append(
            f"the selected rows differ ({now['rows']} selected, the store holds {stored['rows']}"
            + (", same count but other rows or labels" if now["rows"] == stored["rows"] else "")
            + ")"
        )
    return changes


def _dict_changes(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(set(before) | set(now))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k))


_CODE_IDENTITY: dict[str, Any] = {}


def _code_identity() -> dict[str, Any]:
    """chexpert's version, a hash of the code that turns files into pixels, and the decoders' versions.

    The hash covers chexpert.imaging and the function that writes the pixels, not the rest of
    this module: editing messages or bookkeeping does not make existing stores stale.
    """
    if not _CODE_IDENTITY:
        import inspect

        import PIL
        import simplejpeg

        from chexpert import imaging

        digest = hashlib.sha256(Path(imaging.__file__).read_bytes())
        digest.update(inspect.getsource(_decode_range).encode())
        _CODE_IDENTITY.update(
            {"chexpert": __version__, "sha256": digest.hexdigest(), "simplejpeg": simplejpeg.__version__, "pillow": PIL.__version__}
        )
    return dict(_CODE_IDENTITY)


def _plan(release: Release, index: Index, size: int, resize: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "shape": [len(index), size, size],
        "dtype": "uint8",
        "params": {"size": size, "resize": resize},
        "source": _fingerprint(release, index, None),
        "code": _code_identity(),
    }


def _same_store(manifest: dict[str, Any], plan: dict[str, Any], on_error: str) -> list[str]:
    """Differences between a finished store and what is asked (empty: the same)."""
    changes = []
    for key in ("size", "resize"):
        if manifest["params"][key] != plan["params"][key]:
            changes.append(f"{key} {manifest['params'][key]!r} -> {plan['params'][key]!r}")
    if (manifest.get("skipped") or manifest.get("blanked")) and manifest["params"].get("on_error") != on_error:
        changes.append(f"on_error {manifest['params'].get('on_error')!r} -> {on_error!r}")
    changes += _source_changes(manifest["source"], plan["source"])
    if manifest["code"] != plan["code"]:
        changes.append("producing code " + _dict_changes(manifest["code"], plan["code"]))
    return changes


def _existing_state(out: Path, plan: dict[str, Any], on_error: str, overwrite: bool) -> str:
    """"done" (a matching store exists), "resume" or "fresh"; clears what is ours to replace."""
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder")
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    foreign = sorted(n for n in names if n not in _WORK_FILES and not n.endswith(_TMP_SUFFIX))
    if foreign:
        raise StoreError(f"{out} holds files that are not a chexpert store's ({', '.join(foreign[:5])}); choose an empty or new folder")
    what = None
    if MANIFEST in names:
        manifest = json.loads((out / MANIFEST).read_text())
        changes = _same_store(manifest, plan, on_error)
        if not changes:
            _remove(out, (_PLAN, _JOURNAL))
            return "done"
        what = "a store of other data or parameters"
    elif _PLAN in names:
        interrupted = json.loads((out / _PLAN).read_text())
        if interrupted == plan:
            return "resume"
        what = "an interrupted preparation of other data or parameters"
        changes = _same_store(interrupted, plan, on_error) or ["format or shape"]
    if what is not None and not overwrite:
        raise StaleStoreError(f"{out} holds {what} ({'; '.join(changes)}); pass overwrite=True (--overwrite) to replace it")
    _remove(out, (*_WORK_FILES, *(n for n in names if n.endswith(_TMP_SUFFIX))))
    return "fresh"


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[tuple[int, int]]:
    """Hold an exclusive lock on the store folder (made if needed): one prepare writes at a time.

    Yields the locked descriptor and its inode, so that forked workers can drop their copy.
    """
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
                f"{out} is being written by another prepare (or the worker processes of a killed one are still "
                "ending); run again when it has finished"
            ) from None
        yield fd, os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _remove(out: Path, names: Sequence[str]) -> None:
    for name in names:
        try:
            (out / name).unlink()
        except FileNotFoundError:
            pass


def _start(out: Path, plan: dict[str, Any], n: int, size: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # A sparse file of the final size: rows are filled in any order, untouched bytes read as 0.
    images = np.lib.format.open_memmap(out / IMAGES, mode="w+", dtype=np.uint8, shape=(n, size, size))
    del images
    (out / _JOURNAL).write_bytes(b"")
    # The plan comes last: a folder with a plan always has its images file and journal.
    _write_atomic(out / _PLAN, _json_bytes(plan))


# -- the journal ---------------------------------------------------------------------------------


def _read_journal(path: Path) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """Finished row ranges and the rows that failed (row -> error); drops a torn last line."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # A kill mid-append leaves a partial line; cut it so the next append starts clean.
        with open(path, "r+b") as f:
            f.truncate(end)
    ranges, failures = [], {}
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            record = json.loads(line)
            start, stop = int(record["rows"][0]), int(record["rows"][1])
        except (ValueError, KeyError, TypeError, IndexError):
            raise StoreError(f"{path}, line {number}: unreadable journal record; prepare again with overwrite=True") from None
        ranges.append((start, stop))
        failures.update({int(row): str(error) for row, error in record.get("failed", [])})
    return ranges, failures


def _chunk_rows(n: int, size: int, workers: int) -> int:
    """Rows per chunk: at most _CHUNK_ROWS and _CHUNK_BYTES, and at least 4 chunks per worker."""
    return max(1, min(_CHUNK_ROWS, _CHUNK_BYTES // (size * size), -(-n // (4 * workers))))


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
    images: str
    size: int
    resize: str
    on_error: str
    lock: tuple[int, int] = (-1, -1)  # the parent's lock on the folder: descriptor and inode
    parent: int = 0  # the parent's process id
    offset: int = 0
    fd: int = -1


_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _JOB
    if os.getpid() != job.parent:
        # A forked worker shares the parent's locked descriptor; dropping it lets the lock end
        # with the parent, so that a killed run can be resumed at once.
        try:
            if os.fstat(job.lock[0]).st_ino == job.lock[1]:
                os.close(job.lock[0])
        except OSError:
            pass
    job.offset = _data_offset(job.images)
    job.fd = os.open(job.images, os.O_WRONLY | getattr(os, "O_BINARY", 0))
    _JOB = job


def _data_offset(path: str | Path) -> int:
    """Where the pixels start in an .npy file (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        read_header(f)
        return f.tell()


def _decode_range(rows: tuple[int, int]) -> tuple[int, int, list[tuple[int, str]]]:
    """Decode rows [start, stop) and write their pixels with one pwrite; return the failures."""
    job = _JOB
    if job is None:  # pragma: no cover - only reachable by misuse
        raise RuntimeError("worker not initialised")
    start, stop = rows
    pixels = np.zeros((stop - start, job.size, job.size), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    for j, row in enumerate(range(start, stop)):
        path = str(job.paths[row])
        try:
            pixels[j] = decode_resized(job.release.read_bytes(path), job.size, job.resize, file=path)
        except (ImageDecodeError, FileNotFoundError) as exc:
            failed.append((row, f"{type(exc).__name__}: {exc}"))
            if job.on_error == "raise":
                # Stop at once; rows already journaled are kept for the resumed run.
                return start, start, failed
    _write_at(job.fd, memoryview(pixels).cast("B"),  # type: ignore[arg-type]  # ndarray is a Buffer
              job.offset + start * job.size * job.size)
    return start, stop, failed


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
    out: Path,
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
    pool = None
    if workers == 1 or len(todo) == 1:
        _init_worker(job)
        results: Iterator[tuple[int, int, list[tuple[int, str]]]] = map(_decode_range, todo)
    else:
        context = multiprocessing.get_context(mp_context)
        pool = context.Pool(min(workers, len(todo)), initializer=quiet_worker, initargs=(_init_worker, job))
        results = pool.imap_unordered(_decode_range, todo)
    # After the pool: forking a process that runs the journal's thread is best avoided.
    journal = _Journal(out / _JOURNAL, out / IMAGES)
    done = already
    try:
        for start, stop, failed in results:
            if stop > start:
                journal.add(_json_bytes({"rows": [start, stop], "failed": failed}, line=True))
                done += stop - start
                if progress is not None:
                    progress(done, total)
            if failed and job.on_error == "raise":
                journal.close()
                _raise_failure(job.paths, *failed[0])
    finally:
        journal.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        elif _JOB is not None and _JOB.fd >= 0:
            os.close(_JOB.fd)
            _JOB.fd = -1


class _Journal:
    """Appends finished ranges to the journal from a thread, so that decoding goes on meanwhile.

    Each append first syncs the pixels to disk (so the journal never claims rows that a power
    cut could lose), at most once per ``_SYNC_SECONDS``.
    """

    def __init__(self, path: Path, images: Path) -> None:
        self._images = os.open(images, os.O_RDONLY)
        self._file = open(path, "ab")
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
            self._file.close()
            os.close(self._images)
        if self._error is not None:
            raise self._error


def _raise_failure(paths: np.ndarray | Index, row: int, error: str) -> None:
    """Raise the error recorded for ``row`` ("TypeName: message", the message naming the file)."""
    kind, _, message = error.partition(": ")
    message += " (prepare with on_error='skip' or 'blank' to go on without it; finished rows are kept)"
    if kind == ImageDecodeError.__name__:
        exc = ImageDecodeError(message)
        exc.file = str((paths.path if isinstance(paths, Index) else paths)[row])
        raise exc
    raise ReleaseNotFoundError(message)


# -- finishing -----------------------------------------------------------------------------------


def _finish(out: Path, plan: dict[str, Any], index: Index, failures: dict[int, str], on_error: str) -> None:
    n = len(index)
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
        _compact(out, keep)
        index = index.take(keep)
        manifest["shape"] = [len(keep), *plan["shape"][1:]]
    with open(out / IMAGES, "rb") as f:
        os.fsync(f.fileno())
    _write_atomic(out / INDEX, _index_bytes(index))
    _write_atomic(out / MANIFEST, _json_bytes(manifest))
    _remove(out, (_PLAN, _JOURNAL))


def _compact(out: Path, keep: np.ndarray) -> None:
    """Drop skipped rows: copy the kept ones into a new file that replaces images.npy."""
    source = np.load(out / IMAGES, mmap_mode="r")
    if len(source) == len(keep):
        return  # compacted by an earlier run that stopped before the manifest
    target_path = out / (IMAGES + ".compact")
    target = np.lib.format.open_memmap(target_path, mode="w+", dtype=np.uint8, shape=(len(keep), *source.shape[1:]))
    step = _chunk_rows(len(keep), source.shape[1], 1)
    for start in range(0, len(keep), step):
        target[start : start + step] = source[keep[start : start + step]]
    target.flush()
    del target, source
    with open(target_path, "rb") as f:
        os.fsync(f.fileno())
    os.replace(target_path, out / IMAGES)


def _index_bytes(index: Index) -> bytes:
    """index.npz with fixed member timestamps, so that equal stores are equal byte for byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in _ROW_FIELDS:
            column = getattr(index, name)
            if name == "path":
                column = np.strings.encode(column, "utf-8")
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(column), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


def _load_index(path: Path, n: int) -> Index:
    with np.load(path, allow_pickle=False) as data:
        columns = {name: data[name] for name in _ROW_FIELDS}
    columns["path"] = np.strings.decode(columns["path"], "utf-8").astype(_STR)
    index = Index(**columns)
    if len(index) != n:
        raise StoreError(f"{path} has {len(index)} rows for {n} images")
    return index


def _json_bytes(value: Any, *, line: bool = False) -> bytes:
    if line:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return json.dumps(value, indent=1).encode() + b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
