"""Every unreadable input is a problem, never a traceback or a hang.

A faulty disk and a hostile archive, as verify (structural and ``--decode``) and ``read_bytes``
(what prepare calls) meet them: folders, FIFOs and devices named like images, links leading out
of the release, oversized files, zip members with a bad CRC, a huge declared size or a size that
lies, symbolic-link and encrypted members, and files and folders without read permission (run
by a process the kernel holds to permission bits: we are root here and in CI).

Reads that could block run in a subprocess with a timeout, so that a regression fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chexpert
from chexpert.errors import ChexpertError, ImageReadError, ReadError, ReleaseNotFoundError
from chexpert.schema import MAX_IMAGE_BYTES

# Bytes that must never appear in any output: the content of a file outside the release.
SECRET = b"SECRET-0xC0FFEE-never-to-be-printed"


@pytest.fixture
def release(small_release: Path, tmp_path: Path) -> Path:
    """A private copy of the look-alike release, free to damage."""
    return Path(shutil.copytree(small_release, tmp_path / "CheXpert-v1.0-small"))


def _train(root: Path) -> tuple[list[str], dict[str, int]]:
    paths = chexpert.open(root).index("train").path.tolist()
    return paths, {p: i + 2 for i, p in enumerate(paths)}  # CSV line of each path (header is line 1)


def _file(root: Path, csv_path: str) -> Path:
    return root / csv_path.removeprefix("CheXpert-v1.0-small/")


def _run(*argv: str, preexec_fn: Callable[[], object] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)


_READ_EACH = """
import json, sys
import chexpert
release = chexpert.open(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    try:
        out[path] = ["ok", len(release.read_bytes(path))]
    except Exception as exc:
        out[path] = [type(exc).__name__, str(exc), isinstance(exc, chexpert.ChexpertError), isinstance(exc, OSError)]
print(json.dumps(out))
"""


def _read_each(root: Path, paths: list[str], **kwargs: Any) -> dict[str, Any]:
    """read_bytes of each path in a fresh process: the type, message and kinds of what it raised."""
    run = _run("-c", _READ_EACH, str(root), *paths, **kwargs)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# ------------------------------------------------------------------------------ folders


def test_odd_files_in_a_folder_are_problems_with_their_rows(release: Path, tmp_path: Path) -> None:
    paths, rows = _train(release)
    folder, fifo, device, outside, dangling, huge, inner = paths[:7]
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)

    def replace(path: str) -> Path:
        target = _file(release, path)
        target.unlink()
        return target

    replace(folder).mkdir()  # a directory named view1_frontal.jpg
    os.mkfifo(replace(fifo))  # reading it would wait for a writer for ever
    replace(device).symlink_to("/dev/zero")  # endless
    replace(outside).symlink_to(secret)
    replace(dangling).symlink_to(release / "train" / "gone.jpg")
    with open(replace(huge), "wb") as f:  # sparse: one byte past the cap costs no disk
        f.truncate(MAX_IMAGE_BYTES + 1)
    # A link to another image inside the release is fine (deduplicated copies).
    replace(inner).symlink_to(_file(release, paths[8]))

    structural = _run("-m", "chexpert", "verify", str(release), "--json")
    decoded = _run("-m", "chexpert", "verify", str(release), "--json", "--decode", "--workers", "2")
    for run in (structural, decoded):
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        assert SECRET.decode() not in run.stdout + run.stderr
        report = json.loads(run.stdout)
        found = {(p["kind"], p["row"]) for p in report["problems"]}
        assert ("not-a-file", rows[folder]) in found
        assert ("not-a-file", rows[fifo]) in found
        assert ("outside", rows[device]) in found
        assert ("outside", rows[outside]) in found
        assert ("missing", rows[dangling]) in found
        assert rows[inner] not in {row for _, row in found}
        messages = {p["row"]: p["message"] for p in report["problems"]}
        assert "a folder" in messages[rows[folder]] and "FIFO" in messages[rows[fifo]]
        assert "/dev/zero" in messages[rows[device]] and "outside the release" in messages[rows[device]]
    # The oversized file is seen when it is read.
    report = json.loads(decoded.stdout)
    huge_problem = next(p for p in report["problems"] if p["row"] == rows[huge])
    assert huge_problem["kind"] == "unreadable" and f"{MAX_IMAGE_BYTES + 1:,} bytes" in huge_problem["message"]
    assert report["decoded"] == report["images"] - 5  # folder, FIFO, two links out, dangling link

    # read_bytes, as prepare calls it: ImageReadError (ChexpertError and OSError) naming the file.
    results = _read_each(release, [folder, fifo, device, outside, dangling, huge, inner])
    for path in (folder, fifo, device, outside, huge):
        kind, message, is_chexpert, is_os = results[path]
        assert (kind, is_chexpert, is_os) == ("ImageReadError", True, True), results[path]
        assert str(_file(release, path)) in message
        assert SECRET.decode() not in message
    assert results[dangling][0] == "ReleaseNotFoundError"
    assert results[inner][0] == "ok"


def test_a_folder_linked_from_another_disk_is_a_warning_and_is_read(release: Path, tmp_path: Path) -> None:
    """Spreading a release over disks with folder links is legitimate: a link can only lead to
    files with CheXpert image names, so it is reported as a warning and the images are read."""
    paths, _ = _train(release)
    patient = _file(release, paths[0]).parent.parent
    elsewhere = tmp_path / "other-disk" / patient.name
    shutil.move(str(patient), elsewhere)
    patient.symlink_to(elsewhere, target_is_directory=True)
    report = chexpert.verify(release, decode=True, workers=1)
    assert report.ok, report.problems
    assert [(p.kind, p.severity) for p in report.problems] == [("link", "warning")]
    assert str(elsewhere) in report.problems[0].message
    assert chexpert.open(release).read_bytes(paths[0])[:3] == b"\xff\xd8\xff"


def test_a_csv_that_is_a_fifo_or_a_link_out_is_one_line(release: Path, tmp_path: Path) -> None:
    (release / "valid.csv").unlink()
    os.mkfifo(release / "valid.csv")
    run = _run("-m", "chexpert", "info", str(release))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"chexpert info: {release / 'valid.csv'}: is a FIFO (named pipe), not a file; chexpert reads only regular files"]
    verify = _run("-m", "chexpert", "verify", str(release), "--json")
    assert verify.returncode == 1
    assert {
        "kind": "unreadable",
        "severity": "error",
        "file": str(release / "valid.csv"),
        "row": None,
        "message": "is a FIFO (named pipe), not a file; chexpert reads only regular files",
    } in json.loads(verify.stdout)["problems"]
    secret = tmp_path / "secret.csv"
    secret.write_bytes(SECRET)
    (release / "valid.csv").unlink()
    (release / "valid.csv").symlink_to(secret)
    run = _run("-m", "chexpert", "info", str(release))
    assert run.returncode == 1 and "outside the release" in run.stderr and SECRET.decode() not in run.stderr


# ------------------------------------------------------------------------------ zips


def _zip_fields(data: bytearray, name: str) -> tuple[int, int]:
    """Offsets of ``name``'s local header and central directory record in a zip's bytes."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        local = zf.getinfo(name).header_offset
        position = zf.start_dir
    while data[position : position + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", data, position + 28)
        if data[position + 46 : position + 46 + n].decode() == name:
            return local, position
        position += 46 + n + m + k
    raise KeyError(name)


def _patch(data: bytearray, name: str, *, flags: int | None = None, size: int | None = None) -> None:
    """Rewrite a member's general-purpose flags or declared (uncompressed) size in both headers."""
    local, central = _zip_fields(data, name)
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if size is not None:
        struct.pack_into("<I", data, local + 22, size)
        struct.pack_into("<I", data, central + 24, size)


def _hostile_zip(small_release: Path, out: Path) -> tuple[Path, dict[str, str]]:
    """The look-alike as a zip in which some images are damaged or hostile; returns the zip and
    which CSV path got which damage."""
    top = "CheXpert-v1.0-small"
    paths, _ = _train(small_release)
    damage = dict(zip(("crc", "declared", "lying", "encrypted", "symlink", "folder"), paths[:6]))
    members = {f"{top}/{f.name}": f.read_bytes() for f in sorted(small_release.iterdir()) if f.is_file()}  # CSVs, synth's marker
    for path in chexpert.open(small_release).index().path.tolist():
        members[path] = _file(small_release, path).read_bytes()
    zip_path = out / f"{top}.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, content in members.items():
            if name == damage["lying"]:
                # 80 MB of zeros deflate to 80 KB; the headers will claim 1,000 bytes.
                zf.writestr(zipfile.ZipInfo(name), bytes(80 << 20), compress_type=zipfile.ZIP_DEFLATED)
            elif name == damage["symlink"]:
                info = zipfile.ZipInfo(name)
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, str(out / "secret.txt"))  # a link member holds its target's path
            elif name == damage["folder"]:
                zf.writestr(zipfile.ZipInfo(name + "/"), b"")
            else:
                zf.writestr(zipfile.ZipInfo(name), content)  # stored, as the real zip stores JPEGs
    data = bytearray(zip_path.read_bytes())
    local, _ = _zip_fields(data, damage["crc"])
    n, m = struct.unpack_from("<HH", data, local + 26)
    data[local + 30 + n + m + 1000] ^= 0xFF  # one flipped byte inside the JPEG
    _patch(data, damage["declared"], size=3 << 30)
    _patch(data, damage["lying"], size=1000)
    _patch(data, damage["encrypted"], flags=0x1)
    zip_path.write_bytes(data)
    (out / "secret.txt").write_bytes(SECRET)
    return zip_path, damage


def test_damaged_and_hostile_zip_members_are_problems(small_release: Path, tmp_path: Path) -> None:
    zip_path, damage = _hostile_zip(small_release, tmp_path)
    _, rows = _train(small_release)
    run = _run("-m", "chexpert", "verify", str(zip_path), "--json", "--decode", "--workers", "2")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert SECRET.decode() not in run.stdout and str(tmp_path / "secret.txt") not in run.stdout
    report = json.loads(run.stdout)
    by_row = {p["row"]: p for p in report["problems"]}
    assert {p["row"] for p in report["problems"]} == {rows[p] for p in damage.values()}
    assert by_row[rows[damage["crc"]]]["kind"] == "unreadable" and "Bad CRC-32" in by_row[rows[damage["crc"]]]["message"]
    declared = by_row[rows[damage["declared"]]]
    assert declared["kind"] == "unreadable" and f"declares {3 << 30:,} bytes" in declared["message"]
    lying = by_row[rows[damage["lying"]]]
    assert lying["kind"] == "unreadable" and "damaged zip member" in lying["message"]
    assert "encrypted" in by_row[rows[damage["encrypted"]]]["message"]
    assert by_row[rows[damage["symlink"]]]["kind"] == "not-a-file" and "symbolic link" in by_row[rows[damage["symlink"]]]["message"]
    assert by_row[rows[damage["folder"]]]["kind"] == "not-a-file" and "folder" in by_row[rows[damage["folder"]]]["message"]
    for problem in report["problems"]:
        assert str(zip_path) in problem["message"] or problem["kind"] == "not-a-file"

    # read_bytes, as prepare calls it: every one an ImageReadError naming the member.
    results = _read_each(zip_path, list(damage.values()))
    for what, path in damage.items():
        kind, message, is_chexpert, is_os = results[path]
        assert (kind, is_chexpert, is_os) == ("ImageReadError", True, True), (what, results[path])
        assert f"{zip_path}!{path}" in message


def test_image_read_error_is_a_chexpert_error_and_an_os_error() -> None:
    error = ImageReadError("is a FIFO (named pipe), not a file", file="train/patient00001/study1/view1_frontal.jpg", errno=None)
    assert isinstance(error, ChexpertError) and isinstance(error, OSError) and isinstance(error, ReadError)
    assert str(error) == "train/patient00001/study1/view1_frontal.jpg: is a FIFO (named pipe), not a file"
    assert error.file == "train/patient00001/study1/view1_frontal.jpg"
    assert not isinstance(error, ReleaseNotFoundError)  # a missing image is that one, not this
    assert chexpert.ImageReadError is ImageReadError


# ------------------------------------------------------------------------------ permissions

_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


def _as_unprivileged() -> None:
    """preexec_fn: make the child subject to permission bits, as any user but root is.

    The child keeps uid 0 (so that it can still run the interpreter of a virtual environment in a
    0700 temporary clone, which uid 65534 could not reach) but loses CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH, the two capabilities by which root ignores permission bits; exec then
    cannot give them back, as they are dropped from the bounding set.
    """
    if os.geteuid() != 0:
        return  # permission bits already apply
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop the capability to ignore permission bits")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="capabilities are Linux's")
def test_files_and_folders_without_read_permission(release: Path) -> None:
    paths, rows = _train(release)
    image = _file(release, paths[0])  # no permission at all on the file
    patient = _file(release, paths[-1]).parent.parent  # a patient folder nobody may enter
    # a study folder one may enter but not list, of neither
    study = next(f.parent for f in (_file(release, p) for p in paths) if f.parent != image.parent and f.parent.parent != patient)
    under_patient = [p for p in paths if _file(release, p).parent.parent == patient]
    under_study = [p for p in paths if _file(release, p).parent == study]
    image.chmod(0)
    patient.chmod(0)
    study.chmod(0o111)
    probe = _run("-c", f"open({str(image)!r}, 'rb')", preexec_fn=_as_unprivileged)
    assert "PermissionError" in probe.stderr, "the child still reads everything: the test would prove nothing"

    run = _run("-m", "chexpert", "verify", str(release), "--json", "--decode", "--workers", "2", preexec_fn=_as_unprivileged)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    problems = json.loads(run.stdout)["problems"]
    found = {(p["kind"], p["row"]) for p in problems}
    assert ("unreadable", rows[paths[0]]) in found
    for path in under_patient:
        assert ("unreadable", rows[path]) in found
    # Listed nowhere, but each file can still be opened by name: read and decoded as usual.
    assert not any(p["row"] in {rows[q] for q in under_study} for p in problems)
    folders = {p["file"] for p in problems if p["row"] is None}
    assert {str(patient), str(study)} <= folders
    assert all("Permission denied" in p["message"] for p in problems)
    assert {p["row"] for p in problems if p["row"] is not None} == {rows[paths[0]], *(rows[p] for p in under_patient)}

    results = _read_each(release, [paths[0], under_patient[0], under_study[0]], preexec_fn=_as_unprivileged)
    assert results[paths[0]][:1] == ["ImageReadError"] and "Permission denied" in results[paths[0]][1]
    assert results[under_patient[0]][:1] == ["ImageReadError"]
    assert results[under_study[0]][0] == "ok"

    (release / "valid.csv").chmod(0)
    info = _run("-m", "chexpert", "info", str(release), preexec_fn=_as_unprivileged)
    assert info.returncode == 1 and "Traceback" not in info.stderr
    assert info.stderr.strip() == f"chexpert info: {release / 'valid.csv'}: cannot be read (Permission denied)"


def test_a_plus_release_reads_as_safely(tmp_path: Path) -> None:
    """CheXpert Plus reads its DICOMs and PNGs through the same safe reader."""
    from chexpert.plus import open_plus
    from chexpert.synth.plus import synthesize_plus

    root = synthesize_plus(tmp_path, patients=2, valid_patients=1, seed=5)
    release = open_plus(root, images="dicom")
    path = release.index().path.tolist()[0]
    target = Path(release.locate(path))
    target.unlink()
    os.mkfifo(target)
    run = _run(
        "-c",
        "import sys; from chexpert.plus import open_plus\n"
        "release = open_plus(sys.argv[1], images='dicom')\n"
        "try:\n    release.read_bytes(sys.argv[2])\nexcept OSError as exc:\n    print(type(exc).__name__, exc)",
        str(root),
        path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ImageReadError ") and "FIFO" in run.stdout
