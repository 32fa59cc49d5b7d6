"""Export a prepared store as WebDataset tar shards, for training across machines from object storage.

Each sample is a group of tar members sharing a key (the image's ``split/patientNNNNN/studyN/viewN_kind``):

==================== ===============================================================================
``KEY.npy``          the prepared image, (size, size) uint8 (``.png`` with ``image_format="png"``)
``KEY.labels.npy``   the 14 raw label codes, int8, in ``schema.OBSERVATIONS`` order (``schema.Code``)
``KEY.targets.npy``  with a policy: float32 targets, ``KEY.mask.npy`` bool, and ``KEY.classes.npy``
                     int64 when the policy has three-way columns
``KEY.json``         the CSV Path, store row, split, patient, study, view, sex, age, projection
==================== ===============================================================================

Samples are written in a seeded shuffled order, so each shard mixes patients and views; shard
names are ``chexpert-000000.tar``, ...; ``manifest.json`` (written last) lists them with their
sample counts, the observations of the targets, and the brace pattern to give ``webdataset``.
Reading needs only ``webdataset``, which splits shards by node and worker itself::

    wds.WebDataset(pattern, nodesplitter=wds.split_by_node, shardshuffle=100).shuffle(1000).decode()

Tar members carry fixed owners and times: the same store and arguments give identical shards.
Shards are copies of CheXpert images: the Research Use Agreement forbids sharing them.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError, StoreError, option
from chexpert.fileio import atomic_write, atomic_writer, is_temporary
from chexpert.frameworks.hf import png_bytes
from chexpert.frameworks.numpy import StoreArrays
from chexpert.index import Index
from chexpert.policy import PRESETS, Policy, SoftLabels, get_policy
from chexpert.sampling import EpochSampler
from chexpert.validation import check_choice, check_int

if TYPE_CHECKING:
    from chexpert.store import Store

__all__ = ["export_webdataset", "IMAGE_FORMATS", "MANIFEST"]

IMAGE_FORMATS: Final[tuple[str, ...]] = ("npy", "png")
MANIFEST: Final = "manifest.json"
_SHARD: Final = "chexpert-{:06d}.tar"
_MTIME: Final = 1_548_115_200  # 2019-01-22, CheXpert's release: fixed so that shards are reproducible


def export_webdataset(
    store: Store,
    out: str | os.PathLike[str],
    *,
    shard_size: int = 5000,
    policy: str | Policy | None = None,
    image_format: str = "npy",
    rows: np.ndarray | Index | None = None,
    shuffle: bool = True,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    soft_labels: SoftLabels | None = None,
) -> list[Path]:
    """Write the store's rows (or ``rows``) as tar shards of ``shard_size`` samples into ``out``.

    Returns the shard paths. ``rows`` selects store rows: row numbers, a boolean mask, or an
    Index (a split or selection, matched by image path; see
    :func:`~chexpert.frameworks.numpy.store_rows`). ``policy`` adds targets and mask (see the
    module docstring); ``soft_labels`` feeds its U-SelfTrained columns (see
    :func:`chexpert.policy.apply`), as ``chexpert-paper-best`` needs.
    ``out`` must be new or empty unless ``overwrite``, which first removes the shards and
    manifest of an earlier export there. ``progress(done, total)`` is called after each shard.

    >>> shards = export_webdataset(store, "shards/", shard_size=50, policy="u-ones")
    >>> json.loads((Path("shards") / "manifest.json").read_text())["pattern"]  # 'chexpert-{000000..000111}.tar' for 223,414 images in shards of 2000
    'chexpert-{000000..000002}.tar'
    """
    shard_size = check_int("shard_size", shard_size, low=1)
    check_choice("image_format", image_format, IMAGE_FORMATS)
    resolved = get_policy(policy) if policy is not None else None
    if soft_labels is not None and (resolved is None or not resolved.soft_label_observations):
        raise InvalidArgumentError(
            f"{option('soft_labels')} feeds a policy's U-SelfTrained columns, but "
            + ("no policy is given" if resolved is None else "this policy has none")
            + f"; presets with one: {', '.join(n for n, p in PRESETS.items() if p.soft_label_observations)}"
        )
    arrays = StoreArrays(store, policy=resolved if resolved is not None else "u-ignore", rows=rows, soft_labels=soft_labels)
    out = Path(out)
    _prepare_folder(out, overwrite)

    n = len(arrays)
    order = EpochSampler(n, 1, shuffle=shuffle, seed=seed).epoch_order(0)
    index = store.index
    shards: list[dict[str, Any]] = []
    paths: list[Path] = []
    for number, first in enumerate(range(0, n, shard_size)):
        positions = order[first : first + shard_size]
        path = out / _SHARD.format(number)
        _write_shard(path, arrays, index, positions, resolved is not None, image_format)
        shards.append({"name": path.name, "samples": len(positions)})
        paths.append(path)
        if progress is not None:
            progress(first + len(positions), n)
    manifest = {
        "format": "chexpert-webdataset",
        "version": 1,
        "pattern": _SHARD.replace("{:06d}", "{" + f"{0:06d}..{max(len(shards) - 1, 0):06d}" + "}"),
        "shards": shards,
        "samples": n,
        "image": {"format": image_format, "size": int(store.size), "resize": store.resize, "dtype": "uint8"},
        "labels": {"observations": list(schema.OBSERVATIONS), "codes": {c.name.lower(): int(c) for c in schema.Code}},
        "policy": None if resolved is None else {"repr": repr(resolved), "observations": list(arrays.observations), "soft_labels": soft_labels is not None},
        "store": {"path": str(store.path), "source": store.manifest.get("source")},
        "shuffle": shuffle,
        "seed": seed,
    }
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return paths


def _ours(name: str) -> bool:
    return name == MANIFEST or (name.startswith("chexpert-") and name.endswith((".tar", ".tar.tmp")))


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    ours = [name for name in present if _ours(name) or (is_temporary(name) and _ours(name[1:].rsplit(".", 3)[0]))]
    if not overwrite or len(ours) != len(present):
        others = [name for name in present if name not in ours]
        if others:
            why = f"holds files that are not a chexpert export ({', '.join(others[:5])})"
        elif MANIFEST not in ours:  # stopped before its manifest: an interrupt, a kill, a full disk
            why = f"holds an unfinished export ({len(ours)} shards, no {MANIFEST}; {option('overwrite')} replaces it)"
        else:
            why = f"holds an earlier export ({option('overwrite')} replaces it)"
        raise StoreError(f"{out} {why}; choose an empty or new folder")
    # The manifest goes first: a folder without one is never taken for a finished export.
    (out / MANIFEST).unlink(missing_ok=True)
    for name in ours:
        (out / name).unlink(missing_ok=True)


def _write_shard(path: Path, arrays: StoreArrays, index: Index, positions: np.ndarray, with_targets: bool, image_format: str) -> None:
    with atomic_writer(path, sync=False) as handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for position in positions.tolist():
            row = int(arrays.rows[position])
            key = schema.strip_release_prefix(str(index.path[row])).rsplit(".", 1)[0]
            image = np.asarray(arrays.images[row])
            members = {"npy": _npy(image)} if image_format == "npy" else {"png": png_bytes(image)}
            members["labels.npy"] = _npy(index.labels[row])
            if with_targets:
                members["targets.npy"] = _npy(arrays.targets[position])
                members["mask.npy"] = _npy(arrays.mask[position])
                if arrays.classes is not None:
                    members["classes.npy"] = _npy(arrays.classes[position])
            members["json"] = json.dumps(_metadata(index, row), separators=(",", ":")).encode()
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size, info.mtime, info.mode = len(data), _MTIME, 0o444
                tar.addfile(info, io.BytesIO(data))


def _metadata(index: Index, row: int) -> dict[str, Any]:
    return {
        "path": str(index.path[row]),
        "row": row,
        "split": schema.SPLITS[index.split[row]],
        "patient": int(index.patient[row]),
        "study": int(index.study[row]),
        "view": int(index.view[row]),
        "frontal": bool(index.frontal[row]),
        "sex": schema.SEXES[index.sex[row]],
        "age": int(index.age[row]),
        "projection": schema.PROJECTIONS[index.projection[row]],
    }


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
