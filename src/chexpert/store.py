"""Prepared store: every selected image decoded once, resized, and kept as uint8 pixels on disk.

A store is a folder that numpy alone can read (format version 2)::

    images.npy     (N, size, size) uint8, C order: np.load(STORE / "images.npy", mmap_mode="r")
    index.npz      the Index columns with plain dtypes (``path`` as UTF-8 fixed-width bytes);
                   row i describes images[i]
    manifest.json  format and version, the store's id, parameters, source fingerprint, producing
                   code, every row that could not be read (skipped or blanked), the size and
                   SHA-256 of index.npz, and a checksum of every block of rows of images.npy
                   (:data:`CHECKSUM`); written last, by rename

A folder without ``manifest.json`` is not a store. While :func:`prepare` runs it also holds
``.plan.json`` (the manifest to be, so that a re-run knows whether it may resume) and files whose
names carry the plan's id: ``.images.ID.npy`` (the pixels, renamed ``images.npy`` when finished),
``.journal.ID`` (one JSON line per finished range of rows, with each row's digest) and
``*.ID.tmp``. Pixels go straight into the preallocated images file; a range is journaled only
after its pixels are written and synced, so a run killed at any moment (SIGKILL, a full disk,
Ctrl-C) leaves either nothing of value or a state that the next run with the same arguments
resumes, finishing only the missing ranges. Every row's bytes depend only on its image and the
parameters, and checksums cover fixed blocks of rows (a number that depends on the size alone), so
a resumed store is byte-identical to an uninterrupted one, checksums included.

``prepare`` removes or replaces only files it can prove it wrote: the plan and manifest (JSON of
this format), files named with their id, and ``images.npy`` / ``index.npz`` carrying the headers
it writes for that plan or manifest. Anything else in the folder is refused, never deleted.

>>> store = prepare("~/data/CheXpert-v1.0-small", "~/data/chexpert-320", size=320, workers=8)  # doctest: +SKIP
>>> store.images.shape, store.images.dtype  # doctest: +SKIP
((223414, 320, 320), dtype('uint8'))
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import multiprocessing
import os
import stat
import struct
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, cast

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from chexpert import __version__, errors, schema
from chexpert.discover import open_dataset as open_release
from chexpert.errors import (
    ChexpertError,
    ImageDecodeError,
    ImageReadError,
    InvalidArgumentError,
    Problem,
    ReadError,
    ReleaseNotFoundError,
    StaleStoreError,
    StoreError,
    option,
)
from chexpert.fileio import create_new
from chexpert.imaging import RESIZE_MODES, decode_resized, one_thread_per_worker
from chexpert.index import _ROW_FIELDS, Index
from chexpert.parallel import run_chunks
from chexpert.release import Release
from chexpert.safeio import MAX_JSON_BYTES, check_regular, open_regular, read_bytes
from chexpert.validation import check_choice, check_int

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ON_ERROR",
    "Store",
    "StoreIdentity",
    "StaleStoreWarning",
    "prepare",
    "open_store",
    "verify_store",
    "reopen_images",
    "source_fingerprint",
]

FORMAT: Final = "chexpert-store"
#: 2: the store's id, pixel checksums and index.npz's SHA-256 in the manifest; work files named by id.
FORMAT_VERSION: Final = 2
#: What :func:`prepare` does with an image it cannot read or decode: raise (default), leave the
#: row out of the store, or keep the row with black pixels. Skipped and blanked rows are listed
#: in the manifest either way.
ON_ERROR: Final[tuple[str, ...]] = ("raise", "skip", "blank")
#: The checksum of each block of rows of images.npy: xxHash's XXH3 (64 bits; about 25 GB/s a core,
#: ten times zlib's CRC-32, so that prepare pays almost nothing for it) of the XXH3 digests of its
#: rows, each as 8 bytes little-endian. Rows are digested where they are decoded, so that work can
#: be split anywhere and a resumed run still gives the same checksums.
CHECKSUM: Final = "xxh3_64 of rows' xxh3_64"
_JOURNAL_DIGESTS: Final = "xxh3_64"  # the journal's key for the digest of each row

IMAGES, INDEX, MANIFEST = "images.npy", "index.npz", "manifest.json"
_PLAN = ".plan.json"
_V1_JOURNAL = ".journal"  # format 1 named its journal without an id
# Rows per unit of work, at most: enough that bookkeeping is negligible, few enough that a kill
# loses little, progress moves smoothly and the last chunks end together. Chunks are also capped
# in bytes and shrunk so that every worker gets several (see _chunk_rows).
_CHUNK_ROWS = 64
_CHUNK_BYTES = 8 * 2**20
_CHUNKS_PER_WORKER = 8
# Decoded rows are checksummed and written this many bytes at a time, while still in the CPU's cache.
_WRITE_BYTES = 2 * 2**20
# A checksum block is at most this many bytes and rows: fine enough to name the damaged rows,
# coarse enough that the manifest stays small (14,000 checksums for the small release at 320).
_BLOCK_BYTES = 2 * 2**20
_BLOCK_ROWS = 16
# A journal append (and the data sync before it) happens at most this often.
_SYNC_SECONDS = 1.0
# verify reads images.npy this many bytes at a time.
_READ_BYTES = 64 * 2**20
# The largest index.npz and journal read whole (a row of either takes well under 1 KiB).
_MAX_INDEX_BYTES: Final = 1 << 30
_MAX_JOURNAL_BYTES: Final = 1 << 30
_STR = np.dtypes.StringDType()
# The start of every index.npz that prepare writes: a stored zip member "path.npy" dated
# 1980-01-01 00:00 (np.savez dates members with the current time).
_INDEX_MAGIC: Final = b"PK\x03\x04"
_INDEX_MEMBER: Final = struct.pack("<HHH", 0, 0, 0x21)  # method stored, time 00:00, date 1980-01-01


class StaleStoreWarning(UserWarning):
    """The store was written by other producing code (chexpert version or decoders) than this one."""


class StoreIdentity(NamedTuple):
    """Which store a loader was made from: its manifest's SHA-256 and its images.npy as a file.

    Captured by :func:`open_store`; a worker process that maps the pixels again checks it
    (:func:`reopen_images`), so that a store prepared again meanwhile is an error, not new
    pixels under old labels.
    """

    manifest_sha256: str
    device: int
    inode: int
    bytes: int
    mtime_ns: int


@dataclass(frozen=True, eq=False)
class Store:
    """A prepared store opened read-only: pixels memory-mapped, index in memory.

    ``images[i]`` is the image of ``index`` row i, ``size`` x ``size`` uint8 grayscale.
    Pickling (for spawned workers) carries the path and the store's identity, not the pixels:
    the other side maps the same file again, and raises :class:`~chexpert.errors.StoreError` if
    it is no longer the same store.

    >>> store = open_store("~/data/chexpert-320")  # doctest: +SKIP
    >>> store.images[store.index.frontal][:64].mean()  # doctest: +SKIP
    """

    path: Path
    images: np.ndarray
    index: Index
    manifest: dict[str, Any] = field(repr=False)
    size: int
    resize: str
    identity: StoreIdentity | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} images at {self.size}x{self.size}, resize={self.resize!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A memmap would pickle as a copy of every pixel.
        return _reopened_store, (self.path, self.index, self.manifest, self.size, self.resize, self.identity)

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
        return Store(self.path, self.images, self.index.with_release(release), self.manifest, self.size, self.resize, self.identity)


def _reopened_store(path: Path, index: Index, manifest: dict[str, Any], size: int, resize: str, identity: StoreIdentity | None) -> Store:
    return Store(path, reopen_images(path, identity), index, manifest, size, resize, identity)


# -- public API ------------------------------------------------------------------------------


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

    >>> parts = chexpert.split_patients(chexpert.select(release.index("train"), views="Frontal"))  # doctest: +SKIP
    >>> store = prepare(parts["train"], "store-224", size=224, workers=8)  # doctest: +SKIP
    >>> len(store) == len(parts["train"]), store.images.shape[1:]  # doctest: +SKIP
    (True, (224, 224))
    """
    check_choice("resize", resize, RESIZE_MODES)
    check_choice("on_error", on_error, ON_ERROR)
    size = check_int("size", size, low=8, high=4096)
    workers = check_int("workers", workers, low=1)
    check_choice("mp_context", mp_context, (None, *multiprocessing.get_all_start_methods()))
    release, index = _rows_of(source, splits, index)
    out = Path(out).expanduser().absolute()
    plan = _plan(release, index, size, resize)
    n = len(index)
    ident = plan["store_id"]
    needed = n * size * size
    with _locked(out, needed) as lock:
        state = _prepare_folder(out, plan, on_error, overwrite)
        if state == "done":
            if progress is not None:
                progress(n, n)
            return open_store(out)
        journal = out / _journal_name(ident)
        with _writing(out, needed):
            if state == "fresh":
                _start(out, plan)
            _recover(out, plan, on_error)
            done, _, _ = _read_journal(journal, n)  # cuts a torn last line
        chunk = _chunk_rows(n, size, workers)
        todo = _missing_ranges(done, n, chunk)
        job = _Job(release, index.path, str(out / _work_name(ident)), str(out), needed, size, resize, on_error,
                   lock=lock, parent=os.getpid())  # fmt: skip
        _run(job, journal, todo, workers, mp_context, progress, n - sum(b - a for a, b in todo))
        _, failures, digests = _read_journal(journal, n)
        if failures and on_error == "raise":
            # Recorded by an earlier run with on_error="skip" or "blank".
            _raise_failure(index.path, *min(failures.items()))
        with _writing(out, needed):
            _finish(out, plan, index, failures, digests, on_error)
    return open_store(out)


