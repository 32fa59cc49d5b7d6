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

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from chexpert import imaging, schema
from chexpert.discover import open_dataset as open_release
from chexpert.errors import ChexpertError, ImageDecodeError, ImageReadError, Problem, ReadError, ReleaseNotFoundError
from chexpert.index import Index
from chexpert.localize import check_localization
from chexpert.mimic import MimicRelease, source_bytes
from chexpert.parallel import run_chunks
from chexpert.plus import FoundFiles, PlusRelease, file_key
from chexpert.release import CSV_NAMES, SYNTH_MARKER, Listing, Release
from chexpert.safeio import zip_duplicates
from chexpert.testset import check_split, check_test_set
from chexpert.validation import check_int

__all__ = ["Report", "verify", "verify_plus", "verify_mimic", "PUBLISHED_ROWS", "PUBLISHED_TEST_STUDIES", "EXPECTED_SPLITS"]

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
# A zip member below a patient folder: an image, named in verify's report with its CSV row.
_PATIENT_MEMBER: Final = re.compile(r"(?:^|/)patient\d{5}/")


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
            "problems": [{"kind": p.kind, "severity": p.severity, "file": p.file, "row": p.row, "message": p.message} for p in self.problems],
        }


def verify(
    root: str | os.PathLike[str] | Release,
    *,
    decode: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    partial: bool = False,
) -> Report:
    """Check the CheXpert download at ``root`` and list every problem found.

    ``progress(done, total)`` is called as images are decoded. Ctrl-C stops the worker processes
    at once. ``partial``: the download is a copy of part of the images on purpose, so images
    not there are one warning counting them instead of errors (a download with no image at all
    is still an error, and every image that is there is checked as usual).

    >>> report = verify("CheXpert-v1.0-small", decode=True)
    >>> report.ok, [str(p) for p in report.problems][:1]
    (True, [])
    """
    if workers is not None:
        check_int("workers", workers, low=1)
    release = root if isinstance(root, Release) else open_release(root)
    if release.kind == "plus":  # CheXpert Plus: its own CSV, label files and image sources
        return verify_plus(cast(PlusRelease, release), decode=decode, workers=workers, progress=progress, partial=partial)
    if release.kind == "mimic":  # MIMIC-CXR-JPG: metadata, split and label files joined by id
        return verify_mimic(cast(MimicRelease, release), decode=decode, workers=workers, progress=progress)
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
    problems += _duplicate_members(release)
    keys = [schema.strip_release_prefix(path) for path, _, _ in rows]
    found_rows, row_problems = _match_rows(release, rows, keys, listing, csv_rows)
    problems += partial_copy(row_problems, len(rows), str(release.root)) if partial else row_problems
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


def _duplicate_members(release: Release) -> list[Problem]:
    """Members a zip of the release holds more than once, other than images (those are named
    with their CSV row): zipfile reads the last copy, and which one is meant cannot be known."""
    archives = {c.archive for c in release.csvs} | {s.archive for s in release.sources} | {f.archive for f in release.files}
    problems = []
    for archive in sorted(a for a in archives if a is not None):
        for name, copies in sorted(zip_duplicates(archive).items()):
            if not _PATIENT_MEMBER.search(name):
                problems.append(
                    Problem(
                        "duplicate-member",
                        f"{archive}!{name}",
                        None,
                        f"appears {copies} times in the zip; which copy is meant cannot be known, so none is read",
                    )
                )
    return problems


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
            Problem(
                "count",
                label,
                None,
                f"has {rows:,} rows; {name} of {schema.RELEASE_DIRS[release.kind]} has {published:,}: an incomplete download, or an edited or partial copy?",
            )
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
            Problem(
                "no-images",
                str(release.root),
                None,
                f"no image found for any of the {len(rows):,} rows of {names}: wrong root, or images not extracted? "
                "(The CSVs alone are enough for `chexpert info`.)",
            )
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


