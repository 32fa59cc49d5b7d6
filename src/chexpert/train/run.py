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

>>> run = open_run("runs/u-ones")
>>> run.recipe.model, sorted(c.step for c in run.checkpoints)
('tiny-cnn', [2, 4])
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

from chexpert.errors import RunError
from chexpert.fileio import atomic_writer
from chexpert.train.heads import Head
from chexpert.train.recipe import Recipe
from chexpert.version import __version__

__all__ = ["Run", "Checkpoint", "open_run", "RunFolder", "save_atomic", "RUN_FORMAT", "RUN_VERSION"]

RUN_FORMAT: Final = "chexpert-run"
RUN_VERSION: Final = 1
RUN_JSON, STATE, SUMMARY, LOG, VALIDATION = "run.json", "state.pt", "summary.json", "log.csv", "validation.csv"
RECIPE_TOML = "recipe.toml"
CHECKPOINTS, SOFT_LABELS, STAGE_ONE, BOARD = "checkpoints", "soft-labels.csv", "u-ignore", "tensorboard"
#: Every name the run keeps in its folder: never followed when it is a symbolic link (see RunFolder.links).
_NAMES = (RUN_JSON, RECIPE_TOML, STATE, SUMMARY, LOG, VALIDATION, CHECKPOINTS, SOFT_LABELS, STAGE_ONE, BOARD)
_STEP_FILE = re.compile(r"^step-(\d{7,})\.pt$")
# Temporary names of the run's files (".NAME.PID.RANDOM.tmp", fileio's; ".NAME.PID.tmp" before): left behind only by a killed run, removed on resume.
_TMP_FILE = re.compile(
    r"^\.(?:run\.json|recipe\.toml|state\.pt|summary\.json|soft-labels\.csv|log\.csv|validation\.csv|step-\d{7,}\.pt)\.\d+(?:\.[0-9a-f]{8})?\.tmp$"
)


def save_atomic(path: Path, value: Any) -> None:
    """Write ``value`` (bytes, str, or anything ``torch.save`` takes) to ``path`` by an exclusively created temporary file, sync and rename."""
    with atomic_writer(path) as handle:
        if isinstance(value, bytes):
            handle.write(value)
        elif isinstance(value, str):
            handle.write(value.encode("utf-8"))
        else:
            torch.save(value, handle)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n"


def load_state(path: Path, needs: Sequence[str] = ("model",)) -> dict[str, Any]:
    """A state or checkpoint file, on the CPU; a damaged or foreign file (or one without the keys ``needs``) is a RunError naming it."""
    if path.exists() and not path.is_file():
        raise RunError(f"{path}: not a regular file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: missing from the run") from None
    except Exception as exc:  # noqa: BLE001  # torch's unpickler raises whatever it meets in a damaged file (KeyError, UnpicklingError, ...)
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise RunError(f"{path}: damaged or not a chexpert checkpoint ({exc.__class__.__name__}: {text})") from None
    if not isinstance(state, dict) or any(key not in state for key in needs) or not isinstance(state.get("model"), Mapping):
        raise RunError(f"{path}: not a chexpert checkpoint")
    return state


#: What a resumable state.pt holds besides the weights.
STATE_KEYS: Final = ("model", "optimizer", "step", "epoch", "batch", "rng", "kept", "elapsed", "images")


def load_resume_state(path: Path) -> dict[str, Any]:
    """state.pt checked whole (keys and their types), so that a damaged one is one RunError, never a traceback mid-resume."""
    state = load_state(path, STATE_KEYS)
    try:
        for key in ("step", "epoch", "batch", "images"):
            if int(state[key]) < 0:
                raise ValueError(key)
        float(state["elapsed"])
        state["kept"] = [(int(step), float(metric)) for step, metric in state["kept"]]
        if not isinstance(state["rng"], list) or not all(isinstance(r, dict) and isinstance(r.get("cpu"), torch.Tensor) for r in state["rng"]):
            raise ValueError("rng")
        if not isinstance(state["optimizer"], Mapping):
            raise ValueError("optimizer")
    except (TypeError, ValueError, KeyError) as exc:
        raise RunError(f"{path}: damaged or not a chexpert run state ({exc.__class__.__name__}: {exc})") from None
    return state