def open_store(
    path: str | os.PathLike[str],
    *,
    source: Release | str | os.PathLike[str] | None = None,
    splits: str | Sequence[str] | None = None,
    index: Index | None = None,
    size: int | None = None,
    resize: str | None = None,
    check: bool = False,
) -> Store:
    """Open the store at ``path`` read-only (pixels memory-mapped).

    Every open checks what is cheap to check: the files are there, images.npy has the shape and
    length the manifest says, index.npz its SHA-256. ``check=True`` also reads every pixel and
    compares each block of rows with its checksum (what ``chexpert verify-store`` does). A
    damaged store raises :class:`~chexpert.errors.StoreError` naming the file (and rows).

    With ``source`` (a Release or a path), check that the store was made from it: same release
    kind and CSVs and, when ``splits`` or ``index`` is given, the same rows. ``size`` and
    ``resize`` check the parameters. A mismatch raises :class:`~chexpert.errors.StaleStoreError`
    saying what changed. A store made by other producing code warns (:class:`StaleStoreWarning`).

    >>> store = open_store("chexpert-320", source="~/data/CheXpert-v1.0-small", size=320)  # doctest: +SKIP
    """
    path = Path(path).expanduser().absolute()
    manifest, manifest_sha = _read_manifest(path)
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
        raise StaleStoreError(f"{path} was prepared from other data or parameters: {'; '.join(changes)}. Run prepare again with {option('overwrite')}.")
    code = _code_identity(manifest["source"].get("images"))
    if manifest["code"] != code:
        warnings.warn(
            f"{path} was written by chexpert {manifest['code'].get('chexpert')} with other producing code "
            f"({_dict_changes(manifest['code'], code)}); its pixels may differ from what this version writes",
            StaleStoreWarning,
            stacklevel=2,
        )
    problems = _check_files(path, manifest)
    if not problems and check:
        problems = _check_pixels(path, manifest, None)
    if problems:
        raise StoreError(_damage_message(path, problems))
    images, identity = _map_images(path, manifest["shape"], manifest_sha)
    index_path = path / INDEX
    try:
        loaded = _load_index(index_path, len(images))
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StoreError(_damage_message(path, [Problem("damaged", str(index_path), None, f"unreadable ({exc})")])) from None
    return Store(path, images, loaded, manifest, int(params["size"]), str(params["resize"]), identity)