def partial_copy(problems: Sequence[Problem], images: int, root: str) -> list[Problem]:
    """``problems`` with the missing images of a partial copy made one warning that counts them
    (``verify(partial=True)``); every other problem stays as it is.

    >>> [str(p) for p in partial_copy([Problem("missing", "train.csv", 2, "image 'a.jpg' not found")], 10, "r")]
    ["r: 1 of the 10 images listed are not in this partial copy (first: train.csv, row 2: image 'a.jpg' not found)"]
    """
    missing = [p for p in problems if p.kind == "missing" and p.is_error]
    if not missing:
        return list(problems)
    count = 0
    for p in missing:
        # A split mostly missing is one summary line already: "the images of 1,234 of its ... rows".
        summary = re.match(r"the images of ([\d,]+) of its", p.message) if p.row is None else None
        count += int(summary[1].replace(",", "")) if summary else 1
    first = str(missing[0])
    return [p for p in problems if p not in missing] + [
        Problem("missing", root, None, f"{count:,} of the {images:,} images listed are not in this partial copy (first: {first})", severity="warning")
    ]


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
    # The release (with its listing cache) travels once per worker, not once per chunk; Ctrl-C,
    # SIGTERM or a failure stops the workers at once (chexpert.parallel's policy).
    with run_chunks(_check_images, chunks, workers=workers, state=release) as results:
        for found, n in results:
            problems += found
            done += n
            if progress:
                progress(done, len(jobs))
    return problems


def _check_images(release: Release, jobs: Sequence[tuple[str, str, int]]) -> tuple[list[Problem], int]:
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
        problems.append(Problem("size", label, line, f"{path} declares {info.width}x{info.height} pixels, more than any CheXpert image; not decoded"))
        return problems
    if release.kind == "small" and min(info.width, info.height) != SMALL_SHORTER_SIDE:
        problems.append(Problem("size", label, line, f"{path} is {info.width}x{info.height}; the small release's shorter side is {SMALL_SHORTER_SIDE}"))
    try:
        imaging.decode(data, file=path, convert=True)
    except ImageDecodeError as exc:
        problems.append(Problem("decode", label, line, str(exc)))
    return problems


# -- CheXpert Plus -------------------------------------------------------------------------------


