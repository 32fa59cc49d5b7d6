"""DICOM pixels as a radiologist sees them, and DICOM header elements as index columns.

The display pipeline follows PS3.4's grayscale standard display chain, in this order:

1. stored values, signed where Pixel Representation says so (pydicom decodes the transfer syntax:
   native, deflated, RLE, JPEG Lossless, JPEG-LS and JPEG 2000 through the pylibjpeg plugins);
2. the modality transform: Modality LUT Sequence when present, else Rescale Slope and Intercept;
3. the VOI transform: the VOI LUT Sequence when present, else the *first* Window Center/Width pair
   (LINEAR, LINEAR_EXACT or SIGMOID as VOI LUT Function says), else the full range of the image;
4. MONOCHROME1 inverted, exactly once, so that air is black in every output.

Values that would silently give a black (or uniform) image are refused, naming the file: a
Rescale Slope or Intercept that is not a finite number (or a rescale whose results leave float32),
a Modality or VOI LUT without descriptor or data, with a descriptor of other than three values or
bits outside 1-16, or mapping every value to one output. A first window that is not usable (its
center or width not a finite number, or a width below 1 for LINEAR) is not an error: it is
ignored and the full range of the image is shown, as for a file without a window.

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
import math
import zlib
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from chexpert.errors import ImageDecodeError
from chexpert.schema import MAX_INFLATED_BYTES, MAX_PIXELS
from chexpert.validation import check_pixel_count

__all__ = [
    "PLUS_ELEMENTS",
    "check_header",
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
_DEFLATED: Final = "1.2.840.10008.1.2.1.99"
# The start of a deflated data set inflated first, to read the header that bounds the rest.
_HEAD_BYTES: Final = 1 << 20
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
#: Bits per sample pydicom decodes; anything else in Bits Allocated is a damaged header.
_BITS_ALLOCATED: Final = (1, 8, 16, 32, 64)
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

    >>> read(open("chexpert-plus/DICOM/Uncompressed/valid/patient64541/study1/view1_frontal.dcm", "rb").read()).Modality
    'DX'
    """
    pydicom = _pydicom()
    try:
        meta, inflated = _inflate_if_deflated(pydicom, data, file)
        if meta is None:
            dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
        else:
            # The data set after the file meta, inflated here within the cap (pydicom would inflate
            # it whole), is read as the bare explicit-VR data set it is; the file meta goes back on.
            data = inflated
            dataset = pydicom.dcmread(io.BytesIO(inflated), force=True, stop_before_pixels=stop_before_pixels)
            dataset.file_meta = meta
    except ImageDecodeError:
        raise
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


