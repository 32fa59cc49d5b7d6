"""Recognise a CheXpert download as it sits on disk and find each CSV and image in it.

Handles the small release (``CheXpert-v1.0-small``), the full release (``CheXpert-v1.0``), the
Stanford AIMI download of the full release as four batch zips whose patient folders sit directly
in the batch folder, a parent folder holding any of these (TFDS's ``manual_dir``), and zips read in
place. CSV ``Path`` values resolve to the real file whatever their prefix.

Reading is defensive, because a download can be damaged and an archive hostile: only regular
files are read (a folder, FIFO or device named like an image is refused without blocking), never
more than :data:`MAX_IMAGE_BYTES` per image (a zip member's declared size is checked before
inflating, and the bytes actually inflated are capped too), symbolic links that lead out of the
release are refused, and no message quotes a byte of what it refused to read.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from chexpert import schema
from chexpert.errors import ChexpertError, ImageReadError, InvalidArgumentError, Problem, ReadError, ReleaseNotFoundError, option
from chexpert.safeio import file_type as _file_type
from chexpert.safeio import link_leaves as _link_leaves
from chexpert.safeio import open_zip as _archive
from chexpert.safeio import read as _read
from chexpert.safeio import zip_duplicates, zip_listing
from chexpert.schema import MAX_CSV_BYTES, MAX_IMAGE_BYTES, MAX_MARKER_BYTES
from chexpert.validation import check_choice

if TYPE_CHECKING:
    from chexpert.index import Index

__all__ = [
    "Release",
    "ReleaseFile",
    "Listing",
    "open_release",
    "DOWNLOAD_HELP",
    "CSV_NAMES",
    "FALLBACK_CSV_NAMES",
    "SYNTH_MARKER",
]

#: CSV file name of each split, as released.
CSV_NAMES: dict[str, str] = {"train": "train.csv", "valid": "valid.csv", "test": "test_labels.csv"}
#: Other files that can give a split's rows, used when the split has no CSV of ``CSV_NAMES``:
#: CheXlocalize's ``val_labels.csv`` and the test set's study-level ``groundtruth.csv``
#: (read by :mod:`chexpert.testset`).
FALLBACK_CSV_NAMES: dict[str, str] = {"val_labels.csv": "valid", "groundtruth.csv": "test"}
# Folder name -> split. CheXlocalize repackages the validation images as val/.
_SPLIT_DIRS: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}

#: The file ``chexpert synth`` writes beside the CSVs of a look-alike release, recording what it
#: wrote: ``verify`` checks a look-alike against it instead of the published counts, and
#: ``synth --overwrite`` replaces only a release that it proves synth wrote.
SYNTH_MARKER: Final[str] = "chexpert-synth.json"

DOWNLOAD_HELP = (
    "CheXpert cannot be downloaded automatically. Register and accept the Research Use Agreement at "
    "https://stanfordaimi.azurewebsites.net/datasets/8cbd9ed4-2eb9-4565-affc-111cf4f7ebe2 , then download either "
    "CheXpert-v1.0-small.zip (about 11 GB) or the full release's four zips 'CheXpert-v1.0 batch 1 (validate & csv).zip' "
    "and 'CheXpert-v1.0 batch 2..4 (train 1..3).zip' (about 439 GB). Pass chexpert the zip, the folder it unpacks to, "
    "or the folder that holds the zips; nothing needs extracting."
)
_WHAT_TO_PASS = "Pass the CheXpert zip, the folder it unpacks to, or the folder that holds the zips."

_PATIENT_DIR = re.compile(r"^patient(\d{5})$")
# How deep below the root (or a zip's top) releases are looked for: root/CheXpert-v1.0-small/train.
_MAX_DEPTH = 3
# How many folder entries discovery looks at before it gives up: `chexpert info /` must answer at
# once, not walk /proc and /usr. A release, or a folder holding a few, needs a few dozen.
_MAX_ENTRIES = 20_000
# Stands in for the patient folders of a split folder that cannot be listed (no permission), so
# that the release is still recognised and the reads report the real reason. No patient has 0.
_UNLISTED_PATIENT = "patient00000"


@dataclass(frozen=True)
class _Source:
    """A folder (or a folder inside a zip) that holds images.

    ``split`` None: it holds split folders (``train/``, ``valid/``); otherwise it holds that split's
    patient folders directly (the AIMI batch layout).
    """

    archive: Path | None  # the zip, or None for a folder on disk
    prefix: str  # folder inside the archive, or the folder on disk, ending with "/" (or "")
    split: str | None
    kind: str | None
    #: Folder of each split in ``schema.SPLITS`` order (split None only); CheXlocalize has val/.
    dirs: tuple[str, ...] = ("train", "valid", "test")

    @property
    def label(self) -> str:
        where = str(self.archive) + (f"!{self.prefix}" if self.prefix else "") if self.archive else self.prefix
        return where.rstrip("/")

    @property
    def repackaged(self) -> bool:
        """CheXlocalize's copy of the validation images (val/), second to a release's own valid/."""
        return self.split is None and self.dirs[1] == "val"

    def folder(self, split: str) -> str:
        """Where ``split``'s patient folders are, relative to the archive or on disk."""
        return self.prefix + ("" if self.split else f"{self.dirs[schema.SPLITS.index(split)]}/")

    def within(self, split: str) -> tuple[str, ...]:
        """Real folders a symbolic link in ``split`` may lead into: the release and the split folder
        (which may itself be a link to another disk)."""
        return tuple(dict.fromkeys(os.path.realpath(p) for p in (self.prefix or ".", self.folder(split))))


