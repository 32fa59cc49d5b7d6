"""A look-alike MIMIC-CXR-JPG download: the real file names, headers and id formats, drawn content.

``synthesize_mimic(out)`` writes ``out/mimic-cxr-jpg/`` with the four gzipped CSVs
(``mimic-cxr-2.0.0-metadata.csv.gz``, ``-split``, ``-chexpert``, ``-negbio``; the label files'
observations in alphabetical order, as released), the images as small JPEGs under
``files/pNN/pSUBJECT/sSTUDY/DICOM.jpg`` drawn from the study's labels by the CheXpert look-alike's
drawing code, the reports rendered from the labels (:mod:`chexpert.synth.report`) in
``mimic-cxr-reports.zip`` (members ``files/pNN/pSUBJECT/sSTUDY.txt``, ``___`` for removed
identifiers), the :data:`~chexpert.release.SYNTH_MARKER` and ``QUIRKS.json``, which lists where
each quirk was planted:

- as released: a study without label rows, studies whose chexpert labels are all empty, images
  with an empty ViewPosition, LL laterals;
- damage for ``verify`` to find: an image in the metadata but not in the split file, a split row
  disagreeing with the metadata on the study, a split row without an image, a label row without
  images, an image file missing, an image file in no CSV.

:func:`mimic_tables` draws the rows alone (no pictures), fast enough for the full 377,110
images of the benchmark.

>>> root = synthesize_mimic(tmp_path, patients=20)
>>> chexpert.open(root).kind
'mimic'
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import shutil
import zipfile
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from chexpert import schema
from chexpert.fileio import create_folder
from chexpert.release import SYNTH_MARKER
from chexpert.synth.place import claim_targets, mark_folder, put_in_place
from chexpert.synth.report import render_report
from chexpert.synth.rows import CODE_BY_BIN, LABEL_CDF, P_NO_FINDING
from chexpert.synth.write import render_one, run_jobs
from chexpert.validation import check_int

__all__ = ["MIMIC_DIR", "REPORTS_ZIP", "QUIRKS", "mimic_tables", "table_bytes", "synthesize_mimic", "report_text"]

MIMIC_DIR: Final = "mimic-cxr-jpg"
REPORTS_ZIP: Final = "mimic-cxr-reports.zip"
#: The file listing where each quirk was planted.
QUIRKS: Final = "QUIRKS.json"

# Published shares: images per split (train 368,960 / validate 2,991 / test 5,159), studies per
# patient (227,835 / 65,379), images per study (377,110 / 227,835), empty ViewPosition (~15,800).
_P_VALID: Final = 2_991 / 377_110
_P_TEST: Final = 5_159 / 377_110
_STUDIES_MEAN: Final = 227_835 / 65_379
_P_EMPTY_VIEW: Final = 15_800 / 377_110
_P_ALL_BLANK: Final = 2_400 / 227_827
_BLANK_CODE: Final = int(schema.Code.BLANK)
_SPELL: Final = {int(code): text for text, code in schema.LABEL_SPELLINGS.items()}
_LABEL_ORDER: Final = [schema.OBSERVATIONS.index(name) for name in schema.MIMIC_LABEL_COLUMNS[2:]]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0x4D494D, *key])


def _draw_codes(rng: np.random.Generator, pa: np.ndarray) -> np.ndarray:
    """(studies, 14) label codes by the CheXpert look-alike's rates, No Finding rule obeyed."""
    n = len(pa)
    codes = np.full((n, len(schema.OBSERVATIONS)), _BLANK_CODE, dtype=np.int8)
    no_finding = rng.random(n) < np.where(pa, P_NO_FINDING[True], P_NO_FINDING[False])
    u = rng.random((n, len(schema.OBSERVATIONS) - 1))
    for key_pa in (False, True):
        for key_nf in (False, True):
            rows = (pa == key_pa) & (no_finding == key_nf)
            cdf = LABEL_CDF[(key_pa, key_nf)]  # (13, 3): cumulative P(pos), P(pos or unc), P(pos, unc or neg)
            bins = (u[rows][:, :, None] >= cdf[None, :, :]).sum(axis=2)  # 0 pos, 1 unc, 2 neg, 3 blank
            codes[rows, 1:] = CODE_BY_BIN[bins]
    codes[no_finding, 0] = schema.Code.POSITIVE
    return codes


