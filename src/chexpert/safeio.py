"""Reading a file safely: only a regular file, never more than a cap, never a wait.

Every file the package reads that is not an image or CSV of a release (those go through
:mod:`chexpert.release`, which also keeps symbolic links inside the release) is read here: the
store's ``images.npy``, ``index.npz`` and ``manifest.json``, reports for the labeler, Plus's
RadGraph and label files, soft labels, annotations. A folder, FIFO, socket or device named like
one of them (``/dev/zero`` behind a link, a FIFO nobody writes to) is a one-line
:class:`~chexpert.errors.ReadError` naming it, never a hang or a read until memory runs out; so is
a file larger than anything of its kind can be.

The file is opened without blocking (``O_NONBLOCK``: opening a FIFO does not wait for a writer),
and the checks are made on the opened descriptor (``fstat``), so that a file swapped after the
check is not read either. Symbolic links are followed: these are paths a user gave or files in a
folder the package wrote.

>>> data = read_bytes("store/manifest.json", limit=MAX_JSON_BYTES)  # doctest: +SKIP
>>> with open_regular("reports.csv") as file:  # doctest: +SKIP
...     header = file.readline()

Writing is the other half: :func:`atomic_write` writes through a temporary file created
exclusively (``O_EXCL``), so that a symbolic link planted at the temporary name is never followed
out of the folder, and renames it over the target, which replaces a link there rather than
writing through it.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
import secrets
import stat
import zlib
from collections.abc import Iterator
from typing import IO, Final

from chexpert.errors import ReadError

__all__ = ["MAX_JSON_BYTES", "MAX_TABLE_BYTES", "atomic_write", "check_regular", "file_kind", "gunzip", "open_regular", "read_bytes", "write_atomic"]

#: The largest JSON document (manifest, annotations, gold sets) read whole.
MAX_JSON_BYTES: Final[int] = 1 << 30
#: The largest CSV a user gives (soft labels, a train.csv of one's own), and what a gzipped one may
#: inflate to: CheXpert's own train.csv is 26 MB.
MAX_TABLE_BYTES: Final[int] = 1 << 30

# O_NONBLOCK: opening a FIFO must not wait for a writer; cleared again before a regular file is read.
_FLAGS: Final[int] = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a folder", ...)."""
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


def _check(st: os.stat_result, name: str, limit: int | None, error: type[ReadError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"is {file_kind(st.st_mode)}, not a file; chexpert reads only regular files", file=name)
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
        if exc.errno == errnos.ENOTDIR:
            raise FileNotFoundError(errnos.ENOENT, "No such file or directory", name) from None
        raise error(f"cannot be read ({exc.strerror or exc})", file=name, errno=exc.errno) from None
    _check(st, name, limit, error)
    return st


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike[str], *, limit: int | None = None, error: type[ReadError] = ReadError, buffering: int = -1
) -> Iterator[IO[bytes]]:
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
        if exc.errno == errnos.ENOTDIR:
            raise FileNotFoundError(errnos.ENOENT, "No such file or directory", name) from None
        if exc.errno == errnos.EISDIR:  # where a folder cannot even be opened read-only
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


_NEW: Final[int] = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, temporary: str | None = None, durable: bool = False) -> Iterator[IO[bytes]]:
    """A new file beside ``path``, renamed over ``path`` when the block ends without an error.

    The temporary file is created exclusively (never through a link planted at its name), with the
    umask's permissions, and removed if the block fails. ``temporary`` names it where the caller
    owns a fixed name in a folder it checked (an entry left there is removed as an entry first);
    by default it is ``.NAME.RANDOM.tmp``. ``durable`` syncs the data before the rename.

    >>> with atomic_write("out/summary.json") as file:  # doctest: +SKIP
    ...     file.write(b"{}")
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    if temporary is not None:
        name = os.path.join(folder, temporary)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)  # a link is removed as a link
        fd = os.open(name, _NEW, 0o666)
    else:
        for _ in range(100):
            name = os.path.join(folder, f".{os.path.basename(target)}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(name, _NEW, 0o666)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errnos.EEXIST, "cannot create a temporary file", folder)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)  # ours: created exclusively above
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, *, temporary: str | None = None, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_write`.

    >>> write_atomic("out/manifest.json", b"{}")  # doctest: +SKIP
    """
    with atomic_write(path, temporary=temporary, durable=durable) as file:
        file.write(data)
