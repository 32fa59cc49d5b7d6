"""MIMIC-CXR-JPG: the reader's join against a pandas reference, verify naming every planted
problem, and the CheXpert features working unchanged on its Index."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import chexpert
from chexpert import schema
from chexpert.mimic import MimicRelease, open_mimic, read_mimic
from chexpert.synth.mimic import QUIRKS, mimic_tables, plant, synthesize_mimic, table_bytes

_SPLIT_CODE = {"train": 0, "validate": 1, "test": 2}


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_mimic(tmp_path_factory.mktemp("mimic"), patients=24, seed=3)


def pandas_reference(files: dict[str, bytes], labels: str = "chexpert") -> pd.DataFrame:
    """The join as one would write it by hand with pandas (inner on the split, left on labels)."""

    def read(role: str) -> pd.DataFrame:
        return pd.read_csv(io.BytesIO(gzip.decompress(files[schema.MIMIC_FILES[role] + ".gz"])), dtype=str, keep_default_na=False)

    meta, split, codes = read("metadata"), read("split"), read(labels)
    joined = meta.merge(split[["dicom_id", "split"]], on="dicom_id", how="inner")
    joined = joined.merge(codes.drop(columns="subject_id"), on="study_id", how="left")
    out = pd.DataFrame({
        "path": "files/p" + joined["subject_id"].str[:2] + "/p" + joined["subject_id"] + "/s" + joined["study_id"] + "/" + joined["dicom_id"] + ".jpg",
        "split": joined["split"].map(_SPLIT_CODE),
        "patient": joined["subject_id"].astype(np.int64),
        "study": joined["study_id"].astype(np.int64),
        "frontal": joined["ViewPosition"].isin(schema.MIMIC_FRONTAL),
    })  # fmt: skip
    spell = {"1.0": 1, "0.0": 0, "-1.0": -1, "": -2}
    for name in schema.OBSERVATIONS:
        out[name] = joined[name].fillna("").map(spell).astype(np.int8)
    return out.sort_values("path").reset_index(drop=True)


def ours(index: chexpert.Index) -> pd.DataFrame:
    frame = pd.DataFrame({"path": index.path.astype(object), "split": index.split.astype(np.int64), "patient": index.patient.astype(np.int64),
                          "study": index.study.astype(np.int64), "frontal": index.frontal})  # fmt: skip
    for j, name in enumerate(schema.OBSERVATIONS):
        frame[name] = index.labels[:, j]
    return frame.sort_values("path").reset_index(drop=True)


@pytest.mark.parametrize("quirks", [False, True])
@pytest.mark.parametrize("labels", ["chexpert", "negbio"])
def test_join_equals_a_pandas_reference(quirks: bool, labels: str) -> None:
    tables = mimic_tables(patients=40, seed=5)
    planted = plant(tables, 5) if quirks else {}
    files = table_bytes(tables, quirks=planted)
    role = {r: files[schema.MIMIC_FILES[r] + ".gz"] for r in schema.MIMIC_FILES}
    index, problems = read_mimic(role["metadata"], role["split"], role["chexpert"], role["negbio"], labels=labels)
    reference = pandas_reference(files, labels)
    if quirks:  # the reference keeps the split's study for the disagreeing row; ours the metadata's: both join on dicom_id
        assert {p.kind for p in problems} >= {"not-in-split", "split-disagrees", "split-only", "label-only", "unlabeled"}
    pd.testing.assert_frame_equal(ours(index), reference, check_dtype=False)
    assert index.study.dtype == np.int32 and index.patient.dtype == np.int32
    assert int(index.study.max()) >= 50_000_000  # 8-digit study ids are held, not wrapped


def test_label_columns_are_mapped_by_name_not_position() -> None:
    tables = mimic_tables(patients=10, seed=1)
    files = table_bytes(tables, gz=False)
    label_name = schema.MIMIC_FILES["chexpert"]
    frame = pd.read_csv(io.BytesIO(files[label_name]), dtype=str, keep_default_na=False)
    assert list(frame.columns[2:]) == sorted(schema.OBSERVATIONS)  # as released: alphabetical
    shuffled = frame[["study_id", *reversed(frame.columns[2:]), "subject_id"]].to_csv(index=False).encode()
    a, _ = read_mimic(files[schema.MIMIC_FILES["metadata"]], files[schema.MIMIC_FILES["split"]], files[label_name])
    b, _ = read_mimic(files[schema.MIMIC_FILES["metadata"]], files[schema.MIMIC_FILES["split"]], shuffled)
    np.testing.assert_array_equal(a.labels, b.labels)
    first = int(tables["studies"]["study_id"][0])
    rows = a.study == first
    np.testing.assert_array_equal(a.labels[rows][0], tables["studies"]["codes"][0])  # CheXpert's order in the Index


def test_study_time_is_hhmmss_without_leading_zeros() -> None:
    header = ",".join(schema.MIMIC_METADATA_COLUMNS)
    meta = f"{header}\nd1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506,80556.875,CHEST (PA AND LAT),postero-anterior,Erect\n"
    meta += "d2,10000032,50414267,CHEST (PA AND LAT),,3056,2544,21800506,235959,x,y,z\n"
    split = "dicom_id,study_id,subject_id,split\nd1,50414267,10000032,test\nd2,50414267,10000032,test\n"
    index, problems = read_mimic(meta.encode(), split.encode(), None)
    assert index.extra["study_time"][0] == np.timedelta64(8 * 3_600_000 + 5 * 60_000 + 56_875, "ms")
    assert str(index.extra["study_datetime"][0]) == "2180-05-06T08:05:56.875"
    assert str(index.extra["study_datetime"][1]) == "2180-05-06T23:59:59.000"
    assert index.extra["view"].tolist() == ["Frontal", "Unknown"]  # the empty ViewPosition is kept, as unknown
    assert index.split.tolist() == [2, 2] and index.path[0] == "files/p10/p10000032/s50414267/d1.jpg"
    assert {p.kind for p in problems} >= {"missing", "view-unknown"}  # no label files, one unknown view


def test_every_planted_problem_is_named_by_verify(mimic_root: Path) -> None:
    quirks = json.loads((mimic_root / QUIRKS).read_text())
    report = chexpert.verify(mimic_root)
    assert not report.ok
    text = [f"{p.kind} {p}" for p in report.problems]

    def named(kind: str, needle: str) -> bool:
        return any(line.startswith(kind + " ") and needle in line for line in text)

    for dicom in quirks["not_in_split"]:
        assert named("not-in-split", dicom)
    for dicom, _ in quirks["split_disagrees"]:
        assert named("split-disagrees", dicom)
    for dicom, _, _ in quirks["split_only"]:
        assert named("split-only", dicom)
    for study, _ in quirks["label_only"]:
        assert named("label-only", str(study))
    for study in quirks["unlabeled"]:
        assert named("unlabeled", f"s{study}")
    for dicom in quirks["missing_image"]:
        assert named("missing", dicom)
    assert named("unlisted", quirks["unlisted_image"])
    assert named("view-unknown", "''")
    # Every problem has its file; every row-level one its row.
    assert all(p.file for p in report.problems)
    assert all(p.row for p in report.problems if p.kind not in ("unlisted",))
    # Nothing silently dropped: every metadata row is in the index or named.
    meta = pd.read_csv(mimic_root / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str, keep_default_na=False)
    index = chexpert.open(mimic_root).index()
    left_out = set(meta["dicom_id"]) - set(index.extra["dicom_id"].tolist())
    assert left_out == set(quirks["not_in_split"])
    # The quirks of the release itself: LL laterals are lateral, the all-blank study is all blank.
    ll = np.isin(index.extra["dicom_id"].astype(object), quirks["ll_lateral"])
    assert ll.any() and not index.frontal[ll].any() and (index.extra["view"][ll] == "Lateral").all()
    blank = index.study == quirks["all_blank"][0]
    assert (index.labels[blank] == schema.Code.BLANK).all() and index.extra["labeled"][blank].all()


def test_a_clean_look_alike_verifies_ok_and_opens_from_files_folder_or_plain_csv(tmp_path: Path) -> None:
    root = synthesize_mimic(tmp_path, patients=6, quirks=False)
    report = chexpert.verify(root)
    assert report.ok, [str(p) for p in report.errors]
    assert chexpert.open(root / "files").root == root
    plain = tmp_path / "plain"
    shutil.copytree(root, plain)
    for gz in plain.glob("*.csv.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    a, b = chexpert.open(root).index(), chexpert.open(plain).index()
    np.testing.assert_array_equal(a.path, b.path)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_negbio_on_request_and_both_sources_in_extra(mimic_root: Path) -> None:
    chex = chexpert.open(mimic_root).index()
    neg = open_mimic(mimic_root, labels="negbio").index()
    np.testing.assert_array_equal(chex.labels, chex.extra["labels_chexpert"])
    np.testing.assert_array_equal(neg.labels, chex.extra["labels_negbio"])
    assert (chex.labels != neg.labels).any()  # the look-alike's NegBio reads some hedges as positive


def test_keys_folds_select_and_policies_work_unchanged(mimic_root: Path) -> None:
    release = chexpert.open(mimic_root)
    assert isinstance(release, MimicRelease) and release.kind == "mimic"
    index = release.index()
    keys, ids = index.study_keys(), index.study_ids()
    assert len(np.unique(keys)) == len(np.unique(ids)) == len(np.unique(index.study))
    assert all(schema.study_key(p) == k for p, k in zip(index.path.tolist(), keys.tolist()))
    assert index.counts()["patients"] == len(np.unique(index.patient))
    folds = chexpert.kfold(release.index("train"), 3, seed=1)
    for train, held in folds:
        assert not set(train.patient.tolist()) & set(held.patient.tolist())
    frontal, lateral = chexpert.select(index, views="Frontal"), chexpert.select(index, views="Lateral")
    unknown = int((index.extra["view"] == "Unknown").sum())
    assert unknown and len(frontal) + len(lateral) + unknown == len(index)
    targets = chexpert.apply_policy("u-ones-lsr", index)  # smoothing draws keyed by the MIMIC paths
    uncertain = index.labels == schema.Code.UNCERTAIN
    assert uncertain.any() and ((targets.targets[uncertain] > 0.5) & (targets.targets[uncertain] < 1)).all()
    assert targets.mask[index.labels == schema.Code.POSITIVE].all()
    one = chexpert.deduplicate(index, "patient", keep="first")
    assert len(one) == len(np.unique(index.patient))


def test_prepare_and_numpy_loader_read_mimic_images(mimic_root: Path, tmp_path: Path) -> None:
    release = chexpert.open(mimic_root)
    index = release.index("test")
    store = chexpert.prepare(index, tmp_path / "store", size=32)
    assert store.images.shape == (len(index), 32, 32)
    np.testing.assert_array_equal(store.index.study, index.study)
    assert store.index.study_keys().tolist() == index.study_keys().tolist()
    assert (store.images.reshape(len(index), -1).std(axis=1) > 0).all()  # real pictures, not blanks
    from chexpert.frameworks.numpy import NumpyLoader

    seen = [batch["image"].shape[0] for batch in NumpyLoader(store, batch_size=4, seed=1)]
    assert sum(seen) == len(index)
    torch_frameworks = pytest.importorskip("chexpert.frameworks.torch")
    item = torch_frameworks.StoreDataset(store, policy="u-zeros")[0]
    assert tuple(item["image"].shape)[-2:] == (32, 32)


def test_cli_synth_info_by_view_and_verify(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "chexpert"]
    out = subprocess.run([*run, "synth", str(tmp_path), "--release", "mimic", "--patients", "8"], capture_output=True, text=True, check=True)
    root = out.stdout.strip()
    again = subprocess.run([*run, "synth", str(tmp_path), "--release", "mimic", "--patients", "8", "--overwrite"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    info = subprocess.run([*run, "info", root, "--by", "view", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(info.stdout)
    assert result["release"] == "mimic" and "Unknown" in result["subgroups"]
    verify = subprocess.run([*run, "verify", root, "--json"], capture_output=True, text=True)
    assert verify.returncode == 1 and {"split-only", "label-only", "missing"} <= {p["kind"] for p in json.loads(verify.stdout)["problems"]}


def test_cli_prepare_views_and_export_on_mimic(mimic_root: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "chexpert"]
    index = chexpert.open(mimic_root).index("train")
    # The planted damage (a missing image) is in train: prepare names it unless told to skip.
    failed = subprocess.run([*run, "prepare", str(mimic_root), "--out", str(tmp_path / "bad"), "--size", "32", "--splits", "train", "--workers", "1", "--quiet"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode != 0 and "image not found" in failed.stderr
    done = subprocess.run([*run, "prepare", str(mimic_root), "--out", str(tmp_path / "store"), "--size", "32", "--splits", "train",
                           "--views", "lateral", "--workers", "1", "--quiet", "--on-error", "skip"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = chexpert.open_store(tmp_path / "store")
    lateral = (index.extra["view"] == "Lateral").sum()
    assert len(store) == lateral - len(store.skipped) and not store.index.frontal.any()
    exported = subprocess.run([*run, "export", str(tmp_path / "store"), str(tmp_path / "wds"), "--format", "webdataset", "--policy", "u-ones", "--quiet"],
                              capture_output=True, text=True)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert any(p.suffix == ".tar" for p in (tmp_path / "wds").iterdir())


def test_each_kind_of_damage_is_named_with_file_and_row() -> None:
    header = ",".join(schema.MIMIC_METADATA_COLUMNS)
    meta = header + "\n" + "\n".join([
        "a,10000001,50000001,P,PA,1,1,21800101,1,P,x,y",
        "a,10000001,50000001,P,LATERAL,1,1,21800101,1,P,x,y",  # duplicate dicom_id (row 3)
        "b,10000002,50000002,P,AP,1,1,21800101,1,P,x,y",
        "c,10000002,50000003,P,AP,1,1,2180,99.5x,P,x,y",  # patient in two splits; bad date and time (row 5)
        "d,x,50000004,P,AP,1,1,21800101,1,P,x,y",  # unreadable id (row 6)
    ]) + "\n"  # fmt: skip
    split = "dicom_id,study_id,subject_id,split\na,50000001,10000001,train\nb,50000002,10000002,train\nc,50000003,10000002,test\nc,50000003,10000002,test\n"
    labels = ",".join(schema.MIMIC_LABEL_COLUMNS) + "\n"
    labels += "10000001,50000001," + ",".join(["1.0"] + [""] * 13) + "\n"
    labels += "10000099,50000002," + ",".join(["2.0"] + [""] * 13) + "\n"  # another subject; bad value (row 3)
    labels += "10000001,50000001," + ",".join([""] * 14) + "\n"  # duplicate study (row 4)
    index, problems = read_mimic(meta.encode(), split.encode(), labels.encode(), names={"metadata": "m.csv", "split": "s.csv", "chexpert": "c.csv"})
    found = {(p.kind, p.file, p.row) for p in problems}
    assert ("duplicate", "m.csv", 3) in found
    assert ("value", "m.csv", 6) in found
    assert ("split-leak", "m.csv", 5) in found
    assert ("value", "m.csv", 5) in found  # the date (a warning); the time too
    assert ("duplicate", "s.csv", 5) in found
    assert ("label", "c.csv", 3) in found and ("label-subject", "c.csv", 3) in found and ("duplicate", "c.csv", 4) in found
    assert ("unlabeled", "m.csv", 5) in found
    assert sorted(index.extra["dicom_id"].tolist()) == ["a", "b", "c"]
    with pytest.raises(chexpert.CSVFormatError, match=r"m\.csv.*lacks 'ViewPosition'"):
        read_mimic(meta.replace("ViewPosition", "View").encode(), split.encode(), None, names={"metadata": "m.csv"})


@pytest.mark.parametrize("workers", [1, 2])
def test_verify_decode_names_a_damaged_image_by_metadata_row(tmp_path: Path, workers: int) -> None:
    root = synthesize_mimic(tmp_path, patients=8, quirks=False)
    index = chexpert.open(root).index()
    damaged = root / index.path[3]
    damaged.write_bytes(damaged.read_bytes()[:200])  # a truncated JPEG
    report = chexpert.verify(root, decode=True, workers=workers)
    assert report.decoded == len(index)
    bad = [p for p in report.problems if p.kind == "decode"]
    assert len(bad) == 1 and bad[0].row == int(index.extra["metadata_row"][3]) and str(damaged) in bad[0].message
