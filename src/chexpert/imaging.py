"""Decode (JPEG, PNG, DICOM) -> resize -> uint8 grayscale.

The format is told by the file's bytes, never its name: a ``.jpg`` holding PNG data is decoded
as PNG and reported by ``verify``. Decoders sit in a small registry keyed by format.
JPEG goes through libjpeg-turbo (simplejpeg) and may be downscaled in the DCT domain while
decoding, which is what makes full-resolution preparation fast.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from chexpert.errors import ImageDecodeError, InvalidArgumentError

__all__ = ["ImageInfo", "RESIZE_MODES", "detect_format", "image_info", "decode", "resize", "decode_resized", "to_uint8"]

RESIZE_MODES: Final[tuple[str, ...]] = ("pad", "crop", "squash")

_MAGIC: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"DICM", 128, "dicom"),
)


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, read without decoding the pixels."""

    format: str  # "jpeg" | "png" | "dicom"
    width: int
    height: int
    channels: int  # 1 grayscale, 2 gray+alpha, 3 RGB, 4 RGBA/CMYK
    bits: int  # bits per sample
    progressive: bool = False

    @property
    def grayscale8(self) -> bool:
        """True for what CheXpert ships: one 8-bit channel."""
        return self.channels == 1 and self.bits == 8


def detect_format(data: bytes, *, file: str | None = None) -> str:
    """Name the image format from its first bytes: "jpeg", "png" or "dicom".

    >>> detect_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    'png'
    """
    if not data:
        raise ImageDecodeError("file is empty (0 bytes)", file=file)
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    from chexpert.dicom import looks_like_dicom

    if looks_like_dicom(data):  # a data set written without preamble and file meta
        return "dicom"
    raise ImageDecodeError(f"not a JPEG, PNG or DICOM file (starts with {data[:8].hex(' ')})", file=file)


def image_info(data: bytes, *, file: str | None = None) -> ImageInfo:
    """Read format, size, channels and bit depth from the header only.

    >>> info = image_info(open("view1_frontal.jpg", "rb").read())  # doctest: +SKIP
    >>> info.format, info.grayscale8  # doctest: +SKIP
    ('jpeg', True)
    """
    kind = detect_format(data, file=file)
    try:
        return _INFO[kind](data)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001  (the decoders raise several types for one condition: bad bytes)
        raise ImageDecodeError(f"unreadable {kind} header: {exc}", file=file) from None


def decode(data: bytes, *, file: str | None = None, convert: bool = False) -> np.ndarray:
    """Decode an image to a 2-D uint8 grayscale array.

    By default only what the CheXpert family ships is accepted: one 8-bit channel, grayscale
    16-bit PNGs (CheXpert Plus; scaled to 8 bits, never clipped) and DICOM (through its modality
    and VOI transforms, see :mod:`chexpert.dicom`); colour, alpha and 8-bit-in-16 JPEGs raise
    :class:`ImageDecodeError`. ``convert=True`` instead turns colour into luminance and drops alpha.

    >>> decode(open("view1_frontal.jpg", "rb").read()).dtype  # doctest: +SKIP
    dtype('uint8')
    """
    return decode_resized(data, None, file=file, convert=convert)


def decode_resized(
    data: bytes,
    size: int | None,
    mode: str = "pad",
    *,
    file: str | None = None,
    convert: bool = False,
) -> np.ndarray:
    """Decode and resize to ``size`` x ``size`` in one step (JPEG downscaled while decoding).

    ``size`` None decodes at full size. See :func:`resize` for ``mode``.

    >>> decode_resized(jpeg_bytes, 320, "pad").shape  # doctest: +SKIP
    (320, 320)
    """
    if mode not in RESIZE_MODES:
        raise InvalidArgumentError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    kind = detect_format(data, file=file)
    try:
        image = _DECODE[kind](data, size, mode, convert)
    except ImageDecodeError as exc:
        raise ImageDecodeError(str(exc).removeprefix(f"{exc.file}: " if exc.file else ""), file=file) from None
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt data surfaces as various decoder errors)
        raise ImageDecodeError(f"cannot decode {kind} data: {exc}", file=file) from None
    if size is not None:
        image = resize(image, size, mode)
    return to_uint8(image)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """The one final conversion of a decoded image to uint8: float images hold [0, 1], rounded to 0..255.

    Wide images (16-bit PNG, DICOM) are decoded to float32 and resized before this, so that
    their precision survives until here.

    >>> to_uint8(np.array([[0.0, 0.5, 1.0]], np.float32)).tolist()
    [[0, 128, 255]]
    """
    if image.dtype == np.uint8:
        return image
    scaled = np.clip(image, 0, 1) * np.float32(255)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def resize(image: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """Resize a 2-D image (uint8, or float32 for wide sources) to ``size`` x ``size``, antialiased.

    - ``"pad"``: keep the aspect ratio, fit the longer side, pad the rest with black (centred);
    - ``"crop"``: keep the aspect ratio, fit the shorter side, cut the centre;
    - ``"squash"``: stretch to the square.

    >>> resize(np.zeros((390, 320), np.uint8), 224, "pad").shape
    (224, 224)
    """
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise InvalidArgumentError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
    if size < 1:
        raise InvalidArgumentError(f"size must be positive, not {size}")
    h, w = image.shape
    if mode == "squash":
        new_h, new_w = size, size
    else:
        scale = size / (max(h, w) if mode == "pad" else min(h, w))
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        # Pillow widens the bilinear kernel when shrinking, so this is antialiased, not point-sampled.
        pil = Image.fromarray(image) if image.dtype == np.uint8 else Image.fromarray(image.astype(np.float32, copy=False), mode="F")
        image = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR))
    if mode == "squash" or (new_h, new_w) == (size, size):
        return np.ascontiguousarray(image)
    out = np.zeros((size, size), dtype=image.dtype)
    if mode == "pad":
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out[top : top + new_h, left : left + new_w] = image
    else:
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out[:] = image[top : top + size, left : left + size]
    return out


