"""Reading a file safely: the one reader module every file the package reads goes through.

Only regular files are read (a folder, FIFO, socket or device named like a file is refused
without blocking: ``lstat``/``fstat`` checks and ``O_NONBLOCK``), never more than the caller's
limit (a zip member's declared size is checked before inflating and the bytes actually inflated
are capped too, as is what a gzip file inflates to), and no message quotes a byte of what was
refused: a one-line :class:`~chexpert.errors.ReadError` naming the file, never a hang or a read
until memory runs out.

Two families:

- :func:`read`, :func:`read_file`, :func:`read_member` read the files of a release (its CSVs,
  images, zip members): symbolic links that lead out of the folders the caller names are refused,
  a zip member listed twice is refused (:func:`zip_duplicates`), and open zips are held per
  process, keyed on the file's identity, so a zip replaced at the same path is read afresh.
- :func:`read_bytes`, :func:`open_regular`, :func:`check_regular`, :func:`gunzip` read files a
  user gives or the package wrote (the store's ``images.npy``, ``index.npz`` and
  ``manifest.json``, reports for the labeler, soft labels, annotations, gold sets): the file is
  opened without blocking and checked on the opened descriptor (``fstat``), so a file swapped
  after the check is not read either; symbolic links are followed.

>>> data = read(None, "CheXpert-v1.0-small/train.csv", 1 << 30, ReadError, lambda: ("CheXpert-v1.0-small",))
>>> data[:5]
b'Path,'
>>> from chexpert.schema import MAX_JSON_BYTES
>>> data = read_bytes("chexpert-320/manifest.json", limit=MAX_JSON_BYTES)
>>> with open_regular("predictions.csv") as file:
...     header = file.readline()
>>> header[:5]
b'Path,'

Writing is the other half, in :mod:`chexpert.fileio`: ``atomic_writer``/``atomic_write`` write
through a temporary file created exclusively (``O_EXCL | O_NOFOLLOW``), so that a symbolic link
planted at the temporary name is never followed out of the folder, and rename it over the
target, which replaces a link there rather than writing through it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar, cast

from chexpert.errors import CSVFormatError, ReadError
from chexpert.schema import MAX_SCORES_BYTES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "check_regular", "file_type", "gunzip", "open_regular", "read_bytes",
    "read", "read_file", "read_member", "open_zip", "zip_listing", "zip_duplicates", "link_leaves", "inside",
    "read_csv_text", "read_text_csv", "csv_frame",
]  # fmt: skip

T = TypeVar("T")


def file_type(mode: int) -> str:
    """How to name what ``mode`` says a path is, when it is not a regular file.

    >>> file_type(stat.S_IFIFO)
    'a FIFO (named pipe)'
    """
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def link_leaves(path: str, within: tuple[str, ...]) -> str | None:
    """The real target of the link ``path`` if it lies outside every folder of ``within``.

    >>> link_leaves("/", ("/",)) is None
    True
    """
    target = os.path.realpath(path)
    return None if any(inside(target, base) for base in within) else target


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it.

    >>> inside("/data/a/b", "/data/a"), inside("/data/ab", "/data/a")
    (True, False)
    """
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


# O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW: a link swapped in after the
# lstat below is refused rather than followed.
_OPEN_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
# What zipfile and its decompressors raise for a damaged member.
_ZIP_ERRORS: Final[tuple[type[BaseException], ...]] = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def read(archive: Path | None, name: str, limit: int, error: type[ReadError], within: Callable[[], tuple[str, ...]]) -> bytes:
    """The bytes of a file on disk or a zip member, read safely (see the module docstring).

    FileNotFoundError if it is not there; ``error`` (a :class:`ReadError`) naming it otherwise.
    ``within()`` gives the folders a symbolic link may lead into.
    """
    if archive is None:
        return read_file(name, limit, error, within, follow=True)
    return read_member(archive, name, limit, error)


