"""Pictures of a look-alike release: a chest drawn from a row's labels, as a JPEG of the real sizes.

The anatomy comes from ``(seed, patient)``, finding positions from the study, size and noise
from the view (:func:`chexpert.synth.rows.seeded_rng`), so flipping one label changes only that
finding's drawing. Imports :mod:`chexpert.synth.rows` only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import simplejpeg
from PIL import Image

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.synth.rows import TAG_ANATOMY, TAG_FINDINGS, TAG_VIEW, seeded_rng
from chexpert.validation import check_choice

__all__ = [
    "JPEG_QUALITY",
    "render_pixels",
    "render_jpeg",
    "Canvas",
    "Anatomy",
    "Findings",
    "heart_shadow",
    "mediastinum_shadow",
    "draw_frontal",
    "draw_lateral",
    "draw_findings",
    "image_size",
    "parse_path",
]

JPEG_QUALITY: Final[int] = 95


class Canvas:
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
class Anatomy:
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
    def draw(cls, rng: np.random.Generator) -> Anatomy:
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
class Findings:
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
    def draw(cls, rng: np.random.Generator, codes: Sequence[int]) -> Findings:
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


def heart_shadow(a: Anatomy, f: Findings, frontal: bool, ap: bool) -> tuple[float, float, float, float]:
    """Centre and radii ``(u, v, ru, rv)`` of the heart's shadow (also the look-alike CheXlocalize outline)."""
    s = f.strength["Cardiomegaly"]
    if frontal:
        grow = 1 + 0.45 * s + (0.06 if ap else 0.0)  # AP films magnify the heart
        return a.heart_u * grow, 0.66, a.heart_ru * grow, a.heart_rv * (1 + 0.25 * s)
    grow = 1 + 0.4 * s
    return -0.3 + 0.1 * s, 0.64, a.heart_ru * 1.1 * grow, a.heart_rv * 1.5 * grow


def mediastinum_shadow(a: Anatomy, f: Findings) -> tuple[float, float, float, float]:
    """Centre and radii of the frontal mediastinum's shadow."""
    return 0.02, 0.32, a.mediastinum * (1 + 0.6 * f.strength["Enlarged Cardiomediastinum"]), 0.36


def draw_frontal(c: Canvas, a: Anatomy, f: Findings, ap: bool) -> tuple[np.ndarray, np.ndarray]:
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
    med = mediastinum_shadow(a, f)[2]
    c.blend(*mediastinum_shadow(a, f), a.tissue + 36, edge=0.6)
    c.blend(0.1 + 0.3 * med * ecm, 0.25, 0.06, 0.035, a.tissue + 52, edge=0.4)
    c.add(0, 0.5, 0.045, 0.55, 10, edge=0.3)
    sl, heart = c.mask(*heart_shadow(a, f, True, ap), edge=0.35)
    c.a[sl] += (a.tissue + 55 - c.a[sl]) * heart
    for side in (-1, 1):
        c.gaussian(side * 0.16, a.lung_v - 0.01, 0.05, 0.04, 22, within=lung)
        c.line([side * 0.07, side * 0.3, side * 0.62], [0.15, 0.12, 0.085], 0.028, a.tissue + 30)
    lung[sl] *= 1 - heart  # from here on: lung not hidden by the heart
    return lung, (lung if ptx is None else np.clip(lung - ptx * 1.2, 0, 1))


