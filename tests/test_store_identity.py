"""A store prepared again under a running loader: workers that map it anew must not mix new pixels with old labels."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from chexpert.errors import StoreError
from chexpert.frameworks.numpy import StoreArrays
from chexpert.release import open_release
from chexpert.store import StoreIdentity, open_store, prepare, reopen_images

SIZE = 32


def _prepare_other_rows(small_release: Path, out: Path) -> None:
    """The same folder prepared again with as many rows (so the same shape), but other ones."""
    index = open_release(small_release).index()
    prepare(index.take(np.arange(len(index))[::-1]), out, size=SIZE, overwrite=True)


def test_a_pickled_store_is_small_and_maps_the_same_file(small_release: Path, tmp_path: Path) -> None:
    store = prepare(small_release, tmp_path / "store", size=SIZE)
    assert isinstance(store.identity, StoreIdentity)
    data = pickle.dumps(store)
    assert len(data) < store.images.nbytes // 4  # the path and identity, not the pixels
    again = pickle.loads(data)
    np.testing.assert_array_equal(again.images, store.images)
    assert again.identity == store.identity and not again.images.flags.writeable


def test_workers_refuse_a_store_prepared_again(small_release: Path, tmp_path: Path) -> None:
    """Before: StoreArrays reopened images.npy by path, whatever it now held."""
    out = tmp_path / "store"
    store = prepare(small_release, out, size=SIZE)
    arrays = StoreArrays(store, policy="u-ones")
    shipped = pickle.dumps(arrays), pickle.dumps(store)
    np.testing.assert_array_equal(pickle.loads(shipped[0]).images, store.images)  # unchanged: fine
    _prepare_other_rows(small_release, out)
    assert open_store(out).images.shape == store.images.shape
    received = pickle.loads(shipped[0])  # a worker's copy maps the pixels when it first reads them
    with pytest.raises(StoreError, match=rf"{out} changed since it was opened"):
        received.batch(np.arange(4))
    with pytest.raises(StoreError, match=rf"{out} changed since it was opened"):
        pickle.loads(shipped[1])
    with pytest.raises(StoreError, match="changed since it was opened"):
        reopen_images(out, store.identity)
    reopen_images(out, open_store(out).identity)


def test_written_to_or_removed_is_changed_too(small_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    store = prepare(small_release, out, size=SIZE)
    with open(out / "images.npy", "r+b") as f:  # in place: same inode, new mtime
        f.seek(-1, 2)
        f.write(b"\x01")
    with pytest.raises(StoreError, match="changed since it was opened"):
        reopen_images(out, store.identity)
    (out / "manifest.json").unlink()
    with pytest.raises(StoreError, match="changed since it was opened"):
        reopen_images(out, store.identity)


def test_a_spawned_dataloader_worker_raises_instead_of_mixing(small_release: Path, tmp_path: Path) -> None:
    """A real torch DataLoader with spawn workers, as on macOS and Windows, or by choice."""
    pytest.importorskip("torch")
    from chexpert.frameworks.torch import dataloader

    out = tmp_path / "store"
    store = prepare(small_release, out, size=SIZE)
    loader = dataloader(store, batch_size=8, shuffle=False, num_workers=1, multiprocessing_context="spawn")
    first = next(iter(loader))
    np.testing.assert_array_equal(first["image"][:, 0].numpy(), store.images[:8])
    _prepare_other_rows(small_release, out)
    with pytest.raises(StoreError, match=rf"{out} changed since it was opened"):
        next(iter(loader))
