"""Read a file or a zip member safely: the one reader every file the package reads goes through.

Only regular files are read (a folder, FIFO or device named like a file is refused without
blocking: ``lstat`` first, then ``O_NONBLOCK``), never more than the caller's ``limit`` bytes (a zip
member's declared size is checked before inflating and the bytes actually inflated are capped
too), symbolic links that lead out of the folders the caller names are refused, and no message
quotes a byte of what was refused. Open zips are held per process and keyed on the file's
identity, so a zip replaced at the same path is read afresh.

>>> data = read(None, "/data/CheXpert-v1.0-small/train.csv", 1 << 30, ReadError, lambda: ("/data",))  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from chexpert.errors import ReadError

__all__ = ["read", "read_file", "read_member", "open_zip", "zip_listing", "file_type", "link_leaves", "inside"]

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

    >>> read_file("/data/CheXpert-v1.0-small/valid.csv", 1 << 30, ReadError, lambda: ("/data",))  # doctest: +SKIP
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

    >>> read_member(Path("/data/CheXpert-v1.0-small.zip"), "CheXpert-v1.0-small/valid.csv", 1 << 30, ReadError)  # doctest: +SKIP
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

    >>> open_zip(Path("/data/CheXpert-v1.0-small.zip")).namelist()[:1]  # doctest: +SKIP
    ['CheXpert-v1.0-small/']
    """
    return _held(path)[1]


def zip_listing(path: Path, kind: str, build: Callable[[zipfile.ZipFile], T]) -> T:
    """``build(zip)`` for the zip at ``path``, computed once per opened file (same identity) and
    ``kind`` (a name for what ``build`` derives from the central directory).

    >>> zip_listing(path, "names", lambda zf: zf.namelist())  # doctest: +SKIP
    """
    identity, zf = _held(path)
    cached = _ZIP_CACHE.get((kind, path))
    if cached is not None and cached[0] == identity:
        return cast(T, cached[1])
    value = build(zf)
    _ZIP_CACHE[kind, path] = (identity, value)
    return value
