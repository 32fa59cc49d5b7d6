"""CheXlocalize: radiologists' segmentations of ten observations, as masks on the image's pixel grid.

CheXlocalize (Saporta et al., Nature Machine Intelligence 2022) ships the validation and test
images with, per image and observation, a segmentation as COCO run-length encoding
(``gt_segmentations_{val,test}.json``: ``{"patient64541_study1_view1_frontal": {"Cardiomegaly":
{"size": [h, w], "counts": "..."}, ...}}``) made from polygons drawn by radiologists
(``gt_annotations_{val,test}.json``: ``{"patient...": {"img_size": [h, w], "Cardiomegaly": [[[x,
y], ...], ...]}}``), and the same for the benchmark radiologists on the test set (``hb_``
files). Observations are named as in CheXpert, except "Airspace Opacity", which is Lung
Opacity. COCO's compressed run-length strings are decoded here in numpy (no pycocotools).

Every mask is checked against its image: a ``size`` that is not the image's height and width is
an :class:`~chexpert.errors.AnnotationError` naming the file, the image and the observation.

>>> release = chexpert.open("~/data/CheXlocalize")
>>> masks = read_masks(release, "test")
>>> masks.mask("test/patient64741/study1/view1_frontal.jpg", "Cardiomegaly").shape
(2120, 2403)
>>> picture = masks.overlay("test/patient64741/study1/view1_frontal.jpg")  # RGB uint8
>>> picture.shape, picture.dtype
((2120, 2403, 3), dtype('uint8'))
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from chexpert import imaging, schema
from chexpert.errors import AnnotationError, ChexpertError, InvalidArgumentError, Problem, ReleaseNotFoundError
from chexpert.release import Release, ReleaseFile, open_release
from chexpert.safeio import read_bytes
from chexpert.schema import MAX_JSON_BYTES
from chexpert.validation import check_choice, check_number

__all__ = [
    "LOCALIZED_OBSERVATIONS",
    "TASK_NAMES",
    "ANNOTATORS",
    "FORMS",
    "COLORS",
    "decode_rle",
    "encode_rle",
    "rasterize",
    "image_id",
    "image_path",
    "Masks",
    "read_masks",
    "overlay",
    "check_localization",
]

#: The ten observations CheXlocalize segments, in ``schema.OBSERVATIONS`` order.
LOCALIZED_OBSERVATIONS: Final[tuple[str, ...]] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Support Devices",
)
#: CheXlocalize's task name -> CheXpert observation.
TASK_NAMES: Final[dict[str, str]] = {**{name: name for name in LOCALIZED_OBSERVATIONS}, "Airspace Opacity": "Lung Opacity"}
#: Whose outlines: the ground truth ("gt") or the benchmark radiologists ("hb", test set only).
ANNOTATORS: Final[tuple[str, ...]] = ("gt", "hb")
#: Run-length segmentations or the polygons they were made from.
FORMS: Final[tuple[str, ...]] = ("segmentations", "annotations")
#: Overlay colour (RGB) of each localized observation.
COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "Enlarged Cardiomediastinum": (255, 127, 14),
    "Cardiomegaly": (214, 39, 40),
    "Lung Opacity": (31, 119, 180),
    "Lung Lesion": (227, 119, 194),
    "Edema": (23, 190, 207),
    "Consolidation": (148, 103, 189),
    "Atelectasis": (188, 189, 34),
    "Pneumothorax": (44, 160, 44),
    "Pleural Effusion": (140, 86, 75),
    "Support Devices": (255, 215, 0),
}

_FILE_NAME = re.compile(r"^(?P<annotator>gt|hb)_(?P<form>segmentations|annotations)_(?P<split>val|valid|test)\.json$", re.IGNORECASE)
_IMAGE_ID = re.compile(r"^patient(?P<patient>\d{5})_study(?P<study>\d+)_view(?P<view>\d+)_(?P<kind>frontal|lateral)$")


# ---------------------------------------------------------------------------------------------
# COCO run-length encoding and polygons
# ---------------------------------------------------------------------------------------------


def _counts_from_string(text: str) -> np.ndarray:
    """Run lengths from COCO's compressed string (LEB128-like, 6 bits a character from '0',
    each run after the second stored as the difference to the run two before it)."""
    try:
        raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise InvalidArgumentError("counts holds characters outside COCO's alphabet") from None
    if raw.size == 0:
        return np.zeros(0, np.int64)
    if (raw < 0).any() or (raw > 63).any():
        raise InvalidArgumentError("counts holds characters outside COCO's alphabet ('0' to 'o')")
    more = (raw & 0x20) != 0
    if more[-1]:
        raise InvalidArgumentError("counts ends inside a number (truncated)")
    ends = np.flatnonzero(~more)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts + 1
    if lengths.max() > 12:
        raise InvalidArgumentError("counts holds a number too large for an image")
    shift = 5 * (np.arange(raw.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((raw & 0x1F) << shift, starts)
    negative = (raw[ends] & 0x10) != 0
    values[negative] |= np.left_shift(-1, 5 * lengths[negative])
    counts = values.copy()
    # Runs from the fourth on are differences to the run two before (COCO's "m > 2").
    if counts.size > 3:
        counts[3::2] = np.cumsum(values[1::2])[1:]
    if counts.size > 4:
        counts[4::2] = np.cumsum(values[2::2])[1:]
    return counts


def _string_from_counts(counts: Sequence[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """A COCO run-length mask (``{"size": [h, w], "counts": str or list}``) as a bool ``(h, w)`` array.

    Runs go down the columns (Fortran order) and start with background, as pycocotools writes.

    >>> decode_rle({"size": [2, 3], "counts": [1, 2, 3]}).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0]]
    >>> int(decode_rle(encode_rle(np.eye(4, dtype=bool))).sum())
    4
    """
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise InvalidArgumentError(f"a run-length mask needs 'size' and 'counts', not {_short(rle)}")
    size = rle["size"]
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise InvalidArgumentError(f"size must be [height, width] in pixels, not {_short(size)}")
    h, w = int(size[0]), int(size[1])
    if h * w > imaging.MAX_PIXELS:
        raise InvalidArgumentError(f"size {h}x{w} is larger than any chest radiograph")
    raw = rle["counts"]
    if isinstance(raw, str):
        counts = _counts_from_string(raw)
    elif isinstance(raw, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        if any(v > h * w for v in raw):  # also beyond int64, which numpy would not take
            raise InvalidArgumentError(f"counts holds a run longer than the {h * w} pixels of size {h}x{w}")
        counts = np.asarray(raw, dtype=np.int64)
    else:
        raise InvalidArgumentError(f"counts must be a COCO string or a list of run lengths, not {_short(raw)}")
    if (counts < 0).any():
        raise InvalidArgumentError("counts holds a negative run length (damaged string)")
    if (counts > h * w).any():
        # Checked before summing: runs of 2**62 wrap the int64 sum around to the image's size, and
        # np.repeat then asks for exabytes (a crash of the process, not an error).
        raise InvalidArgumentError(f"counts holds a run longer than the {h * w} pixels of size {h}x{w}")
    total = int(counts.sum())  # at most len(counts) * h * w: no wrap-around now
    if total != h * w:
        raise InvalidArgumentError(f"runs cover {total} pixels, but size {h}x{w} has {h * w}")
    flat = np.repeat(np.arange(counts.size, dtype=np.int64) % 2 == 1, counts)
    return flat.reshape(w, h).T


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A 2-D mask as COCO's compressed run-length dict, byte for byte what pycocotools writes.

    >>> encode_rle(np.zeros((2, 2), bool))
    {'size': [2, 2], 'counts': '4'}
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InvalidArgumentError(f"mask must be 2-D (height, width), not of shape {mask.shape}")
    flat = mask.T.reshape(-1).astype(bool)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.r_[0, changes, flat.size]
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _string_from_counts(counts)}


def rasterize(polygons: Iterable[Sequence[Sequence[float]]], size: Sequence[int]) -> np.ndarray:
    """Fill polygons (each a list of ``[x, y]`` points in pixels) on an ``(h, w)`` grid, outline
    included, as CheXlocalize turned its annotations into segmentations.

    >>> int(rasterize([[[1, 1], [3, 1], [3, 3], [1, 3]]], (5, 5)).sum())
    9
    """
    from PIL import Image, ImageDraw

    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0 or h * w > imaging.MAX_PIXELS:
        raise InvalidArgumentError(f"img_size must be [height, width] of an image, not {list(size)}")
    canvas = Image.new("1", (w, h))
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        points = [(float(p[0]), float(p[1])) for p in polygon]
        if len(points) < 3:
            raise InvalidArgumentError(f"a polygon needs at least 3 points, not {len(points)}")
        if not all(math.isfinite(v) for point in points for v in point):  # NaN would be drawn as some pixel
            raise InvalidArgumentError(f"a polygon point is not a finite number: {_short(next(p for p in points if not all(map(math.isfinite, p))))}")
        draw.polygon(points, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# Image ids
# ---------------------------------------------------------------------------------------------


def image_id(path: str) -> str:
    """CheXlocalize's key of an image: ``patientNNNNN_studyN_viewN_frontal``.

    >>> image_id("CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg")
    'patient64541_study1_view1_frontal'
    """
    if _IMAGE_ID.match(path):
        return path
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if len(parts) < 3 or not parts[-3].startswith("patient"):
        raise InvalidArgumentError(f"not a CheXpert image path or CheXlocalize image id: {path!r}")
    key = "_".join(parts[-3:]).rsplit(".", 1)[0]
    if not _IMAGE_ID.match(key):
        raise InvalidArgumentError(f"not a CheXpert image path or CheXlocalize image id: {path!r}")
    return key


def image_path(key: str, extension: str = "jpg") -> str:
    """The ``split/patientNNNNN/studyN/viewN_kind.jpg`` path of an image id (split from the patient number).

    >>> image_path("patient64741_study1_view2_lateral")
    'test/patient64741/study1/view2_lateral.jpg'
    """
    match = _IMAGE_ID.match(key)
    if match is None:
        raise InvalidArgumentError(f"not a CheXlocalize image id (patientNNNNN_studyN_viewN_frontal): {key!r}")
    patient = int(match["patient"])
    split = next((s for s, (lo, hi) in schema.PATIENT_RANGES.items() if lo <= patient <= hi), None)
    if split is None:  # pragma: no cover  (five digits always fall in a range or above it)
        raise InvalidArgumentError(f"patient{patient:05d} is in no CheXpert split")
    return f"{split}/patient{match['patient']}/study{match['study']}/view{match['view']}_{match['kind']}.{extension}"


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Masks:
    """The masks of one CheXlocalize file, per image and observation, aligned to each image.

    Make one with :func:`read_masks`. ``images`` lists the annotated images (CheXlocalize's ids);
    an image listed with no outline of an observation has an all-False mask for it.

    >>> masks = read_masks("~/data/CheXlocalize", "test")
    >>> masks.observations("test/patient64741/study1/view1_frontal.jpg")
    ('Enlarged Cardiomediastinum', 'Lung Opacity', 'Atelectasis')
    """

    file: str
    split: str
    annotator: str
    form: str
    entries: Mapping[str, Mapping[str, Any]] = field(repr=False)
    release: Release | None = field(default=None, repr=False)
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def images(self) -> tuple[str, ...]:
        """Ids of the annotated images, sorted."""
        return tuple(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and image_id(path) in self.entries

    def observations(self, path: str) -> tuple[str, ...]:
        """Observations with a non-empty outline on the image, in ``schema.OBSERVATIONS`` order."""
        entry = self._entry(path)
        names = {TASK_NAMES[t] for t, value in entry.items() if t in TASK_NAMES and _nonempty(value, self.form)}
        return tuple(o for o in schema.OBSERVATIONS if o in names)

    def mask(self, path: str, observation: str, *, check: bool = True) -> np.ndarray:
        """The bool ``(height, width)`` mask of one observation on one image.

        With a release bound and ``check``, the mask's size is compared with the image's (read
        from its header): a mismatch, a damaged run-length string or polygon raises
        :class:`~chexpert.errors.AnnotationError` naming the file, image and observation.
        """
        check_choice("observation", observation, LOCALIZED_OBSERVATIONS, what="localized observation")
        key = image_id(path)
        entry = self._entry(key)
        task = next((t for t in entry if TASK_NAMES.get(t) == observation), None)
        size = self._declared_size(key, entry, task)
        try:
            if task is None:
                mask = np.zeros(size, dtype=bool)
            elif self.form == "segmentations":
                mask = decode_rle(entry[task])
            else:
                mask = rasterize(entry[task], size)
        except (ValueError, TypeError) as exc:
            raise AnnotationError(f"{self.file}: {key}, {task}: {exc}") from None
        if check and self.release is not None:
            self._check_size(key, task or observation, mask.shape)
        return mask

    def masks(self, path: str, *, check: bool = True) -> dict[str, np.ndarray]:
        """Every non-empty mask of an image, by observation."""
        return {name: self.mask(path, name, check=check) for name in self.observations(path)}

    def image(self, path: str) -> np.ndarray:
        """The image itself (2-D uint8) from the bound release."""
        if self.release is None:
            raise InvalidArgumentError("these masks were read without a release; pass the release (or its folder) to read_masks")
        location = self._path(image_id(path))
        return imaging.decode(self.release.read_bytes(location), file=location)

    def overlay(self, path: str, observations: Sequence[str] | None = None, *, alpha: float = 0.45) -> np.ndarray:
        """The image with its masks drawn over it (RGB uint8), one colour per observation (:data:`COLORS`)."""
        names = self.observations(path) if observations is None else tuple(observations)
        return overlay(self.image(path), {name: self.mask(path, name) for name in names}, alpha=alpha)

    # -- internals ---------------------------------------------------------------------------

    def _entry(self, path: str) -> Mapping[str, Any]:
        key = image_id(path)
        entry = self.entries.get(key)
        if entry is None:
            raise KeyError(f"{key} has no {self.annotator} {self.form} in {self.file} ({len(self.entries)} images annotated)")
        return entry

    def _path(self, key: str) -> str:
        if self.release is not None:
            for extension in ("jpg", "png"):
                candidate = image_path(key, extension)
                try:
                    self.release.locate(candidate)
                except ChexpertError:
                    continue
                return candidate
        return image_path(key)

    def _declared_size(self, key: str, entry: Mapping[str, Any], task: str | None) -> tuple[int, int]:
        if self.form == "annotations":
            size = entry.get("img_size")
        else:
            size = next((v.get("size") for v in entry.values() if isinstance(v, Mapping)), None)
            if task is not None and isinstance(entry[task], Mapping):
                size = entry[task].get("size", size)
        if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            if task is None and self.release is not None:
                return self._image_size(key)
            raise AnnotationError(f"{self.file}: {key}, {task}: size must be [height, width] in pixels, not {_short(size)}")
        return int(size[0]), int(size[1])

    def _image_size(self, key: str) -> tuple[int, int]:
        if key not in self._sizes:
            if self.release is None:
                raise InvalidArgumentError("image sizes need the release; pass the release (or its folder) to read_masks")
            location = self._path(key)
            info = imaging.image_info(self.release.read_bytes(location), file=location)
            self._sizes[key] = (info.height, info.width)
        return self._sizes[key]

    def _check_size(self, key: str, task: str, shape: tuple[int, ...]) -> None:
        h, w = self._image_size(key)
        if tuple(shape) != (h, w):
            transposed = " (height and width swapped)" if tuple(shape) == (w, h) else ""
            raise AnnotationError(
                f"{self.file}: {key}, {task}: mask size {shape[0]}x{shape[1]} (height x width) does not match the image, "
                f"{h}x{w}{transposed}; the mask would not lie on the image's pixels"
            )


def _nonempty(value: Any, form: str) -> bool:
    if form == "annotations":
        return isinstance(value, list) and len(value) > 0
    if not isinstance(value, Mapping):
        return False
    counts = value.get("counts")
    if isinstance(counts, list):
        return len(counts) > 1
    if not isinstance(counts, str):
        return True  # damaged: mask() names the problem
    try:
        return len(_counts_from_string(counts)) > 1  # one run of background alone is an empty mask
    except ValueError:
        return True


def _find_file(release: Release, split: str, annotator: str, form: str) -> ReleaseFile | None:
    wanted = "val" if split == "valid" else split
    found = []
    for file in release.files:
        match = _FILE_NAME.match(file.name)
        if match and match["annotator"].lower() == annotator and match["form"].lower() == form and match["split"].lower().replace("valid", "val") == wanted:
            found.append(file)
    if len(found) > 1:
        raise ChexpertError(f"{release.root} holds {len(found)} {annotator}_{form}_{wanted}.json files: {', '.join(f.label for f in found)}")
    return found[0] if found else None


def _load_json(data: bytes, label: str) -> dict[str, Any]:
    try:
        entries = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{label}: not readable as JSON: {exc}") from None
    except RecursionError:
        raise AnnotationError(f"{label}: not readable as JSON: nested too deeply") from None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise AnnotationError(f"{label}: expected an object of image ids, each an object of observations")
    return entries


def read_masks(
    source: Release | str | os.PathLike[str],
    split: str = "test",
    *,
    annotator: str = "gt",
    form: str = "segmentations",
) -> Masks:
    """Read CheXlocalize's masks of ``split`` ("valid" or "test") from a release or a JSON file.

    ``source`` is a :class:`~chexpert.release.Release`, a folder or zip ``chexpert.open`` takes
    (the JSON is found by its released name, ``gt_segmentations_test.json`` and so on), or the
    JSON file itself (then sizes cannot be checked against images). ``annotator`` is "gt" (the
    ground truth) or "hb" (the benchmark radiologists); ``form`` "segmentations" (run-length)
    or "annotations" (polygons).

    >>> masks = read_masks("~/data/CheXlocalize", "valid")
    >>> len(masks)  # 187 in the real CheXlocalize
    2
    """
    check_choice("split", split, ("valid", "test"))
    check_choice("annotator", annotator, ANNOTATORS)
    check_choice("form", form, FORMS)
    if isinstance(source, str | os.PathLike) and str(source).lower().endswith(".json"):
        path = os.fspath(source)
        try:
            data = read_bytes(path, limit=MAX_JSON_BYTES)  # a FIFO or device is refused by name
        except FileNotFoundError:
            raise ReleaseNotFoundError(f"{path}: file not found") from None
        return Masks(path, split, annotator, form, _load_json(data, path))
    release = source if isinstance(source, Release) else open_release(source)
    file = _find_file(release, split, annotator, form)
    if file is None:
        wanted = "val" if split == "valid" else split
        raise ReleaseNotFoundError(
            f"{release.root} has no {annotator}_{form}_{wanted}.json (CheXlocalize's {form} of the {split} set); "
            "download CheXlocalize from Stanford AIMI and put it beside the release"
        )
    return Masks(file.label, split, annotator, form, _load_json(file.read(), file.label), release)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def overlay(
    image: np.ndarray,
    masks: Mapping[str, np.ndarray] | np.ndarray,
    *,
    alpha: float = 0.45,
    colors: Mapping[str, tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """An RGB uint8 picture of a grayscale image with masks blended over it and outlined.

    ``masks`` maps observations to bool arrays of the image's shape (or is one array, drawn in
    red). Each observation takes its colour from ``colors`` (default :data:`COLORS`).

    >>> picture = overlay(np.zeros((4, 4), np.uint8), {"Cardiomegaly": np.eye(4, dtype=bool)})
    >>> picture.shape, picture[0, 0].tolist(), picture[0, 1].tolist()
    ((4, 4, 3), [214, 39, 40], [0, 0, 0])
    """
    check_number("alpha", alpha, low=0, high=1)
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise InvalidArgumentError(f"image must be a 2-D uint8 array, not {image.dtype} of shape {image.shape}")
    palette = dict(COLORS if colors is None else colors)
    layers = {"mask": masks} if isinstance(masks, np.ndarray) else dict(masks)
    out = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    for name, mask in layers.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise InvalidArgumentError(f"mask of {name} has shape {mask.shape}, the image {image.shape}: resize one to the other first")
        color = np.asarray(palette.get(name, (255, 0, 0)), dtype=np.float32)
        out[mask] = out[mask] * (1 - alpha) + color * alpha
        edge = mask & ~_eroded(mask)
        out[edge] = color
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return inner


# ---------------------------------------------------------------------------------------------
# Checks for verify
# ---------------------------------------------------------------------------------------------


def check_localization(release: Release, *, sizes: bool = False) -> list[Problem]:
    """Problems of CheXlocalize's JSON files in ``release``: unreadable JSON, ids that are no
    image of the split or have no image in the download, unknown observations, damaged
    run-length strings or polygons, and (``sizes``: reads each annotated image's header) masks
    whose size is not their image's.

    >>> release = chexpert.open("~/data/CheXlocalize")
    >>> [str(p) for p in check_localization(release, sizes=True)]
    []
    """
    problems: list[Problem] = []
    present: set[str] | None = None
    for file in release.files:
        match = _FILE_NAME.match(file.name)
        if match is None:
            continue
        split = "test" if match["split"].lower() == "test" else "valid"
        form = match["form"].lower()
        try:
            entries = _load_json(file.read(), file.label)
        except AnnotationError as exc:
            problems.append(Problem("annotation", file.label, None, str(exc).removeprefix(file.label + ": ")))
            continue
        if present is None:
            present = release.list_images()[0]
        masks = Masks(file.label, split, match["annotator"].lower(), form, entries, release)
        for key, entry in entries.items():
            where = f"{key}: "
            try:
                path = image_path(key)
            except InvalidArgumentError:
                problems.append(Problem("annotation", file.label, None, f"{where}not an image id (patientNNNNN_studyN_viewN_frontal)"))
                continue
            if not path.startswith(split + "/"):
                problems.append(Problem("annotation", file.label, None, f"{where}patient is not in the {split} split"))
                continue
            if path not in present and path.replace(".jpg", ".png") not in present:
                problems.append(Problem("missing", file.label, None, f"{where}no image {path} in the download"))
                continue
            unknown = [t for t in entry if t not in TASK_NAMES and t != "img_size"]
            if unknown:
                problems.append(
                    Problem(
                        "annotation",
                        file.label,
                        None,
                        f"{where}unknown observation(s) {', '.join(map(repr, unknown))}; "
                        f"CheXlocalize's are {', '.join(t for t in TASK_NAMES if t != 'Lung Opacity')}",
                    )
                )
            for task in entry:
                if task not in TASK_NAMES:
                    continue
                try:
                    masks.mask(key, TASK_NAMES[task], check=sizes)
                except (AnnotationError, ChexpertError) as exc:
                    problems.append(Problem("annotation", file.label, None, str(exc).removeprefix(file.label + ": ")))
    return problems
