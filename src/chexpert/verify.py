"""Check a download: every problem named with its file and row.

Without ``decode`` the checks are structural and fast: the expected CSVs are there with the
published number of rows (or, for a look-alike from ``chexpert synth``, the number it wrote), the
CSV format and values are right, and every row resolves to exactly one regular file, found by
listing folders and zip directories rather than one stat per file. With ``decode`` every image is
also read and decoded, in parallel, and its format, size and mode checked against the release
kind.

Each finding is a :class:`~chexpert.errors.Problem`: an ``"error"`` (the download is not as
released, so ``Report.ok`` is False) or a ``"warning"`` (a CSV re-saved with CRLF line endings or
a byte-order mark, a folder that is a link to another disk: harmless to every use). A split whose
images are mostly missing or unreadable is one line, not one per row, and a download without any
image is one line saying so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, cast

from chexpert import imaging, schema
from chexpert.errors import ChexpertError, ImageDecodeError, ImageReadError, Problem, ReadError, ReleaseNotFoundError
from chexpert.index import Index
from chexpert.localize import check_localization
from chexpert.parallel import quiet_worker
from chexpert.release import CSV_NAMES, SYNTH_MARKER, Listing, Release, open_release
from chexpert.testset import check_split, check_test_set
from chexpert.validation import check_int

__all__ = ["Report", "verify", "PUBLISHED_ROWS", "PUBLISHED_TEST_STUDIES", "EXPECTED_SPLITS"]

#: The small release's images have this shorter side.
SMALL_SHORTER_SIDE = 320

#: Rows of each released CSV, the same in the small and the full release of v1.0: train.csv and
#: valid.csv as downloaded, and the test set's test_labels.csv (668 images of 500 studies, as
#: torchxrayvision's CheXlocalize_Dataset documents it) where the test set is present.
PUBLISHED_ROWS: Final[dict[str, int]] = {"train": 223_414, "valid": 234, "test": 668}
#: Studies (and patients: one study each) of the test set.
PUBLISHED_TEST_STUDIES: Final[int] = 500
#: The splits every v1.0 download has; the test set is a separate download, checked when present.
EXPECTED_SPLITS: Final[tuple[str, ...]] = ("train", "valid")

# A split whose images are mostly missing (or unreadable) gets one summary line instead of a line
# per row once at least this many rows are affected: 223,414 lines help nobody.
_SUMMARY_MIN: Final[int] = 100

@dataclass(frozen=True)
class Report:
    """The outcome of :func:`verify`: ``ok`` when no problem is an error (warnings allowed)."""

    root: str
    kind: str
    images: int  # rows in the CSVs
    decoded: int  # images decoded (0 without decode)
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when no problem is an error."""
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        """The problems that make the download not as released."""
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """The problems that are only worth knowing."""
        return tuple(p for p in self.problems if not p.is_error)

    def by_rarity(self) -> list[Problem]:
        """The problems, errors first, then the rarer kinds before the commoner (a missing CSV
        before a thousand missing images), each kind in report order.

        >>> report = Report("r", "small", 3, 0, (Problem("missing", "train.csv", 2, "m"),
        ...     Problem("missing", "train.csv", 3, "m"), Problem("count", "train.csv", None, "c")))
        >>> [p.kind for p in report.by_rarity()]
        ['count', 'missing', 'missing']
        """
        counts = Counter((p.severity, p.kind) for p in self.problems)
        order = {p: i for i, p in enumerate(self.problems)}
        return sorted(self.problems, key=lambda p: (not p.is_error, counts[p.severity, p.kind], p.kind, order[p]))

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "errors", "warnings", "problems": [{"kind", "severity", "file", "row", "message"}]}`` plus counts."""
        return {
            "ok": self.ok,
            "root": self.root,
            "release": self.kind,
            "images": self.images,
            "decoded": self.decoded,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [
                {"kind": p.kind, "severity": p.severity, "file": p.file, "row": p.row, "message": p.message} for p in self.problems
            ],
        }


def verify(
    root: str | os.PathLike[str] | Release,
    *,
    decode: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Check the CheXpert download at ``root`` and list every problem found.

    ``progress(done, total)`` is called as images are decoded. Ctrl-C stops the worker processes
    at once.

    >>> report = verify("CheXpert-v1.0-small", decode=True)  # doctest: +SKIP
    >>> report.ok, [str(p) for p in report.problems][:1]  # doctest: +SKIP
    (False, ['.../train.csv, row 7: image not found ...'])
    """
    if workers is not None:
        check_int("workers", workers, low=1)
    release = root if isinstance(root, Release) else open_release(root)
    if release.kind == "plus":  # CheXpert Plus: its own CSV, label files and image sources
        from chexpert.plus import PlusRelease, verify_plus

        return verify_plus(cast(PlusRelease, release), decode=decode, workers=workers, progress=progress)  # type: ignore[no-any-return]
    if release.kind == "mimic":  # MIMIC-CXR-JPG: metadata, split and label files joined by id
        from chexpert.mimic import MimicRelease, verify_mimic

        return verify_mimic(cast(MimicRelease, release), decode=decode, workers=workers, progress=progress)  # type: ignore[no-any-return]
    marker = release.look_alike()
    problems: list[Problem] = _check_splits(release, marker)
    rows: list[tuple[str, str, int]] = []  # (CSV path, CSV file, line) of every indexed row
    csv_rows: dict[str, tuple[str, int]] = {}  # CSV file -> its split and data rows
    test_index = None
    for split in release.splits:
        try:
            data, label = release.csv_bytes(split)
        except ReadError as exc:
            problems.append(Problem("unreadable", exc.file or split, None, _message(exc)))
            continue
        index, found, lines, label = check_split(release, split)
        problems += found
        csv_rows[label] = (split, _data_rows(data))
        problems += _check_count(release, split, label, csv_rows[label][1], index, marker)
        if index is not None:
            rows += [(path, label, line) for path, line in zip(index.path.tolist(), lines.tolist())]
            test_index = index if split == "test" else test_index
    # The test set's truth and radiologists, CheXlocalize's masks (sizes against images with decode).
    problems += check_test_set(release, test_index)
    problems += check_localization(release, sizes=decode)

    listing = release.listing()
    problems += listing.problems
    keys = [schema.strip_release_prefix(path) for path, _, _ in rows]
    found_rows, row_problems = _match_rows(release, rows, keys, listing, csv_rows)
    problems += row_problems
    listed = set(keys)
    for key in sorted(listing.present - listed):
        if key.endswith((".jpg", ".png")):
            problems.append(Problem("unlisted", key, None, "image is in the download but in no CSV"))

    if decode:
        problems += _decode_all(release, found_rows, workers, progress)
    return Report(str(release.root), release.kind, len(rows), len(found_rows) if decode else 0, tuple(problems))


