"""CheXpert Plus attacked as a broken download or a hostile user would: duplicate zip members,
label lines that repeat a field, nest or carry odd paths, a CSV whose first line never ends,
numbers beyond the Index's columns; the hosted mirror's layout; the CLI's --images, --labels,
--partial, --splits and --version. Every failure is one line or a verify problem, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import chexpert
from chexpert.errors import CSVFormatError, ImageReadError
from chexpert.plus import open_plus, read_labels, read_plus_csv
from chexpert.synth.plus import PLUS_CSV, synthesize_plus


@pytest.fixture(scope="module")
def plus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small look-alike Plus download, AIMI's layout (copy before damaging it)."""
    return synthesize_plus(tmp_path_factory.mktemp("plus"), patients=3, valid_patients=2, seed=3, chunks=2, original=False)


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same look-alike in the hosted mirror's layout (PNG_train/, DICOM_valid/, ...)."""
    return synthesize_plus(tmp_path_factory.mktemp("mirror"), patients=3, valid_patients=2, seed=3, original=False, layout="mirror")


def _cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chexpert", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "400", **(env or {})}, check=False)  # fmt: skip


def _one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / root.name))


def _verify_json(root: Path, *extra: str) -> tuple[int, dict]:
    result = _cli("verify", str(root), "--json", *extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


# -- duplicate members -----------------------------------------------------------------------------


def _append(zpath: Path, name: str, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: that is the attack
        with zipfile.ZipFile(zpath, "a") as zf:
            zf.writestr(name, data)


def test_a_png_chunk_listing_a_member_twice_is_refused_and_named(plus_root: Path, tmp_path: Path) -> None:
    root = _copy(plus_root, tmp_path)
    chunk = sorted((root / "PNG").glob("*.zip"))[0]
    member = next(n for n in zipfile.ZipFile(chunk).namelist() if n.endswith(".png"))
    _append(chunk, member, b"\x89PNG\r\n\x1a\n another picture")
    release = open_plus(root)
    row = next(p for p in release.index().path.tolist() if member.endswith(p.split("/", 1)[1].removesuffix(".jpg") + ".png"))
    with pytest.raises(ImageReadError, match="which is meant cannot be known"):
        release.read_bytes(row)
    code, report = _verify_json(root)
    named = [p for p in report["problems"] if p["kind"] == "duplicate-member"]
    assert code == 1 and len(named) == 1 and str(chunk) in named[0]["message"] and member in named[0]["message"]


def test_the_same_image_in_two_chunks_is_ambiguous(plus_root: Path, tmp_path: Path) -> None:
    root = _copy(plus_root, tmp_path)
    first, second = sorted((root / "PNG").glob("*.zip"))
    member = next(n for n in zipfile.ZipFile(first).namelist() if n.endswith(".png"))
    _append(second, member, zipfile.ZipFile(first).read(member))
    code, report = _verify_json(root)
    named = [p for p in report["problems"] if p["kind"] == "duplicate-member"]
    assert code == 1 and len(named) == 1 and str(first) in named[0]["message"] and str(second) in named[0]["message"]


@pytest.mark.parametrize("what", ["image", "csv"])
def test_a_release_zip_with_a_member_twice_fails_verify(tmp_path: Path, what: str) -> None:
    zpath = chexpert.synthesize(tmp_path / "r", release="small", patients=3, seed=2, layout="zip")
    names = zipfile.ZipFile(zpath).namelist()
    member = next(n for n in names if n.endswith(".jpg" if what == "image" else "valid.csv"))
    _append(zpath, member, zipfile.ZipFile(zpath).read(member) if what == "csv" else b"\xff\xd8 not this one")
    code, report = _verify_json(zpath)
    assert code == 1 and not report["ok"]
    named = [p for p in report["problems"] if p["kind"] == "duplicate-member"]
    assert named and any(member in (p["file"] + p["message"]) and str(zpath) in (p["file"] + p["message"]) for p in named)
    if what == "image":  # and no reader picks one of the copies
        release = chexpert.open(zpath)
        with pytest.raises(ImageReadError, match="2 times in the zip"):
            release.read_bytes(member)


# -- label lines -----------------------------------------------------------------------------------


def test_a_label_line_repeating_an_observation() -> None:
    paths = np.array(["train/patient00001/study1/view1_frontal.jpg"])
    line = b'{"path_to_image": "%s", "Edema": 1.0, "Edema": 0.0, "Cardiomegaly": 1.0, "Cardiomegaly": 1.0, "Other": {"x": 1, "x": 2}}\n' % paths[0].encode()
    codes, problems = read_labels(line, paths, file="report_fixed.json")
    edema, cardiomegaly = chexpert.schema.OBSERVATIONS.index("Edema"), chexpert.schema.OBSERVATIONS.index("Cardiomegaly")
    assert codes[0, edema] == chexpert.schema.Code.BLANK  # neither value is picked
    assert codes[0, cardiomegaly] == 1
    errors = [p for p in problems if p.is_error]
    warned = [p for p in problems if not p.is_error]
    assert [(p.file, p.row) for p in errors] == [("report_fixed.json", 1)] and "Edema 2 times with different values" in errors[0].message
    assert len(warned) == 1 and "Cardiomegaly 2 times (the same value)" in warned[0].message  # a nested object's keys are not the line's


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"path_to_image": ["a.jpg"], "Edema": 1.0}', "path_to_image is a JSON list, not a string"),
        (b'{"path_to_image": {"a": 1}}', "path_to_image is a JSON dict, not a string"),
        (b'{"path_to_image": 7}', "path_to_image is a JSON int, not a string"),
        (b'{"path_to_image": null}', "path_to_image is a JSON NoneType, not a string"),
        (b"[" * 200_000 + b"]" * 200_000, "nests too deeply"),
        (b'{"path_to_image": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nests too deeply"),
        (b'{"path_to_image": "a.jpg", "path_to_image": "b.jpg", "Edema": 1.0}', "path_to_image 2 times with different values"),
    ],
    ids=["list", "dict", "int", "null", "deep-array", "deep-path", "two-paths"],
)
def test_odd_label_lines_are_problems_of_the_cli_not_tracebacks(plus_root: Path, tmp_path: Path, line: bytes, message: str) -> None:
    root = _copy(plus_root, tmp_path)
    labels = root / "chexbert_labels" / "impression_fixed.json"
    labels.write_bytes(labels.read_bytes() + line + b"\n")
    number = labels.read_bytes().count(b"\n")
    info = _cli("info", str(root))
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    code, report = _verify_json(root)
    found = [p for p in report["problems"] if p["file"] == str(labels) and p["row"] == number]
    assert code == 1 and len(found) == 1 and message in found[0]["message"], found