def _read_summary(path: Path) -> list[tuple[int, float]]:
    """The kept checkpoints summary.json lists; a damaged one is a RunError naming it."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return [(int(k["step"]), float("nan") if k["metric"] is None else float(k["metric"])) for k in summary["kept"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RunError(f"{path}: damaged run summary ({exc.__class__.__name__}: {str(exc)[:200]})") from None


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

    def _own_folder(self, name: str) -> Path | None:
        """The sub-folder ``name`` when it is a real folder here (never one reached through a link)."""
        folder = self.path / name
        return folder if folder.is_dir() and not folder.is_symlink() else None

    def links(self) -> list[Path]:
        """Symbolic links at the names the run uses: here, in checkpoints/ and tensorboard/, and in the u-ignore/ stage's folder."""
        found = [self.path / name for name in _NAMES if (self.path / name).is_symlink()]
        for name in (CHECKPOINTS, BOARD):
            folder = self._own_folder(name)
            if folder is not None:
                found += sorted(entry for entry in folder.iterdir() if entry.is_symlink())
        stage = self._own_folder(STAGE_ONE)
        if stage is not None:
            found += RunFolder(stage).links()
        return found

    def step_files(self) -> Iterator[tuple[int, Path]]:
        folder = self._own_folder(CHECKPOINTS)
        if folder is not None:
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
        links = self.links()
        if links and not overwrite:
            from chexpert.errors import option

            raise RunError(
                f"{links[0]} is a symbolic link where the run keeps its own files; a run never writes or removes anything "
                f"through a link: remove it, or pass {option('overwrite')} to remove the link{'s' if len(links) > 1 else ''} "
                "(never what they point to)"
            )
        for link in links:
            link.unlink()  # the link itself, as a name: what it points to is not the run's
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
        if overwrite and not self._readable():
            self.remove_run()  # a damaged state or summary: --overwrite starts afresh
            self._write_identity(identity)
            return "fresh"
        if (self.path / SUMMARY).exists():
            return "done"
        return "resume" if (self.path / STATE).exists() else "fresh"

    def _readable(self) -> bool:
        """Whether the run's summary and state (those present) read whole."""
        try:
            if (self.path / SUMMARY).exists():
                _read_summary(self.path / SUMMARY)
            elif (self.path / STATE).exists():
                load_resume_state(self.path / STATE)
        except RunError:
            return False
        return True

    def _write_identity(self, identity: Mapping[str, Any]) -> None:
        from chexpert.train.recipe import recipe_toml

        save_atomic(self.path / RUN_JSON, _json(dict(identity)))
        save_atomic(self.path / RECIPE_TOML, recipe_toml(Recipe.from_json(identity["recipe"])))

    def remove_run(self) -> None:
        """Remove the files a run writes (checked by name), keeping anything else in the folder."""
        for _, path in self.step_files():
            path.unlink()
        if (self.path / CHECKPOINTS).is_symlink():
            (self.path / CHECKPOINTS).unlink()
        with contextlib.suppress(OSError):
            (self.path / CHECKPOINTS).rmdir()
        for name in (SUMMARY, STATE, LOG, VALIDATION, SOFT_LABELS, RECIPE_TOML, RUN_JSON):
            (self.path / name).unlink(missing_ok=True)
        board = self._own_folder(BOARD)
        if board is not None:
            for entry in board.iterdir():
                if entry.name.startswith("events.out.tfevents.") and (entry.is_symlink() or entry.is_file()):
                    entry.unlink()
            with contextlib.suppress(OSError):
                board.rmdir()
        if (self.path / STAGE_ONE).is_symlink():
            (self.path / STAGE_ONE).unlink()
        stage = RunFolder(self.path / STAGE_ONE)
        if self._own_folder(STAGE_ONE) is not None and (stage.path / RUN_JSON).exists():
            stage.read_identity()
            stage.remove_run()
            with contextlib.suppress(OSError):
                stage.path.rmdir()

    def drop_checkpoints_except(self, keep: Sequence[int]) -> None:
        """Remove step files not in ``keep`` (evicted, or written after the state being resumed) and torn temporary files."""
        for step, path in self.step_files():
            if step not in keep:
                path.unlink()
        for folder in (self.path, self._own_folder(CHECKPOINTS)):
            if folder is not None and folder.is_dir():
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

        >>> run = open_run("runs/u-ones")
        >>> from chexpert.train.inference import input_transform
        >>> import torch
        >>> uint8_images = torch.zeros(2, 1, run.recipe.size, run.recipe.size, dtype=torch.uint8)
        >>> x = input_transform(run.recipe, train=False)(uint8_images)  # (B, 1, size, size) uint8
        >>> run.head.probabilities(run.model()(x)).shape  # (B, observations)
        torch.Size([2, 14])
        """
        from chexpert.train.models import build_model

        if checkpoint is None:
            if not self.checkpoints:
                raise RunError(f"{self.path} has no checkpoint yet")
            checkpoint = self.checkpoints[0]
        model = build_model(self.recipe.model, outputs=self.head.outputs, channels=self.recipe.channels, weights="none")
        weights = load_state(checkpoint.path)["model"]
        try:
            model.load_state_dict(weights)
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            raise RunError(f"{checkpoint.path}: its weights are not this run's {self.recipe.model} ({str(exc).splitlines()[0][:200]})") from None
        if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
            raise RunError(f"{checkpoint.path}: its weights are not finite (NaN or infinite): a damaged checkpoint or a diverged run")
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


def sorted_kept(kept: Sequence[Sequence[float]], folder: RunFolder) -> tuple[Checkpoint, ...]:
    """Best first: highest metric, then latest step; NaN metrics (no validation) rank by step."""
    items = [Checkpoint(int(step), float(metric), folder.checkpoint_file(int(step))) for step, metric in kept]
    return tuple(sorted(items, key=lambda c: (c.metric == c.metric, c.metric if c.metric == c.metric else 0.0, c.step), reverse=True))


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open a run folder (finished, or still running / interrupted: then its latest state's checkpoints).

    >>> 0 <= open_run("runs/demo").checkpoints[0].metric <= 1  # the best checkpoint's validation AUROC
    True
    """
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise RunError(f"{folder.path}: no such run folder")
    identity = folder.read_identity()
    if identity is None:
        raise RunError(f"{folder.path} is not a run folder (no {RUN_JSON}); make one with `chexpert train`")
    finished = (folder / SUMMARY).exists()
    kept: Sequence[Sequence[float]]
    if finished:
        kept = _read_summary(folder / SUMMARY)
    elif (folder / STATE).exists():
        kept = load_resume_state(folder / STATE)["kept"]
    else:
        kept = []
    checkpoints = sorted_kept(kept, folder)
    missing = [c.path for c in checkpoints if not c.path.is_file()]
    if missing:
        raise RunError(f"{missing[0]}: checkpoint file missing from the run")
    try:
        recipe, head = Recipe.from_json(identity["recipe"]), Head(**identity["head"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{folder / RUN_JSON}: damaged run description ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    return Run(folder.path, recipe, head, identity, checkpoints, finished)
