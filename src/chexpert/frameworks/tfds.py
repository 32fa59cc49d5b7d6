"""A TensorFlow Datasets builder, ``chexpert_kit``, over any CheXpert download or a prepared store.

Importing this module registers the builder. Its configs:

============ =========================================================================================
``catalog``  TFDS's own ``chexpert`` 3.1.0, example for example: ``image`` (None, None, 3) as stored,
             ``image_view``, ``label`` (14 ClassLabels uncertain/positive/negative/unmentioned in CSV
             column order), ``name`` (the CSV Path), splits train and validation, the Path as key.
``small``    The small release as released: one-channel images (the JPEG bytes unchanged), the 14
             observations by name with their four states, metadata (patient, study, view, sex, age,
             projection), and the test split when its labels are present.
``full``     The same over the full-resolution release, including the Stanford AIMI batch zips.
``store224``, ``store320``  Images pre-resized by ``chexpert prepare`` (lossless PNG), same features.
============ =========================================================================================

The manual folder may hold the release as a folder, its zip, the AIMI batch zips (anything
:func:`chexpert.open` reads), or, for the store configs, a prepared store. Other store sizes:
``ChexpertKit(config=ChexpertConfig(name="store512", source="store", size=512), ...)``.
For random access without TensorFlow at read time, build with ``file_format="array_record"``
and read with ``tfds.data_source``.

>>> import tensorflow_datasets as tfds
>>> import chexpert.frameworks.tfds  # registers "chexpert_kit"
>>> data_dir, root = "tensorflow_datasets", "~/data/CheXpert-v1.0-small"
>>> ds = tfds.load("chexpert_kit/small", split="train", data_dir=data_dir,
...                download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=root)})
Downloading and preparing dataset ...
Dataset chexpert_kit downloaded and prepared to .... Subsequent calls will reuse this data.
>>> len(ds)
27
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import tensorflow_datasets as tfds

from chexpert import schema
from chexpert.citation import BIBTEX, RESEARCH_USE_TERMS
from chexpert.errors import InvalidArgumentError, ReleaseNotFoundError
from chexpert.frameworks.hf import LABEL_STATES, label_state_classes, png_bytes
from chexpert.index import Index
from chexpert.release import DOWNLOAD_HELP, Release, open_release
from chexpert.validation import check_choice

if TYPE_CHECKING:
    from chexpert.store import Store

__all__ = ["ChexpertKit", "ChexpertConfig", "CATALOG_LABELS", "LABEL_STATES", "SOURCES", "TFDS_SPLITS"]

#: The catalog's label ClassLabel names, in its order (TFDS ``chexpert`` 3.1.0).
CATALOG_LABELS: Final[tuple[str, ...]] = ("uncertain", "positive", "negative", "unmentioned")
SOURCES: Final[tuple[str, ...]] = ("small", "full", "store")
#: chexpert split name -> TFDS split name (TFDS says "validation").
TFDS_SPLITS: Final[dict[str, str]] = {"train": "train", "valid": "validation", "test": "test"}

# Raw code (schema.Code) + 2 -> class position in CATALOG_LABELS.
_CATALOG_CLASS: Final = np.array([3, 0, 2, 1], dtype=np.int64)  # blank, uncertain, negative, positive

_DESCRIPTION = (
    """\
CheXpert: 224,316 chest radiographs of 65,240 patients from Stanford Hospital, each labelled for 14
observations as positive, negative, uncertain or not mentioned, with radiologist-labelled validation
and test sets. Built by the chexpert toolkit from a local download; see its documentation.

