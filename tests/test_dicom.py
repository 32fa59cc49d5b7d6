"""DICOM pixels through the display chain, checked against pydicom's own LUT functions on real files."""

from __future__ import annotations

import io
import itertools
import warnings
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from chexpert import dicom, imaging
from chexpert.errors import ImageDecodeError
from chexpert.synth.dicom import TRANSFER_SYNTAXES, DicomParams, dicom_bytes, jpeg_lossless, render_dicom

FILE = "train/patient00001/study1/view1_frontal.dcm"


def _picture(h: int = 70, w: int = 52, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(x * 4 + y * 2 + rng.integers(0, 30, (h, w)), 0, 255).astype(np.uint8)


def _reference(data: bytes) -> np.ndarray:
    """pydicom's modality and VOI functions, normalised to [0, 1], MONOCHROME1 inverted: independent of chexpert.dicom."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = ds.pixel_array
    values = apply_modality_lut(stored, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        shown = apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64)
        top = 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
        shown = shown / top
    else:
        # pydicom maps the window onto the stored range run through the rescale; bring it to [0, 1].
        shown = apply_voi_lut(values, ds, index=0).astype(np.float64)
        bits = int(ds.BitsStored)
        low = -(2 ** (bits - 1)) if ds.PixelRepresentation else 0
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        y_min, y_max = low * slope + intercept, (low + 2**bits - 1) * slope + intercept
        shown = (shown - y_min) / (y_max - y_min)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        shown = 1 - shown
    return shown


_DEPTHS = [(12, False), (14, False), (15, True), (16, False), (16, True)]
_COMBINATIONS = [
    (syntax, photometric, bits, signed) for syntax, photometric, (bits, signed) in itertools.product(TRANSFER_SYNTAXES, ("MONOCHROME1", "MONOCHROME2"), _DEPTHS)
]


@pytest.mark.parametrize(("syntax", "photometric", "bits", "signed"), _COMBINATIONS)
def test_every_syntax_photometric_and_depth_matches_pydicom(syntax, photometric, bits, signed):
    picture = _picture()
    params = DicomParams(photometric=photometric, bits_stored=bits, signed=signed, syntax=syntax, slope=0.5, intercept=-1024.0)
    data = render_dicom(picture, params)
    ds = dicom.read(data, file=FILE)
    assert str(ds.file_meta.TransferSyntaxUID) == TRANSFER_SYNTAXES[syntax]
    shown = dicom.display(ds, file=FILE)
    np.testing.assert_allclose(shown, _reference(data), atol=2e-4)
    # The display gives the picture back: rescale, window and inversion undo what the writer did.
    decoded = imaging.decode(data, file=FILE)
    assert decoded.dtype == np.uint8 and np.abs(decoded.astype(int) - picture).max() <= 1


@pytest.mark.parametrize("syntax", [s for s in TRANSFER_SYNTAXES if s not in ("explicit", "implicit", "deflated")])
def test_compressed_stored_values_are_lossless(syntax):
    stored = np.random.default_rng(3).integers(-2000, 2000, (64, 48))
    data = dicom_bytes(stored, DicomParams(bits_stored=12, signed=True, syntax=syntax))
    np.testing.assert_array_equal(dicom.stored_pixels(dicom.read(data)), stored)


def test_jpeg_lossless_encoder_round_trips_every_precision():
    from pydicom.pixels import get_decoder  # noqa: F401  (the decoder plugin must be there)

    rng = np.random.default_rng(0)
    for precision in (10, 12, 16):
        samples = rng.integers(0, 2**precision, (33, 17))
        samples[0, :4] = [0, 2**precision - 1, 0, 2**precision - 1]  # the largest differences
        data = dicom_bytes(samples - 2 ** (precision - 1), DicomParams(bits_stored=precision, signed=True, syntax="jpeg-lossless"))
        np.testing.assert_array_equal(dicom.stored_pixels(dicom.read(data)).astype(np.int64) + 2 ** (precision - 1), samples)
    assert jpeg_lossless(np.zeros((1, 1), np.uint16), 12).endswith(b"\xff\xd9")


def test_voi_lut_sequence_wins_over_windows():
    picture = _picture()
    data = render_dicom(picture, DicomParams(bits_stored=12, voi_lut=True, slope=2.0, intercept=-100.0))
    ds = dicom.read(data)
    assert "VOILUTSequence" in ds and "WindowCenter" in ds
    np.testing.assert_allclose(dicom.display(ds), _reference(data), atol=2e-4)
    # Not the window: the LUT is a gamma curve, the window would be a straight line.
    assert not np.allclose(dicom.display(ds), picture / 255, atol=0.02)


def test_first_window_is_used_and_function_is_honoured():
    stored = np.arange(0, 4096, 16).reshape(16, 16)
    base = DicomParams(bits_stored=12, windows=((1000.0, 500.0), (2048.0, 4096.0)))
    shown = dicom.display(dicom.read(dicom_bytes(stored, base)))
    assert shown[stored <= 700].max() == 0 and shown[stored >= 1300].min() == 1
    for function in ("LINEAR_EXACT", "SIGMOID"):
        data = dicom_bytes(stored, DicomParams(**{**base.__dict__, "voi_function": function}))
        np.testing.assert_allclose(dicom.display(dicom.read(data)), _reference(data), atol=2e-4)


def test_no_window_uses_the_full_range():
    stored = np.arange(100, 100 + 64 * 4).reshape(16, 16)
    shown = dicom.display(dicom.read(dicom_bytes(stored, DicomParams(bits_stored=12))))
    assert shown.min() == 0 and shown.max() == 1


def test_monochrome1_is_inverted_exactly_once():
    picture = _picture()
    one = imaging.decode(render_dicom(picture, DicomParams(photometric="MONOCHROME1", bits_stored=14)))
    two = imaging.decode(render_dicom(picture, DicomParams(photometric="MONOCHROME2", bits_stored=14)))
    assert np.abs(one.astype(int) - two).max() <= 1
    assert np.abs(one.astype(int) - picture).max() <= 1  # air stays black


def test_file_without_preamble_or_meta_is_read():
    picture = _picture()
    for syntax in ("explicit", "implicit"):
        data = render_dicom(picture, DicomParams(bits_stored=12, syntax=syntax, preamble=False))
        assert data[128:132] != b"DICM"
        assert imaging.detect_format(data) == "dicom"
        assert imaging.image_info(data).format == "dicom"
        assert np.abs(imaging.decode(data).astype(int) - picture).max() <= 1


def test_resize_keeps_sixteen_bits_until_the_end():
    # A ramp over 4 of 4096 levels: converted to 8 bits first it would be flat; resized wide it is not.
    stored = np.tile(np.repeat(np.arange(2000, 2004), 16), (64, 1))
    data = dicom_bytes(stored, DicomParams(bits_stored=12, windows=((2002.0, 1024.0),)))
    small = imaging.decode_resized(data, 16, "squash")
    wide = dicom.display(dicom.read(data))
    expected = np.asarray(Image.fromarray(wide, mode="F").resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(small, np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8))


def _without_pixels() -> bytes:
    ds = dicom.read(dicom_bytes(np.zeros((8, 8), int), DicomParams()))
    del ds.PixelData
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _unsupported() -> bytes:
    ds = dicom.read(dicom_bytes(np.zeros((8, 8), int), DicomParams(syntax="rle")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder for a still image
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_without_pixels, "no Pixel Data"),
        (lambda: dicom_bytes(np.zeros((64, 64), int), DicomParams())[:-1000], "truncated"),
        (lambda: dicom_bytes(np.zeros((64, 64), int), DicomParams(syntax="rle"))[:-40], "pixel data"),
        (_unsupported, "transfer syntax"),
        (lambda: bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + bytes(20), "DICOM"),
    ],
)
def test_bad_dicom_is_named(make, fragment):
    data = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageDecodeError, match=fragment) as caught:
            imaging.decode(data, file=FILE)
    assert caught.value.file == FILE and str(caught.value).startswith(FILE)


def test_header_columns_present_and_absent():
    data = render_dicom(_picture(), DicomParams(modality="DX", bits_stored=14), header={"KVP": "110", "ViewPosition": "PA"})
    columns = dicom.header(dicom.read(data, stop_before_pixels=True))
    assert len(dicom.PLUS_ELEMENTS) == 47 == len(set(dicom.PLUS_ELEMENTS))
    assert columns["Modality"] == "DX" and columns["KVP"] == "110" and columns["BitsStored"] == "14"
    assert columns["Grid"] == "" and columns["WindowCenter"].count("\\") == 1


def test_sixteen_bit_png_is_scaled_never_clipped():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    assert imaging.image_info(buffer.getvalue()).bits == 16
    assert imaging.decode(buffer.getvalue()).tolist() == [[0, 1, 128, 255]]


def test_voi_lut_with_a_negative_first_value_in_implicit_vr():
    # Implicit VR cannot say the LUT Descriptor's first value is SS: read as US it is 65536 too big.
    picture = _picture()
    params = DicomParams(bits_stored=12, voi_lut=True, slope=0.5, intercept=-1024.0)
    explicit = dicom.display(dicom.read(render_dicom(picture, replace(params, syntax="explicit"))))
    implicit = dicom.display(dicom.read(render_dicom(picture, replace(params, syntax="implicit"))))
    assert dicom.read(render_dicom(picture, replace(params, syntax="implicit"))).VOILUTSequence[0].LUTDescriptor[1] > 32767
    np.testing.assert_array_equal(explicit, implicit)
