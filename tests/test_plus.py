"""CheXpert Plus read as released, through the public API, on a look-alike download."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import chexpert
from chexpert import schema
from chexpert.errors import CSVFormatError, ReleaseNotFoundError
from chexpert.plus import PLUS_COLUMNS, PlusRelease, dicom_header_columns, open_plus, radgraph, read_labels
from chexpert.synth.plus import PLUS_CSV, synthesize_plus
from chexpert.synth.report import render_report
from tests.conftest import tree_digest


@pytest.fixture(scope="module")
def plus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A look-alike Plus download (read-only by convention: copy before damaging it)."""
    return synthesize_plus(tmp_path_factory.mktemp("plus"), patients=8, valid_patients=3, seed=5)


def _quirks(root: Path) -> dict[str, list[str]]:
    return json.loads((root / "QUIRKS.json").read_text())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "400"})


def test_open_recognises_plus_and_indexes_every_row(plus_root):
    release = chexpert.open(plus_root)
    assert isinstance(release, PlusRelease)
    assert release.kind == "plus" and release.images == "png" and release.original is not None
    index = release.index()
    with open(plus_root / PLUS_CSV, newline="") as f:
        csv_rows = sum(1 for _ in csv.reader(f)) - 1
    assert len(index) == csv_rows and set(release.splits) == {"train", "valid"}
    assert index.path[0].endswith(".jpg") and not index.path[0].startswith("CheXpert")
    for column in ("report", "section_findings", "race", "insurance_type", "labels_report", "labels_findings", "labels_impression", "labels_original"):
        assert column in index.extra
    assert len(release.index("valid")) == int((index.split == 1).sum())


def test_every_column_is_text_and_only_empty_is_missing(plus_root):
    index = chexpert.open(plus_root).index()
    accession = index.extra["section_accession_number"]
    assert all(len(a) == 8 and a.isdigit() for a in accession.tolist())
    assert any(a.startswith("0") for a in accession.tolist())  # leading zeros kept: not parsed as numbers
    quirks = _quirks(plus_root)
    row = index.path.tolist().index(quirks["none_section"][0])
    assert index.extra["section_procedure_comments"][row] == "None"  # a literal "None" stays "None"
    assert index.extra["section_history"][row] == ""
    assert index.age[index.path.tolist().index(quirks["missing_age"][0])] == 0
    # The impression text sits in section_findings for one row; report keeps the whole text.
    moved = index.path.tolist().index(quirks["impression_in_findings"][0])
    assert index.extra["section_impression"][moved] == "" and index.extra["section_findings"][moved] in index.extra["report"][moved]


def test_label_files_joined_by_path_null_kept_distinct_from_zero(plus_root):
    index = chexpert.open(plus_root).index()
    lines = [json.loads(line) for line in (plus_root / "chexbert_labels" / "report_fixed.json").read_text().splitlines()]
    assert [r["path_to_image"] for r in lines] != index.path.tolist()  # the file has its own order
    position = {p: i for i, p in enumerate(index.path.tolist())}
    spelled = {1.0: 1, 0.0: 0, -1.0: -1, None: -2}
    for record in lines:
        row = position[record["path_to_image"]]
        assert [spelled[record[o]] for o in schema.OBSERVATIONS] == index.extra["labels_report"][row].tolist()
    np.testing.assert_array_equal(index.labels, index.extra["labels_report"])  # the default label source
    codes = index.extra["labels_report"]
    assert (codes == schema.Code.NEGATIVE).any() and (codes == schema.Code.BLANK).any()


def test_label_source_original_and_problems_of_the_join(plus_root):
    release = open_plus(plus_root, labels="original")
    index = release.index()
    assert release.original is not None
    original = release.original.index()
    theirs = {schema.strip_release_prefix(p): labels for p, labels in zip(original.path.tolist(), original.labels.tolist())}
    assert all(theirs[p] == labels for p, labels in zip(index.path.tolist(), index.labels.tolist()))
    quirks = _quirks(plus_root)
    problems = release.problems()
    kinds = {p.kind for p in problems}
    assert {"report-copies", "disagrees", "not-in-plus", "missing"} <= kinds
    copies = [p for p in problems if p.kind == "report-copies"]
    assert quirks["report_copies"][0] in copies[0].message and "labels differ" in copies[0].message
    assert any(quirks["age_disagrees"][0] in p.message and "age" in p.message for p in problems if p.kind == "disagrees")
    assert any(quirks["not_in_plus"][0] in p.message for p in problems if p.kind == "not-in-plus")
    missing = [p.message for p in problems if p.kind == "missing"]
    assert all(any(dcm in m for m in missing) for dcm in quirks["missing_dicom"])
    # The copies stay in the index, numbered per study: nothing is hidden.
    study = [i for i, p in enumerate(index.path.tolist()) if p.startswith(quirks["report_copies"][0] + "/")]
    assert sorted(index.extra["report_copy"][study].tolist()) == [0, 1]
    assert len({index.extra["report"][i] for i in study}) == 2


