"""Small files that would decode to gigabytes are refused from their headers, before decoding.

A deflated DICOM inflates no further than its header allows; a multi-frame DICOM, a codestream
larger than its header, odd Bits Allocated or Number of Frames are refused before pydicom decodes
a pixel; an extreme aspect ratio under ``crop`` never makes the enlarged image. Cases that would
take gigabytes on a regression run in a subprocess with a memory limit.
"""

from __future__ import annotations

import io
import resource
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble

from chexpert import dicom, imaging, schema
from chexpert.errors import ImageDecodeError
from chexpert.synth.dicom import DicomParams, dicom_bytes, jpeg_lossless

FILE = "train/patient00001/study1/view1_frontal.dcm"
_PIXEL_DATA = b"\xe0\x7f\x10\x00"


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if pydicom is asked to decode pixel data: refusals come from the header."""

    def decoded(self: object) -> None:
        pytest.fail("pixel data was decoded before the header was checked")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(decoded))


def _rewritten(data: bytes, **elements: object) -> bytes:
    """``data`` with header elements replaced (None deletes one), pixel data as it was."""
    ds = dicom.read(data)
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _deflated_bomb(rows: int, columns: int, inflated: int, *, frames: int | None = None) -> bytes:
    """A Deflated Explicit VR Little Endian file whose header declares ``rows`` x ``columns`` 16-bit
    pixels and whose data set inflates to about ``inflated`` bytes (pixel data of zeros), built
    from repeated deflate blocks so that it costs no time to make."""
    header: dict[str, object] = {"NumberOfFrames": frames} if frames else {}
    plain = dicom_bytes(np.zeros((4, 4), int), DicomParams(syntax="explicit"), header=header)
    fp = io.BytesIO(plain)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    body = plain[fp.tell() :]
    head = body[: body.index(_PIXEL_DATA)]
    template = dicom_bytes(np.zeros((4, 4), int), DicomParams(syntax="deflated"), header=header)
    fp = io.BytesIO(template)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    meta = template[: fp.tell()]
    ds = pydicom.dcmread(io.BytesIO(head), force=True)
    ds.Rows, ds.Columns = rows, columns
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(buffer, ds)
    pixel_header = _PIXEL_DATA + b"OW\x00\x00" + (inflated & ~1).to_bytes(4, "little")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = deflater.compress(buffer.getvalue() + pixel_header) + deflater.flush(zlib.Z_FULL_FLUSH)
    block = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    again = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # each full flush starts afresh: the block repeats exactly
    return meta + start + block * (inflated >> 20) + deflater.flush()


def test_a_small_deflated_file_decodes() -> None:
    data = dicom_bytes(np.arange(64 * 64).reshape(64, 64) % 4096, DicomParams(syntax="deflated"))
    plain = dicom_bytes(np.arange(64 * 64).reshape(64, 64) % 4096, DicomParams(syntax="explicit"))
    np.testing.assert_array_equal(imaging.decode(data), imaging.decode(plain))
    assert dicom.transfer_syntax(dicom.read(data)) == "1.2.840.10008.1.2.1.99"


def test_a_deflated_bomb_inflates_no_further_than_its_header_allows() -> None:
    """1 MB that inflates to 1 GiB, its header declaring 64 x 64 pixels: refused after a few MB
    (before: inflated whole, then read)."""
    data = _deflated_bomb(64, 64, 1 << 30)
    assert len(data) < 2 << 20
    with pytest.raises(ImageDecodeError, match="the deflated data set inflates to more than [0-9,]+ bytes, more than its header declares") as caught:
        _bounded(lambda: imaging.decode(data, file=FILE))
    assert caught.value.file == FILE


def test_a_deflated_multi_frame_header_is_refused_before_inflating(no_decoding: None) -> None:
    data = _deflated_bomb(8192, 8192, 1 << 30, frames=30)
    with pytest.raises(ImageDecodeError, match="30 frames"):
        _bounded(lambda: imaging.decode(data, file=FILE))


def _bounded(call: Callable[[], object]) -> None:
    """Run ``call`` with the inflation it may do measured: at most a few MB beyond the header's."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        call()
    finally:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown < 256 << 10, f"grew by {grown} KiB"  # KiB on Linux: under 256 MiB of the 1 GiB


@pytest.mark.parametrize(
    ("elements", "message"),
    [
        ({"NumberOfFrames": 30, "Rows": 8192, "Columns": 8192}, "30 frames; a radiograph is one frame"),
        ({"NumberOfFrames": 2}, "2 frames"),
        ({"NumberOfFrames": 0}, "declares 0 frames"),
        ({"NumberOfFrames": -3}, "declares -3 frames"),
        ({"NumberOfFrames": 10**12}, "1000000000000 frames"),
        ({"BitsAllocated": 12}, "12 bits allocated"),
        ({"BitsAllocated": 0}, "0 bits allocated"),
        ({"Rows": 0}, "0 rows"),
        ({"SamplesPerPixel": 3}, "3 samples per pixel"),
        ({"Rows": 65535, "Columns": 65535}, "declares 65535x65535 pixels"),
    ],
)
@pytest.mark.parametrize("syntax", ["rle", "explicit"])
def test_a_header_that_declares_too_much_is_refused_before_decoding(no_decoding: None, syntax: str, elements: dict[str, int], message: str) -> None:
    """Before: a 30-frame RLE file of 8192 x 8192 frames was decoded (4.5 GB, 20 s), then refused."""
    data = _rewritten(dicom_bytes(np.zeros((16, 16), int), DicomParams(syntax=syntax)), **elements)
    with pytest.raises(ImageDecodeError, match=message) as caught:
        imaging.decode(data, file=FILE)
    assert caught.value.file == FILE


