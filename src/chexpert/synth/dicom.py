"""Look-alike DICOM files: real pydicom data sets with the headers of chest radiographs.

:func:`dicom_bytes` writes any combination the readers must handle (CR or DX; MONOCHROME1 or 2;
10 to 16 bits stored, signed or not; rescale, windows or a VOI LUT; native, deflated, RLE, JPEG
Lossless, JPEG 2000 and JPEG-LS transfer syntaxes; with or without preamble and file meta).
:func:`render_dicom` turns a look-alike picture into such a file with parameters drawn per image,
so that the display chain of :mod:`chexpert.dicom` gives the picture back.

JPEG Lossless (Process 14, selection value 1) is encoded here, in numpy: pydicom has no encoder
for it and pylibjpeg-libjpeg only decodes. RLE and JPEG 2000 use pydicom's encoders (with the
pylibjpeg-rle and pylibjpeg-openjpeg plugins of the ``dicom`` extra); JPEG-LS needs pyjpegls.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from chexpert.errors import ChexpertError
from chexpert.validation import check_choice, check_int

__all__ = ["TRANSFER_SYNTAXES", "DicomParams", "dicom_bytes", "draw_params", "render_dicom", "jpeg_lossless"]

#: Transfer syntaxes :func:`dicom_bytes` writes, by short name.
TRANSFER_SYNTAXES: Final[dict[str, str]] = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
}

_SOP_CLASS: Final[dict[str, str]] = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}
_UID_ROOT: Final[str] = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class DicomParams:
    """How one look-alike DICOM stores and presents its picture."""

    modality: str = "CR"
    photometric: str = "MONOCHROME2"
    bits_stored: int = 12
    signed: bool = False
    slope: float = 1.0
    intercept: float = 0.0
    windows: tuple[tuple[float, float], ...] = ()  # (center, width) pairs; the first one is used
    voi_function: str = ""  # "", LINEAR, LINEAR_EXACT or SIGMOID
    voi_lut: bool = False  # a VOI LUT Sequence instead of (and before) the windows
    syntax: str = "explicit"
    preamble: bool = True  # False: no preamble and no file meta (read with force)


def jpeg_lossless(samples: np.ndarray, precision: int) -> bytes:
    """Encode unsigned samples (< 2**precision) as a JPEG Lossless SV1 codestream.

    Process 14 with selection value 1 (predict from the left neighbour; the first row from the
    left, the first column from above), one Huffman table of 5-bit codes for the 17 difference
    categories.

    >>> jpeg_lossless(np.zeros((2, 2), np.uint16), 12)[:2]
    b'\\xff\\xd8'
    """
    check_int("precision", precision, low=2, high=16)
    x = np.asarray(samples, dtype=np.int64)
    if x.ndim != 2 or x.min() < 0 or x.max() >= 1 << precision:
        raise ChexpertError(f"jpeg_lossless needs a 2-D array of values in [0, 2**{precision})")
    h, w = x.shape
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]
    prediction[1:, 0] = x[:-1, 0]
    prediction[1:, 1:] = x[1:, :-1]
    diff = (x - prediction).ravel()
    diff = (diff + 32768) % 65536 - 32768  # differences are taken modulo 2**16
    magnitude = np.abs(diff)
    category = np.zeros(len(diff), dtype=np.int64)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    category[diff == -32768] = 16  # 32768: category 16 carries no extra bits
    extra = np.where(diff >= 0, diff, diff - 1) & ((1 << category) - 1)
    extra[category == 16] = 0
    extra_bits = np.where(category == 16, 0, category)
    value = (category << extra_bits) | extra  # the 5-bit code of category k is k itself
    length = 5 + extra_bits
    starts = np.cumsum(length) - length
    total = int(length.sum())
    offset = np.arange(total, dtype=np.int64) - np.repeat(starts, length)
    bits = (np.repeat(value, length) >> (np.repeat(length, length) - 1 - offset)) & 1
    bits = np.concatenate([bits, np.ones(-total % 8, dtype=np.int64)])  # pad with 1-bits
    data = np.packbits(bits.astype(np.uint8))
    stuffed = np.insert(data, np.flatnonzero(data == 0xFF) + 1, 0)  # byte stuffing
    counts = [0] * 16
    counts[4] = 17
    header = (
        b"\xff\xd8"
        + b"\xff\xc3" + (11).to_bytes(2, "big") + bytes([precision]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + b"\x01\x01\x11\x00"
        + b"\xff\xc4" + (36).to_bytes(2, "big") + b"\x00" + bytes(counts) + bytes(range(17))
        + b"\xff\xda" + (8).to_bytes(2, "big") + b"\x01\x01\x00\x01\x00\x00"
    )  # fmt: skip
    return header + stuffed.tobytes() + b"\xff\xd9"


def dicom_bytes(
    stored: np.ndarray,
    params: DicomParams | None = None,
    *,
    bits_stored: int | None = None,
    header: Mapping[str, Any] | None = None,
    uid_seed: Sequence[str] = ("chexpert",),
) -> bytes:
    """A DICOM file holding ``stored`` (the stored values) as ``params`` describe.

    ``header`` adds or overrides elements by keyword. UIDs are derived from ``uid_seed``, so the
    bytes are the same from run to run.

    >>> data = dicom_bytes(np.full((4, 4), 100, np.uint16), bits_stored=12)
    >>> data[128:132]
    b'DICM'
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID, generate_uid

    params = params or DicomParams()
    if bits_stored is not None:
        params = DicomParams(**{**params.__dict__, "bits_stored": bits_stored})
    check_choice("syntax", params.syntax, TRANSFER_SYNTAXES)
    check_choice("modality", params.modality, _SOP_CLASS)
    check_choice("photometric", params.photometric, ("MONOCHROME1", "MONOCHROME2"))
    bits = check_int("bits_stored", params.bits_stored, low=10, high=16)
    if not params.preamble and params.syntax not in ("explicit", "implicit"):
        raise ChexpertError("a data set without file meta has no transfer syntax to say it is compressed; use syntax 'explicit' or 'implicit'")
    stored = np.asarray(stored)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if params.signed else (0, (1 << bits) - 1)
    if stored.ndim != 2 or stored.min() < low or stored.max() > high:
        raise ChexpertError(f"stored values must be a 2-D array within [{low}, {high}] for {bits} bits {'signed' if params.signed else 'unsigned'}")
    array = stored.astype(np.int16 if params.signed else np.uint16)

    sop_class = _SOP_CLASS[params.modality]
    study = generate_uid(_UID_ROOT, [*uid_seed, "study"])
    instance = generate_uid(_UID_ROOT, [*uid_seed, "instance"])
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid(_UID_ROOT, [*uid_seed, "series"])
    ds.Modality = params.modality
    ds.PatientID = "anonymous"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = params.photometric
    ds.Rows, ds.Columns = array.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(params.signed)
    if params.slope != 1.0 or params.intercept != 0.0 or params.modality == "CR":
        ds.RescaleSlope = _ds(params.slope)
        ds.RescaleIntercept = _ds(params.intercept)
        ds.RescaleType = "US"
    if params.voi_lut:
        # A gamma curve over the first window (or the image's range), as some vendors ship.
        if params.windows:
            center, width = params.windows[0]
            low_value, high_value = center - width / 2, center + width / 2
        else:
            modality_values = array.astype(np.float64) * params.slope + params.intercept
            low_value, high_value = modality_values.min(), modality_values.max()
        first = int(np.floor(low_value))
        entries = min(int(np.ceil(high_value)) - first + 1, 65536)
        out_bits = 12
        ramp = np.linspace(0, 1, entries) ** 0.8 * ((1 << out_bits) - 1)
        item = Dataset()
        # The first value mapped is written as US (unsigned) or SS (signed), like the pixel data.
        item.add_new(0x00283002, "SS" if first < 0 else "US", [entries if entries < 65536 else 0, first, out_bits])
        item.add_new(0x00283006, "OW", np.rint(ramp).astype("<u2").tobytes())
        item.LUTExplanation = "GAMMA 0.8"
        ds.VOILUTSequence = DicomSequence([item])
    if params.windows:
        centers = [_ds(c) for c, _ in params.windows]
        widths = [_ds(w) for _, w in params.windows]
        ds.WindowCenter = centers if len(centers) > 1 else centers[0]
        ds.WindowWidth = widths if len(widths) > 1 else widths[0]
        ds.WindowCenterWidthExplanation = ["DEFAULT", "WIDE"][: len(centers)] if len(centers) > 1 else "DEFAULT"
    if params.voi_function:
        ds.VOILUTFunction = params.voi_function
    for keyword, value in (header or {}).items():
        setattr(ds, keyword, value)

    syntax = UID(TRANSFER_SYNTAXES[params.syntax])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(instance)
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = UID(_UID_ROOT + "1")
    ds.file_meta = meta
    if params.syntax in ("explicit", "implicit", "deflated"):
        ds.PixelData = array.astype("<i2" if params.signed else "<u2").tobytes()
        ds["PixelData"].VR = "OW"
    elif params.syntax == "jpeg-lossless":
        ds.PixelData = encapsulate([jpeg_lossless(array.astype(np.int64) & ((1 << bits) - 1), bits)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.LossyImageCompression = "00"
    else:
        ds.PixelData = array.astype("<i2" if params.signed else "<u2").tobytes()
        ds["PixelData"].VR = "OW"
        try:
            ds.compress(syntax, array, generate_instance_uid=False)
        except (RuntimeError, NotImplementedError, ImportError) as exc:
            raise ChexpertError(f"cannot encode {syntax.name}: {exc}; install chexpert[dicom] (and pyjpegls for JPEG-LS)") from None
        ds.LossyImageCompression = "00"
    buffer = io.BytesIO()
    ds.set_original_encoding(syntax.is_implicit_VR, True)
    if params.preamble:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(buffer, ds, enforce_file_format=False, implicit_vr=syntax.is_implicit_VR, little_endian=True)
    return buffer.getvalue()


def _ds(value: float) -> str:
    """A Decimal String value, short and exact."""
    return f"{value:.6g}"


# Parameters of look-alike files: which syntaxes, how often (the rest is explicit VR little endian).
_SYNTAX_SHARE: Final[tuple[tuple[str, float], ...]] = (
    ("implicit", 0.10), ("deflated", 0.04), ("rle", 0.08), ("jpeg-lossless", 0.10), ("jpeg2000", 0.06),
)  # fmt: skip


def draw_params(rng: np.random.Generator) -> DicomParams:
    """Storage and presentation parameters of one look-alike image, as vendors vary them.

    >>> draw_params(np.random.default_rng(0)).modality in ("CR", "DX")
    True
    """
    u = rng.random(8)
    modality = "CR" if u[0] < 0.6 else "DX"
    photometric = "MONOCHROME1" if u[1] < 0.35 else "MONOCHROME2"
    bits = int(rng.choice([12, 12, 12, 14, 15, 16]))
    signed = bool(u[2] < 0.15) and bits < 16
    slope, intercept = (1.0, 0.0)
    if u[3] < 0.3:
        slope, intercept = float(rng.choice([0.5, 2.0, 0.25])), float(rng.choice([0.0, -1024.0, 100.0]))
    syntax, edge = "explicit", 0.0
    for name, share in _SYNTAX_SHARE:
        if edge <= u[4] < edge + share:
            syntax = name
        edge += share
    voi_lut = bool(u[5] < 0.1)
    function = "" if u[6] < 0.8 else ("LINEAR_EXACT" if u[6] < 0.9 else "LINEAR")
    preamble = bool(u[7] >= 0.03) or syntax not in ("explicit", "implicit")
    return DicomParams(modality, photometric, bits, signed, slope, intercept, (), function, voi_lut, syntax, preamble)


def render_dicom(picture: np.ndarray, params: DicomParams, *, header: Mapping[str, Any] | None = None, uid_seed: Sequence[str] = ("chexpert",)) -> bytes:
    """A DICOM whose display (modality, first window, MONOCHROME1 inverted) gives ``picture`` back.

    The picture (uint8) is spread over most of the stored range; the first window spans the
    modality values of black to white, a second, wider one follows it (readers must use the
    first).

    >>> p = DicomParams(photometric="MONOCHROME1", bits_stored=14)
    >>> render_dicom(np.zeros((8, 8), np.uint8), p)[128:132]
    b'DICM'
    """
    bits = params.bits_stored
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if params.signed else (0, (1 << bits) - 1)
    span = high - low
    lo, hi = low + 0.05 * span, low + 0.9 * span
    level = picture.astype(np.float64) / 255.0
    if params.photometric == "MONOCHROME1":
        level = 1.0 - level
    stored = np.rint(lo + level * (hi - lo)).astype(np.int64)
    m_lo, m_hi = lo * params.slope + params.intercept, hi * params.slope + params.intercept
    center, width = (m_lo + m_hi) / 2, abs(m_hi - m_lo)
    windows = ((round(center, 1), round(width, 1)), (round(center, 1), round(width * 1.6, 1)))
    params = DicomParams(**{**params.__dict__, "windows": windows})
    return dicom_bytes(stored, params, header=header, uid_seed=uid_seed)
