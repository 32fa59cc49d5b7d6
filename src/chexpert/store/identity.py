"""What a store was made from: the source's fingerprint, the producing code, and what changed.

The bottom of the store package: it imports none of its siblings (the writer's pixel code is
read as text, see :func:`code_identity`).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from chexpert import schema
from chexpert.errors import (
    InvalidArgumentError,
    ReleaseNotFoundError,
)
from chexpert.index import ROW_FIELDS, Index
from chexpert.release import Release
from chexpert.version import __version__


def source_fingerprint(release: Release, index: Index) -> dict[str, Any]:
    """What identifies a store's source: release kind, SHA-256 of each CSV used, and of the rows.

    >>> source_fingerprint(release, release.index("valid"))["csv_sha256"].keys()
    dict_keys(['valid'])
    """
    return fingerprint(release, index, None)


def select_rows(release: Release, splits: str | Sequence[str] | None, index: Index | None) -> Index:
    if index is not None and splits is not None:
        raise InvalidArgumentError("give splits or index, not both (select the splits in the index)")
    if index is None:
        if isinstance(splits, str):
            splits = (splits,)
        if splits is not None:
            for split in splits:
                if split not in release.splits:
                    raise InvalidArgumentError(f"split {split!r} is not in this release; valid: {', '.join(release.splits)}")
        index = release.index(splits)
    elif not isinstance(index, Index):
        raise InvalidArgumentError(f"index must be an Index (release.index(), select(), split_patients()), not {type(index).__name__}")
    if len(index) == 0:
        raise InvalidArgumentError("the selection is empty: nothing to prepare")
    return index


def _hash_index(index: Index) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(index.path.tolist()).encode("utf-8"))
    for name in ROW_FIELDS[1:]:
        column = np.ascontiguousarray(getattr(index, name))
        digest.update(f"|{name}:{column.dtype.str}:{column.shape}|".encode())
        digest.update(column.tobytes())
    return digest.hexdigest()


def fingerprint(release: Release, index: Index | None, splits_of: dict[str, str] | None) -> dict[str, Any]:
    """The source description; ``index`` None describes only CSVs (those named in ``splits_of``)."""
    if index is not None:
        names = [schema.SPLITS[s] for s in np.unique(index.split)]
    else:
        names = list(splits_of or release.splits)
    csv: dict[str, str] = {}
    for split in names:
        try:
            csv[split] = hashlib.sha256(release.csv_bytes(split)[0]).hexdigest()
        except ReleaseNotFoundError:
            csv[split] = "missing"
    found: dict[str, Any] = {"release": release.kind, "csv_sha256": csv}
    images = getattr(release, "images", None)  # CheXpert Plus: PNG, DICOM or the original JPEGs
    if images is not None:
        found["images"] = images
        found["labels"] = getattr(release, "labels", None)  # and its label source (recorded; rows_sha256 covers the codes)
    if index is not None:
        found["rows"] = len(index)
        found["rows_sha256"] = _hash_index(index)
    return found


def source_changes(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    changes = []
    if stored["release"] != now["release"]:
        changes.append(f"release is {now['release']}, the store was made from {stored['release']}")
    if stored.get("images") != now.get("images"):
        changes.append(f"the images are read from {now.get('images')} files, the store was made from {stored.get('images')} files")
    for split, digest in now["csv_sha256"].items():
        before = stored["csv_sha256"].get(split)
        if before is None:
            changes.append(f"the store has no {split} rows")
        elif digest == "missing":
            changes.append(f"the source has no {split} CSV any more")
        elif before != digest:
            changes.append(f"the {split} CSV changed since the store was made")
    if "rows_sha256" in now and now["rows_sha256"] != stored.get("rows_sha256"):
        changes.append(
            f"the selected rows differ ({now['rows']} selected, the store holds {stored.get('rows')}"
            + (", same count but other rows or labels" if now["rows"] == stored.get("rows") else "")
            + ")"
        )
    return changes


def dict_changes(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(set(before) | set(now))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k))


_CODE_IDENTITY: dict[str, Any] = {}
_DICOM_IDENTITY: dict[str, Any] = {}
#: The distributions that turn DICOM files into pixels (pydicom and the pylibjpeg plugins it
#: decodes compressed transfer syntaxes with), recorded in a store made from DICOMs.
_DICOM_DECODERS: Final[tuple[str, ...]] = ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")


def code_identity(images: str | None = None) -> dict[str, Any]:
    """chexpert's version, a hash of the code that turns files into pixels, and the decoders' versions.

    The hash covers chexpert.imaging and the function that writes the pixels, not the rest of
    the writer: editing messages or bookkeeping does not make existing stores stale. For a store
    made from DICOMs (``images="dicom"``, CheXpert Plus) it also covers chexpert.dicom (the
    display chain: rescale, VOI LUT, MONOCHROME1) and records the DICOM decoders' versions;
    stores of JPEGs and PNGs leave them out, so a pydicom update does not make them stale.
    """
    identity = dict(_common_identity())
    if images == "dicom":
        if not _DICOM_IDENTITY:
            from importlib import metadata

            from chexpert import dicom

            _DICOM_IDENTITY["dicom_sha256"] = hashlib.sha256(Path(dicom.__file__).read_bytes()).hexdigest()
            for name in _DICOM_DECODERS:
                try:
                    _DICOM_IDENTITY[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    _DICOM_IDENTITY[name] = None
        identity.update(_DICOM_IDENTITY)
    return identity


def _common_identity() -> dict[str, Any]:
    if not _CODE_IDENTITY:
        import cv2
        import PIL
        import simplejpeg

        from chexpert import imaging

        digest = hashlib.sha256(Path(imaging.__file__).read_bytes())
        digest.update(_pixel_code().encode())
        _CODE_IDENTITY.update(
            {
                "chexpert": __version__,
                "sha256": digest.hexdigest(),
                "simplejpeg": simplejpeg.__version__,
                "opencv": cv2.__version__,
                "pillow": PIL.__version__,
            }
        )
    return dict(_CODE_IDENTITY)


def _pixel_code() -> str:
    """The source of ``chexpert.store.writer.decode_range``, the function that writes the pixels.

    Read from writer.py as text (what ``inspect.getsource`` returns), not imported: the writer
    builds on this module. A writer without the function fails here rather than hashing less.
    """
    path = Path(__file__).with_name("writer.py")
    text = path.read_text(encoding="utf-8")
    for node in ast.parse(text, str(path)).body:
        if isinstance(node, ast.FunctionDef) and node.name == "decode_range":
            return "".join(text.splitlines(keepends=True)[node.lineno - 1 : node.end_lineno])
    raise RuntimeError(f"{path} has no function decode_range, which the store's code fingerprint covers")


def same_store(manifest: dict[str, Any], plan: dict[str, Any], on_error: str) -> list[str]:
    """Differences between a finished store (or an interrupted plan) and what is asked (empty: the same)."""
    if manifest.get("format_version") != plan["format_version"]:
        return [f"format version {manifest.get('format_version')} -> {plan['format_version']}"]
    try:
        return _changes(manifest, plan, on_error)
    except (KeyError, TypeError, AttributeError):
        return ["its manifest is incomplete (damaged or edited?)"]


def _changes(manifest: dict[str, Any], plan: dict[str, Any], on_error: str) -> list[str]:
    changes = []
    for key in ("size", "resize"):
        if manifest["params"][key] != plan["params"][key]:
            changes.append(f"{key} {manifest['params'][key]!r} -> {plan['params'][key]!r}")
    if (manifest.get("skipped") or manifest.get("blanked")) and manifest["params"].get("on_error") != on_error:
        changes.append(f"on_error {manifest['params'].get('on_error')!r} -> {on_error!r}")
    changes += source_changes(manifest["source"], plan["source"])
    if manifest["code"] != plan["code"]:
        changes.append("producing code " + dict_changes(manifest["code"], plan["code"]))
    if not changes and manifest.get("store_id") != plan["store_id"]:
        changes.append("the store's id")
    return changes
