"""Where and how a step runs: the device, mixed precision, channels-last, and feeding a GPU from a side stream.

Batches leave the loader as uint8 and are augmented on the device (:mod:`chexpert.augment`). On a
GPU, :class:`Feeder` copies the next batch and augments it on a second CUDA stream while the
current step computes, so the step never waits for the bus; on the CPU it does the same work
in line. Each step's augmentation draws from a generator seeded by (seed, rank, step), so a
resumed run augments every step as the uninterrupted run did, however far ahead the feeder read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from chexpert.errors import InvalidArgumentError

__all__ = ["Placement", "resolve_placement", "step_seed", "Feeder", "DeviceBatch"]


@dataclass(frozen=True)
class Placement:
    """A resolved device with the precision (``autocast`` dtype or None) and memory format used on it."""

    device: torch.device
    autocast: torch.dtype | None
    channels_last: bool

    @property
    def scaler_needed(self) -> bool:
        """fp16 needs loss scaling; bf16 and float32 do not."""
        return self.autocast == torch.float16

    def autocast_context(self) -> contextlib.AbstractContextManager[object]:
        """``torch.autocast`` for this placement, or a no-op."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def describe(self) -> str:
        """For logs: ``cuda:0, bf16 autocast, channels-last``."""
        parts = [str(self.device), f"{str(self.autocast).removeprefix('torch.')} autocast" if self.autocast else "float32"]
        if self.channels_last:
            parts.append("channels-last")
        return ", ".join(parts)


def resolve_placement(device: str | torch.device | None, precision: str, channels_last: str | bool) -> Placement:
    """The device (default: this process's GPU under torchrun, else the first GPU, else the CPU) and its settings.

    ``precision`` "auto" is bf16 on a GPU that supports it, fp16 on older GPUs, and off on the CPU
    (where bf16 runs too, when asked for). ``channels_last`` "auto" is on for GPUs only.

    >>> resolve_placement("cpu", "auto", "auto")
    Placement(device=device(type='cpu'), autocast=None, channels_last=False)
    """
    resolved = _device(device)
    gpu = resolved.type == "cuda"
    return Placement(resolved, _autocast_dtype(precision, gpu), gpu if channels_last == "auto" else bool(channels_last))


def _device(device: str | torch.device | None) -> torch.device:
    """``device`` checked, with the GPU's index filled in; None is this process's GPU under torchrun, else the first, else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        else:
            device = torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InvalidArgumentError(f"device must be 'cpu' or 'cuda[:N]', not {str(device)!r}")
    if not torch.cuda.is_available():
        raise InvalidArgumentError("device 'cuda' was asked for, but PyTorch sees no GPU here; use device 'cpu'")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def _autocast_dtype(precision: str, gpu: bool) -> torch.dtype | None:
    """The autocast dtype of ``precision`` ("auto", "bf16", "fp16", anything else: none) on a GPU or the CPU."""
    if precision == "auto":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if gpu else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if not gpu:
            raise InvalidArgumentError("fp16 mixed precision needs a GPU; on the CPU use precision 'bf16' or 'off'")
        return torch.float16
    return None


def step_seed(seed: int, rank: int, step: int, *, stream: int = 0) -> int:
    """A 63-bit seed for one step on one rank, a pure function of its arguments.

    ``stream`` 0 seeds the augmentation, 1 the global generator (dropout and the like).

    >>> step_seed(0, 0, 1) == step_seed(0, 0, 1) != step_seed(0, 1, 1) != step_seed(0, 0, 1, stream=1)
    True
    """
    mixed = np.random.SeedSequence([seed, rank, step, stream]).generate_state(2, dtype=np.uint32)
    return int((int(mixed[0]) << 31) ^ int(mixed[1])) & (2**63 - 1)


@dataclass
class DeviceBatch:
    """A batch on the device: ``inputs`` ready for the network, label tensors, and the loader's dict."""

    inputs: torch.Tensor
    labels: dict[str, torch.Tensor]
    size: int


class Feeder:
    """Turn the loader's uint8 batches into network inputs on the device, one step ahead on a GPU.

    ``transform(images, generator)`` maps a uint8 batch on the device to float inputs;
    ``seed_of(i)`` gives the generator seed of the i-th batch drawn from this feeder.
    """

    def __init__(
        self,
        batches: Iterable[dict[str, torch.Tensor]],
        placement: Placement,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        seed_of: Callable[[int], int],
    ) -> None:
        self.placement = placement
        self.transform = transform
        self.seed_of = seed_of
        self._batches = iter(batches)
        self._count = 0
        device = placement.device
        self._generator = torch.Generator(device=device)
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def _prepare(self, batch: dict[str, torch.Tensor]) -> DeviceBatch:
        device = self.placement.device
        gpu = device.type == "cuda"
        self._generator.manual_seed(self.seed_of(self._count))
        self._count += 1
        images = batch["image"].to(device, non_blocking=gpu)
        labels = {k: v.to(device, non_blocking=gpu) for k, v in batch.items() if k in ("targets", "mask", "classes")}
        inputs = self.transform(images, self._generator)
        if self.placement.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return DeviceBatch(inputs, labels, len(images))

    def __iter__(self) -> Iterator[DeviceBatch]:
        if self._stream is None:
            for batch in self._batches:
                yield self._prepare(batch)
            return
        # GPU: prepare batch i+1 on the side stream while the caller computes on batch i.
        stream = self._stream
        current = torch.cuda.current_stream(self.placement.device)
        pending: DeviceBatch | None = None
        for batch in self._batches:
            if batch["image"].device.type == "cpu" and not batch["image"].is_pinned():
                batch = {k: v.pin_memory() for k, v in batch.items()}
            stream.wait_stream(current)  # the generator and caching allocator are shared with the main stream
            with torch.cuda.stream(stream):
                ready = self._prepare(batch)
            if pending is not None:
                yield pending
            current.wait_stream(stream)
            for tensor in (ready.inputs, *ready.labels.values()):
                tensor.record_stream(current)
            pending = ready
        if pending is not None:
            yield pending