def read_file(name: str, limit: int, error: type[ReadError], within: Callable[[], tuple[str, ...]], *, follow: bool = True) -> bytes:
    """A file on disk, read as :func:`read` says (``follow=False``: a symbolic link is refused).

    >>> read_file("CheXpert-v1.0-small/valid.csv", 1 << 30, ReadError, lambda: ("CheXpert-v1.0-small",))[:5]
    b'Path,'
    """
    try:
        # lstat first: a FIFO, device or folder is refused without being opened.
        st = os.lstat(name)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileNotFoundError(errno.ENOENT, "not found", name) from None
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    if stat.S_ISLNK(st.st_mode):
        target = link_leaves(name, within())
        if target is not None:
            raise error(f"is a symbolic link to {target}, outside the release; chexpert reads only files inside it", file=name)
        if not follow:
            raise error("is a symbolic link that changed while it was read", file=name)
        return read_file(os.path.realpath(name), limit, error, within, follow=False)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"is {file_type(st.st_mode)}, not a file; chexpert reads only regular files", file=name)
    if st.st_size > limit:
        raise error(f"is {st.st_size:,} bytes, more than the {limit:,} that any file of its kind in CheXpert needs; not read", file=name)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise FileNotFoundError(errno.ENOENT, "not found", name) from None
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    try:
        want = st.st_size
        data = os.read(fd, want) if want else b""
        if len(data) < want:  # a short read (network file systems, signals): read on to the end
            parts = [data]
            total = len(data)
            while total < want:
                part = os.read(fd, want - total)
                if not part:
                    break
                parts.append(part)
                total += len(part)
            data = b"".join(parts)
    except OSError as exc:  # an input/output error of a failing disk, a folder swapped in
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    finally:
        os.close(fd)
    return data


def read_member(archive: Path, name: str, limit: int, error: type[ReadError]) -> bytes:
    """A member of the zip ``archive``, read as :func:`read` says.

    >>> read_member(Path("CheXpert-v1.0-small.zip"), "CheXpert-v1.0-small/valid.csv", 1 << 30, ReadError)[:5]
    b'Path,'
    """
    label = f"{archive}!{name}"
    try:
        zf = open_zip(archive)
    except zipfile.BadZipFile as exc:
        raise error(f"the zip cannot be read any more ({exc})", file=label) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise error(f"the zip cannot be read ({exc.strerror or exc})", file=label, errno=exc.errno) from None
    info = zf.NameToInfo.get(name)
    if info is None:
        if name + "/" in zf.NameToInfo:
            raise error("is a folder in the zip, not a file", file=label)
        raise FileNotFoundError(errno.ENOENT, "not in the zip", label)
    copies = zip_duplicates(archive).get(name)
    if copies:
        # zipfile would give the last copy; which one the download meant cannot be known.
        raise error(f"appears {copies} times in the zip; which copy is meant cannot be known, so none is read", file=label)
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        # A symbolic link member holds its target's path: neither followed nor quoted.
        raise error(f"is {file_type(mode)} in the zip, not a file; chexpert reads only regular members", file=label)
    if info.flag_bits & 0x1:
        raise error("is encrypted; CheXpert's zips are not", file=label)
    if info.file_size > limit:
        raise error(
            f"declares {info.file_size:,} bytes once inflated, more than the {limit:,} that any file of its kind in CheXpert needs; "
            "not inflated (a damaged or hostile zip)",
            file=label,
        )
    try:
        with zf.open(info) as member:
            # zipfile stops at the declared size and checks the CRC-32 there, so a member that
            # lies about its size inflates no further than the cap; read(limit + 1) bounds it even so.
            data = member.read(limit + 1)
    except _ZIP_ERRORS as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
        raise error(f"damaged zip member ({reason}); the zip is corrupt, download it again", file=label) from None
    if len(data) > limit:
        raise error(f"inflates to more than {limit:,} bytes, though it declares {info.file_size:,}; not read further (a damaged or hostile zip)", file=label)
    return data


