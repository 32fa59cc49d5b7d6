"""Claiming targets and putting a look-alike in place: synth's marker, written and checked.

Every look-alike writer (release, test set, Plus, MIMIC) builds under a staging folder in OUT
(:func:`chexpert.fileio.create_folder`), checks before any work that what it will replace is its own
(:func:`claim_targets`), and moves its result into place at the end (:func:`put_in_place`),
replacing only what the :data:`~chexpert.release.SYNTH_MARKER` it wrote (:func:`mark_folder`)
records. Imports no other synth module.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from chexpert.errors import option
from chexpert.release import SYNTH_MARKER
from chexpert.schema import MAX_MARKER_BYTES

__all__ = ["LeftoverWarning", "warn_leftovers", "claim_targets", "put_in_place", "mark_folder", "marker_bytes"]


def marker_bytes(release: str, seed: int, patients: dict[str, int], csvs: Mapping[str, bytes], files: Mapping[str, list[int]]) -> bytes:
    """The :data:`~chexpert.release.SYNTH_MARKER` of a look-alike: what synth wrote, file by file
    (size and CRC-32), and each CSV's rows. The same bytes for a seed whatever the layout."""
    rows = {name: data.rstrip(b"\n").count(b"\n") for name, data in csvs.items() if name != "groundtruth.csv"}
    marker = {
        "format": "chexpert-synth",
        "version": 1,
        "release": release,
        "seed": seed,
        "patients": patients,
        "rows": rows,
        "files": dict(sorted(files.items())),
    }
    return json.dumps(marker, separators=(",", ":")).encode() + b"\n"


def mark_folder(folder: pathlib.Path, release: str, seed: int, patients: dict[str, int], csvs: Mapping[str, bytes]) -> None:
    """Write the marker into ``folder``, recording every file below it (read back for its CRC-32)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            files[path.relative_to(folder).as_posix()] = [len(data), zlib.crc32(data)]
    (folder / SYNTH_MARKER).write_bytes(marker_bytes(release, seed, patients, csvs, files))


def _written_by_synth(target: pathlib.Path) -> str | None:
    """None if ``target`` (a release folder or zip in OUT) holds only what synth wrote there, as its
    marker records it; otherwise why not (the first foreign thing found)."""
    try:
        mode = target.lstat().st_mode
        if stat.S_ISDIR(mode):
            return _folder_written_by_synth(target)
        if stat.S_ISREG(mode) and target.suffix == ".zip":
            return _zip_written_by_synth(target)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return f"it cannot be checked ({exc})"
    return "it is not a folder or zip that synth writes"


def _load_marker(data: bytes) -> dict[str, list[int]] | None:
    try:
        marker: Any = json.loads(data)
    except (ValueError, RecursionError):
        return None  # not JSON, or nested too deeply: no marker synth wrote
    if not isinstance(marker, dict) or marker.get("format") != "chexpert-synth" or not isinstance(marker.get("files"), dict):
        return None
    return marker["files"]


def _folder_written_by_synth(target: pathlib.Path) -> str | None:
    marker = target / SYNTH_MARKER
    if not marker.is_file() or marker.is_symlink():
        return f"it has no {SYNTH_MARKER}"
    if marker.stat().st_size > MAX_MARKER_BYTES:
        return f"its {SYNTH_MARKER} is too large to be one synth wrote"
    files = _load_marker(marker.read_bytes())
    if files is None:
        return f"its {SYNTH_MARKER} is not one synth wrote"
    for folder, dirs, names in os.walk(target, onerror=_raise):
        for name in dirs + names:
            path = pathlib.Path(folder, name)
            rel = path.relative_to(target).as_posix()
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            if rel != SYNTH_MARKER and (not stat.S_ISREG(info.st_mode) or files.get(rel, [None])[0] != info.st_size):
                return f"synth did not write {path}"
    return None


def _zip_written_by_synth(target: pathlib.Path) -> str | None:
    top = target.name[: -len(".zip")]
    with zipfile.ZipFile(target) as zf:
        try:
            files = _load_marker(zf.read(f"{top}/{SYNTH_MARKER}"))
        except KeyError:
            return f"it has no {top}/{SYNTH_MARKER}"
        if files is None:
            return f"its {SYNTH_MARKER} is not one synth wrote"
        for info in zf.infolist():
            rel = info.filename.removeprefix(f"{top}/")
            if info.is_dir() or rel == SYNTH_MARKER:
                continue
            if files.get(rel) != [info.file_size, info.CRC]:
                return f"synth did not write its member {info.filename}"
    return None


def _raise(exc: OSError) -> None:
    raise exc


def _refuse_foreign(target: pathlib.Path) -> None:
    """Raise unless ``target`` holds only what synth wrote (``overwrite`` replaces nothing else)."""
    why = _written_by_synth(target)
    if why is not None:
        raise FileExistsError(
            f"{target} exists and was not written by chexpert synth ({why}); it may be a real release, so it was left as it is. "
            "Remove it yourself or choose another folder"
        )


class LeftoverWarning(UserWarning):
    """The output folder holds the staging folder of a synth run that never finished."""


def warn_leftovers(out: pathlib.Path) -> None:
    """Say so when ``out`` holds ``.synth-*`` staging folders of runs that were killed.

    They are not removed: another synth may be writing into the same folder right now, and
    nothing proves a name ours once its run is gone.
    """
    try:
        left = sorted(e.name for e in os.scandir(out) if e.name.startswith(".synth-") and e.is_dir(follow_symlinks=False))
    except OSError:
        return
    if left:
        import warnings

        warnings.warn(
            f"{out} holds {', '.join(left[:3])}{' …' if len(left) > 3 else ''}: staging left by a synth run that was killed "
            "before it finished; remove it once no other synth is writing there",
            LeftoverWarning,
            stacklevel=3,
        )


def claim_targets(out: pathlib.Path, names: Sequence[str], overwrite: bool) -> None:
    """Check that those of ``names`` in ``out`` that exist hold only what synth wrote.

    Refused unless ``overwrite``; checked before any work, so that a refusal costs nothing.
    """
    existing = [out / n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists; remove it, choose another folder, or overwrite it ({option('overwrite')}: replaces only what chexpert synth wrote)"
        )
    for target in existing:
        _refuse_foreign(target)  # a real download, or files of the user's, stay as they are


def put_in_place(out: pathlib.Path, staging: pathlib.Path, names: Sequence[str]) -> None:
    """Move ``staging/NAME`` to ``out/NAME`` for every name, replacing only what synth wrote there.

    Each target is checked again, all before any is replaced: it may have changed while synth drew.
    A replaced target is moved into ``staging``, which the caller removes.
    """
    for name in names:
        if (out / name).exists() or (out / name).is_symlink():
            _refuse_foreign(out / name)
    for name in names:
        target = out / name
        if target.exists():
            os.replace(target, staging / f"replaced-{name}")
        os.replace(staging / name, target)
