"""Hugging Face ``datasets``: the index or a prepared store as a local, memory-mapped ``Dataset``.

Columns are named as in CheXpert's CSV (``Path``, ``Sex``, ``Age``, ``Frontal/Lateral``, ``AP/PA``,
then the 14 observations, each a ClassLabel of :data:`LABEL_STATES`), plus ``split``,
``patient``, ``study``, ``view`` and ``image``; with a policy, ``targets`` and ``mask`` too.
From a release, ``image`` is an ``Image`` holding the released JPEG bytes unchanged; from a
store it is an ``Array2D`` of the prepared uint8 pixels, copied from the memory map into Arrow
buffers without a Python object per pixel (``image_format="png"`` gives an ``Image`` instead).

The Arrow file is written once under ``cache_dir`` (default: the ``datasets`` cache) and opened
memory-mapped; a call with the same rows, source and options reuses it. Nothing is ever
uploaded: ``push_to_hub`` on these datasets (and on anything derived from them: selections,
maps, a ``DatasetDict`` holding one) raises :class:`RedistributionError`, because the Research
Use Agreement forbids redistribution.

>>> ds = to_hf_dataset(chexpert.open("CheXpert-v1.0-small").index("valid"), cache_dir="hf-cache")
>>> ds.features["Edema"].names
['negative', 'positive', 'uncertain', 'blank']
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from chexpert import schema
from chexpert.citation import BIBTEX, RESEARCH_USE_TERMS
from chexpert.errors import ChexpertError, InvalidArgumentError
from chexpert.fileio import atomic_writer
from chexpert.frameworks.numpy import store_rows
from chexpert.index import ROW_FIELDS, Index
from chexpert.policy import Policy, apply
from chexpert.validation import check_choice
from chexpert.version import __version__

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa

    from chexpert.store import Store

__all__ = ["to_hf_dataset", "RedistributionError", "LABEL_STATES", "label_state_classes", "IMAGE_FORMATS", "NO_REDISTRIBUTION", "png_bytes"]

#: Names of the four label states as class indices: 0 and 1 are the raw negative and positive
#: codes, and 0/1/2 are ``chexpert.policy``'s three-way (U-MultiClass) classes.
LABEL_STATES: Final[tuple[str, ...]] = ("negative", "positive", "uncertain", "blank")
#: How store pixels go into the dataset: "array" (Array2D uint8) or "png" (Image, lossless).
IMAGE_FORMATS: Final[tuple[str, ...]] = ("array", "png")

# Raw code (schema.Code) + 2 -> class position in LABEL_STATES (blank, uncertain, negative, positive).
_STATE_OF_CODE: Final = np.array([3, 2, 0, 1], dtype=np.int64)
# Written into DatasetInfo.license; it survives select/map/filter/concatenate and save_to_disk.
_LICENSE: Final = "CheXpert Research Use Agreement (no redistribution): https://stanfordaimi.azurewebsites.net/datasets/8cbd9ed4-2eb9-4565-affc-111cf4f7ebe2"
#: The agreement's term that a push to the Hub would break, quoted from ``chexpert.citation``.
NO_REDISTRIBUTION: Final[str] = " ".join(next(term for term in RESEARCH_USE_TERMS.split("\n  - ") if "redistribute" in term).split())
# Bump when the written columns change, so that old cache files are not reused.
_LAYOUT_VERSION: Final = 1
_CHUNK_ROWS: Final = 512


class RedistributionError(ChexpertError, PermissionError):
    """An upload of CheXpert data (or data derived from it) was refused: the agreement forbids it."""


def label_state_classes(codes: np.ndarray) -> np.ndarray:
    """Raw label codes (``schema.Code``) -> class positions in :data:`LABEL_STATES` (int64).

    >>> label_state_classes(np.array([1, 0, -1, -2], dtype=np.int8)).tolist()
    [1, 0, 2, 3]
    """
    return _STATE_OF_CODE[np.asarray(codes).astype(np.intp) + 2]


def to_hf_dataset(
    source: Index | Store,
    *,
    policy: str | Policy | None = None,
    images: bool = True,
    image_format: str = "array",
    cache_dir: str | os.PathLike[str] | None = None,
    rows: np.ndarray | Sequence[int] | Index | None = None,
) -> datasets.Dataset:
    """A local ``datasets.Dataset`` of the rows of an :class:`Index` or a prepared :class:`Store`.

    An index must be bound to its release (``release.index()``) for its images; ``images=False``
    leaves the image column out. ``policy`` (a preset name or :class:`~chexpert.policy.Policy`)
    adds ``targets`` (float32) and ``mask`` (bool) per row, in ``Policy.target_observations``
    order (also written in the dataset's description). ``image_format`` applies to stores, see
    :data:`IMAGE_FORMATS`. ``rows`` picks rows of a store as every loader does: row numbers, a
    boolean mask, or an Index such as a split, matched by image (see
    :func:`~chexpert.frameworks.numpy.store_rows`); an Index source is already the selection.

    HF's "numpy" and "torch" formats widen integers to int64 (8 bytes a pixel) unless told the
    dtype, as below; the Arrow file holds uint8.

    >>> ds = to_hf_dataset(store, policy="u-ones", cache_dir="/tmp/hf")
    >>> batch = ds.with_format("numpy", columns=["image"], dtype=np.uint8, output_all_columns=True)[:8]
    >>> batch["image"].shape, batch["image"].dtype
    ((8, 320, 320), dtype('uint8'))
    """
    import datasets

    from chexpert.store import Store

    check_choice("image_format", image_format, IMAGE_FORMATS)
    pixels: np.ndarray | _Gathered | None
    if isinstance(source, Store):
        if rows is None:
            index, pixels = source.index, source.images
        else:
            positions = store_rows(source, rows)
            index, pixels = source.index.take(positions), _Gathered(source.images, positions)
    elif isinstance(source, Index):
        if rows is not None:
            raise InvalidArgumentError("rows selects rows of a Store; an Index is its own selection (pass index.take(rows) or the split)")
        index, pixels = source, None
        if images and source.release is None:
            raise InvalidArgumentError(
                "this Index is not bound to a release, so its images cannot be read; use release.index(...), pass a prepared Store, or images=False"
            )
    else:
        raise TypeError(f"to_hf_dataset takes an Index or a Store, not {type(source).__name__}")
    resolved = None if policy is None else apply(policy, index)

    features = _features(pixels, images, image_format, resolved)
    key = _fingerprint(source, index, images, image_format, policy)
    folder = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "chexpert"
    path = folder / f"chexpert-{key[:24]}.arrow"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _write(path, features, index, pixels, images, image_format, resolved)
    description = "CheXpert, prepared by chexpert " + __version__ + ".\n"
    if resolved is not None:
        description += "targets and mask columns: " + ", ".join(resolved.observations) + "\n"
    info = datasets.DatasetInfo(
        description=description + "\n" + RESEARCH_USE_TERMS,
        citation=BIBTEX,
        homepage="https://stanfordmlgroup.github.io/competitions/chexpert/",
        license=_LICENSE,
        features=features,
    )
    _install_upload_guard()
    return datasets.Dataset.from_file(str(path), info=info)


# -- building ------------------------------------------------------------------------------------


class _Gathered:
    """Selected rows of a store's pixels, read block by block as the writer asks for them."""

    def __init__(self, images: np.ndarray, positions: np.ndarray) -> None:
        self._images = images
        self._positions = positions
        self.shape = (len(positions), *images.shape[1:])

    def __getitem__(self, rows: slice) -> np.ndarray:
        wanted = self._positions[rows]
        order = np.argsort(wanted, kind="stable")  # one forward pass over the memory map
        block = np.empty((len(wanted), *self.shape[1:]), dtype=self._images.dtype)
        block[order] = self._images[wanted[order]]
        return block


def _features(pixels: np.ndarray | _Gathered | None, images: bool, image_format: str, targets: Any) -> datasets.Features:
    import datasets

    columns: dict[str, Any] = {}
    if images:
        if pixels is not None and image_format == "array":
            columns["image"] = datasets.Array2D(shape=pixels.shape[1:], dtype="uint8")
        else:
            columns["image"] = datasets.Image()
    columns |= {
        "Path": datasets.Value("string"),
        "Sex": datasets.ClassLabel(names=list(schema.SEXES)),
        "Age": datasets.Value("int16"),
        "Frontal/Lateral": datasets.ClassLabel(names=list(schema.VIEWS)),
        "AP/PA": datasets.ClassLabel(names=list(schema.PROJECTIONS)),
    }
    columns |= {name: datasets.ClassLabel(names=list(LABEL_STATES)) for name in schema.OBSERVATIONS}
    columns |= {
        "split": datasets.ClassLabel(names=list(schema.SPLITS)),
        "patient": datasets.Value("int32"),
        "study": datasets.Value("int16"),
        "view": datasets.Value("int16"),
    }
    if targets is not None:
        k = len(targets.observations)
        columns["targets"] = datasets.Sequence(datasets.Value("float32"), length=k)
        columns["mask"] = datasets.Sequence(datasets.Value("bool"), length=k)
    return datasets.Features(columns)


def _write(path: Path, features: datasets.Features, index: Index, pixels: np.ndarray | _Gathered | None, images: bool, image_format: str, targets: Any) -> None:
    """Write the Arrow file chunk by chunk under a temporary name, then rename it into place."""
    from datasets.arrow_writer import ArrowWriter

    image_column = _image_column(index, pixels, image_format, features) if images else None
    with atomic_writer(path, sync=False) as handle:
        writer = ArrowWriter(features=features, stream=handle)
        for start in range(0, len(index), _CHUNK_ROWS):
            rows = slice(start, min(start + _CHUNK_ROWS, len(index)))
            writer.write_table(_table(features, index, rows, image_column, targets))
        writer.finalize()


def _table(features: datasets.Features, index: Index, rows: slice, image_column: Callable[[slice], pa.Array] | None, targets: Any) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, pa.Array] = {}
    if image_column is not None:
        columns["image"] = image_column(rows)
    states = label_state_classes(index.labels[rows])
    columns |= {
        "Path": pa.array(index.path[rows].tolist(), type=pa.string()),
        "Sex": pa.array(index.sex[rows].astype(np.int64)),
        "Age": pa.array(index.age[rows]),
        "Frontal/Lateral": pa.array((~index.frontal[rows]).astype(np.int64)),
        "AP/PA": pa.array(index.projection[rows].astype(np.int64)),
    }
    columns |= {name: pa.array(states[:, j]) for j, name in enumerate(schema.OBSERVATIONS)}
    columns |= {
        "split": pa.array(index.split[rows].astype(np.int64)),
        "patient": pa.array(index.patient[rows]),
        "study": pa.array(index.study[rows]),
        "view": pa.array(index.view[rows]),
    }
    if targets is not None:
        k = len(targets.observations)
        columns["targets"] = pa.FixedSizeListArray.from_arrays(pa.array(targets.targets[rows].ravel()), k)
        columns["mask"] = pa.FixedSizeListArray.from_arrays(pa.array(targets.mask[rows].ravel()), k)
    return pa.table(columns)