@dataclass(frozen=True)
class _CSV:
    split: str
    archive: Path | None
    name: str  # member name in the archive, or the path on disk
    kind: str | None

    @property
    def label(self) -> str:
        return f"{self.archive}!{self.name}" if self.archive else self.name

    @property
    def folder(self) -> str:
        """The folder holding the CSV (member folder in a zip, "" at its top)."""
        return self.name.rpartition("/")[0]

    @property
    def file_name(self) -> str:
        """The CSV's name without folders."""
        return self.name.rpartition("/")[2]

    def within(self) -> tuple[str, ...]:
        """The real folder a symbolic link beside the CSV may lead into: the CSV's own."""
        return (os.path.realpath(self.folder or "."),)

    def read(self) -> bytes:
        """The CSV's bytes; :class:`ReadError` if it cannot be read safely, FileNotFoundError if gone."""
        return _read(self.archive, self.name, MAX_CSV_BYTES, ReadError, self.within)


@dataclass(frozen=True)
class ReleaseFile:
    """A CSV or JSON file found beside the images (groundtruth.csv, radiologists' reads, CheXlocalize's JSON).

    ``path`` is relative to the release root (``a/b/file.json``; inside a zip, relative to the zip).

    >>> release = chexpert.open("~/data")  # the small release, the test set's labels and CheXlocalize
    >>> [f.path for f in release.files if f.name.startswith("gt_segmentations")]
    ['CheXlocalize/gt_segmentations_test.json', 'CheXlocalize/gt_segmentations_val.json']
    """

    archive: Path | None
    location: str  # member name in the archive, or the path on disk
    path: str

    @property
    def name(self) -> str:
        """The file name without folders."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        """How messages name the file: its path, or ``archive.zip!member``."""
        return f"{self.archive}!{self.location}" if self.archive else self.location

    def read(self) -> bytes:
        """The file's bytes, read as safely as a CSV (:class:`ReadError` if that cannot be done)."""
        folder = self.location.rpartition("/")[0]
        return _read(self.archive, self.location, MAX_CSV_BYTES, ReadError, lambda: (os.path.realpath(folder or "."),))


@dataclass(frozen=True)
class Listing:
    """What a release holds, found by listing folders and zip directories (no stat per file).

    ``present``: every regular image file as a ``split/patientNNNNN/studyN/file`` key.
    ``odd``: entries named like images that cannot be read as one, key -> (problem kind, why):
    folders, FIFOs, devices, symbolic links leading out of the release, zip symlink entries.
    ``unreadable``: key prefixes (``train/``, ``train/patient00001/``, ...) of folders that could not
    be listed, so their images are unknown rather than missing. ``problems``: the folders that could
    not be listed, patients found in two places, folder links leading out of the release (warnings).
    """

    present: set[str]
    odd: dict[str, tuple[str, str]]
    unreadable: frozenset[str]
    problems: tuple[Problem, ...]

    def under_unreadable(self, key: str) -> bool:
        """True if ``key`` lies below a folder that could not be listed."""
        if not self.unreadable:
            return False
        parts = key.split("/")
        return any("/".join(parts[:depth]) + "/" in self.unreadable for depth in range(1, len(parts)))


