"""chexpert: read, verify, prepare, load and score the CheXpert chest radiograph dataset."""

from __future__ import annotations

__version__ = "0.1.0"
