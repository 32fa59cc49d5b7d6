"""Decoding by the bytes, not the name; every damaged or unexpected image is a named error."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from chexpert import imaging
from chexpert.errors import ImageDecodeError


def _gradient(h: int = 390, w: int = 320) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 255 // (w - 1) + y * 0) % 256).astype(np.uint8)


def _jpeg(image: np.ndarray, **kwargs: Any) -> bytes:
    return simplejpeg.encode_jpeg(image[:, :, None], quality=95, colorspace="GRAY", **kwargs)


def _png(image: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    img = Image.fromarray(image)
    if mode:
        img = img.convert(mode)
    img.save(buffer, "PNG")
    return buffer.getvalue()


def test_grayscale_jpeg_round_trip():
    image = _gradient()
    decoded = imaging.decode(_jpeg(image))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 2


def test_format_is_told_by_bytes_not_name():
    image = _gradient()
    png = _png(image)
    assert imaging.detect_format(png, file="view1_frontal.jpg") == "png"
    np.testing.assert_array_equal(imaging.decode(png, file="view1_frontal.jpg"), image)
    info = imaging.image_info(_jpeg(image))
    assert (info.format, info.width, info.height, info.channels, info.bits) == ("jpeg", 320, 390, 1, 8)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"GIF89a" + bytes(100), "not a JPEG, PNG or DICOM"),
    ],
)
def test_empty_and_foreign_files(data, fragment):
    with pytest.raises(ImageDecodeError, match=fragment) as caught:
        imaging.decode(data, file="train/patient00001/study1/view1_frontal.jpg")
    assert caught.value.file == "train/patient00001/study1/view1_frontal.jpg"
    assert "view1_frontal.jpg" in str(caught.value)


def test_truncated_and_corrupt_jpeg():
    data = _jpeg(_gradient())
    with pytest.raises(ImageDecodeError, match="x.jpg"):
        imaging.decode(data[: len(data) // 2], file="x.jpg")
    corrupt = bytearray(data)
    corrupt[200:260] = bytes(60)  # zeroed tables
    with pytest.raises(ImageDecodeError):
        imaging.decode(bytes(corrupt[:400]), file="x.jpg")


@pytest.mark.parametrize(("mode", "channels"), [("RGBA", 4), ("RGB", 3), ("LA", 2)])
def test_colour_and_alpha_are_refused_unless_converted(mode, channels):
    image = _gradient()
    data = _png(image, mode)
    assert imaging.image_info(data).channels == channels
    with pytest.raises(ImageDecodeError, match=f"{channels} channels"):
        imaging.decode(data, file="a.png")
    np.testing.assert_array_equal(imaging.decode(data, convert=True), image)


def test_sixteen_bit_grayscale_png_is_scaled_not_refused():
    # CheXpert Plus ships some 16-bit PNGs: accepted as they are, scaled (never clipped) to 8 bits.
    image = _gradient()
    data = _png(image.astype(np.uint16) * 257)
    info = imaging.image_info(data)
    assert info.bits == 16 and not info.grayscale8
    np.testing.assert_array_equal(imaging.decode(data), image)
    np.testing.assert_array_equal(imaging.decode(data, convert=True), image)
    rgba = _png(np.zeros((4, 4), np.uint8), "RGBA")
    with pytest.raises(ImageDecodeError, match="4 channels"):
        imaging.decode(rgba)


def test_colour_jpeg_reported_by_header():
    rgb = np.repeat(_gradient()[:, :, None], 3, axis=2)
    data = simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB")
    assert imaging.image_info(data).channels == 3
    with pytest.raises(ImageDecodeError, match="3 channels"):
        imaging.decode(data)
    assert imaging.decode(data, convert=True).ndim == 2


def test_resize_pad_keeps_aspect_with_black_bars():
    image = np.full((400, 200), 200, np.uint8)
    out = imaging.resize(image, 100, "pad")
    assert out.shape == (100, 100)
    assert (out[:, :25] == 0).all() and (out[:, 75:] == 0).all()
    assert (out[:, 26:74] == 200).all()


def test_resize_crop_takes_the_centre():
    image = np.zeros((400, 200), np.uint8)
    image[100:300] = 255  # the centre square is white
    out = imaging.resize(image, 100, "crop")
    assert out.shape == (100, 100) and out[1:-1].min() == 255 and out.mean() > 250


def test_resize_squash_stretches():
    image = np.zeros((400, 200), np.uint8)
    image[:200] = 255
    out = imaging.resize(image, 100, "squash")
    assert out.shape == (100, 100)
    assert out[:45].min() == 255 and out[55:].max() == 0


def test_resize_is_antialiased():
    """A one-pixel checkerboard averages to grey instead of aliasing to black or white."""
    board = (np.indices((320, 320)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = imaging.resize(board, 40, "squash")
    assert 100 < out.mean() < 155 and out.std() < 20


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("release", ["small", "full"])
def test_shrinking_agrees_with_pillows_antialiased_resize_on_radiographs(release, small_release, tmp_path):
    """OpenCV's INTER_AREA (after DCT-domain downscaling for full-resolution JPEGs) against
    Pillow's Lanczos on the full decode, on look-alike radiographs: close, and much closer than
    point sampling (so the comparison can tell an aliased resize)."""
    from chexpert.release import open_release
    from chexpert.synth import synthesize

    root = small_release if release == "small" else synthesize(tmp_path, release="full", patients=1, seed=3, valid_patients=0)
    index = open_release(root).index("train")
    images = [open_release(root).read_bytes(str(p)) for p in index.path[:6]]
    for data in images:
        full = imaging.decode(data)
        for mode, box in (("squash", (320, 320)), ("pad", None)):
            ours = imaging.decode_resized(data, 320, mode)
            if box is None:  # compare the picture, not the bars
                h, w = full.shape
                box = (round(w * 320 / max(h, w)), round(h * 320 / max(h, w)))
                top, left = (320 - box[1]) // 2, (320 - box[0]) // 2
                ours = ours[top : top + box[1], left : left + box[0]]
            lanczos = np.asarray(Image.fromarray(full).resize(box, Image.Resampling.LANCZOS))
            nearest = np.asarray(Image.fromarray(full).resize(box, Image.Resampling.NEAREST))
            assert _psnr(ours, lanczos) > 39, (release, mode)
            assert _psnr(ours, lanczos) > _psnr(nearest, lanczos) + 3, (release, mode)


def test_resize_is_deterministic_and_writes_in_place():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    image = (rng.random((390, 320)) * 255).astype(np.uint8)
    threads = cv2.getNumThreads()
    try:
        results = []
        for n in (1, 4):
            cv2.setNumThreads(n)
            results.append([imaging.resize(image, size, mode).tobytes() for size in (224, 320, 512) for mode in imaging.RESIZE_MODES])
    finally:
        cv2.setNumThreads(threads)
    assert results[0] == results[1]
    out = np.full((224, 224), 7, np.uint8)
    assert imaging.resize(image, 224, "pad", out=out) is out and (out[:, :10] == 0).all() and out.tobytes() == results[0][0]
    with pytest.raises(ValueError, match=r"out must be a \(224, 224\) uint8 array"):
        imaging.resize(image, 224, out=np.zeros((224, 224), np.float32))


@pytest.mark.parametrize("mode", imaging.RESIZE_MODES)
def test_decode_resized_matches_decode_then_resize(mode):
    """DCT-domain downscaling changes pixels only slightly compared with the full decode."""
    rng = np.random.default_rng(0)
    smooth = np.asarray(Image.fromarray((rng.random((60, 50)) * 255).astype(np.uint8)).resize((2000, 2400), Image.Resampling.BICUBIC))
    data = _jpeg(smooth)
    fast = imaging.decode_resized(data, 224, mode)
    slow = imaging.resize(imaging.decode(data), 224, mode)
    assert fast.shape == slow.shape == (224, 224)
    assert np.abs(fast.astype(int) - slow).mean() < 3


def test_bad_arguments_list_valid_values():
    with pytest.raises(ValueError, match="pad, crop, squash"):
        imaging.resize(np.zeros((4, 4), np.uint8), 2, "stretch")


def test_dicom_is_windowed_to_uint8(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    pixels = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) % 4096
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    data = (tmp_path / "x.dcm").read_bytes()
    assert imaging.detect_format(data) == "dicom"
    info = imaging.image_info(data)
    assert (info.width, info.height, info.bits) == (48, 64, 12)
    out = imaging.decode(data)
    assert out.dtype == np.uint8 and out.shape == (64, 48)
    # MONOCHROME1: the largest value is displayed black.
    assert out.flat[int(np.argmax(pixels))] == 0 and out.flat[int(np.argmin(pixels))] == 255
    assert pydicom.__version__


def test_a_header_declaring_gigapixels_is_refused_before_decoding() -> None:
    import struct

    from chexpert.imaging import MAX_PIXELS, decode_resized

    small = simplejpeg.encode_jpeg(np.zeros((16, 16, 1), np.uint8), colorspace="GRAY")
    sof = small.index(b"\xff\xc0")  # baseline frame header: precision, height, width
    bomb = small[: sof + 5] + struct.pack(">HH", 65000, 65000) + small[sof + 9 :]
    assert 65000 * 65000 > MAX_PIXELS
    with pytest.raises(ImageDecodeError, match="declares 65000x65000 pixels"):
        decode_resized(bomb, 320, "pad", file="bomb.jpg")
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 70000, 70000, 8, 0, 0, 0, 0) + bytes(4)
    with pytest.raises(ImageDecodeError, match="declares 70000x70000"):
        decode_resized(png, None, file="bomb.png")


def test_a_file_that_is_no_image_is_named_without_quoting_its_bytes() -> None:
    from chexpert.imaging import decode

    with pytest.raises(ImageDecodeError) as raised:
        decode(b"secret: hunter2", file="x.jpg")
    assert "x.jpg" in str(raised.value) and "hunter2" not in str(raised.value) and "73 65" not in str(raised.value)