@dataclass(frozen=True, eq=False)
class Release:
    """A CheXpert download: where its CSVs are and how to read any image named in them.

    Make one with :func:`chexpert.open`. Reading images is safe in forked and spawned workers:
    zip archives are reopened once per process.

    >>> release = chexpert.open("~/data/CheXpert-v1.0-small.zip")
    >>> release.kind, release.splits
    ('small', ('train', 'valid'))
    """

    root: Path
    kind: str
    layout: str  # "folder", "zip" or "aimi-batches"
    csvs: tuple[_CSV, ...] = field(repr=False)
    sources: tuple[_Source, ...] = field(repr=False)
    #: CSV and JSON files found besides the splits' CSVs (see :class:`ReleaseFile`).
    files: tuple[ReleaseFile, ...] = field(default=(), repr=False)
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that have a CSV, in ``schema.SPLITS`` order."""
        have = {c.split for c in self.csvs}
        return tuple(s for s in schema.SPLITS if s in have)

    def csv_bytes(self, split: str) -> tuple[bytes, str]:
        """The raw bytes of ``split``'s CSV and a label naming where it is (for messages).

        Raises :class:`ReadError` (an OSError) naming the CSV if it cannot be read safely.
        """
        csv = self._csv(split)
        try:
            return csv.read(), csv.label
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{csv.label}: the CSV has gone since the release was opened") from None

    def index(self, splits: str | Sequence[str] | None = None) -> Index:
        """Index the images of ``splits`` (default: every split with a CSV), bound to this release.

        >>> train = release.index("train")
        """
        from chexpert.index import concat
        from chexpert.splits import read_split

        if splits is None:
            splits = self.splits
        elif isinstance(splits, str):
            splits = (splits,)
        return concat([read_split(self, split) for split in splits]).with_release(self)

    def locate(self, path: str) -> str:
        """Where the image of a CSV ``Path`` is: a file path, or ``archive.zip!member``.

        >>> release.locate("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
        '/.../CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg'
        """
        source, name, _ = self._resolve(path)
        return f"{source.archive}!{name}" if source.archive else name

    def read_bytes(self, path: str) -> bytes:
        """The bytes of the image named by a CSV ``Path`` (any release prefix).

        Raises FileNotFoundError (a :class:`ReleaseNotFoundError`) naming the path and, for a
        partial download, the zip or folder that should hold it; :class:`ImageReadError` (an
        OSError) naming the file when it is there but cannot be read safely: no permission, not a
        regular file, larger than :data:`MAX_IMAGE_BYTES`, a link leading out of the release, a
        damaged zip member. Neither blocks on a FIFO or a device, nor quotes the file's content.

        >>> release.read_bytes("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")[:3]
        b'\\xff\\xd8\\xff'
        """
        source, name, split = self._resolve(path)
        try:
            return _read(source.archive, name, MAX_IMAGE_BYTES, ImageReadError, lambda: source.within(split))
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{path}: image not found at {source.label}/{name.removeprefix(source.prefix)}") from None

    def list_images(self) -> tuple[set[str], list[Problem]]:
        """Every image file present, as ``split/patientNNNNN/studyN/file`` keys, found by listing
        folders and zip directories (no stat per file); plus problems such as a patient folder
        present in two places. :meth:`listing` says more.
        """
        listing = self.listing()
        return listing.present, list(listing.problems)

    def listing(self) -> Listing:
        """List every image file of the release without reading any (see :class:`Listing`).

        >>> listing = release.listing()
        >>> "train/patient00001/study1/view1_frontal.jpg" in listing.present
        True
        """
        collect = _Collector()
        withins: dict[tuple[_Source, str], tuple[str, ...]] = {}
        for (split, patient), source in self._patient_sources().items():
            folder = f"patient{patient:05d}/"
            base = source.folder(split) + folder

            def within(source: _Source = source, split: str = split) -> tuple[str, ...]:
                # Resolved only when a link turns up (rarely): realpath costs a stat per folder.
                if (source, split) not in withins:
                    withins[(source, split)] = source.within(split)
                return withins[(source, split)]

            _list_under(source, base, f"{split}/{folder}", within, collect)
        problems = list(cast(list[Problem], self._cache.get("conflicts", [])))
        unreadable = set(cast(set[str], self._cache.get("unreadable_keys", set())))
        return Listing(collect.present, collect.odd, frozenset(unreadable | collect.unreadable), tuple(problems + collect.problems))

    def look_alike(self) -> dict[str, Any] | None:
        """What ``chexpert synth`` recorded when it wrote this release (its :data:`SYNTH_MARKER`,
        found beside the CSVs), or None for a real download.

        >>> chexpert.open(chexpert.synthesize(tmp_path, patients=2)).look_alike()["rows"]
        {'train.csv': 20, 'valid.csv': 2}
        """
        if "look_alike" not in self._cache:
            found = None
            for csv in self.csvs:
                name = f"{csv.folder}/{SYNTH_MARKER}" if csv.folder else SYNTH_MARKER
                try:
                    data = _read(csv.archive, name, MAX_MARKER_BYTES, ReadError, csv.within)
                    marker = json.loads(data)
                except (OSError, ValueError, RecursionError):
                    continue  # no marker, or not one synth wrote: a real download
                if isinstance(marker, dict) and marker.get("format") == "chexpert-synth":
                    found = marker
                    break
            self._cache["look_alike"] = found
        return cast("dict[str, Any] | None", self._cache["look_alike"])

    # -- internals -------------------------------------------------------------------------

    def _csv(self, split: str) -> _CSV:
        for csv in self.csvs:
            if csv.split == split:
                return csv
        raise ReleaseNotFoundError(
            f"{self.root} has no {CSV_NAMES.get(split, split)!r} (splits present: {', '.join(self.splits) or 'none'}). "
            + (DOWNLOAD_HELP if split != "test" else "The test set's labels are a separate download from Stanford AIMI.")
        )

    def _resolve(self, path: str) -> tuple[_Source, str, str]:
        """The source holding the image of ``path``, its name there, and its split."""
        normal = path.replace("\\", "/")
        match = schema.PATH_PATTERN.match(normal)
        if match is None:
            raise InvalidArgumentError(f"not a CheXpert image path: {path!r}")
        split, patient = match["split"], int(match["patient"])
        rest = normal[match.start("patient") - len("patient") :]
        if len(self.sources) == 1 and self.sources[0].split is None:
            source = self.sources[0]  # the common case: no listing needed
        else:
            source = self._patient_sources().get((split, patient))  # type: ignore[assignment]
            if source is None:
                raise ReleaseNotFoundError(f"{path}: not found in {self.root}. {self.missing_hint(split)}")
        return source, source.folder(split) + rest, split

    def missing_hint(self, split: str) -> str:
        """What to tell someone whose ``split`` images are not there: which batch zips hold them
        (the AIMI layout) or how to download the release."""
        if self.layout != "aimi-batches":
            return "Is the download complete? " + DOWNLOAD_HELP
        have = sorted(s.label for s in self.sources)
        return (
            f"The full release comes as four batch zips; {split} images are in "
            + ("'batch 1 (validate & csv)'" if split == "valid" else "'batch 2 (train 1)', 'batch 3 (train 2)' and 'batch 4 (train 3)'")
            + f". Found only: {', '.join(have) or 'none'}. Download the missing batches and put them beside the others."
        )

    def _patient_sources(self) -> dict[tuple[str, int], _Source]:
        found = cast("dict[tuple[str, int], _Source] | None", self._cache.get("patients"))
        if found is None:
            found, conflicts, collect = {}, [], _Collector()
            for source in self.sources:
                for split, patient in _list_patients(source, collect):
                    other = found.get((split, patient))
                    if other is not None and source.repackaged and split == "valid":
                        continue  # CheXlocalize's val/ copies valid/: the release's own images win
                    if other is not None:
                        conflicts.append(
                            Problem(
                                "duplicate",
                                source.label,
                                None,
                                f"patient{patient:05d} ({split}) is also in {other.label}; each image must resolve to exactly one file",
                            )
                        )
                        continue
                    found[(split, patient)] = source
            self._cache["patients"] = found
            self._cache["conflicts"] = conflicts + collect.problems
            self._cache["unreadable_keys"] = collect.unreadable
        return found  # type: ignore[return-value]


def open_release(root: str | os.PathLike[str], *, kind: str | None = None) -> Release:
    """Recognise the CheXpert download at ``root`` (a folder or a zip) and return a :class:`Release`.

    ``kind`` ("small" or "full") chooses when ``root`` holds both releases. This reads the
    CheXpert release (and the test set, laid out like it) only: ``chexpert.open``
    (:func:`chexpert.discover.open_dataset`) is the entrance that also recognises CheXpert Plus
    and hands each download to its reader. Anything that is not a release (a CSV, a split folder,
    an empty or unrelated folder) is a :class:`ReleaseNotFoundError` saying what to pass instead;
    the download instructions come only where data is missing.

    >>> release = open_release("~/data")
    >>> release.kind, release.splits
    ('small', ('train', 'valid', 'test'))
    """
    if kind == "plus":
        raise InvalidArgumentError(f"kind must be one of {', '.join(schema.RELEASE_KINDS)}; CheXpert Plus opens with chexpert.open")
    if kind is not None:
        check_choice("kind", kind, schema.RELEASE_KINDS)
    root = Path(root).expanduser().absolute()
    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        raise ReleaseNotFoundError(f"{root} does not exist." + (f" {DOWNLOAD_HELP}" if _is_chexpert_name(root.name) else "")) from None
    except OSError as exc:
        raise ReadError(f"cannot be read: {exc.strerror or exc}", file=str(root), errno=exc.errno) from None
    walk = _Walk()
    if stat.S_ISREG(mode):
        if root.suffix.lower() == ".csv":
            raise ReleaseNotFoundError(f"{root} is a CSV file, not a release; pass the folder that holds train.csv ({root.parent})")
        trees = [_zip_tree(root, named=True)]
    elif stat.S_ISDIR(mode):
        csvs, sources, files, zips = _folder_tree(root, walk)
        trees = [(csvs, sources, files)] + [_zip_tree(Path(z)) for z in zips]
    else:
        raise ReleaseNotFoundError(f"{root} is neither a folder nor a zip archive. {_WHAT_TO_PASS}")

    csvs = [c for tree in trees for c in tree[0]]
    sources = sorted((s for tree in trees for s in tree[1]), key=lambda s: s.repackaged)
    files = [f for tree in trees for f in tree[2]]
    kinds = sorted({c.kind for c in csvs if c.kind} | {s.kind for s in sources if s.kind})
    if kind is None:
        if len(kinds) > 1:
            raise ChexpertError(f"{root} holds both the small and the full release; choose one with {option('kind', 'small')} or {option('kind', 'full')}")
        kind = kinds[0] if kinds else _kind_from_csv(csvs)
    csvs = [c for c in csvs if c.kind in (kind, None)]
    sources = [s for s in sources if s.kind in (kind, None)]
    if not csvs:
        raise ReleaseNotFoundError(_nothing_found(root, kind, sources, walk))
    # A fallback (val_labels.csv, groundtruth.csv) gives a split's rows only when no CSV_NAMES file does.
    named = {c.split for c in csvs if c.file_name not in FALLBACK_CSV_NAMES}
    csvs = [c for c in csvs if c.file_name not in FALLBACK_CSV_NAMES or c.split not in named]
    _one_set_of_csvs(root, csvs)
    by_split = {csv.split: csv for csv in csvs}
    if any(s.split is not None for s in sources):
        layout = "aimi-batches"
    elif any(s.archive for s in sources) or root.is_file():
        layout = "zip"
    else:
        layout = "folder"
    if kind is None and any(s.repackaged for s in sources):
        kind = "full"  # CheXlocalize ships full-resolution images
    return Release(root=root, kind=kind or "small", layout=layout, csvs=tuple(by_split.values()), sources=tuple(sources), files=tuple(files))


# -- discovery ---------------------------------------------------------------------------------


def _is_chexpert_name(name: str) -> bool:
    return "chexpert" in name.lower()


def _one_set_of_csvs(root: Path, csvs: Sequence[_CSV]) -> None:
    """Refuse CSVs of one split in several places, or train and valid CSVs in different folders:
    mixing the CSVs of two copies (or of a copy and an edited subset) would go unnoticed."""
    places: dict[str, list[_CSV]] = {}
    for csv in csvs:
        places.setdefault(csv.split, []).append(csv)
    several = {split: found for split, found in places.items() if len(found) > 1}
    # train.csv and valid.csv must lie together; the test set and CheXlocalize are separate downloads.
    paired = [c for c in csvs if c.split != "test" and c.file_name in CSV_NAMES.values()]
    folders = {(str(c.archive), c.folder) for c in paired}
    if not several and len(folders) <= 1:
        return
    listed = "; ".join(f"{len(found)} {found[0].file_name}: {', '.join(c.label for c in found)}" for found in several.values())
    if not several:
        listed = "train.csv and valid.csv in different folders: " + ", ".join(c.label for c in paired)
    if root.is_file():
        advice = "a CheXpert zip holds one release; extract the one you mean and pass its folder"
    else:
        advice = "pass the folder of the one release you mean"
    raise ChexpertError(f"{root} holds several sets of CheXpert CSVs ({listed}); {advice}")


def _nothing_found(root: Path, kind: str | None, sources: Sequence[_Source], walk: _Walk) -> str:
    """The message for a root where no CSV was found, saying what to pass instead."""
    release = _enclosing_release(root)
    if release is not None:
        return f"{root} is inside a CheXpert release; pass the folder that holds train.csv ({release})"
    name = f"CheXpert{'-' + kind if kind else ''}"
    if sources:  # images without their CSVs: data really is missing
        return f"found images but no train.csv or valid.csv of {name} in {root}. {DOWNLOAD_HELP}"
    if root.is_file():
        return f"{root} holds no CheXpert release (no train.csv or valid.csv in the zip). " + (DOWNLOAD_HELP if _is_chexpert_name(root.name) else _WHAT_TO_PASS)
    unread = f"; {walk.unreadable} folder(s) could not be read, e.g. {walk.first_unreadable}" if walk.unreadable else ""
    if walk.entries == 0 and not walk.unreadable:
        return f"found no CSV (train.csv / valid.csv) of {name} in {root}: the folder is empty. {DOWNLOAD_HELP}"
    searched = f"stopped after {_MAX_ENTRIES:,} entries" if walk.truncated else f"within {_MAX_DEPTH} levels"
    message = f"no CheXpert release in {root}: no train.csv, valid.csv, CheXpert zip or patient folders ({searched}{unread}). "
    return message + (DOWNLOAD_HELP if _is_chexpert_name(root.name) else _WHAT_TO_PASS)


def _enclosing_release(root: Path) -> Path | None:
    """The nearest folder above ``root`` (at most four levels: release/train/patient/study) that
    holds train.csv or valid.csv, when ``root`` is one of its split, patient or study folders."""
    inside = root.name in _SPLIT_DIRS or _PATIENT_DIR.match(root.name) or re.fullmatch(r"study\d+", root.name)
    if not inside:
        return None
    for parent in list(root.parents)[:4]:
        if any((parent / name).is_file() for name in ("train.csv", "valid.csv")):
            return parent
    return None


def _kind_of(parts: Iterable[str]) -> str | None:
    """Release kind named by the nearest folder (or zip) name, if any."""
    for part in reversed(list(parts)):
        low = part.lower().removesuffix(".zip")
        if low == "chexpert-v1.0-small" or low.endswith("-small"):
            return "small"
        if low.startswith("chexpert-v1.0"):
            return "full"
    return None


def _kind_from_csv(csvs: Sequence[_CSV]) -> str | None:
    for csv in csvs:
        try:
            head = csv.read()[:4096]
        except OSError:
            continue  # reported when the CSV is read for good
        lines = head.splitlines()
        if len(lines) > 1:
            first = lines[1].decode("utf-8", "replace")
            if first.startswith(schema.RELEASE_DIRS["small"] + "/"):
                return "small"
            if first.startswith(schema.RELEASE_DIRS["full"] + "/"):
                return "full"
    return None


def _classify(
    entries: dict[str, set[str]], files: dict[str, set[str]], archive: Path | None, base: str, base_parts: tuple[str, ...]
) -> tuple[list[_CSV], list[_Source], list[ReleaseFile]]:
    """Find CSVs, image sources and other CSV/JSON files in a tree given as folder -> child folders
    and folder -> files.

    Folders are relative ("" or "a/b/"); ``base`` turns them into locations ("" inside a zip,
    the root folder with a trailing slash on disk).
    """
    csvs: list[_CSV] = []
    sources: list[_Source] = []
    found: list[ReleaseFile] = []
    split_names = {**{name: split for split, name in CSV_NAMES.items()}, **FALLBACK_CSV_NAMES}
    for folder in sorted(entries.keys() | files.keys()):
        parts = tuple(p for p in folder.split("/") if p)
        if len(parts) > _MAX_DEPTH:
            continue
        kind = _kind_of(base_parts + parts)
        for name in sorted(files.get(folder, ())):
            if name in split_names:
                csvs.append(_CSV(split_names[name], archive, base + folder + name, kind))
            if name.lower().endswith((".csv", ".json")):
                found.append(ReleaseFile(archive, base + folder + name, folder + name))
        children = entries.get(folder, set())
        present = [d for d in _SPLIT_DIRS if d in children and _has_patients(entries.get(f"{folder}{d}/", set()))]
        if present:
            dirs = tuple(next((d for d in present if _SPLIT_DIRS[d] == split), split) for split in schema.SPLITS)
            sources.append(_Source(archive, base + folder, None, kind, dirs))
        elif _has_patients(children) and (not parts or parts[-1] not in _SPLIT_DIRS):
            batch_name = (base_parts + parts)[-1] if (base_parts + parts) else ""
            split = "valid" if "valid" in batch_name.lower() else "test" if "test" in batch_name.lower() else "train"
            sources.append(_Source(archive, base + folder, split, kind))
    return csvs, sources, found


def _has_patients(children: Iterable[str]) -> bool:
    return any(_PATIENT_DIR.match(c) for c in children)


def _zip_tree(path: Path, *, named: bool = False) -> tuple[list[_CSV], list[_Source], list[ReleaseFile]]:
    """CSVs and sources in a zip; ``named``: the user passed this zip itself."""
    try:
        names = _archive(path).namelist()
    except zipfile.BadZipFile as exc:
        if named and not _is_chexpert_name(path.name) and path.suffix.lower() != ".zip":
            raise ReleaseNotFoundError(f"{path} is neither a folder nor a zip archive. {_WHAT_TO_PASS}") from None
        raise ReleaseNotFoundError(f"{path} is not a readable zip archive ({exc}); the download may be truncated or incomplete. {DOWNLOAD_HELP}") from None
    except OSError as exc:
        raise ReadError(f"cannot be read: {exc.strerror or exc}", file=str(path), errno=exc.errno) from None
    entries: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    for name in names:
        parts = name.split("/")
        # Only the top of the tree matters for discovery; stop below patient folders.
        for depth in range(min(len(parts) - 1, _MAX_DEPTH + 1)):
            folder = "/".join(parts[:depth]) + ("/" if depth else "")
            entries.setdefault(folder, set()).add(parts[depth])
            if _PATIENT_DIR.match(parts[depth]):
                break
        else:
            if len(parts) - 1 <= _MAX_DEPTH and parts[-1]:
                folder = "/".join(parts[:-1]) + ("/" if len(parts) > 1 else "")
                files.setdefault(folder, set()).add(parts[-1])
    return _classify(entries, files, path, "", (path.name,))


@dataclass
class _Walk:
    """What discovery saw of a folder tree: entries looked at, folders it could not read."""

    entries: int = 0
    truncated: bool = False
    unreadable: int = 0
    first_unreadable: str = ""

    def scan(self, folder: Path, limit: int | None = None) -> list[os.DirEntry[str]]:
        """Up to ``limit`` entries of ``folder`` (within the overall budget); [] if unreadable."""
        out: list[os.DirEntry[str]] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if self.entries >= _MAX_ENTRIES:
                        self.truncated = True
                        break
                    if limit is not None and len(out) >= limit:
                        break
                    self.entries += 1
                    out.append(entry)
        except OSError as exc:  # no permission, vanished (/proc, /dev/fd), not a folder after all
            self.unreadable += 1
            self.first_unreadable = self.first_unreadable or f"{folder} ({exc.strerror or exc})"
            return out
        return out


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _folder_tree(root: Path, walk: _Walk) -> tuple[list[_CSV], list[_Source], list[ReleaseFile], list[str]]:
    """CSVs, sources and other CSV/JSON files below ``root``, and the CheXpert zips in it."""
    entries: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    zips: list[str] = []

    def visit(folder: Path, rel: str, depth: int) -> None:
        found = walk.scan(folder)
        dirs = {e.name for e in found if not e.name.startswith(".") and _is_dir(e)}
        entries[rel] = dirs
        files[rel] = {e.name for e in found if e.name.lower().endswith((".csv", ".json"))}
        if depth == 0:
            zips.extend(e.path for e in found if e.name.lower().endswith(".zip") and _is_chexpert_name(e.name) and not _is_dir(e))
        if depth >= _MAX_DEPTH:
            return
        for d in sorted(dirs):
            if _PATIENT_DIR.match(d):
                continue  # patient folders are listed on demand, not at open
            if d in _SPLIT_DIRS:
                # One level is enough to see patient folders; a split folder that cannot be listed
                # still counts, so that reading its images says why they cannot be read.
                before = walk.unreadable
                names = {e.name for e in walk.scan(folder / d, limit=64)}
                entries[f"{rel}{d}/"] = names if walk.unreadable == before else {_UNLISTED_PATIENT}
                continue
            if walk.truncated:
                return
            visit(folder / d, f"{rel}{d}/", depth + 1)

    visit(root, "", 0)
    return (*_classify(entries, files, None, f"{root}/", tuple(root.parts)), sorted(zips))


# -- listing -----------------------------------------------------------------------------------


class _Collector:
    """Gathers a listing: present files, odd entries, folders that could not be listed."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.odd: dict[str, tuple[str, str]] = {}
        self.unreadable: set[str] = set()
        self.problems: list[Problem] = []

    def cannot_list(self, folder: str, key: str, exc: OSError) -> None:
        self.unreadable.add(key)
        self.problems.append(Problem("unreadable", folder.rstrip("/"), None, f"cannot list the folder ({exc.strerror or exc}); its images are not checked"))

    def link_out(self, folder: str, target: str) -> None:
        self.problems.append(
            Problem("link", folder.rstrip("/"), None, f"is a symbolic link to {target}, outside the release; its images are read there", severity="warning")
        )


def _list_patients(source: _Source, collect: _Collector) -> list[tuple[str, int]]:
    splits = [source.split] if source.split else list(schema.SPLITS)
    out = []
    for split in splits:
        base = source.folder(split)
        if source.archive is None:
            try:
                with os.scandir(base) as it:
                    found = [e for e in it if _is_dir(e)]
                names = [e.name for e in found]
                links = [e.name for e in found if e.is_symlink() and _PATIENT_DIR.match(e.name)]
            except FileNotFoundError:
                continue
            except OSError as exc:
                collect.cannot_list(base, f"{split}/", exc)
                continue
            if not source.split and os.path.islink(base.rstrip("/")):
                target = _link_leaves(base.rstrip("/"), (os.path.realpath(source.prefix or "."),))
                if target is not None:
                    collect.link_out(base, target)
            if links:
                within = source.within(split)
                for link in links:
                    target = _link_leaves(base + link, within)
                    if target is not None:
                        collect.link_out(base + link, target)
        else:
            names = list(_zip_children(source.archive).get(base, set()))
        for name in names:
            match = _PATIENT_DIR.match(name)
            if match:
                out.append((split, int(match[1])))
    return out


def _list_under(source: _Source, base: str, key: str, within: Callable[[], tuple[str, ...]], collect: _Collector) -> None:
    """Record every file below ``base`` (a patient folder) as ``key`` + relative path; ``within()``
    gives the folders a symbolic link may lead into."""
    if source.archive is not None:
        for rest, oddity in _zip_entries(source.archive).get(base, ()):
            if oddity is None:
                collect.present.add(key + rest)
            else:
                collect.odd[key + rest] = oddity
        return
    try:
        studies = list(os.scandir(base))
    except FileNotFoundError:
        return
    except OSError as exc:
        collect.cannot_list(base, key, exc)
        return
    for study in studies:
        if not _is_dir(study):
            _record_file(study, key + study.name, within, collect)
            continue
        if study.is_symlink():
            target = _link_leaves(study.path, within())
            if target is not None:
                collect.link_out(study.path, target)
        folder = f"{key}{study.name}/"
        try:
            with os.scandir(study.path) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):  # the common case, inline: d_type, no stat
                        collect.present.add(folder + entry.name)
                    else:
                        _record_file(entry, folder + entry.name, within, collect)
        except OSError as exc:
            collect.cannot_list(study.path, f"{key}{study.name}/", exc)