def _image_column(index: Index, pixels: np.ndarray | _Gathered | None, image_format: str, features: datasets.Features) -> Callable[[slice], pa.Array]:
    import pyarrow as pa

    def encoded(blobs: list[bytes]) -> pa.Array:
        return pa.StructArray.from_arrays([pa.array(blobs, type=pa.binary()), pa.nulls(len(blobs), pa.string())], names=["bytes", "path"])

    if pixels is None:
        release = index.release

        def released(rows: slice) -> pa.Array:
            return encoded([release.read_bytes(p) for p in index.path[rows].tolist()])  # type: ignore[union-attr]

        return released
    if image_format == "png":
        return lambda rows: encoded([png_bytes(image) for image in pixels[rows]])

    extension = features["image"]()  # the Array2D's Arrow extension type

    def arrays(rows: slice) -> pa.Array:
        # One contiguous copy out of the memory map; Arrow wraps it without a per-pixel step.
        block = np.ascontiguousarray(pixels[rows])
        n, h, w = block.shape
        values = pa.Array.from_buffers(pa.uint8(), block.size, [None, pa.py_buffer(block)])
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * h * w + 1, w, dtype=np.int32)), values)
        outer = pa.ListArray.from_arrays(pa.array(np.arange(0, n * h + 1, h, dtype=np.int32)), inner)
        return pa.ExtensionArray.from_storage(extension, outer)

    return arrays


