"""Decode (JPEG, PNG, DICOM) -> resize -> uint8 grayscale.

The format is told by the file's bytes, never its name: a ``.jpg`` holding PNG data is decoded
as PNG and reported by ``verify``. Decoders sit in a small registry keyed by format.
JPEG goes through libjpeg-turbo (simplejpeg) and may be downscaled in the DCT domain while
decoding, which is what makes full-resolution preparation fast.

Shrinking uses OpenCV's ``INTER_AREA`` (each output pixel the mean of the input area it covers:
antialiased, and the fastest correct shrink measured, see ``bench/prepare.py``); enlarging uses
bilinear interpolation. Both are deterministic: the same image gives the same bytes whatever the
number of OpenCV threads.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from chexpert.errors import ImageDecodeError, InvalidArgumentError
from chexpert.schema import MAX_JPEG_SCANS, MAX_PIXELS
from chexpert.validation import check_choice, check_int, check_pixel_count

__all__ = [
    "ImageInfo",
    "RESIZE_MODES",
    "MAX_PIXELS",
    "check_pixel_count",
    "one_thread_per_worker",
    "detect_format",
    "image_info",
    "decode",
    "resize",
    "decode_resized",
    "to_uint8",
]

RESIZE_MODES: Final[tuple[str, ...]] = ("pad", "crop", "squash")


# Crop mode enlarges the whole image, then cuts the centre, up to this many times the output's
# pixels; beyond (an extreme aspect ratio), the cut is sampled from the source directly.
_MAX_ENLARGED: Final[int] = 4

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
    # The message never quotes the bytes: they may be anything the path led to.
    raise ImageDecodeError(f"not a JPEG, PNG or DICOM file ({len(data):,} bytes of something else)", file=file)


def one_thread_per_worker() -> None:
    """In a worker process of a pool, make OpenCV's resize use one thread (the pool has one per core).

    Only where OpenCV is new to the process: changing the thread count of an OpenCV pool that a
    worker inherited by fork from a parent that had started one hangs or crashes it.

    Not run as a doctest: it would change OpenCV's thread count in the test process.

    >>> one_thread_per_worker()  # doctest: +SKIP
    """
    import sys

    if "cv2" not in sys.modules:
        import cv2

        cv2.setNumThreads(1)


def image_info(data: bytes, *, file: str | None = None) -> ImageInfo:
    """Read format, size, channels and bit depth from the header only.

    >>> info = image_info(open("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "rb").read())
    >>> info.format, info.grayscale8
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

    >>> decode(open("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "rb").read()).dtype
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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode and resize to ``size`` x ``size`` uint8 in one step (JPEG downscaled while decoding).

    ``size`` None decodes at full size. See :func:`resize` for ``mode``. ``out``, a writable
    (size, size) uint8 array, receives the pixels (no copy; it is returned).

    >>> jpeg_bytes = open("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg", "rb").read()
    >>> decode_resized(jpeg_bytes, 320, "pad").shape
    (320, 320)
    """
    check_choice("resize mode", mode, RESIZE_MODES)
    kind = detect_format(data, file=file)
    try:
        image, source = _DECODE[kind](data, size, mode, convert)
    except ImageDecodeError as exc:
        raise ImageDecodeError(str(exc).removeprefix(f"{exc.file}: " if exc.file else ""), file=file) from None
    except Exception as exc:  # noqa: BLE001  (truncated or corrupt data surfaces as various decoder errors)
        raise ImageDecodeError(f"cannot decode {kind} data: {exc}", file=file) from None
    if size is None:
        return to_uint8(image)
    if image.dtype == np.uint8:
        return _resize(image, size, mode, out, source)
    wide = to_uint8(_resize(image, size, mode, None, source))  # resized before rounding to 8 bits
    if out is None:
        return wide
    _check_out(out, size, np.dtype(np.uint8))
    out[...] = wide
    return out


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


def resize(image: np.ndarray, size: int, mode: str = "pad", *, out: np.ndarray | None = None) -> np.ndarray:
    """Resize a 2-D image (uint8, or float32 for wide sources) to ``size`` x ``size``, antialiased.

    - ``"pad"``: keep the aspect ratio, fit the longer side, pad the rest with black (centred);
    - ``"crop"``: keep the aspect ratio, fit the shorter side, cut the centre;
    - ``"squash"``: stretch to the square.

    The result has the image's dtype. ``out``, a writable (size, size) array of that dtype,
    receives it (no copy; it is returned).

    >>> resize(np.zeros((390, 320), np.uint8), 224, "pad").shape
    (224, 224)
    """
    check_choice("resize mode", mode, RESIZE_MODES)
    size = check_int("size", size, low=1)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.float32):
        raise InvalidArgumentError(f"image must be a 2-D uint8 or float32 array, not {image.dtype} {image.shape}")
    return _resize(image, size, mode, out, image.shape)


def _check_out(out: np.ndarray, size: int, dtype: np.dtype) -> None:
    if out.shape != (size, size) or out.dtype != dtype:
        raise InvalidArgumentError(f"out must be a ({size}, {size}) {dtype} array, not {out.dtype} {out.shape}")


def _resize(image: np.ndarray, size: int, mode: str, out: np.ndarray | None, source: tuple[int, ...]) -> np.ndarray:
    """:func:`resize` of an image decoded from one of ``source`` (height, width) pixels, perhaps
    reduced 2, 4 or 8 times in the DCT domain: the geometry is the source's."""
    if out is None:
        out = np.empty((size, size), dtype=image.dtype)
    else:
        _check_out(out, size, image.dtype)
    h, w = source
    if mode == "squash":
        _scale(image, out, source)
        return out
    if mode == "crop":
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        if (new_h, new_w) == image.shape:
            out[:] = image[top : top + size, left : left + size]
        elif new_h * new_w > _MAX_ENLARGED * size * size:
            # Enlarging a sliver (1 x 60,000 pixels) to cut its centre would first make an image
            # of gigabytes: sample the cut straight from the source instead.
            _crop_enlarged(image, out, (new_h, new_w), top, left)
        else:
            out[:] = _scale(image, np.empty((new_h, new_w), dtype=image.dtype), source)[top : top + size, left : left + size]
        return out
    # Pad: the image goes straight into the centre of out, then the bars are blackened.
    scale = size / max(h, w)
    new_h, new_w = min(size, max(1, round(h * scale))), min(size, max(1, round(w * scale)))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    _scale(image, out[top : top + new_h, left : left + new_w], source)
    out[:top] = 0
    out[top + new_h :] = 0
    out[top : top + new_h, :left] = 0
    out[top : top + new_h, left + new_w :] = 0
    return out


def _crop_enlarged(image: np.ndarray, out: np.ndarray, enlarged: tuple[int, int], top: int, left: int) -> None:
    """``out`` = the (top, left) corner cut of ``image`` enlarged bilinearly to ``enlarged``,
    without making the enlarged image: only the source window under the cut is sampled.

    The sampling grid is the one ``cv2.resize`` uses (pixel centres), so the result matches a cut
    of the enlarged image up to interpolation rounding.
    """
    import cv2

    h, w = image.shape
    size_h, size_w = out.shape
    fy, fx = h / enlarged[0], w / enlarged[1]  # source pixels per enlarged pixel
    y0, x0 = (top + 0.5) * fy - 0.5, (left + 0.5) * fx - 0.5  # source position of out[0, 0]
    y1, x1 = y0 + (size_h - 1) * fy, x0 + (size_w - 1) * fx
    # The window under the cut, a pixel wider on each side, so that its border is never sampled
    # inside the image (at the image's own border, replicating is what resize does too).
    r0, r1 = max(0, int(np.floor(y0)) - 1), min(h, int(np.ceil(y1)) + 2)
    c0, c1 = max(0, int(np.floor(x0)) - 1), min(w, int(np.ceil(x1)) + 2)
    window = np.ascontiguousarray(image[r0:r1, c0:c1])
    matrix = np.array([[fx, 0, x0 - c0], [0, fy, y0 - r0]], dtype=np.float64)
    result = cv2.warpAffine(window, matrix, (size_w, size_h), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    if result is not out and not np.shares_memory(result, out):  # pragma: no cover - OpenCV kept a copy
        out[...] = result


def _scale(image: np.ndarray, target: np.ndarray, source: tuple[int, ...]) -> np.ndarray:
    """Resample ``image`` into ``target`` (a view is written in place): area mean when shrinking.

    ``image`` may be ``source`` reduced by 2, 4 or 8 in the DCT domain, its last row and column
    covering less of the source when the size does not divide: the scale is then set from the
    source, so that the picture is neither stretched nor shifted, and the overhang cut off.
    """
    import cv2

    if target.shape == image.shape:
        target[...] = image
        return target
    shrinks = target.shape[0] < image.shape[0] or target.shape[1] < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR
    if image.shape != tuple(source):
        factor = _reduction(source, image.shape)
        fy, fx = target.shape[0] * factor / source[0], target.shape[1] * factor / source[1]
        result = cv2.resize(image, None, fx=fx, fy=fy, interpolation=interpolation)
        if result.shape[0] >= target.shape[0] and result.shape[1] >= target.shape[1]:
            target[...] = result[: target.shape[0], : target.shape[1]]
            return target
    result = cv2.resize(image, (target.shape[1], target.shape[0]), dst=target, interpolation=interpolation)
    if result is not target and not np.shares_memory(result, target):  # pragma: no cover - OpenCV kept a copy
        target[...] = result
    return target


def _reduction(source: tuple[int, ...], decoded: tuple[int, ...]) -> int:
    """The DCT-domain reduction (1, 2, 4 or 8) that turned ``source`` into ``decoded`` dimensions."""
    for factor in (2, 4, 8):
        if (-(-source[0] // factor), -(-source[1] // factor)) == tuple(decoded):
            return factor
    return 1


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


def _jpeg_decode(data: bytes, size: int | None, mode: str, convert: bool) -> tuple[np.ndarray, tuple[int, int]]:
    import simplejpeg

    # The header alone on the way that succeeds (about 1 us); the frame's precision, read in
    # Python, only to explain a refusal: libjpeg-turbo's 8-bit decoder decodes 8-bit data only.
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    check_pixel_count(height, width)
    # libjpeg-turbo runs over the whole image once per scan: a 40 KB file of 1,000 scans takes
    # seconds. SOS markers cannot occur inside entropy-coded data (0xFF is stuffed there).
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise ImageDecodeError(f"JPEG has {scans:,} scans, more than any radiograph needs ({MAX_JPEG_SCANS}); not decoded")
    if not convert and colorspace not in ("Gray", "GRAY"):
        _refuse_jpeg(data)
    min_h, min_w = _min_decoded(size, mode, height, width)
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=min_h, min_width=min_w)
    except ValueError:
        if _jpeg_frame(data)[0] != 8 and not convert:
            _refuse_jpeg(data)
        raise
    return (image[:, :, 0] if image.ndim == 3 else image), (height, width)


def _refuse_jpeg(data: bytes) -> None:
    info = _jpeg_info(data)
    raise ImageDecodeError(f"JPEG has {info.channels} channels at {info.bits} bits; expected 1 channel at 8 bits (convert=True to accept)")


def _png_info(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageDecodeError("PNG without an IHDR header (truncated?)")
    width, height, bits, color_type = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type, 0)
    return ImageInfo("png", width, height, channels, bits)


def _png_decode(data: bytes, size: int | None, mode: str, convert: bool) -> tuple[np.ndarray, tuple[int, int]]:
    image = _png_pixels(data, convert)
    return image, (image.shape[0], image.shape[1])


def _png_pixels(data: bytes, convert: bool) -> np.ndarray:
    from PIL import Image

    info = _png_info(data)
    check_pixel_count(info.height, info.width)
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
    return ImageInfo("dicom", int(dataset.Columns), int(dataset.Rows), int(dataset.get("SamplesPerPixel", 1)), int(dataset.get("BitsStored", 0) or 0))


def _dicom_decode(data: bytes, size: int | None, mode: str, convert: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """DICOM as displayed (modality, VOI, MONOCHROME1 inverted), float32 in [0, 1]; see chexpert.dicom."""
    from chexpert import dicom

    image = dicom.display(dicom.read(data))
    return image, (image.shape[0], image.shape[1])


_INFO: Final[dict[str, Callable[[bytes], ImageInfo]]] = {"jpeg": _jpeg_info, "png": _png_info, "dicom": _dicom_info}
# Each decoder gives the pixels (perhaps reduced while decoding) and the source's (height, width).
_DECODE: Final[dict[str, Callable[[bytes, int | None, str, bool], tuple[np.ndarray, tuple[int, int]]]]] = {
    "jpeg": _jpeg_decode,
    "png": _png_decode,
    "dicom": _dicom_decode,
}