# -- structure -------------------------------------------------------------------------------------


def _check_splits(release: Release, marker: dict[str, Any] | None) -> list[Problem]:
    """The CSVs every download of this kind has (or that synth wrote) and this one lacks."""
    if marker is not None:
        names = [name for name in marker.get("rows", {}) if name in CSV_NAMES.values()]
        expected = [split for split, name in CSV_NAMES.items() if name in names]
        whose = f"chexpert synth wrote {' and '.join(CSV_NAMES[s] for s in expected)} (see {SYNTH_MARKER})"
    elif any(csv.file_name in (CSV_NAMES["train"], CSV_NAMES["valid"]) for csv in release.csvs):
        expected = list(EXPECTED_SPLITS)
        whose = f"every download of {schema.RELEASE_DIRS[release.kind]} has train.csv and valid.csv"
    else:
        return []  # the test set or CheXlocalize alone: separate downloads without train.csv
    return [
        Problem("split", str(release.root), None, f"{CSV_NAMES[split]} is missing: {whose}. An incomplete download or extraction?")
        for split in expected
        if split not in release.splits
    ]


def _data_rows(data: bytes) -> int:
    """Lines after the header (the released CSVs have no quoted line breaks)."""
    body = data.rstrip(b"\r\n")
    return body.count(b"\n")


