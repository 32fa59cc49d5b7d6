"""Rows of a look-alike release: the published statistics of the real CSVs, and the CSV writers.

Each patient's rows come from ``(seed, split, patient)`` alone (:func:`seeded_rng`), so they do not
depend on how many patients were asked for. The bottom of :mod:`chexpert.synth`: it imports no
other synth module.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import numpy as np

from chexpert import schema
from chexpert.validation import check_choice, check_int

__all__ = [
    "GROUNDTRUTH_COLUMNS",
    "synth_rows",
    "groundtruth_rows",
    "write_csv",
    "csv_bytes",
    "seeded_rng",
    "TAG_ANATOMY",
    "TAG_FINDINGS",
    "TAG_VIEW",
    "P_NO_FINDING",
    "LABEL_CDF",
    "CODE_BY_BIN",
]

#: Columns of the test set's study-level ``groundtruth.csv``.
GROUNDTRUTH_COLUMNS: Final[tuple[str, ...]] = ("Study", *schema.OBSERVATIONS)

# ---------------------------------------------------------------------------------------------
# Statistics of the real train.csv (derived from its counts, per study unless said otherwise).
# ---------------------------------------------------------------------------------------------

# Studies per patient: patients with 1..20 studies, then a tail (644 patients, mean 31, max 91).
_STUDIES_PMF_HEAD: Final = np.array(
    [33564, 11172, 5921, 3661, 2482, 1665, 1181, 896, 696, 529,
     448, 345, 280, 236, 186, 178, 146, 121, 96, 93], dtype=np.float64)  # fmt: skip
_STUDIES_TAIL: Final[int] = 644

# Frontal (F) / lateral (L) sequence of a study's views, by view number, and how often each
# occurs, split by whether the study is PA (outpatient, usually with a lateral) or not.
_COMPOSITIONS: Final[tuple[str, ...]] = (
    "F", "FL", "FF", "LF", "FLL", "FFL", "FLF", "LLF", "FFF", "L", "LFF", "LL")  # fmt: skip
_COMPOSITION_COUNTS_AP: Final = np.array(
    [151570, 3431, 2426, 872, 402, 67, 45, 86, 31, 13, 12, 3], dtype=np.float64)  # fmt: skip
_COMPOSITION_COUNTS_PA: Final = np.array(
    [2064, 25370, 111, 2, 467, 368, 290, 0, 10, 0, 1, 0], dtype=np.float64)  # fmt: skip
_P_PA_STUDY: Final[float] = 28683 / 187641  # share of PA studies
_P_LL: Final[float] = 16 / 191027
_P_RL: Final[float] = 1 / 191027
# No Finding is much more common on PA (outpatient) studies.
P_NO_FINDING: Final[dict[bool, float]] = {True: 0.187, False: 0.0709}

# (positive, uncertain, negative) rates per study of the 13 observations after No Finding, in CSV
# order, by (PA study?, No Finding positive?); the rest is blank. Portable AP films come from the
# wards (devices, effusions, edema), PA ones from clinics. No Finding studies have no other
# positive (except Support Devices), as the real labeler guarantees.
_LABEL_RATES: Final[dict[tuple[bool, bool], tuple[tuple[float, float, float], ...]]] = {
    (False, True): (
        (0, 0, 0.2724), (0, 0, 0.0879), (0, 0, 0.1137), (0, 0, 0.0044), (0, 0, 0.211), (0, 0, 0.2954),
        (0, 0, 0.0278), (0, 0, 0.0233), (0, 0, 0.6728), (0, 0, 0.3735), (0, 0, 0.0003), (0, 0, 0.054),
        (0.5259, 0.0044, 0.0371)),
    (False, False): (
        (0.0516, 0.0564, 0.0405), (0.1365, 0.0371, 0.0243), (0.5631, 0.0224, 0.0151), (0.0324, 0.0049, 0.0015),
        (0.3199, 0.0728, 0.061), (0.0763, 0.1437, 0.0555), (0.0231, 0.0909, 0.0046), (0.1774, 0.1774, 0.0032),
        (0.1054, 0.0153, 0.2118), (0.4592, 0.0518, 0.0759), (0.0098, 0.007, 0.0006), (0.04, 0.0024, 0.0061),
        (0.6226, 0.0047, 0.0278)),
    (True, True): (
        (0, 0, 0.4864), (0, 0, 0.2181), (0, 0, 0.1025), (0, 0, 0.0309), (0, 0, 0.1857), (0, 0, 0.4996),
        (0, 0, 0.0757), (0, 0, 0.0199), (0, 0, 0.5255), (0, 0, 0.6605), (0, 0, 0.0015), (0, 0, 0.0418),
        (0.2606, 0.0052, 0.0235)),
    (True, False): (
        (0.0602, 0.0782, 0.1447), (0.1217, 0.0477, 0.084), (0.4075, 0.0443, 0.038), (0.0885, 0.0148, 0.0137),
        (0.0717, 0.0353, 0.1405), (0.0625, 0.1181, 0.2142), (0.05, 0.0954, 0.0184), (0.1342, 0.1361, 0.0069),
        (0.0747, 0.0175, 0.2286), (0.3377, 0.0755, 0.2513), (0.0422, 0.0318, 0.0044), (0.0584, 0.0054, 0.0095),
        (0.2815, 0.0054, 0.0261)),
}  # fmt: skip

# Positive rate per observation in the real valid.csv (234 images, labels 0/1 only).
_VALID_POSITIVE: Final[dict[str, float]] = {
    "Enlarged Cardiomediastinum": 109 / 234,
    "Cardiomegaly": 68 / 234,
    "Lung Opacity": 126 / 234,
    "Lung Lesion": 1 / 234,
    "Edema": 45 / 234,
    "Consolidation": 33 / 234,
    "Pneumonia": 8 / 234,
    "Atelectasis": 80 / 234,
    "Pneumothorax": 8 / 234,
    "Pleural Effusion": 67 / 234,
    "Pleural Other": 1 / 234,
    "Fracture": 1 / 234,
    "Support Devices": 107 / 234,
}
_VALID_NO_FINDING: Final[float] = 38 / 234

_P_MALE: Final[float] = 132636 / 223414
_P_UNKNOWN_SEX: Final[float] = 1 / 64540
_P_AGE_ZERO: Final[float] = 3 / 223414  # per study; the real file has 3 rows of age 0
# Ages 18..90 (90 stands for "90 or older") of the real train.csv's images.
_AGE_COUNTS: Final = np.array(
    [766, 1167, 1287, 1279, 1370, 1229, 1388, 1326, 1338, 1535, 1344, 1312, 1637, 1493, 1327,
     1400, 1415, 1534, 1549, 1903, 1929, 1849, 2066, 1878, 2185, 2427, 2529, 2623, 2677, 2957,
     3153, 3329, 3600, 3665, 4100, 4115, 3926, 4637, 4617, 4902, 5075, 4813, 4843, 5372, 4715,
     4598, 5033, 5098, 5098, 4742, 4735, 4643, 3945, 4160, 3800, 3792, 3733, 3952, 3911, 3783,
     3502, 3539, 3540, 3424, 3225, 3380, 2838, 2875, 2384, 2357, 2140, 2024, 7579],
    dtype=np.float64)  # fmt: skip
_MIN_AGE: Final[int] = 18

# Seed-sequence domain tags, so that row and picture randomness never collide.
_TAG_PATIENT, TAG_ANATOMY, TAG_FINDINGS, TAG_VIEW = 1, 2, 3, 4

_SPELL: Final[dict[int, str]] = {code.value: s for s, code in schema.LABEL_SPELLINGS.items()}


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of ``(seed, *key)``: the same numbers for a key, whatever else was drawn before.

    >>> float(seeded_rng(0, 1, 2).random()) == float(seeded_rng(0, 1, 2).random())
    True
    """
    return np.random.default_rng([seed, *key])