def png_bytes(image: np.ndarray) -> bytes:
    """A 2-D uint8 image as lossless PNG bytes (default compression).

    >>> png_bytes(np.zeros((4, 4), np.uint8))[:4]
    b'\\x89PNG'
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _fingerprint(source: Any, index: Index, images: bool, image_format: str, policy: str | Policy | None) -> str:
    """A key for the cache file: the rows and their labels, the pixel source, and the options."""
    digest = hashlib.sha256()
    digest.update("\n".join(index.path.tolist()).encode())
    for name in ROW_FIELDS[1:]:
        digest.update(np.ascontiguousarray(getattr(index, name)).tobytes())
    if images:
        manifest = getattr(source, "manifest", None)
        if manifest is not None:
            pixels = {k: manifest.get(k) for k in ("source", "params", "code", "shape")}
        else:
            release = index.release
            pixels = {"root": str(release.root), "kind": release.kind, "layout": release.layout}  # type: ignore[union-attr]
    else:
        pixels = None
    digest.update(json.dumps([_LAYOUT_VERSION, __version__, pixels, images, image_format, repr(policy)], sort_keys=True, default=str).encode())
    return digest.hexdigest()


# -- refusing uploads ------------------------------------------------------------------------------


def _is_chexpert(dataset: Any) -> bool:
    info = getattr(dataset, "info", None)
    return _LICENSE in (getattr(info, "license", None) or "")


def _refuse(kind: str) -> RedistributionError:
    return RedistributionError(
        f"{kind}.push_to_hub refused: this dataset holds CheXpert data, and the Research Use Agreement says: "
        f'"{NO_REDISTRIBUTION}". Keep it local; collaborators must register and download CheXpert themselves.'
    )


def _install_upload_guard() -> None:
    """Make push_to_hub refuse CheXpert datasets, whatever was derived from them; others pass through."""
    import datasets

    for cls, holds_chexpert in (
        (datasets.Dataset, _is_chexpert),
        (datasets.IterableDataset, _is_chexpert),
        (datasets.DatasetDict, lambda self: any(_is_chexpert(d) for d in self.values())),
        (datasets.IterableDatasetDict, lambda self: any(_is_chexpert(d) for d in self.values())),
    ):
        if not getattr(cls.push_to_hub, "_chexpert_guard", False):
            cls.push_to_hub = _guarded(cls.push_to_hub, holds_chexpert, cls.__name__)
    convert = datasets.Dataset.to_iterable_dataset
    if not getattr(convert, "_chexpert_guard", False):
        # The conversion keeps only the features of the info; carry the agreement's mark over.
        @functools.wraps(convert)
        def to_iterable_dataset(self: Any, *args: Any, **kwargs: Any) -> Any:
            iterable = convert(self, *args, **kwargs)
            if _is_chexpert(self):
                iterable.info.license = self.info.license
            return iterable

        to_iterable_dataset._chexpert_guard = True  # type: ignore[attr-defined]
        datasets.Dataset.to_iterable_dataset = to_iterable_dataset


def _guarded(push: Callable[..., Any], holds_chexpert: Callable[[Any], bool], kind: str) -> Callable[..., Any]:
    @functools.wraps(push)
    def push_to_hub(self: Any, *args: Any, **kwargs: Any) -> Any:
        if holds_chexpert(self):
            raise _refuse(kind)
        return push(self, *args, **kwargs)

    push_to_hub._chexpert_guard = True  # type: ignore[attr-defined]
    return push_to_hub
