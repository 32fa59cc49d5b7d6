"""What a run records as it goes: ``log.csv`` (training loss per logged step), ``validation.csv`` (AUROC per
checkpoint) and, when the ``tensorboard`` package is installed, the same as TensorBoard events.

The CSV files are appended a line at a time and flushed, so that a run killed at any moment
leaves readable files; on resume the lines after the resumed step are cut (they are written again
as the run repeats those steps), so the files of a resumed run equal an uninterrupted run's
apart from the timing columns.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from chexpert.fileio import atomic_write

__all__ = ["RunLog", "TRAIN_COLUMNS", "read_log"]

#: Columns of log.csv.
TRAIN_COLUMNS: tuple[str, ...] = ("step", "epoch", "loss", "lr", "images_per_second", "seconds")


def _cut(path: Path, last_step: int) -> None:
    """Keep the header and the complete rows of ``path`` up to ``last_step``; drop a torn last line."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    kept = lines[:1]
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # torn by a kill mid-write
        step = line.split(",", 1)[0]
        if step.isdigit() and int(step) <= last_step:
            kept.append(line)
    atomic_write(path, "".join(kept), sync=False)


class RunLog:
    """Appends rows to the run's CSV files (and TensorBoard); only rank 0 makes one."""

    def __init__(self, folder: Path, observations: Sequence[str], *, resume_step: int | None, tensorboard: bool | None = None) -> None:
        self.folder = folder
        self.observations = tuple(observations)
        self.train_path = folder / "log.csv"
        self.valid_path = folder / "validation.csv"
        for path in (self.train_path, self.valid_path):
            if resume_step is None:
                path.unlink(missing_ok=True)
            else:
                _cut(path, resume_step)
        self._train = self._open(self.train_path, TRAIN_COLUMNS)
        self._valid = self._open(self.valid_path, ("step", "epoch", "mean_auroc", *self.observations))
        self._board: Any = None
        if tensorboard is None:
            tensorboard = importlib.util.find_spec("tensorboard") is not None
        if tensorboard:
            import sys
            import types

            if "tensorflow" not in sys.modules:
                # TensorBoard imports all of TensorFlow when it is installed (a minute and a GB on a
                # busy machine) just to write files; its stub does the same for local folders.
                sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(folder / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)

    @staticmethod
    def _open(path: Path, header: Sequence[str]) -> TextIO:
        fresh = not path.exists() or path.stat().st_size == 0
        handle = open(path, "a", encoding="utf-8", newline="")  # closed in close()
        if fresh:
            handle.write(",".join(header) + "\n")
            handle.flush()
        return handle

    @staticmethod
    def _row(handle: TextIO, values: Sequence[object]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in values])
        handle.write(buffer.getvalue())
        handle.flush()

    def train(self, step: int, epoch: int, loss: float, lr: float, images_per_second: float, seconds: float) -> None:
        """One row of log.csv."""
        self._row(self._train, [step, epoch, f"{loss:.6f}", f"{lr:.3g}", f"{images_per_second:.1f}", f"{seconds:.1f}"])
        if self._board is not None:
            self._board.add_scalar("train/loss", loss, step)
            self._board.add_scalar("train/images_per_second", images_per_second, step)

    def validation(self, step: int, epoch: int, mean_auroc: float, aurocs: Mapping[str, float]) -> None:
        """One row of validation.csv: the mean AUROC and each observation's."""
        values = [aurocs.get(o, math.nan) for o in self.observations]
        self._row(self._valid, [step, epoch, *(f"{v:.6f}" if not math.isnan(v) else math.nan for v in (mean_auroc, *values))])
        if self._board is not None:
            if not math.isnan(mean_auroc):
                self._board.add_scalar("valid/mean_auroc", mean_auroc, step)
            for name, value in zip(self.observations, values):
                if not math.isnan(value):
                    self._board.add_scalar(f"valid/auroc/{name}", value, step)

    def close(self) -> None:
        """Close the files."""
        self._train.close()
        self._valid.close()
        if self._board is not None:
            self._board.close()


def read_log(path: str | os.PathLike[str]) -> Any:
    """A run's ``log.csv`` or ``validation.csv`` as a pandas DataFrame (empty if the file is missing).

    >>> read_log("runs/demo/log.csv")[["step", "loss"]].tail(1).step.tolist()
    [4]
    """
    import pandas as pd

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)
