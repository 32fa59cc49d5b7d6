"""chexpert: read, verify, prepare, load and score the CheXpert chest radiograph dataset.

>>> import chexpert
>>> release = chexpert.open("~/data/CheXpert-v1.0-small.zip")
>>> train = release.index("train")
>>> targets = chexpert.apply_policy("u-ones", train)
>>> targets.targets.shape
(27, 14)
"""

from __future__ import annotations

import importlib
from typing import Any

from chexpert.discover import open_dataset as open
from chexpert.errors import (
    AnnotationError,
    ChexpertError,
    CSVFormatError,
    ImageDecodeError,
    ImageReadError,
    InvalidArgumentError,
    Problem,
    ReleaseNotFoundError,
    StaleStoreError,
    StoreError,
)
from chexpert.index import Index, read_csv
from chexpert.release import Release
from chexpert.schema import COMPETITION_TASKS, OBSERVATIONS, Code
from chexpert.verify import verify  # eager: the function must shadow the module of the same name
from chexpert.version import __version__ as __version__  # defined below every module, which read it there

# Scoring lives in the subpackage chexpert.evaluate: `from chexpert.evaluate import evaluate, compare`.

# Heavier parts load on first use, so that `import chexpert` stays quick.
_LAZY: dict[str, tuple[str, str]] = {
    "synthesize": ("chexpert.synth", "synthesize"),
    "Policy": ("chexpert.policy", "Policy"),
    "apply_policy": ("chexpert.policy", "apply"),
    "select": ("chexpert.selection", "select"),
    "deduplicate": ("chexpert.selection", "deduplicate"),
    "split_patients": ("chexpert.selection", "split_patients"),
    "kfold": ("chexpert.selection", "kfold"),
    "prepare": ("chexpert.store", "prepare"),
    "open_store": ("chexpert.store", "open_store"),
    "Store": ("chexpert.store", "Store"),
    "read_masks": ("chexpert.localize", "read_masks"),
    "overlay": ("chexpert.localize", "overlay"),
    "label_report": ("chexpert.labeler", "label_report"),
}

__all__ = [
    "open",
    "Release",
    "Index",
    "read_csv",
    "OBSERVATIONS",
    "COMPETITION_TASKS",
    "Code",
    "ChexpertError",
    "CSVFormatError",
    "ImageDecodeError",
    "ImageReadError",
    "Problem",
    "ReleaseNotFoundError",
    "StoreError",
    "StaleStoreError",
    "verify",
    "InvalidArgumentError",
    "AnnotationError",
    # loaded on first use (_LAZY)
    "synthesize",
    "Policy",
    "apply_policy",
    "select",
    "deduplicate",
    "split_patients",
    "kfold",
    "prepare",
    "open_store",
    "Store",
    "read_masks",
    "overlay",
    "label_report",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chexpert' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
