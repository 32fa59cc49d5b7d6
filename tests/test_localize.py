"""CheXlocalize masks: COCO run-length codec, polygons, alignment with images, overlays on the look-alike."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import chexpert
from chexpert import imaging, schema, synth
from chexpert.errors import AnnotationError
from chexpert.localize import LOCALIZED_OBSERVATIONS, Masks, decode_rle, encode_rle, image_id, image_path, overlay, rasterize, read_masks
from chexpert.verify import verify

LOCALIZE = "CheXlocalize"


@pytest.fixture(scope="module")
def root(look_alike: Callable[..., Path]) -> Path:
    """A look-alike CheXlocalize (read-only by convention: copy before damaging it)."""
    return look_alike(release="test", patients=8, seed=11)  # the values test_mask_pixels_land_on_the_finding redraws


def random_masks(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    out = []
    for k in range(count):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if k % 3 == 0:
            mask = rng.random((h, w)) < rng.random()
        else:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h) : rng.integers(0, h + 1), rng.integers(0, w) :] = True
        out.append(mask)
    big = np.zeros((2828, 2320), bool)
    big[900:2100, 400:1900] = True
    big[3:5, 7:2300] = True  # long runs need several characters each, some negative differences
    return [*out, big]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and numpy 2's copy keyword
def test_run_length_strings_match_pycocotools_byte_for_byte() -> None:
    coco = pytest.importorskip("pycocotools.mask")
    for mask in random_masks(np.random.default_rng(0), 150):
        theirs = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = encode_rle(mask)
        assert ours["counts"] == theirs["counts"].decode() and ours["size"] == list(theirs["size"])
        assert (decode_rle({"size": theirs["size"], "counts": theirs["counts"].decode()}) == mask).all()
        assert (coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}) == mask).all()


def test_uncompressed_counts_and_damaged_strings() -> None:
    assert decode_rle({"size": [2, 2], "counts": [0, 4]}).all()
    good = encode_rle(np.eye(30, dtype=bool))
    for bad, message in (
        ({**good, "counts": good["counts"][:-1] + "\x7f"}, "outside COCO's alphabet"),
        ({**good, "counts": good["counts"] + "a"}, "truncated"),
        ({**good, "size": [30, 31]}, "runs cover 900 pixels, but size 30x31 has 930"),
        ({**good, "counts": [5, -1, 896]}, "negative run length"),
        ({"size": [30], "counts": "0"}, "size must be"),
        ({"counts": "0"}, "needs 'size' and 'counts'"),
        ({"size": [100000, 100000], "counts": "0"}, "larger than any chest radiograph"),
    ):
        with pytest.raises(ValueError, match=message):
            decode_rle(bad)


def test_polygons_fill_like_chexlocalize() -> None:
    square = rasterize([[[1, 1], [3, 1], [3, 3], [1, 3]]], (5, 6))
    assert square.shape == (5, 6) and square[1:4, 1:4].all() and square.sum() == 9
    with pytest.raises(ValueError, match="at least 3 points"):
        rasterize([[[1, 1], [2, 2]]], (5, 5))


def test_image_ids() -> None:
    assert image_id("CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg") == "patient64541_study1_view1_frontal"
    assert image_path("patient64541_study1_view1_frontal") == "valid/patient64541/study1/view1_frontal.jpg"
    assert image_path(image_id("test/patient65240/study1/view2_lateral.jpg")) == "test/patient65240/study1/view2_lateral.jpg"


def test_masks_read_back_aligned_and_named_as_chexpert(root: Path) -> None:
    release = chexpert.open(root)
    raw = json.loads((root / LOCALIZE / "gt_segmentations_test.json").read_text())
    assert all(set(entry) == {"Airspace Opacity", *(o for o in LOCALIZED_OBSERVATIONS if o != "Lung Opacity")} for entry in raw.values())
    masks = read_masks(release, "test")
    polygons = read_masks(release, "test", form="annotations")
    test = release.index("test")
    labels = {image_id(str(p)): row for p, row in zip(test.path.tolist(), test.labels)}
    assert 0 < len(masks) < len(test)  # like CheXlocalize, some images have no outlines
    seen: set[str] = set()
    for key in masks.images:
        found = masks.observations(key)
        positive = {o for o in LOCALIZED_OBSERVATIONS if labels[key][schema.OBSERVATIONS.index(o)] == 1}
        assert set(found) <= positive  # outlines only where the truth is positive
        for observation in LOCALIZED_OBSERVATIONS:
            mask = masks.mask(key, observation)  # checks the size against the image
            assert mask.any() == (observation in found)
            assert (mask == polygons.mask(key, observation)).all()  # segmentations are the filled polygons
        seen |= set(found)
    assert {"Lung Opacity", "Support Devices"} <= seen


def test_mask_pixels_land_on_the_finding(root: Path) -> None:
    release = chexpert.open(root)
    masks = read_masks(release, "test")
    rows = {image_id(r["Path"]): r for r in synth.synth_rows("test", patients=8, seed=11, release="full")}
    checked = 0
    for key in masks.images:
        for observation in masks.observations(key):
            if observation in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
                continue  # outlined as the whole shadow, of which the finding changes the rim
            row = dict(rows[key])
            without = {**row, observation: "0.0"}
            drawn = synth.render_pixels(row, seed=11, release="full").astype(np.int16)
            plain = synth.render_pixels(without, seed=11, release="full").astype(np.int16)
            changed = np.abs(drawn - plain) > 12
            mask = masks.mask(key, observation)
            assert (changed & mask).sum() / changed.sum() > 0.8, (key, observation)
            # The overlay colours the finding and leaves the rest of the picture grey.
            picture = masks.overlay(key, [observation])
            image = imaging.decode(release.read_bytes(image_path(key)))
            assert picture.shape == (*image.shape, 3)
            outside = picture[~mask]
            assert (outside == image[~mask][:, None]).all()
            tint = picture[mask].astype(int)
            assert (np.ptp(tint, axis=1) > 20).mean() > 0.9
            checked += 1
    assert checked >= 3


def test_a_mask_whose_size_disagrees_with_its_image_is_named(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = copy / LOCALIZE / "gt_segmentations_test.json"
    entries = json.loads(path.read_text())
    key = next(k for k, entry in entries.items() if "Support Devices" in entry and len(entry["Support Devices"]["counts"]) > 2)
    mask = decode_rle(entries[key]["Support Devices"])
    entries[key]["Support Devices"] = encode_rle(mask.T)  # a transposed mask: the size field says width x height
    path.write_text(json.dumps(entries))
    masks = read_masks(copy, "test")
    with pytest.raises(AnnotationError, match=rf"gt_segmentations_test\.json: {key}, Support Devices: mask size .* \(height and width swapped\)"):
        masks.mask(key, "Support Devices")
    assert masks.mask(key, "Support Devices", check=False).shape == mask.T.shape
    # verify --decode reads the image sizes; without decode the file is only parsed.
    assert verify(copy).ok
    problems = verify(copy, decode=True, workers=1).problems
    assert [(Path(p.file).name, p.kind) for p in problems] == [("gt_segmentations_test.json", "annotation")]
    assert key in problems[0].message and "swapped" in problems[0].message


def test_damaged_json_is_reported_by_verify(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = copy / LOCALIZE / "gt_segmentations_val.json"
    entries = json.loads(path.read_text())
    key = next(iter(entries))
    entries[key]["Lung Nodule"] = entries[key]["Edema"]
    entries[key]["Edema"] = {**entries[key]["Edema"], "counts": "\x7f"}
    entries["patient64700_study1_view1_frontal"] = entries[key]
    path.write_text(json.dumps(entries))
    (copy / LOCALIZE / "gt_annotations_val.json").write_text("{not json")
    messages = sorted(f"{Path(p.file).name}: {p.message}" for p in verify(copy).problems)
    assert any("gt_annotations_val.json: not readable as JSON" in m for m in messages)
    assert any(f"{key}: unknown observation(s) 'Lung Nodule'" in m for m in messages)
    assert any(f"{key}, Edema: counts holds characters outside" in m for m in messages)
    assert any("patient64700_study1_view1_frontal: no image valid/patient64700" in m for m in messages)


def test_masks_from_a_json_file_alone(root: Path) -> None:
    masks = read_masks(root / LOCALIZE / "gt_segmentations_val.json", "valid")
    assert isinstance(masks, Masks) and masks.release is None
    key = masks.images[0]
    assert masks.mask(key, "Edema").ndim == 2
    with pytest.raises(KeyError, match="patient64740_study1_view1_frontal has no gt segmentations"):
        masks.mask("valid/patient64740/study1/view1_frontal.jpg", "Edema")
    with pytest.raises(ValueError, match="unknown localized observation 'Fracture'"):
        masks.mask(key, "Fracture")


def test_overlay_arguments() -> None:
    image = np.full((4, 5), 100, np.uint8)
    with pytest.raises(ValueError, match=r"mask of Edema has shape \(5, 4\), the image \(4, 5\)"):
        overlay(image, {"Edema": np.ones((5, 4), bool)})
    with pytest.raises(ValueError, match="alpha must be a number in"):
        overlay(image, np.ones((4, 5), bool), alpha=2)
    assert (overlay(image, np.zeros((4, 5), bool)) == 100).all()


def test_damaged_masks_raise_the_package_error_not_a_bare_value_error():
    """Catching ChexpertError is enough: decode_rle and rasterize raise InvalidArgumentError."""
    from chexpert.errors import ChexpertError
    from chexpert.localize import decode_rle, rasterize

    with pytest.raises(ChexpertError, match="outside COCO's alphabet"):
        decode_rle({"size": [2, 2], "counts": "\x7f"})
    with pytest.raises(ChexpertError, match="at least 3 points"):
        rasterize([[[0, 0], [1, 1]]], [4, 4])
