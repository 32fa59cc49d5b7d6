"""Look-alike test set and CheXlocalize (``chexpert synth --release test``).

Writes, into ``out``::

    CheXlocalize/CheXpert/val/patient64541/study1/view1_frontal.jpg ...   full-resolution JPEGs
    CheXlocalize/CheXpert/test/patient64741/study1/view1_frontal.jpg ...
    CheXlocalize/CheXpert/val_labels.csv      the release's header, Paths CheXpert-v1.0/valid/...
    CheXlocalize/CheXpert/test_labels.csv     Path and the 14 observations only (no demographics)
    CheXlocalize/gt_segmentations_{val,test}.json   COCO run-length masks, "Airspace Opacity" named so
    CheXlocalize/gt_annotations_{val,test}.json     the polygons the masks are filled from
    chexpert-test-set-labels/groundtruth.csv        study level, integer 0/1
    chexpert-test-set-labels/radiologists/benchmark_radiologists/bc4.csv, bc6.csv, bc8.csv
    chexpert-test-set-labels/radiologists/groundtruth/bc1_gt.csv, bc2_gt.csv, bc3_gt.csv, bc5_gt.csv, bc7_gt.csv

The radiologists' files are laid out as in the public labels repository (``readers="public"``,
the default); ``readers="folders"`` writes ``benchmark_radiologists/bc4.csv`` and
``consensus_radiologists/bc1.csv`` beside ``groundtruth.csv`` instead.

The pictures are those of :func:`chexpert.synth.render_jpeg` (full release) for the same seed; the
outline of each positive localized observation is where the picture changes when that label is
flipped (the heart and mediastinum shadows for Cardiomegaly and Enlarged Cardiomediastinum),
traced as polygons and filled at full resolution, so that an overlay lies on the drawn finding.
The five consensus radiologists' majority is the ground truth; the three benchmark radiologists
err at rates like the paper's readers.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np

from chexpert import schema
from chexpert.fileio import create_folder
from chexpert.localize import LOCALIZED_OBSERVATIONS, encode_rle, rasterize
from chexpert.synth.draw import (
    Anatomy,
    Canvas,
    Findings,
    draw_findings,
    draw_frontal,
    draw_lateral,
    heart_shadow,
    image_size,
    mediastinum_shadow,
    parse_path,
)
from chexpert.synth.place import claim_targets, mark_folder, put_in_place, warn_leftovers
from chexpert.synth.rows import GROUNDTRUTH_COLUMNS, TAG_ANATOMY, TAG_FINDINGS, TAG_VIEW, csv_bytes, groundtruth_rows, seeded_rng, synth_rows
from chexpert.synth.write import render_one, run_jobs
from chexpert.validation import check_choice, check_int

__all__ = ["LOCALIZE_DIR", "LABELS_DIR", "BENCHMARK", "CONSENSUS", "READER_COLUMNS", "synthesize_test", "finding_outlines"]

LOCALIZE_DIR: Final[str] = "CheXlocalize"
LABELS_DIR: Final[str] = "chexpert-test-set-labels"
#: Radiologists as the CheXpert paper split them: three compared with models, five whose majority is the truth.
BENCHMARK: Final[tuple[str, ...]] = schema.BENCHMARK_READERS
CONSENSUS: Final[tuple[str, ...]] = schema.CONSENSUS_READERS
#: How :func:`synthesize_test` lays out the radiologists' files (see the module's docstring).
READER_LAYOUTS: Final[tuple[str, ...]] = ("public", "folders")
#: The radiologists' files list Lung Lesion before Lung Opacity.
READER_COLUMNS: Final[tuple[str, ...]] = (
    "Study", "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)  # fmt: skip
_TEST_LABEL_COLUMNS: Final[tuple[str, ...]] = ("Path", *schema.OBSERVATIONS)
_TASK_NAME: Final[dict[str, str]] = {name: ("Airspace Opacity" if name == "Lung Opacity" else name) for name in LOCALIZED_OBSERVATIONS}
# Outlines are traced on a grid this many times coarser than the image.
_TRACE: Final[int] = 8
# How much a flipped label must change the (0-255) picture to count as the finding.
_CHANGE: Final[float] = 10.0
_TAG_READERS, _TAG_MASKED = 11, 12
# Share of images CheXlocalize left without any outline (it has 187 of 234 validation images).
_P_UNANNOTATED: Final[float] = 0.2


def finding_outlines(row: Mapping[str, str], *, seed: int = 0) -> dict[str, list[list[list[float]]]]:
    """Polygons (``[[x, y], ...]`` in full-resolution pixels) of each positive localized finding in a row's picture.

    >>> row = synth_rows("test", patients=1, release="full")[0]
    >>> sorted(finding_outlines(row)) == sorted(o for o in LOCALIZED_OBSERVATIONS if row[o] == "1.0")
    True
    """
    split, patient, study, view = parse_path(row["Path"])
    codes = [schema.LABEL_SPELLINGS[row[name]] for name in schema.OBSERVATIONS]
    h, w = image_size(seeded_rng(seed, TAG_VIEW, split, patient, study, view), "full")
    ch, cw = -(-h // _TRACE), -(-w // _TRACE)
    frontal = row["Frontal/Lateral"] == "Frontal"
    ap = row["AP/PA"] == "AP"
    anatomy = Anatomy.draw(seeded_rng(seed, TAG_ANATOMY, split, patient))

    def findings(codes: Sequence[int]) -> Findings:
        return Findings.draw(seeded_rng(seed, TAG_FINDINGS, split, patient, study), codes)

    def picture(f: Findings) -> np.ndarray:
        c = Canvas(ch, cw, 18.0)
        lung, _ = draw_frontal(c, anatomy, f, ap) if frontal else draw_lateral(c, anatomy, f)
        draw_findings(c, anatomy, f, lung, frontal)
        return c.a

    drawn = findings(codes)
    full = picture(drawn)
    out: dict[str, list[list[list[float]]]] = {}
    for name in LOCALIZED_OBSERVATIONS:
        j = schema.OBSERVATIONS.index(name)
        if codes[j] != schema.Code.POSITIVE:
            continue
        if name in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
            if name == "Enlarged Cardiomediastinum" and not frontal:
                continue  # the lateral look-alike draws no mediastinum
            c = Canvas(ch, cw, 0.0)
            geometry = heart_shadow(anatomy, drawn, frontal, ap) if name == "Cardiomegaly" else mediastinum_shadow(anatomy, drawn)
            sl, m = c.mask(*geometry, edge=0.35)
            region = np.zeros((ch, cw), bool)
            region[sl] = m > 0.5
        else:
            without = list(codes)
            without[j] = schema.Code.NEGATIVE
            region = np.abs(full - picture(findings(without))) > _CHANGE
        polygons = _trace(region, h / ch, w / cw)
        if polygons:
            out[name] = polygons
    return out


def _components(region: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of a bool grid, each as an (n, 2) array of (row, column)."""
    todo = region.copy()
    h, w = region.shape
    parts = []
    for y0, x0 in np.argwhere(region):
        if not todo[y0, x0]:
            continue
        todo[y0, x0] = False
        stack, cells = [(int(y0), int(x0))], []
        while stack:
            y, x = stack.pop()
            cells.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and todo[ny, nx]:
                        todo[ny, nx] = False
                        stack.append((ny, nx))
        parts.append(np.asarray(cells))
    return parts