"""
    + RESEARCH_USE_TERMS
)


@dataclasses.dataclass(eq=False)
class ChexpertConfig(tfds.core.BuilderConfig):
    """What ``chexpert_kit`` builds: source data, image channels, label form, extra features.

    ``source``: "small" or "full" (a release, any layout) or "store" (a prepared store of ``size``).
    ``labels``: "catalog" (TFDS's Sequence of ClassLabels) or "named" (a ClassLabel of
    :data:`LABEL_STATES` per observation name). ``metadata`` adds patient, study, view, sex, age and
    projection. ``test_split`` adds "test" when the test labels are present.

    >>> ChexpertConfig(name="store512", source="store", size=512)
    ChexpertConfig(name='store512', ..., source='store', channels=1, labels='named', metadata=True, test_split=True, size=512)
    """

    source: str = "small"
    channels: int = 1
    labels: str = "named"
    metadata: bool = True
    test_split: bool = True
    size: int | None = None

    def __post_init__(self) -> None:
        check_choice("source", self.source, SOURCES)
        check_choice("labels", self.labels, ("catalog", "named"))
        check_choice("channels", self.channels, (1, 3))
        if (self.source == "store") != (self.size is not None):
            raise InvalidArgumentError(f"size is given exactly for source='store' (got source={self.source!r}, size={self.size!r})")
        if self.size is not None and self.size < 1:
            raise InvalidArgumentError(f"size must be positive, not {self.size}")
        if self.source == "store" and self.channels != 1:
            raise InvalidArgumentError("a prepared store holds one-channel images; use channels=1")


class ChexpertKit(tfds.core.GeneratorBasedBuilder):
    """CheXpert for TensorFlow Datasets, from any download layout or a prepared store."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: Final = {"1.0.0": "First release: catalog-compatible, full release, metadata, named labels, stores."}
    BUILDER_CONFIGS: Final = [
        ChexpertConfig(
            name="catalog",
            version="3.1.0",
            description="TFDS's own `chexpert` 3.1.0, example for example (small release, train and validation).",
            source="small",
            channels=3,
            labels="catalog",
            metadata=False,
            test_split=False,
        ),
        ChexpertConfig(name="small", description="Small release: one channel, named observations, metadata, test split."),
        ChexpertConfig(name="full", source="full", description="Full-resolution release (folder, zip or AIMI batch zips)."),
        ChexpertConfig(name="store224", source="store", size=224, description="Prepared store of 224 x 224 images."),
        ChexpertConfig(name="store320", source="store", size=320, description="Prepared store of 320 x 320 images."),
    ]
    DEFAULT_CONFIG_NAME = "small"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        DOWNLOAD_HELP + "\nPut what you downloaded (the zip, its unpacked folder, or the AIMI batch zips) in the manual folder "
        "(`download_config=tfds.download.DownloadConfig(manual_dir=...)`). For the store configs, the manual folder "
        "is a store made by `chexpert prepare` (or holds one)."
    )

    @property
    def _config(self) -> ChexpertConfig:
        return self.builder_config  # type: ignore[return-value]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self._config
        if config.labels == "catalog":
            label: tfds.features.FeatureConnector = tfds.features.Sequence(tfds.features.ClassLabel(names=list(CATALOG_LABELS)))
            label_key = "label"
        else:
            label = tfds.features.FeaturesDict({name: tfds.features.ClassLabel(names=list(LABEL_STATES)) for name in schema.OBSERVATIONS})
            label_key = "labels"
        if config.source == "store":
            image = tfds.features.Image(shape=(config.size, config.size, 1), encoding_format="png")
        else:
            image = tfds.features.Image(shape=(None, None, config.channels))
        features: dict[str, tfds.features.FeatureConnector] = {
            "name": tfds.features.Text(),
            "image": image,
            label_key: label,
            "image_view": tfds.features.ClassLabel(names=[v.lower() for v in schema.VIEWS]),
        }
        if config.metadata:
            features |= {
                "patient": tfds.features.Scalar(dtype=np.int32),
                "study": tfds.features.Scalar(dtype=np.int32),
                "view": tfds.features.Scalar(dtype=np.int32),
                "sex": tfds.features.ClassLabel(names=list(schema.SEXES)),
                "age": tfds.features.Scalar(dtype=np.int32),
                "projection": tfds.features.ClassLabel(names=list(schema.PROJECTIONS)),
            }
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", label_key),
            homepage="https://stanfordmlgroup.github.io/competitions/chexpert/",
            citation=BIBTEX,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        config = self._config
        try:
            manual = Path(dl_manager.manual_dir)
        except AssertionError as exc:
            # TFDS says "missing or empty manual folder" with an AssertionError; say it with the
            # error chexpert uses for a missing download (a FileNotFoundError), instructions included.
            message = str(exc)
            if "instructions" not in message:
                message += "\n" + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            raise ReleaseNotFoundError(message) from None
        if config.source == "store":
            store = _find_store(manual, config.size)  # type: ignore[arg-type]
            index, read = store.index, _store_reader(store.images)
            splits = [s for s in schema.SPLITS if (index.split == schema.SPLITS.index(s)).any()]
        else:
            try:
                release = open_release(manual, kind=config.source)
            except ReleaseNotFoundError as exc:
                if DOWNLOAD_HELP in str(exc):
                    raise
                # The manual folder is where the download belongs: whatever else is there, it is still to be made.
                raise ReleaseNotFoundError(f"{exc}\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from None
            missing = [s for s in ("train", "valid") if s not in release.splits]
            if missing:
                raise ReleaseNotFoundError(f"{manual} has no {' or '.join(missing)} labels. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
            splits = [s for s in release.splits if s in ("train", "valid", "test")]
            index, read = release.index(splits), _release_reader(release)
        if not config.test_split and "test" in splits:
            splits.remove("test")
        return {TFDS_SPLITS[split]: self._generate_examples(index, np.flatnonzero(index.split == schema.SPLITS.index(split)), read) for split in splits}

    def _generate_examples(self, index: Index, rows: np.ndarray, read: Callable[[int, str], bytes]) -> Iterator[tuple[str, dict[str, Any]]]:  # type: ignore[override]
        config = self._config
        views = [v.lower() for v in schema.VIEWS]
        names = np.asarray(index.path, dtype=object)
        if config.labels == "catalog":
            label_classes = _CATALOG_CLASS[index.labels.astype(np.intp) + 2]
        else:
            label_classes = label_state_classes(index.labels)
        for row in rows.tolist():
            name = str(names[row])
            example: dict[str, Any] = {
                "name": name,
                "image": read(row, name),
                "image_view": views[0 if index.frontal[row] else 1],
            }
            if config.labels == "catalog":
                example["label"] = label_classes[row]
            else:
                example["labels"] = dict(zip(schema.OBSERVATIONS, label_classes[row].tolist()))
            if config.metadata:
                example |= {
                    "patient": int(index.patient[row]),
                    "study": int(index.study[row]),
                    "view": int(index.view[row]),
                    "sex": int(index.sex[row]),
                    "age": int(index.age[row]),
                    "projection": int(index.projection[row]),
                }
            yield name, example


def _release_reader(release: Release) -> Callable[[int, str], bytes]:
    """Image bytes exactly as released (the catalog stores them unchanged too)."""

    def read(row: int, name: str) -> bytes:
        return release.read_bytes(name)

    return read


def _store_reader(images: np.ndarray) -> Callable[[int, str], bytes]:
    """Store rows as lossless PNG bytes."""

    def read(row: int, name: str) -> bytes:
        return png_bytes(np.asarray(images[row]))

    return read


def _find_store(manual: Path, size: int) -> Store:
    """The prepared store of ``size`` at ``manual`` or in one of its sub-folders."""
    from chexpert.store import open_store

    candidates = [manual, *sorted(p for p in manual.iterdir() if p.is_dir())]
    found = []
    for folder in candidates:
        if (folder / "manifest.json").is_file():
            store = open_store(folder)
            if store.size == size:
                return store
            found.append(f"{folder} ({store.size} x {store.size})")
    raise ReleaseNotFoundError(
        f"no prepared store of {size} x {size} images in {manual}"
        + (f"; found {', '.join(found)}" if found else "")
        + f". Make one with `chexpert prepare RELEASE --out STORE --size {size}` and pass STORE as the manual folder."
    )
