"""The chexpert_kit TFDS builder: catalog parity with TFDS's own ``chexpert``, the richer configs,
ArrayRecord random access, and the missing-data error. Builds are tiny and go to tmp data dirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import tensorflow_datasets as tfds
else:
    tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("tensorflow")

import chexpert.frameworks.tfds as ck  # (registers chexpert_kit)
from chexpert import schema
from chexpert.errors import ReleaseNotFoundError
from chexpert.imaging import decode
from chexpert.release import open_release
from chexpert.store import prepare
from chexpert.synth import synthesize
from tests.conftest import TINY_LOOK_ALIKE

STATE_OF_CODE = {1: "positive", 0: "negative", -1: "uncertain", -2: "blank"}


@pytest.fixture(scope="module")
def manual(look_alike: Callable[..., Path]) -> Path:
    """A manual folder holding CheXpert-v1.0-small (3 train, 2 valid, 2 test patients: about 15 images)."""
    return look_alike(**TINY_LOOK_ALIKE).parent  # a folder of its own, the small release alone


def _build(name: str, manual_dir: Path, data_dir: Path, **kwargs: object) -> tfds.core.DatasetBuilder:
    builder = tfds.builder(name, data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def _split_sizes(manual: Path, splits: tuple[str, ...]) -> dict[str, int]:
    index = open_release(manual).index(splits)
    return {ck.TFDS_SPLITS[s]: int((index.split == schema.SPLITS.index(s)).sum()) for s in splits}


def _examples(builder: tfds.core.DatasetBuilder, split: str, *, raw_images: bool = False) -> list[dict]:
    """Every example of ``split``; ``raw_images`` keeps the stored image bytes undecoded."""
    decoders = {"image": tfds.decode.SkipDecoding()} if raw_images else None
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)))


def test_catalog_config_reproduces_tfds_chexpert(manual: Path, tmp_path: Path) -> None:
    theirs = _build("chexpert", manual, tmp_path / "theirs")
    ours = _build("chexpert_kit/catalog", manual, tmp_path / "ours")

    assert str(ours.info.version) == str(theirs.info.version) == "3.1.0"
    assert ours.info.features.to_json() == theirs.info.features.to_json()
    assert ours.info.supervised_keys == theirs.info.supervised_keys
    assert ours.info.features["label"].feature.names == ["uncertain", "positive", "negative", "unmentioned"]
    assert (
        {s: ours.info.splits[s].num_examples for s in ours.info.splits}
        == {s: theirs.info.splits[s].num_examples for s in theirs.info.splits}
        == _split_sizes(manual, ("train", "valid"))
    )

    index = open_release(manual).index(("train", "valid"))
    labels_of = {str(p): row for p, row in zip(index.path, index.labels)}
    states_seen = set()
    for split in ("train", "validation"):
        a, b = _examples(theirs, split), _examples(ours, split)
        # TFDS orders examples by a hash of their keys: the same order means the same keys.
        assert [x["name"] for x in a] == [x["name"] for x in b]
        for x, y in zip(a, b):
            assert x["image"].shape[2] == 3
            np.testing.assert_array_equal(x["image"], y["image"])
            np.testing.assert_array_equal(x["label"], y["label"])
            assert x["image_view"] == y["image_view"]
            # And both are right: the label codes of the CSV, the view of the file name.
            name = x["name"].decode()
            names = ours.info.features["label"].feature.names
            expected = [
                {"positive": "positive", "negative": "negative", "uncertain": "uncertain", "blank": "unmentioned"}[STATE_OF_CODE[int(c)]]
                for c in labels_of[name]
            ]
            assert [names[i] for i in y["label"]] == expected
            assert y["image_view"] == (0 if "frontal" in name else 1)
            states_seen.update(expected)
    assert states_seen == {"uncertain", "positive", "negative", "unmentioned"}  # the fixture exercises every code


def test_small_config_named_labels_metadata_and_test_split(manual: Path, tmp_path: Path) -> None:
    builder = _build("chexpert_kit/small", manual, tmp_path)
    assert set(builder.info.splits) == {"train", "validation", "test"}
    features = builder.info.features
    assert features["image"].shape == (None, None, 1)
    assert set(features["labels"].keys()) == set(schema.OBSERVATIONS)
    assert features["labels"]["Edema"].names == list(ck.LABEL_STATES)

    release = open_release(manual)
    index = release.index()
    row_of = {str(p): i for i, p in enumerate(index.path)}
    seen = []
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        for ex in _examples(builder, split, raw_images=True):
            path = ex["name"].decode()
            i = row_of[path]
            seen.append(i)
            assert schema.SPLITS[index.split[i]] == name
            assert ex["image"] == release.read_bytes(path)  # the released JPEG, byte for byte
            assert {o: ck.LABEL_STATES[v] for o, v in ex["labels"].items()} == {o: STATE_OF_CODE[int(c)] for o, c in zip(schema.OBSERVATIONS, index.labels[i])}
            assert (ex["patient"], ex["study"], ex["view"], ex["age"]) == (index.patient[i], index.study[i], index.view[i], index.age[i])
            assert features["sex"].names[ex["sex"]] == schema.SEXES[index.sex[i]]
            assert features["projection"].names[ex["projection"]] == schema.PROJECTIONS[index.projection[i]]
    assert sorted(seen) == list(range(len(index)))


def test_full_config_reads_aimi_batch_zips(tmp_path: Path) -> None:
    root = synthesize(tmp_path / "aimi", release="full", layout="aimi", patients=2, valid_patients=1, seed=11)
    builder = _build("chexpert_kit/full", root, tmp_path / "data")
    release = open_release(root)
    assert release.layout == "aimi-batches"
    examples = _examples(builder, "train", raw_images=True) + _examples(builder, "validation", raw_images=True)
    assert len(examples) == len(release.index())
    for ex in examples:
        assert ex["image"] == release.read_bytes(ex["name"].decode())
        assert decode(ex["image"]).shape[0] > 1000  # full resolution, not the small release's 320 px
    decoded = _examples(builder, "validation")[0]["image"]
    assert decoded.ndim == 3 and decoded.shape[2] == 1


def test_store_config_and_array_record_data_source(manual: Path, tmp_path: Path) -> None:
    store = prepare(manual, tmp_path / "store", size=32)
    config = ck.ChexpertConfig(name="store32", source="store", size=32)
    builder = _build("chexpert_kit", tmp_path / "store", tmp_path / "data", config=config, file_format="array_record")
    assert builder.info.features["image"].shape == (32, 32, 1)
    # Random access through ArrayRecord, decoded by NumPy (no TensorFlow at read time).
    sources = tfds.data_source(
        "chexpert_kit", data_dir=str(tmp_path / "data"), download=False, builder_kwargs={"config": config, "file_format": "array_record"}
    )
    assert {s: len(sources[s]) for s in sources} == _split_sizes(manual, ("train", "valid", "test"))
    row_of = {str(p): i for i, p in enumerate(store.index.path)}
    edema = schema.OBSERVATIONS.index("Edema")
    seen = []
    for split, source in sources.items():
        for position in reversed(range(len(source))):
            ex = source[position]
            i = row_of[ex["name"].decode() if isinstance(ex["name"], bytes) else ex["name"]]
            seen.append(i)
            assert schema.SPLITS[store.index.split[i]] == {"validation": "valid"}.get(split, split)
            np.testing.assert_array_equal(ex["image"][:, :, 0], store.images[i])  # lossless
            assert ck.LABEL_STATES[ex["labels"]["Edema"]] == STATE_OF_CODE[int(store.index.labels[i, edema])]
    assert sorted(seen) == list(range(len(store)))

    with pytest.raises(ReleaseNotFoundError, match=r"no prepared store of 320 x 320.*found .* \(32 x 32\)"):
        _build("chexpert_kit/store320", tmp_path / "store", tmp_path / "data320")


@pytest.mark.parametrize("make", ["absent", "empty", "unrelated"])
def test_missing_data_raises_with_download_instructions(tmp_path: Path, make: str) -> None:
    manual_dir = tmp_path / "manual"
    if make != "absent":
        manual_dir.mkdir()
    if make == "unrelated":
        (manual_dir / "notes.txt").write_text("not CheXpert")
    with pytest.raises(ReleaseNotFoundError, match="Research Use Agreement") as caught:
        _build("chexpert_kit/catalog", manual_dir, tmp_path / "data")
    assert isinstance(caught.value, FileNotFoundError) and not isinstance(caught.value, AssertionError)


def test_config_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="source must be one of small, full, store"):
        ck.ChexpertConfig(name="x", source="plus")
    with pytest.raises(ValueError, match="size is given exactly for source='store'"):
        ck.ChexpertConfig(name="x", source="store")