def _record_file(entry: os.DirEntry[str], key: str, within: Callable[[], tuple[str, ...]], collect: _Collector) -> None:
    # DirEntry's type tests come from the folder listing itself (d_type): no stat per file.
    try:
        if entry.is_file(follow_symlinks=False):
            collect.present.add(key)
            return
        if entry.is_symlink():
            target = _link_leaves(entry.path, within())
            if target is not None:
                collect.odd[key] = ("outside", f"is a symbolic link to {target}, outside the release; chexpert reads only files inside it")
                return
            mode = os.stat(entry.path).st_mode
        else:
            mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        collect.odd[key] = ("missing", "is a symbolic link to nothing (its target is gone)")
        return
    except OSError as exc:
        collect.odd[key] = ("unreadable", f"cannot be read ({exc.strerror or exc})")
        return
    if stat.S_ISREG(mode):
        collect.present.add(key)
    else:
        collect.odd[key] = ("not-a-file", f"is {_file_type(mode)}, not an image file")


def _zip_children(path: Path) -> dict[str, set[str]]:
    """Folder -> child folder names of a zip, computed once per opened file."""

    def build(zf: zipfile.ZipFile) -> dict[str, set[str]]:
        children: dict[str, set[str]] = {}
        for name in zf.namelist():
            parts = name.split("/")
            for depth in range(len(parts) - 1):
                children.setdefault("/".join(parts[:depth]) + ("/" if depth else ""), set()).add(parts[depth])
        return children

    return zip_listing(path, "children", build)