# -- decoders ------------------------------------------------------------------------------------


def _min_decoded(size: int | None, mode: str, h: int, w: int) -> tuple[int, int]:
    """Decoded (height, width) to ask libjpeg-turbo for: the smallest power-of-two reduction that
    still leaves resize() shrinking, never enlarging; (0, 0) for full size.

    Only 1/2, 1/4 and 1/8 are used: libjpeg-turbo's other M/8 scales run a slower, non-SIMD
    inverse DCT (5/8 of a 390x320 image decodes slower than the whole image).
    """
    if size is None:
        return 0, 0
    if mode == "squash":
        need_h, need_w = float(size), float(size)
    else:
        scale = size / (max(h, w) if mode == "pad" else min(h, w))
        need_h, need_w = h * scale, w * scale
    factor = 1
    while factor < 8 and h / (factor * 2) >= need_h and w / (factor * 2) >= need_w:
        factor *= 2
    return (0, 0) if factor == 1 else (-(-h // factor), -(-w // factor))


def _jpeg_info(data: bytes) -> ImageInfo:
    import simplejpeg

    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    channels = {"Gray": 1, "GRAY": 1, "CMYK": 4}.get(colorspace, 3)
    bits, progressive = _jpeg_frame(data)
    return ImageInfo("jpeg", width, height, channels, bits, progressive)


def _jpeg_frame(data: bytes) -> tuple[int, bool]:
    """Sample precision and whether the frame is progressive, from the SOF marker."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[i + 4], marker in (0xC2, 0xC6, 0xCA, 0xCE)
        i += 2 + length
    return 8, False


def _jpeg_decode(data: bytes, size: int | None, mode: str, convert: bool) -> np.ndarray:
    import simplejpeg

    info = _jpeg_info(data)
    if not convert and not info.grayscale8:
        raise ImageDecodeError(f"JPEG has {info.channels} channels at {info.bits} bits; expected 1 channel at 8 bits (convert=True to accept)")
    min_h, min_w = _min_decoded(size, mode, info.height, info.width)
    image = simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=min_h, min_width=min_w)
    return image[:, :, 0] if image.ndim == 3 else image


def _png_info(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageDecodeError("PNG without an IHDR header (truncated?)")
    width, height, bits, color_type = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 0)
    return ImageInfo("png", width, height, channels, bits)


def _png_decode(data: bytes, size: int | None, mode: str, convert: bool) -> np.ndarray:
    from PIL import Image

    info = _png_info(data)
    gray16 = info.channels == 1 and info.bits == 16  # CheXpert Plus ships some of these
    if not convert and not info.grayscale8 and not gray16:
        raise ImageDecodeError(f"PNG has {info.channels} channels at {info.bits} bits; expected 1 channel at 8 or 16 bits (convert=True to accept)")
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # Scaled from the full sample range (never clipped), kept wide until the final conversion.
            array = np.asarray(img).astype(np.float32)
            return array * np.float32(1 / (2**info.bits - 1))
        gray = img if img.mode == "L" else img.convert("L")
        return np.asarray(gray, dtype=np.uint8)


def _dicom_info(data: bytes) -> ImageInfo:
    from chexpert import dicom

    dataset = dicom.read(data, stop_before_pixels=True)
    return ImageInfo(
        "dicom", int(dataset.Columns), int(dataset.Rows), int(dataset.get("SamplesPerPixel", 1)), int(dataset.get("BitsStored", 0) or 0)
    )


def _dicom_decode(data: bytes, size: int | None, mode: str, convert: bool) -> np.ndarray:
    """DICOM as displayed (modality, VOI, MONOCHROME1 inverted), float32 in [0, 1]; see chexpert.dicom."""
    from chexpert import dicom

    return dicom.display(dicom.read(data))


_INFO: Final[dict[str, Callable[[bytes], ImageInfo]]] = {"jpeg": _jpeg_info, "png": _png_info, "dicom": _dicom_info}
_DECODE: Final[dict[str, Callable[[bytes, int | None, str, bool], np.ndarray]]] = {
    "jpeg": _jpeg_decode,
    "png": _png_decode,
    "dicom": _dicom_decode,
}