def _inflate_if_deflated(pydicom: Any, data: bytes, file: str | None) -> tuple[Any, bytes]:
    """(file meta, inflated data set) of a Deflated Explicit VR Little Endian file, inflated no
    further than :data:`MAX_INFLATED_BYTES`; (None, b"") for any other transfer syntax."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    try:
        read_preamble(fp, True)
        meta = _read_file_meta_info(fp)  # pydicom has no public reader of the meta from bytes
    except Exception:  # noqa: BLE001  (no readable meta: pydicom's own reading reports it)
        return None, b""
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return None, b""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        # The header first (it precedes the pixel data): what it declares bounds what follows.
        head = inflater.decompress(data[fp.tell() :], _HEAD_BYTES)
        cap = min(MAX_INFLATED_BYTES, _declared_bytes(pydicom, head, file) or MAX_INFLATED_BYTES)
        inflated = head + inflater.decompress(inflater.unconsumed_tail, max(0, cap - len(head)) + 1)
    except zlib.error as exc:
        raise ImageDecodeError(f"damaged deflated data set ({exc})", file=file) from None
    if len(inflated) > cap or inflater.unconsumed_tail:
        raise ImageDecodeError(f"the deflated data set inflates to more than {cap:,} bytes, more than its header declares; not inflated further", file=file)
    return meta, inflated


def _declared_bytes(pydicom: Any, head: bytes, file: str | None) -> int | None:
    """What the data set starting with ``head`` may inflate to, from the header it declares
    (None if ``head`` holds no complete image header); ImageDecodeError if the header is refused."""
    try:
        header = pydicom.dcmread(io.BytesIO(head), force=True, stop_before_pixels=True)
        if not all(keyword in header for keyword in ("Rows", "Columns", "BitsAllocated")):
            return None
    except Exception:  # noqa: BLE001  (a header longer than head, or damaged: the full cap applies)
        return None
    rows, columns = check_header(header, file=file)
    return len(head) + -(-rows * columns * int(header.BitsAllocated) // 8) + _HEAD_BYTES


def _header_int(dataset: Any, keyword: str, default: int | None, file: str | None) -> int:
    """An integer element of the header, or ImageDecodeError naming it."""
    value = dataset.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise ImageDecodeError(f"DICOM lacks {keyword}, which decoding the pixel data needs", file=file)
        return default
    try:
        number = float(value) if isinstance(value, str | bytes | int | float) else float(_values(value)[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ImageDecodeError(f"DICOM {keyword} is not a number", file=file) from None
    if not math.isfinite(number) or number != int(number):
        raise ImageDecodeError(f"DICOM {keyword} is not a whole number", file=file)
    return int(number)


def check_header(dataset: Any, *, file: str | None = None) -> tuple[int, int]:
    """(rows, columns) of a data set whose header describes one grayscale frame of at most
    ``schema.MAX_PIXELS`` pixels; ImageDecodeError naming the file otherwise.

    Read from the header alone, before any pixel data is decoded: a file of a few megabytes can
    declare 30 frames of 8192 x 8192 (4.5 GB decoded), and refusing it after decoding is too late.

    >>> check_header({"Rows": 2, "Columns": 3, "BitsAllocated": 16})
    (2, 3)
    >>> check_header({"Rows": 512, "Columns": 512, "BitsAllocated": 16, "NumberOfFrames": 30})
    Traceback (most recent call last):
    ...
    chexpert.errors.ImageDecodeError: DICOM holds 30 frames; a radiograph is one frame (a multi-frame series is not decoded)
    """
    rows = _header_int(dataset, "Rows", None, file)
    columns = _header_int(dataset, "Columns", None, file)
    bits = _header_int(dataset, "BitsAllocated", None, file)
    frames = _header_int(dataset, "NumberOfFrames", 1, file)
    samples = _header_int(dataset, "SamplesPerPixel", 1, file) or 1
    if rows < 1 or columns < 1:
        raise ImageDecodeError(f"DICOM declares {rows} rows and {columns} columns; an image has at least one of each", file=file)
    if frames != 1:
        if frames < 1:
            raise ImageDecodeError(f"DICOM declares {frames} frames (Number of Frames); an image has at least one", file=file)
        raise ImageDecodeError(f"DICOM holds {frames} frames; a radiograph is one frame (a multi-frame series is not decoded)", file=file)
    if samples != 1:
        raise ImageDecodeError(f"DICOM has {samples} samples per pixel; chest radiographs are grayscale (1)", file=file)
    if bits not in _BITS_ALLOCATED:
        raise ImageDecodeError(f"DICOM declares {bits} bits allocated per sample; pydicom decodes {', '.join(map(str, _BITS_ALLOCATED))}", file=file)
    check_pixel_count(rows, columns, file=file)
    if rows * columns * bits > 4 * MAX_PIXELS * 8:
        raise ImageDecodeError(f"DICOM declares {rows}x{columns} samples of {bits} bits, more than any radiograph needs; not decoded", file=file)
    return rows, columns


def _codestream_size(dataset: Any) -> tuple[int, int] | None:
    """(height, width) the first JPEG, JPEG-LS or JPEG 2000 codestream of encapsulated pixel
    data declares, from its frame header; None when there is none to read.

    The codec allocates what the codestream says, whatever Rows and Columns say: a codestream
    declaring more than the header is refused before it reaches the codec.
    """
    try:
        element = dataset["PixelData"]
        if not getattr(element, "is_undefined_length", False):
            return None
        head = bytes(element.value[: 1 << 16])
    except (KeyError, TypeError):
        return None
    j2k = head.find(b"\xff\x4f\xff\x51")  # SOC then SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz
    if j2k >= 0 and j2k + 22 <= len(head):
        width, height, x0, y0 = (int.from_bytes(head[j2k + 8 + 4 * i : j2k + 12 + 4 * i], "big") for i in range(4))
        return max(0, height - y0), max(0, width - x0)
    start = head.find(b"\xff\xd8\xff")
    if start < 0:
        return None
    i = start + 2
    while i + 9 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        # SOF0-15 (but DHT, JPG, DAC) and JPEG-LS's SOF55: precision, lines, samples per line.
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            return int.from_bytes(head[i + 5 : i + 7], "big"), int.from_bytes(head[i + 7 : i + 9], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def stored_pixels(dataset: Any, *, file: str | None = None) -> np.ndarray:
    """The stored values of a one-frame grayscale image (signed per Pixel Representation).

    >>> data = open("chexpert-plus/DICOM/Uncompressed/valid/patient64541/study1/view1_frontal.dcm", "rb").read()
    >>> stored_pixels(read(data)).dtype
    dtype('uint16')
    """
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise ImageDecodeError("DICOM has no Pixel Data element (a header-only or structured-report file?)", file=file)
    rows, columns = check_header(dataset, file=file)
    declared = _codestream_size(dataset)
    if declared is not None and (declared[0] > rows or declared[1] > columns):
        raise ImageDecodeError(
            f"the compressed pixel data declares {declared[1]}x{declared[0]} pixels, the header {columns}x{rows}; damaged or hostile, not decoded",
            file=file,
        )
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


def modality(dataset: Any, stored: np.ndarray, *, file: str | None = None) -> np.ndarray:
    """The modality transform: Modality LUT Sequence if present, else rescale slope and intercept (float32).

    A slope or intercept that is not a finite number, or results beyond float32, are an
    :class:`~chexpert.errors.ImageDecodeError` (the image would be uniform or empty).

    >>> modality({"RescaleSlope": 2, "RescaleIntercept": -10}, np.array([5])).tolist()
    [0.0]
    >>> modality({"RescaleSlope": "NaN"}, np.array([5]))
    Traceback (most recent call last):
    ...
    chexpert.errors.ImageDecodeError: DICOM RescaleSlope is not a finite number (nan); the image cannot be shown
    """
    sequence = dataset.get("ModalityLUTSequence")
    if sequence:
        return _lut(sequence[0], stored, "Modality LUT", file)
    slope = _finite(dataset, "RescaleSlope", 1.0, file) or 1.0
    intercept = _finite(dataset, "RescaleIntercept", 0.0, file)
    out = stored.astype(np.float32)
    if slope != 1 or intercept != 0:
        with np.errstate(over="ignore", invalid="ignore"):
            if slope != 1:
                out *= np.float32(slope)
            if intercept != 0:
                out += np.float32(intercept)
        if not np.isfinite(out).all():
            raise ImageDecodeError(
                f"DICOM rescale (slope {slope:g}, intercept {intercept:g}) takes values beyond float32; the image cannot be shown", file=file
            )
    return out


def _finite(dataset: Any, keyword: str, default: float, file: str | None) -> float:
    """A decimal element as a finite float (``default`` where absent or empty)."""
    value = dataset.get(keyword, default)
    try:
        number = default if value is None or value == "" else _values(value)[0]
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ImageDecodeError(f"DICOM {keyword} is not a number; the image cannot be shown", file=file) from None
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise ImageDecodeError(f"DICOM {keyword} is not a finite number ({number:g}); the image cannot be shown", file=file)
    return number


def voi(dataset: Any, values: np.ndarray, *, file: str | None = None) -> np.ndarray:
    """The VOI transform onto [0, 1]: VOI LUT Sequence, else the first window, else the full range.

    A first window whose center or width is not a finite number is ignored (the full range is
    shown); a malformed VOI LUT is an :class:`~chexpert.errors.ImageDecodeError`.

    >>> voi({}, np.array([0.0, 50.0, 100.0], np.float32)).tolist()
    [0.0, 0.5, 1.0]
    >>> voi({"WindowCenter": "NaN", "WindowWidth": 10}, np.array([0.0, 50.0, 100.0], np.float32)).tolist()
    [0.0, 0.5, 1.0]
    """
    sequence = dataset.get("VOILUTSequence")
    if sequence:
        item = sequence[0]
        lut = _lut(item, values, "VOI LUT", file)
        bits = int(_values(item.LUTDescriptor)[2])
        top = max(float(2**bits - 1), float(_lut_data(item).max()))
        return lut / np.float32(top)
    center, width = _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    usable = center is not None and width is not None and all(math.isfinite(v) and abs(v) <= _FLOAT32_MAX for v in (center, width))
    if usable and center is not None and width is not None and width > 0:
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

    >>> data = open("chexpert-plus/DICOM/Uncompressed/valid/patient64541/study1/view1_frontal.dcm", "rb").read()
    >>> display(read(data)).dtype
    dtype('float32')
    """
    stored = stored_pixels(dataset, file=file)
    try:
        shown = voi(dataset, modality(dataset, stored, file=file), file=file)
    except ImageDecodeError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as exc:
        # A LUT or window element of the wrong type or shape: pydicom hands over what the file holds.
        raise ImageDecodeError(f"malformed DICOM presentation elements (modality or VOI LUT, window): {exc}", file=file) from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "MONOCHROME1":
        shown = np.float32(1) - shown
    elif photometric not in ("MONOCHROME2", ""):
        raise ImageDecodeError(f"DICOM photometric interpretation {photometric} is not grayscale", file=file)
    return np.ascontiguousarray(shown, dtype=np.float32)