def _zip_entries(path: Path) -> dict[str, list[tuple[str, tuple[str, str] | None]]]:
    """Patient folder -> (path below it, None or (problem kind, why) for a member that is no
    regular file: a folder or a symbolic link named like an image), computed once per opened file."""

    def build(zf: zipfile.ZipFile) -> dict[str, list[tuple[str, tuple[str, str] | None]]]:
        cached: dict[str, list[tuple[str, tuple[str, str] | None]]] = {}
        duplicates = zip_duplicates(path)
        for info in zf.infolist():
            match = re.search(r"(?:^|/)patient\d{5}/", info.filename)
            if not match:
                continue
            rest = info.filename[match.end() :]
            oddity = None
            if info.filename in duplicates:
                if info is not zf.NameToInfo.get(info.filename):
                    continue  # listed once, as the ambiguous name it is
                oddity = ("duplicate-member", f"is in {path} {duplicates[info.filename]} times ({info.filename}); which copy is meant cannot be known")
            elif info.filename.endswith("/"):
                rest = rest.rstrip("/")
                if "/" not in rest:
                    continue  # a study folder
                oddity = ("not-a-file", "is a folder in the zip, not a file")
            elif info.create_system == 3 and stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG):
                oddity = ("not-a-file", f"is {_file_type(info.external_attr >> 16)} in the zip, not a file")
            cached.setdefault(info.filename[: match.end()], []).append((rest, oddity))
        return cached

    return zip_listing(path, "entries", build)