def test_a_number_of_frames_that_is_no_number_is_named() -> None:
    data = _rewritten(dicom_bytes(np.zeros((16, 16), int), DicomParams(syntax="rle")), NumberOfFrames="1.5")
    with pytest.raises(ImageDecodeError, match="NumberOfFrames is not a whole number"):
        imaging.decode(data, file=FILE)
    ok = _rewritten(dicom_bytes(np.zeros((16, 16), int), DicomParams(syntax="rle")), NumberOfFrames=1)
    assert imaging.decode(ok).shape == (16, 16)


def test_a_codestream_larger_than_its_header_is_refused_before_decoding(no_decoding: None) -> None:
    """A JPEG inside a DICOM is decoded at the size it declares, whatever Rows and Columns say."""
    data = dicom_bytes(np.zeros((16, 16), int), DicomParams(syntax="jpeg-lossless"))
    ds = dicom.read(data)
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([jpeg_lossless(np.zeros((300, 200), np.int64), 12)])
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match="compressed pixel data declares 200x300 pixels, the header 16x16"):
        imaging.decode(out.getvalue(), file=FILE)


_SLIVER = """
import resource, sys
import numpy as np, simplejpeg
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from chexpert import imaging
h, w = int(sys.argv[1]), int(sys.argv[2])
picture = (np.arange(h * w) % 251).astype(np.uint8).reshape(h, w, 1)
data = simplejpeg.encode_jpeg(picture, quality=95, colorspace="GRAY")
for mode in imaging.RESIZE_MODES:
    out = imaging.decode_resized(data, 320, mode)
    assert out.shape == (320, 320), out.shape
print("ok")
"""


@pytest.mark.parametrize(("h", "w"), [(1, 60_000), (60_000, 1), (3, 65_000)])
def test_an_extreme_aspect_ratio_never_makes_a_huge_intermediate(h: int, w: int) -> None:
    """Before: a JPEG of 1 x 60,000 pixels under crop allocated a 5.7 GiB intermediate (a
    MemoryError traceback even with --on-error skip). Run with 2 GiB of address space."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_SLIVER), str(h), str(w)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr[-2000:]


@pytest.mark.parametrize(("h", "w", "size"), [(3, 50, 64), (40, 7, 100), (1, 30, 16), (10, 1000, 32), (7, 13, 50)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_direct_crop_matches_enlarging_then_cutting(h: int, w: int, size: int, dtype: type) -> None:
    rng = np.random.default_rng(h * w)
    image: np.ndarray = rng.integers(0, 256, (h, w)).astype(dtype)
    if dtype is np.float32:
        image /= 255
    scale = size / min(h, w)
    enlarged = max(size, round(h * scale)), max(size, round(w * scale))
    top, left = (enlarged[0] - size) // 2, (enlarged[1] - size) // 2
    cut = imaging._scale(image, np.empty(enlarged, dtype), image.shape)[top : top + size, left : left + size]
    direct: np.ndarray = np.empty((size, size), dtype)
    imaging._crop_enlarged(image, direct, enlarged, top, left)
    tolerance = 1 if dtype is np.uint8 else 1e-6  # OpenCV's fixed-point rounding of 8-bit samples
    assert np.abs(cut.astype(np.float64) - direct.astype(np.float64)).max() <= tolerance


def test_a_jpeg_of_a_thousand_scans_is_refused_before_decoding() -> None:
    """Each scan is a pass over the whole image: before, a 40 KB file of 1,000 scans took 12 s
    (2000 x 2000) and was then refused for its inconsistent progression."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    assert imaging.decode(data).shape == (200, 200)  # a progressive JPEG of a few scans is fine
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    bomb = data[:end] + data[last:end] * 1000 + data[end:]
    with pytest.raises(ImageDecodeError, match=f"JPEG has 1,00[0-9] scans, more than any radiograph needs \\({schema.MAX_JPEG_SCANS}\\)") as caught:
        imaging.decode(bomb, file="view1_frontal.jpg")
    assert caught.value.file == "view1_frontal.jpg"


def test_a_sixteen_bit_png_declaring_too_many_pixels_is_refused() -> None:
    import struct

    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 60000, 60000, 16, 0, 0, 0, 0) + bytes(4)
    with pytest.raises(ImageDecodeError, match="declares 60000x60000 pixels"):
        imaging.decode(png)
