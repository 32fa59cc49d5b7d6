"""DICOM presentation values that would silently give a black or uniform image.

Non-finite rescale values, malformed or empty Modality and VOI LUTs are an ImageDecodeError naming
the file (a ChexpertError), from ``imaging.decode`` and ``dicom.display`` alike; a first window
that is no finite number is ignored and the full range shown, as for a file without a window.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pydicom
import pytest

from chexpert import dicom, imaging
from chexpert.errors import ChexpertError, ImageDecodeError
from chexpert.synth.dicom import DicomParams, dicom_bytes

FILE = "train/patient00001/study1/view1_frontal.dcm"
_STORED = np.arange(64 * 64).reshape(64, 64) % 4096


def _file(change: Callable[[Any], None], **params: Any) -> bytes:
    ds = dicom.read(dicom_bytes(_STORED, DicomParams(**params)))
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the very values under test
        change(ds)
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _modality_lut(descriptor: list[int], data: bytes) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        item = pydicom.Dataset()
        item.LUTDescriptor = descriptor
        item.ModalityLUTType = "US"
        item.LUTData = data
        ds.ModalityLUTSequence = pydicom.Sequence([item])

    return change


def _set(item: str, keyword: str, value: Any) -> Callable[[Any], None]:
    def change(ds: Any) -> None:
        target = ds.VOILUTSequence[0] if item == "voi" else ds
        if value is None:
            delattr(target, keyword)
        else:
            setattr(target, keyword, value)

    return change


def _all_zero_voi(ds: Any) -> None:
    ds.VOILUTSequence[0].LUTData = bytes(len(ds.VOILUTSequence[0].LUTData))


VOI: dict[str, Any] = {"voi_lut": True, "windows": ((2000.0, 3000.0),)}  # DicomParams keywords, as BROKEN holds them
BROKEN: dict[str, tuple[Callable[[Any], None], dict[str, Any], str]] = {
    "NaN slope": (_set("ds", "RescaleSlope", "NaN"), {}, r"RescaleSlope is not a finite number \(nan\)"),
    "infinite slope": (_set("ds", "RescaleSlope", "-inf"), {}, r"RescaleSlope is not a finite number \(-inf\)"),
    "NaN intercept": (_set("ds", "RescaleIntercept", "nan"), {}, r"RescaleIntercept is not a finite number"),
    "slope beyond float32": (_set("ds", "RescaleSlope", "1e39"), {}, r"RescaleSlope is not a finite number"),
    "rescale beyond float32": (_set("ds", "RescaleSlope", "1e38"), {}, "takes values beyond float32"),
    "empty VOI LUT": (_set("voi", "LUTData", b""), VOI, r"VOI LUT is empty \(no LUT Data\)"),
    "all-zero VOI LUT": (_all_zero_voi, VOI, "VOI LUT maps every value to 0"),
    "VOI LUT without data": (_set("voi", "LUTData", None), VOI, "VOI LUT lacks its LUT Data"),
    "VOI LUT without descriptor": (_set("voi", "LUTDescriptor", None), VOI, "VOI LUT lacks its LUT Descriptor"),
    "VOI LUT descriptor of two values": (_set("voi", "LUTDescriptor", [4096, 0]), VOI, "Descriptor holds 2 values; it needs 3"),
    "VOI LUT of 0 bits": (_set("voi", "LUTDescriptor", [4096, 0, 0]), VOI, "declares 0 bits per entry"),
    "VOI LUT of 64 bits": (_set("voi", "LUTDescriptor", [4096, 0, 64]), VOI, "declares 64 bits per entry"),
    "empty Modality LUT": (_modality_lut([0, 0, 16], b""), {}, r"Modality LUT is empty"),
    "uniform Modality LUT": (_modality_lut([4, 0, 16], bytes(8)), {}, "Modality LUT maps every value to 0"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_values_that_would_give_a_uniform_image_are_named(case: str) -> None:
    """Before: each decoded to an all-black (or all-white, or all-grey) image without a word, or
    let ValueError/AttributeError escape from dicom.display."""
    change, params, message = BROKEN[case]
    data = _file(change, **params)
    with pytest.raises(ImageDecodeError, match=message) as caught:
        imaging.decode(data, file=FILE)
    assert caught.value.file == FILE
    with pytest.raises(ChexpertError, match=message) as shown:
        dicom.display(dicom.read(data), file=FILE)
    assert str(shown.value).startswith(f"{FILE}: ")


@pytest.mark.parametrize(("center", "width"), [("NaN", "400"), ("2000", "inf"), ("1e39", "400"), ("2000", "-inf")])
def test_a_window_that_is_no_finite_number_is_ignored_for_the_full_range(center: str, width: str) -> None:
    def set_window(ds: Any) -> None:
        ds.WindowCenter, ds.WindowWidth = center, width

    windowed = _file(set_window, windows=((2000.0, 3000.0),))
    plain = _file(lambda ds: None)  # no window at all
    full = imaging.decode(plain)
    assert full.min() == 0 and full.max() == 255  # not uniform
    np.testing.assert_array_equal(imaging.decode(windowed, file=FILE), full)


def test_a_window_that_is_no_number_is_ignored() -> None:
    values = np.array([0.0, 50.0, 100.0], np.float32)
    for center, width in (("abc", "10"), ("50", b"\xff"), (None, "10"), ([], [])):
        assert dicom.voi({"WindowCenter": center, "WindowWidth": width}, values).tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("error", [ValueError, AttributeError, OverflowError, TypeError, IndexError])
def test_display_wraps_whatever_a_malformed_element_raises(monkeypatch: pytest.MonkeyPatch, error: type[Exception]) -> None:
    data = dicom_bytes(_STORED, DicomParams(**VOI))

    def broken(item: Any) -> np.ndarray:
        raise error("as a malformed element makes pydicom or numpy raise")

    monkeypatch.setattr(dicom, "_lut_data", broken)
    with pytest.raises(ImageDecodeError, match=f"{FILE}: malformed DICOM presentation elements"):
        dicom.display(dicom.read(data), file=FILE)


def test_sound_presentation_values_still_decode() -> None:
    for params in ({}, VOI, {"slope": 2.0, "intercept": -1024.0}, {"windows": ((2000.0, 3000.0),), "voi_function": "SIGMOID"}):
        image = imaging.decode(dicom_bytes(_STORED, DicomParams(**params)), file=FILE)
        assert image.shape == (64, 64) and image.max() > image.min()