def verify_store(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """Every problem with the store at ``path``: missing or damaged files, pixels that differ
    from their checksums (naming the rows), an index that does not load. Empty when all is well.

    Reads every pixel once; ``progress(done, total)`` counts rows. The source is not needed.

    >>> [str(p) for p in verify_store("chexpert-320")]  # doctest: +SKIP
    ['/data/chexpert-320/images.npy: rows 4096-4111 (checksum block 256) differ from their checksum (damaged on disk?)']
    """
    path = Path(path).expanduser().absolute()
    try:
        manifest, _ = _read_manifest(path)
    except StoreError as exc:
        return [Problem("manifest", str(path / MANIFEST), None, str(exc))]
    problems = _check_files(path, manifest)
    if not any(p.file == str(path / IMAGES) and p.kind in ("missing", "header") for p in problems):
        problems += _check_pixels(path, manifest, progress)
    if not any(p.file == str(path / INDEX) for p in problems):
        try:
            _load_index(path / INDEX, int(manifest["shape"][0]))
        except (StoreError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            problems.append(Problem("damaged", str(path / INDEX), None, f"unreadable ({exc})"))
    return problems


def reopen_images(path: str | os.PathLike[str], identity: StoreIdentity | None) -> np.ndarray:
    """Map the pixels of the store at ``path`` again (in a worker process), read-only.

    With ``identity`` (``store.identity``), the store must be the one it describes: the same
    manifest and the same images.npy file, unchanged. Otherwise (prepared again, replaced,
    written to) this raises :class:`~chexpert.errors.StoreError` naming the store, since its
    pixels would no longer match the labels the caller holds.

    >>> images = reopen_images(store.path, store.identity)  # doctest: +SKIP
    """
    path = Path(path)
    if identity is None:
        check_regular(path / IMAGES)  # np.load would wait on a FIFO
        return np.load(path / IMAGES, mmap_mode="r")
    changed = StoreError(
        f"{path} changed since it was opened (prepared again, replaced or written to): its pixels no longer "
        "belong to the labels this loader holds; open the store again and make a new loader"
    )
    try:
        manifest_sha = hashlib.sha256(read_bytes(path / MANIFEST, limit=MAX_JSON_BYTES)).hexdigest()
        with open_regular(path / IMAGES) as f:
            found = os.fstat(f.fileno())
            if manifest_sha != identity.manifest_sha256 or (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns) != identity[1:]:
                raise changed
            header = _read_npy_header(f)
            if header is None:
                raise changed
            shape, offset = header
            return np.memmap(f, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    except FileNotFoundError:
        raise changed from None


def source_fingerprint(release: Release, index: Index) -> dict[str, Any]:
    """What identifies a store's source: release kind, SHA-256 of each CSV used, and of the rows.

    >>> source_fingerprint(release, release.index("valid"))["csv_sha256"].keys()  # doctest: +SKIP
    dict_keys(['valid'])
    """
    return _fingerprint(release, index, None)


# -- planning and checking -----------------------------------------------------------------------


def _rows_of(source: Release | Index | str | os.PathLike[str], splits: str | Sequence[str] | None, index: Index | None) -> tuple[Release, Index]:
    if isinstance(source, Index):
        if index is not None or splits is not None:
            raise InvalidArgumentError("the source is an Index, which gives the rows already: pass no splits or index")
        if source.release is None:
            raise InvalidArgumentError(
                "the Index is not bound to a release, so its images cannot be read; make it with release.index() "
                "(select and split_patients keep the binding) or index.with_release(release)"
            )
        return source.release, _select(source.release, None, source)
    release = source if isinstance(source, Release) else open_release(source)
    return release, _select(release, splits, index)


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
    elif not isinstance(index, Index):
        raise InvalidArgumentError(f"index must be an Index (release.index(), select(), split_patients()), not {type(index).__name__}")
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
    images = getattr(release, "images", None)  # CheXpert Plus: PNG, DICOM or the original JPEGs
    if images is not None:
        found["images"] = images
        found["labels"] = getattr(release, "labels", None)  # and its label source (recorded; rows_sha256 covers the codes)
    if index is not None:
        found["rows"] = len(index)
        found["rows_sha256"] = _hash_index(index)
    return found


def _source_changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    changes = []
    if stored["release"] != now["release"]:
        changes.append(f"release is {now['release']}, the store was made from {stored['release']}")
    if stored.get("images") != now.get("images"):
        changes.append(f"the images are read from {now.get('images')} files, the store was made from {stored.get('images')} files")
    for split, digest in now["csv_sha256"].items():
        before = stored["csv_sha256"].get(split)
        if before is None:
            changes.append(f"the store has no {split} rows")
        elif digest == "missing":
            changes.append(f"the source has no {split} CSV any more")
        elif before != digest:
            changes.append(f"the {split} CSV changed since the store was made")
    if "rows_sha256" in now and now["rows_sha256"] != stored.get("rows_sha256"):
        changes.append(
            f"the selected rows differ ({now['rows']} selected, the store holds {stored.get('rows')}"
            + (", same count but other rows or labels" if now["rows"] == stored.get("rows") else "")
            + ")"
        )
    return changes


def _dict_changes(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(set(before) | set(now))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k))


_CODE_IDENTITY: dict[str, Any] = {}
_DICOM_IDENTITY: dict[str, Any] = {}
#: The distributions that turn DICOM files into pixels (pydicom and the pylibjpeg plugins it
#: decodes compressed transfer syntaxes with), recorded in a store made from DICOMs.
_DICOM_DECODERS: Final[tuple[str, ...]] = ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")


def _code_identity(images: str | None = None) -> dict[str, Any]:
    """chexpert's version, a hash of the code that turns files into pixels, and the decoders' versions.

    The hash covers chexpert.imaging and the function that writes the pixels, not the rest of
    this module: editing messages or bookkeeping does not make existing stores stale. For a store
    made from DICOMs (``images="dicom"``, CheXpert Plus) it also covers chexpert.dicom (the
    display chain: rescale, VOI LUT, MONOCHROME1) and records the DICOM decoders' versions;
    stores of JPEGs and PNGs leave them out, so a pydicom update does not make them stale.
    """
    identity = dict(_common_identity())
    if images == "dicom":
        if not _DICOM_IDENTITY:
            from importlib import metadata

            from chexpert import dicom

            _DICOM_IDENTITY["dicom_sha256"] = hashlib.sha256(Path(dicom.__file__).read_bytes()).hexdigest()
            for name in _DICOM_DECODERS:
                try:
                    _DICOM_IDENTITY[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    _DICOM_IDENTITY[name] = None
        identity.update(_DICOM_IDENTITY)
    return identity


def _common_identity() -> dict[str, Any]:
    if not _CODE_IDENTITY:
        import inspect

        import cv2
        import PIL
        import simplejpeg

        from chexpert import imaging

        digest = hashlib.sha256(Path(imaging.__file__).read_bytes())
        digest.update(inspect.getsource(_decode_range).encode())
        _CODE_IDENTITY.update(
            {
                "chexpert": __version__,
                "sha256": digest.hexdigest(),
                "simplejpeg": simplejpeg.__version__,
                "opencv": cv2.__version__,
                "pillow": PIL.__version__,
            }
        )
    return dict(_CODE_IDENTITY)


def _block_rows(size: int) -> int:
    """Rows per checksum block: a function of ``size`` alone, so that resumed runs block alike."""
    return max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // (size * size)))


def _plan(release: Release, index: Index, size: int, resize: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "store_id": "",
        "shape": [len(index), size, size],
        "dtype": "uint8",
        "params": {"size": size, "resize": resize},
        "source": _fingerprint(release, index, None),
        "code": _code_identity(getattr(release, "images", None)),
        "checksums": {"algorithm": CHECKSUM, "rows": _block_rows(size)},
    }
    # The id names the work files: derived from what is prepared, so equal runs resume each other.
    plan["store_id"] = hashlib.sha256(_json_bytes(plan)).hexdigest()[:16]
    return plan


def _same_store(manifest: dict[str, Any], plan: dict[str, Any], on_error: str) -> list[str]:
    """Differences between a finished store (or an interrupted plan) and what is asked (empty: the same)."""
    if manifest.get("format_version") != plan["format_version"]:
        return [f"format version {manifest.get('format_version')} -> {plan['format_version']}"]
    try:
        return _changes(manifest, plan, on_error)
    except (KeyError, TypeError, AttributeError):
        return ["its manifest is incomplete (damaged or edited?)"]


def _changes(manifest: dict[str, Any], plan: dict[str, Any], on_error: str) -> list[str]:
    changes = []
    for key in ("size", "resize"):
        if manifest["params"][key] != plan["params"][key]:
            changes.append(f"{key} {manifest['params'][key]!r} -> {plan['params'][key]!r}")
    if (manifest.get("skipped") or manifest.get("blanked")) and manifest["params"].get("on_error") != on_error:
        changes.append(f"on_error {manifest['params'].get('on_error')!r} -> {on_error!r}")
    changes += _source_changes(manifest["source"], plan["source"])
    if manifest["code"] != plan["code"]:
        changes.append("producing code " + _dict_changes(manifest["code"], plan["code"]))
    if not changes and manifest.get("store_id") != plan["store_id"]:
        changes.append("the store's id")
    return changes


# -- what is in the folder, and what of it is ours -----------------------------------------------


def _work_name(ident: str) -> str:
    return f".images.{ident}.npy"


def _compact_name(ident: str) -> str:
    return f".images.{ident}.compact"


def _journal_name(ident: str) -> str:
    return f".journal.{ident}"


def _tmp_name(name: str, ident: str) -> str:
    return f"{name}.{ident}.tmp"


_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def _fresh(path: Path) -> IO[bytes]:
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
    found: dict[str, dict[str, Any] | None] = {MANIFEST: None, _PLAN: None}
    for name in (MANIFEST, _PLAN):
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
        if name in (MANIFEST, _PLAN):
            ours.append(name)
        elif not _regular(path):
            foreign.append(name)
        elif any(name in (_work_name(i), _compact_name(i), _journal_name(i)) or name.endswith(f".{i}.tmp") for i in ids):
            ours.append(name)
        elif name in (IMAGES, INDEX) and any(_carries_our_header(path, doc, exact=doc is found[MANIFEST]) for doc in docs):
            ours.append(name)
        elif name == _V1_JOURNAL and any(doc.get("format_version") == 1 for doc in docs) and _is_journal(path):
            ours.append(name)
        elif name.endswith(".tmp") and name.startswith(_PLAN + ".") and _orphan_plan(path, name):
            ours.append(name)
        else:
            foreign.append(name)
    return _Folder(found[MANIFEST], found[_PLAN], ours, foreign)


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
            header = _read_npy_header(f)
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
        lines = read_bytes(path, limit=_MAX_JOURNAL_BYTES).split(b"\n")[:-1]
        return all(isinstance(json.loads(line), dict) and "rows" in json.loads(line) for line in lines)
    except (OSError, ValueError):
        return False


def _orphan_plan(path: Path, name: str) -> bool:
    """A plan that a kill left before its rename: ours if it is a whole plan of the id in its name."""
    doc, _ = _read_ours(path)
    return doc is not None and name == _tmp_name(_PLAN, str(doc.get("store_id")))


def _read_npy_header(f: Any) -> tuple[tuple[int, ...], int] | None:
    """(shape, data offset) of a C-order uint8 .npy file, or None if it is not one."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except (ValueError, OSError, EOFError, SyntaxError):
        return None
    if fortran or dtype != np.uint8:
        return None
    return tuple(int(v) for v in shape), f.tell()


def _npy_header_bytes(shape: Sequence[int]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": tuple(int(v) for v in shape)})
    return buffer.getvalue()


def _prepare_folder(out: Path, plan: dict[str, Any], on_error: str, overwrite: bool) -> str:
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
        changes = _same_store(manifest, plan, on_error)
        if not changes and not overwrite:
            problems = _check_files(out, manifest)
            if problems:
                raise StoreError(_damage_message(out, problems, same_arguments=True))
            _remove(out, [n for n in folder.ours if n not in (MANIFEST, IMAGES, INDEX)])
            return "done"
        what = "a store of other data or parameters"
    elif interrupted is not None:
        if interrupted == plan and not overwrite:
            return "resume"
        what = "an interrupted preparation of other data or parameters"
        changes = _same_store(interrupted, plan, on_error) or ["format or shape"]
    if what is not None and changes and not overwrite:
        raise StaleStoreError(f"{out} holds {what} ({'; '.join(changes)}); pass {option('overwrite')} to replace it")
    _clear(out, folder.ours)
    return "fresh"


def _clear(out: Path, ours: Sequence[str]) -> None:
    """Remove our entries: data first, the documents that prove the rest ours last.

    A run killed halfway leaves a folder whose remaining entries are still provably ours.
    """
    anchors = [n for n in (_PLAN, MANIFEST) if n in ours]
    _remove(out, [*(n for n in ours if n not in anchors), *reversed(anchors)])


@contextlib.contextmanager
def _locked(out: Path, needed: int) -> Iterator[tuple[int, int]]:
    """Hold an exclusive lock on the store folder (made if needed): one prepare writes at a time.

    Yields the locked descriptor and its inode, so that forked workers can drop their copy.
    """
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file, not a folder: a store needs a folder of its own (new, empty, or a store to resume or replace)")
    with _writing(out, needed):
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
def _writing(out: Path, needed: int) -> Iterator[None]:
    """Turn an OSError of writing the store into one naming the store and saying how to go on."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, ChexpertError | _StoreWriteError):
            raise
        raise _write_error(exc, out, needed) from None


class _StoreWriteError(OSError):
    """An OSError of writing the store, already naming the store (an OSError for callers)."""


def _write_error(exc: OSError, out: Path, needed: int) -> OSError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        text = (
            f"{exc.strerror or exc} while writing the store (about {needed / 1e9:.3g} GB when finished); "
            "free space and run prepare again with the same arguments: it resumes where it stopped"
        )
    else:
        text = f"cannot write the store: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return _StoreWriteError(exc.errno, text, str(out))


def _remove(out: Path, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()


def _create_images(path: Path, shape: Sequence[int]) -> None:
    """A sparse .npy file of the final size: rows are filled in any order, untouched bytes read as 0."""
    header = _npy_header_bytes(shape)
    with _fresh(path) as f:
        f.write(header)
        f.truncate(len(header) + int(np.prod(shape)))


def _start(out: Path, plan: dict[str, Any]) -> None:
    # The plan comes first: it proves every file named with its id ours, whenever a kill lands.
    ident = plan["store_id"]
    _write_atomic(out / _PLAN, _json_bytes(plan), ident)
    _create_images(out / _work_name(ident), plan["shape"])
    _fresh(out / _journal_name(ident)).close()


def _recover(out: Path, plan: dict[str, Any], on_error: str) -> None:
    """Make an interrupted run's folder resumable: pixels at their work name, a journal."""
    ident = plan["store_id"]
    work, journal = out / _work_name(ident), out / _journal_name(ident)
    if not work.exists() and (out / IMAGES).exists():
        os.replace(out / IMAGES, work)  # a kill between finishing's rename and its manifest
    reset = not work.exists()
    if not reset and on_error != "skip":
        with open_regular(work) as f:
            header = _read_npy_header(f)
        # An earlier run with on_error="skip" had already dropped rows; the others need them back.
        reset = header is None or header[0][0] != plan["shape"][0]
    if reset:
        _remove(out, (_work_name(ident), _compact_name(ident), INDEX))
        _create_images(work, plan["shape"])
        _fresh(journal).close()
    elif not journal.exists():
        _fresh(journal).close()


# -- the journal ---------------------------------------------------------------------------------


def _read_journal(path: Path, n: int) -> tuple[list[tuple[int, int]], dict[int, str], dict[int, int]]:
    """Finished row ranges, the rows that failed (row -> error) and the digest of every finished
    row; drops a torn last line."""
    data = read_bytes(path, limit=_MAX_JOURNAL_BYTES)
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
        header = _read_npy_header(f)
    if header is None:
        raise StoreError(f"{job.images}: not the images file prepare made")
    job.offset = header[1]
    job.fd = os.open(job.images, os.O_WRONLY | getattr(os, "O_BINARY", 0) | _NOFOLLOW)
    job.pixels = np.empty((max(1, _WRITE_BYTES // (job.size * job.size)), job.size, job.size), dtype=np.uint8)
    return job


def _close_job(job: _Job) -> None:
    """Close the images file of a job decoded in this process (workers close theirs by ending)."""
    if job.fd >= 0:
        os.close(job.fd)
        job.fd = -1


def _decode_range(job: _Job, rows: tuple[int, int]) -> tuple[int, int, list[tuple[int, str]], list[str]]:
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
        digests += [f"{digest:016x}" for digest in _row_digests(pixels)]
        try:
            _write_at(job.fd, memoryview(pixels).cast("B"), job.offset + first * row_bytes)  # type: ignore[arg-type]  # ndarray is a Buffer
        except OSError as exc:
            raise _write_error(exc, Path(job.out), job.needed) from None
    return start, stop, failed, digests


def _row_digests(pixels: np.ndarray) -> list[int]:
    """The XXH3-64 digest of each row (image) of a C-contiguous (rows, size, size) array."""
    import xxhash

    data = memoryview(pixels).cast("B")  # type: ignore[arg-type]  # ndarray is a Buffer
    step = pixels.shape[1] * pixels.shape[2]
    return [xxhash.xxh3_64_intdigest(data[i : i + step]) for i in range(0, len(data), step)]


def _block_checksums(rows: Sequence[int], block: int) -> list[str]:
    """The checksum of each block of ``block`` rows: XXH3-64 of the rows' digests (8 bytes little-endian each)."""
    import xxhash

    return [f"{xxhash.xxh3_64_intdigest(struct.pack(f'<{len(part)}Q', *part)):016x}" for part in (rows[i : i + block] for i in range(0, len(rows), block))]


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
    with run_chunks(_decode_range, todo, workers=workers, state=job, setup=_init_worker, teardown=_close_job, ordered=False, mp_context=mp_context) as results:
        journal = _Journal(journal_path, Path(job.images), Path(job.out), job.needed)
        done = already
        failure = None
        try:
            for start, stop, failed, digests in results:
                if stop > start:
                    journal.add(_json_bytes({"rows": [start, stop], "failed": failed, _JOURNAL_DIGESTS: digests}, line=True))
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
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666), "ab")
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
            with _writing(self._out, self._needed):
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
                self._error = self._error or _write_error(exc, self._out, self._needed)
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
    work = out / _work_name(ident)
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
        _compact(work, out / _compact_name(ident), keep)
        index = index.take(keep)
        manifest["shape"] = [len(keep), size, size]
        blocks = _block_checksums(_file_digests(work, len(keep), size), block)
    else:
        try:
            blocks = _block_checksums([digests[row] for row in range(n)], block)
        except KeyError as missing:  # pragma: no cover - every range was journaled before finishing
            raise StoreError(f"{out}: the journal has no digest of row {missing}; prepare again with {option('overwrite')}") from None
    manifest["checksums"] = dict(plan["checksums"], blocks=blocks)
    with open(work, "rb") as f:
        os.fsync(f.fileno())
    index_bytes = _index_bytes(index)
    _write_atomic(out / INDEX, index_bytes, ident)
    manifest["files"] = {
        IMAGES: {"bytes": work.stat().st_size},
        INDEX: {"bytes": len(index_bytes), "sha256": hashlib.sha256(index_bytes).hexdigest()},
    }
    os.replace(work, out / IMAGES)
    _fsync_folder(out)
    _write_atomic(out / MANIFEST, _json_bytes(manifest), ident)
    _remove(out, (_journal_name(ident), _PLAN))


def _compact(work: Path, target_path: Path, keep: np.ndarray) -> None:
    """Drop skipped rows: copy the kept ones into a new file that replaces the images file."""
    with open_regular(work) as f:
        header = _read_npy_header(f)
    if header is None:  # pragma: no cover - checked by _recover
        raise StoreError(f"{work}: not the images file prepare made")
    shape, _ = header
    if shape[0] == len(keep):
        return  # compacted by an earlier run that stopped before the manifest
    source = np.load(work, mmap_mode="r")
    _fresh(target_path).close()  # never through a link left at the name
    target = np.lib.format.open_memmap(target_path, mode="w+", dtype=np.uint8, shape=(len(keep), *shape[1:]))
    step = max(1, _CHUNK_BYTES // (shape[1] * shape[2]))
    for start in range(0, len(keep), step):
        target[start : start + step] = source[keep[start : start + step]]
    target.flush()
    del target, source
    with open(target_path, "rb") as f:
        os.fsync(f.fileno())
    os.replace(target_path, work)


def _file_digests(path: Path, n: int, size: int, progress: Callable[[int, int], None] | None = None) -> list[int]:
    """The digest of each of the first ``n`` rows of the .npy file at ``path`` (fewer if it ends early)."""
    with open_regular(path, buffering=0) as opened:
        f = cast(io.FileIO, opened)  # unbuffered: readinto fills the buffer directly
        header = _read_npy_header(f)
        if header is None:
            raise StoreError(f"{path}: not a uint8 .npy file")
        f.seek(header[1])
        row = size * size
        span = max(row, _READ_BYTES // row * row)
        buffer = np.empty(span, dtype=np.uint8)
        view = memoryview(buffer)  # type: ignore[arg-type]  # ndarray is a Buffer
        digests: list[int] = []
        while len(digests) < n:
            want = min(span, (n - len(digests)) * row)
            got = 0
            while got < want:
                count = f.readinto(view[got:want])
                if not count:
                    break
                got += count
            whole = got // row
            digests += _row_digests(buffer[: whole * row].reshape(whole, size, size))
            if progress is not None:
                progress(len(digests), n)
            if got < want:
                break  # the file ends early: the rows after it have no digest
    return digests


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
    # Read as a regular file of bounded size first: np.load would wait on a FIFO.
    with np.load(io.BytesIO(read_bytes(path, limit=_MAX_INDEX_BYTES)), allow_pickle=False) as data:
        columns = {name: data[name] for name in _ROW_FIELDS}
    columns["path"] = np.strings.decode(columns["path"], "utf-8").astype(_STR)
    index = Index(**columns)
    if len(index) != n:
        raise StoreError(f"{path} has {len(index)} rows for {n} images")
    return index


# -- reading and checking a finished store ----------------------------------------------------------


_MANIFEST_KEYS: Final = ("store_id", "shape", "params", "source", "code", "checksums", "files")


def _read_manifest(path: Path) -> tuple[dict[str, Any], str]:
    """The manifest of the store at ``path`` and its SHA-256; StoreError if there is none, it is
    not this format's, or of another version."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        if (path / _PLAN).exists():
            raise StoreError(f"{path}: preparation was interrupted and the store is incomplete; run prepare again with the same arguments to resume")
        if not path.is_dir():
            raise StoreError(f"{path} is not a chexpert store (no such folder); make one with `chexpert prepare`")
        raise StoreError(f"{path} is not a chexpert store (no {MANIFEST}); make one with `chexpert prepare`")
    try:
        data = read_bytes(manifest_path, limit=MAX_JSON_BYTES)  # a FIFO, device or folder: refused by name
        manifest = json.loads(data)
    except ReadError as exc:
        raise StoreError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{manifest_path} is not a chexpert store's manifest (no format {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        message = f"{path}: store format {FORMAT!r} version {version!r}; this chexpert {__version__} reads version {FORMAT_VERSION}"
        if isinstance(version, int) and version < FORMAT_VERSION:
            raise StaleStoreError(
                f"{message} (version 2 adds pixel checksums and the store's identity): prepare it again with {option('overwrite')} and the same arguments"
            )
        raise StoreError(message)
    lacking = [key for key in _MANIFEST_KEYS if key not in manifest]
    if lacking:
        raise StoreError(f"{manifest_path} lacks {', '.join(lacking)} (damaged or edited?); prepare again with {option('overwrite')}")
    return manifest, hashlib.sha256(data).hexdigest()


def _check_files(path: Path, manifest: dict[str, Any]) -> list[Problem]:
    """What is cheap to check: images.npy's header and length, index.npz's length and SHA-256."""
    problems = []
    images = path / IMAGES
    shape = tuple(int(v) for v in manifest["shape"])
    try:
        with open_regular(images) as f:  # a FIFO or device is a problem, never a wait
            header = _read_npy_header(f)
            length = os.fstat(f.fileno()).st_size
        expected = (0 if header is None else header[1]) + int(np.prod(shape))
        if header is None or header[0] != shape:
            found = "not a uint8 .npy file" if header is None else f"shape {header[0]}"
            problems.append(Problem("header", str(images), None, f"{found}; the manifest says {shape} uint8"))
        elif length < expected:
            rows = max(0, (length - header[1]) // (shape[1] * shape[2]))
            problems.append(Problem("truncated", str(images), None, f"truncated: {length:,} of {expected:,} bytes (rows {rows}-{shape[0] - 1} missing)"))
        elif length > expected:
            problems.append(Problem("length", str(images), None, f"{length:,} bytes; the manifest's shape makes {expected:,}"))
    except ReadError as exc:
        problems.append(Problem("missing", str(images), None, _reason(exc, images)))
    except OSError as exc:
        problems.append(Problem("missing", str(images), None, f"cannot be read ({exc.strerror or exc})"))
    index = path / INDEX
    record = manifest["files"].get(INDEX, {})
    try:
        data = read_bytes(index, limit=_MAX_INDEX_BYTES)
        if len(data) != record.get("bytes") or hashlib.sha256(data).hexdigest() != record.get("sha256"):
            problems.append(Problem("damaged", str(index), None, f"{len(data):,} bytes that differ from the manifest's SHA-256 (damaged?)"))
    except ReadError as exc:
        problems.append(Problem("missing", str(index), None, _reason(exc, index)))
    except OSError as exc:
        problems.append(Problem("missing", str(index), None, f"cannot be read ({exc.strerror or exc})"))
    return problems


def _reason(exc: ReadError, path: Path) -> str:
    """The message of ``exc`` without the file name in front (the Problem names the file)."""
    return str(exc).removeprefix(f"{path}: ")


def _check_pixels(path: Path, manifest: dict[str, Any], progress: Callable[[int, int], None] | None) -> list[Problem]:
    """Compare every block of rows of images.npy with its checksum."""
    checksums = manifest["checksums"]
    images = path / IMAGES
    if checksums.get("algorithm") != CHECKSUM:
        return [Problem("manifest", str(path / MANIFEST), None, f"unknown checksum {checksums.get('algorithm')!r}; this chexpert knows {CHECKSUM}")]
    n, size = int(manifest["shape"][0]), int(manifest["shape"][1])
    block = int(checksums["rows"])
    expected = list(checksums["blocks"])
    try:
        rows = _file_digests(images, n, size, progress)
    except (OSError, StoreError):
        return []  # reported by _check_files
    found = _block_checksums(rows[: len(rows) // block * block if len(rows) < n else n], block)
    problems = []
    bad = [b for b, digest in enumerate(found) if b >= len(expected) or digest != expected[b]]
    for b in bad:
        first, last = b * block, min(n, (b + 1) * block) - 1
        problems.append(Problem("checksum", str(images), None, f"rows {first}-{last} (checksum block {b}) differ from their checksum (damaged on disk?)"))
    return problems


def _damage_message(path: Path, problems: list[Problem], *, same_arguments: bool = False) -> str:
    shown = "; ".join(str(p) for p in problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return (
        f"{path} is damaged: {shown}. Prepare it again with {option('overwrite')}"
        + (" (same arguments)" if same_arguments else " and the same arguments")
        + " to rebuild it"
    )


def _map_images(path: Path, shape: Sequence[int], manifest_sha: str) -> tuple[np.ndarray, StoreIdentity]:
    """Memory-map images.npy and describe the very file mapped (no window for a swap in between)."""
    with open_regular(path / IMAGES) as f:
        found = os.fstat(f.fileno())
        header = _read_npy_header(f)
        if header is None or header[0] != tuple(shape):  # pragma: no cover - checked by _check_files
            raise StoreError(f"{path / IMAGES} is not the images file the manifest describes")
        images = np.memmap(f, dtype=np.uint8, mode="r", offset=header[1], shape=header[0])
    return images, StoreIdentity(manifest_sha, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


# -- small helpers -----------------------------------------------------------------------------------


def _json_bytes(value: Any, *, line: bool = False) -> bytes:
    if line:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return json.dumps(value, indent=1).encode() + b"\n"


def _write_atomic(path: Path, data: bytes, ident: str) -> None:
    tmp = path.with_name(_tmp_name(path.name, ident))
    with _fresh(tmp) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