# The open zip of each path in this process, with the identity of the file it was opened from.
# A path is not a file: a zip replaced at the same path (a new download, a re-synthesised
# look-alike) must be read afresh, so every use checks the identity (device, inode, size,
# mtime_ns) of what the path names now and reopens when it differs; one stat per read.
_ARCHIVES: dict[Path, tuple[int, tuple[int, int, int, int], zipfile.ZipFile]] = {}
# Listings derived from a zip's central directory, computed once per opened file (same identity).
_ZIP_CACHE: dict[tuple[str, Path], tuple[tuple[int, int, int, int], Any]] = {}


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _held(path: Path) -> tuple[tuple[int, int, int, int], zipfile.ZipFile]:
    """The identity and open zip for ``path`` now (reopened after fork, as handles are not
    shared, and whenever the file at ``path`` is no longer the one that was opened)."""
    pid = os.getpid()
    now = _identity(os.stat(path))
    held = _ARCHIVES.get(path)
    if held is None or held[0] != pid or held[1] != now:
        # The replaced zip is not closed here: a reader in another thread may still be inside it;
        # it closes when the last reference goes.
        zf = zipfile.ZipFile(path)
        try:
            # The identity of the file actually opened: the path may change between stat and open.
            fp = zf.fp
            opened = _identity(os.fstat(fp.fileno())) if fp is not None else now
        except BaseException:
            zf.close()
            raise
        held = (pid, opened, zf)
        _ARCHIVES[path] = held
    return held[1], held[2]


def open_zip(path: Path) -> zipfile.ZipFile:
    """The open zip for ``path`` in this process, as the file at ``path`` is now.

    >>> open_zip(Path("CheXpert-v1.0-small.zip")).namelist()[:1]
    ['CheXpert-v1.0-small/']
    """
    return _held(path)[1]


def zip_listing(path: Path, kind: str, build: Callable[[zipfile.ZipFile], T]) -> T:
    """``build(zip)`` for the zip at ``path``, computed once per opened file (same identity) and
    ``kind`` (a name for what ``build`` derives from the central directory).

    >>> zip_listing(Path("CheXpert-v1.0-small.zip"), "names", lambda zf: zf.namelist())[:1]
    ['CheXpert-v1.0-small/']
    """
    identity, zf = _held(path)
    cached = _ZIP_CACHE.get((kind, path))
    if cached is not None and cached[0] == identity:
        return cast(T, cached[1])
    value = build(zf)
    _ZIP_CACHE[kind, path] = (identity, value)
    return value


# -- files a user gives or the package wrote ---------------------------------------------------


# O_NONBLOCK: opening a FIFO must not wait for a writer; cleared again before a regular file is read.
_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _check(st: os.stat_result, name: str, limit: int | None, error: type[ReadError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"is {file_type(st.st_mode)}, not a file; chexpert reads only regular files", file=name)
    if limit is not None and st.st_size > limit:
        raise error(f"is {st.st_size:,} bytes, more than the {limit:,} that any file of its kind needs; not read", file=name)


def check_regular(path: str | os.PathLike[str], *, limit: int | None = None, error: type[ReadError] = ReadError) -> os.stat_result:
    """The ``stat`` of ``path`` if it is a regular file of at most ``limit`` bytes; else ``error``.

    For readers that open the file themselves (``np.load(..., mmap_mode="r")``, which would wait
    on a FIFO). FileNotFoundError if it is not there.

    >>> check_regular("/dev/zero")
    Traceback (most recent call last):
    ...
    chexpert.errors.ReadError: /dev/zero: is a character device, not a file; chexpert reads only regular files
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name) from None
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    _check(st, name, limit, error)
    return st


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str], *, limit: int | None = None, error: type[ReadError] = ReadError, buffering: int = -1) -> Iterator[IO[bytes]]:
    """The regular file ``path`` opened for reading in binary, checked on the open descriptor.

    A caller that streams the file must still bound what it reads if ``limit`` is None.

    >>> with open_regular("/dev/zero") as file:
    ...     pass
    Traceback (most recent call last):
    ...
    chexpert.errors.ReadError: /dev/zero: is a character device, not a file; chexpert reads only regular files
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, _FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name) from None
        if exc.errno == errno.EISDIR:  # where a folder cannot even be opened read-only
            raise error("is a folder, not a file; chexpert reads only regular files", file=name) from None
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    try:
        _check(os.fstat(fd), name, limit, error)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        file = os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def read_bytes(path: str | os.PathLike[str], *, limit: int, error: type[ReadError] = ReadError) -> bytes:
    """The whole content of the regular file ``path``, of at most ``limit`` bytes.

    Also bounded while reading: a file that grows past ``limit`` after the check is refused.

    >>> read_bytes("/dev/zero", limit=1024)
    Traceback (most recent call last):
    ...
    chexpert.errors.ReadError: /dev/zero: is a character device, not a file; chexpert reads only regular files
    """
    with open_regular(path, limit=limit, error=error) as file:
        try:
            data = file.read(limit + 1)
        except OSError as exc:  # an input/output error of a failing disk
            raise error(f"cannot be read ({exc.strerror or exc})", file=os.fspath(path), errno=exc.errno) from None
    if len(data) > limit:
        raise error(f"grew past {limit:,} bytes while it was read; not read further", file=os.fspath(path))
    return data


