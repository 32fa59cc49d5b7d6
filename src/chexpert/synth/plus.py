"""A look-alike CheXpert Plus download: the CSV, report text, both label files, RadGraph-XL, PNGs and DICOMs.

``synthesize_plus`` writes, for the patients, studies and views of a look-alike CheXpert release
(the same ``synth_rows``), the files of CheXpert Plus as released::

    CheXpert-Plus/
      df_chexpert_plus_240401.csv            27 columns after an unnamed index column, all text
      chexbert_labels/{report,findings,impression}_fixed.json     JSON lines, own order, null kept
      radgraph-XL-annotations/section_{findings,impression}.json  one JSON array per section
      PNG/png_chexpert_plus_chunk_N.zip      members PNG/<split>/patient…/study…/view….png (8- and 16-bit)
      DICOM/Uncompressed/<split>/patient…/study…/view….dcm       CR/DX, MONOCHROME1/2, 12-16 bits,
                                                                 native, deflated, RLE, JPEG Lossless, JPEG 2000
      CheXpert-v1.0-small/                   the original release the rows join to (``original=True``)

Reports are written from each study's labels (:func:`chexpert.synth.report.render_report`), and
the label files hold what the text says. The release's known quirks are reproduced: a study whose
images carry differently anonymised copies of its report with different labels, impression text in
``section_findings``, a literal "None" section, accession numbers with leading zeros, a row
without age, DICOMs that are missing, files without preamble, a Plus row whose age disagrees with
the original and an original row that Plus lacks. :data:`QUIRKS` says where they are.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
from PIL import Image

from chexpert import schema
from chexpert.errors import ChexpertError
from chexpert.fileio import create_folder
from chexpert.synth.dicom import draw_params, render_dicom
from chexpert.synth.draw import render_pixels
from chexpert.synth.place import claim_targets, mark_folder, put_in_place, warn_leftovers
from chexpert.synth.release import synthesize
from chexpert.synth.report import SECTION_COLUMNS, render_report
from chexpert.synth.rows import synth_rows
from chexpert.synth.write import run_jobs
from chexpert.validation import check_choice, check_int

__all__ = [
    "PLUS_DIR",
    "PLUS_CSV",
    "PLUS_COLUMNS",
    "LABEL_FILES",
    "RADGRAPH_FILES",
    "RACES",
    "ETHNICITIES",
    "INSURANCE_TYPES",
    "plus_rows",
    "synthesize_plus",
]

PLUS_DIR: Final = "CheXpert-Plus"
PLUS_CSV: Final = "df_chexpert_plus_240401.csv"
#: The 27 columns of the Plus CSV, in order (the file starts with an unnamed index column).
PLUS_COLUMNS: Final[tuple[str, ...]] = schema.PLUS_COLUMNS
#: Label file of each report part, under ``chexbert_labels/``.
LABEL_FILES: Final[dict[str, str]] = schema.PLUS_LABEL_FILES
#: RadGraph-XL file of each section, under ``radgraph-XL-annotations/``.
RADGRAPH_FILES: Final[dict[str, str]] = schema.PLUS_RADGRAPH_FILES

RACES: Final[tuple[str, ...]] = schema.RACES
_RACE_P: Final = np.array([0.52, 0.17, 0.07, 0.015, 0.005, 0.16, 0.06])
ETHNICITIES: Final[tuple[str, ...]] = schema.ETHNICITIES
_ETHNICITY_P: Final = np.array([0.78, 0.15, 0.07])
INSURANCE_TYPES: Final[tuple[str, ...]] = schema.INSURANCE_TYPES
_INSURANCE_P: Final = np.array([0.45, 0.15, 0.33, 0.07])

_TAG_PLUS, _TAG_REPORT, _TAG_IMAGE = 11, 12, 13
_MANUFACTURERS: Final = (
    ("Agfa", "CR 85-X"),
    ("Carestream Health", "DRX-Revolution"),
    ("FUJIFILM Corporation", "FCR Velocity"),
    ("GE Healthcare", "Definium 8000"),
)
_NONE_TEXT: Final = "None"


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TAG_PLUS, *key])


def _codes(row: dict[str, str]) -> list[int]:
    return [int(schema.LABEL_SPELLINGS[row[name]]) for name in schema.OBSERVATIONS]


def _valid_codes(codes: list[int], rng: np.random.Generator) -> list[int]:
    """Valid labels are 0/1 consensus: a report mentions positives and a few negatives, not every 0."""
    out = [schema.Code.BLANK.value] * len(codes)
    for j, code in enumerate(codes):
        if code == schema.Code.POSITIVE or (j in (9, 10) and rng.random() < 0.6):  # Pneumothorax, Pleural Effusion
            out[j] = code
    return out


def plus_rows(*, patients: int = 20, valid_patients: int | None = None, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The Plus rows (every column as written, plus private ``_labels`` per report part) and :data:`QUIRKS`-style notes.

    Rows follow the original look-alike's (``synth_rows`` with the same seed), one per image.

    >>> rows, quirks = plus_rows(patients=3)
    >>> rows[0]["path_to_image"], rows[0]["split"]
    ('valid/patient64541/study1/view1_frontal.jpg', 'valid')
    """
    check_int("patients", patients, low=1, high=64540)
    if valid_patients is None:
        valid_patients = min(max(2, patients // 50), 200)
    originals = synth_rows("valid", patients=valid_patients, seed=seed) + synth_rows("train", patients=patients, seed=seed)
    quirks: dict[str, list[str]] = {"report_copies": [], "impression_in_findings": [], "none_section": [], "missing_age": [],
                                    "missing_dicom": [], "age_disagrees": [], "not_in_plus": []}  # fmt: skip
    studies: dict[str, list[dict[str, str]]] = {}
    for row in originals:
        studies.setdefault(schema.study_key(row["Path"]), []).append(row)
    rows: list[dict[str, Any]] = []
    patient_info: dict[int, dict[str, str]] = {}
    copies_left = max(1, patients // 10)
    for key, images in studies.items():
        split, patient_word, study_word = key.split("/")
        patient, study = int(patient_word[len("patient") :]), int(study_word[len("study") :])
        split_code = schema.SPLITS.index(split)
        if patient not in patient_info:
            prng = _rng(seed, split_code, patient)
            patient_info[patient] = {
                "race": RACES[int(np.searchsorted(np.cumsum(_RACE_P), prng.random() * _RACE_P.sum()))],
                "ethnicity": ETHNICITIES[int(np.searchsorted(np.cumsum(_ETHNICITY_P), prng.random() * _ETHNICITY_P.sum()))],
                "insurance_type": INSURANCE_TYPES[int(np.searchsorted(np.cumsum(_INSURANCE_P), prng.random() * _INSURANCE_P.sum()))],
                "interpreter_needed": "Yes" if prng.random() < 0.08 else "No",
                "deceased": "Yes" if prng.random() < 0.2 else "No",
                "recent_bmi": f"{prng.normal(27, 5):.1f}" if prng.random() < 0.7 else "",
            }
        srng = _rng(seed, _TAG_REPORT, split_code, patient, study)
        codes = _codes(images[0])
        if split != "train":
            codes = _valid_codes(codes, srng)
        frontal_views = {r["AP/PA"] for r in images if r["Frontal/Lateral"] == "Frontal"}
        view = "PA and lateral" if "PA" in frontal_views else "portable AP"
        sex = images[0]["Sex"]
        report = render_report(codes, seed=[seed, split_code, patient, study], view=view, sex=sex)
        variants = [report]
        if len(images) > 1 and copies_left and any(c == schema.Code.POSITIVE for c in codes[1:13]):
            # One study, two differently anonymised copies of its report that the labeler read differently.
            j = next(k for k in range(1, 13) if codes[k] == schema.Code.POSITIVE)
            hedged = list(codes)
            hedged[j] = schema.Code.UNCERTAIN.value
            variants.append(render_report(hedged, seed=[seed, split_code, patient, study], view=view, sex=sex))
            copies_left -= 1
            quirks["report_copies"].append(key)
        for k, image in enumerate(images):
            rep = variants[min(k, len(variants) - 1)]
            sections = dict(rep.sections)
            text = rep.text
            if rep is not report:
                text = text.replace("___-year-old", "[AGE]-year-old")
                sections["clinical_history"] = sections["clinical_history"].replace("___-year-old", "[AGE]-year-old")
            path = schema.strip_release_prefix(image["Path"])
            plus_row: dict[str, Any] = {
                "path_to_image": path,
                "path_to_dcm": path.removesuffix(".jpg") + ".dcm",
                "frontal_lateral": image["Frontal/Lateral"],
                "ap_pa": image["AP/PA"],
                "deid_patient_id": patient_word,
                "patient_report_date_order": str(study),
                "report": text,
                **{f"section_{s}": sections[s] for s in SECTION_COLUMNS},
                "age": image["Age"],
                "sex": image["Sex"],
                **patient_info[patient],
                "split": split,
                "_labels": {"report": rep.labels, "findings": rep.findings_labels, "impression": rep.impression_labels},
                "_original": image,
            }
            rows.append(plus_row)
    # Quirks at fixed, seed-independent positions of the train rows.
    train = [r for r in rows if r["split"] == "train"]
    if len(train) >= 8:
        r = train[1]
        r["section_findings"], r["section_impression"] = r["section_impression"], ""
        r["_labels"]["findings"], r["_labels"]["impression"] = r["_labels"]["impression"], (schema.Code.BLANK.value,) * 14
        quirks["impression_in_findings"].append(r["path_to_image"])
        train[2]["section_procedure_comments"] = _NONE_TEXT
        quirks["none_section"].append(train[2]["path_to_image"])
        train[3]["age"] = ""
        quirks["missing_age"].append(train[3]["path_to_image"])
        for r in (train[4], train[-1]):
            quirks["missing_dicom"].append(r["path_to_dcm"])
        age = int(train[5]["age"] or 0)
        train[5]["age"] = str(age + 1 if age < 90 else age - 1)
        quirks["age_disagrees"].append(train[5]["path_to_image"])
        dropped = train[6]
        rows.remove(dropped)
        quirks["not_in_plus"].append(dropped["path_to_image"])
    return rows, quirks


def _json_label(code: int) -> float | None:
    return None if code == schema.Code.BLANK else float(code)


def _label_lines(rows: Sequence[dict[str, Any]], part: str, seed: int) -> bytes:
    order = np.random.default_rng([seed, _TAG_PLUS, len(part)]).permutation(len(rows))  # their own order
    lines = []
    for i in order.tolist():
        row = rows[i]
        record: dict[str, Any] = {"path_to_image": row["path_to_image"]}
        record.update({name: _json_label(code) for name, code in zip(schema.OBSERVATIONS, row["_labels"][part])})
        lines.append(json.dumps(record))
    return ("\n".join(lines) + "\n").encode()


_ENTITY_WORDS: Final = {
    "effusion", "effusions", "pneumothorax", "cardiomegaly", "edema", "opacity", "opacities", "consolidation", "atelectasis",
    "pneumonia", "nodule", "mass", "fracture", "tube", "catheter", "pacemaker", "thickening", "mediastinum", "heart", "silhouette",
}  # fmt: skip
_ANATOMY_WORDS: Final = {"left", "right", "lobe", "base", "apical", "apex", "rib", "clavicle", "lung", "pleural", "chest", "wall", "carina"}


def _radgraph(text: str) -> dict[str, Any]:
    """A RadGraph-XL-shaped annotation of ``text``: entities by token, labelled by their sentence's certainty."""
    entities: dict[str, Any] = {}
    tokens = text.replace(".", " .").split()
    certainty = "definitely present"
    for i, token in enumerate(tokens):
        word = token.lower()
        if i == 0 or tokens[i - 1] == ".":
            sentence = " ".join(tokens[i : i + 12]).lower()
            certainty = ("definitely absent" if word in ("no", "there") and " no " in f" {sentence} " else
                         "uncertain" if any(w in sentence for w in ("possible", "questionable", "may ", "cannot be excluded")) else
                         "definitely present")  # fmt: skip
        if word in _ENTITY_WORDS or word in _ANATOMY_WORDS:
            kind = "Observation" if word in _ENTITY_WORDS else "Anatomy"
            entities[str(len(entities) + 1)] = {
                "tokens": token, "label": f"{kind}::{certainty if kind == 'Observation' else 'definitely present'}",
                "start_ix": i, "end_ix": i, "relations": [],
            }  # fmt: skip
    return {"text": " ".join(tokens), "entities": entities, "data_source": None, "data_split": "inference"}


def _radgraph_file(rows: Sequence[dict[str, Any]], section: str) -> bytes:
    out = [_radgraph(r[f"section_{section}"]) for r in rows if len(r[f"section_{section}"].split()) >= 2]
    return json.dumps(out).encode()


def _plus_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *PLUS_COLUMNS])
    for i, row in enumerate(rows):
        writer.writerow([str(i), *(row[c] for c in PLUS_COLUMNS)])
    return buffer.getvalue().encode("utf-8")


def _image_job(args: tuple[dict[str, Any], int]) -> tuple[bytes, bytes]:
    """(PNG bytes, DICOM bytes) of one row."""
    row, seed = args
    original = row["_original"]
    picture = render_pixels(original, seed=seed, release="small")
    split, patient, study, view = (schema.SPLITS.index(row["split"]), int(row["deid_patient_id"][7:]),
                                   int(row["patient_report_date_order"]), int(row["path_to_image"].rsplit("/view", 1)[1].split("_")[0]))  # fmt: skip
    rng = _rng(seed, _TAG_IMAGE, split, patient, study, view)
    buffer = io.BytesIO()
    if rng.random() < 0.25:  # some PNGs are 16-bit
        Image.fromarray(picture.astype(np.uint16) * 257).save(buffer, "PNG")
    else:
        Image.fromarray(picture).save(buffer, "PNG")
    params = draw_params(rng)
    maker, model = _MANUFACTURERS[int(rng.integers(len(_MANUFACTURERS)))]
    projection = row["ap_pa"] or "LL"
    header: dict[str, Any] = {
        "Manufacturer": maker, "ManufacturerModelName": model, "SoftwareVersions": "4.1.2", "BodyPartExamined": "CHEST",
        "ViewPosition": projection, "ImageType": ["ORIGINAL", "PRIMARY"], "SeriesDescription": f"CHEST {projection}",
        "StudyDescription": "XR CHEST 2 VIEWS" if "lateral" in row["section_technique"] else "XR CHEST 1 VIEW PORTABLE",
        "PatientSex": row["sex"][:1] if row["sex"] in ("Male", "Female") else "O",
        "PatientAge": f"{int(row['age'] or 0):03d}Y", "PixelSpacing": ["0.139", "0.139"], "ImagerPixelSpacing": ["0.139", "0.139"],
        "KVP": str(int(rng.choice([90, 110, 120, 125]))), "ExposureTime": str(int(rng.integers(3, 20))),
        "XRayTubeCurrent": str(int(rng.integers(160, 400))), "Exposure": str(int(rng.integers(1, 8))),
        "PresentationLUTShape": "INVERSE" if params.photometric == "MONOCHROME1" else "IDENTITY",
        "BurnedInAnnotation": "NO", "DistanceSourceToDetector": "1800",
    }  # fmt: skip
    if params.modality == "DX":
        header.update({"ExposureIndex": str(int(rng.integers(200, 800))), "TargetExposureIndex": "400",
                       "DeviationIndex": f"{rng.normal(0, 1):.2f}", "DetectorType": "SCINTILLATOR"})  # fmt: skip
    else:
        header.update({"RelativeXRayExposure": str(int(rng.integers(100, 2000))), "ProtocolName": "CHEST"})
    dcm = render_dicom(picture, params, header=header, uid_seed=[str(seed), row["path_to_image"]])
    return buffer.getvalue(), dcm


def synthesize_plus(
    out: str | os.PathLike[str],
    *,
    patients: int = 20,
    seed: int = 0,
    valid_patients: int | None = None,
    chunks: int = 3,
    original: bool = True,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    layout: str = "aimi",
) -> pathlib.Path:
    """Write a look-alike CheXpert Plus download into ``out/CheXpert-Plus`` and return that folder.

    ``chunks`` PNG zips share the patients; the last one is written with ZIP64 extensions.
    ``original`` also writes the look-alike small release the rows join to, inside the folder.
    The bytes depend only on the arguments (not on ``workers``). ``layout`` "mirror" writes the
    images as the hosted mirror has them instead: one file each in ``PNG_train/``, ``PNG_valid/``,
    ``DICOM_train/`` and ``DICOM_valid/``, named without the split
    (``PNG_train/patient00001/study1/view1_frontal.png``). DICOMs need pydicom (the ``dicom`` extra):
    without it nothing is written and a :class:`~chexpert.errors.ChexpertError` says so.

    >>> root = synthesize_plus(tmp_path, patients=3)
    >>> chexpert.open(root).kind
    'plus'
    """
    check_int("chunks", chunks, low=1, high=100)
    check_int("workers", workers, low=1, high=1024)
    check_choice("layout", layout, PLUS_LAYOUTS)
    try:  # before anything is written: a missing extra must leave no folder behind
        import pydicom  # noqa: F401
    except ImportError:
        raise ChexpertError("a CheXpert Plus look-alike holds DICOMs, written with pydicom, which is not installed: pip install 'chexpert[dicom]'") from None
    rows, quirks = plus_rows(patients=patients, valid_patients=valid_patients, seed=seed)
    out = pathlib.Path(out)
    target = out / PLUS_DIR
    claim_targets(out, [PLUS_DIR], overwrite)  # a real CheXpert Plus download is never replaced
    created = [p for p in (out, *out.parents) if not p.exists()]  # removed again if synth fails (when still empty)
    out.mkdir(parents=True, exist_ok=True)
    warn_leftovers(out)
    staging = create_folder(out, ".synth-plus-")
    try:
        _write_plus(staging, rows, quirks, seed=seed, chunks=chunks, original=original, workers=workers, progress=progress,
                    layout=layout, patients=patients, valid_patients=valid_patients)  # fmt: skip
        put_in_place(out, staging, [PLUS_DIR])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()  # only if empty: never anything of the user's
            except OSError:
                break
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_plus(
    staging: pathlib.Path, rows: list[dict[str, str]], quirks: dict[str, Any], *, seed: int, chunks: int, original: bool, workers: int,
    progress: Callable[[int, int], None] | None, layout: str, patients: int, valid_patients: int | None,
) -> None:  # fmt: skip
    root = staging / PLUS_DIR
    root.mkdir()
    (root / PLUS_CSV).write_bytes(_plus_csv(rows))
    (root / "chexbert_labels").mkdir()
    for part, name in LABEL_FILES.items():
        (root / "chexbert_labels" / name).write_bytes(_label_lines(rows, part, seed))
    (root / "radgraph-XL-annotations").mkdir()
    for section, name in RADGRAPH_FILES.items():
        (root / "radgraph-XL-annotations" / name).write_bytes(_radgraph_file(rows, section))
    mirror = layout == "mirror"
    if not mirror:
        (root / "PNG").mkdir()
    patients_sorted = sorted({(r["split"], r["deid_patient_id"]) for r in rows})
    chunk_of = {p: min(i * chunks // max(len(patients_sorted), 1), chunks - 1) for i, p in enumerate(patients_sorted)}
    zips = [] if mirror else [zipfile.ZipFile(root / "PNG" / f"png_chexpert_plus_chunk_{k}.zip", "w", allowZip64=True) for k in range(chunks)]
    missing = set(quirks["missing_dicom"])
    jobs = [(r, seed) for r in rows]
    try:
        for row, (png, dcm) in zip(rows, run_jobs(_image_job, jobs, workers, progress), strict=True):
            tail = row["path_to_image"].removesuffix(".jpg").split("/", 1)[1]  # patientN/studyN/viewN_kind
            if mirror:
                _write_file(root / f"PNG_{row['split']}" / f"{tail}.png", png)
            else:
                k = chunk_of[(row["split"], row["deid_patient_id"])]
                info = zipfile.ZipInfo("PNG/" + row["path_to_image"].removesuffix(".jpg") + ".png", date_time=(2024, 4, 1, 0, 0, 0))
                with zips[k].open(info, "w", force_zip64=k == chunks - 1) as member:
                    member.write(png)
            if row["path_to_dcm"] in missing:
                continue
            if mirror:
                _write_file(root / f"DICOM_{row['split']}" / f"{tail}.dcm", dcm)
            else:
                _write_file(root / "DICOM" / "Uncompressed" / row["path_to_dcm"], dcm)
    finally:
        for z in zips:
            z.close()
    if original:
        synthesize(
            root,
            release="small",
            patients=patients,
            seed=seed,
            valid_patients=valid_patients if valid_patients is not None else min(max(2, patients // 50), 200),
            workers=workers,
        )
    (root / "QUIRKS.json").write_text(json.dumps(quirks, indent=1) + "\n")
    valid_count = len({r["deid_patient_id"] for r in rows if r["split"] == "valid"})
    mark_folder(root, "plus", seed, {"train": patients, "valid": valid_count}, {})


def _write_file(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


#: How :func:`synthesize_plus` lays out the images: Stanford AIMI's PNG chunk zips and DICOM/
#: folder, or the hosted mirror's per-split folders of single files.
PLUS_LAYOUTS: Final[tuple[str, ...]] = ("aimi", "mirror")

#: Name of the file (in the look-alike folder) that lists where each quirk was put.
QUIRKS: Final = "QUIRKS.json"
