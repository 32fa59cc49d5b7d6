"""Recognise a CheXpert download as it sits on disk and find each CSV and image in it.

Handles the small release (``CheXpert-v1.0-small``), the full release (``CheXpert-v1.0``), the
Stanford AIMI download of the full release as four batch zips whose patient folders sit directly
in the batch folder, a parent folder holding any of these (TFDS's ``manual_dir``), and zips read in
place. CSV ``Path`` values resolve to the real file whatever their prefix.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from chexpert import schema
from chexpert.errors import ChexpertError, InvalidArgumentError, Problem, ReleaseNotFoundError, option

if TYPE_CHECKING:
    from chexpert.index import Index

__all__ = ["Release", "ReleaseFile", "open_release", "DOWNLOAD_HELP", "CSV_NAMES", "FALLBACK_CSV_NAMES"]

#: CSV file name of each split, as released.
CSV_NAMES: dict[str, str] = {"train": "train.csv", "valid": "valid.csv", "test": "test_labels.csv"}
#: Other files that can give a split's rows, used when the split has no CSV of ``CSV_NAMES``:
#: CheXlocalize's ``val_labels.csv`` and the test set's study-level ``groundtruth.csv``
#: (read by :mod:`chexpert.testset`).
FALLBACK_CSV_NAMES: dict[str, str] = {"val_labels.csv": "valid", "groundtruth.csv": "test"}
# Folder name -> split. CheXlocalize repackages the validation images as val/.
_SPLIT_DIRS: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}

DOWNLOAD_HELP = (
    "CheXpert cannot be downloaded automatically. Register and accept the Research Use Agreement at "
    "https://stanfordaimi.azurewebsites.net/datasets/8cbd9ed4-2eb9-4565-affc-111cf4f7ebe2 , then download either "
    "CheXpert-v1.0-small.zip (about 11 GB) or the full release's four zips 'CheXpert-v1.0 batch 1 (validate & csv).zip' "
    "and 'CheXpert-v1.0 batch 2..4 (train 1..3).zip' (about 439 GB). Pass chexpert the zip, the folder it unpacks to, "
    "or the folder that holds the zips; nothing needs extracting."
)

_PATIENT_DIR = re.compile(r"^patient(\d{5})$")
_BATCH = re.compile(r"batch\s*(\d)", re.IGNORECASE)
# How deep below the root (or a zip's top) releases are looked for: root/CheXpert-v1.0-small/train.
_MAX_DEPTH = 3


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


@dataclass(frozen=True)
class _CSV:
    split: str
    archive: Path | None
    name: str  # member name in the archive, or the path on disk
    kind: str | None

    @property
    def label(self) -> str:
        return f"{self.archive}!{self.name}" if self.archive else self.name

    def read(self) -> bytes:
        return Path(self.name).read_bytes() if self.archive is None else _archive(self.archive).read(self.name)


@dataclass(frozen=True)
class ReleaseFile:
    """A CSV or JSON file found beside the images (groundtruth.csv, radiologists' reads, CheXlocalize's JSON).

    ``path`` is relative to the release root (``a/b/file.json``; inside a zip, relative to the zip).

    >>> [f.path for f in release.files if f.name.endswith(".json")]  # doctest: +SKIP
    ['CheXlocalize/gt_segmentations_test.json', ...]
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
        """The file's bytes."""
        return Path(self.location).read_bytes() if self.archive is None else _archive(self.archive).read(self.location)


