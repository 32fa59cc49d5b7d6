"""Deep AUC maximisation (Yuan et al. 2021, LibAUC): the multi-label AUC-margin loss and the PESG optimiser.

A re-implementation of LibAUC 2.0.1's ``MultiLabelAUCMLoss`` (version "v1", class ratio from
each batch) and ``PESG`` (mode "sgd"), checked against LibAUC's own numbers in the tests
(``tests/test_train_auc.py``). Re-implemented rather than imported because LibAUC's declared
dependencies (torch_geometric, transformers, ...) are far heavier than these 100 lines, its
``PESG`` draws its reference point from the global random generator (a resumed run could not
repeat it) and prints to stdout, and its loss cannot leave out targets a policy masks (U-Ignore).

The loss scores ``sigmoid(logit)`` of every binary column; targets of 0.5 or more count as
positive. Masked entries count in neither class.

>>> loss = AUCMLoss(5)
>>> optimiser = PESG(torch.nn.Linear(3, 5).parameters(), loss, lr=0.1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["AUCMLoss", "PESG"]


class AUCMLoss(torch.nn.Module):
    """The AUC-margin (squared-hinge) min-max objective for ``tasks`` binary columns, averaged over the columns.

    ``a``, ``b`` (the positives' and negatives' score centres) are minimised and ``alpha``
    maximised by :class:`PESG`; all three are saved with the optimiser's state. As in LibAUC
    2.0.1 (its "v1" loss), the margin enters through PESG's update of ``alpha``, not the loss.

    >>> round(AUCMLoss(1)(torch.tensor([[0.9], [0.1]]), torch.tensor([[1.0], [0.0]])).item(), 4)
    0.205
    """

    def __init__(self, tasks: int, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = float(margin)
        self.a = torch.nn.Parameter(torch.zeros(tasks))
        self.b = torch.nn.Parameter(torch.zeros(tasks))
        self.alpha = torch.nn.Parameter(torch.zeros(tasks))

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of ``scores`` in [0, 1] (B, tasks) against ``targets`` (B, tasks); ``mask`` (bool) leaves entries out."""
        scores = scores.float()
        positive = (targets >= 0.5).float()
        negative = 1.0 - positive
        if mask is None:
            counted = scores.new_full((scores.shape[1],), float(len(scores)))
        else:
            weight = mask.float()
            positive, negative = positive * weight, negative * weight
            counted = weight.sum(dim=0)
        n = counted.clamp(min=1.0)
        p = positive.sum(dim=0) / n  # the batch's positive ratio per task, as LibAUC's imratio=None
        mean_pos = ((scores - self.a) ** 2 * positive).sum(dim=0) / n
        mean_neg = ((scores - self.b) ** 2 * negative).sum(dim=0) / n
        cross = (p * scores * negative - (1 - p) * scores * positive).sum(dim=0) / n
        per_task = (1 - p) * mean_pos + p * mean_neg + 2 * self.alpha * (p * (1 - p) + cross) - p * (1 - p) * self.alpha**2
        return per_task.mean()


class PESG(torch.optim.Optimizer):
    """Proximal epoch stochastic gradient (LibAUC's ``PESG``, mode "sgd") for a model and an :class:`AUCMLoss`.

    Gradients are clipped to ``clip_value``; ``epoch_decay`` pulls the weights towards a
    reference point (the mean of the previous epoch's iterates, from :meth:`update_regularizer`),
    ``weight_decay`` towards zero; ``momentum`` weighs the new gradient as LibAUC does
    (``buf = (1 - momentum) * buf + momentum * grad``). ``alpha`` ascends in closed form. The
    first reference point is drawn from ``generator`` (normal, sd 0.01), as LibAUC draws it.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        loss: AUCMLoss,
        *,
        lr: float = 0.1,
        margin: float | None = None,
        clip_value: float = 1.0,
        weight_decay: float = 1e-5,
        epoch_decay: float = 2e-3,
        momentum: float = 0.9,
        generator: torch.Generator | None = None,
    ) -> None:
        self.loss = loss
        params = [*params, loss.a, loss.b]
        defaults = {
            "lr": lr, "margin": loss.margin if margin is None else margin, "clip_value": clip_value, "weight_decay": weight_decay,
            "epoch_decay": epoch_decay, "momentum": momentum, "T": 0,
        }  # fmt: skip
        super().__init__(params, defaults)
        if epoch_decay > 0:
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    ref = torch.empty(p.shape, dtype=torch.float32).normal_(mean=0.0, std=0.01, generator=generator)
                    state["ref"] = ref.to(p.device)
                    state["acc"] = torch.zeros(p.shape, dtype=torch.float32, device=p.device)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update of the weights, ``a``, ``b`` and ``alpha``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, clip, momentum = group["lr"], group["clip_value"], group["momentum"]
            decay, epoch_decay = group["weight_decay"], group["epoch_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                d_p = torch.clamp(p.grad, -clip, clip)
                if epoch_decay > 0:
                    d_p = d_p + epoch_decay * (p - state["ref"])
                d_p = d_p + decay * p
                if momentum != 0:
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d_p.clone()
                    else:
                        state["momentum_buffer"].mul_(1 - momentum).add_(d_p, alpha=momentum)
                    d_p = state["momentum_buffer"]
                p.copy_(p - lr * d_p)
                if epoch_decay > 0:
                    state["acc"].add_(p)
            alpha, a, b = self.loss.alpha, self.loss.a, self.loss.b
            if alpha.grad is not None:
                alpha.copy_(torch.clamp(alpha + lr * (2 * (group["margin"] + b - a) - 2 * alpha), 0, 999))
            group["T"] += 1
        return loss

    @torch.no_grad()
    def update_regularizer(self) -> None:
        """Start a new epoch: the reference point becomes the mean of the iterates since the last call."""
        for group in self.param_groups:
            if group["epoch_decay"] <= 0 or group["T"] == 0:
                continue
            for p in group["params"]:
                state = self.state[p]
                state["ref"] = state["acc"] / group["T"]
                state["acc"] = torch.zeros_like(state["acc"])
            group["T"] = 0
