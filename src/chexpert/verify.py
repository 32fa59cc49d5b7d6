"""Check a download: every problem named with its file and row.

Without ``decode`` the checks are structural and fast (CSV format and values, every row resolving
to exactly one file, found by listing folders and zip directories rather than one stat per file).
With ``decode`` every image is also decoded, in parallel, and its format, size and mode checked
against the release kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

from chexpert import imaging, schema
from chexpert.errors import ChexpertError, Problem
from chexpert.localize import check_localization
from chexpert.parallel import quiet_worker
from chexpert.release import Release, open_release
from chexpert.testset import check_split, check_test_set

__all__ = ["Report", "verify"]

#: The small release's images have this shorter side.
SMALL_SHORTER_SIDE = 320


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`verify`: ``ok`` when ``problems`` is empty."""

    root: str
    kind: str
    images: int  # rows in the CSVs
    decoded: int  # images decoded (0 without decode)
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """``{"ok": bool, "problems": [{"kind", "file", "row", "message"}, ...]}`` plus counts."""
        return {
            "ok": self.ok,
            "root": self.root,
            "release": self.kind,
            "images": self.images,
            "decoded": self.decoded,
            "problems": [{"kind": p.kind, "file": p.file, "row": p.row, "message": p.message} for p in self.problems],
        }


def verify(
    root: str | os.PathLike[str] | Release,
    *,
    decode: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Check the CheXpert download at ``root`` and list every problem found.

    ``progress(done, total)`` is called as images are decoded.

    >>> report = verify("CheXpert-v1.0-small", decode=True)  # doctest: +SKIP
    >>> report.ok, [str(p) for p in report.problems][:1]  # doctest: +SKIP
    (False, ['.../train.csv, row 7: image not found ...'])
    """
    release = root if isinstance(root, Release) else open_release(root)
    if release.kind == "plus":  # CheXpert Plus: its own CSV, label files and image sources
        from chexpert.plus import PlusRelease, verify_plus

        return verify_plus(cast(PlusRelease, release), decode=decode, workers=workers, progress=progress)  # type: ignore[no-any-return]
    problems: list[Problem] = []
    rows: list[tuple[str, str, int]] = []  # (CSV path, CSV file, line) of every indexed row
    test_index = None
    for split in release.splits:
        index, found, lines, label = check_split(release, split)
        problems += found
        if index is not None:
            rows += [(path, label, line) for path, line in zip(index.path.tolist(), lines.tolist())]
            test_index = index if split == "test" else test_index
    # The test set's truth and radiologists, CheXlocalize's masks (sizes against images with decode).
    problems += check_test_set(release, test_index)
    problems += check_localization(release, sizes=decode)

    present, listing_problems = release.list_images()
    problems += listing_problems
    listed: set[str] = set()
    found_rows = []
    for path, label, line in rows:
        key = schema.strip_release_prefix(path)
        listed.add(key)
        if key in present:
            found_rows.append((path, label, line))
        else:
            problems.append(Problem("missing", label, line, f"image {path!r} not found in the download"))
    for key in sorted(present - listed):
        if key.endswith((".jpg", ".png")):
            problems.append(Problem("unlisted", key, None, "image is in the download but in no CSV"))

    if decode:
        problems += _decode_all(release, found_rows, workers, progress)
    return Report(str(release.root), release.kind, len(rows), len(found_rows) if decode else 0, tuple(problems))


def _decode_all(
    release: Release,
    jobs: Sequence[tuple[str, str, int]],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[Problem]:
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    chunk = max(16, min(512, len(jobs) // (workers * 8) or 1))
    chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    problems: list[Problem] = []
    done = 0
    with ExitStack() as stack:
        if workers == 1:
            _use_release(release)
            results: Iterable[tuple[list[Problem], int]] = map(_check_images, chunks)
        else:
            # The release (with its listing cache) travels once per worker, not once per chunk.
            pool = stack.enter_context(ProcessPoolExecutor(workers, initializer=quiet_worker, initargs=(_use_release, release)))
            results = pool.map(_check_images, chunks)
        for found, n in results:
            problems += found
            done += n
            if progress:
                progress(done, len(jobs))
    return problems


_WORKER_RELEASE: list[Release] = []


def _use_release(release: Release) -> None:
    _WORKER_RELEASE[:] = [release]


def _check_images(jobs: Sequence[tuple[str, str, int]]) -> tuple[list[Problem], int]:
    release = _WORKER_RELEASE[0]
    problems = []
    for path, label, line in jobs:
        try:
            data = release.read_bytes(path)
            info = imaging.image_info(data, file=path)
            expected = "png" if path.endswith(".png") else "jpeg"
            if info.format != expected:
                problems.append(Problem("format", label, line, f"{path} holds {info.format.upper()} data, not {expected.upper()} as its name says"))
            if not info.grayscale8:
                problems.append(
                    Problem("mode", label, line, f"{path} has {info.channels} channel(s) at {info.bits} bits; CheXpert images are 8-bit grayscale")
                )
            if release.kind == "small" and min(info.width, info.height) != SMALL_SHORTER_SIDE:
                problems.append(
                    Problem("size", label, line, f"{path} is {info.width}x{info.height}; the small release's shorter side is {SMALL_SHORTER_SIDE}")
                )
            imaging.decode(data, file=path, convert=True)
        except ChexpertError as exc:
            problems.append(Problem("decode", label, line, str(exc)))
    return problems, len(jobs)
