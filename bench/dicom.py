"""Reading DICOM files on one core: chexpert's display chain vs pydicom's own loop.

Writes 1,000 look-alike DICOMs (the mix ``chexpert synth --release plus`` writes: CR/DX,
MONOCHROME1/2, 12-16 bits, native, deflated, RLE, JPEG Lossless, JPEG 2000; 320 x ~390 pixels),
then times on one core:

- pydicom: ``dcmread`` + ``pixel_array`` (stored values only, no display transforms);
- pydicom + LUTs: the same plus ``apply_modality_lut``, ``apply_voi_lut`` and MONOCHROME1 inversion,
  to uint8 (what a user of pydicom writes to get the picture);
- chexpert: ``chexpert.imaging.decode`` (read, decode, modality, VOI, inversion, uint8);
- chexpert at 224: ``decode_resized(..., 224)`` as ``prepare`` runs it.

Prints seconds, files per second and ratios. Run: python bench/dicom.py [--files 1000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of


def _files(n: int, folder: Path) -> list[Path]:
    from chexpert import synth
    from chexpert.synth.dicom import draw_params, render_dicom

    rows = synth.synth_rows("train", patients=max(1, n // 3), seed=0)
    paths = []
    for i in range(n):
        row = rows[i % len(rows)]
        picture = synth.render_pixels(row, seed=0, release="small")
        params = draw_params(np.random.default_rng([0, i]))
        path = folder / f"{i:05d}.dcm"
        path.write_bytes(render_dicom(picture, params, uid_seed=[str(i)]))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from chexpert import imaging

    with tempfile.TemporaryDirectory() as tmp:
        paths = _files(args.files, Path(tmp))
        blobs = [p.read_bytes() for p in paths]
        syntaxes: dict[str, int] = {}
        for blob in blobs:
            name = pydicom.dcmread(io.BytesIO(blob), force=True, stop_before_pixels=True).file_meta.get("TransferSyntaxUID", "none (no file meta)")
            syntaxes[getattr(name, "name", str(name))] = syntaxes.get(getattr(name, "name", str(name)), 0) + 1

        def read(p: Path) -> pydicom.Dataset:
            # Files without file meta (3% of the mix) need their transfer syntax set before pixel_array works.
            ds = pydicom.dcmread(p, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                implicit, _ = ds.original_encoding
                ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
            return ds

        def pydicom_loop() -> None:
            for p in paths:
                read(p).pixel_array  # noqa: B018

        def pydicom_luts() -> None:
            for p in paths:
                ds = read(p)
                values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float64)
                lo, hi = values.min(), values.max()
                shown = (values - lo) / max(hi - lo, 1e-6)
                if ds.PhotometricInterpretation == "MONOCHROME1":
                    shown = 1 - shown
                np.rint(shown * 255).astype(np.uint8)

        def chexpert_decode() -> None:
            for p in paths:
                imaging.decode(p.read_bytes(), file=str(p))

        def chexpert_224() -> None:
            for p in paths:
                imaging.decode_resized(p.read_bytes(), 224, "pad", file=str(p))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = {name: best_of(fn, args.repeat) for name, fn in (
                ("pydicom dcmread + pixel_array", pydicom_loop),
                ("pydicom + modality/VOI LUT + invert -> uint8", pydicom_luts),
                ("chexpert imaging.decode (full chain -> uint8)", chexpert_decode),
                ("chexpert decode_resized 224 (prepare's path)", chexpert_224),
            )}  # fmt: skip
    print(f"{args.files} DICOM files, one core; transfer syntaxes: " + ", ".join(f"{k} {v}" for k, v in sorted(syntaxes.items())))
    base = results["pydicom dcmread + pixel_array"]
    print(f"{'reader':48s} {'seconds':>8s} {'files/s':>9s} {'vs pydicom loop':>16s}")
    for name, seconds in results.items():
        print(f"{name:48s} {seconds:8.2f} {args.files / seconds:9.0f} {base / seconds:15.2f}x")


if __name__ == "__main__":
    main()