# ---------------------------------------------------------------------------------------------
# CSV rows
# ---------------------------------------------------------------------------------------------


def _cdf(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) / counts.sum()


# Cumulative tables for drawing with one uniform number (rng.choice with p= is ten times slower).
_STUDIES_CDF: Final = _cdf(np.append(_STUDIES_PMF_HEAD, _STUDIES_TAIL))
_COMPOSITION_CDF: Final = {True: _cdf(_COMPOSITION_COUNTS_PA), False: _cdf(_COMPOSITION_COUNTS_AP)}
_AGE_CDF: Final = _cdf(_AGE_COUNTS)
LABEL_CDF: Final = {key: np.cumsum(np.array(rates), axis=1) for key, rates in _LABEL_RATES.items()}
CODE_BY_BIN: Final = np.array([schema.Code.POSITIVE, schema.Code.UNCERTAIN, schema.Code.NEGATIVE, schema.Code.BLANK])
_VALID_P: Final = np.array([_VALID_POSITIVE[name] for name in schema.OBSERVATIONS[1:]])
_SUPPORT_DEVICES: Final[int] = schema.OBSERVATIONS.index("Support Devices") - 1  # among the 13 others


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    return int(np.searchsorted(cdf, rng.random(), side="right"))


def _study_count(rng: np.random.Generator) -> int:
    k = _draw(rng, _STUDIES_CDF)
    if k < len(_STUDIES_PMF_HEAD):
        return k + 1
    return int(min(21 + rng.geometric(1 / 11), 91))  # tail mean ~31 like the real one


