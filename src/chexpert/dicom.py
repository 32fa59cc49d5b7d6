"""DICOM pixels as a radiologist sees them, and DICOM header elements as index columns.

The display pipeline follows PS3.4's grayscale standard display chain, in this order:

1. stored values, signed where Pixel Representation says so (pydicom decodes the transfer syntax:
   native, deflated, RLE, JPEG Lossless, JPEG-LS and JPEG 2000 through the pylibjpeg plugins);
2. the modality transform: Modality LUT Sequence when present, else Rescale Slope and Intercept;
3. the VOI transform: the VOI LUT Sequence when present, else the *first* Window Center/Width pair
   (LINEAR, LINEAR_EXACT or SIGMOID as VOI LUT Function says), else the full range of the image;
4. MONOCHROME1 inverted, exactly once, so that air is black in every output.

Values stay in float32 (exact for 16-bit samples) until :mod:`chexpert.imaging` resizes and
makes the one final conversion to uint8. Files without the 128-byte preamble or without file
meta information are read (``force``); damaged, truncated or undecodable pixel data is an
:class:`~chexpert.errors.ImageDecodeError` naming the file.

>>> from chexpert.synth.dicom import dicom_bytes
>>> data = dicom_bytes(np.full((4, 4), 100, np.uint16), bits_stored=12)
>>> display(read(data)).shape
(4, 4)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from chexpert.errors import ImageDecodeError
from chexpert.validation import check_pixel_count

__all__ = [
    "PLUS_ELEMENTS",
    "read",
    "stored_pixels",
    "modality",
    "voi",
    "display",
    "header",
    "looks_like_dicom",
]

#: The header elements CheXpert Plus describes its DICOMs by (47 keywords), extracted into index
#: columns by :func:`header`. Reconstructed from the public description of the release (the
#: acquisition, pixel and presentation attributes kept after de-identification); absent elements
#: are tolerated, so the list is a superset to look for, not a schema to enforce.
PLUS_ELEMENTS: Final[tuple[str, ...]] = (
    "Modality", "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "BodyPartExamined",
    "ViewPosition", "PatientOrientation", "ImageType", "SeriesDescription", "StudyDescription",
    "ProtocolName", "PatientSex", "PatientAge", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PixelSpacing", "ImagerPixelSpacing", "RescaleIntercept", "RescaleSlope", "RescaleType",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "WindowCenterWidthExplanation",
    "PresentationLUTShape", "LossyImageCompression", "BurnedInAnnotation", "KVP", "ExposureTime",
    "XRayTubeCurrent", "Exposure", "ExposureInuAs", "ExposureIndex", "TargetExposureIndex",
    "DeviationIndex", "RelativeXRayExposure", "DistanceSourceToDetector", "DistanceSourceToPatient",
    "EstimatedRadiographicMagnificationFactor", "Grid", "DetectorType",
)  # fmt: skip

_PIXEL_DATA_TAG: Final = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_NO_PIXELS_HINT = "install the DICOM codecs: pip install 'chexpert[dicom]' (pydicom, pylibjpeg, pylibjpeg-libjpeg, -openjpeg, -rle)"


def _pydicom() -> Any:
    try:
        import pydicom
    except ModuleNotFoundError:
        raise ImageDecodeError("DICOM support needs pydicom: pip install 'chexpert[dicom]'") from None
    return pydicom


def looks_like_dicom(data: bytes) -> bool:
    """Whether ``data`` is DICOM: the ``DICM`` magic after the preamble, or a bare data set
    (no preamble, no file meta) starting with a group 0002 or 0008 element.

    >>> looks_like_dicom(bytes(128) + b"DICM"), looks_like_dicom(b"\\x08\\x00\\x05\\x00CS\\x0a\\x00")
    (True, True)
    """
    if data[128:132] == b"DICM":
        return True
    if len(data) < 8 or data[:2] not in (b"\x02\x00", b"\x08\x00") or data[3] != 0:
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    length = int.from_bytes(data[4:8], "little")  # implicit VR: a plausible element length
    return length < 1 << 16


def read(data: bytes, *, file: str | None = None, stop_before_pixels: bool = False) -> Any:
    """Parse DICOM bytes into a pydicom Dataset, with or without preamble and file meta.

    A data set without file meta gets the Transfer Syntax it was read with, so that its pixel
    data (necessarily native) can be decoded.

    >>> read(open("view1_frontal.dcm", "rb").read()).Modality  # doctest: +SKIP
    'CR'
    """
    pydicom = _pydicom()
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # noqa: BLE001  (pydicom raises many types for one condition: bad bytes)
        raise ImageDecodeError(f"unreadable DICOM: {exc}", file=file) from None
    if not stop_before_pixels and "PixelData" not in dataset and _PIXEL_DATA_TAG in data:
        # pydicom drops an element the file ends inside of (with a logged warning only).
        raise ImageDecodeError("truncated or damaged pixel data: the file ends inside the Pixel Data element", file=file)
    meta = dataset.file_meta
    if "TransferSyntaxUID" not in meta:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = dataset.original_encoding
        if little is False:
            from pydicom.uid import ExplicitVRBigEndian

            meta.TransferSyntaxUID = ExplicitVRBigEndian
        else:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    return dataset


def stored_pixels(dataset: Any, *, file: str | None = None) -> np.ndarray:
    """The stored values of a one-frame grayscale image (signed per Pixel Representation).

    >>> stored_pixels(read(data)).dtype  # doctest: +SKIP
    dtype('uint16')
    """
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise ImageDecodeError("DICOM has no Pixel Data element (a header-only or structured-report file?)", file=file)
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if keyword not in dataset:
            raise ImageDecodeError(f"DICOM lacks {keyword}, which decoding the pixel data needs", file=file)
    check_pixel_count(int(dataset.Rows), int(dataset.Columns), file=file)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise ImageDecodeError(f"DICOM has {samples} samples per pixel; chest radiographs are grayscale (1)", file=file)
    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        pixels = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        name = getattr(syntax, "name", str(syntax))
        raise ImageDecodeError(f"cannot decode pixel data in transfer syntax {name} ({syntax}): {exc}; {_NO_PIXELS_HINT}", file=file) from None
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt data surfaces as ValueError, EOFError, codec errors...)
        raise ImageDecodeError(f"damaged or truncated pixel data: {exc}", file=file) from None
    if pixels.ndim != 2:
        raise ImageDecodeError(f"DICOM pixel data has shape {pixels.shape}; expected one grayscale frame", file=file)
    return pixels


def modality(dataset: Any, stored: np.ndarray) -> np.ndarray:
    """The modality transform: Modality LUT Sequence if present, else rescale slope and intercept (float32).

    >>> modality({"RescaleSlope": 2, "RescaleIntercept": -10}, np.array([5])).tolist()
    [0.0]
    """
    sequence = dataset.get("ModalityLUTSequence")
    if sequence:
        return _lut(sequence[0], stored)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    out = stored.astype(np.float32)
    if slope != 1:
        out *= np.float32(slope)
    if intercept != 0:
        out += np.float32(intercept)
    return out


def voi(dataset: Any, values: np.ndarray) -> np.ndarray:
    """The VOI transform onto [0, 1]: VOI LUT Sequence, else the first window, else the full range.

    >>> voi({}, np.array([0.0, 50.0, 100.0], np.float32)).tolist()
    [0.0, 0.5, 1.0]
    """
    sequence = dataset.get("VOILUTSequence")
    if sequence:
        item = sequence[0]
        lut = _lut(item, values)
        bits = int(_values(item.LUTDescriptor)[2])
        top = max(float(2**bits - 1), float(_lut_data(item).max()))
        return lut / np.float32(top)
    center, width = _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function == "SIGMOID":
            return (1.0 / (1.0 + np.exp(-4.0 * (values - np.float32(center)) / np.float32(width)))).astype(np.float32)
        if function == "LINEAR_EXACT":
            out = (values - np.float32(center)) / np.float32(width) + np.float32(0.5)
            return np.clip(out, 0, 1, out=out)
        if width >= 1:
            # PS3.3 C.11.2.1.2.1: the linear function, with its half-pixel offsets.
            out = (values - np.float32(center - 0.5)) / np.float32(width - 1 if width > 1 else 1) + np.float32(0.5)
            low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
            out[values <= low] = 0
            out[values > high] = 1
            return np.clip(out, 0, 1, out=out)
    low, high = float(values.min()), float(values.max())
    return (values - np.float32(low)) / np.float32(max(high - low, 1e-6))


def display(dataset: Any, *, file: str | None = None) -> np.ndarray:
    """The image as displayed, float32 in [0, 1] with 0 black: modality, VOI, MONOCHROME1 inverted.

    >>> display(read(data)).dtype  # doctest: +SKIP
    dtype('float32')
    """
    stored = stored_pixels(dataset, file=file)
    shown = voi(dataset, modality(dataset, stored))
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "MONOCHROME1":
        shown = np.float32(1) - shown
    elif photometric not in ("MONOCHROME2", ""):
        raise ImageDecodeError(f"DICOM photometric interpretation {photometric} is not grayscale", file=file)
    return np.ascontiguousarray(shown, dtype=np.float32)


def header(dataset: Any, elements: Sequence[str] = PLUS_ELEMENTS) -> dict[str, str]:
    """The named top-level elements as strings ("" where absent), multi-values joined by ``\\``.

    >>> header(read(data))["Modality"]  # doctest: +SKIP
    'CR'
    """
    out = {}
    for keyword in elements:
        value = dataset.get(keyword)
        if value is None or value == "":
            out[keyword] = ""
        elif isinstance(value, str | bytes):
            out[keyword] = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        elif hasattr(value, "__iter__"):
            out[keyword] = "\\".join(str(v) for v in value)
        else:
            out[keyword] = str(value)
    return out


def transfer_syntax(dataset: Any) -> str:
    """The data set's Transfer Syntax UID ("" when unknown)."""
    return str(dataset.file_meta.get("TransferSyntaxUID", ""))


# -- helpers -------------------------------------------------------------------------------------


def _values(value: Any) -> list[float]:
    if value is None:
        return []
    if isinstance(value, str | bytes | int | float):
        return [float(value)]
    return [float(v) for v in value]


def _first(value: Any) -> float | None:
    values = _values(value)
    return values[0] if values else None


def _lut_data(item: Any) -> np.ndarray:
    data = item.LUTData
    if isinstance(data, bytes):
        return np.frombuffer(data, dtype="<u2" if len(data) % 2 == 0 else np.uint8).astype(np.float32)
    return np.asarray(data if hasattr(data, "__len__") else [data], dtype=np.float32)


def _lut(item: Any, values: np.ndarray) -> np.ndarray:
    """Look ``values`` up in a LUT item (descriptor: entries, first value mapped, bits)."""
    entries, first, _ = _values(item.LUTDescriptor)
    if first >= 32768 and float(values.min()) < 0:
        # Written as SS but read as US (implicit VR cannot tell): the first value mapped is negative.
        first -= 65536
    table = _lut_data(item)
    count = int(entries) or 65536  # 0 entries means 2**16
    table = table[:count]
    positions = np.clip(np.rint(values).astype(np.int64) - int(first), 0, len(table) - 1)
    return table[positions]
