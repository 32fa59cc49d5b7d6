"""Look-alike CheXpert releases: the real format and statistics, synthetic pictures.

``synthesize`` writes a tree that a reader cannot tell apart from a real download by its format:
the exact CSV header and value spellings, the path scheme, baseline grayscale JPEGs of the real
sizes, label and metadata statistics like the real ``train.csv``, and optionally the zip or the
Stanford AIMI batch-zip layout. The pictures are drawn from the labels (an enlarged heart shadow
for Cardiomegaly, a whitened costophrenic angle for Pleural Effusion, a bright tube for Support
Devices, ...) so that a model can learn them. It is the demo's data and the tests' fixture.

Everything is derived from ``(seed, split, patient[, study[, view]])``, so a patient's rows and
pictures do not depend on how many patients were asked for, nor on the number of workers.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import pathlib
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import numpy as np
import simplejpeg
from PIL import Image

from chexpert import schema
from chexpert.errors import InvalidArgumentError, option
from chexpert.parallel import Chunks, run_chunks
from chexpert.release import SYNTH_MARKER
from chexpert.validation import check_choice, check_int

__all__ = [
    "RELEASES",
    "LAYOUTS",
    "AIMI_BATCHES",
    "synthesize",
    "synth_rows",
    "groundtruth_rows",
    "write_csv",
    "csv_bytes",
    "render_pixels",
    "render_jpeg",
]

LAYOUTS: Final[tuple[str, ...]] = ("folder", "zip", "aimi")
#: What ``synthesize`` can write: an image release, or the test set's labels with CheXlocalize ("test").
RELEASES: Final[tuple[str, ...]] = (*schema.RELEASE_KINDS, "test")

#: Top folder (and zip stem) of each AIMI batch; the first holds valid/, the CSVs (and test/).
AIMI_BATCHES: Final[tuple[str, ...]] = (
    "CheXpert-v1.0 batch 1 (validate & csv)",
    "CheXpert-v1.0 batch 2 (train 1)",
    "CheXpert-v1.0 batch 3 (train 2)",
    "CheXpert-v1.0 batch 4 (train 3)",
)

# A marker of 223,414 images is about 15 MB; anything far larger is not one synth wrote.
_MAX_MARKER_BYTES: Final[int] = 256 << 20

#: Columns of the test set's study-level ``groundtruth.csv``.
GROUNDTRUTH_COLUMNS: Final[tuple[str, ...]] = ("Study", *schema.OBSERVATIONS)

JPEG_QUALITY: Final[int] = 95
# Zip members get a fixed time stamp so that output is byte-identical from run to run.
_ZIP_TIME: Final[tuple[int, int, int, int, int, int]] = (2019, 1, 22, 0, 0, 0)

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
_P_NO_FINDING: Final[dict[bool, float]] = {True: 0.187, False: 0.0709}

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
_TAG_PATIENT, _TAG_ANATOMY, _TAG_FINDINGS, _TAG_VIEW = 1, 2, 3, 4

_T = TypeVar("_T")
_R = TypeVar("_R")

_SPELL: Final[dict[int, str]] = {code.value: s for s, code in schema.LABEL_SPELLINGS.items()}


def _rng(seed: int, *key: int) -> np.random.Generator:
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
_LABEL_CDF: Final = {key: np.cumsum(np.array(rates), axis=1) for key, rates in _LABEL_RATES.items()}
_CODE_BY_BIN: Final = np.array([schema.Code.POSITIVE, schema.Code.UNCERTAIN, schema.Code.NEGATIVE, schema.Code.BLANK])
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
        no_finding = bool(u[0] < _P_NO_FINDING[pa])
        bins = (u[1:, None] >= _LABEL_CDF[pa, no_finding]).sum(axis=1)
        return [schema.Code.POSITIVE if no_finding else schema.Code.BLANK, *_CODE_BY_BIN[bins].tolist()]
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
    rng = _rng(seed, _TAG_PATIENT, schema.SPLITS.index(split), patient)
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
    >>> rows[0]["Cardiomegaly"] = "yes"                      # doctest: +SKIP
    >>> write_csv(tmp / "train.csv", rows)                   # doctest: +SKIP
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


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------


class _Canvas:
    """A float32 picture with shape drawing in normalised coordinates.

    ``u`` runs from -1 (left edge) to 1 (right edge), ``v`` from 0 (top) to 1 (bottom). Every
    shape touches only its bounding box, which keeps a picture to a few milliseconds.
    """

    def __init__(self, h: int, w: int, fill: float) -> None:
        self.h, self.w = h, w
        self.a = np.full((h, w), fill, dtype=np.float32)

    def box(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        """The pixel slices covering ``u0..u1`` by ``v0..v1`` (clipped to the picture)."""
        x0 = min(max(int((u0 + 1) * 0.5 * self.w), 0), self.w)
        x1 = min(max(int((u1 + 1) * 0.5 * self.w) + 1, x0), self.w)
        y0 = min(max(int(v0 * self.h), 0), self.h)
        y1 = min(max(int(v1 * self.h) + 1, y0), self.h)
        return slice(y0, y1), slice(x0, x1)

    def grid(self, sl: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """(u row vector, v column vector) of the pixel centres in ``sl``."""
        ys, xs = sl
        u = (np.arange(xs.start, xs.stop, dtype=np.float32) + 0.5) * (2.0 / self.w) - 1.0
        v = (np.arange(ys.start, ys.stop, dtype=np.float32) + 0.5) * (1.0 / self.h)
        return u[None, :], v[:, None]

    def ellipse(self, u: float, v: float, ru: float, rv: float, extent: float = 1.0, square: bool = False) -> tuple[tuple[slice, slice], np.ndarray]:
        """Slices and the squared normalised radius over an ellipse's bounding box.

        ``square`` gives a rounded rectangle (a superellipse of power 4) instead.
        """
        sl = self.box(u - extent * ru, u + extent * ru, v - extent * rv, v + extent * rv)
        gu, gv = self.grid(sl)
        du, dv = ((gu - u) / ru) ** 2, ((gv - v) / rv) ** 2
        return sl, (du * du + dv * dv) if square else (du + dv)

    def mask(self, u: float, v: float, ru: float, rv: float, edge: float = 0.15, square: bool = False) -> tuple[tuple[slice, slice], np.ndarray]:
        """Soft ellipse: 1 inside, 0 outside, a ramp of relative width ``edge``."""
        sl, r2 = self.ellipse(u, v, ru, rv, square=square)
        return sl, np.clip((1.0 - r2) * (1.0 / edge), 0.0, 1.0)

    def blend(self, u: float, v: float, ru: float, rv: float, value: float, edge: float = 0.15, square: bool = False) -> None:
        """Paint an ellipse of ``value`` over what is there, with a soft edge."""
        sl, m = self.mask(u, v, ru, rv, edge, square)
        self.a[sl] += (value - self.a[sl]) * m

    def add(self, u: float, v: float, ru: float, rv: float, amount: float, edge: float = 0.15, within: np.ndarray | None = None) -> None:
        sl, m = self.mask(u, v, ru, rv, edge)
        self.a[sl] += amount * (m if within is None else m * within[sl])

    def gaussian(self, u: float, v: float, su: float, sv: float, amount: float, within: np.ndarray | None = None) -> None:
        sl, r2 = self.ellipse(u, v, su, sv, extent=2.5)
        g = np.exp(r2 * -0.5)
        self.a[sl] += amount * (g if within is None else g * within[sl])

    def line(self, us: Sequence[float], vs: Sequence[float], width: float, value: float) -> None:
        """A polyline through the points, ``width`` in units of the picture width."""
        px = (np.asarray(us) + 1) * 0.5 * self.w
        py = np.asarray(vs) * self.h
        t = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(px), np.diff(py)))])
        s = np.linspace(0.0, t[-1], max(int(t[-1] * 2), 2))
        x, y = np.interp(s, t, px), np.interp(s, t, py)
        half = max(width * self.w / 2, 0.6)
        offsets = np.arange(-int(half), int(half) + 1)
        xi = (x[:, None] + offsets[None, :]).astype(np.intp).ravel()
        yi = np.repeat(y.astype(np.intp), len(offsets))
        ok = (xi >= 0) & (xi < self.w) & (yi >= 0) & (yi < self.h)
        xi, yi = xi[ok], yi[ok]
        self.a[yi, xi] = np.maximum(self.a[yi, xi], value)


_TILE: Final[int] = 1024


@functools.cache
def _texture_tiles() -> tuple[np.ndarray, np.ndarray]:
    """Fixed fields of smooth noise (fine: lung markings; coarse: soft-tissue mottling).

    Pictures cut windows at random offsets from these instead of making their own, which is the
    difference between 3 and 1 milliseconds a picture; the fixed seed keeps output deterministic.
    """
    rng = np.random.default_rng(20190122)
    out = []
    for cell in (6, 24):
        small = rng.standard_normal((_TILE // cell + 2, _TILE // cell + 2), dtype=np.float32)
        big = Image.fromarray(small, mode="F").resize((_TILE + cell, _TILE + cell), Image.Resampling.BILINEAR)
        out.append(np.ascontiguousarray(np.asarray(big)[:_TILE, :_TILE]))
    return out[0], out[1]


def _texture_window(rng: np.random.Generator, tile: np.ndarray, h: int, w: int) -> np.ndarray:
    if h > _TILE or w > _TILE:
        tile = np.tile(tile, (h // _TILE + 1, w // _TILE + 1))
    y, x = int(rng.integers(0, tile.shape[0] - h + 1)), int(rng.integers(0, tile.shape[1] - w + 1))
    return tile[y : y + h, x : x + w]


@dataclass(frozen=True)
class _Anatomy:
    """A patient's body, the same in all of their studies (lengths in canvas units)."""

    body: float  # half-width of the trunk
    lung_u: float  # lung centre distance from the midline
    lung_ru: float
    lung_rv: float
    lung_v: float
    heart_ru: float
    heart_rv: float
    heart_u: float
    mediastinum: float
    rib_period: float
    rib_phase: float
    tissue: float  # soft-tissue brightness
    dark: float  # how much darker the lungs are

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Anatomy:
        return cls(
            body=rng.uniform(0.86, 0.97),
            lung_u=rng.uniform(0.37, 0.41),
            lung_ru=rng.uniform(0.27, 0.31),
            lung_rv=rng.uniform(0.33, 0.37),
            lung_v=rng.uniform(0.44, 0.47),
            heart_ru=rng.uniform(0.29, 0.32),
            heart_rv=rng.uniform(0.095, 0.11),
            heart_u=rng.uniform(0.1, 0.13),
            mediastinum=rng.uniform(0.16, 0.2),
            rib_period=rng.uniform(0.075, 0.09),
            rib_phase=rng.uniform(0, 1),
            tissue=rng.uniform(110, 130),
            dark=rng.uniform(62, 80),
        )