# -- the CSV ---------------------------------------------------------------------------------------


def _rewrite_csv(root: Path, edit: Callable[[bytes], bytes]) -> None:
    path = root / PLUS_CSV
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize("number", ["study99999", "study40000", "study" + "9" * 30, "view" + "9" * 30])
def test_study_or_view_numbers_beyond_16_bits_are_problems(plus_root: Path, tmp_path: Path, number: str) -> None:
    root = _copy(plus_root, tmp_path)
    pattern = rb"(?<=/patient\d{5}/)study\d+(?=/)" if number.startswith("study") else rb"(?<=/study\d/)view\d+(?=_)"
    _rewrite_csv(root, lambda data: re.sub(pattern, number.encode(), data, count=1))
    info = _cli("info", str(root))
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    code, report = _verify_json(root)
    beyond = [p for p in report["problems"] if "number is beyond 32,767" in p["message"]]
    assert code == 1 and len(beyond) == 1 and beyond[0]["row"] is not None


def test_a_first_field_longer_than_the_csv_field_limit(plus_root: Path, tmp_path: Path) -> None:
    root = _copy(plus_root, tmp_path)
    _rewrite_csv(root, lambda data: b'"' + b"x" * 300_000 + b'"' + data)
    for command in ("info", "verify", "prepare"):
        argv = [command, str(root)] + (["--out", str(tmp_path / "store")] if command == "prepare" else [])
        _one_line_failure(_cli(*argv), "not a CheXpert Plus CSV", "first line is longer than 65,536 bytes")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_huge_file_of_one_line_is_refused_from_its_start(plus_root: Path, tmp_path: Path) -> None:
    """640 MB without a line break: refused from its first 64 KiB, never read whole."""
    root = _copy(plus_root, tmp_path)
    with open(root / PLUS_CSV, "r+b") as f:
        f.write(b"a" * (1 << 20))
        f.truncate(640 << 20)  # sparse: costs no disk
    with pytest.raises(CSVFormatError, match="first line is longer"):
        read_plus_csv(root / PLUS_CSV)
    # The whole file would be 640 MB in memory; the refusal must come far below that.
    # The child's own peak (VmHWM of its memory map): ru_maxrss survives exec on Linux and would
    # report this pytest process's size, which depends on the tests run before this one.
    probe = (
        "import re, resource, sys; from chexpert.plus import read_plus_csv\ntry:\n    read_plus_csv(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "try:\n    print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
        "except OSError:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(root / PLUS_CSV)], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out[0] == "CSVFormatError" and int(out[1]) < 400 << 10, out  # kB: well under the 640 MB file


# -- synth without pydicom -------------------------------------------------------------------------


def test_synth_plus_without_pydicom_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "pydicom.py").write_text("raise ModuleNotFoundError(\"No module named 'pydicom'\", name='pydicom')\n")
    out = tmp_path / "new" / "deeper"
    path = os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])
    result = _cli("synth", str(out), "--release", "plus", "--patients", "2", env={"PYTHONPATH": path})
    _one_line_failure(result, "pydicom", "pip install 'chexpert[dicom]'")
    assert not (tmp_path / "new").exists()


