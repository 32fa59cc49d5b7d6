"""Writing look-alike files: pictures by a pool of workers in job order, and zips byte-identical from run to run.

Imports :mod:`chexpert.synth.draw` (and through it the rows) only.
"""

from __future__ import annotations

import pathlib
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

from chexpert.parallel import Chunks, run_chunks
from chexpert.synth.draw import render_jpeg

__all__ = ["render_one", "write_one", "run_jobs", "ZipWriter"]

# Zip members get a fixed time stamp so that output is byte-identical from run to run.
_ZIP_TIME: Final[tuple[int, int, int, int, int, int]] = (2019, 1, 22, 0, 0, 0)

_T = TypeVar("_T")
_R = TypeVar("_R")


def render_one(args: tuple[dict[str, str], int, str]) -> bytes:
    """The JPEG of one job ``(row, seed, release)``: a worker's task in :func:`run_jobs`."""
    row, seed, release = args
    return render_jpeg(row, seed=seed, release=release)


def write_one(args: tuple[dict[str, str], int, str, str]) -> list[int]:
    """Write one picture; return its size and CRC-32 (for the marker)."""
    row, seed, release, target = args
    data = render_jpeg(row, seed=seed, release=release)
    with open(target, "wb") as fh:
        fh.write(data)
    return [len(data), zlib.crc32(data)]


def run_jobs(
    fn: Callable[[_T], _R],
    jobs: Sequence[_T],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[_R]:
    """``fn`` over ``jobs``, results in job order whatever the number of workers (a pool run by
    chexpert.parallel: Ctrl-C or SIGTERM stops the workers at once)."""
    total = len(jobs)
    size = max(1, min(32, total // (8 * workers))) if workers > 1 else max(1, total)
    chunks = [jobs[i : i + size] for i in range(0, total, size)]
    done = 0
    results: Chunks[list[Any]]
    with run_chunks(_apply, chunks, workers=workers, state=fn) as results:
        for part in results:
            for result in part:
                done += 1
                if progress is not None:
                    progress(done, total)
                yield result


def _apply(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    return [fn(job) for job in jobs]


def _zip_info(name: str) -> zipfile.ZipInfo:
    is_dir = name.endswith("/")
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # Unix, so that the mode bits below mean what they say
    info.external_attr = ((0o40755 if is_dir else 0o100644) << 16) | (0x10 if is_dir else 0)
    return info


class ZipWriter:
    """Writes members after their parent folders' entries, JPEGs stored and CSVs deflated, as
    zip tools do; fixed time stamps keep the archive byte-identical from run to run."""

    def __init__(self, path: pathlib.Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", allowZip64=True)
        self.dirs: set[str] = set()
        self.files: dict[str, list[int]] = {}  # below the top folder -> [size, CRC-32], for the marker

    def add(self, name: str, data: bytes | None = None) -> None:
        """Add a file, or a folder entry when ``data`` is None (``name`` then ends in ``/``)."""
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts) + (data is None)):
            folder = "/".join(parts[:i]) + "/"
            if folder not in self.dirs:
                self.dirs.add(folder)
                self.zf.writestr(_zip_info(folder), b"")
        if data is None:
            return
        info = _zip_info(name)
        self.files[name.split("/", 1)[1]] = [len(data), zlib.crc32(data)]
        if not name.endswith((".jpg", ".png")):
            info.compress_type = zipfile.ZIP_DEFLATED
            self.zf.writestr(info, data, compresslevel=6)
        else:
            info.compress_type = zipfile.ZIP_STORED
            self.zf.writestr(info, data)

    def close(self) -> None:
        self.zf.close()