def gunzip(data: bytes, *, limit: int, file: str, error: type[ReadError] = ReadError) -> bytes:
    """``data`` (one or more gzip members) inflated, refusing to inflate past ``limit`` bytes.

    ``gzip.decompress`` inflates a 1 MB bomb to whatever it holds; this stops at the cap.

    >>> import gzip
    >>> gunzip(gzip.compress(b"Path,Sex"), limit=100, file="train.csv.gz")
    b'Path,Sex'
    >>> gunzip(gzip.compress(bytes(1000)), limit=100, file="bomb.csv.gz")
    Traceback (most recent call last):
    ...
    chexpert.errors.ReadError: bomb.csv.gz: inflates to more than 100 bytes; not inflated further (a damaged or hostile file)
    """
    parts: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            part = inflater.decompress(rest, limit - total + 1)
            total += len(part)
            parts.append(part)
            if total > limit or inflater.unconsumed_tail:
                raise error(f"inflates to more than {limit:,} bytes; not inflated further (a damaged or hostile file)", file=file)
            if not inflater.eof:
                raise error("is a truncated gzip file", file=file)
            rest = inflater.unused_data.lstrip(b"\0")  # members follow each other; padding is zeros
    except zlib.error as exc:
        raise error(f"is a damaged gzip file ({exc})", file=file) from None
    return b"".join(parts)


def zip_duplicates(path: Path) -> dict[str, int]:
    """Member names that a zip's central directory lists more than once -> how many times
    (computed once per opened file). zipfile's reader silently takes the last of them.

    >>> zip_duplicates(Path("CheXpert-v1.0-small.zip"))
    {}
    """

    def build(zf: zipfile.ZipFile) -> dict[str, int]:
        infos = zf.infolist()
        if len(infos) == len(zf.NameToInfo):
            return {}
        counts = Counter(info.filename for info in infos)
        return {name: n for name, n in counts.items() if n > 1}

    return zip_listing(path, "duplicates", build)


# -- CSV files a user gives (predictions, truth, soft labels) ----------------------------------

_ZIP_MAGIC: Final[tuple[bytes, ...]] = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
# How long a named pipe is given for its writer to start (a pipe of ``<(command)`` has one already).
_PIPE_WAIT_S: Final[float] = 5.0


