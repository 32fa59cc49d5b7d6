"""WebDataset export: shards read back with the webdataset library, its own node and worker splitting."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chexpert import schema
from chexpert.errors import StoreError
from chexpert.frameworks.webdataset import export_webdataset
from chexpert.policy import apply
from chexpert.store import Store

wds = pytest.importorskip("webdataset")

SIZE = 24


@pytest.fixture(scope="module")
def store(look_alike: Callable[..., Path], prepared_store: Callable[..., Store]) -> Store:
    # Not TINY_LOOK_ALIKE: the soft-label test needs an uncertain Consolidation among few images.
    return prepared_store(look_alike(patients=4, valid_patients=2, seed=6), size=SIZE)


def _read(pattern: str, *, nodesplitter: Callable[..., Any] = wds.single_node_only) -> list[dict]:
    dataset = wds.WebDataset(pattern, shardshuffle=False, nodesplitter=nodesplitter, empty_check=False).decode()
    return list(dataset)


def _row_of(sample: dict) -> int:
    return int(sample["json"]["row"])


def test_every_sample_once_with_pixels_labels_and_targets(store: Store, tmp_path: Path) -> None:
    shards = export_webdataset(store, tmp_path, shard_size=5, policy="u-multiclass")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == [p.name for p in shards]
    assert len(shards) == -(-len(store) // 5) and manifest["samples"] == len(store)
    samples = _read(str(tmp_path / manifest["pattern"]))

    rows = [_row_of(s) for s in samples]
    assert sorted(rows) == list(range(len(store)))
    assert rows != sorted(rows)  # written in a shuffled order, so that shards mix patients
    expected = apply("u-multiclass", store.index)
    assert expected.classes is not None
    for sample in samples:
        i = _row_of(sample)
        assert sample["__key__"] == schema.strip_release_prefix(str(store.index.path[i])).removesuffix(".jpg")
        assert sample["npy"].dtype == np.uint8
        np.testing.assert_array_equal(sample["npy"], store.images[i])
        np.testing.assert_array_equal(sample["labels.npy"], store.index.labels[i])
        np.testing.assert_array_equal(sample["targets.npy"], expected.targets[i])
        np.testing.assert_array_equal(sample["mask.npy"], expected.mask[i])
        np.testing.assert_array_equal(sample["classes.npy"], expected.classes[i])
        assert sample["json"]["path"] == str(store.index.path[i])
        assert sample["json"]["sex"] == schema.SEXES[store.index.sex[i]]
        assert sample["json"]["age"] == store.index.age[i]


def test_node_and_worker_splitting_read_each_sample_once(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    export_webdataset(store, tmp_path, shard_size=3, image_format="png")
    pattern = str(tmp_path / json.loads((tmp_path / "manifest.json").read_text())["pattern"])
    seen: Counter[int] = Counter()
    per_node = []
    for rank in range(2):
        # webdataset reads the node from RANK / WORLD_SIZE (as torchrun sets them) and the worker from the DataLoader.
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = wds.WebDataset(pattern, shardshuffle=False, nodesplitter=wds.split_by_node).decode("l8").to_tuple("png", "json")
        loader = torch_data.DataLoader(dataset, batch_size=None, num_workers=2)
        rows = []
        for image, meta in loader:
            np.testing.assert_array_equal(np.asarray(image), store.images[meta["row"]])  # PNG is lossless
            rows.append(int(meta["row"]))
        per_node.append(set(rows))
        seen.update(rows)
    assert set(seen) == set(range(len(store))) and set(seen.values()) == {1}
    assert all(per_node) and not per_node[0] & per_node[1]


def test_rows_selection_and_reproducible_bytes(store: Store, tmp_path: Path) -> None:
    frontal = np.flatnonzero(store.index.frontal)
    first = export_webdataset(store, tmp_path / "a", shard_size=4, rows=frontal, seed=3)
    again = export_webdataset(store, tmp_path / "b", shard_size=4, rows=frontal, seed=3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    samples = _read(str(tmp_path / "a" / json.loads((tmp_path / "a" / "manifest.json").read_text())["pattern"]))
    assert sorted(_row_of(s) for s in samples) == frontal.tolist()
    assert "targets.npy" not in samples[0]


def test_refuses_a_folder_it_did_not_write_and_validates_arguments(store: Store, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a chexpert export.*notes.txt"):
        export_webdataset(store, tmp_path)
    out = tmp_path / "shards"
    export_webdataset(store, out, shard_size=100)
    with pytest.raises(StoreError, match="earlier export"):
        export_webdataset(store, out)
    export_webdataset(store, out, shard_size=len(store) // 2 + 1, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["chexpert-000000.tar", "chexpert-000001.tar", "manifest.json"]
    with pytest.raises(ValueError, match="image_format must be one of npy, png"):
        export_webdataset(store, tmp_path / "x", image_format="jpeg")
    with pytest.raises(ValueError, match="shard_size must be an integer >= 1"):
        export_webdataset(store, tmp_path / "x", shard_size=0)


def test_cli_export_writes_readable_shards(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chexpert.cli import main

    out = tmp_path / "shards"
    code = main(["export", "--format", "webdataset", str(store.path), str(out), "--shard-size", "4", "--policy", "u-ones", "--quiet"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"{len(manifest['shards'])} shards" in capsys.readouterr().out
    samples = _read(str(out / manifest["pattern"]))
    assert sorted(_row_of(s) for s in samples) == list(range(len(store)))
    np.testing.assert_array_equal(samples[0]["targets.npy"], apply("u-ones", store.index).targets[_row_of(samples[0])])
    assert main(["export", "--format", "webdataset", str(store.path), str(out), "--quiet"]) == 1  # earlier export: refused


def test_a_split_as_rows(store: Store, tmp_path: Path) -> None:
    import chexpert

    parts = chexpert.split_patients(store.index, {"train": 0.5, "valid": 0.5}, seed=0)
    shards = export_webdataset(store, tmp_path, shard_size=4, rows=parts["valid"])
    samples = _read(str(tmp_path / json.loads((tmp_path / "manifest.json").read_text())["pattern"]))
    assert len(shards) == -(-len(parts["valid"]) // 4)
    assert sorted(s["json"]["path"] for s in samples) == sorted(parts["valid"].path.tolist())


def _soft_labels(store: Store, path: Path) -> Path:
    """A soft-label CSV (as a U-Ignore model's predictions would be) for every image of the store."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Path": store.index.path.tolist(), **{o: rng.random(len(store)).round(3) for o in schema.COMPETITION_TASKS}})
    frame.to_csv(path, index=False)
    return path


def test_cli_export_with_the_paper_policy_needs_and_uses_soft_labels(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    from chexpert.cli import main

    argv = ["export", "--format", "webdataset", str(store.path), str(tmp_path / "shards"), "--policy", "chexpert-paper-best", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "chexpert export: --policy chexpert-paper-best uses U-SelfTrained for Consolidation: its uncertain labels come from --soft-labels CSV"
    )
    assert len(err.splitlines()) == 1 and not (tmp_path / "shards").exists()  # said before any work
    soft = _soft_labels(store, tmp_path / "soft.csv")
    assert main([*argv, "--soft-labels", str(soft)]) == 0
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["policy"]["soft_labels"] is True
    expected = apply("chexpert-paper-best", store.index, soft_labels=pd.read_csv(soft))
    consolidation = expected.observations.index("Consolidation")
    uncertain = store.index.observation("Consolidation") == schema.Code.UNCERTAIN
    assert uncertain.any()  # some targets come from the soft labels
    assert expected.classes is not None
    for sample in _read(str(tmp_path / "shards" / manifest["pattern"])):
        i = _row_of(sample)
        np.testing.assert_array_equal(sample["targets.npy"], expected.targets[i])
        np.testing.assert_array_equal(sample["classes.npy"], expected.classes[i])
        if uncertain[i]:
            assert sample["targets.npy"][consolidation] == pytest.approx(pd.read_csv(soft)["Consolidation"][i])
    # Soft labels for a policy without U-SelfTrained: a mistake, said as such.
    assert (
        main(["export", "--format", "webdataset", str(store.path), str(tmp_path / "other"), "--policy", "u-ones", "--soft-labels", str(soft), "--quiet"]) == 1
    )
    assert "this policy has none; presets with one: chexpert-paper-best" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--format",
                "webdataset",
                str(store.path),
                str(tmp_path / "other"),
                "--policy",
                "chexpert-paper-best",
                "--soft-labels",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 1
    )
    assert "soft labels must be a CSV file, not a folder" in capsys.readouterr().err
