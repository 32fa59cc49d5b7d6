"""Releases as downloaded: folders, zips, the AIMI batch zips, parent folders, partial downloads."""

from __future__ import annotations

import multiprocessing
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import chexpert
from chexpert.errors import ChexpertError, ReleaseNotFoundError
from chexpert.synth import synthesize
from tests.conftest import tree_digest


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same patients written in every layout (a few, to stay quick)."""
    base = tmp_path_factory.mktemp("layouts")
    return {
        "small-folder": synthesize(base / "sf", release="small", layout="folder", patients=5, seed=11),
        "small-zip": synthesize(base / "sz", release="small", layout="zip", patients=5, seed=11),
        "full-folder": synthesize(base / "ff", release="full", layout="folder", patients=5, seed=11),
        "full-aimi": synthesize(base / "fa", release="full", layout="aimi", patients=5, seed=11),
    }


@pytest.mark.parametrize(
    ("name", "kind", "layout"),
    [
        ("small-folder", "small", "folder"),
        ("small-zip", "small", "zip"),
        ("full-folder", "full", "folder"),
        ("full-aimi", "full", "aimi-batches"),
    ],
)
def test_every_layout_indexes_and_reads_every_image(releases, name, kind, layout):
    release = chexpert.open(releases[name])
    assert (release.kind, release.layout) == (kind, layout)
    assert release.splits == ("train", "valid")
    index = release.index()
    assert len(index) > 10 and index.release is release
    for path in index.path.tolist():
        data = release.read_bytes(path)
        assert data[:3] == b"\xff\xd8\xff", path


def test_layouts_hold_the_same_images(releases):
    """Folder and zip of one release are byte-identical image for image."""
    folder, packed = chexpert.open(releases["small-folder"]), chexpert.open(releases["small-zip"])
    index = folder.index()
    assert index.path.tolist() == packed.index().path.tolist()
    for path in index.path.tolist()[:20]:
        assert folder.read_bytes(path) == packed.read_bytes(path)


def test_aimi_paths_resolve_into_batches(releases):
    """CSV paths say CheXpert-v1.0/train/patientN; the files sit in 'batch k (train j)/patientN'."""
    release = chexpert.open(releases["full-aimi"])
    index = release.index("train")
    where = release.locate(index.path[0])
    assert "batch 2 (train 1).zip!" in where and "/train/" not in where.split("!")[1]
    valid = release.index("valid")
    assert "batch 1 (validate & csv)" in release.locate(valid.path[0])


def test_parent_folder_and_prefixless_paths(releases, tmp_path):
    parent = releases["small-folder"].parent  # the folder holding CheXpert-v1.0-small (TFDS manual_dir)
    release = chexpert.open(parent)
    assert release.kind == "small"
    index = release.index("train")
    path = index.path[0]
    bare = path.removeprefix("CheXpert-v1.0-small/")
    other = "CheXpert-v1.0/" + bare
    assert release.read_bytes(bare) == release.read_bytes(path) == release.read_bytes(other)


def test_both_releases_in_one_folder_needs_a_choice(releases, tmp_path):
    shutil.copytree(releases["small-folder"], tmp_path / "CheXpert-v1.0-small")
    shutil.copytree(releases["full-folder"], tmp_path / "CheXpert-v1.0")
    with pytest.raises(ChexpertError, match="kind='small'"):
        chexpert.open(tmp_path)
    assert chexpert.open(tmp_path, kind="full").kind == "full"
    assert chexpert.open(tmp_path, kind="small").kind == "small"


def test_nothing_there_says_what_to_download(tmp_path):
    with pytest.raises(ReleaseNotFoundError, match="Research Use Agreement") as caught:
        chexpert.open(tmp_path)
    assert "CheXpert-v1.0-small.zip" in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        chexpert.open(tmp_path / "nope")


def test_truncated_zip_is_named(releases, tmp_path):
    data = releases["small-zip"].read_bytes()
    broken = tmp_path / "CheXpert-v1.0-small.zip"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReleaseNotFoundError, match="not a zip archive|incomplete"):
        chexpert.open(broken)


def test_partial_aimi_download_names_the_missing_batch(releases, tmp_path):
    for zip_path in releases["full-aimi"].glob("*.zip"):
        if "batch 3" not in zip_path.name:
            shutil.copy(zip_path, tmp_path / zip_path.name)
    release = chexpert.open(tmp_path)
    index = release.index("train")
    missing = [p for p in index.path.tolist() if "batch 3" in chexpert.open(releases["full-aimi"]).locate(p)]
    assert missing, "the look-alike should put some patients in batch 3"
    with pytest.raises(FileNotFoundError, match="batch 3 \\(train 2\\)|Download the missing batches"):
        release.read_bytes(missing[0])
    present, problems = release.list_images()
    assert all(p.removeprefix("CheXpert-v1.0/") not in present for p in missing)


def test_only_csvs_is_enough_for_the_index(releases, tmp_path):
    folder = tmp_path / "CheXpert-v1.0-small"
    folder.mkdir()
    for name in ("train.csv", "valid.csv"):
        shutil.copy(releases["small-folder"] / name, folder / name)
    release = chexpert.open(folder)
    assert len(release.index()) == len(chexpert.open(releases["small-folder"]).index())
    with pytest.raises(FileNotFoundError):
        release.read_bytes(release.index().path[0])


def _read_in_child(args):
    release, paths = args
    return [len(release.read_bytes(p)) for p in paths]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reading_from_worker_processes(releases, method):
    release = chexpert.open(releases["full-aimi"])
    paths = release.index().path.tolist()
    release.read_bytes(paths[0])  # opens the zips in the parent first: children must not share handles
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(2) as pool:
        sizes = pool.map(_read_in_child, [(release, paths[i::2]) for i in range(2)])
    assert sorted(sum(sizes, [])) == sorted(len(release.read_bytes(p)) for p in paths)


def test_the_download_is_never_written_to(releases):
    before = {name: tree_digest(path if path.is_dir() else path.parent) for name, path in releases.items()}
    for path in releases.values():
        release = chexpert.open(path)
        index = release.index()
        release.list_images()
        for p in index.path.tolist()[:5]:
            release.read_bytes(p)
        chexpert.verify(release, decode=True, workers=1)
    after = {name: tree_digest(path if path.is_dir() else path.parent) for name, path in releases.items()}
    assert before == after


def test_zip_members_are_not_extracted(releases, tmp_path):
    zip_path = releases["small-zip"]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    release = chexpert.open(zip_path)
    path = release.index().path[0]
    assert release.locate(path).split("!")[1] in names
    assert np.frombuffer(release.read_bytes(path), np.uint8).size > 1000


def _zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_several_csv_sets_are_refused_naming_each(releases, tmp_path):
    train = (releases["small-folder"] / "train.csv").read_bytes()
    valid = (releases["small-folder"] / "valid.csv").read_bytes()
    two_sets = _zip_of(
        tmp_path / "two.zip",
        {"CheXpert-v1.0-small/train.csv": train, "CheXpert-v1.0-small/valid.csv": valid, "backup/train.csv": train, "backup/valid.csv": valid},
    )
    with pytest.raises(ChexpertError, match="several sets of CheXpert CSVs") as caught:
        chexpert.open(two_sets)
    message = str(caught.value)
    for name in ("CheXpert-v1.0-small/train.csv", "backup/train.csv", "CheXpert-v1.0-small/valid.csv", "backup/valid.csv"):
        assert f"{two_sets}!{name}" in message
    assert "a CheXpert zip holds one release" in message
    three = _zip_of(tmp_path / "three.zip", {f"{d}/train.csv": train for d in ("a", "b", "c")})
    with pytest.raises(ChexpertError, match="3 train.csv") as caught:
        chexpert.open(three)
    assert all(f"{three}!{d}/train.csv" in str(caught.value) for d in ("a", "b", "c"))


def test_train_and_valid_csvs_from_different_folders_are_not_mixed(releases, tmp_path):
    """Once, a train.csv from one copy and a valid.csv from another made one release silently."""
    (tmp_path / "copy1").mkdir()
    (tmp_path / "copy2").mkdir()
    shutil.copy(releases["small-folder"] / "train.csv", tmp_path / "copy1" / "train.csv")
    shutil.copy(releases["small-folder"] / "valid.csv", tmp_path / "copy2" / "valid.csv")
    with pytest.raises(ChexpertError, match="train.csv and valid.csv in different folders") as caught:
        chexpert.open(tmp_path)
    assert str(tmp_path / "copy1" / "train.csv") in str(caught.value) and "pass the folder of the one release you mean" in str(caught.value)


def test_a_zip_replaced_at_the_same_path_is_read_afresh(tmp_path):
    """The open zip and its listings are keyed on the file's identity, not its path: a 24-row zip
    replaced by an 8-row one at the same path must give 8 rows in the same process."""
    big = synthesize(tmp_path / "big", release="small", layout="zip", patients=12, valid_patients=2, seed=3)
    small = synthesize(tmp_path / "small", release="small", layout="zip", patients=3, valid_patients=2, seed=4)
    target = tmp_path / "here" / big.name
    target.parent.mkdir()
    shutil.copyfile(big, target)
    first = chexpert.open(target).index()
    first_image = chexpert.open(target).read_bytes(first.path[0])
    replacement = tmp_path / "here" / "incoming.zip"
    shutil.copyfile(small, replacement)
    replacement.replace(target)
    second = chexpert.open(target).index()
    expected = chexpert.open(small).index()
    assert len(first) != len(expected)
    assert second.path.tolist() == expected.path.tolist()
    assert chexpert.open(target).read_bytes(second.path[0]) == chexpert.open(small).read_bytes(expected.path[0])
    assert first_image  # read before the replacement, from the first zip


def test_one_entrance_dispatches_and_the_release_reader_reads_only_chexpert(releases):
    """chexpert.open recognises the download (discover's registry); release.open_release reads
    the CheXpert release only and points elsewhere for Plus."""
    from chexpert.discover import READERS, kinds
    from chexpert.errors import InvalidArgumentError
    from chexpert.release import open_release

    assert chexpert.open is __import__("chexpert.discover", fromlist=["open_dataset"]).open_dataset
    assert [r.name for r in READERS][0] == "plus" and "plus" in kinds()
    with pytest.raises(ReleaseNotFoundError, match="holds no CheXpert Plus CSV"):
        chexpert.open(releases["small-folder"].parent, kind="plus")
    with pytest.raises(InvalidArgumentError, match="chexpert.open"):
        open_release(releases["small-folder"], kind="plus")
    assert [r.name for r in READERS][1] == "mimic" and "mimic" in kinds()  # i19's reader, registered
    with pytest.raises(ReleaseNotFoundError, match="holds no MIMIC-CXR-JPG metadata"):
        chexpert.open(releases["small-folder"], kind="mimic")
    with pytest.raises(InvalidArgumentError, match="small, full, plus, mimic"):
        chexpert.open(releases["small-folder"], kind="nih")
    assert chexpert.open(releases["small-folder"]).kind == "small"