def _read_pipe(name: str, role: str) -> bytes:
    """A pipe's bytes (``<(command)`` or a named FIFO), at most the cap. Opened without blocking
    (opening a FIFO for reading waits for a writer), then given ``_PIPE_WAIT_S`` for a writer to
    show up: a FIFO nobody writes to is an error, never a hang."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CSVFormatError(f"{role} file cannot be read ({exc.strerror or exc})", file=name) from None
    try:
        # Data or a writer's end (POLLHUP, reported only once a writer has been there) wake the poll.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        if not poller.poll(int(_PIPE_WAIT_S * 1000)):
            raise CSVFormatError(f"{role} file is a FIFO that nothing wrote to within {_PIPE_WAIT_S:g} s", file=name)
        os.set_blocking(fd, True)  # the writer is there: wait for the rest of its data
        parts: list[bytes] = []
        total = 0
        while total <= MAX_SCORES_BYTES:
            part = os.read(fd, min(1 << 20, MAX_SCORES_BYTES + 1 - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
    except OSError as exc:
        raise CSVFormatError(f"{role} file cannot be read ({exc.strerror or exc})", file=name) from None
    finally:
        os.close(fd)
    if total > MAX_SCORES_BYTES:
        raise CSVFormatError(f"{role} file is more than {MAX_SCORES_BYTES:,} bytes; not read further", file=name)
    return b"".join(parts)


def read_csv_text(name: str, role: str) -> bytes:
    """The bytes of a CSV file given by path, as text in UTF-8 (a byte-order mark removed, gzip
    inflated): a missing file, a folder, a device, a zip or other binary file, and a file over
    the cap are each one error naming the file (never a hang, never a parser's traceback).

    >>> read_csv_text("predictions.csv", "predictions")[:4]
    b'Path'
    """
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        raise CSVFormatError(f"{role} file not found", file=name) from None
    except OSError as exc:
        raise CSVFormatError(f"{role} file cannot be read ({exc.strerror or exc})", file=name) from None
    if stat.S_ISDIR(mode):
        raise CSVFormatError(f"{role} must be a CSV file, not a folder", file=name)
    if stat.S_ISFIFO(mode):
        data = _read_pipe(name, role)
    elif not stat.S_ISREG(mode):
        raise CSVFormatError(f"{role} must be a CSV file, not a device or socket", file=name)
    else:
        try:
            data = read_file(name, MAX_SCORES_BYTES, ReadError, lambda: (os.path.realpath(os.path.dirname(name) or "."),), follow=True)
        except FileNotFoundError:
            raise CSVFormatError(f"{role} file not found", file=name) from None
        except ReadError as exc:
            raise CSVFormatError(f"{role} file {str(exc).removeprefix(f'{name}: ')}", file=name) from None
    if data.startswith(_ZIP_MAGIC):
        raise CSVFormatError(f"{role} file is a zip archive, not a CSV; pass the CSV itself (a release zip goes to --truth)", file=name)
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip_csv(data, name, role)
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\x00" in data[: 1 << 16]:
        raise CSVFormatError(f"{role} file holds binary data, not CSV text", file=name)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CSVFormatError(f"{role} file is not UTF-8 text (line {line}); save it as UTF-8 CSV", file=name) from None
    return data


def _gunzip_csv(data: bytes, name: str, role: str) -> bytes:
    """A gzipped CSV inflated, to at most the cap (a small bomb must not fill the memory)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_SCORES_BYTES + 1)
    except zlib.error as exc:
        raise CSVFormatError(f"{role} file is a damaged gzip archive ({exc})", file=name) from None
    if len(out) > MAX_SCORES_BYTES or inflater.unconsumed_tail:
        raise CSVFormatError(f"{role} file inflates to more than {MAX_SCORES_BYTES:,} bytes; not read further", file=name)
    return out


def read_text_csv(path: str | os.PathLike[str], role: str) -> pd.DataFrame:
    """A CSV file of text cells (nothing parsed, "" for empty), read as safely as evaluate's own
    inputs: a folder, FIFO without a writer, device, zip, binary or empty file is one
    :class:`~chexpert.errors.CSVFormatError` naming it (``role`` says what the file is for).

    >>> read_text_csv("u-ignore-predictions.csv", "soft-label").columns[0]
    'Path'
    """
    name = os.fspath(path)
    return csv_frame(read_csv_text(name, role), name, role)


def csv_frame(data: bytes, name: str, role: str) -> pd.DataFrame:
    """The CSV text ``data`` (from :func:`read_csv_text`) as a frame of text cells; an empty file or one
    pandas cannot parse is one :class:`~chexpert.errors.CSVFormatError` naming ``name``.

    >>> csv_frame(b"Path,Sex\\na.jpg,Male\\n", "p.csv", "predictions").Sex.tolist()
    ['Male']
    """
    import pandas as pd

    if not data.strip():
        raise CSVFormatError(f"{role} file is empty; it needs a header and one row per image or study", file=name)
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, compression=None, encoding="utf-8")
        # pandas renames a repeated column ('Edema', 'Edema.1'): which copy counts would be a guess.
        header = pd.read_csv(io.BytesIO(data), header=None, nrows=1, dtype=str, keep_default_na=False, compression=None, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise CSVFormatError(f"{role} file is empty; it needs a header and one row per image or study", file=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())  # pandas' messages may span lines
        raise CSVFormatError(f"cannot be read as CSV: {reason}", file=name) from None
    names = [str(v) for v in header.iloc[0].tolist()] if len(header) else []
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CSVFormatError(f"{role} column {', '.join(map(repr, repeated))} appears more than once in the header", file=name, row=1)
    return frame