@dataclass(frozen=True, eq=False)
class Release:
    """A CheXpert download: where its CSVs are and how to read any image named in them.

    Make one with :func:`chexpert.open`. Reading images is safe in forked and spawned workers:
    zip archives are reopened once per process.

    >>> release = chexpert.open("~/data/CheXpert-v1.0-small.zip")  # doctest: +SKIP
    >>> release.kind, release.splits  # doctest: +SKIP
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
        """The raw bytes of ``split``'s CSV and a label naming where it is (for messages)."""
        csv = self._csv(split)
        return csv.read(), csv.label

    def index(self, splits: str | Sequence[str] | None = None) -> Index:
        """Index the images of ``splits`` (default: every split with a CSV), bound to this release.

        >>> train = release.index("train")  # doctest: +SKIP
        """
        from chexpert.index import concat
        from chexpert.testset import read_split

        if splits is None:
            splits = self.splits
        elif isinstance(splits, str):
            splits = (splits,)
        return concat([read_split(self, split) for split in splits]).with_release(self)

    def locate(self, path: str) -> str:
        """Where the image of a CSV ``Path`` is: a file path, or ``archive.zip!member``.

        >>> release.locate("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")  # doctest: +SKIP
        '/data/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg'
        """
        source, name = self._resolve(path)
        return f"{source.archive}!{name}" if source.archive else name

    def read_bytes(self, path: str) -> bytes:
        """The bytes of the image named by a CSV ``Path`` (any release prefix).

        Raises FileNotFoundError (a :class:`ReleaseNotFoundError`) naming the path and, for a
        partial download, the zip or folder that should hold it.
        """
        source, name = self._resolve(path)
        try:
            if source.archive is None:
                with open(name, "rb") as f:
                    return f.read()
            return _archive(source.archive).read(name)
        except (FileNotFoundError, KeyError):
            raise ReleaseNotFoundError(f"{path}: image not found at {source.label}/{name.removeprefix(source.prefix)}") from None

    def list_images(self) -> tuple[set[str], list[Problem]]:
        """Every image file present, as ``split/patientNNNNN/studyN/file`` keys, found by listing
        folders and zip directories (no stat per file); plus problems such as a patient folder
        present in two places.
        """
        present: set[str] = set()
        for (split, patient), source in self._patient_sources().items():
            folder = f"patient{patient:05d}/"
            base = source.folder(split) + folder
            for rest in _list_under(source, base):
                present.add(f"{split}/{folder}{rest}")
        problems = list(cast(list[Problem], self._cache.get("conflicts", [])))
        return present, problems

    # -- internals -------------------------------------------------------------------------

    def _csv(self, split: str) -> _CSV:
        for csv in self.csvs:
            if csv.split == split:
                return csv
        raise ReleaseNotFoundError(
            f"{self.root} has no {CSV_NAMES.get(split, split)!r} (splits present: {', '.join(self.splits) or 'none'}). "
            + (DOWNLOAD_HELP if split != "test" else "The test set's labels are a separate download from Stanford AIMI.")
        )

    def _resolve(self, path: str) -> tuple[_Source, str]:
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
                raise ReleaseNotFoundError(f"{path}: not found in {self.root}. {self._missing_hint(split)}")
        return source, source.folder(split) + rest

    def _missing_hint(self, split: str) -> str:
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
            found, conflicts = {}, []
            for source in self.sources:
                for split, patient in _list_patients(source):
                    other = found.get((split, patient))
                    if other is not None and source.repackaged and split == "valid":
                        continue  # CheXlocalize's val/ copies valid/: the release's own images win
                    if other is not None:
                        conflicts.append(
                            Problem("duplicate", source.label, None, f"patient{patient:05d} ({split}) is also in {other.label}; "
                                    "each image must resolve to exactly one file")
                        )
                        continue
                    found[(split, patient)] = source
            self._cache["patients"] = found
            self._cache["conflicts"] = conflicts
        return found  # type: ignore[return-value]


def open_release(root: str | os.PathLike[str], *, kind: str | None = None) -> Release:
    """Recognise the CheXpert download at ``root`` (a folder or a zip) and return a :class:`Release`.

    ``kind`` ("small" or "full") chooses when ``root`` holds both releases. A folder holding a
    CheXpert Plus CSV opens as a :class:`chexpert.plus.PlusRelease` (kind "plus").

    >>> release = chexpert.open("/data/chexpert")  # doctest: +SKIP
    """
    if kind is not None and kind not in (*schema.RELEASE_KINDS, "plus"):
        raise InvalidArgumentError(f"kind must be one of {', '.join(schema.RELEASE_KINDS)}, plus, not {kind!r}")
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise ReleaseNotFoundError(f"{root} does not exist. {DOWNLOAD_HELP}")
    if kind in (None, "plus") and root.is_dir():
        from chexpert import plus

        if plus.is_plus(root):  # CheXpert Plus: its own CSV, PNG chunks and DICOMs (kind "small" or "full" picks the original inside)
            return plus.open_plus(root)
        if kind == "plus":
            raise ReleaseNotFoundError(f"{root} holds no CheXpert Plus CSV (df_chexpert_plus_*.csv)")
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise ReleaseNotFoundError(
                f"{root} is not a zip archive (truncated download?). Pass the CheXpert zip or the folder it unpacks to."
            )
        trees = [_zip_tree(root)]
    else:
        trees = [_folder_tree(root)] + [_zip_tree(z) for z in sorted(root.iterdir()) if z.suffix.lower() == ".zip" and _is_chexpert_name(z.name)]

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
        what = "no CSV (train.csv / valid.csv)" if not sources else "images but no train.csv or valid.csv"
        raise ReleaseNotFoundError(f"found {what} of CheXpert{'-' + kind if kind else ''} in {root}. {DOWNLOAD_HELP}")
    by_split: dict[str, _CSV] = {}
    # A fallback (val_labels.csv, groundtruth.csv) gives a split's rows only when no CSV_NAMES file does.
    named = {c.split for c in csvs if c.name.rsplit("/", 1)[-1] not in FALLBACK_CSV_NAMES}
    csvs = [c for c in csvs if c.name.rsplit("/", 1)[-1] not in FALLBACK_CSV_NAMES or c.split not in named]
    for csv in csvs:
        if csv.split in by_split:
            raise ChexpertError(f"two {CSV_NAMES[csv.split]} files found: {by_split[csv.split].label} and {csv.label}; pass the one release folder you mean")
        by_split[csv.split] = csv
    if any(s.split is not None for s in sources):
        layout = "aimi-batches"
    elif any(s.archive for s in sources) or root.is_file():
        layout = "zip"
    else:
        layout = "folder"
    if kind is None and any(s.repackaged for s in sources):
        kind = "full"  # CheXlocalize ships full-resolution images
    return Release(
        root=root, kind=kind or "small", layout=layout, csvs=tuple(by_split.values()), sources=tuple(sources), files=tuple(files)
    )


