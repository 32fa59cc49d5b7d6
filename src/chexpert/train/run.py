"""The run folder: what was trained on what, the resumable state, the kept checkpoints, the logs.

A run folder holds::

    run.json         format, recipe, the data's identity, output layout: written first
    recipe.toml      the resolved recipe again, as a file ``chexpert train --recipe`` reads (run.json rules)
    state.pt         everything needed to continue: weights, optimiser, step, epoch and batch
                     position, RNG states, the kept checkpoints (written atomically)
    checkpoints/     step-NNNNNNN.pt: the weights of the best checkpoints (ensemble members)
    log.csv          training loss; validation.csv: AUROC per checkpoint; tensorboard/ when installed
    summary.json     written last: the run finished
    soft-labels.csv, u-ignore/   U-SelfTrained only: the labels and the run that made them

Every file is written to a temporary name, synced and renamed, so a run killed at any moment
leaves the previous state intact. Only these names are ever removed, and only in a folder whose
``run.json`` says it is a run.

>>> run = open_run("runs/u-ones")  # doctest: +SKIP
>>> run.recipe.model, [c.step for c in run.checkpoints]  # doctest: +SKIP
('densenet121', [38400, 33600, 43200])
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from chexpert import __version__
from chexpert.errors import RunError
from chexpert.train.heads import Head
from chexpert.train.recipe import Recipe

__all__ = ["Run", "Checkpoint", "open_run", "RunFolder", "save_atomic", "RUN_FORMAT", "RUN_VERSION"]

RUN_FORMAT: Final = "chexpert-run"
RUN_VERSION: Final = 1
RUN_JSON, STATE, SUMMARY, LOG, VALIDATION = "run.json", "state.pt", "summary.json", "log.csv", "validation.csv"
RECIPE_TOML = "recipe.toml"
CHECKPOINTS, SOFT_LABELS, STAGE_ONE, BOARD = "checkpoints", "soft-labels.csv", "u-ignore", "tensorboard"
_STEP_FILE = re.compile(r"^step-(\d{7,})\.pt$")
# Temporary names save_atomic uses (".NAME.PID.tmp"): left behind only by a killed run, removed on resume.
_TMP_FILE = re.compile(r"^\.(?:run\.json|recipe\.toml|state\.pt|summary\.json|soft-labels\.csv|step-\d{7,}\.pt)\.\d+\.tmp$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(path: Path, value: Any) -> None:
    """Write ``value`` (bytes, str, or anything ``torch.save`` takes) to ``path`` by temporary file, sync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if isinstance(value, bytes):
                handle.write(value)
            elif isinstance(value, str):
                handle.write(value.encode("utf-8"))
            else:
                torch.save(value, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"


def load_state(path: Path) -> dict[str, Any]:
    """A state or checkpoint file, on the CPU; a damaged file is a RunError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not a chexpert checkpoint")
    return state


@dataclass(frozen=True)
class Checkpoint:
    """One kept checkpoint: its step, mean validation AUROC (NaN without validation) and weights file."""

    step: int
    metric: float
    path: Path


class RunFolder:
    """The files of one run; decides whether a start is fresh, a resume or already finished."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def checkpoint_file(self, step: int) -> Path:
        return self.path / CHECKPOINTS / f"step-{step:07d}.pt"

    def step_files(self) -> Iterator[tuple[int, Path]]:
        folder = self.path / CHECKPOINTS
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                match = _STEP_FILE.match(entry.name)
                if match and entry.is_file():
                    yield int(match.group(1)), entry

    def read_identity(self) -> dict[str, Any] | None:
        """run.json, or None when there is none; an unreadable or foreign one is a RunError."""
        path = self.path / RUN_JSON
        if not path.exists():
            return None
        try:
            identity = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(f"{path}: unreadable run description ({exc})") from None
        if not isinstance(identity, dict) or identity.get("format") != RUN_FORMAT:
            raise RunError(f"{path} is not a chexpert run description; choose another folder for the run")
        if identity.get("version") != RUN_VERSION:
            raise RunError(f"{path}: run format version {identity.get('version')!r}; this chexpert {__version__} reads version {RUN_VERSION}")
        return identity

    def begin(self, identity: Mapping[str, Any], *, overwrite: bool, allowed: Sequence[str] = ()) -> str:
        """Make the folder ready and say how the run starts: "fresh", "resume" or "done".

        A folder holding a run of another recipe or data is an error unless ``overwrite``, which
        removes that run's files (never anything else). A folder that holds other files and is not
        a run is always an error: nothing proves those files are ours. ``allowed`` names entries
        that may be there before ``run.json`` is (a store prepared into the run folder).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path} is a file, not a folder for the run")
        self.path.mkdir(parents=True, exist_ok=True)
        existing = self.read_identity()
        if existing is None:
            others = sorted(p.name for p in self.path.iterdir() if p.name not in allowed)
            if others:
                raise RunError(
                    f"{self.path} holds other files ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}) and is not a run; "
                    "choose a new or empty folder for the run"
                )
            self._write_identity(identity)
            return "fresh"
        changes = _changes(existing, identity)
        if changes:
            if not overwrite:
                from chexpert.errors import option

                raise RunError(
                    f"{self.path} holds a run of another recipe or data ({'; '.join(changes)}); choose another folder, "
                    f"or pass {option('overwrite')} to replace that run"
                )
            self.remove_run()
            self._write_identity(identity)
            return "fresh"
        if (self.path / SUMMARY).exists():
            return "done"
        return "resume" if (self.path / STATE).exists() else "fresh"

    def _write_identity(self, identity: Mapping[str, Any]) -> None:
        from chexpert.train.recipe import recipe_toml

        save_atomic(self.path / RUN_JSON, _json(dict(identity)))
        save_atomic(self.path / RECIPE_TOML, recipe_toml(Recipe.from_json(identity["recipe"])))

    def remove_run(self) -> None:
        """Remove the files a run writes (checked by name), keeping anything else in the folder."""
        for _, path in self.step_files():
            path.unlink()
        with contextlib.suppress(OSError):
            (self.path / CHECKPOINTS).rmdir()
        for name in (SUMMARY, STATE, LOG, VALIDATION, SOFT_LABELS, RECIPE_TOML, RUN_JSON):
            (self.path / name).unlink(missing_ok=True)
        board = self.path / BOARD
        if board.is_dir():
            for entry in board.iterdir():
                if entry.name.startswith("events.out.tfevents.") and entry.is_file():
                    entry.unlink()
            with contextlib.suppress(OSError):
                board.rmdir()
        stage = RunFolder(self.path / STAGE_ONE)
        if stage.path.is_dir() and (stage.path / RUN_JSON).exists():
            stage.read_identity()
            stage.remove_run()
            with contextlib.suppress(OSError):
                stage.path.rmdir()

    def drop_checkpoints_except(self, keep: Sequence[int]) -> None:
        """Remove step files not in ``keep`` (evicted, or written after the state being resumed) and torn temporary files."""
        for step, path in self.step_files():
            if step not in keep:
                path.unlink()
        for folder in (self.path, self.path / CHECKPOINTS):
            if folder.is_dir():
                for entry in folder.iterdir():
                    if _TMP_FILE.match(entry.name) and entry.is_file():
                        entry.unlink()


def _changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in ("recipe", "data", "head", "world_size"):
        a, b = before.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    changes.append(f"{key} {name} was {a.get(name)!r}, now {b.get(name)!r}")
        else:
            changes.append(f"{key} was {a!r}, now {b!r}")
    return changes


@dataclass(frozen=True)
class Run:
    """A run folder opened for reading: its recipe, output layout, kept checkpoints (best first) and logs."""

    path: Path
    recipe: Recipe
    head: Head
    identity: Mapping[str, Any]
    checkpoints: tuple[Checkpoint, ...]
    finished: bool

    def model(self, checkpoint: Checkpoint | None = None) -> torch.nn.Module:
        """The network with the weights of ``checkpoint`` (default: the best), in eval mode on the CPU.

        A plain ``torch.nn.Module``: it takes float inputs of ``recipe.channels`` planes at
        ``recipe.network_size`` pixels, normalised as in training (``input_transform(run.recipe,
        train=False)`` maps the store's uint8 images to them), and returns logits laid out by
        ``run.head``; ``run.head.probabilities(logits)`` gives one probability per observation.
        Other checkpoints: ``run.checkpoints`` (best first).

        >>> run = open_run("runs/u-ones")  # doctest: +SKIP
        >>> from chexpert.train.inference import input_transform
        >>> x = input_transform(run.recipe, train=False)(uint8_images)  # (B, 1, size, size) uint8  # doctest: +SKIP
        >>> run.head.probabilities(run.model()(x))  # (B, observations)  # doctest: +SKIP
        """
        from chexpert.train.models import build_model

        if checkpoint is None:
            if not self.checkpoints:
                raise RunError(f"{self.path} has no checkpoint yet")
            checkpoint = self.checkpoints[0]
        model = build_model(self.recipe.model, outputs=self.head.outputs, channels=self.recipe.channels, weights="none")
        model.load_state_dict(load_state(checkpoint.path)["model"])
        return model.eval()

    def log(self) -> Any:
        """log.csv as a DataFrame: step, epoch, loss, lr, images_per_second, seconds."""
        from chexpert.train.log import read_log

        return read_log(self.path / LOG)

    def validation(self) -> Any:
        """validation.csv as a DataFrame: step, epoch, mean_auroc and one AUROC column per observation."""
        from chexpert.train.log import read_log

        return read_log(self.path / VALIDATION)

    def summary(self) -> dict[str, Any]:
        """summary.json (empty while the run is unfinished)."""
        path = self.path / SUMMARY
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _sorted_kept(kept: Sequence[Sequence[float]], folder: RunFolder) -> tuple[Checkpoint, ...]:
    """Best first: highest metric, then latest step; NaN metrics (no validation) rank by step."""
    items = [Checkpoint(int(step), float(metric), folder.checkpoint_file(int(step))) for step, metric in kept]
    return tuple(sorted(items, key=lambda c: (c.metric == c.metric, c.metric if c.metric == c.metric else 0.0, c.step), reverse=True))


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a run folder (finished, or still running / interrupted: then its latest state's checkpoints).

    >>> open_run("runs/demo").checkpoints[0].metric  # doctest: +SKIP
    0.912
    """
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise RunError(f"{folder.path}: no such run folder")
    identity = folder.read_identity()
    if identity is None:
        raise RunError(f"{folder.path} is not a run folder (no {RUN_JSON}); make one with `chexpert train`")
    finished = (folder / SUMMARY).exists()
    if finished:
        kept = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))["kept"]
        kept = [(k["step"], k["metric"] if k["metric"] is not None else float("nan")) for k in kept]
    elif (folder / STATE).exists():
        kept = load_state(folder / STATE)["kept"]
    else:
        kept = []
    checkpoints = _sorted_kept(kept, folder)
    missing = [c.path for c in checkpoints if not c.path.is_file()]
    if missing:
        raise RunError(f"{missing[0]}: checkpoint file missing from the run")
    return Run(folder.path, Recipe.from_json(identity["recipe"]), Head(**identity["head"]), identity, checkpoints, finished)

