"""to_hf_dataset: local memory-mapped datasets from the index or a store, and no uploads, ever."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from chexpert import schema
from chexpert.errors import ChexpertError
from chexpert.index import read_csv
from chexpert.policy import apply
from chexpert.release import Release, open_release
from chexpert.store import Store
from tests.conftest import TINY_LOOK_ALIKE

datasets = pytest.importorskip("datasets")
hf = pytest.importorskip("chexpert.frameworks.hf")

SIZE = 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def release(look_alike: Callable[..., Path]) -> Release:
    return open_release(look_alike(**TINY_LOOK_ALIKE))


@pytest.fixture(scope="module")
def store(look_alike: Callable[..., Path], prepared_store: Callable[..., Store]) -> Store:
    return prepared_store(look_alike(**TINY_LOOK_ALIKE), size=SIZE)


def test_from_index_columns_named_as_the_csv_with_released_jpeg_bytes(release: Release, tmp_path: Path) -> None:
    index = release.index()
    ds = hf.to_hf_dataset(index, cache_dir=tmp_path)
    assert ds.column_names[:20] == ["image", *schema.CSV_COLUMNS]
    assert ds.features["Pleural Effusion"].names == ["negative", "positive", "uncertain", "blank"]
    assert ds.features["AP/PA"].names == list(schema.PROJECTIONS)
    assert isinstance(ds.features["image"], datasets.Image)
    assert len(ds) == len(index)

    raw = ds.cast_column("image", datasets.Image(decode=False))
    states_seen = set()
    for i, example in enumerate(raw):
        path = str(index.path[i])
        assert example["Path"] == path
        assert example["image"]["bytes"] == release.read_bytes(path)
        for j, name in enumerate(schema.OBSERVATIONS):
            state = ds.features[name].names[example[name]]
            assert state == {1: "positive", 0: "negative", -1: "uncertain", -2: "blank"}[int(index.labels[i, j])]
            states_seen.add(state)
        assert ds.features["Sex"].names[example["Sex"]] == schema.SEXES[index.sex[i]]
        assert ds.features["Frontal/Lateral"].names[example["Frontal/Lateral"]] == ("Frontal" if index.frontal[i] else "Lateral")
        assert (example["Age"], example["patient"], example["study"], example["view"]) == (index.age[i], index.patient[i], index.study[i], index.view[i])
        assert ds.features["split"].names[example["split"]] == schema.SPLITS[index.split[i]]
    assert states_seen == {"negative", "positive", "uncertain", "blank"}
    assert ds[0]["image"].mode == "L"  # decodes to a grayscale PIL image


def test_from_store_pixels_memory_mapped_and_targets_under_a_policy(store: Store, tmp_path: Path) -> None:
    ds = hf.to_hf_dataset(store, policy="u-ones", cache_dir=tmp_path)
    assert isinstance(ds.data, datasets.table.MemoryMappedTable)
    assert Path(ds.cache_files[0]["filename"]).parent == tmp_path
    assert ds.features["image"] == datasets.Array2D(shape=(SIZE, SIZE), dtype="uint8")
    # Arrow keeps the pixels as uint8 (HF's numpy formatter would widen integers to int64).
    pixels = np.concatenate([chunk.to_numpy() for chunk in ds.data.column("image").chunks])
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, store.images)
    batch = ds.with_format("numpy", columns=["image"], dtype=np.uint8, output_all_columns=True)[3:5]  # as documented
    assert batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["image"], store.images[3:5])

    expected = apply("u-ones", store.index)
    table = ds.with_format("numpy")[:]
    np.testing.assert_array_equal(table["targets"], expected.targets)
    np.testing.assert_array_equal(table["mask"], expected.mask)
    assert ", ".join(expected.observations) in ds.info.description

    png = hf.to_hf_dataset(store, image_format="png", cache_dir=tmp_path)
    assert isinstance(png.features["image"], datasets.Image)
    for i in (0, len(store) - 1):
        np.testing.assert_array_equal(np.asarray(png[i]["image"]), store.images[i])


def test_cache_is_reused_for_the_same_request_only(store: Store, tmp_path: Path) -> None:
    first = hf.to_hf_dataset(store, cache_dir=tmp_path)
    file = Path(first.cache_files[0]["filename"])
    stamp = file.stat().st_mtime_ns
    again = hf.to_hf_dataset(store, cache_dir=tmp_path)
    assert Path(again.cache_files[0]["filename"]) == file and file.stat().st_mtime_ns == stamp
    other = hf.to_hf_dataset(store, policy="u-zeros", cache_dir=tmp_path)
    subset = hf.to_hf_dataset(store.index.take(np.arange(3)), images=False, cache_dir=tmp_path)
    assert len({Path(d.cache_files[0]["filename"]) for d in (first, other, subset)}) == 3
    assert len(subset) == 3 and "image" not in subset.column_names
    assert not list(tmp_path.glob("*.tmp"))


def test_push_to_hub_is_refused_with_the_no_redistribution_term(store: Store, tmp_path: Path) -> None:
    ds = hf.to_hf_dataset(store, cache_dir=tmp_path)
    derived = {
        "dataset": ds,
        "selection": ds.select([0, 1]),
        "map": ds.map(lambda x: {"extra": 1}),
        "concatenation": datasets.concatenate_datasets([ds, ds]),
        "dict": datasets.DatasetDict({"train": ds}),
        "iterable": ds.to_iterable_dataset().map(lambda x: x),
    }
    for what, candidate in derived.items():
        with pytest.raises(hf.RedistributionError) as caught:
            candidate.push_to_hub("someone/chexpert")
        assert isinstance(caught.value, PermissionError) and isinstance(caught.value, ChexpertError), what
        assert "otherwise redistribute the dataset or any part of it" in str(caught.value), what
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    with pytest.raises(hf.RedistributionError):
        datasets.load_from_disk(str(saved)).push_to_hub("someone/chexpert")

    # Datasets that hold no CheXpert data pass through to the real method (a stand-in here: no network).
    calls = []
    guarded = hf._guarded(lambda self, repo: calls.append(repo), hf._is_chexpert, "Dataset")
    guarded(datasets.Dataset.from_dict({"a": [1]}), "someone/other")
    assert calls == ["someone/other"]
    with pytest.raises(hf.RedistributionError):
        guarded(ds, "someone/chexpert")


def test_arguments_are_validated(release: Release, store: Store, tmp_path: Path) -> None:
    unbound = read_csv(release.csv_bytes("valid")[0])
    with pytest.raises(ValueError, match="not bound to a release"):
        hf.to_hf_dataset(unbound, cache_dir=tmp_path)
    assert len(hf.to_hf_dataset(unbound, images=False, cache_dir=tmp_path)) == len(unbound)
    with pytest.raises(ValueError, match="image_format must be one of array, png"):
        hf.to_hf_dataset(store, image_format="jpeg", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="Index or a Store"):
        hf.to_hf_dataset([1, 2], cache_dir=tmp_path)  # type: ignore[arg-type]  # neither Index nor Store, on purpose
    with pytest.raises(ValueError, match="unknown policy preset"):
        hf.to_hf_dataset(store, policy="u-maybe", cache_dir=tmp_path)


def test_rows_of_a_store_take_a_split_as_every_loader_does(store: Store, tmp_path: Path) -> None:
    import chexpert

    parts = chexpert.split_patients(store.index, {"train": 0.5, "valid": 0.5}, seed=3)
    split = parts["valid"].take(np.arange(len(parts["valid"]))[::-1])  # any order: kept as given
    ds = hf.to_hf_dataset(store, rows=split, policy="u-ones", cache_dir=tmp_path)
    keys = {p: i for i, p in enumerate(store.index.path.tolist())}
    positions = np.array([keys[p] for p in split.path.tolist()])
    assert ds["Path"] == split.path.tolist()
    images = ds.with_format("numpy", columns=["image"], dtype=np.uint8)[:]["image"]
    np.testing.assert_array_equal(images, store.images[positions])
    np.testing.assert_array_equal(np.array(ds["targets"], dtype=np.float32), apply("u-ones", store.index.take(positions)).targets)
    whole = hf.to_hf_dataset(store, cache_dir=tmp_path)
    assert len(whole) == len(store) != len(ds)  # another selection, another cache file
    with pytest.raises(ValueError, match="an Index is its own selection"):
        hf.to_hf_dataset(store.index, rows=[0], images=False, cache_dir=tmp_path)
