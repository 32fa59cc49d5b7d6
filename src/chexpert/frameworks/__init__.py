"""Loaders for deep learning frameworks, all over the same index, store and sampling order.

Each framework lives in its own module, imported only when used, so that chexpert does not
need any of them installed:

- :mod:`chexpert.frameworks.torch`: map-style Datasets over a prepared store or the JPEGs,
  and a DataLoader that fetches whole batches with one gather;
- :mod:`chexpert.frameworks.numpy`: a NumPy iterator over a store, sharded by JAX process if asked.

Every loader draws its batches from :class:`chexpert.sampling.EpochSampler`, so the same seed and
epoch give the same batches in every framework.
"""

from __future__ import annotations

__all__: list[str] = []