def test_images_found_by_tail_in_zips_and_folders(plus_root, tmp_path):
    release = chexpert.open(plus_root)
    index = release.index()
    chunks = sorted((plus_root / "PNG").glob("png_chexpert_plus_chunk_*.zip"))
    assert len(chunks) == 3
    with zipfile.ZipFile(chunks[-1]) as z:  # the last chunk is written with ZIP64 extensions
        first = z.infolist()[0]
    raw = chunks[-1].read_bytes()[first.header_offset :]
    name_length, extra_length = int.from_bytes(raw[26:28], "little"), int.from_bytes(raw[28:30], "little")
    assert raw[30 + name_length : 32 + name_length] == b"\x01\x00" and extra_length >= 20  # the ZIP64 extra field
    bits = set()
    for path in index.path.tolist():
        data = release.read_bytes(path)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        bits.add(chexpert.imaging.image_info(data).bits)
        assert chexpert.imaging.decode(data).dtype == np.uint8
    assert bits == {8, 16}
    # A mirror that unpacked the PNGs and dropped the split folder: found all the same.
    copy = tmp_path / "plus"
    shutil.copytree(plus_root, copy, ignore=shutil.ignore_patterns("PNG", "CheXpert-v1.0-small"))
    for chunk in chunks:
        with zipfile.ZipFile(chunk) as z:
            for member in z.namelist():
                target = copy / "PNG" / member.split("/", 2)[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(member))
    mirrored = chexpert.open(copy)
    assert isinstance(mirrored, PlusRelease)
    assert mirrored.original is None and "labels_original" not in mirrored.index().extra
    assert mirrored.read_bytes(index.path[0]) == release.read_bytes(index.path[0])


def test_png_and_dicom_sources_prepare_to_the_same_pixels(plus_root, tmp_path):
    before = tree_digest(plus_root)
    png = chexpert.open(plus_root)
    dcm = open_plus(plus_root, images="dicom")
    quirks = _quirks(plus_root)
    keep = ~np.isin(png.index().extra["path_to_dcm"], quirks["missing_dicom"])
    rows = png.index().take(keep)
    a = chexpert.prepare(png, tmp_path / "png", size=64, index=rows, workers=2)
    b = chexpert.prepare(dcm, tmp_path / "dcm", size=64, index=rows.with_release(dcm), workers=1)
    assert len(a) == len(b) == int(keep.sum())
    difference = np.abs(a.images.astype(int) - b.images.astype(int)).mean(axis=(1, 2))
    # The same pictures, through PNG (8/16-bit) and the DICOM display chain; files with a VOI LUT
    # Sequence (a gamma curve) differ by design, but stay the same picture.
    assert (difference < 1.5).mean() >= 0.75 and difference.max() < 25
    assert all(y.std() > 10 for y in b.images)  # every DICOM shows a picture, none is flat
    with pytest.raises(chexpert.ChexpertError, match="DICOM"):  # a missing DICOM stops the run by default
        chexpert.prepare(dcm, tmp_path / "all", size=64, workers=1)
    skipped = chexpert.prepare(dcm, tmp_path / "skip", size=64, workers=1, on_error="skip")
    assert {r["path"] for r in skipped.skipped} == {p.replace(".dcm", ".jpg") for p in quirks["missing_dicom"]}
    # The same rows from the other kind of file are another store, never taken for this one.
    with pytest.raises(chexpert.StaleStoreError, match="read from dicom files, the store was made from png"):
        chexpert.prepare(dcm, tmp_path / "png", size=64, index=rows.with_release(dcm), workers=1)
    assert tree_digest(plus_root) == before  # the download is only read


def test_radgraph_one_element_per_row_with_two_words(plus_root, tmp_path):
    release = chexpert.open(plus_root)
    assert isinstance(release, PlusRelease)
    index = release.index()
    graphs = radgraph(release, "findings", index)
    words = np.array([len(t.split()) for t in index.extra["section_findings"].tolist()])
    assert all((g is None) == (w < 2) for g, w in zip(graphs, words))
    row = int(np.flatnonzero(words >= 2)[0])
    assert graphs[row]["text"].replace(" .", ".") == index.extra["section_findings"][row]
    copy = tmp_path / "plus"
    shutil.copytree(plus_root, copy, ignore=shutil.ignore_patterns("PNG", "DICOM", "CheXpert-v1.0-small"))
    path = copy / "radgraph-XL-annotations" / "section_impression.json"
    path.write_text(json.dumps(json.loads(path.read_text())[:-1]))
    with pytest.raises(CSVFormatError, match="elements"):
        radgraph(open_plus(copy, images="png"), "impression")