def _check_count(release: Release, split: str, label: str, rows: int, index: Index | None, marker: dict[str, Any] | None) -> list[Problem]:
    """The CSV's rows (and the test set's studies) against the published counts, or, for a
    look-alike, against what synth wrote."""
    name = label.rpartition("/")[2]  # the file's own name: CheXlocalize's valid split is val_labels.csv
    if marker is not None:
        expected = marker.get("rows", {}).get(name)
        if isinstance(expected, int) and rows != expected:
            return [Problem("count", label, None, f"has {rows:,} rows; chexpert synth wrote {expected:,} (see {SYNTH_MARKER}): truncated or edited?")]
        return []
    problems = []
    published = PUBLISHED_ROWS[split]
    image_rows = name in (*CSV_NAMES.values(), "val_labels.csv")  # not the test set's study-level groundtruth.csv
    if image_rows and rows != published:
        problems.append(
            Problem("count", label, None, f"has {rows:,} rows; {name} of {schema.RELEASE_DIRS[release.kind]} has {published:,}: "
                    "an incomplete download, or an edited or partial copy?")
        )
    if split == "test" and index is not None and len(index):
        studies = len(set(index.study_ids().tolist()))
        if studies != PUBLISHED_TEST_STUDIES:
            problems.append(Problem("count", label, None, f"has {studies:,} studies; the CheXpert test set has {PUBLISHED_TEST_STUDIES}"))
    return problems


def _match_rows(
    release: Release, rows: Sequence[tuple[str, str, int]], keys: Sequence[str], listing: Listing, csv_rows: dict[str, tuple[str, int]]
) -> tuple[list[tuple[str, str, int]], list[Problem]]:
    """The rows whose image is there, and a problem for each of the others (summarised where a
    split's images are mostly missing or unreadable, and once if no image is there at all).
    ``keys`` are the rows' paths without the release prefix, as the listing has them."""
    found: list[tuple[str, str, int]] = []
    problems: list[Problem] = []
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = {}  # (kind, CSV) -> [(line, message)]
    present = listing.present
    for (path, label, line), key in zip(rows, keys):
        if key in present:
            found.append((path, label, line))
            continue
        odd = listing.odd.get(key)
        if odd is not None and odd[0] != "missing":
            problems.append(Problem(odd[0], label, line, f"image {path!r} {odd[1]}"))
            continue
        kind, message = "missing", f"image {path!r} not found in the download"
        if odd is None and listing.under_unreadable(key):
            kind, why = _probe(release, path)
            if kind == "present":
                found.append((path, label, line))
                continue
            if kind == "unreadable":
                message = f"image {path!r} cannot be read ({why})"
        grouped.setdefault((kind, label), []).append((line, message))

    if rows and not found and not problems and all(kind == "missing" for kind, _ in grouped):
        names = ", ".join(sorted({label for _, label, _ in rows}))
        return found, [
            Problem("no-images", str(release.root), None,
                    f"no image found for any of the {len(rows):,} rows of {names}: wrong root, or images not extracted? "
                    "(The CSVs alone are enough for `chexpert info`.)")
        ]
    for (kind, label), items in grouped.items():
        split, total = csv_rows[label]
        if len(items) >= _SUMMARY_MIN and 2 * len(items) > total:
            first = ", ".join(str(line) for line, _ in items[:5])
            what = "are not in the download" if kind == "missing" else "cannot be read"
            hint = "an incomplete download or extraction?" if kind == "missing" else "see the folders reported as unreadable"
            if kind == "missing" and release.layout == "aimi-batches":
                hint = release.missing_hint(split)
            problems.append(Problem(kind, label, None, f"the images of {len(items):,} of its {total:,} rows {what} (rows {first}, ...); {hint}"))
        else:
            problems += [Problem(kind, label, line, message) for line, message in items]
    return found, problems


def _probe(release: Release, path: str) -> tuple[str, str]:
    """("present" | "missing" | "unreadable", why) for an image below a folder that could not be
    listed (a folder one may enter but not list still serves its files)."""
    try:
        os.lstat(release.locate(path))
    except (FileNotFoundError, NotADirectoryError):
        return "missing", ""
    except OSError as exc:
        return "unreadable", exc.strerror or str(exc)
    except ChexpertError:
        return "missing", ""
    return "present", ""


def _message(exc: BaseException) -> str:
    """An error's message without the file name it starts with (the problem names the file)."""
    text = str(exc)
    file = getattr(exc, "file", None)
    return text.removeprefix(f"{file}: ") if file else text


