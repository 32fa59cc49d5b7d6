"""The look-alike release: format exactly like the real one, statistics like it, pictures that
follow the labels, byte-identical for a seed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from chexpert import schema
from chexpert.cli import main
from chexpert.release import SYNTH_MARKER
from chexpert.synth import (
    AIMI_BATCHES,
    csv_bytes,
    groundtruth_rows,
    render_jpeg,
    render_pixels,
    synth_rows,
    synthesize,
    write_csv,
)
from tests.conftest import tree_digest
from tests.real_counts import REAL_LABELS, REAL_TRAIN_IMAGES

SPELLINGS = ("1.0", "-1.0", "0.0", "")  # in the order of REAL_LABELS


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sof(data: bytes) -> tuple[int, int, int, int]:
    """(SOF marker, height, width, components) of a JPEG, read from its bytes."""
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise AssertionError(f"bad marker at {i}")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return marker, h, w, data[i + 9]
        i += 2 + length
    raise AssertionError("no SOF marker")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth"), patients=8, seed=3, valid_patients=3, test_patients=2)


@pytest.fixture(scope="module")
def many_rows() -> list[dict[str, str]]:
    return synth_rows("train", patients=2500, seed=11)


# ------------------------------------------------------------------------------ format


def test_header_is_the_real_header(release: Path, real_train_csv: Path) -> None:
    with gzip.open(real_train_csv, "rb") as fh:
        real_header = fh.readline()
    for name in ("train.csv", "valid.csv", "test_labels.csv"):
        assert (release / name).read_bytes().split(b"\n", 1)[0] + b"\n" == real_header
    assert real_header.decode().rstrip("\n").split(",") == list(schema.CSV_COLUMNS)


def test_csv_bytes_lf_no_bom_no_quotes(release: Path) -> None:
    for name in ("train.csv", "valid.csv", "test_labels.csv", "groundtruth.csv"):
        data = (release / name).read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf")
        assert b"\r" not in data and b'"' not in data
        assert data.endswith(b"\n")


def test_value_spellings(release: Path) -> None:
    rows = synth_rows("train", patients=300, seed=5)
    for row in rows:
        m = schema.PATH_PATTERN.match(row["Path"])
        assert m is not None and m["prefix"] == "CheXpert-v1.0-small" and m["split"] == "train"
        assert row["Sex"] in schema.SEXES
        assert re.fullmatch(r"0|[1-9][0-9]*", row["Age"]) and int(row["Age"]) <= 90
        assert row["Frontal/Lateral"] == m["kind"].capitalize()
        if row["Frontal/Lateral"] == "Frontal":
            assert row["AP/PA"] in ("AP", "PA", "LL", "RL")
        else:
            assert row["AP/PA"] == ""
        assert all(row[o] in schema.LABEL_SPELLINGS for o in schema.OBSERVATIONS)
        assert row["No Finding"] in ("1.0", "")
        if row["No Finding"] == "1.0":  # only where nothing but Support Devices is positive
            assert not any(row[o] == "1.0" for o in schema.OBSERVATIONS[1:-1])
    # the same rows are what synthesize writes
    written = (release / "train.csv").read_bytes()
    assert written == csv_bytes(synth_rows("train", patients=8, seed=3))
    full = synth_rows("train", patients=2, seed=5, release="full")
    assert full[0]["Path"].startswith("CheXpert-v1.0/train/patient00001/study")


def test_rows_in_the_real_order_and_views_ascending() -> None:
    rows = synth_rows("train", patients=200, seed=2)
    keys = [tuple(map(int, schema.PATH_PATTERN.match(r["Path"]).group("patient", "study", "view"))) for r in rows]  # type: ignore[union-attr]  # a path that does not match fails the test here as well
    patients = [k[0] for k in keys]
    assert patients == sorted(patients) and set(patients) == set(range(1, 201))
    by_study: dict[tuple[int, int], list[int]] = defaultdict(list)
    for p, s, v in keys:
        by_study[p, s].append(v)
    assert all(v == list(range(1, len(v) + 1)) for v in by_study.values())
    # studies of a patient are numbered 1..k with no gaps
    studies: dict[int, set[int]] = defaultdict(set)
    for p, s, _ in keys:
        studies[p].add(s)
    assert all(s == set(range(1, len(s) + 1)) for s in studies.values())


def test_labels_and_metadata_are_per_study(many_rows: list[dict[str, str]]) -> None:
    study: dict[str, tuple[str, ...]] = {}
    sex: dict[str, str] = {}
    for row in many_rows:
        key = schema.study_key(row["Path"])
        value = tuple(row[c] for c in ("Sex", "Age", *schema.OBSERVATIONS))
        assert study.setdefault(key, value) == value
        patient = key.split("/")[1]
        assert sex.setdefault(patient, row["Sex"]) == row["Sex"]
        if row["Frontal/Lateral"] == "Frontal":  # one projection per study
            assert study.setdefault(key + "#proj", (row["AP/PA"],)) == (row["AP/PA"],)


def test_valid_and_test_are_binary_and_numbered_like_the_real_ones(release: Path) -> None:
    valid = synth_rows("valid", patients=200, seed=1)
    assert {r[o] for r in valid for o in schema.OBSERVATIONS} == {"0.0", "1.0"}
    patients = sorted({int(schema.PATH_PATTERN.match(r["Path"])["patient"]) for r in valid})  # type: ignore[index]  # a path that does not match fails the test here as well
    assert patients == list(range(64541, 64741))
    # the valid positive rates resemble the real valid.csv's (e.g. Lung Opacity 126/234)
    assert abs(np.mean([r["Lung Opacity"] == "1.0" for r in valid]) - 126 / 234) < 0.1
    with pytest.raises(ValueError, match="from 0 to 200"):
        synth_rows("valid", patients=201)
    text = (release / "test_labels.csv").read_text()
    assert "CheXpert-v1.0-small/test/patient64741/study1/view1_" in text
    assert "CheXpert-v1.0-small/test/patient64742/" in text


def test_groundtruth_is_study_level_integers(release: Path) -> None:
    lines = (release / "groundtruth.csv").read_text().splitlines()
    assert lines[0] == "Study," + ",".join(schema.OBSERVATIONS)
    assert [line.split(",")[0] for line in lines[1:]] == ["CheXpert-v1.0/test/patient64741/study1", "CheXpert-v1.0/test/patient64742/study1"]
    test_rows = synth_rows("test", patients=2, seed=3)
    for line in lines[1:]:
        study, *values = line.split(",")
        assert set(values) <= {"0", "1"}
        row = next(r for r in test_rows if schema.study_key(r["Path"]) == schema.study_key(study))
        assert values == [str(int(float(row[o]))) for o in schema.OBSERVATIONS]
    assert len(groundtruth_rows(synth_rows("test", patients=30, seed=3))) == 30


def test_write_csv_overrides(tmp_path: Path) -> None:
    rows = synth_rows(patients=2, seed=1)
    rows[0]["Cardiomegaly"] = "yes"
    columns = [c if c != "Edema" else "Oedema" for c in schema.CSV_COLUMNS]
    path = write_csv(tmp_path / "train.csv", rows, columns=columns, newline="\r\n", bom=True)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfPath,Sex,") and data.count(b"\r\n") == len(rows) + 1
    header, first = data[3:].decode().split("\r\n")[:2]
    assert "Oedema" in header.split(",") and "Edema" not in header.split(",")
    assert first.split(",")[columns.index("Cardiomegaly")] == "yes"
    assert first.split(",")[columns.index("Oedema")] == ""  # the row has no such key


# ------------------------------------------------------------------------------ statistics


def test_train_statistics_like_the_real_train_csv(many_rows: list[dict[str, str]]) -> None:
    rows = many_rows
    n = len(rows)
    studies = {schema.study_key(r["Path"]) for r in rows}
    patients = {k.split("/")[1] for k in studies}
    assert len(patients) == 2500
    assert len(studies) / len(patients) == pytest.approx(187641 / 64540, rel=0.08)
    assert n / len(studies) == pytest.approx(223414 / 187641, rel=0.03)
    frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    assert len(frontal) / n == pytest.approx(191027 / 223414, abs=0.015)
    proj = {p: sum(r["AP/PA"] == p for r in frontal) / len(frontal) for p in ("AP", "PA")}
    assert proj["AP"] == pytest.approx(161590 / 191027, abs=0.025)
    assert proj["PA"] == pytest.approx(29420 / 191027, abs=0.025)
    assert sum(r["Sex"] == "Male" for r in rows) / n == pytest.approx(132636 / 223414, abs=0.03)
    ages = np.array([int(r["Age"]) for r in rows])
    assert ages.mean() == pytest.approx(60.4, abs=1.5)
    assert ages[ages > 0].min() >= 18 and ages.max() == 90
    for name, counts in REAL_LABELS.items():
        for spelling, count in zip(SPELLINGS, counts, strict=True):
            rate = sum(r[name] == spelling for r in rows) / n
            assert rate == pytest.approx(count / REAL_TRAIN_IMAGES, abs=0.03), (name, spelling)


def test_patient_rows_do_not_depend_on_how_many_patients() -> None:
    few = synth_rows(patients=5, seed=9)
    many = synth_rows(patients=40, seed=9)
    assert many[: len(few)] == few
    assert synth_rows(patients=5, seed=10) != few


# ------------------------------------------------------------------------------ images


def test_jpeg_properties_small(release: Path) -> None:
    files = sorted(release.rglob("*.jpg"))
    rows = synth_rows("train", patients=8, seed=3) + synth_rows("valid", patients=3, seed=3)
    assert len(files) == len(rows) + len(synth_rows("test", patients=2, seed=3))
    sizes = []
    for f in files:
        data = f.read_bytes()
        marker, h, w, components = sof(data)
        assert marker == 0xC0 and components == 1  # baseline, grayscale
        assert min(h, w) == 320 and 320 <= max(h, w) <= 460
        img = simplejpeg.decode_jpeg(data, colorspace="GRAY")
        assert img.shape == (h, w, 1)
        with Image.open(f) as pil:
            assert pil.mode == "L" and pil.size == (w, h) and pil.format == "JPEG" and isinstance(pil, JpegImageFile)
            q = pil.quantization[0]
            assert q[0] <= 3  # quality about 95: the DC step is tiny
        sizes.append(len(data))
    assert 35_000 < np.mean(sizes) < 55_000


def test_jpeg_properties_full() -> None:
    row = synth_rows(patients=1, seed=4, release="full")[0]
    data = render_jpeg(row, seed=4, release="full")
    marker, h, w, components = sof(data)
    assert marker == 0xC0 and components == 1
    assert 2000 <= min(h, w) and max(h, w) <= 2900
    assert 1_300_000 < len(data) < 2_600_000


def test_labels_change_the_pixels() -> None:
    rows = [r for r in synth_rows(patients=60, seed=8) if r["Frontal/Lateral"] == "Frontal"][:30]

    def with_(row: dict[str, str], **labels: str) -> dict[str, str]:
        out = dict(row)
        for k, v in labels.items():
            out[k.replace("_", " ")] = v
        return out

    heart, effusion, device, nothing = [], [], [], []
    for row in rows:
        base = with_(row, **{o.replace(" ", "_"): "" for o in schema.OBSERVATIONS})
        img0 = render_pixels(base, seed=8).astype(float)
        h, w = img0.shape
        img1 = render_pixels(with_(base, Cardiomegaly="1.0"), seed=8).astype(float)
        assert img1.shape == img0.shape
        # the heart shadow spreads into the left lung (image right), lower middle of the chest
        region = (slice(int(0.55 * h), int(0.72 * h)), slice(int(0.6 * w), int(0.8 * w)))
        heart.append(img1[region].mean() - img0[region].mean())
        img2 = render_pixels(with_(base, Pleural_Effusion="1.0"), seed=8).astype(float)
        effusion.append(img2[int(0.6 * h) : int(0.85 * h)].mean() - img0[int(0.6 * h) : int(0.85 * h)].mean())
        img3 = render_pixels(with_(base, Support_Devices="1.0"), seed=8).astype(float)
        device.append((img3 > 230).sum() - (img0 > 230).sum())
        nothing.append(np.abs(render_pixels(base, seed=8).astype(float) - img0).max())
    assert min(heart) > 5 and np.mean(heart) > 15
    assert min(effusion) > 1 and np.mean(effusion) > 5
    assert min(device) > 100
    assert max(nothing) == 0
    # uncertain is drawn, but fainter than positive
    base = with_(rows[0], **{o.replace(" ", "_"): "" for o in schema.OBSERVATIONS})
    means = [render_pixels(with_(base, Cardiomegaly=v), seed=8)[region].mean() for v in ("", "-1.0", "1.0")]
    assert means[0] < means[1] < means[2]


def test_cardiomegaly_is_learnable_across_patients(many_rows: list[dict[str, str]]) -> None:
    frontal = [r for r in many_rows[:3000] if r["Frontal/Lateral"] == "Frontal" and r["AP/PA"] == "AP"]
    pos = [r for r in frontal if r["Cardiomegaly"] == "1.0"][:40]
    neg = [r for r in frontal if r["Cardiomegaly"] in ("0.0", "")][:40]

    def heart_mean(r: dict[str, str]) -> float:
        img = render_pixels(r, seed=11)
        h, w = img.shape
        return float(img[int(0.55 * h) : int(0.72 * h), int(0.6 * w) : int(0.8 * w)].mean())

    assert np.mean([heart_mean(r) for r in pos]) > np.mean([heart_mean(r) for r in neg]) + 10


def test_laterals_differ_from_frontals() -> None:
    row = next(r for r in synth_rows(patients=30, seed=1) if r["Frontal/Lateral"] == "Lateral")
    img_l = render_pixels(row, seed=1).astype(float)
    img_f = render_pixels(dict(row, **{"Frontal/Lateral": "Frontal", "AP/PA": "PA"}), seed=1).astype(float)
    h, w = img_f.shape

    # a frontal film is left-right symmetric about the spine; a lateral one is not
    def asymmetry(img: np.ndarray) -> float:
        return float(np.abs(img - img[:, ::-1]).mean())

    assert asymmetry(img_l) > asymmetry(img_f) + 5


# ------------------------------------------------------------------------------ writing


def test_deterministic_and_independent_of_workers(tmp_path: Path, release: Path) -> None:
    again = synthesize(tmp_path / "a", patients=8, seed=3, valid_patients=3, test_patients=2, workers=2)
    assert tree_bytes(again) == tree_bytes(release)
    other = synthesize(tmp_path / "b", patients=8, seed=4, valid_patients=3, test_patients=2)
    assert tree_bytes(other) != tree_bytes(release)
    z1 = synthesize(tmp_path / "z1", patients=3, seed=3, layout="zip")
    z2 = synthesize(tmp_path / "z2", patients=3, seed=3, layout="zip", workers=2)
    assert hashlib.sha256(z1.read_bytes()).digest() == hashlib.sha256(z2.read_bytes()).digest()


def test_zip_layout(tmp_path: Path) -> None:
    path = synthesize(tmp_path, patients=4, seed=2, layout="zip", test_patients=1)
    assert path == tmp_path / "CheXpert-v1.0-small.zip"
    folder = synthesize(tmp_path / "f", patients=4, seed=2, test_patients=1)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        files = {i.filename: i for i in infos if not i.is_dir()}
        assert set(files) == {f"CheXpert-v1.0-small/{k}" for k in tree_bytes(folder)}
        for name, info in files.items():
            assert zf.read(info) == (folder / name.split("/", 1)[1]).read_bytes()
            if name.endswith(".jpg"):
                assert info.compress_type == zipfile.ZIP_STORED
        assert all(i.filename.startswith("CheXpert-v1.0-small/") for i in infos)
    assert list(tmp_path.iterdir()) != [] and not any(p.name.startswith(".synth-") for p in tmp_path.iterdir())


def test_aimi_layout(tmp_path: Path) -> None:
    # seed 2 gives three training patients with four images in all: full-size pictures are slow
    out = synthesize(tmp_path, release="full", patients=3, seed=2, layout="aimi", valid_patients=1)
    assert out == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{b}.zip" for b in AIMI_BATCHES)
    members = {}
    for batch in AIMI_BATCHES:
        with zipfile.ZipFile(tmp_path / f"{batch}.zip") as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            assert all(n.startswith(batch + "/") for n in zf.namelist())
            # every batch records what synth wrote in it (what synth --overwrite may replace)
            assert f"{batch}/{SYNTH_MARKER}" in names
            members[batch] = [n[len(batch) + 1 :] for n in names if not n.endswith(SYNTH_MARKER)]
            if batch == AIMI_BATCHES[0]:
                train_csv = zf.read(f"{batch}/train.csv").decode()
    first = members[AIMI_BATCHES[0]]
    assert "train.csv" in first and "valid.csv" in first
    assert all(n in ("train.csv", "valid.csv") or n.startswith("valid/patient64541/") for n in first)
    # training patients split across batches 2-4 in order, directly in the top folder
    for batch, patient in zip(AIMI_BATCHES[1:], ("patient00001", "patient00002", "patient00003"), strict=True):
        assert members[batch] and all(n.startswith(patient + "/study") for n in members[batch])
    paths = [line.split(",")[0] for line in train_csv.splitlines()[1:]]
    assert all(p.startswith("CheXpert-v1.0/train/patient0000") for p in paths)
    on_disk = {f"CheXpert-v1.0/train/{n}" for b in AIMI_BATCHES[1:] for n in members[b]}
    assert set(paths) == on_disk


def test_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="small, full"):
        synthesize(tmp_path, release="medium")
    with pytest.raises(ValueError, match="folder, zip, aimi"):
        synthesize(tmp_path, layout="tar")
    with pytest.raises(ValueError, match="release='full'"):
        synthesize(tmp_path, layout="aimi")
    with pytest.raises(ValueError, match="from 1 to 64540"):
        synthesize(tmp_path, patients=0)
    with pytest.raises(ValueError, match="from 0 to 500"):
        synthesize(tmp_path, test_patients=501)
    with pytest.raises(ValueError, match="workers"):
        synthesize(tmp_path, workers=0)
    assert list(tmp_path.iterdir()) == []  # nothing written before the checks pass
    first = synthesize(tmp_path, patients=1, seed=1)
    with pytest.raises(FileExistsError, match="already exists"):
        synthesize(tmp_path, patients=1, seed=2)
    again = synthesize(tmp_path, patients=1, seed=2, overwrite=True)
    assert again == first and (first / "train.csv").read_bytes() == csv_bytes(synth_rows(patients=1, seed=2))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "out"), "--patients", "2", "--seed", "5", "--valid-patients", "1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "out" / "CheXpert-v1.0-small")  # quiet but for the path
    assert (Path(printed) / "train.csv").read_bytes() == csv_bytes(synth_rows(patients=2, seed=5))
    assert main(["synth", str(tmp_path / "out"), "--patients", "2"]) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "x"), "--layout", "tar"])


def test_progress_reports_every_image(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    root = synthesize(tmp_path, patients=3, seed=1, progress=lambda d, t: seen.append((d, t)))
    total = len(list(root.rglob("*.jpg")))
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_pictures_decode_to_what_was_drawn() -> None:
    row = synth_rows(patients=1, seed=2)[0]
    img = render_pixels(row, seed=2)
    decoded = np.asarray(Image.open(io.BytesIO(render_jpeg(row, seed=2))))
    assert decoded.shape == img.shape
    assert np.abs(decoded.astype(int) - img).mean() < 3  # quality 95


# ------------------------------------------------------------------------------ --overwrite


def test_overwrite_replaces_only_what_synth_wrote(tmp_path: Path) -> None:
    root = synthesize(tmp_path, patients=2, seed=1)
    marker = json.loads((root / SYNTH_MARKER).read_bytes())
    assert marker["rows"] == {"train.csv": len(synth_rows(patients=2, seed=1)), "valid.csv": len(synth_rows("valid", patients=2, seed=1))}
    assert set(marker["files"]) == set(tree_bytes(root)) - {SYNTH_MARKER}

    # the user's own file inside the look-alike: refused, nothing removed
    (root / "train" / "my-notes.txt").write_text("mine")
    before = tree_digest(tmp_path)
    with pytest.raises(FileExistsError, match="was not written by chexpert synth") as caught:
        synthesize(tmp_path, patients=2, seed=2, overwrite=True)
    assert "my-notes.txt" in str(caught.value)
    assert tree_digest(tmp_path) == before
    (root / "train" / "my-notes.txt").unlink()
    # a file synth wrote, changed since
    image = next((root / "train").rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"edited")
    with pytest.raises(FileExistsError, match=re.escape(str(image))):
        synthesize(tmp_path, patients=2, seed=2, overwrite=True)
    image.write_bytes(image.read_bytes()[: -len(b"edited")])
    again = synthesize(tmp_path, patients=2, seed=2, overwrite=True)
    assert (again / "train.csv").read_bytes() == csv_bytes(synth_rows(patients=2, seed=2))
    assert not any(p.name.startswith(".synth-") for p in tmp_path.iterdir())


def test_overwrite_never_removes_a_real_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A release that synth did not write (here: one without the marker, as downloaded) stays."""
    real = synthesize(tmp_path / "a", patients=2, seed=1)
    (real / SYNTH_MARKER).unlink()
    before = tree_digest(tmp_path)
    assert main(["synth", str(tmp_path / "a"), "--patients", "1", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was not written by chexpert synth" in err and "it may be a real release" in err
    assert tree_digest(tmp_path) == before
    # the zip layout: a foreign zip, and a synth zip with a member added, are refused too
    packed = synthesize(tmp_path / "z", patients=2, seed=1, layout="zip")
    with zipfile.ZipFile(packed, "a") as zf:
        zf.writestr("CheXpert-v1.0-small/train/patient00001/study1/extra.jpg", b"mine")
    with pytest.raises(FileExistsError, match="did not write its member .*extra.jpg"):
        synthesize(tmp_path / "z", patients=1, seed=1, layout="zip", overwrite=True)
    foreign = tmp_path / "f" / "CheXpert-v1.0-small.zip"
    foreign.parent.mkdir()
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("CheXpert-v1.0-small/train.csv", b"Path\n")
    with pytest.raises(FileExistsError, match="has no CheXpert-v1.0-small/chexpert-synth.json"):
        synthesize(tmp_path / "f", patients=1, seed=1, layout="zip", overwrite=True)
    # a link in place of the release folder is not followed, nor removed
    target = synthesize(tmp_path / "t", patients=1, seed=1)
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "CheXpert-v1.0-small").symlink_to(target, target_is_directory=True)
    with pytest.raises(FileExistsError, match="not a folder or zip that synth writes"):
        synthesize(tmp_path / "l", patients=1, seed=1, overwrite=True)
    # without --overwrite the message names the option of the interface in use
    assert main(["synth", str(tmp_path / "t"), "--patients", "1"]) == 1
    assert "(--overwrite: replaces only what chexpert synth wrote)" in capsys.readouterr().err


def test_overwrite_checks_every_batch_before_replacing_any(tmp_path: Path) -> None:
    synthesize(tmp_path, release="full", patients=3, seed=2, layout="aimi", valid_patients=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    last = tmp_path / f"{AIMI_BATCHES[-1]}.zip"
    with zipfile.ZipFile(last, "a") as zf:
        zf.writestr(f"{AIMI_BATCHES[-1]}/readme.txt", b"mine")
    before[last.name] = last.read_bytes()
    with pytest.raises(FileExistsError, match="readme.txt"):
        synthesize(tmp_path, release="full", patients=3, seed=5, layout="aimi", valid_patients=1, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_of_a_test_set_look_alike_replaces_only_what_synth_wrote(tmp_path: Path) -> None:
    from chexpert.synth.testset import LABELS_DIR, LOCALIZE_DIR

    synthesize(tmp_path, release="test", patients=1, seed=1, valid_patients=1)
    assert (tmp_path / LOCALIZE_DIR / SYNTH_MARKER).is_file() and (tmp_path / LABELS_DIR / SYNTH_MARKER).is_file()
    synthesize(tmp_path, release="test", patients=1, seed=2, valid_patients=1, overwrite=True)  # its own: replaced
    # A CheXlocalize download (no marker) is never removed, nor is the labels folder beside it.
    (tmp_path / LOCALIZE_DIR / SYNTH_MARKER).unlink()
    before = tree_digest(tmp_path)
    with pytest.raises(FileExistsError, match=f"{LOCALIZE_DIR} exists and was not written by chexpert synth"):
        synthesize(tmp_path, release="test", patients=1, seed=3, valid_patients=1, overwrite=True)
    assert tree_digest(tmp_path) == before