def _dicom_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``02aa804e-bde0afdd-112c0b34-7bc16630-4e384014``: five groups of eight hex digits, distinct."""
    raw = rng.integers(0, 2**32, size=(n, 5), dtype=np.uint64)
    raw[:, 4] = (raw[:, 4] & np.uint64(0xFFFF0000)) | np.arange(n, dtype=np.uint64) % np.uint64(0x10000)
    raw[:, 3] = (raw[:, 3] & np.uint64(0xFFFFFF00)) | (np.arange(n, dtype=np.uint64) >> np.uint64(16)) % np.uint64(0x100)
    hexed = [np.char.zfill(np.char.mod("%x", raw[:, k].astype(np.int64)), 8) for k in range(5)]
    out = hexed[0]
    for part in hexed[1:]:
        out = np.char.add(np.char.add(out, "-"), part)
    return out.astype(object)


def mimic_tables(
    *, patients: int = 20, seed: int = 0, images: int | None = None, valid_patients: int | None = None, test_patients: int | None = None
) -> dict[str, Any]:
    """The rows of a look-alike, as columns (numpy arrays), without quirks or pictures.

    ``images`` (if given) draws patients until that many image rows exist (the benchmark's
    377,110). Patients are split by the published shares, except that ``valid_patients`` and
    ``test_patients`` (default: at least one each when there are three patients or more) are the
    last ones drawn. Returns ``metadata`` (dict of columns), ``split`` (per image), ``studies`` (study
    ids with their subject and (N, 14) codes in ``schema.OBSERVATIONS`` order, ``pa`` flag).

    >>> t = mimic_tables(patients=5)
    >>> sorted(t)
    ['metadata', 'split', 'studies']
    """
    rng = _rng(seed, 1)
    target = images
    n_patients = patients if images is None else int(images / (_STUDIES_MEAN * 1.655)) + 1000
    subjects = 10_000_000 + np.sort(rng.choice(9_999_999, size=n_patients, replace=False))
    per_patient = 1 + rng.geometric(1 / _STUDIES_MEAN, size=n_patients) - 1
    per_patient = np.maximum(per_patient, 1)
    n_studies = int(per_patient.sum())
    study_subject = np.repeat(subjects, per_patient)
    study_ids = 50_000_000 + rng.choice(9_999_999, size=n_studies, replace=False)
    pa = rng.random(n_studies) < 0.42
    # Images per study: a frontal, mostly a lateral, sometimes a second frontal.
    per_study = 1 + (rng.random(n_studies) < np.where(pa, 0.85, 0.35)).astype(np.int64) + (rng.random(n_studies) < 0.08)
    if target is not None:
        keep = np.cumsum(per_study) <= target
        last = int(keep.sum())
        if last < n_studies and int(per_study[:last].sum()) < target:
            per_study[last] = target - int(per_study[:last].sum())
            last += 1
        n_studies = last
        study_subject, study_ids, pa, per_study = study_subject[:last], study_ids[:last], pa[:last], per_study[:last]
    codes = _draw_codes(rng, pa)
    n_images = int(per_study.sum())
    image_study = np.repeat(np.arange(n_studies), per_study)
    first = np.r_[0, np.cumsum(per_study)[:-1]]
    position = np.arange(n_images) - first[image_study]
    lateral = position == 1
    view = np.where(lateral, np.where(rng.random(n_images) < 0.002, "LL", "LATERAL"), np.where(pa[image_study], "PA", "AP")).astype(object)
    view[rng.random(n_images) < _P_EMPTY_VIEW] = ""
    dates = 21_100_101 + rng.integers(0, 90, n_studies) * 10_000 + rng.integers(0, 12, n_studies) * 100 + rng.integers(0, 28, n_studies)
    times = rng.integers(0, 24, n_studies) * 10_000 + rng.integers(0, 60, n_studies) * 100 + rng.integers(0, 60_000, n_studies) / 1000
    # Patient-level splits, by the published image shares; small look-alikes get at least one of each.
    u = rng.random(len(subjects))
    split_of_patient = np.where(u < _P_TEST, 2, np.where(u < _P_TEST + _P_VALID, 1, 0))
    used = np.unique(study_subject)
    if images is None:
        n_test = test_patients if test_patients is not None else (max(1, round(len(used) * _P_TEST)) if len(used) >= 3 else 0)
        n_valid = valid_patients if valid_patients is not None else (max(1, round(len(used) * _P_VALID)) if len(used) >= 3 else 0)
        if n_test + n_valid >= len(used):
            from chexpert.errors import InvalidArgumentError

            raise InvalidArgumentError(f"valid_patients + test_patients ({n_valid} + {n_test}) must leave training patients among {len(used)}")
        split_of_patient[:] = 0
        split_of_patient[np.searchsorted(subjects, used[len(used) - n_test :])] = 2
        split_of_patient[np.searchsorted(subjects, used[len(used) - n_test - n_valid : len(used) - n_test])] = 1
    image_subject = study_subject[image_study]
    split_word = np.array(["train", "validate", "test"], dtype=object)[split_of_patient[np.searchsorted(subjects, image_subject)]]
    procedure = np.where(pa, "CHEST (PA AND LAT)", "CHEST (PORTABLE AP)").astype(object)[image_study]
    metadata = {
        "dicom_id": _dicom_ids(rng, n_images),
        "subject_id": image_subject,
        "study_id": study_ids[image_study],
        "PerformedProcedureStepDescription": procedure,
        "ViewPosition": view,
        "Rows": np.where(lateral, 3056, 2544),
        "Columns": np.where(lateral, 2544, 3056),
        "StudyDate": dates[image_study],
        "StudyTime": times[image_study],
        "ProcedureCodeSequence_CodeMeaning": procedure,
        "ViewCodeSequence_CodeMeaning": np.where(lateral, "lateral", "postero-anterior").astype(object),
        "PatientOrientationCodeSequence_CodeMeaning": np.full(n_images, "Erect", dtype=object),
    }
    return {
        "metadata": metadata,
        "split": split_word,
        "studies": {"study_id": study_ids, "subject_id": study_subject, "codes": codes, "pa": pa},
    }


def _time_text(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def table_bytes(tables: dict[str, Any], *, gz: bool = True, quirks: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The four CSVs (file name -> bytes) of ``mimic_tables``' rows; ``quirks`` (from :func:`plant`) edits them.

    >>> sorted(table_bytes(mimic_tables(patients=3)))[0]
    'mimic-cxr-2.0.0-chexpert.csv.gz'
    """
    q = quirks or {}
    meta = tables["metadata"]
    n = len(meta["dicom_id"])
    times = [_time_text(float(t)) for t in meta["StudyTime"]]
    lines = [",".join(schema.MIMIC_METADATA_COLUMNS)]
    for i in range(n):
        lines.append(",".join((meta["dicom_id"][i], str(meta["subject_id"][i]), str(meta["study_id"][i]), meta["PerformedProcedureStepDescription"][i],
                               meta["ViewPosition"][i], str(meta["Rows"][i]), str(meta["Columns"][i]), str(meta["StudyDate"][i]), times[i],
                               meta["ProcedureCodeSequence_CodeMeaning"][i], meta["ViewCodeSequence_CodeMeaning"][i],
                               meta["PatientOrientationCodeSequence_CodeMeaning"][i])))  # fmt: skip
    split_lines = [",".join(schema.MIMIC_SPLIT_COLUMNS)]
    not_in_split = set(q.get("not_in_split", []))
    wrong_study = {d: s for d, s in q.get("split_disagrees", [])}
    for i in range(n):
        dicom = meta["dicom_id"][i]
        if dicom in not_in_split:
            continue
        split_lines.append(f"{dicom},{wrong_study.get(dicom, meta['study_id'][i])},{meta['subject_id'][i]},{tables['split'][i]}")
    for dicom, study, subject in q.get("split_only", []):
        split_lines.append(f"{dicom},{study},{subject},train")
    studies = tables["studies"]
    unlabeled = set(q.get("unlabeled", []))
    files = {}
    for role in ("chexpert", "negbio"):
        label_lines = [",".join(schema.MIMIC_LABEL_COLUMNS)]
        codes = studies["codes"] if role == "chexpert" else _negbio(studies["codes"])
        blank = set(q.get("all_blank", [])) if role == "chexpert" else set()
        for k, (study, subject) in enumerate(zip(studies["study_id"].tolist(), studies["subject_id"].tolist())):
            if study in unlabeled:
                continue
            row = [_SPELL[_BLANK_CODE] if study in blank else _SPELL[int(codes[k, j])] for j in _LABEL_ORDER]
            label_lines.append(f"{subject},{study}," + ",".join(row))
        for study, subject in q.get("label_only", []):
            label_lines.append(f"{subject},{study}," + ",".join(["1.0"] + [""] * (len(_LABEL_ORDER) - 1)))
        files[role] = label_lines
    out = {"metadata": lines, "split": split_lines, **files}
    result = {}
    for role, rows in out.items():
        data = ("\n".join(rows) + "\n").encode()
        name = schema.MIMIC_FILES[role] + (".gz" if gz else "")
        result[name] = gzip.compress(data, compresslevel=6, mtime=0) if gz else data
    return result