# -- decoding --------------------------------------------------------------------------------------


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
    pool = None
    try:
        if workers == 1 or len(chunks) <= 1:
            _use_release(release)
            results: Iterable[tuple[list[Problem], int]] = map(_check_images, chunks)
        else:
            # Workers ignore SIGINT (quiet_worker): on Ctrl-C the parent alone stops, killing them.
            # (Not multiprocessing.Pool: its terminate() waits for ever on a queue lock held by a
            # worker that a SIGTERM to the process group ended first.)
            with _interrupts_deferred():
                # The release (with its listing cache) travels once per worker, not once per chunk.
                pool = ProcessPoolExecutor(min(workers, len(chunks)), initializer=quiet_worker, initargs=(_use_release, release))
                results = pool.map(_check_images, chunks)  # starts the workers
        for found, n in results:
            problems += found
            done += n
            if progress:
                progress(done, len(jobs))
    except BaseException:
        if pool is not None:
            _stop_now(pool)  # Ctrl-C, SIGTERM, a failure: the queued chunks are dropped, not awaited
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return problems


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """End the pool's workers at once, whatever they are doing (shutdown would wait for the
    chunks they are on: minutes at full resolution)."""
    kill = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill is not None:
        kill()
        return
    # Before 3.14 the executor offers no way to end busy workers but its table of them.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while worker processes start, and deliver them afterwards.

    A signal in that moment would meet a worker before it ignores interrupts (a traceback) and
    the parent inside the pool's constructor, before it holds the pool it must terminate: the
    workers, left running, then keep the interpreter's exit waiting for ever. Blocking the signal
    in this thread is not enough, as threads of native libraries (Arrow's) take it instead.
    Handlers can only be changed in the main thread; elsewhere nothing is deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    held = [sig for sig, handler in previous.items() if handler is not None]  # None: set outside Python, left alone
    for sig in held:
        signal.signal(sig, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, previous[sig])  # type: ignore[arg-type]  # not None, by construction of held
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)  # to the handler in place: KeyboardInterrupt, chexpert's SIGTERM, or the default


_WORKER_RELEASE: list[Release] = []


def _use_release(release: Release) -> None:
    _WORKER_RELEASE[:] = [release]


def _check_images(jobs: Sequence[tuple[str, str, int]]) -> tuple[list[Problem], int]:
    release = _WORKER_RELEASE[0]
    problems = []
    for path, label, line in jobs:
        try:
            data = release.read_bytes(path)
        except ReleaseNotFoundError as exc:
            problems.append(Problem("missing", label, line, str(exc)))
            continue
        except ImageReadError as exc:
            problems.append(Problem("unreadable", label, line, str(exc)))
            continue
        try:
            problems += _check_image(release, path, data, label, line)
        except ChexpertError as exc:
            problems.append(Problem("decode", label, line, str(exc)))
        except Exception as exc:  # noqa: BLE001  (one odd image must not end the check of the others)
            problems.append(Problem("decode", label, line, f"{path}: {type(exc).__name__} while decoding: {exc}"))
    return problems, len(jobs)


def _check_image(release: Release, path: str, data: bytes, label: str, line: int) -> list[Problem]:
    problems = []
    info = imaging.image_info(data, file=path)
    expected = "png" if path.endswith(".png") else "jpeg"
    if info.format != expected:
        problems.append(Problem("format", label, line, f"{path} holds {info.format.upper()} data, not {expected.upper()} as its name says"))
    if not info.grayscale8:
        problems.append(Problem("mode", label, line, f"{path} has {info.channels} channel(s) at {info.bits} bits; CheXpert images are 8-bit grayscale"))
    if info.width * info.height > imaging.MAX_PIXELS:
        problems.append(
            Problem("size", label, line, f"{path} declares {info.width}x{info.height} pixels, more than any CheXpert image; not decoded")
        )
        return problems
    if release.kind == "small" and min(info.width, info.height) != SMALL_SHORTER_SIDE:
        problems.append(Problem("size", label, line, f"{path} is {info.width}x{info.height}; the small release's shorter side is {SMALL_SHORTER_SIDE}"))
    try:
        imaging.decode(data, file=path, convert=True)
    except ImageDecodeError as exc:
        problems.append(Problem("decode", label, line, str(exc)))
    return problems