def test_dicom_header_columns(plus_root):
    release = chexpert.open(plus_root)
    assert isinstance(release, PlusRelease)
    index = dicom_header_columns(release, release.index())
    found = index.extra["dicom_found"]
    assert (~found).sum() == len(_quirks(plus_root)["missing_dicom"])
    modalities = set(index.extra["dicom_Modality"][found].tolist())
    assert modalities <= {"CR", "DX"} and all(index.extra["dicom_BitsStored"][found] != "")
    assert set(index.extra["dicom_PhotometricInterpretation"][found].tolist()) == {"MONOCHROME1", "MONOCHROME2"}


def test_bad_plus_files_are_named(plus_root, tmp_path):
    copy = tmp_path / "plus"
    shutil.copytree(plus_root, copy, ignore=shutil.ignore_patterns("PNG", "DICOM", "CheXpert-v1.0-small"))
    csv = copy / PLUS_CSV
    data = csv.read_bytes()
    csv.write_bytes(data.replace(b",insurance_type,", b",insurance,", 1))
    with pytest.raises(CSVFormatError, match="missing insurance_type") as caught:
        open_plus(copy, images="png").index()
    assert str(csv) in str(caught.value)
    codes, problems = read_labels(b'{"path_to_image": "a.jpg", "Edema": 2.0}\n{"path_to_image": "b.jpg"}\nnot json\n', np.array(["a.jpg"]), file="x.json")
    assert [p.row for p in problems] == [1, 2, 3] and "Edema is 2.0" in problems[0].message
    with pytest.raises(ReleaseNotFoundError, match="no CheXpert Plus CSV"):
        open_plus(tmp_path)


def test_verify_and_info_by_race_on_the_command_line(plus_root):
    verify = _cli("verify", str(plus_root), "--decode", "--json", "--workers", "2")
    assert verify.returncode == 1, verify.stderr
    report = json.loads(verify.stdout)
    assert report["release"] == "plus" and report["decoded"] == report["images"]
    assert {"report-copies", "disagrees", "not-in-plus", "missing"} <= {p["kind"] for p in report["problems"]}
    info = _cli("info", str(plus_root), "--by", "race", "--json")
    assert info.returncode == 0, info.stderr
    groups = json.loads(info.stdout)["subgroups"]
    assert sum(g["studies"] for g in groups.values()) == len(np.unique(chexpert.open(plus_root).index().study_ids()))
    assert all(0 <= g["prevalence"]["Edema"]["ci"][0] <= g["prevalence"]["Edema"]["prevalence"] <= g["prevalence"]["Edema"]["ci"][1] for g in groups.values())
    table = _cli("info", str(plus_root), "--by", "insurance")
    assert table.returncode == 0 and "Medicare" in table.stdout
    refused = _cli("info", str(plus_root / "CheXpert-v1.0-small"), "--by", "race")
    assert refused.returncode == 1 and "CheXpert Plus demographics" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluate_by_race_scores_each_group(plus_root, tmp_path):
    import pandas as pd

    from chexpert.evaluate import evaluate
    from chexpert.subgroups import prevalence, wilson_interval

    root = synthesize_plus(tmp_path, patients=2, valid_patients=40, seed=9, original=True)
    valid = chexpert.read_csv(root / "CheXpert-v1.0-small" / "valid.csv")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Path": valid.path.astype(object)})
    for j, name in enumerate(schema.OBSERVATIONS):
        frame[name] = np.clip(valid.labels[:, j] * 0.5 + rng.random(len(valid)) * 0.7, 0, 1)
    result = evaluate(frame, root / "CheXpert-v1.0-small" / "valid.csv", by="race", metadata=root, bootstrap=50)
    index = chexpert.open(root).index("valid")
    races = {r: int(n) for r, n in zip(*np.unique(index.extra["race"].astype(object), return_counts=True))}
    assert set(result.subgroups) == set(races) and sum(s.n_studies for s in result.subgroups.values()) == result.n_studies
    assert prevalence(index, "insurance")["studies"].groupby(level=0).first().sum() == result.n_studies
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and 0 < hi < 0.35


