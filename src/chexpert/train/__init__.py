"""The CheXpert paper's baseline as a recipe, on the prepared store: train, resume, validate, ensemble, predict.

Not run as a doctest (the paper's recipe trains for hours; train/run.py and train/inference.py run theirs
on a tiny run):

>>> from chexpert.train import Recipe, train, predict
>>> run = train("~/data/CheXpert-v1.0-small", "runs/u-ones", Recipe(policy="u-ones"))  # doctest: +SKIP
>>> predict(run, "~/data/CheXpert-v1.0-small", split="valid").write("predictions.csv")  # doctest: +SKIP

Modules: ``recipe`` (the frozen configuration and named recipes), ``models`` (networks by name,
local ImageNet weights), ``heads`` (output layout, loss, probabilities incl. U-MultiClass),
``device`` (placement, mixed precision, the GPU feeder), ``distributed`` (torchrun/DDP), ``run``
(the run folder, checkpoints, resumable state), ``log`` (CSV and TensorBoard), ``loop`` (training,
U-SelfTrained), ``inference`` (predictions per image and per study, ensembles). Everything but ``recipe`` needs
PyTorch; they load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chexpert.train.recipe import RECIPES, Recipe, get_recipe

if TYPE_CHECKING:
    from chexpert.train.inference import Predictions, predict
    from chexpert.train.loop import TrainingWarning, train
    from chexpert.train.models import build_model
    from chexpert.train.run import Checkpoint, Run, open_run

__all__ = [
    "Recipe",
    "RECIPES",
    "get_recipe",
    "train",
    "predict",
    "Predictions",
    "open_run",
    "Run",
    "Checkpoint",
    "build_model",
    "TrainingWarning",
]

_LAZY = {
    "train": "loop",
    "TrainingWarning": "loop",
    "predict": "inference",
    "Predictions": "inference",
    "open_run": "run",
    "Run": "run",
    "Checkpoint": "run",
    "build_model": "models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"chexpert.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'chexpert.train' has no attribute {name!r}")
