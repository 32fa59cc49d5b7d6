"""Look-alike CheXpert releases: the real format and statistics, synthetic pictures.

``synthesize`` writes a tree that a reader cannot tell apart from a real download by its format:
the exact CSV header and value spellings, the path scheme, baseline grayscale JPEGs of the real
sizes, label and metadata statistics like the real ``train.csv``, and optionally the zip or the
Stanford AIMI batch-zip layout. The pictures are drawn from the labels (an enlarged heart shadow
for Cardiomegaly, a whitened costophrenic angle for Pleural Effusion, a bright tube for Support
Devices, ...) so that a model can learn them. It is the demo's data and the tests' fixture.

Everything is derived from ``(seed, split, patient[, study[, view]])``, so a patient's rows and
pictures do not depend on how many patients were asked for, nor on the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np

from chexpert import schema
from chexpert.errors import InvalidArgumentError
from chexpert.fileio import create_folder
from chexpert.release import SYNTH_MARKER
from chexpert.synth.place import claim_targets, marker_bytes, put_in_place, warn_leftovers
from chexpert.synth.rows import GROUNDTRUTH_COLUMNS, csv_bytes, groundtruth_rows, synth_rows
from chexpert.synth.write import ZipWriter, render_one, run_jobs, write_one
from chexpert.validation import check_choice, check_int

__all__ = ["RELEASES", "LAYOUTS", "AIMI_BATCHES", "synthesize"]

LAYOUTS: Final[tuple[str, ...]] = ("folder", "zip", "aimi")
#: What ``synthesize`` can write: an image release, or the test set's labels with CheXlocalize ("test").
RELEASES: Final[tuple[str, ...]] = (*schema.RELEASE_KINDS, "test")

#: Top folder (and zip stem) of each AIMI batch; the first holds valid/, the CSVs (and test/).
AIMI_BATCHES: Final[tuple[str, ...]] = (
    "CheXpert-v1.0 batch 1 (validate & csv)",
    "CheXpert-v1.0 batch 2 (train 1)",
    "CheXpert-v1.0 batch 3 (train 2)",
    "CheXpert-v1.0 batch 4 (train 3)",
)


def _plan(release: str, patients: int, valid_patients: int, test_patients: int, seed: int) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """The CSV files by name, and the rows of the images in the order they are written."""
    train = synth_rows("train", patients=patients, seed=seed, release=release)
    valid = synth_rows("valid", patients=valid_patients, seed=seed, release=release)
    test = synth_rows("test", patients=test_patients, seed=seed, release=release)
    csvs = {"train.csv": csv_bytes(train), "valid.csv": csv_bytes(valid)}
    if test:
        csvs["test_labels.csv"] = csv_bytes(test)
        csvs["groundtruth.csv"] = csv_bytes(groundtruth_rows(test), columns=GROUNDTRUTH_COLUMNS)
    return csvs, valid + test + train


def _aimi_place(name: str, batch_of: Mapping[int, int]) -> tuple[str, str]:
    """(batch, member) of a release file in the AIMI download: batch 1 holds the CSVs, valid/
    (and test/); training patients sit directly in the top folder of batches 2 to 4."""
    if not name.startswith("train/"):
        return AIMI_BATCHES[0], f"{AIMI_BATCHES[0]}/{name}"
    patient = int(name.split("/")[1][len("patient") :])
    batch = AIMI_BATCHES[batch_of[patient]]
    return batch, f"{batch}/{name[len('train/') :]}"


@dataclasses.dataclass(frozen=True)
class _Contents:
    """What one look-alike release holds, whichever layout writes it."""

    csvs: Mapping[str, bytes]
    images: Sequence[dict[str, str]]
    image_names: Sequence[str]
    seed: int
    release: str
    patients_by_split: dict[str, int]
    workers: int
    progress: Callable[[int, int], None] | None

    def marker(self, written: Mapping[str, list[int]]) -> bytes:
        return marker_bytes(self.release, self.seed, self.patients_by_split, self.csvs, written)


def _write_folder(root: pathlib.Path, contents: _Contents) -> None:
    """The folder layout: the release's tree at ``root`` (in staging), with synth's marker beside the CSVs."""
    for folder in sorted({str(pathlib.PurePosixPath(n).parent) for n in contents.image_names}):
        (root / folder).mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    for name, data in contents.csvs.items():
        (root / name).write_bytes(data)
    jobs = [(r, contents.seed, contents.release, str(root / n)) for r, n in zip(contents.images, contents.image_names, strict=True)]
    written = {name: [len(data), zlib.crc32(data)] for name, data in contents.csvs.items()}
    for name, entry in zip(contents.image_names, run_jobs(write_one, jobs, contents.workers, contents.progress), strict=True):
        written[name] = entry
    (root / SYNTH_MARKER).write_bytes(contents.marker(written))


def _write_zips(staging: pathlib.Path, names: Sequence[str], place: Callable[[str], tuple[str, str]], contents: _Contents) -> None:
    """The zip and AIMI layouts: the zips ``names`` in ``staging``; ``place(name)`` gives a file's (zip stem, member)."""
    writers = {n[: -len(".zip")]: ZipWriter(staging / n) for n in names}
    try:
        for stem, writer in writers.items():
            writer.add(f"{stem}/")
        for name, data in contents.csvs.items():
            stem, member = place(name)
            writers[stem].add(member, data)
        jobs = [(r, contents.seed, contents.release) for r in contents.images]
        for name, data in zip(contents.image_names, run_jobs(render_one, jobs, contents.workers, contents.progress), strict=True):
            stem, member = place(name)
            writers[stem].add(member, data)
        for stem, writer in writers.items():
            writer.add(f"{stem}/{SYNTH_MARKER}", contents.marker(writer.files))
    finally:
        for writer in writers.values():
            writer.close()


