"""Loaders for deep learning frameworks, all over the same index, store and sampling order.

Each framework lives in its own module, imported only when used, so that chexpert does not
need any of them installed:

- :mod:`chexpert.frameworks.torch`: map-style Datasets over a prepared store or the JPEGs,
  and a DataLoader that fetches whole batches with one gather;
- :mod:`chexpert.frameworks.numpy`: a NumPy iterator over a store, sharded by JAX process if asked;
- :mod:`chexpert.frameworks.tf`: a tf.data pipeline reading uint8 batches from a store;
- :mod:`chexpert.frameworks.tfds`: the TFDS builder ``chexpert_kit`` (catalog-identical config and richer ones);
- :mod:`chexpert.frameworks.hf`: a local Hugging Face ``datasets.Dataset`` (never uploaded);
- :mod:`chexpert.frameworks.webdataset`: tar shards of a store for the ``webdataset`` library.

Every loader draws its batches from :class:`chexpert.sampling.EpochSampler`, so the same seed and
epoch give the same batches in every framework.
"""

from __future__ import annotations

__all__: list[str] = []