# -- the mirror's layout ---------------------------------------------------------------------------


def test_the_mirror_layout_is_read_per_split(mirror_root: Path, plus_root: Path) -> None:
    assert {p.name for p in mirror_root.iterdir()} >= {"PNG_train", "PNG_valid", "DICOM_train", "DICOM_valid"}
    assert not (mirror_root / "PNG").exists()
    assert next((mirror_root / "PNG_valid").rglob("*.png")).relative_to(mirror_root / "PNG_valid").parts[0].startswith("patient")
    mirror, aimi = open_plus(mirror_root), open_plus(plus_root)
    assert mirror.images == "png"
    index = mirror.index()
    present, _ = mirror.list_images()
    assert present == set(index.path.tolist())
    for path in (index.path[0], mirror.index("valid").path[0]):
        assert mirror.read_bytes(path) == aimi.read_bytes(path)
    dicoms = open_plus(mirror_root, images="dicom")
    assert dicoms.read_bytes(index.path[0]) == open_plus(plus_root, images="dicom").read_bytes(index.path[0])
    _, report = _verify_json(mirror_root, "--decode")
    _, reference = _verify_json(plus_root, "--decode")
    assert report["decoded"] == reference["decoded"] == len(index)
    assert sorted(p["kind"] for p in report["problems"]) == sorted(p["kind"] for p in reference["problems"])  # the look-alike's quirks only


def test_an_image_in_the_other_splits_folder_is_not_taken(mirror_root: Path, tmp_path: Path) -> None:
    root = _copy(mirror_root, tmp_path)
    release = open_plus(root)
    valid = str(release.index("valid").path[0])
    tail = valid.split("/", 1)[1].removesuffix(".jpg") + ".png"
    target = root / "PNG_train" / tail
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(root / "PNG_valid" / tail, target)
    with pytest.raises(chexpert.ReleaseNotFoundError, match="only in the train folder"):
        open_plus(root).read_bytes(valid)
    _, report = _verify_json(root)
    assert any(valid in p["message"] and p["kind"] == "missing" for p in report["problems"])


# -- --images, --labels ----------------------------------------------------------------------------