def _trace(region: np.ndarray, sy: float, sx: float) -> list[list[list[float]]]:
    """One polygon per component: its left edge down and its right edge up, row by row, in
    full-resolution pixel coordinates (a component is filled between its ends on every row)."""
    polygons = []
    for cells in _components(region):
        if len(cells) < 4:
            continue  # specks of noise, not a finding
        rows = np.unique(cells[:, 0])
        left = [int(cells[cells[:, 0] == r, 1].min()) for r in rows]
        right = [int(cells[cells[:, 0] == r, 1].max()) + 1 for r in rows]
        down = [[x * sx, y * sy] for r, x in zip(rows, left) for y in (r, r + 1)]
        up = [[x * sx, y * sy] for r, x in zip(rows[::-1], right[::-1]) for y in (r + 1, r)]
        polygons.append([[round(float(px), 2), round(float(py), 2)] for px, py in down + up])
    return polygons


def _image_key(path: str) -> str:
    return "_".join(schema.strip_release_prefix(path).split("/")[-3:]).rsplit(".", 1)[0]


def _localization(rows: Sequence[Mapping[str, str]], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(segmentations, annotations) JSON objects for the images of ``rows``."""
    segmentations: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    for row in rows:
        split, patient, study, view = parse_path(row["Path"])
        if seeded_rng(seed, _TAG_MASKED, split, patient, study, view).random() < _P_UNANNOTATED:
            continue
        h, w = image_size(seeded_rng(seed, TAG_VIEW, split, patient, study, view), "full")
        outlines = finding_outlines(row, seed=seed)
        key = _image_key(row["Path"])
        annotations[key] = {"img_size": [h, w], **{_TASK_NAME[name]: polygons for name, polygons in outlines.items()}}
        empty = encode_rle(np.zeros((h, w), bool))
        segmentations[key] = {_TASK_NAME[name]: encode_rle(rasterize(outlines[name], (h, w))) if name in outlines else empty for name in LOCALIZED_OBSERVATIONS}
    return segmentations, annotations


def _reader_rows(truth: Sequence[Mapping[str, str]], seed: int) -> dict[str, list[dict[str, str]]]:
    """Each radiologist's study-level 0/1 reads: the consensus five always outvote their errors."""
    names = list(schema.OBSERVATIONS)
    labels = np.array([[int(row[o]) for o in names] for row in truth], dtype=np.int8).reshape(len(truth), len(names))
    rng = seeded_rng(seed, _TAG_READERS)
    reads: dict[str, np.ndarray] = {}
    # Consensus: per cell 0, 1 or 2 of the five dissent, so that the majority is the truth.
    dissent = np.searchsorted(np.cumsum([0.8, 0.15, 0.05]), rng.random(labels.shape), side="right")
    order = np.argsort(rng.random((*labels.shape, len(CONSENSUS))), axis=-1)
    for k, name in enumerate(CONSENSUS):
        # order holds a permutation of the five per cell: exactly `dissent` of them fall below it.
        reads[name] = np.where(order[..., k] < dissent, 1 - labels, labels)
    # Benchmark: each misses some findings and over-calls a few.
    for name, miss, over in zip(BENCHMARK, (0.18, 0.25, 0.2), (0.06, 0.04, 0.08)):
        u = rng.random(labels.shape)
        reads[name] = np.where(labels == 1, (u >= miss).astype(np.int8), (u < over).astype(np.int8))
    out = {}
    for name, values in reads.items():
        out[name] = [{"Study": row["Study"], **{o: str(int(v)) for o, v in zip(names, cells)}} for row, cells in zip(truth, values)]
    return out


def synthesize_test(
    out: str | os.PathLike[str],
    *,
    patients: int = 20,
    valid_patients: int | None = None,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    readers: str = "public",
) -> pathlib.Path:
    """Write a look-alike test set and CheXlocalize into ``out``; return ``out`` (what ``chexpert.open`` takes).

    ``patients`` test patients (one study each, from patient64741) and ``valid_patients``
    (default ``max(2, patients // 2)``, from patient64541) are drawn as :func:`chexpert.synth.synth_rows`
    draws them. Existing look-alike folders in ``out`` are an error unless ``overwrite``.
    ``readers`` lays out the radiologists' files: "public" as the public labels repository
    (``radiologists/groundtruth/bc1_gt.csv``, ``radiologists/benchmark_radiologists/bc4.csv``),
    "folders" as ``consensus_radiologists/bc1.csv`` and ``benchmark_radiologists/bc4.csv``.

    >>> root = synthesize_test(tmp_path, patients=2)
    >>> chexpert.open(root).splits
    ('valid', 'test')
    """
    first, last = schema.PATIENT_RANGES["test"]
    check_int("patients", patients, low=1, high=last - first + 1)
    if valid_patients is None:
        valid_patients = max(2, patients // 2)
    first, last = schema.PATIENT_RANGES["valid"]
    check_int("valid_patients", valid_patients, low=0, high=last - first + 1)
    check_int("workers", workers, low=1, high=1024)
    check_choice("readers", readers, READER_LAYOUTS)
    out = pathlib.Path(out)
    names = (LOCALIZE_DIR, LABELS_DIR)
    claim_targets(out, names, overwrite)
    valid = synth_rows("valid", patients=valid_patients, seed=seed, release="full")
    test = synth_rows("test", patients=patients, seed=seed, release="full")
    truth = groundtruth_rows(test)

    out.mkdir(parents=True, exist_ok=True)
    warn_leftovers(out)
    staging = create_folder(out, ".synth-")
    try:
        images = staging / LOCALIZE_DIR / "CheXpert"
        rows = valid + test
        targets = []
        for row in rows:
            relative = schema.strip_release_prefix(row["Path"]).replace("valid/", "val/", 1)
            target = images / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            targets.append(target)
        for target, data in zip(targets, run_jobs(render_one, [(r, seed, "full") for r in rows], workers, progress)):
            target.write_bytes(data)
        (images / "val_labels.csv").write_bytes(csv_bytes(valid))
        test_labels = [{"Path": schema.strip_release_prefix(r["Path"]), **{o: r[o] for o in schema.OBSERVATIONS}} for r in test]
        (images / "test_labels.csv").write_bytes(csv_bytes(test_labels, columns=_TEST_LABEL_COLUMNS))
        for split, split_rows in (("val", valid), ("test", test)):
            segmentations, annotations = _localization(split_rows, seed)
            (staging / LOCALIZE_DIR / f"gt_segmentations_{split}.json").write_text(json.dumps(segmentations))
            (staging / LOCALIZE_DIR / f"gt_annotations_{split}.json").write_text(json.dumps(annotations))
        labels = staging / LABELS_DIR
        labels.mkdir()
        (labels / "groundtruth.csv").write_bytes(csv_bytes(truth, columns=GROUNDTRUTH_COLUMNS))
        for name, reads in _reader_rows(truth, seed).items():
            if readers == "public":
                folder = labels / "radiologists" / ("benchmark_radiologists" if name in BENCHMARK else "groundtruth")
                file = f"{name}.csv" if name in BENCHMARK else f"{name}_gt.csv"
            else:
                folder = labels / ("benchmark_radiologists" if name in BENCHMARK else "consensus_radiologists")
                file = f"{name}.csv"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(csv_bytes(reads, columns=READER_COLUMNS))
        # What synth wrote, file by file: beside the CSVs for verify, at each top for --overwrite.
        patients_by_split = {"valid": valid_patients, "test": patients}
        mark_folder(
            images,
            "test",
            seed,
            patients_by_split,
            {"val_labels.csv": csv_bytes(valid), "test_labels.csv": csv_bytes(test_labels, columns=_TEST_LABEL_COLUMNS)},
        )
        for name in names:
            mark_folder(staging / name, "test", seed, patients_by_split, {})
        put_in_place(out, staging, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