def _negbio(codes: np.ndarray) -> np.ndarray:
    """NegBio's file: the same mentions, but it reads fewer hedges (uncertain -> positive for a few)."""
    out = codes.copy()
    rows, columns = np.indices(out.shape)
    flip = (out == schema.Code.UNCERTAIN) & ((rows + columns) % 3 == 0)
    out[flip] = schema.Code.POSITIVE
    return out


def report_text(codes: np.ndarray, *, seed: int, study: int, pa: bool) -> str:
    """A MIMIC-style free-text report for one study's codes (``___`` for removed identifiers).

    >>> "IMPRESSION:" in report_text(np.array([1] + [-2] * 13), seed=0, study=50000001, pa=True)
    True
    """
    report = render_report(codes.tolist(), seed=[seed, study], view="PA and lateral" if pa else "portable AP")
    s = report.sections
    exam = "CHEST (PA AND LAT)" if pa else "CHEST (PORTABLE AP)"
    parts = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {exam}",
        "",
        f" INDICATION:  {s['clinical_history']}",
        "",
        f" TECHNIQUE:  {s['technique']}",
        "",
        f" COMPARISON:  {s['comparison']}",
        "",
        " FINDINGS:",
        "",
        f" {s['findings']}",
        "",
        " IMPRESSION:",
        "",
        " " + s["impression"].replace("\n", "\n "),
    ]
    return "\n".join(parts) + "\n"