def test_verify_decode_images_dicom_finds_a_truncated_dicom(plus_root: Path, tmp_path: Path) -> None:
    root = _copy(plus_root, tmp_path)
    dicom = sorted((root / "DICOM").rglob("*.dcm"))[0]
    dicom.write_bytes(dicom.read_bytes()[: dicom.stat().st_size // 2])
    _, png = _verify_json(root, "--decode")
    assert not any(p["kind"] == "decode" for p in png["problems"])  # the PNGs are fine: without --images dicom nothing sees it
    code, report = _verify_json(root, "--decode", "--images", "dicom")
    decode = [p for p in report["problems"] if p["kind"] == "decode"]
    assert code == 1 and len(decode) == 1 and str(dicom) in decode[0]["file"]


def test_images_and_labels_reach_every_command(plus_root: Path, small_release: Path, tmp_path: Path) -> None:
    info = _cli("info", str(plus_root), "--json", "--labels", "impression", "--images", "dicom")
    assert info.returncode == 0, info.stderr
    impression = open_plus(plus_root, labels="impression").index("train").counts()["labels"]
    assert json.loads(info.stdout)["splits"]["train"]["labels"] == json.loads(json.dumps(impression))
    store = tmp_path / "store"
    prepared = _cli("prepare", str(plus_root), "--out", str(store), "--size", "16", "--images", "dicom", "--labels", "findings", "--splits", "valid", "--quiet")
    assert prepared.returncode == 0, prepared.stderr
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["source"]["images"] == "dicom" and manifest["source"]["labels"] == "findings"
    assert _cli("export", str(store), str(tmp_path / "a"), "--format", "webdataset", "--images", "dicom", "--labels", "findings", "--quiet").returncode == 0
    _one_line_failure(_cli("export", str(store), str(tmp_path / "b"), "--format", "webdataset", "--images", "png", "--quiet"), "prepared from dicom images")
    _one_line_failure(_cli("export", str(store), str(tmp_path / "c"), "--format", "webdataset", "--splits", "train", "--quiet"), "has no train rows")
    _one_line_failure(_cli("info", str(small_release), "--images", "dicom"), "--images choose among the sources of a CheXpert Plus download")
    _one_line_failure(_cli("verify", str(small_release), "--labels", "findings"), "--labels choose among")


# -- --partial, --splits, --version ----------------------------------------------------------------


def test_verify_partial_counts_missing_images_in_one_warning(small_release: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_release, tmp_path / small_release.name))
    removed = sorted(root.rglob("*.jpg"))[:5]
    for image in removed:
        image.unlink()
    code, report = _verify_json(root)
    assert code == 1 and sum(p["kind"] == "missing" for p in report["problems"]) == 5
    code, report = _verify_json(root, "--partial")
    missing = [p for p in report["problems"] if p["kind"] == "missing"]
    assert code == 0 and report["ok"] and len(missing) == 1 and missing[0]["severity"] == "warning"
    assert missing[0]["message"].startswith(f"5 of the {report['images']:,} images listed are not in this partial copy")
    text = _cli("verify", str(root), "--partial")
    assert text.returncode == 0 and "1 missing (warning)" in text.stdout
    (root / "valid.csv").write_text("not,a,csv\n")  # anything else is still an error
    assert _verify_json(root, "--partial")[0] == 1


def test_verify_partial_on_plus(plus_root: Path, tmp_path: Path) -> None:
    root = _copy(plus_root, tmp_path)
    chunk = sorted((root / "PNG").glob("*.zip"))[-1]
    chunk.unlink()
    _, full = _verify_json(root)
    _, partial = _verify_json(root, "--partial")
    lost = sum(p["kind"] == "missing" and "no PNG file" in p["message"] for p in full["problems"])
    counted = [p for p in partial["problems"] if "partial copy" in p["message"]]
    assert lost > 0 and len(counted) == 1 and counted[0]["message"].startswith(f"{lost} of the")
    assert not any("no PNG file" in p["message"] and p["severity"] == "error" for p in partial["problems"])


def test_export_splits_writes_one_set_of_shards_per_split(reference_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    result = _cli("export", str(reference_store), str(out), "--format", "webdataset", "--splits", "train", "valid", "--shard-size", "7", "--quiet")
    assert result.returncode == 0, result.stderr
    store = chexpert.open_store(reference_store)
    for split in ("train", "valid"):
        keys = []
        for shard in sorted((out / split).glob("*.tar")):
            with tarfile.open(shard) as tar:
                keys += sorted({m.name.split(".", 1)[0] for m in tar.getmembers()})
        assert keys and all(k.startswith(f"{split}/") for k in keys)
        assert len(keys) == int((store.index.split == chexpert.schema.SPLITS.index(split)).sum())


def test_version() -> None:
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"chexpert {chexpert.__version__}"


# -- deep JSON elsewhere ---------------------------------------------------------------------------

_DEEP = b"[" * 200_000 + b"]" * 200_000


def test_deeply_nested_json_beside_a_release_is_no_traceback(small_release: Path, plus_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_release, tmp_path / small_release.name))
    (root / "chexpert-synth.json").write_bytes(_DEEP)  # not a marker synth wrote: the release is taken for a real one
    info = _cli("info", str(root))
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    verify = _cli("verify", str(root), "--json")
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert any(p["kind"] == "count" for p in json.loads(verify.stdout)["problems"])  # checked against the published counts
    plus = _copy(plus_root, tmp_path)
    (plus / "radgraph-XL-annotations" / "section_findings.json").write_bytes(_DEEP)
    from chexpert.plus import radgraph

    with pytest.raises(CSVFormatError, match="nested too deeply"):
        radgraph(open_plus(plus), "findings")
