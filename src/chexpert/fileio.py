"""One way to write a file: to a new file created exclusively beside the target, synced, then renamed over it.

A temporary file with a predictable name (``.out.csv.tmp``) is a hole: a symbolic link planted at
that name makes ``open(..., "w")`` write through it to a file anywhere. Every writer of the package
therefore creates its temporary file with ``O_CREAT | O_EXCL`` (and ``O_NOFOLLOW``) under a name
with a random part, so it never opens anything it did not just create; the rename then replaces
the target's directory entry (a link at the target's name is replaced, never written through).
The file gets the usual permissions (the umask's), unlike ``tempfile.mkstemp``'s private ones,
since it becomes the output.

>>> Path("out").mkdir()
>>> atomic_write("out/summary.json", '{"ok": true}\\n')
PosixPath('out/summary.json')
>>> with atomic_writer("out/big.bin") as handle:
...     handle.write(b"...")
3
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

__all__ = ["atomic_writer", "atomic_write", "create_new", "create_folder", "fsync_folder", "is_temporary"]

_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: Names :func:`atomic_writer` gives its temporary files: ``.TARGET.PID.RANDOM.tmp``.
_TEMPORARY: Final = re.compile(r"^\.(?P<target>.+)\.\d+\.[0-9a-f]{8}\.tmp$")


def create_new(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None, newline: str | None = None) -> IO[Any]:
    """Open ``path`` for writing only if this call creates it (no file, no link there before): FileExistsError otherwise.

    >>> with create_new("journal") as handle:
    ...     handle.write(b"")
    0
    >>> create_new("journal")
    Traceback (most recent call last):
    FileExistsError: [Errno 17] File exists: 'journal'
    """
    fd = os.open(path, _FLAGS, 0o666)
    try:
        return os.fdopen(fd, mode, encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        raise


def is_temporary(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a temporary file :func:`atomic_writer` makes (for ``target`` when given): a killed writer's leftover.

    >>> is_temporary(".state.pt.4242.0a1b2c3d.tmp", "state.pt"), is_temporary("state.pt")
    (True, False)
    """
    match = _TEMPORARY.match(name)
    return match is not None and (target is None or match.group("target") == target)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (where the platform lets a folder be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None, newline: str | None = None, sync: bool = True
) -> Iterator[IO[Any]]:
    """A handle to a new temporary file beside ``path``; on a clean exit it is synced and renamed to ``path``.

    On an error the temporary file is removed and ``path`` is left as it was. ``sync=False`` skips
    the fsync calls (for outputs that are cheap to write again).

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"Path": ["valid/patient64541/study1/view1_frontal.jpg"], "Edema": [0.25]})
    >>> with atomic_writer("preds.csv", "w", encoding="utf-8", newline="") as handle:
    ...     frame.to_csv(handle, index=False)
    >>> Path("preds.csv").read_text().splitlines()[1]
    'valid/patient64541/study1/view1_frontal.jpg,0.25'
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            handle = create_new(tmp, mode, encoding=encoding, newline=newline)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(17, "cannot create a temporary file", str(path.parent))
    try:
        with handle:
            yield handle
            if not handle.closed:  # a writer may close its stream itself (pyarrow's does)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            elif sync:
                fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_folder(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8", sync: bool = True) -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` through :func:`atomic_writer`; returns the path.

    >>> atomic_write("report.html", "<html>...</html>")
    PosixPath('report.html')
    """
    with atomic_writer(path, "wb", sync=sync) as handle:
        handle.write(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def create_folder(parent: str | os.PathLike[str], prefix: str) -> Path:
    """Create a new private folder ``parent/PREFIX<PID>.<RANDOM>`` (mode 0o700) and return its path.

    The folder is one this call made: ``os.mkdir`` fails on a name already taken (a folder, a file,
    a link planted there), and such a name is skipped for another random one, never reused. For
    staging work that is moved into place when complete (the look-alike writers of ``chexpert.synth``).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as parent:
    ...     create_folder(parent, ".staging-").name.startswith(".staging-")
    True
    """
    for _ in range(100):
        path = Path(parent, f"{prefix}{os.getpid()}.{secrets.token_hex(4)}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(17, "cannot create a folder", str(parent))