def verify_plus(
    release: PlusRelease, *, decode: bool = False, workers: int | None = None, progress: Callable[[int, int], None] | None = None, partial: bool = False
) -> Report:
    """``chexpert verify`` for a Plus download: the join's problems, files not found and, with
    ``decode``, every image of the chosen source decoded (PNG 8 or 16 bits, DICOM through its
    display chain). ``partial``: images not there are one warning counting them (a partial copy).
    Returns a :class:`Report`.

    >>> release = chexpert.open("~/data/chexpert-plus")
    >>> verify_plus(release, decode=True).problems[:1]  # the look-alike plants the release's quirks
    (Problem(kind='disagrees', file='.../df_chexpert_plus_240401.csv', row=9, message='...: Plus and the original release disagree: age 68 vs 67', severity='error'),)
    """
    index = release.full_index()
    problems = release.problems()
    present, _ = release.list_images()
    found = [p for p in index.path.tolist() if p in present]
    label = str(release.plus_csv)
    files = release._files(release.images) if release.images != "jpg" else FoundFiles()
    absent = []
    for p in index.path.tolist():
        if p in present:
            continue
        places = files.ambiguous.get(file_key(p) or "")
        if places is not None:
            problems.append(Problem("duplicate-member", label, None, f"{p}: {len(places)} {release.images.upper()} files, none read: {', '.join(places)}"))
        else:
            absent.append(Problem("missing", label, None, f"{p}: no {release.images.upper()} file found in {release.root}"))
    if partial:
        absent = partial_copy(absent, len(index), str(release.root))
    problems += absent
    decoded = 0
    if decode:
        workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        size = max(1, min(64, len(found) // (workers * 4)))  # at least four chunks a worker: they end together
        chunks = [found[i : i + size] for i in range(0, len(found), size)]
        with run_chunks(_decode_plus_chunk, chunks, workers=workers, state=release) as results:
            for chunk, found_problems in zip(chunks, results):
                problems += found_problems
                decoded += len(chunk)
                if progress is not None:
                    progress(decoded, len(found))
    return Report(str(release.root), release.kind, len(index), decoded, tuple(problems))


def _decode_plus_chunk(release: PlusRelease, paths: Sequence[str]) -> list[Problem]:
    problems = []
    for path in paths:
        where = release.locate(path)
        try:
            data = release.read_bytes(path)
            kind = imaging.detect_format(data, file=where)
            expected = {"png": "png", "dicom": "dicom", "jpg": "jpeg"}[release.images]
            if kind != expected:
                problems.append(Problem("format", where, None, f"holds {kind.upper()} data, not {expected.upper()}"))
            imaging.decode(data, file=where)
        except ChexpertError as exc:
            problems.append(Problem("decode", where, None, str(exc)))
    return problems


# -- MIMIC-CXR-JPG ------------------------------------------------------------------------------------


def verify_mimic(release: MimicRelease, *, decode: bool = False, workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> Report:
    """``chexpert verify`` for MIMIC-CXR-JPG: the join's problems, missing and unlisted images,
    the counts (published, or those the look-alike's marker records) and, with ``decode``, every
    image decoded.

    >>> verify_mimic(chexpert.open("~/data/mimic-cxr-jpg")).ok  # the look-alike plants the release's quirks
    False
    """
    problems = list(release.problems())
    index = release.full_index()
    meta = str(release.csv_files["metadata"])
    for role in ("split", "chexpert", "negbio"):
        if role not in release.csv_files and not any(p.kind == "missing" and role in p.message for p in problems):
            problems.append(Problem("missing", str(release.root / (schema.MIMIC_FILES[role] + ".gz")), None, f"{role} file not found"))
    marker = release.look_alike()
    expected = marker.get("rows") if marker else {"metadata": schema.MIMIC_PUBLISHED["images"]}
    metadata_rows = source_bytes(release.csv_files["metadata"], (os.path.realpath(release.root),)).rstrip(b"\n").count(b"\n")
    if isinstance(expected, dict) and "metadata" in expected and metadata_rows != expected["metadata"]:
        source = "chexpert synth wrote" if marker else "MIMIC-CXR-JPG 2.0.0 has"
        problems.append(Problem("count", meta, None, f"has {metadata_rows:,} image rows; {source} {int(expected['metadata']):,}"))
    listing = release.listing()
    problems += listing.problems
    present = listing.present
    paths = index.path.tolist()
    missing = [i for i, p in enumerate(paths) if p not in present and not listing.under_unreadable(p)]
    if len(missing) >= 100 and len(missing) > len(paths) // 2:
        problems.append(
            Problem("missing", str(release.root / "files"), None, f"{len(missing):,} of {len(paths):,} images are not there (download incomplete?)")
        )
    else:
        for i in missing:
            problems.append(Problem("missing", meta, int(index.extra["metadata_row"][i]), f"{paths[i]}: image not found"))
    for key, (kind, why) in sorted(listing.odd.items()):
        problems.append(Problem(kind, str(release.root / key), None, why))
    listed = set(paths)
    for key in sorted(present - listed):
        problems.append(
            Problem("unlisted", str(release.root / key), None, "image is in the download but not in the index (not in the metadata or left out; see above)")
        )
    decoded = 0
    if decode:
        rows = [i for i, p in enumerate(paths) if p in present]
        workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        size = max(1, min(64, -(-len(rows) // (workers * 4))))  # a few chunks per worker, at most 64 images each
        jobs = [[(paths[i], int(index.extra["metadata_row"][i])) for i in rows[k : k + size]] for k in range(0, len(rows), size)]
        with run_chunks(_decode_mimic_chunk, jobs, workers=workers, state=release) as results:
            for chunk, found in zip(jobs, results):
                problems += found
                decoded += len(chunk)
                if progress is not None:
                    progress(decoded, len(rows))
    return Report(str(release.root), release.kind, len(index), decoded, tuple(problems))


def _decode_mimic_chunk(release: MimicRelease, jobs: Sequence[tuple[str, int]]) -> list[Problem]:
    """Read and decode each image; a problem names the metadata row and the file."""
    meta = str(release.csv_files["metadata"])
    problems = []
    for path, row in jobs:
        where = release.locate(path)
        try:
            data = release.read_bytes(path)
            kind = imaging.detect_format(data, file=where)
            if kind != "jpeg":
                problems.append(Problem("format", meta, row, f"{where} holds {kind.upper()} data, not JPEG"))
            imaging.decode(data, file=where)
        except (ChexpertError, OSError, ValueError) as exc:
            problems.append(Problem("decode", meta, row, str(exc)))
    return problems