def draw_lateral(c: Canvas, a: Anatomy, f: Findings) -> tuple[np.ndarray, np.ndarray]:
    """Draw a lateral chest (facing left); return (open lung, where lung markings show)."""
    c.blend(0.02, 0.58, a.body + 0.04, 0.62, a.tissue, edge=0.05)
    c.blend(0.05, 1.02, a.body, 0.27, a.tissue + 28, edge=0.6)
    lung = np.zeros((c.h, c.w), np.float32)
    sl, m = c.mask(0.03, a.lung_v, a.lung_ru * 2.1, a.lung_rv * 1.02, edge=0.1)
    lung[sl] = m
    c.a[sl] -= m * (a.dark * 0.8)
    # Heart in front (image left), spine behind (image right) with vertebral bodies.
    sl, heart = c.mask(*heart_shadow(a, f, False, False), edge=0.35)
    c.a[sl] += (a.tissue + 35 - c.a[sl]) * heart
    lung[sl] *= 1 - heart
    for k in range(10):
        c.blend(0.64 - 0.025 * k, 0.1 + 0.085 * k, 0.1, 0.036, a.tissue + 30, edge=0.3, square=True)
    c.line([-0.7, -0.72, -0.7], [0.12, 0.4, 0.7], 0.02, a.tissue + 30)  # sternum
    return lung, lung


def draw_findings(c: Canvas, a: Anatomy, f: Findings, lung: np.ndarray, frontal: bool) -> None:
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


def image_size(rng: np.random.Generator, release: str) -> tuple[int, int]:
    """(height, width): small has shorter side 320; full 2000 to 2900 pixels a side."""
    portrait = rng.random() < 0.85
    if release == "small":
        short, long_ = 320, int(np.clip(rng.normal(386, 18), 321, 460))
    else:
        short = int(rng.uniform(2000, 2500))
        long_ = int(min(short * rng.uniform(1.08, 1.25), 2900))
    return (long_, short) if portrait else (short, long_)


def parse_path(path: str) -> tuple[int, int, int, int]:
    m = schema.PATH_PATTERN.match(path)
    if m is None:
        raise InvalidArgumentError(f"not a CheXpert image path: {path!r}")
    return (schema.SPLITS.index(m["split"]), int(m["patient"]), int(m["study"]), int(m["view"]))


def render_pixels(row: Mapping[str, str], *, seed: int = 0, release: str = "small") -> np.ndarray:
    """The 2-D uint8 picture for one CSV row; labels change the picture, nothing else does.

    The anatomy comes from ``(seed, patient)``, finding positions from the study, size and noise
    from the view, so flipping one label in a row changes only that finding's drawing.

    >>> from chexpert.synth.rows import synth_rows
    >>> row = synth_rows(patients=1)[0]
    >>> min(render_pixels(row).shape)
    320
    """
    check_choice("release", release, schema.RELEASE_KINDS)
    split, patient, study, view = parse_path(row["Path"])
    codes = [schema.LABEL_SPELLINGS[row[name]] for name in schema.OBSERVATIONS]
    anatomy = Anatomy.draw(seeded_rng(seed, TAG_ANATOMY, split, patient))
    findings = Findings.draw(seeded_rng(seed, TAG_FINDINGS, split, patient, study), codes)
    vr = seeded_rng(seed, TAG_VIEW, split, patient, study, view)
    h, w = image_size(vr, release)
    # Full-size pictures are drawn at 640 pixels and enlarged; grain is added at full size.
    scale = 1.0 if release == "small" else min(h, w) / 640
    dh, dw = round(h / scale), round(w / scale)
    c = Canvas(dh, dw, 18.0)
    frontal = row["Frontal/Lateral"] == "Frontal"
    ap = row["AP/PA"] == "AP"
    if frontal:
        lung, markings = draw_frontal(c, anatomy, findings, ap)
    else:
        lung, markings = draw_lateral(c, anatomy, findings)
    draw_findings(c, anatomy, findings, lung, frontal)
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

    >>> from chexpert.synth.rows import synth_rows
    >>> render_jpeg(synth_rows(patients=1)[0])[:3]
    b'\\xff\\xd8\\xff'
    """
    img = render_pixels(row, seed=seed, release=release)
    return simplejpeg.encode_jpeg(img[:, :, None], quality=JPEG_QUALITY, colorspace="GRAY", colorsubsampling="Gray")