@dataclass(frozen=True)
class _Findings:
    """How strongly each observation is drawn in a study, and where: placement is drawn from
    the study's generator the same way whatever the labels, so that flipping one label changes
    only that finding's drawing."""

    strength: dict[str, float]
    spots: np.ndarray  # (12, 3): side, across and along the lung, in units of the lung's radii
    atelectasis_side: float
    pneumothorax_side: float
    effusion_side: float  # -1, 1, or 0 for both sides
    fracture: tuple[float, float]
    tube_depth: float

    @classmethod
    def draw(cls, rng: np.random.Generator, codes: Sequence[int]) -> _Findings:
        # Uncertain findings are drawn faintly: the report says "may be", the picture shows a bit.
        strength = {
            name: 1.0 if code == schema.Code.POSITIVE else 0.5 if code == schema.Code.UNCERTAIN else 0.0
            for name, code in zip(schema.OBSERVATIONS, codes, strict=True)
        }
        spots = np.column_stack([rng.choice([-1.0, 1.0], 12), rng.uniform(-0.7, 0.7, 12), rng.uniform(-0.6, 0.5, 12)])
        return cls(
            strength=strength,
            spots=spots,
            atelectasis_side=float(rng.choice([-1.0, 1.0])),
            pneumothorax_side=float(rng.choice([-1.0, 1.0])),
            effusion_side=float(rng.choice([-1.0, 0.0, 1.0], p=[0.3, 0.4, 0.3])),
            fracture=(float(rng.choice([-1, 1]) * rng.uniform(0.45, 0.6)), float(rng.uniform(0.25, 0.5))),
            tube_depth=float(rng.uniform(0, 1)),
        )


