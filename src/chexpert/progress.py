"""Typed progress events of a training run and the reporter that renders them for a person.

``chexpert.train.train(..., progress=callback)`` calls ``callback(event)`` with one of the frozen
dataclasses below: :class:`Start`, :class:`Step`, :class:`Validation`, :class:`Checkpoint`,
:class:`Stage`, :class:`Done`. A callback tells them apart with ``isinstance`` or ``match``;
``event.kind`` names the kind, and ``event["step"]`` still reads a field as the untyped dicts of
earlier versions did (``event["event"]`` is the kind).

:class:`Reporter` is what ``chexpert train`` and the demo print with; :func:`console` is the rich
console every command writes through (no wrapping unless the output is a terminal: a path split
over two lines breaks whatever reads the output).

>>> event = Step(step=10, total=100, epoch=0, loss=0.5, images_per_second=250.0)
>>> event.kind, event["loss"], event["event"]
('step', 0.5, 'step')
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from chexpert import schema

__all__ = ["Start", "Step", "Validation", "Checkpoint", "Stage", "Done", "Event", "Progress", "Reporter", "console", "shown"]

# Tables are laid out for this many columns when the output is a file or a pipe.
_PIPE_WIDTH = 160
# C0 and C1 control characters; the console keeps line breaks and tabs of its own text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Event:
    kind: ClassVar[str]

    def __getitem__(self, name: str) -> Any:
        # The dict spelling of earlier versions: event["event"] is the kind, event[f] a field.
        if name == "event":
            return self.kind
        if name in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            return getattr(self, name)
        raise KeyError(name)


@dataclass(frozen=True)
class Start(_Event):
    """Training starts (or resumes at ``step``)."""

    kind: ClassVar[str] = "start"
    path: str
    step: int
    total: int
    steps_per_epoch: int
    images: int
    valid_images: int
    placement: str
    world_size: int
    model: str
    policy: str


@dataclass(frozen=True)
class Step(_Event):
    """A logged training step: the mean loss since the last one and the throughput."""

    kind: ClassVar[str] = "step"
    step: int
    total: int
    epoch: int
    loss: float
    images_per_second: float


@dataclass(frozen=True)
class Validation(_Event):
    """The validation AUROCs at ``step``."""

    kind: ClassVar[str] = "validation"
    step: int
    mean_auroc: float
    aurocs: Mapping[str, float] = field(default_factory=dict)
    #: The observations ``mean_auroc`` averages (``chexpert.evaluate.scoring.mean_auroc_tasks``).
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checkpoint(_Event):
    """A checkpoint written at ``step``; ``kept`` checkpoints remain."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    kept: int


@dataclass(frozen=True)
class Stage(_Event):
    """A stage of the run worth a line (preparing a store, a self-training stage)."""

    kind: ClassVar[str] = "stage"
    message: str


@dataclass(frozen=True)
class Done(_Event):
    """The run is finished (``already``: it was finished before this call)."""

    kind: ClassVar[str] = "done"
    path: str
    already: bool
    best: float = float("nan")


Event = Start | Step | Validation | Checkpoint | Stage | Done
#: What ``train(progress=...)`` takes.
Progress = Callable[[Event], None]


def shown(text: object, *, lines: bool = False) -> str:
    """``text`` with its control characters escaped as Python writes them (line breaks too, unless ``lines``).

    >>> shown("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    """
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], str(text))


def console(*, stderr: bool = False) -> Any:
    """A rich Console for stdout (or stderr) that wraps nothing unless it writes to a terminal.

    Every string it prints (table cells too) has its control characters escaped first: a path
    with a newline stays one line and an escape sequence in a CSV cell never drives the terminal.

    >>> console().soft_wrap
    True
    """
    from rich.console import Console

    class _Shown(Console):
        """Every string printed (table cells too) has its control characters escaped first."""

        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(shown(text, lines=True), **kwargs)

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return _Shown(stderr=stderr, soft_wrap=True, width=None if terminal else _PIPE_WIDTH)


class Reporter:
    """Renders training events on stderr: a line per start, logged step, validation and stage.

    >>> Reporter(quiet=True)(Stage("preparing"))  # quiet: prints nothing
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.out = console(stderr=True)
        self.started = time.perf_counter()

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, Start):
            self.out.print(
                f"train {event.path}: {event.model}, {event.policy}, {event.images:,} training and {event.valid_images:,} "
                f"validation images, {event.total:,} steps ({event.steps_per_epoch:,} per epoch), {event.placement}"
                + (f", {event.world_size} processes" if event.world_size > 1 else "")
                + (f"; resuming at step {event.step:,}" if event.step else "")
            )
        elif isinstance(event, Step):
            self.out.print(f"step {event.step:>7,}/{event.total:,}  epoch {event.epoch}  loss {event.loss:.4f}  {event.images_per_second:,.0f} img/s")
        elif isinstance(event, Validation):
            shown = ", ".join(f"{t} {event.aurocs[t]:.3f}" for t in schema.COMPETITION_TASKS if t in event.aurocs)
            if not event.tasks:
                over = ""
            elif set(event.tasks) <= set(schema.COMPETITION_TASKS):
                over = f" over {len(event.tasks)} of {len(schema.COMPETITION_TASKS)} tasks"
            else:
                over = f" over {len(event.tasks)} observations"
            self.out.print(f"validation at step {event.step:,}: mean AUROC {event.mean_auroc:.3f}{over}" + (f" ({shown})" if shown else ""))
        elif isinstance(event, Stage):
            self.out.print(event.message)