def synthesize(
    out: str | os.PathLike[str],
    *,
    release: str = "small",
    patients: int = 100,
    seed: int = 0,
    layout: str = "folder",
    valid_patients: int | None = None,
    test_patients: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pathlib.Path:
    """Write a look-alike CheXpert release into ``out`` and return what to pass to ``chexpert.open``.

    ``layout="folder"`` gives ``out/CheXpert-v1.0-small/`` (or ``CheXpert-v1.0/``), ``"zip"``
    the same tree in ``out/CheXpert-v1.0-small.zip`` (JPEGs stored), and ``"aimi"`` (full release
    only) the four Stanford AIMI batch zips in ``out``, which is then the path returned.
    ``patients`` training patients are numbered from 1, ``valid_patients`` (default
    ``max(2, patients // 50)``) from 64541, ``test_patients`` from 64741 (when above 0 they add
    ``test/``, ``test_labels.csv`` and ``groundtruth.csv``). The output is byte-identical for a
    seed, whatever ``workers``. ``progress(done, total)`` is called after each image. An existing
    release in ``out`` is an error unless ``overwrite``, which replaces only what synth itself wrote
    (as the :data:`~chexpert.release.SYNTH_MARKER` it writes beside the CSVs records, file by file):
    anything else, a real release above all, is refused and left as it is.

    ``release="test"`` writes the released test set's labels and a look-alike CheXlocalize instead
    (see :mod:`chexpert.synth.testset`; ``patients`` are then test patients) and returns ``out``.

    >>> root = synthesize(tmp_path, patients=20, seed=1)
    >>> root.name
    'CheXpert-v1.0-small'
    """
    check_choice("release", release, RELEASES)
    if release == "test":
        from chexpert.synth.testset import synthesize_test

        if layout != "folder":
            raise InvalidArgumentError("release 'test' is written as folders (CheXlocalize/ and chexpert-test-set-labels/); use layout='folder'")
        return synthesize_test(out, patients=patients, valid_patients=valid_patients, seed=seed, workers=workers, overwrite=overwrite, progress=progress)
    check_choice("layout", layout, LAYOUTS)
    if layout == "aimi" and release != "full":
        raise InvalidArgumentError("layout 'aimi' is how the full release is downloaded; use release='full'")
    if valid_patients is None:
        valid_patients = min(max(2, patients // 50), 200)
    for name, value, split in (("patients", patients, "train"), ("valid_patients", valid_patients, "valid"), ("test_patients", test_patients, "test")):
        first, last = schema.PATIENT_RANGES[split]
        check_int(name, value, low=1 if split == "train" else 0, high=last - first + 1)
    check_int("workers", workers, low=1, high=1024)

    out = pathlib.Path(out)
    top = schema.RELEASE_DIRS[release]
    names = {"folder": [top], "zip": [f"{top}.zip"], "aimi": [f"{b}.zip" for b in AIMI_BATCHES]}[layout]
    claim_targets(out, names, overwrite)
    csvs, images = _plan(release, patients, valid_patients, test_patients, seed)
    contents = _Contents(
        csvs=csvs,
        images=images,
        image_names=[schema.strip_release_prefix(r["Path"]) for r in images],
        seed=seed,
        release=release,
        patients_by_split={"train": patients, "valid": valid_patients, "test": test_patients},
        workers=workers,
        progress=progress,
    )

    out.mkdir(parents=True, exist_ok=True)
    warn_leftovers(out)
    # Build under a temporary name beside the target and move into place at the end, so that an
    # interrupted run never leaves something that looks like a complete release.
    staging = create_folder(out, ".synth-")
    try:
        if layout == "folder":
            _write_folder(staging / top, contents)
        else:
            if layout == "zip":

                def place(name: str) -> tuple[str, str]:
                    return top, f"{top}/{name}"
            else:
                chunks = np.array_split(np.arange(1, patients + 1), 3)
                batch_of = {int(p): i + 1 for i, chunk in enumerate(chunks) for p in chunk}

                def place(name: str) -> tuple[str, str]:
                    return _aimi_place(name, batch_of)

            _write_zips(staging, names, place, contents)
        put_in_place(out, staging, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out if layout == "aimi" else out / names[0]