# -- discovery ---------------------------------------------------------------------------------


def _is_chexpert_name(name: str) -> bool:
    return "chexpert" in name.lower()


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
        lines = csv.read()[:4096].splitlines()
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


def _zip_tree(path: Path) -> tuple[list[_CSV], list[_Source], list[ReleaseFile]]:
    try:
        names = _archive(path).namelist()
    except zipfile.BadZipFile as exc:
        raise ReleaseNotFoundError(f"{path} is not a readable zip ({exc}); the download may be incomplete. {DOWNLOAD_HELP}") from None
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


def _folder_tree(root: Path) -> tuple[list[_CSV], list[_Source], list[ReleaseFile]]:
    entries: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}

    def walk(folder: Path, rel: str, depth: int) -> None:
        dirs, names = set(), set()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir():
                        dirs.add(entry.name)
                    elif entry.name.lower().endswith((".csv", ".json")):
                        names.add(entry.name)
        except PermissionError:
            return
        entries[rel] = dirs
        files[rel] = names
        if depth >= _MAX_DEPTH:
            return
        for d in dirs:
            if _PATIENT_DIR.match(d):
                continue  # patient folders are listed on demand, not at open
            if d in _SPLIT_DIRS:
                # One level is enough to see patient folders.
                with os.scandir(folder / d) as it:
                    entries[f"{rel}{d}/"] = {e.name for _, e in zip(range(64), it)}
                continue
            walk(folder / d, f"{rel}{d}/", depth + 1)

    walk(root, "", 0)
    return _classify(entries, files, None, f"{root}/", tuple(root.parts))


# -- listing and reading -----------------------------------------------------------------------

_ARCHIVES: dict[Path, tuple[int, zipfile.ZipFile]] = {}
# Listings derived from a zip's central directory, computed once per process.
_ZIP_CACHE: dict[tuple[str, Path], dict[str, set[str]]] = {}


def _archive(path: Path) -> zipfile.ZipFile:
    """The open zip for ``path`` in this process (reopened after fork: handles are not shared)."""
    pid = os.getpid()
    held = _ARCHIVES.get(path)
    if held is None or held[0] != pid:
        held = (pid, zipfile.ZipFile(path))
        _ARCHIVES[path] = held
    return held[1]


def _list_patients(source: _Source) -> list[tuple[str, int]]:
    splits = [source.split] if source.split else list(schema.SPLITS)
    out = []
    for split in splits:
        for name in _list_children(source, source.folder(split)):
            match = _PATIENT_DIR.match(name)
            if match:
                out.append((split, int(match[1])))
    return out


def _list_children(source: _Source, base: str) -> set[str]:
    if source.archive is None:
        try:
            with os.scandir(base) as it:
                return {e.name for e in it if e.is_dir()}
        except FileNotFoundError:
            return set()
    children = _zip_children(source.archive)
    return children.get(base, set())


def _zip_children(path: Path) -> dict[str, set[str]]:
    """Folder -> child folder names of a zip, computed once per process."""
    key = ("children", path)
    cached = _ZIP_CACHE.get(key)
    if cached is None:
        cached = {}
        for name in _archive(path).namelist():
            parts = name.split("/")
            for depth in range(len(parts) - 1):
                cached.setdefault("/".join(parts[:depth]) + ("/" if depth else ""), set()).add(parts[depth])
        _ZIP_CACHE[key] = cached
    return cached



def _list_under(source: _Source, base: str) -> Iterable[str]:
    """Relative paths of every file below ``base`` (a patient folder)."""
    if source.archive is None:
        try:
            studies = list(os.scandir(base))
        except FileNotFoundError:
            return
        for study in studies:
            if study.is_dir():
                with os.scandir(study.path) as it:
                    for entry in it:
                        yield f"{study.name}/{entry.name}"
            else:
                yield study.name
        return
    yield from _zip_files(source.archive).get(base, ())


def _zip_files(path: Path) -> dict[str, list[str]]:
    """Patient folder -> files below it, for a zip, computed once per process."""
    key = ("files", path)
    cached = _ZIP_CACHE.get(key)
    if cached is None:
        cached = {}
        for name in _archive(path).namelist():
            if name.endswith("/"):
                continue
            match = re.search(r"(?:^|/)patient\d{5}/", name)
            if match:
                cached.setdefault(name[: match.end()], []).append(name[match.end() :])  # type: ignore[arg-type, attr-defined]
        _ZIP_CACHE[key] = cached  # type: ignore[assignment]
    return cached  # type: ignore[return-value]