def plant(tables: dict[str, Any], seed: int) -> dict[str, Any]:
    """Choose where each quirk goes (see the module's description); JSON-ready."""
    rng = _rng(seed, 2)
    meta = tables["metadata"]
    studies = tables["studies"]
    n_studies = len(studies["study_id"])
    if n_studies < 8:
        return {}
    study_first = {int(s): i for i, s in reversed(list(enumerate(meta["study_id"].tolist())))}
    rows_of = lambda k: [i for i, s in enumerate(meta["study_id"].tolist()) if s == int(studies["study_id"][k])]  # noqa: E731
    split_of = np.array([tables["split"][study_first[int(s)]] for s in studies["study_id"].tolist()], dtype=object)
    # The damage goes into training studies, so that the test split can be predicted and scored
    # (an external test); the unlabeled study into the test split, where evaluate must warn about it.
    pick = [int(k) for k in rng.permutation(n_studies)]
    tests = [k for k in pick if split_of[k] == "test"]
    unlabeled = tests[0] if tests else pick[0]
    pick = [k for k in pick if k != unlabeled]
    blank = pick[0]
    with_two, other = None, [k for k in pick[1:] if split_of[k] == "train"]
    for k in other:
        if len(rows_of(k)) >= 2:
            with_two = k
            break
    chosen = [k for k in other if k != with_two]
    missing_row = study_first[int(studies["study_id"][chosen[0]])]
    disagree_row = study_first[int(studies["study_id"][chosen[1]])]
    not_in_split_row = rows_of(with_two)[-1] if with_two is not None else study_first[int(studies["study_id"][chosen[2]])]
    # At least one empty ViewPosition and one LL lateral, whatever the draw gave.
    views = meta["ViewPosition"]
    laterals = [i for i, v in enumerate(views) if v == "LATERAL"]
    if not any(v == "LL" for v in views) and laterals:
        views[laterals[0]] = "LL"
    if not any(v == "" for v in views):
        views[int(rng.integers(len(views)))] = ""
    taken = set(studies["study_id"].tolist())
    free = 50_000_000
    while free in taken:
        free += 1
    return {
        "unlabeled": [int(studies["study_id"][unlabeled])],
        "all_blank": [int(studies["study_id"][blank])],
        "not_in_split": [str(meta["dicom_id"][not_in_split_row])],
        "split_disagrees": [[str(meta["dicom_id"][disagree_row]), free + 1 if free + 1 not in taken else free]],
        "split_only": [["deadbeef-00000000-00000000-00000000-00000001", 59_999_999, int(meta["subject_id"][0])]],
        "label_only": [[59_999_998, int(meta["subject_id"][0])]],
        "missing_image": [str(meta["dicom_id"][missing_row])],
        "unlisted_image": "files/p10/p10000000/s50000000/feedface-00000000-00000000-00000000-00000002.jpg",
        "empty_view": [str(d) for d, v in zip(meta["dicom_id"], meta["ViewPosition"]) if v == ""],
        "ll_lateral": [str(d) for d, v in zip(meta["dicom_id"], meta["ViewPosition"]) if v == "LL"],
    }