def test_render_report_states_each_observation_as_coded():
    codes = [-2] * 14
    for name, code in (("Cardiomegaly", 1), ("Pneumothorax", 0), ("Pleural Effusion", -1), ("Support Devices", 1)):
        codes[schema.OBSERVATIONS.index(name)] = code
    report = render_report(codes, seed=1, sex="Female")
    assert report.labels == tuple(codes)
    assert re.search(r"\bno pneumothorax\.", report.findings.lower())
    assert any(w in report.text for w in ("Possible", "cannot be excluded"))
    assert "woman" in report.sections["clinical_history"]
    assert report.impression_labels[schema.OBSERVATIONS.index("Pneumothorax")] == -2  # negatives stay in the findings
    normal = render_report([1] + [-2] * 13)
    assert normal.labels[0] == 1 and "No acute cardiopulmonary" in normal.impression
    # Nothing positive and No Finding blank: another abnormality keeps No Finding blank, as the rule says.
    quiet = [-2] * 14
    quiet[schema.OBSERVATIONS.index("Edema")] = 0
    assert render_report(quiet).labels == tuple(quiet)
    assert render_report(codes, seed=1).text == render_report(codes, seed=1).text


def test_synth_plus_is_deterministic_and_has_27_columns(tmp_path):
    a = synthesize_plus(tmp_path / "a", patients=2, valid_patients=1, seed=4, original=False)
    b = synthesize_plus(tmp_path / "b", patients=2, valid_patients=1, seed=4, original=False, workers=2)
    for name in (PLUS_CSV, "chexbert_labels/findings_fixed.json", "PNG/png_chexpert_plus_chunk_0.zip"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    header = (a / PLUS_CSV).read_text().split("\n", 1)[0].split(",")
    assert header[0] == "" and tuple(header[1:]) == PLUS_COLUMNS and len(PLUS_COLUMNS) == 27
    with pytest.raises(FileExistsError):
        synthesize_plus(tmp_path / "a", patients=2, seed=4)


def test_overwrite_replaces_only_a_plus_look_alike_synth_wrote(tmp_path):
    root = synthesize_plus(tmp_path, patients=2, valid_patients=1, seed=4, original=False)
    assert synthesize_plus(tmp_path, patients=2, valid_patients=1, seed=4, original=False, overwrite=True) == root
    mine = root / "my-notes.txt"
    mine.write_text("the user's own file")
    with pytest.raises(FileExistsError, match="not written by chexpert synth"):
        synthesize_plus(tmp_path, patients=2, valid_patients=1, seed=4, original=False, overwrite=True)
    assert mine.read_text() == "the user's own file"
    # A real download looks like the look-alike but carries no synth marker: left as it is.
    real = tmp_path / "real"
    shutil.copytree(root, real / root.name)
    (real / root.name / "my-notes.txt").unlink()
    (real / root.name / "chexpert-synth.json").unlink()
    before = tree_digest(real)
    with pytest.raises(FileExistsError, match="may be a real release"):
        synthesize_plus(real, patients=2, valid_patients=1, seed=4, original=False, overwrite=True)
    assert tree_digest(real) == before


def test_a_fifo_in_place_of_the_plus_csv_is_one_line_never_a_hang(plus_root, tmp_path):
    copy = tmp_path / "plus"
    shutil.copytree(plus_root, copy, symlinks=True)
    (copy / PLUS_CSV).unlink()
    os.mkfifo(copy / PLUS_CSV)
    run = subprocess.run([sys.executable, "-m", "chexpert", "info", str(copy)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and PLUS_CSV in run.stderr and "Traceback" not in run.stderr


def test_a_store_from_dicoms_records_the_dicom_code_and_decoders_and_goes_stale_when_they_change(plus_root, tmp_path):
    """The code fingerprint of a DICOM store covers chexpert.dicom and the DICOM decoders' versions;
    a PNG store's leaves them out (a pydicom update does not make it stale)."""
    from chexpert.store import StaleStoreWarning

    dcm = open_plus(plus_root, images="dicom")
    missing = _quirks(plus_root)["missing_dicom"]
    rows = dcm.index().take(~np.isin(dcm.index().extra["path_to_dcm"], missing))
    rows = rows.take(np.arange(min(4, len(rows))))
    store = chexpert.prepare(dcm, tmp_path / "dcm", size=32, index=rows, workers=1)
    code = json.loads((store.path / "manifest.json").read_text())["code"]
    assert code["dicom_sha256"] and code["pydicom"] and "pylibjpeg" in code
    png = chexpert.prepare(chexpert.open(plus_root), tmp_path / "png", size=32, index=rows.with_release(chexpert.open(plus_root)), workers=1)
    assert "pydicom" not in json.loads((png.path / "manifest.json").read_text())["code"]
    for key, value in (("pydicom", "0.0"), ("dicom_sha256", "0" * 64)):
        out = tmp_path / f"changed-{key}"
        shutil.copytree(store.path, out)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["code"][key] = value
        (out / "manifest.json").write_text(json.dumps(manifest))
        with pytest.warns(StaleStoreWarning, match=key):
            chexpert.open_store(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chexpert.open_store(store.path)
        chexpert.open_store(png.path)