def _heart(a: _Anatomy, f: _Findings, frontal: bool, ap: bool) -> tuple[float, float, float, float]:
    """Centre and radii ``(u, v, ru, rv)`` of the heart's shadow (also the look-alike CheXlocalize outline)."""
    s = f.strength["Cardiomegaly"]
    if frontal:
        grow = 1 + 0.45 * s + (0.06 if ap else 0.0)  # AP films magnify the heart
        return a.heart_u * grow, 0.66, a.heart_ru * grow, a.heart_rv * (1 + 0.25 * s)
    grow = 1 + 0.4 * s
    return -0.3 + 0.1 * s, 0.64, a.heart_ru * 1.1 * grow, a.heart_rv * 1.5 * grow


def _mediastinum(a: _Anatomy, f: _Findings) -> tuple[float, float, float, float]:
    """Centre and radii of the frontal mediastinum's shadow."""
    return 0.02, 0.32, a.mediastinum * (1 + 0.6 * f.strength["Enlarged Cardiomediastinum"]), 0.36


def _draw_frontal(c: _Canvas, a: _Anatomy, f: _Findings, ap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Draw a frontal chest; return (open lung, where lung markings show)."""
    s = f.strength
    c.blend(0, 0.7, a.body, 0.8, a.tissue, edge=0.05, square=True)  # trunk and shoulders
    c.blend(0, 0.0, 0.2, 0.15, a.tissue, edge=0.3)  # neck
    c.blend(0, 1.02, a.body, 0.3, a.tissue + 28, edge=0.6)  # abdomen below the diaphragm
    lung = np.zeros((c.h, c.w), np.float32)
    reach = a.lung_u + a.lung_ru
    lbox = c.box(-reach, reach, a.lung_v - a.lung_rv, a.lung_v + a.lung_rv)
    for side in (-1, 1):
        lower = 1.0 - 0.12 * s["Atelectasis"] * (side == f.atelectasis_side)  # volume loss
        sl, m = c.mask(side * a.lung_u, a.lung_v, a.lung_ru, a.lung_rv * lower, edge=0.1)
        np.maximum(lung[sl], m, out=lung[sl])
    # Pneumothorax: the lung falls away from the chest wall, leaving air without markings.
    ptx = None
    if s["Pneumothorax"]:
        ptx_side = f.pneumothorax_side
        shrink = 0.72 + 0.14 * (1 - s["Pneumothorax"])
        sl = c.box(-reach, 0, 0, 1) if ptx_side < 0 else c.box(0, reach, 0, 1)
        gu, gv = c.grid(sl)
        r2 = ((gu - ptx_side * (a.lung_u - a.lung_ru * (1 - shrink))) / (a.lung_ru * shrink)) ** 2 + (
            (gv - a.lung_v - a.lung_rv * (1 - shrink)) / (a.lung_rv * shrink)
        ) ** 2
        inner = np.clip((1.0 - r2) * 20, 0, 1)
        ptx = np.zeros_like(lung)
        ptx[sl] = np.clip(lung[sl] - inner, 0, 1)
        c.a[sl] += (np.clip(1 - np.abs(inner - 0.5) * 2.5, 0, 1) * lung[sl]) * (40 * s["Pneumothorax"])
        c.a -= ptx * (25 * s["Pneumothorax"])
    c.a[lbox] -= lung[lbox] * a.dark
    # Posterior ribs: curved bright bands over the lungs.
    gu, gv = c.grid(lbox)
    ribs = np.clip(np.cos((gv / a.rib_period - gu * gu * 1.8 + a.rib_phase) * (2 * np.pi)) * 2.5 - 1.0, 0, 1)
    if s["Fracture"]:  # a gap in one rib, with callus
        fu, fv = f.fracture
        ribs *= np.clip(np.abs(gu - fu) * 60, 0.1, 1) ** (np.abs(gv - fv) < 0.03)
        c.gaussian(fu, fv, 0.03, 0.016, 45 * s["Fracture"])
    c.a[lbox] += ribs * np.minimum(lung[lbox] * 1.5, 1) * 16
    # Mediastinum, aortic knob, spine, heart, hila, clavicles.
    ecm = s["Enlarged Cardiomediastinum"]
    med = _mediastinum(a, f)[2]
    c.blend(*_mediastinum(a, f), a.tissue + 36, edge=0.6)
    c.blend(0.1 + 0.3 * med * ecm, 0.25, 0.06, 0.035, a.tissue + 52, edge=0.4)
    c.add(0, 0.5, 0.045, 0.55, 10, edge=0.3)
    sl, heart = c.mask(*_heart(a, f, True, ap), edge=0.35)
    c.a[sl] += (a.tissue + 55 - c.a[sl]) * heart
    for side in (-1, 1):
        c.gaussian(side * 0.16, a.lung_v - 0.01, 0.05, 0.04, 22, within=lung)
        c.line([side * 0.07, side * 0.3, side * 0.62], [0.15, 0.12, 0.085], 0.028, a.tissue + 30)
    lung[sl] *= 1 - heart  # from here on: lung not hidden by the heart
    return lung, (lung if ptx is None else np.clip(lung - ptx * 1.2, 0, 1))


def _draw_lateral(c: _Canvas, a: _Anatomy, f: _Findings) -> tuple[np.ndarray, np.ndarray]:
    """Draw a lateral chest (facing left); return (open lung, where lung markings show)."""
    c.blend(0.02, 0.58, a.body + 0.04, 0.62, a.tissue, edge=0.05)
    c.blend(0.05, 1.02, a.body, 0.27, a.tissue + 28, edge=0.6)
    lung = np.zeros((c.h, c.w), np.float32)
    sl, m = c.mask(0.03, a.lung_v, a.lung_ru * 2.1, a.lung_rv * 1.02, edge=0.1)
    lung[sl] = m
    c.a[sl] -= m * (a.dark * 0.8)
    # Heart in front (image left), spine behind (image right) with vertebral bodies.
    sl, heart = c.mask(*_heart(a, f, False, False), edge=0.35)
    c.a[sl] += (a.tissue + 35 - c.a[sl]) * heart
    lung[sl] *= 1 - heart
    for k in range(10):
        c.blend(0.64 - 0.025 * k, 0.1 + 0.085 * k, 0.1, 0.036, a.tissue + 30, edge=0.3, square=True)
    c.line([-0.7, -0.72, -0.7], [0.12, 0.4, 0.7], 0.02, a.tissue + 30)  # sternum
    return lung, lung


def _draw_findings(c: _Canvas, a: _Anatomy, f: _Findings, lung: np.ndarray, frontal: bool) -> None:
    """Opacities, fluid, nodules and devices."""
    s = f.strength
    side, across, along = f.spots.T
    us = side * a.lung_u + across * 0.6 * a.lung_ru if frontal else across * 1.2 * a.lung_ru
    vs = a.lung_v + along * 0.7 * a.lung_rv
    if s["Edema"]:  # hazy perihilar "bat wings", both sides
        for sd in (-1, 1) if frontal else (0,):
            c.gaussian(sd * 0.22, a.lung_v, 0.16, 0.2, 48 * s["Edema"], within=lung)
    if s["Lung Opacity"]:
        for k in range(3):
            c.gaussian(us[k], vs[k], 0.09, 0.07, 38 * s["Lung Opacity"], within=lung)
    if s["Consolidation"]:  # one dense lobar patch
        c.add(us[3], min(vs[3] + 0.08, a.lung_v + 0.2), 0.16, 0.12, 70 * s["Consolidation"], edge=0.6, within=lung)
    if s["Pneumonia"]:  # several small patchy spots
        for k in range(4, 9):
            c.gaussian(us[k], vs[k], 0.035, 0.03, 45 * s["Pneumonia"], within=lung)
    if s["Lung Lesion"]:  # one well-defined nodule
        c.add(us[9], vs[9], 0.045, 0.035, 60 * s["Lung Lesion"], edge=0.25)
    if s["Atelectasis"]:  # a plate-like band at a base
        u = f.atelectasis_side * a.lung_u if frontal else 0.0
        c.add(u, a.lung_v + a.lung_rv * 0.5, 0.2, 0.018, 55 * s["Atelectasis"], edge=0.5, within=lung)
    if s["Pleural Effusion"]:  # fluid in the costophrenic angle, its meniscus rising laterally
        level = a.lung_v + a.lung_rv * (0.85 - 0.4 * s["Pleural Effusion"])
        sl = c.box(-1, 1, level - 0.4, a.lung_v + a.lung_rv)
        gu, gv = c.grid(sl)
        if frontal:
            rise = np.clip(np.abs(gu) - a.lung_u + a.lung_ru, 0, None)
            if f.effusion_side:
                rise = rise * (gu * f.effusion_side > 0)
        else:
            rise = np.clip(gu, 0, None)  # the posterior angle
        fluid = np.clip((gv - level + rise * 0.18) * 25, 0, 1)
        if frontal and f.effusion_side:
            fluid *= gu * f.effusion_side > 0
        c.a[sl] += fluid * np.minimum(lung[sl] * 1.3, 1) * (75 * s["Pleural Effusion"])
    if s["Pleural Other"] and frontal:  # thickened pleura along the upper lateral chest wall
        sl = c.box(0.3, 1, 0, a.lung_v + 0.1) if f.pneumothorax_side > 0 else c.box(-1, -0.3, 0, a.lung_v + 0.1)
        c.a[sl] += np.clip(1 - np.abs(lung[sl] - 0.35) * 3, 0, 1) * (60 * s["Pleural Other"])
    if s["Support Devices"]:  # an endotracheal tube, a central line and ECG leads
        val = 200 + 100 * s["Support Devices"]  # metal: white even on a dark film
        tip = 0.28 + f.tube_depth * 0.05
        if frontal:
            c.line([0.01, 0.0, 0.01], [0.0, 0.15, tip], 0.012, val)
            c.line([-0.75, -0.45, -0.15, -0.05], [0.1, 0.16, 0.26, 0.42], 0.008, val)
            for k in range(3):
                c.blend(-0.6 + 0.6 * k, 0.08 + 0.02 * k, 0.025, 0.018, val, edge=0.2)
        else:
            c.line([-0.35, -0.3, -0.2], [0.0, 0.15, tip], 0.012, val)


def _image_size(rng: np.random.Generator, release: str) -> tuple[int, int]:
    """(height, width): small has shorter side 320; full 2000 to 2900 pixels a side."""
    portrait = rng.random() < 0.85
    if release == "small":
        short, long_ = 320, int(np.clip(rng.normal(386, 18), 321, 460))
    else:
        short = int(rng.uniform(2000, 2500))
        long_ = int(min(short * rng.uniform(1.08, 1.25), 2900))
    return (long_, short) if portrait else (short, long_)


def _parse_path(path: str) -> tuple[int, int, int, int]:
    m = schema.PATH_PATTERN.match(path)
    if m is None:
        raise InvalidArgumentError(f"not a CheXpert image path: {path!r}")
    return (schema.SPLITS.index(m["split"]), int(m["patient"]), int(m["study"]), int(m["view"]))


def render_pixels(row: Mapping[str, str], *, seed: int = 0, release: str = "small") -> np.ndarray:
    """The 2-D uint8 picture for one CSV row; labels change the picture, nothing else does.

    The anatomy comes from ``(seed, patient)``, finding positions from the study, size and noise
    from the view, so flipping one label in a row changes only that finding's drawing.

    >>> row = synth_rows(patients=1)[0]
    >>> min(render_pixels(row).shape)
    320
    """
    check_choice("release", release, schema.RELEASE_KINDS)
    split, patient, study, view = _parse_path(row["Path"])
    codes = [schema.LABEL_SPELLINGS[row[name]] for name in schema.OBSERVATIONS]
    anatomy = _Anatomy.draw(_rng(seed, _TAG_ANATOMY, split, patient))
    findings = _Findings.draw(_rng(seed, _TAG_FINDINGS, split, patient, study), codes)
    vr = _rng(seed, _TAG_VIEW, split, patient, study, view)
    h, w = _image_size(vr, release)
    # Full-size pictures are drawn at 640 pixels and enlarged; grain is added at full size.
    scale = 1.0 if release == "small" else min(h, w) / 640
    dh, dw = round(h / scale), round(w / scale)
    c = _Canvas(dh, dw, 18.0)
    frontal = row["Frontal/Lateral"] == "Frontal"
    ap = row["AP/PA"] == "AP"
    if frontal:
        lung, markings = _draw_frontal(c, anatomy, findings, ap)
    else:
        lung, markings = _draw_lateral(c, anatomy, findings)
    _draw_findings(c, anatomy, findings, lung, frontal)
    fine, coarse = _texture_tiles()
    c.a += _texture_window(vr, fine, dh, dw) * (markings * 7 + 3)  # lung markings
    c.a += _texture_window(vr, coarse, dh, dw) * 6  # mottled soft tissue
    # Exposure differs between films; portable (AP) films are flatter.
    contrast = vr.uniform(0.85, 1.1) * (0.92 if ap else 1.0)
    c.a *= contrast
    c.a += 110 * (1 - contrast) + vr.uniform(-12, 12)
    img = c.a
    if scale != 1.0:
        img = np.asarray(Image.fromarray(img, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    # Film grain (uniform, from raw random bytes: cheap) brings the JPEGs to the real sizes.
    grain = np.frombuffer(vr.bytes(h * w), dtype=np.uint8).reshape(h, w)
    img = img + grain * np.float32(_GRAIN[release] / 73.6) - np.float32(_GRAIN[release] * 127.5 / 73.6)
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


# Standard deviation of the film grain, tuned to the real releases' mean JPEG size.
_GRAIN: Final[dict[str, float]] = {"small": 3.8, "full": 3.7}


def render_jpeg(row: Mapping[str, str], *, seed: int = 0, release: str = "small") -> bytes:
    """The JPEG bytes (baseline, grayscale, quality 95) of ``render_pixels(row)``.

    >>> render_jpeg(synth_rows(patients=1)[0])[:3]
    b'\\xff\\xd8\\xff'
    """
    img = render_pixels(row, seed=seed, release=release)
    return simplejpeg.encode_jpeg(img[:, :, None], quality=JPEG_QUALITY, colorspace="GRAY", colorsubsampling="Gray")


# ---------------------------------------------------------------------------------------------
# Writing a release
# ---------------------------------------------------------------------------------------------


def _render_one(args: tuple[dict[str, str], int, str]) -> bytes:
    row, seed, release = args
    return render_jpeg(row, seed=seed, release=release)


def _write_one(args: tuple[dict[str, str], int, str, str]) -> list[int]:
    """Write one picture; return its size and CRC-32 (for the marker)."""
    row, seed, release, target = args
    data = render_jpeg(row, seed=seed, release=release)
    with open(target, "wb") as fh:
        fh.write(data)
    return [len(data), zlib.crc32(data)]


def _run(
    fn: Callable[[_T], _R],
    jobs: Sequence[_T],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[_R]:
    """``fn`` over ``jobs``, results in job order whatever the number of workers (a pool run by
    chexpert.parallel: Ctrl-C or SIGTERM stops the workers at once)."""
    total = len(jobs)
    size = max(1, min(32, total // (8 * workers))) if workers > 1 else max(1, total)
    chunks = [jobs[i : i + size] for i in range(0, total, size)]
    done = 0
    results: Chunks[list[Any]]
    with run_chunks(_apply, chunks, workers=workers, state=fn) as results:
        for part in results:
            for result in part:
                done += 1
                if progress is not None:
                    progress(done, total)
                yield result


def _apply(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    return [fn(job) for job in jobs]


def _plan(release: str, patients: int, valid_patients: int, test_patients: int, seed: int) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """The CSV files by name, and the rows of the images in the order they are written."""
    train = synth_rows("train", patients=patients, seed=seed, release=release)
    valid = synth_rows("valid", patients=valid_patients, seed=seed, release=release)
    test = synth_rows("test", patients=test_patients, seed=seed, release=release)
    csvs = {"train.csv": csv_bytes(train), "valid.csv": csv_bytes(valid)}
    if test:
        csvs["test_labels.csv"] = csv_bytes(test)
        csvs["groundtruth.csv"] = csv_bytes(groundtruth_rows(test), columns=GROUNDTRUTH_COLUMNS)
    return csvs, valid + test + train


def _zip_info(name: str) -> zipfile.ZipInfo:
    is_dir = name.endswith("/")
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # Unix, so that the mode bits below mean what they say
    info.external_attr = ((0o40755 if is_dir else 0o100644) << 16) | (0x10 if is_dir else 0)
    return info


class _ZipWriter:
    """Writes members after their parent folders' entries, JPEGs stored and CSVs deflated, as
    zip tools do; fixed time stamps keep the archive byte-identical from run to run."""

    def __init__(self, path: pathlib.Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", allowZip64=True)
        self.dirs: set[str] = set()
        self.files: dict[str, list[int]] = {}  # below the top folder -> [size, CRC-32], for the marker

    def add(self, name: str, data: bytes | None = None) -> None:
        """Add a file, or a folder entry when ``data`` is None (``name`` then ends in ``/``)."""
        parts = name.rstrip("/").split("/")
        for i in range(1, len(parts) + (data is None)):
            folder = "/".join(parts[:i]) + "/"
            if folder not in self.dirs:
                self.dirs.add(folder)
                self.zf.writestr(_zip_info(folder), b"")
        if data is None:
            return
        info = _zip_info(name)
        self.files[name.split("/", 1)[1]] = [len(data), zlib.crc32(data)]
        if not name.endswith((".jpg", ".png")):
            info.compress_type = zipfile.ZIP_DEFLATED
            self.zf.writestr(info, data, compresslevel=6)
        else:
            info.compress_type = zipfile.ZIP_STORED
            self.zf.writestr(info, data)

    def close(self) -> None:
        self.zf.close()


def _aimi_place(name: str, batch_of: Mapping[int, int]) -> tuple[str, str]:
    """(batch, member) of a release file in the AIMI download: batch 1 holds the CSVs, valid/
    (and test/); training patients sit directly in the top folder of batches 2 to 4."""
    if not name.startswith("train/"):
        return AIMI_BATCHES[0], f"{AIMI_BATCHES[0]}/{name}"
    patient = int(name.split("/")[1][len("patient") :])
    batch = AIMI_BATCHES[batch_of[patient]]
    return batch, f"{batch}/{name[len('train/') :]}"


def _marker(release: str, seed: int, patients: dict[str, int], csvs: Mapping[str, bytes], files: Mapping[str, list[int]]) -> bytes:
    """The :data:`~chexpert.release.SYNTH_MARKER` of a look-alike: what synth wrote, file by file
    (size and CRC-32), and each CSV's rows. The same bytes for a seed whatever the layout."""
    rows = {name: data.rstrip(b"\n").count(b"\n") for name, data in csvs.items() if name != "groundtruth.csv"}
    marker = {
        "format": "chexpert-synth",
        "version": 1,
        "release": release,
        "seed": seed,
        "patients": patients,
        "rows": rows,
        "files": dict(sorted(files.items())),
    }
    return json.dumps(marker, separators=(",", ":")).encode() + b"\n"


def _mark_folder(folder: pathlib.Path, release: str, seed: int, patients: dict[str, int], csvs: Mapping[str, bytes]) -> None:
    """Write the marker into ``folder``, recording every file below it (read back for its CRC-32)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            files[path.relative_to(folder).as_posix()] = [len(data), zlib.crc32(data)]
    (folder / SYNTH_MARKER).write_bytes(_marker(release, seed, patients, csvs, files))


def _written_by_synth(target: pathlib.Path) -> str | None:
    """None if ``target`` (a release folder or zip in OUT) holds only what synth wrote there, as its
    marker records it; otherwise why not (the first foreign thing found)."""
    try:
        mode = target.lstat().st_mode
        if stat.S_ISDIR(mode):
            return _folder_written_by_synth(target)
        if stat.S_ISREG(mode) and target.suffix == ".zip":
            return _zip_written_by_synth(target)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return f"it cannot be checked ({exc})"
    return "it is not a folder or zip that synth writes"


def _load_marker(data: bytes) -> dict[str, list[int]] | None:
    try:
        marker: Any = json.loads(data)
    except (ValueError, RecursionError):
        return None  # not JSON, or nested too deeply: no marker synth wrote
    if not isinstance(marker, dict) or marker.get("format") != "chexpert-synth" or not isinstance(marker.get("files"), dict):
        return None
    return marker["files"]


def _folder_written_by_synth(target: pathlib.Path) -> str | None:
    marker = target / SYNTH_MARKER
    if not marker.is_file() or marker.is_symlink():
        return f"it has no {SYNTH_MARKER}"
    if marker.stat().st_size > _MAX_MARKER_BYTES:
        return f"its {SYNTH_MARKER} is too large to be one synth wrote"
    files = _load_marker(marker.read_bytes())
    if files is None:
        return f"its {SYNTH_MARKER} is not one synth wrote"
    for folder, dirs, names in os.walk(target, onerror=_raise):
        for name in dirs + names:
            path = pathlib.Path(folder, name)
            rel = path.relative_to(target).as_posix()
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            if rel != SYNTH_MARKER and (not stat.S_ISREG(info.st_mode) or files.get(rel, [None])[0] != info.st_size):
                return f"synth did not write {path}"
    return None


def _zip_written_by_synth(target: pathlib.Path) -> str | None:
    top = target.name[: -len(".zip")]
    with zipfile.ZipFile(target) as zf:
        try:
            files = _load_marker(zf.read(f"{top}/{SYNTH_MARKER}"))
        except KeyError:
            return f"it has no {top}/{SYNTH_MARKER}"
        if files is None:
            return f"its {SYNTH_MARKER} is not one synth wrote"
        for info in zf.infolist():
            rel = info.filename.removeprefix(f"{top}/")
            if info.is_dir() or rel == SYNTH_MARKER:
                continue
            if files.get(rel) != [info.file_size, info.CRC]:
                return f"synth did not write its member {info.filename}"
    return None


def _raise(exc: OSError) -> None:
    raise exc


def _refuse_foreign(target: pathlib.Path) -> None:
    """Raise unless ``target`` holds only what synth wrote (``overwrite`` replaces nothing else)."""
    why = _written_by_synth(target)
    if why is not None:
        raise FileExistsError(
            f"{target} exists and was not written by chexpert synth ({why}); it may be a real release, so it was left as it is. "
            "Remove it yourself or choose another folder"
        )


class LeftoverWarning(UserWarning):
    """The output folder holds the staging folder of a synth run that never finished."""


def warn_leftovers(out: pathlib.Path) -> None:
    """Say so when ``out`` holds ``.synth-*`` staging folders of runs that were killed.

    They are not removed: another synth may be writing into the same folder right now, and
    nothing proves a name ours once its run is gone.
    """
    try:
        left = sorted(e.name for e in os.scandir(out) if e.name.startswith(".synth-") and e.is_dir(follow_symlinks=False))
    except OSError:
        return
    if left:
        import warnings

        warnings.warn(
            f"{out} holds {', '.join(left[:3])}{' …' if len(left) > 3 else ''}: staging left by a synth run that was killed "
            "before it finished; remove it once no other synth is writing there",
            LeftoverWarning,
            stacklevel=3,
        )


def _claim_targets(out: pathlib.Path, names: Sequence[str], overwrite: bool) -> None:
    """Check that those of ``names`` in ``out`` that exist hold only what synth wrote.

    Refused unless ``overwrite``; checked before any work, so that a refusal costs nothing.
    """
    existing = [out / n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists; remove it, choose another folder, or overwrite it ({option('overwrite')}: replaces only what chexpert synth wrote)"
        )
    for target in existing:
        _refuse_foreign(target)  # a real download, or files of the user's, stay as they are


def _put_in_place(out: pathlib.Path, staging: pathlib.Path, names: Sequence[str]) -> None:
    """Move ``staging/NAME`` to ``out/NAME`` for every name, replacing only what synth wrote there.

    Each target is checked again, all before any is replaced: it may have changed while synth drew.
    A replaced target is moved into ``staging``, which the caller removes.
    """
    for name in names:
        if (out / name).exists() or (out / name).is_symlink():
            _refuse_foreign(out / name)
    for name in names:
        target = out / name
        if target.exists():
            os.replace(target, staging / f"replaced-{name}")
        os.replace(staging / name, target)


def synthesize(
    out: str | os.PathLike[str],
    *,
    release: str = "small",
    patients: int = 100,
    seed: int = 0,
    layout: str = "folder",
    valid_patients: int | None = None,
    test_patients: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pathlib.Path:
    """Write a look-alike CheXpert release into ``out`` and return what to pass to ``chexpert.open``.

    ``layout="folder"`` gives ``out/CheXpert-v1.0-small/`` (or ``CheXpert-v1.0/``), ``"zip"``
    the same tree in ``out/CheXpert-v1.0-small.zip`` (JPEGs stored), and ``"aimi"`` (full release
    only) the four Stanford AIMI batch zips in ``out``, which is then the path returned.
    ``patients`` training patients are numbered from 1, ``valid_patients`` (default
    ``max(2, patients // 50)``) from 64541, ``test_patients`` from 64741 (when above 0 they add
    ``test/``, ``test_labels.csv`` and ``groundtruth.csv``). The output is byte-identical for a
    seed, whatever ``workers``. ``progress(done, total)`` is called after each image. An existing
    release in ``out`` is an error unless ``overwrite``, which replaces only what synth itself wrote
    (as the :data:`~chexpert.release.SYNTH_MARKER` it writes beside the CSVs records, file by file):
    anything else, a real release above all, is refused and left as it is.

    ``release="test"`` writes the released test set's labels and a look-alike CheXlocalize instead
    (see :mod:`chexpert.synth.testset`; ``patients`` are then test patients) and returns ``out``.

    >>> root = synthesize(tmp_path, patients=20, seed=1)     # doctest: +SKIP
    >>> root.name                                            # doctest: +SKIP
    'CheXpert-v1.0-small'
    """
    check_choice("release", release, RELEASES)
    if release == "test":
        from chexpert.synth.testset import synthesize_test

        if layout != "folder":
            raise InvalidArgumentError("release 'test' is written as folders (CheXlocalize/ and chexpert-test-set-labels/); use layout='folder'")
        return synthesize_test(out, patients=patients, valid_patients=valid_patients, seed=seed, workers=workers, overwrite=overwrite, progress=progress)
    check_choice("layout", layout, LAYOUTS)
    if layout == "aimi" and release != "full":
        raise InvalidArgumentError("layout 'aimi' is how the full release is downloaded; use release='full'")
    if valid_patients is None:
        valid_patients = min(max(2, patients // 50), 200)
    for name, value, split in (("patients", patients, "train"), ("valid_patients", valid_patients, "valid"), ("test_patients", test_patients, "test")):
        first, last = schema.PATIENT_RANGES[split]
        check_int(name, value, low=1 if split == "train" else 0, high=last - first + 1)
    check_int("workers", workers, low=1, high=1024)

    out = pathlib.Path(out)
    top = schema.RELEASE_DIRS[release]
    names = {"folder": [top], "zip": [f"{top}.zip"], "aimi": [f"{b}.zip" for b in AIMI_BATCHES]}[layout]
    _claim_targets(out, names, overwrite)
    csvs, images = _plan(release, patients, valid_patients, test_patients, seed)
    patients_by_split = {"train": patients, "valid": valid_patients, "test": test_patients}
    image_names = [schema.strip_release_prefix(r["Path"]) for r in images]

    out.mkdir(parents=True, exist_ok=True)
    warn_leftovers(out)
    # Build under a temporary name beside the target and move into place at the end, so that an
    # interrupted run never leaves something that looks like a complete release.
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".synth-", dir=out))
    try:
        if layout == "folder":
            root = staging / top
            for folder in sorted({str(pathlib.PurePosixPath(n).parent) for n in image_names}):
                (root / folder).mkdir(parents=True, exist_ok=True)
            root.mkdir(exist_ok=True)
            for name, data in csvs.items():
                (root / name).write_bytes(data)
            jobs = [(r, seed, release, str(root / n)) for r, n in zip(images, image_names, strict=True)]
            written = {name: [len(data), zlib.crc32(data)] for name, data in csvs.items()}
            for name, entry in zip(image_names, _run(_write_one, jobs, workers, progress), strict=True):
                written[name] = entry
            (root / SYNTH_MARKER).write_bytes(_marker(release, seed, patients_by_split, csvs, written))
        else:
            if layout == "zip":

                def place(name: str) -> tuple[str, str]:
                    return top, f"{top}/{name}"
            else:
                chunks = np.array_split(np.arange(1, patients + 1), 3)
                batch_of = {int(p): i + 1 for i, chunk in enumerate(chunks) for p in chunk}

                def place(name: str) -> tuple[str, str]:
                    return _aimi_place(name, batch_of)

            writers = {n[: -len(".zip")]: _ZipWriter(staging / n) for n in names}
            try:
                for stem, writer in writers.items():
                    writer.add(f"{stem}/")
                for name, data in csvs.items():
                    stem, member = place(name)
                    writers[stem].add(member, data)
                jobs2 = [(r, seed, release) for r in images]
                for name, data in zip(image_names, _run(_render_one, jobs2, workers, progress), strict=True):
                    stem, member = place(name)
                    writers[stem].add(member, data)
                for stem, writer in writers.items():
                    writer.add(f"{stem}/{SYNTH_MARKER}", _marker(release, seed, patients_by_split, csvs, writer.files))
            finally:
                for writer in writers.values():
                    writer.close()
        _put_in_place(out, staging, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out if layout == "aimi" else out / names[0]