def _picture_row(meta: dict[str, Any], i: int, codes: np.ndarray, patient_number: int, study_number: int, view: int) -> dict[str, str]:
    """A CheXpert-style row for the CheXpert look-alike's drawing code (which keys on these numbers)."""
    position = meta["ViewPosition"][i]
    frontal = position not in schema.MIMIC_LATERAL
    row = {"Path": f"train/patient{patient_number:05d}/study{study_number}/view{view}_{'frontal' if frontal else 'lateral'}.jpg",
           "Frontal/Lateral": "Frontal" if frontal else "Lateral", "AP/PA": position if position in ("AP", "PA") else ""}  # fmt: skip
    for j, name in enumerate(schema.OBSERVATIONS):
        row[name] = _SPELL[int(codes[j])]
    return row


def synthesize_mimic(
    out: str | os.PathLike[str],
    *,
    patients: int = 20,
    seed: int = 0,
    quirks: bool = True,
    valid_patients: int | None = None,
    test_patients: int | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pathlib.Path:
    """Write a look-alike MIMIC-CXR-JPG download into ``out/mimic-cxr-jpg`` and return that folder.

    ``quirks`` plants the release's quirks and the damage listed in the module's description
    (recorded in ``QUIRKS.json``); without, every file agrees. Same arguments, same bytes. An
    existing look-alike is replaced only with ``overwrite``, and only if synth wrote it.
    ``valid_patients`` and ``test_patients`` choose the size of the validate and test splits
    (default: their published shares, at least one patient each).

    >>> root = synthesize_mimic(tmp_path, patients=10)
    """
    check_int("patients", patients, low=1, high=100_000)
    check_int("workers", workers, low=1, high=1024)
    tables = mimic_tables(patients=patients, seed=seed, valid_patients=valid_patients, test_patients=test_patients)
    planted = plant(tables, seed) if quirks else {}
    out = pathlib.Path(out)
    claim_targets(out, [MIMIC_DIR], overwrite)
    out.mkdir(parents=True, exist_ok=True)
    staging = create_folder(out, ".synth-mimic-")
    try:
        root = staging / MIMIC_DIR
        root.mkdir()
        csvs = table_bytes(tables, quirks=planted)
        for name, data in csvs.items():
            (root / name).write_bytes(data)
        meta = tables["metadata"]
        studies = tables["studies"]
        row_of_study = {int(s): k for k, s in enumerate(studies["study_id"].tolist())}
        patient_number = {int(s): k + 1 for k, s in enumerate(np.unique(meta["subject_id"]).tolist())}
        study_number: dict[int, int] = {}
        studies_of_subject: dict[int, int] = {}
        view_number: dict[int, int] = {}
        missing = set(planted.get("missing_image", []))
        jobs, targets = [], []
        for i in range(len(meta["dicom_id"])):
            subject, study = int(meta["subject_id"][i]), int(meta["study_id"][i])
            if study not in study_number:  # the drawing code keys on a patient's study number 1, 2, ...
                studies_of_subject[subject] = studies_of_subject.get(subject, 0) + 1
                study_number[study] = studies_of_subject[subject]
            view_number[study] = view_number.get(study, 0) + 1
            rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{meta['dicom_id'][i]}.jpg"
            if meta["dicom_id"][i] in missing:
                continue
            jobs.append(
                (_picture_row(meta, i, studies["codes"][row_of_study[study]], patient_number[subject], study_number[study], view_number[study]), seed, "small")
            )
            targets.append(rel)
        for rel, data in zip(targets, run_jobs(render_one, jobs, workers, progress), strict=True):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        if planted:
            extra = root / planted["unlisted_image"]
            extra.parent.mkdir(parents=True, exist_ok=True)
            extra.write_bytes(render_one((_picture_row(meta, 0, studies["codes"][0], 1, 1, 9), seed, "small")))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as reports:
            for k, (study, subject) in enumerate(zip(studies["study_id"].tolist(), studies["subject_id"].tolist())):
                info = zipfile.ZipInfo(f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt", date_time=(2019, 9, 1, 0, 0, 0))
                reports.writestr(info, report_text(studies["codes"][k], seed=seed, study=study, pa=bool(studies["pa"][k])))
        (root / REPORTS_ZIP).write_bytes(buffer.getvalue())
        (root / QUIRKS).write_text(json.dumps(planted, indent=1) + "\n")
        rows = {"metadata": len(meta["dicom_id"])}
        split_counts = {w: int((tables["split"] == w).sum()) for w in ("train", "validate", "test")}
        mark_folder(root, "mimic", seed, {"patients": patients, **split_counts}, {})
        marker = json.loads((root / SYNTH_MARKER).read_bytes())
        marker["rows"] = rows
        (root / SYNTH_MARKER).write_bytes(json.dumps(marker, separators=(",", ":")).encode() + b"\n")
        put_in_place(out, staging, [MIMIC_DIR])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / MIMIC_DIR