def header(dataset: Any, elements: Sequence[str] = PLUS_ELEMENTS) -> dict[str, str]:
    """The named top-level elements as strings ("" where absent), multi-values joined by ``\\``.

    >>> data = open("chexpert-plus/DICOM/Uncompressed/valid/patient64541/study1/view1_frontal.dcm", "rb").read()
    >>> header(read(data))["Modality"]
    'DX'
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
    try:
        values = _values(value)
    except (TypeError, ValueError, OverflowError):
        return None  # a window that is no number is no window
    return values[0] if values else None


def _lut_data(item: Any) -> np.ndarray:
    data = item.LUTData
    if data is None or (hasattr(data, "__len__") and len(data) == 0):
        return np.zeros(0, dtype=np.float32)  # an element of no value: pydicom gives None or b""
    if isinstance(data, bytes):
        return np.frombuffer(data, dtype="<u2" if len(data) % 2 == 0 else np.uint8).astype(np.float32)
    return np.asarray(data if hasattr(data, "__len__") else [data], dtype=np.float32)


def _lut(item: Any, values: np.ndarray, what: str = "LUT", file: str | None = None) -> np.ndarray:
    """Look ``values`` up in a LUT item (descriptor: entries, first value mapped, bits)."""
    if "LUTDescriptor" not in item or "LUTData" not in item:
        raise ImageDecodeError(f"DICOM {what} lacks its {'LUT Descriptor' if 'LUTDescriptor' not in item else 'LUT Data'}", file=file)
    descriptor = _values(item.LUTDescriptor)
    if len(descriptor) != 3 or not all(math.isfinite(v) for v in descriptor):
        raise ImageDecodeError(f"DICOM {what} Descriptor holds {len(descriptor)} values; it needs 3 (entries, first value mapped, bits)", file=file)
    entries, first, bits = descriptor
    if not 1 <= bits <= 16:
        raise ImageDecodeError(f"DICOM {what} Descriptor declares {bits:g} bits per entry; a LUT has 1 to 16", file=file)
    if first >= 32768 and float(values.min()) < 0:
        # Written as SS but read as US (implicit VR cannot tell): the first value mapped is negative.
        first -= 65536
    table = _lut_data(item)
    count = int(entries) or 65536  # 0 entries means 2**16
    table = table[:count]
    if len(table) == 0:
        raise ImageDecodeError(f"DICOM {what} is empty (no LUT Data); the image cannot be shown", file=file)
    if not np.isfinite(table).all():
        raise ImageDecodeError(f"DICOM {what} holds values that are not finite numbers", file=file)
    if float(table.min()) == float(table.max()):
        raise ImageDecodeError(f"DICOM {what} maps every value to {float(table[0]):g}: the image would be uniform", file=file)
    positions = np.clip(np.rint(values).astype(np.int64) - int(first), 0, len(table) - 1)
    return table[positions]
