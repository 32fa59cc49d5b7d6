"""Prepared store: every selected image decoded once, resized, and kept as uint8 pixels on disk.

A store is a folder that numpy alone can read (format version 2)::

    images.npy     (N, size, size) uint8, C order: np.load(STORE / "images.npy", mmap_mode="r")
    index.npz      the Index columns with plain dtypes (``path`` as UTF-8 fixed-width bytes);
                   row i describes images[i]
    manifest.json  format and version, the store's id, parameters, source fingerprint, producing
                   code, every row that could not be read (skipped or blanked), the size and
                   SHA-256 of index.npz, and a checksum of every block of rows of images.npy
                   (:data:`CHECKSUM`); written last, by rename

A folder without ``manifest.json`` is not a store. While :func:`prepare` runs it also holds
``.plan.json`` (the manifest to be, so that a re-run knows whether it may resume) and files whose
names carry the plan's id: ``.images.ID.npy`` (the pixels, renamed ``images.npy`` when finished),
``.journal.ID`` (one JSON line per finished range of rows, with each row's digest) and
``*.ID.tmp``. Pixels go straight into the preallocated images file; a range is journaled only
after its pixels are written and synced, so a run killed at any moment (SIGKILL, a full disk,
Ctrl-C) leaves either nothing of value or a state that the next run with the same arguments
resumes, finishing only the missing ranges. Every row's bytes depend only on its image and the
parameters, and checksums cover fixed blocks of rows (a number that depends on the size alone), so
a resumed store is byte-identical to an uninterrupted one, checksums included.

``prepare`` removes or replaces only files it can prove it wrote: the plan and manifest (JSON of
this format), files named with their id, and ``images.npy`` / ``index.npz`` carrying the headers
it writes for that plan or manifest. Anything else in the folder is refused, never deleted.

>>> store = prepare("~/data/CheXpert-v1.0-small", "~/data/store-320", size=320, workers=2)
>>> store.images.shape, store.images.dtype  # (223414, 320, 320) for the real small release
((128, 320, 320), dtype('uint8'))

The package, by concern, each module importing only those above it in this list (no circles)::

    identity.py  what a store was made from: source fingerprint, producing code, what changed
    format.py    file names, manifest, the opened Store, open_store / verify_store / reopen_images,
                 .npy headers, digests and checksums, index.npz
    folder.py    the folder: which entries prepare may prove it wrote, the lock, atomic files,
                 write errors naming the store
    writer.py    prepare: plan, decode in workers into the images file, journal, resume, finish

The code fingerprint (identity) covers the writer's ``decode_range`` by reading writer.py as text,
so identity stays at the bottom. Names used between these modules are public in the module that
defines them; this package re-exports the public API.
"""

from __future__ import annotations

from chexpert.store.format import (
    CHECKSUM,
    FORMAT,
    FORMAT_VERSION,
    IMAGES,
    INDEX,
    MANIFEST,
    StaleStoreWarning,
    Store,
    StoreIdentity,
    open_store,
    reopen_images,
    verify_store,
)
from chexpert.store.identity import source_fingerprint
from chexpert.store.writer import ON_ERROR, prepare

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ON_ERROR",
    "Store",
    "StoreIdentity",
    "StaleStoreWarning",
    "prepare",
    "open_store",
    "verify_store",
    "reopen_images",
    "source_fingerprint",
    # The names of a store's files and of its checksum, for code that reads them directly.
    "CHECKSUM",
    "IMAGES",
    "INDEX",
    "MANIFEST",
]