def _draw_labels(rng: np.random.Generator, split: str, pa: bool) -> list[int]:
    """Per-study codes of the 14 observations, in CSV order."""
    u = rng.random(14)
    if split == "train":
        no_finding = bool(u[0] < P_NO_FINDING[pa])
        bins = (u[1:, None] >= LABEL_CDF[pa, no_finding]).sum(axis=1)
        return [schema.Code.POSITIVE if no_finding else schema.Code.BLANK, *CODE_BY_BIN[bins].tolist()]
    # valid and test: radiologists' consensus, 0/1 only
    positive = u[1:] < _VALID_P
    no_finding = bool(u[0] < _VALID_NO_FINDING)
    others = np.ones(13, bool)
    others[_SUPPORT_DEVICES] = False
    if no_finding:
        positive &= ~others
    elif not positive[others].any():
        no_finding = True  # nothing found: the consensus says so
    return [int(no_finding), *positive.astype(int).tolist()]


def _patient_rows(seed: int, split: str, patient: int, prefix: str) -> list[dict[str, str]]:
    rng = seeded_rng(seed, _TAG_PATIENT, schema.SPLITS.index(split), patient)
    u = rng.random()
    sex = "Unknown" if u < _P_UNKNOWN_SEX else ("Male" if u < _P_MALE else "Female")
    age = _MIN_AGE + _draw(rng, _AGE_CDF)
    n_studies = _study_count(rng) if split == "train" else 1
    # Ages rise slowly over a patient's studies (the real mean spread is about half a year).
    steps = np.cumsum(rng.poisson(0.25, n_studies))
    ages = np.clip(age + steps - steps[-1] // 2, _MIN_AGE, 90)
    order = np.arange(1, n_studies + 1)
    r = rng.random()
    if r < 0.08:  # the real file lists some patients' studies backwards, some shuffled
        order = order[::-1]
    elif r < 0.35:
        order = rng.permutation(order)
    rows: list[dict[str, str]] = []
    for study in order.tolist():
        pa = rng.random() < _P_PA_STUDY
        views = _COMPOSITIONS[_draw(rng, _COMPOSITION_CDF[pa])]
        r = rng.random()
        projection = "LL" if r < _P_LL else "RL" if r < _P_LL + _P_RL else "PA" if pa else "AP"
        labels = dict(zip(schema.OBSERVATIONS, (_SPELL[c] for c in _draw_labels(rng, split, pa)), strict=True))
        study_age = "0" if rng.random() < _P_AGE_ZERO else str(ages[study - 1])
        for view, kind in enumerate(views, start=1):
            frontal = kind == "F"
            rows.append(
                {
                    "Path": f"{prefix}{split}/patient{patient:05d}/study{study}/view{view}_{'frontal' if frontal else 'lateral'}.jpg",
                    "Sex": sex,
                    "Age": study_age,
                    "Frontal/Lateral": "Frontal" if frontal else "Lateral",
                    "AP/PA": projection if frontal else "",
                    **labels,
                }
            )
    return rows


def synth_rows(
    split: str = "train",
    *,
    patients: int = 100,
    seed: int = 0,
    release: str = "small",
) -> list[dict[str, str]]:
    """Rows of a look-alike ``train.csv`` / ``valid.csv`` / ``test_labels.csv``, as written.

    Each row maps every name in ``schema.CSV_COLUMNS`` to the exact string of the CSV cell.
    Patients are numbered from the split's first real patient number.

    >>> rows = synth_rows("valid", patients=2, seed=0)
    >>> rows[0]["Path"].startswith("CheXpert-v1.0-small/valid/patient64541/study1/view1_")
    True
    """
    check_choice("split", split, schema.SPLITS)
    check_choice("release", release, schema.RELEASE_KINDS)
    first, last = schema.PATIENT_RANGES[split]
    check_int(f"{split} patients", patients, low=0 if split != "train" else 1, high=last - first + 1)
    prefix = schema.RELEASE_DIRS[release] + "/"
    rows: list[dict[str, str]] = []
    for patient in range(first, first + patients):
        rows.extend(_patient_rows(seed, split, patient, prefix))
    return rows


def groundtruth_rows(test_rows: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Study-level rows of the test set's ``groundtruth.csv`` (integer 0/1 labels).

    Studies are written ``CheXpert-v1.0/test/patientNNNNN/studyN`` whatever the release, as in
    the real file.

    >>> groundtruth_rows(synth_rows("test", patients=1))[0]["Study"]
    'CheXpert-v1.0/test/patient64741/study1'
    """
    out: dict[str, dict[str, str]] = {}
    for row in test_rows:
        study = schema.RELEASE_DIRS["full"] + "/" + schema.study_key(row["Path"])
        if study not in out:
            out[study] = {"Study": study}
            for name in schema.OBSERVATIONS:
                out[study][name] = str(int(float(row[name])))
    return list(out.values())


def write_csv(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, str]],
    *,
    columns: Sequence[str] = schema.CSV_COLUMNS,
    newline: str = "\n",
    bom: bool = False,
) -> pathlib.Path:
    """Write rows as the release writes its CSVs (LF, no BOM, no quoting unless needed).

    Cells missing from a row are written empty and keys not in ``columns`` are ignored, so tests
    can inject bad values, rename or drop columns, or use ``newline="\\r\\n"`` / ``bom=True``.

    >>> rows = synth_rows(patients=1)
    >>> rows[0]["Cardiomegaly"] = "yes"
    >>> ",yes," in write_csv(tmp_path / "train.csv", rows).read_text()
    True
    """
    path = pathlib.Path(path)
    path.write_bytes(csv_bytes(rows, columns=columns, newline=newline, bom=bom))
    return path


def csv_bytes(
    rows: Iterable[Mapping[str, str]],
    *,
    columns: Sequence[str] = schema.CSV_COLUMNS,
    newline: str = "\n",
    bom: bool = False,
) -> bytes:
    """The bytes ``write_csv`` would write.

    >>> csv_bytes(synth_rows(patients=1))[:9]
    b'Path,Sex,'
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8")
