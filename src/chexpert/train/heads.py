"""The output layer's layout, loss and probabilities: one logit per binary target, three per U-MultiClass one.

Column j of a policy's targets (``Targets.observations[j]``) owns one logit when it is binary and
three (negative, positive, uncertain: ``chexpert.policy.*_CLASS``) when it is U-MultiClass, in
column order. The loss weighs every counted (image, observation) entry alike: masked binary
cross-entropy for binary columns, cross-entropy ignoring ``IGNORE_CLASS`` (-100) for three-way ones.

At inference a three-way column's probability is that of the positive class after a softmax
restricted to the positive and negative classes, as the CheXpert paper did for U-MultiClass.

>>> head = Head(("Edema", "Cardiomegaly"), (False, True))
>>> head.outputs
4
>>> head.probabilities(torch.zeros(1, 4)).tolist()
[[0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from chexpert.errors import InvalidArgumentError
from chexpert.policy import IGNORE_CLASS, NEGATIVE_CLASS, POSITIVE_CLASS, Targets

__all__ = ["Head"]


@dataclass(frozen=True)
class Head:
    """Output layout for targets ``observations``; ``multiclass[j]`` marks U-MultiClass columns."""

    observations: tuple[str, ...]
    multiclass: tuple[bool, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "observations", tuple(self.observations))
        object.__setattr__(self, "multiclass", tuple(bool(m) for m in self.multiclass))
        if len(self.observations) != len(self.multiclass):
            raise InvalidArgumentError("observations and multiclass must have one entry per target column")

    @classmethod
    def of(cls, targets: Targets) -> Head:
        """The head for a policy's :class:`~chexpert.policy.Targets`."""
        return cls(targets.observations, tuple(np.asarray(targets.multiclass, dtype=bool).tolist()))

    @property
    def outputs(self) -> int:
        """Logits per image."""
        return len(self.observations) + 2 * sum(self.multiclass)

    def _positions(self) -> tuple[list[int], list[int], list[int]]:
        """(logit of each binary column, first logit of each three-way column, their column numbers)."""
        binary, threeway, columns = [], [], []
        at = 0
        for j, multi in enumerate(self.multiclass):
            if multi:
                threeway.append(at)
                columns.append(j)
                at += 3
            else:
                binary.append(at)
                at += 1
        return binary, threeway, columns

    def loss(self, logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean loss over the counted entries of ``batch`` (``targets``, ``mask``, ``classes``), in float32."""
        logits = logits.float()
        binary, threeway, columns = self._positions()
        total = logits.new_zeros(())
        counted = logits.new_zeros(())
        if binary:
            b_columns = [j for j, m in enumerate(self.multiclass) if not m]
            mask = batch["mask"][:, b_columns].to(logits.dtype)
            losses = F.binary_cross_entropy_with_logits(logits[:, binary], batch["targets"][:, b_columns].to(logits.dtype), reduction="none")
            total = total + (losses * mask).sum()
            counted = counted + mask.sum()
        if threeway:
            classes = batch["classes"][:, columns]
            grouped = logits[:, _expand(threeway)].reshape(len(logits), len(threeway), 3)
            losses = F.cross_entropy(grouped.permute(0, 2, 1), classes, ignore_index=IGNORE_CLASS, reduction="sum")
            total = total + losses
            counted = counted + (classes != IGNORE_CLASS).sum()
        return total / counted.clamp(min=1)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, observations) probability of the positive state per column, float32."""
        logits = logits.float()
        binary, threeway, columns = self._positions()
        out = logits.new_empty((len(logits), len(self.observations)))
        if binary:
            out[:, [j for j, m in enumerate(self.multiclass) if not m]] = torch.sigmoid(logits[:, binary])
        if threeway:
            grouped = logits[:, _expand(threeway)].reshape(len(logits), len(threeway), 3)
            out[:, columns] = torch.sigmoid(grouped[..., POSITIVE_CLASS] - grouped[..., NEGATIVE_CLASS])
        return out

    def to_json(self) -> dict[str, list[object]]:
        """JSON-ready form; ``Head(**data)`` reads it back."""
        return {"observations": list(self.observations), "multiclass": list(self.multiclass)}


def _expand(firsts: Sequence[int]) -> list[int]:
    return [first + k for first in firsts for k in range(3)]
