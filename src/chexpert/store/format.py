"""The store's format: its file names and manifest, the opened :class:`Store`, and the checks.

Reading a finished store (:func:`open_store`, :func:`verify_store`, :func:`reopen_images`), the
manifest to be (:func:`make_plan`), and the bytes every file holds: .npy headers, row digests and
block checksums, index.npz.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple, cast

import numpy as np

from chexpert.discover import open_dataset as open_release
from chexpert.errors import (
    Problem,
    ReadError,
    StaleStoreError,
    StoreError,
    option,
)
from chexpert.index import ROW_FIELDS, Index
from chexpert.release import Release
from chexpert.safeio import check_regular, open_regular, read_bytes
from chexpert.schema import MAX_JSON_BYTES, MAX_STORE_INDEX_BYTES
from chexpert.store.identity import code_identity, dict_changes, fingerprint, select_rows, source_changes
from chexpert.version import __version__

FORMAT: Final = "chexpert-store"
#: 2: the store's id, pixel checksums and index.npz's SHA-256 in the manifest; work files named by id.
FORMAT_VERSION: Final = 2
#: The checksum of each block of rows of images.npy: xxHash's XXH3 (64 bits; about 25 GB/s a core,
#: ten times zlib's CRC-32, so that prepare pays almost nothing for it) of the XXH3 digests of its
#: rows, each as 8 bytes little-endian. Rows are digested where they are decoded, so that work can
#: be split anywhere and a resumed run still gives the same checksums.
CHECKSUM: Final = "xxh3_64 of rows' xxh3_64"

IMAGES, INDEX, MANIFEST = "images.npy", "index.npz", "manifest.json"
PLAN = ".plan.json"
# A checksum block is at most this many bytes and rows: fine enough to name the damaged rows,
# coarse enough that the manifest stays small (14,000 checksums for the small release at 320).
_BLOCK_BYTES = 2 * 2**20
_BLOCK_ROWS = 16
# verify reads images.npy this many bytes at a time.
_READ_BYTES = 64 * 2**20
_STR = np.dtypes.StringDType()


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

    >>> store = open_store("~/data/chexpert-320")
    >>> round(float(store.images[store.index.frontal][:64].mean()), 1)
    88.5
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

    >>> store = open_store("chexpert-320", source="~/data/CheXpert-v1.0-small", size=320)
    >>> len(store)
    128
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
        expected = None if splits is None and index is None else select_rows(release, splits, index)
        changes += source_changes(manifest["source"], fingerprint(release, expected, manifest["source"]["csv_sha256"]))
    if changes:
        raise StaleStoreError(f"{path} was prepared from other data or parameters: {'; '.join(changes)}. Run prepare again with {option('overwrite')}.")
    code = code_identity(manifest["source"].get("images"))
    if manifest["code"] != code:
        warnings.warn(
            f"{path} was written by chexpert {manifest['code'].get('chexpert')} with other producing code "
            f"({dict_changes(manifest['code'], code)}); its pixels may differ from what this version writes",
            StaleStoreWarning,
            stacklevel=2,
        )
    problems = check_files(path, manifest)
    if not problems and check:
        problems = _check_pixels(path, manifest, None)
    if problems:
        raise StoreError(damage_message(path, problems))
    images, identity = _map_images(path, manifest["shape"], manifest_sha)
    index_path = path / INDEX
    try:
        loaded = _load_index(index_path, len(images))
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StoreError(damage_message(path, [Problem("damaged", str(index_path), None, f"unreadable ({exc})")])) from None
    return Store(path, images, loaded, manifest, int(params["size"]), str(params["resize"]), identity)


def verify_store(path: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """Every problem with the store at ``path``: missing or damaged files, pixels that differ
    from their checksums (naming the rows), an index that does not load. Empty when all is well.

    Reads every pixel once; ``progress(done, total)`` counts rows. The source is not needed.

    >>> [str(p) for p in verify_store("chexpert-320")]  # a damaged block would read like
    []

    ``['/data/chexpert-320/images.npy: rows 4096-4111 (checksum block 256) differ from their
    checksum (damaged on disk?)']``.
    """
    path = Path(path).expanduser().absolute()
    try:
        manifest, _ = _read_manifest(path)
    except StoreError as exc:
        return [Problem("manifest", str(path / MANIFEST), None, str(exc))]
    problems = check_files(path, manifest)
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

    >>> images = reopen_images(store.path, store.identity)
    >>> images.shape == store.images.shape
    True
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
            header = read_npy_header(f)
            if header is None:
                raise changed
            shape, offset = header
            return np.memmap(f, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    except FileNotFoundError:
        raise changed from None


def _block_rows(size: int) -> int:
    """Rows per checksum block: a function of ``size`` alone, so that resumed runs block alike."""
    return max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // (size * size)))


def make_plan(release: Release, index: Index, size: int, resize: str) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "store_id": "",
        "shape": [len(index), size, size],
        "dtype": "uint8",
        "params": {"size": size, "resize": resize},
        "source": fingerprint(release, index, None),
        "code": code_identity(getattr(release, "images", None)),
        "checksums": {"algorithm": CHECKSUM, "rows": _block_rows(size)},
    }
    # The id names the work files: derived from what is prepared, so equal runs resume each other.
    plan["store_id"] = hashlib.sha256(json_bytes(plan)).hexdigest()[:16]
    return plan


def read_npy_header(f: Any) -> tuple[tuple[int, ...], int] | None:
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


def npy_header_bytes(shape: Sequence[int]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": tuple(int(v) for v in shape)})
    return buffer.getvalue()


def row_digests(pixels: np.ndarray) -> list[int]:
    """The XXH3-64 digest of each row (image) of a C-contiguous (rows, size, size) array."""
    import xxhash

    data = memoryview(pixels).cast("B")  # type: ignore[arg-type]  # ndarray is a Buffer
    step = pixels.shape[1] * pixels.shape[2]
    return [xxhash.xxh3_64_intdigest(data[i : i + step]) for i in range(0, len(data), step)]


def block_checksums(rows: Sequence[int], block: int) -> list[str]:
    """The checksum of each block of ``block`` rows: XXH3-64 of the rows' digests (8 bytes little-endian each)."""
    import xxhash

    return [f"{xxhash.xxh3_64_intdigest(struct.pack(f'<{len(part)}Q', *part)):016x}" for part in (rows[i : i + block] for i in range(0, len(rows), block))]


def file_digests(path: Path, n: int, size: int, progress: Callable[[int, int], None] | None = None) -> list[int]:
    """The digest of each of the first ``n`` rows of the .npy file at ``path`` (fewer if it ends early)."""
    with open_regular(path, buffering=0) as opened:
        f = cast(io.FileIO, opened)  # unbuffered: readinto fills the buffer directly
        header = read_npy_header(f)
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
            digests += row_digests(buffer[: whole * row].reshape(whole, size, size))
            if progress is not None:
                progress(len(digests), n)
            if got < want:
                break  # the file ends early: the rows after it have no digest
    return digests


def index_npz_bytes(index: Index) -> bytes:
    """index.npz with fixed member timestamps, so that equal stores are equal byte for byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in ROW_FIELDS:
            column = getattr(index, name)
            if name == "path":
                column = np.strings.encode(column, "utf-8")
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(column), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


def _load_index(path: Path, n: int) -> Index:
    # Read as a regular file of bounded size first: np.load would wait on a FIFO.
    with np.load(io.BytesIO(read_bytes(path, limit=MAX_STORE_INDEX_BYTES)), allow_pickle=False) as data:
        columns = {name: data[name] for name in ROW_FIELDS}
    columns["path"] = np.strings.decode(columns["path"], "utf-8").astype(_STR)
    index = Index(**columns)
    if len(index) != n:
        raise StoreError(f"{path} has {len(index)} rows for {n} images")
    return index


_MANIFEST_KEYS: Final = ("store_id", "shape", "params", "source", "code", "checksums", "files")


def _read_manifest(path: Path) -> tuple[dict[str, Any], str]:
    """The manifest of the store at ``path`` and its SHA-256; StoreError if there is none, it is
    not this format's, or of another version."""
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        if (path / PLAN).exists():
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


def check_files(path: Path, manifest: dict[str, Any]) -> list[Problem]:
    """What is cheap to check: images.npy's header and length, index.npz's length and SHA-256."""
    problems = []
    images = path / IMAGES
    shape = tuple(int(v) for v in manifest["shape"])
    try:
        with open_regular(images) as f:  # a FIFO or device is a problem, never a wait
            header = read_npy_header(f)
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
        data = read_bytes(index, limit=MAX_STORE_INDEX_BYTES)
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
        rows = file_digests(images, n, size, progress)
    except (OSError, StoreError):
        return []  # reported by check_files
    found = block_checksums(rows[: len(rows) // block * block if len(rows) < n else n], block)
    problems = []
    bad = [b for b, digest in enumerate(found) if b >= len(expected) or digest != expected[b]]
    for b in bad:
        first, last = b * block, min(n, (b + 1) * block) - 1
        problems.append(Problem("checksum", str(images), None, f"rows {first}-{last} (checksum block {b}) differ from their checksum (damaged on disk?)"))
    return problems


def damage_message(path: Path, problems: list[Problem], *, same_arguments: bool = False) -> str:
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
        header = read_npy_header(f)
        if header is None or header[0] != tuple(shape):  # pragma: no cover - checked by check_files
            raise StoreError(f"{path / IMAGES} is not the images file the manifest describes")
        images = np.memmap(f, dtype=np.uint8, mode="r", offset=header[1], shape=header[0])
    return images, StoreIdentity(manifest_sha, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def json_bytes(value: Any, *, line: bool = False) -> bytes:
    if line:
        return json.dumps(value, separators=(",", ":")).encode() + b"\n"
    return json.dumps(value, indent=1).encode() + b"\n"
