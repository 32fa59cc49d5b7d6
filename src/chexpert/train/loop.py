"""The training loop: a recipe, a prepared store and a run folder in; checkpoints, logs and an ensemble out.

Every step is a pure function of the run's state and (seed, rank, step): the batch comes from
:class:`~chexpert.sampling.EpochSampler` (seed, epoch, batch position), its augmentation and any
dropout from generators seeded by (seed, rank, step). The resumable state written at each
checkpoint (weights, optimiser, loss scaler, epoch and batch position, RNG states) therefore lets
a run killed at any moment continue from its last checkpoint to the same weights as a run that was
never interrupted (bit for bit on the same machine and thread count; ``deterministic=True`` also
pins the kernels that are not deterministic by default, as some GPU kernels are not).

Not run as a doctest (the full recipe trains for hours):

>>> run = train("~/data/CheXpert-v1.0-small", "runs/u-ones", Recipe(policy="u-ones"))  # doctest: +SKIP
>>> run.checkpoints[0].metric  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from chexpert import progress as events
from chexpert import schema
from chexpert.discover import open_dataset as open_release
from chexpert.errors import InvalidArgumentError, RunError, option
from chexpert.policy import Policy, apply, get_policy
from chexpert.progress import Progress as _Progress
from chexpert.release import Release
from chexpert.store import MANIFEST, Store, open_store, prepare
from chexpert.train.auc import PESG, AUCMLoss
from chexpert.train.device import DeviceBatch, Feeder, Placement, resolve_placement, step_seed
from chexpert.train.distributed import Distributed
from chexpert.train.heads import Head
from chexpert.train.inference import input_transform, score_batches, study_scores
from chexpert.train.log import RunLog
from chexpert.train.models import build_model
from chexpert.train.recipe import Recipe, get_recipe
from chexpert.train.run import RUN_FORMAT, RUN_VERSION, SOFT_LABELS, STATE, SUMMARY, Run, RunFolder, load_resume_state, open_run, save_atomic, sorted_kept
from chexpert.validation import check_int
from chexpert.version import __version__

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["train", "Trainer", "TrainingWarning", "training_rows", "head_of", "score_rows", "Progress"]

#: ``progress(event)`` receives typed events (chexpert.progress): Start, Step, Validation, Checkpoint, Stage, Done.
Progress = _Progress


class TrainingWarning(UserWarning):
    """Something about a run that does not stop it (no validation split, validation left out, ...)."""


def training_rows(store: Store, views: str) -> tuple[np.ndarray, np.ndarray]:
    """(training rows of ``views``, validation rows of every view) of the store.

    >>> training_rows(store, "frontal")[0][:3]
    array([0, 1, 2])
    """
    split = store.index.split
    train = split == schema.SPLITS.index("train")
    if views == "frontal":
        train &= store.index.frontal
    elif views == "lateral":
        train &= ~store.index.frontal
    return np.flatnonzero(train), np.flatnonzero(split == schema.SPLITS.index("valid"))


def _without_self_training(policy: Policy, replacement: str) -> Policy:
    """``policy`` with every U-SelfTrained observation under ``replacement`` instead."""
    import dataclasses

    pairs: tuple[tuple[str, str], ...] = tuple(policy.per_observation)  # type: ignore[arg-type]  # sorted pairs after __post_init__
    per = tuple((o, replacement if p == "self-trained" else p) for o, p in pairs)
    uncertain = replacement if policy.uncertain == "self-trained" else policy.uncertain
    return dataclasses.replace(policy, uncertain=uncertain, per_observation=per)


def _self_trained(policy: Policy) -> list[str]:
    return [o for o in policy.target_observations if policy.uncertainty(o) == "self-trained"]


def head_of(policy: str | Policy) -> Head:
    """The output layout a policy's targets need (U-SelfTrained columns are binary).

    >>> head_of("u-multiclass").outputs
    42
    """
    policy = _without_self_training(get_policy(policy), "ones")
    return Head.of(apply(policy, np.zeros((0, len(schema.OBSERVATIONS)), dtype=np.int8)))


class Trainer:
    """Model, optimiser, loss scaler and input maps of a recipe on one device: one :meth:`step` per batch.

    :func:`train` drives it; ``bench/train.py`` times its step alone.
    """

    def __init__(self, recipe: Recipe, head: Head, placement: Placement, dist: Distributed | None = None) -> None:
        self.recipe, self.head, self.placement = recipe, head, placement
        self.module = build_model(recipe.model, outputs=head.outputs, channels=recipe.channels, weights=recipe.weights).to(placement.device)
        if placement.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model: torch.nn.Module = self.module
        if dist is not None and dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.module, device_ids=[placement.device.index] if placement.device.type == "cuda" else None)
        if recipe.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]
        self.dist = dist
        self.auc_loss: AUCMLoss | None = None
        self.pretraining = recipe.pretrain_epochs > 0
        self.optimizer = self._optimizer()
        self.plateau = {"best": -math.inf, "bad": 0, "factor": 1.0}
        self.scaler = torch.amp.GradScaler(placement.device.type) if placement.scaler_needed else None
        self.train_transform = input_transform(recipe, train=True).to(placement.device)
        self.eval_transform = input_transform(recipe, train=False).to(placement.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        recipe = self.recipe
        if self.pretraining or recipe.optimizer == "adam":
            lr = recipe.pretrain_lr if self.pretraining else recipe.lr
            return torch.optim.Adam(self.module.parameters(), lr=lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
        if any(self.head.multiclass):
            raise InvalidArgumentError("the AUC-margin loss scores binary columns; choose a policy without U-MultiClass")
        self.auc_loss = AUCMLoss(len(self.head.observations), recipe.margin).to(self.placement.device)
        # The first reference point: drawn from a generator of the run's seed, so that a resumed run draws it alike.
        generator = torch.Generator().manual_seed(step_seed(recipe.seed, 0, 0, stream=2))
        return PESG(
            self.module.parameters(), self.auc_loss, lr=recipe.lr, weight_decay=recipe.weight_decay, epoch_decay=recipe.epoch_decay,
            momentum=recipe.momentum, generator=generator,
        )  # fmt: skip

    def finish_pretraining(self) -> None:
        """Switch from cross-entropy and Adam to the recipe's loss and optimiser (a fresh one)."""
        self.pretraining = False
        self.optimizer = self._optimizer()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def transform(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 batch on the device -> network input (augmented when the recipe says so)."""
        if self.train_transform.training:
            return self.train_transform(images, generator=generator)  # type: ignore[no-any-return]
        return self.eval_transform(images)  # type: ignore[no-any-return]

    def step(self, inputs: torch.Tensor, labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One optimisation step; returns the loss (detached, on the device: reading it waits for the step)."""
        with self.placement.autocast_context():
            logits = self.model(inputs)
        if self.auc_loss is not None:
            loss = self.auc_loss(self.head.probabilities(logits), labels["targets"], labels["mask"])
        else:
            loss = self.head.loss(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.auc_loss is not None:
            self.auc_loss.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self._average_auc_gradients()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._average_auc_gradients()
            self.optimizer.step()
        return loss.detach()

    def _average_auc_gradients(self) -> None:
        """The AUC-margin loss's a and b live outside DDP: average their gradients over the ranks, as LibAUC does."""
        if self.auc_loss is None or self.dist is None or not self.dist.active:
            return
        for variable in (self.auc_loss.a, self.auc_loss.b):
            if variable.grad is not None:
                torch.distributed.all_reduce(variable.grad)
                variable.grad.div_(self.dist.world_size)

    def state(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "pretraining": self.pretraining,
            "auc_loss": None if self.auc_loss is None else {k: v.detach().cpu() for k, v in self.auc_loss.state_dict().items()},
            "plateau": dict(self.plateau),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        if self.pretraining and not state.get("pretraining", self.pretraining):
            self.finish_pretraining()
        if self.auc_loss is not None and state.get("auc_loss") is not None:
            self.auc_loss.load_state_dict(state["auc_loss"])
        if state.get("plateau") is not None:
            self.plateau = dict(state["plateau"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])


def _rng_state(placement: Placement) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if placement.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(placement.device)
    return state


def _set_rng_state(state: Mapping[str, Any], placement: Placement) -> None:
    torch.set_rng_state(state["cpu"])
    if placement.device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], placement.device)


@contextlib.contextmanager
def _run_settings(placement: Placement, deterministic: bool) -> Iterator[None]:
    """Global torch settings for the run, put back afterwards: RNG streams, deterministic kernels, cuDNN autotuning."""
    devices = [placement.device.index] if placement.device.type == "cuda" else []
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)
    if deterministic and placement.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=devices):
        try:
            torch.use_deterministic_algorithms(deterministic)
            torch.backends.cudnn.benchmark = not deterministic and placement.device.type == "cuda"
            yield
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            torch.backends.cudnn.benchmark = previous[2]


def _training_store(
    source: Store | Release | str | os.PathLike[str], folder: RunFolder, recipe: Recipe, store: str | os.PathLike[str] | None,
    dist: Distributed, progress: Progress | None,
) -> Store:  # fmt: skip
    """The prepared store to train from: ``source`` itself when it is one, else the release prepared (rank 0) into ``store``."""
    if isinstance(source, str | os.PathLike) and (Path(source).expanduser() / MANIFEST).is_file():
        source = open_store(source)
    if isinstance(source, Store):
        if store is not None:
            raise InvalidArgumentError("the source is a prepared store already; give store only with a release as the source")
        if (source.size, source.resize) != (recipe.size, recipe.resize):
            raise InvalidArgumentError(
                f"{source.path} holds {source.size}x{source.size} images ({source.resize}); the recipe asks for "
                f"{recipe.size}x{recipe.size} ({recipe.resize}): train with {option('size', source.size)}"
                + ("" if source.resize == recipe.resize else f" and resize {source.resize!r}")
                + ", or prepare a store of the recipe's size"
            )
        return source
    release = source if isinstance(source, Release) else open_release(source)
    path = Path(store) if store is not None else folder.path / _store_name(recipe)
    if dist.main:
        if progress is not None:
            progress(events.Stage(f"preparing {release.root} into {path} ({recipe.size}x{recipe.size}, {recipe.resize})"))
        prepare(release, path, size=recipe.size, resize=recipe.resize, workers=os.cpu_count() or 1)
    dist.barrier()
    return open_store(path, size=recipe.size, resize=recipe.resize)


def _store_name(recipe: Recipe) -> str:
    return f"store-{recipe.size}-{recipe.resize}"


def _soft_label_table(soft_labels: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    import pandas as pd

    if isinstance(soft_labels, pd.DataFrame):
        return soft_labels
    path = Path(soft_labels)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise InvalidArgumentError(f"{path}: soft labels file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{path}: cannot be read as CSV ({exc})") from None


def _digest(frame: pd.DataFrame) -> str:
    import hashlib

    return hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Setup:
    store: Store
    train_rows: np.ndarray
    valid_rows: np.ndarray
    head: Head
    policy: Policy


# A training's state is in three objects, built once in train() and _train() rather than passed as
# a dozen arguments: _Training (what it is given) and _Loop (what was built for it) are frozen, as
# nothing in them changes while it runs (the U-Ignore stage is another _Training, made with
# dataclasses.replace); _TrainState and _Window are the small mutable part that every step moves.
@dataclass(frozen=True)
class _Training:
    """What one training (a run, or the U-Ignore stage of a U-SelfTrained one) is given, fixed from its first step to its last."""

    setup: _Setup
    folder: RunFolder
    recipe: Recipe
    dist: Distributed
    placement: Placement
    workers: int
    deterministic: bool
    progress: Progress | None

    def report(self, event: events.Event) -> None:
        """``event`` to the progress callback, if there is one."""
        if self.progress is not None:
            self.progress(event)


def train(
    source: Store | Release | str | os.PathLike[str],
    out: str | os.PathLike[str],
    recipe: Recipe | str = "chexpert-paper",
    *,
    store: str | os.PathLike[str] | None = None,
    soft_labels: pd.DataFrame | str | os.PathLike[str] | None = None,
    validate: bool = True,
    workers: int | None = None,
    device: str | torch.device | None = None,
    deterministic: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Run:
    """Train ``recipe`` on ``source`` into the run folder ``out``; resume it if ``out`` holds the same run.

    ``source`` is a prepared store (its size and resize must be the recipe's) or a release, which
    is then prepared once (all splits) into ``store`` (default ``out/store-SIZE-RESIZE``).
    Training uses the train split (the recipe's views); the valid split, when there is one, scores
    every checkpoint (``validate``) at study level with :func:`chexpert.evaluate.evaluate`.
    Policies with U-SelfTrained observations need ``soft_labels`` (a CSV or DataFrame keyed by
    Path); without them the run first trains with U-Ignore in ``out/u-ignore``, labels the
    uncertain training images with that model, then trains again with those labels.
    ``workers`` loader processes (default 0 on the CPU, up to 8 on a GPU). Under ``torchrun`` every
    rank trains its shard with DistributedDataParallel; rank 0 validates and writes.
    ``progress(event)`` is called with typed events describing the run (see :data:`Progress`).

    Not run as a doctest (it trains, seconds to minutes; tests/test_train.py trains such runs):

    >>> run = train(store, "runs/demo", "demo", validate=True)  # doctest: +SKIP
    """
    recipe = get_recipe(recipe)
    if workers is not None:
        check_int("workers", workers, low=0)
    placement = resolve_placement(device, recipe.precision, recipe.channels_last)
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if placement.device.type == "cuda" else 0
    folder = RunFolder(out)
    dist = Distributed(placement.device)
    ended_well = False
    try:
        if dist.main:
            _check_folder(folder, recipe)
        the_store = _training_store(source, folder, recipe, store, dist, progress)
        policy = recipe.resolved_policy()
        train_rows, valid_rows = training_rows(the_store, recipe.views)
        if len(train_rows) == 0:
            raise InvalidArgumentError(f"{the_store.path} has no training images ({recipe.views} views of the train split)")
        if validate and len(valid_rows) == 0:
            warnings.warn(f"{the_store.path} has no valid split: checkpoints are not validated, the latest are kept", TrainingWarning, stacklevel=2)
        setup = _Setup(the_store, train_rows, valid_rows if validate else valid_rows[:0], head_of(policy), policy)
        training = _Training(setup, folder, recipe, dist, placement, workers, deterministic, progress)
        needs_labels = bool(_self_trained(policy))
        table = None if soft_labels is None else _soft_label_table(soft_labels)
        identity = _identity(training, "u-ignore stage" if needs_labels and table is None else (None if table is None else _digest(table)))
        start = dist.broadcast(folder.begin(identity, overwrite=overwrite, allowed=(_store_name(recipe),)) if dist.main else None)
        dist.barrier()
        if start == "done":
            if progress is not None:
                progress(events.Done(path=str(folder.path), already=True))
            run = open_run(folder.path)
        else:
            if needs_labels and table is None:
                table = _self_training_labels(training)
            run = _train(training, table, resume=start == "resume")
        ended_well = True
        return run
    finally:
        dist.close(together=ended_well)


def _check_folder(folder: RunFolder, recipe: Recipe) -> None:
    """Refuse a folder of other files before preparing anything into it."""
    if folder.path.exists() and not folder.path.is_dir():
        raise RunError(f"{folder.path} is a file, not a folder for the run")
    if folder.path.is_dir() and folder.read_identity() is None:
        others = sorted(p.name for p in folder.path.iterdir() if p.name != _store_name(recipe))
        if others:
            raise RunError(f"{folder.path} holds other files ({', '.join(others[:5])}) and is not a run; choose a new or empty folder for the run")


def _identity(training: _Training, soft_labels: str | None) -> dict[str, Any]:
    setup = training.setup
    source = setup.store.manifest.get("source", {})
    return {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "chexpert": __version__,
        "recipe": training.recipe.to_json(),
        "head": setup.head.to_json(),
        "world_size": training.dist.world_size,
        "data": {
            "store_rows_sha256": source.get("rows_sha256"),
            "store_size": setup.store.size,
            "store_resize": setup.store.resize,
            "train_images": len(setup.train_rows),
            "valid_images": len(setup.valid_rows),
            "soft_labels": soft_labels,
        },
    }


def _self_training_labels(training: _Training) -> pd.DataFrame:
    """U-SelfTrained: train with U-Ignore in ``folder/u-ignore``, label the uncertain training images with it."""
    import dataclasses

    import pandas as pd

    from chexpert.train.run import STAGE_ONE

    setup, folder, dist = training.setup, training.folder, training.dist
    path = folder / SOFT_LABELS
    observations = _self_trained(setup.policy)
    if not path.exists():
        stage_policy = _without_self_training(setup.policy, "ignore")
        stage = dataclasses.replace(
            training, setup=_Setup(setup.store, setup.train_rows, setup.valid_rows, head_of(stage_policy), stage_policy),
            folder=RunFolder(folder / STAGE_ONE), recipe=training.recipe.replace(policy=stage_policy),
        )  # fmt: skip
        training.report(events.Stage(f"U-SelfTrained: training with U-Ignore in {stage.folder.path} to label the uncertain "
                                     f"{', '.join(observations)} images"))  # fmt: skip
        identity = _identity(stage, None)
        start = dist.broadcast(stage.folder.begin(identity, overwrite=False) if dist.main else None)
        dist.barrier()
        if start != "done":
            _train(stage, None, resume=start == "resume")
        labels = _label_uncertain(open_run(stage.folder.path), training, observations)  # every rank scores its shard
        if dist.main:
            save_atomic(path, labels.to_csv(index=False, float_format="%.6f"))
        dist.barrier()
    return pd.read_csv(path)


def _label_uncertain(run: Run, training: _Training, observations: list[str]) -> pd.DataFrame:
    """The stage model's probabilities for the training images with an uncertain label among ``observations`` (every rank)."""
    import pandas as pd

    from chexpert.train.inference import ensemble_members

    setup, placement = training.setup, training.placement
    columns = [schema.OBSERVATIONS.index(o) for o in observations]
    labels = setup.store.index.labels[setup.train_rows][:, columns]
    rows = setup.train_rows[(labels == schema.Code.UNCERTAIN).any(axis=1)]
    models = [run.model(c).to(placement.device) for c in ensemble_members(run, None)]
    transform = input_transform(run.recipe, train=False).to(placement.device)
    probabilities = score_rows(models, run.head, setup.store, rows, placement, transform, training.dist)
    wanted = [run.head.observations.index(o) for o in observations]
    frame = pd.DataFrame(probabilities[:, wanted].astype(np.float64), columns=observations)
    frame.insert(0, "Path", setup.store.index.path[rows].astype(object))
    return frame


def score_rows(
    models: Sequence[torch.nn.Module], head: Head, store: Store, rows: np.ndarray, placement: Placement,
    transform: Callable[[torch.Tensor], torch.Tensor], dist: Distributed, *, batch_size: int = 64, shard: bool = True,
) -> np.ndarray:  # fmt: skip
    """Probabilities of store ``rows``, in the order of ``rows``, on every rank; every rank must call it.

    The sharding is explicit, never left to whatever process group is active: with ``shard`` each
    rank scores its share (:class:`~chexpert.sampling.EpochSampler`'s, the last rows padded by
    wrapping around) and the shares are gathered and put back in row order; without, every rank
    scores all rows itself. Sharding was measured the faster one (``bench/ddp_scoring.py``).
    """
    from chexpert.frameworks.torch import StoreDataset, dataloader

    if len(rows) == 0:
        return np.zeros((0, len(head.observations)), dtype=np.float32)
    rank, world_size = (dist.rank, dist.world_size) if shard else (0, 1)
    loader = dataloader(StoreDataset(store, rows=rows), batch_size=batch_size, shuffle=False, rank=rank, world_size=world_size)
    found, probabilities = score_batches(models, head, loader, placement, transform)  # store rows, not positions
    if shard and dist.active:
        parts = dist.gather((found, probabilities))
        found = np.concatenate([r for r, _ in parts])
        probabilities = np.concatenate([q for _, q in parts])
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    at = np.minimum(np.searchsorted(rows[order], found), len(rows) - 1)
    if not np.array_equal(rows[order][at], found):
        raise RuntimeError("scoring returned rows that were not asked for")  # a sharding fault: never pair scores with the wrong rows
    positions = order[at]
    unique, first = np.unique(positions, return_index=True)  # a padding row scored on two ranks is taken once
    if len(unique) != len(rows):
        raise RuntimeError(f"scoring returned {len(unique)} of {len(rows)} rows")
    return probabilities[first]


class _NonFinite(Exception):
    """The model scored a validation image NaN or infinite."""


def _validate(trainer: Trainer, setup: _Setup, batch_size: int, dist: Distributed) -> tuple[float, dict[str, float]]:
    """The mean validation AUROC as ``evaluate`` defines it (:func:`~chexpert.evaluate.scoring.mean_auroc_tasks`) and each observation's, per study.

    Every rank scores its share of the valid split; the result is the whole split's on every rank.
    """
    from chexpert.evaluate import UndefinedMetricWarning, evaluate

    if len(setup.valid_rows) == 0:
        return math.nan, {}
    model = trainer.module
    dist.share_buffers(model)  # every rank scores the weights rank 0 saves
    model.eval()
    try:
        probabilities = score_rows(
            [model], trainer.head, setup.store, setup.valid_rows, trainer.placement, trainer.eval_transform, dist, batch_size=max(batch_size, 64)
        )  # fmt: skip
    finally:
        model.train()
    if not np.isfinite(probabilities).all():
        raise _NonFinite  # the same gathered scores on every rank: every rank stops
    import pandas as pd

    index = setup.store.index.take(setup.valid_rows)
    studies, scores = study_scores(index.study_keys(), probabilities.astype(np.float64))
    frame = pd.DataFrame(scores, columns=list(trainer.head.observations))
    frame.insert(0, "Study", studies.astype(object))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # an observation without positives scores NaN
        result = evaluate(frame, index, bootstrap=0)
    aurocs = {str(k): float(v) for k, v in result.table["auroc"].items()}
    return result.mean_auroc, aurocs


@dataclass
class _TrainState:
    """Where a training is and what it has done: what state.pt records besides weights, optimiser and RNG.

    Mutable, unlike the settings: every step moves it, and the helpers of the loop update it in
    place where they took (and returned) its values one by one.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch done
    kept: list[tuple[int, float]] = field(default_factory=list)  # (step, metric) of the checkpoints kept, as rank 0 decided
    elapsed: float = 0.0  # seconds of training, validation not counted
    images: int = 0  # images trained on, over all ranks
    last_saved: int | None = None  # the step of the state on disk

    @classmethod
    def restored(cls, state: Mapping[str, Any]) -> _TrainState:
        """The position a state.pt (read by :func:`~chexpert.train.run.load_resume_state`) records."""
        return cls(
            step=int(state["step"]), epoch=int(state["epoch"]), position=int(state["batch"]), kept=[(int(s), float(m)) for s, m in state["kept"]],
            elapsed=float(state["elapsed"]), images=int(state["images"]), last_saved=int(state["step"]),
        )  # fmt: skip


@dataclass
class _Window:
    """The training loss and throughput since the last logged step. Mutable: every step adds to it.

    The sums stay on the device, so that a step does not wait for the GPU; they are read when a step is logged.
    """

    running: torch.Tensor  # the summed loss
    bad: torch.Tensor  # the first step whose loss was not finite (0: none yet)
    steps: int = 0
    images: int = 0  # over all ranks
    start: float = field(default_factory=time.perf_counter)

    @classmethod
    def on(cls, device: torch.device) -> _Window:
        return cls(torch.zeros((), device=device), torch.zeros((), dtype=torch.int64, device=device))

    def add(self, loss: torch.Tensor, step: int, images: int) -> None:
        self.running += loss
        self.bad.masked_fill_((self.bad == 0) & ~torch.isfinite(loss), step)
        self.steps += 1
        self.images += images

    def restart(self, now: float) -> None:
        self.running.zero_()
        self.steps, self.images, self.start = 0, 0, now


@dataclass(frozen=True)
class _Loop:
    """A training under way: its settings, what was built for it and its length, fixed from its first step to its last."""

    training: _Training
    trainer: Trainer
    log: RunLog | None  # rank 0's; None on the other ranks
    steps_per_epoch: int
    total: int


def _train(training: _Training, soft_labels: pd.DataFrame | None, *, resume: bool) -> Run:
    recipe, dist, folder = training.recipe, training.dist, training.folder
    loader = _loader(training, soft_labels)
    steps_per_epoch = len(loader)
    total = recipe.epochs * steps_per_epoch if recipe.max_steps is None else min(recipe.max_steps, recipe.epochs * steps_per_epoch)
    with _run_settings(training.placement, training.deterministic):
        torch.manual_seed(recipe.seed)  # the same initial weights on every rank
        trainer = Trainer(recipe, training.setup.head, training.placement, dist)
        state = _resume(training, trainer) if resume else _TrainState()
        log = _start(training, state, steps_per_epoch, total, resume=resume) if dist.main else None
        try:
            _run_epochs(_Loop(training, trainer, log, steps_per_epoch, total), loader, state)
        finally:
            if log is not None:
                log.close()
        if dist.main:
            _write_summary(folder, state)
        dist.barrier()
    run = open_run(folder.path)
    if dist.main:
        training.report(events.Done(path=str(folder.path), already=False, best=run.checkpoints[0].metric if run.checkpoints else math.nan))
    return run


def _loader(training: _Training, soft_labels: pd.DataFrame | None) -> torch.utils.data.DataLoader[Any]:
    from chexpert.frameworks.torch import StoreDataset, dataloader

    setup, recipe, workers = training.setup, training.recipe, training.workers
    dataset = StoreDataset(setup.store, policy=setup.policy, rows=setup.train_rows, soft_labels=soft_labels)
    return dataloader(
        dataset, batch_size=recipe.batch_size, seed=recipe.seed, num_workers=workers, pin_memory=training.placement.device.type == "cuda",
        persistent_workers=workers > 0,
    )  # fmt: skip


def _resume(training: _Training, trainer: Trainer) -> _TrainState:
    """Load state.pt into ``trainer`` and this process's RNG; the position it records."""
    path = training.folder / STATE
    saved = load_resume_state(path)
    try:
        trainer.load(saved)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: not this run's state ({str(exc).splitlines()[0][:200]}); pass {option('overwrite')} to start the run afresh") from None
    state = _TrainState.restored(saved)
    rng, rank = saved["rng"], training.dist.rank
    _set_rng_state(rng[rank] if rank < len(rng) else rng[0], training.placement)
    return state


def _start(training: _Training, state: _TrainState, steps_per_epoch: int, total: int, *, resume: bool) -> RunLog:
    """Rank 0: drop the checkpoints the state does not keep, open the logs (cut back to the state's step on resume), report the start."""
    setup, folder, recipe = training.setup, training.folder, training.recipe
    folder.drop_checkpoints_except([s for s, _ in state.kept])
    log = RunLog(folder.path, setup.head.observations, resume_step=state.step if resume else None)
    training.report(events.Start(
        path=str(folder.path), step=state.step, total=total, steps_per_epoch=steps_per_epoch,
        images=len(setup.train_rows), valid_images=len(setup.valid_rows), placement=training.placement.describe(),
        world_size=training.dist.world_size, model=recipe.model, policy=recipe.policy if isinstance(recipe.policy, str) else "custom",
    ))  # fmt: skip
    return log


def _run_epochs(loop: _Loop, loader: torch.utils.data.DataLoader[Any], state: _TrainState) -> None:
    """Train from ``state`` to the last step, an epoch of the loader at a time (the first from the state's batch position)."""
    training = loop.training
    seed, rank = training.recipe.seed, training.dist.rank
    loop.trainer.model.train()
    window = _Window.on(training.placement.device)
    while state.step < loop.total:
        loader.sampler.set_epoch(state.epoch, start=state.position)  # type: ignore[attr-defined]
        first = state.step

        def seed_of(i: int, first: int = first) -> int:
            return step_seed(seed, rank, first + 1 + i)

        for batch in Feeder(loader, training.placement, loop.trainer.transform, seed_of):
            _step(loop, state, window, batch)
            if state.step == loop.total:
                break


def _step(loop: _Loop, state: _TrainState, window: _Window, batch: DeviceBatch) -> None:
    """One optimisation step on ``batch``, then what falls due at it: a new epoch, a log line, a checkpoint."""
    trainer, recipe, dist = loop.trainer, loop.training.recipe, loop.training.dist
    if trainer.pretraining and state.step >= recipe.pretrain_epochs * loop.steps_per_epoch:
        trainer.finish_pretraining()
    lr = recipe.lr_at(state.step, loop.steps_per_epoch, loop.total, trainer.plateau["factor"])
    trainer.set_lr(lr)
    torch.manual_seed(step_seed(recipe.seed, dist.rank, state.step + 1, stream=1))  # dropout and the like
    window.add(trainer.step(batch.inputs, batch.labels), state.step + 1, batch.size * dist.world_size)
    state.step, state.position = state.step + 1, state.position + 1
    if state.position == loop.steps_per_epoch:
        state.epoch, state.position = state.epoch + 1, 0
        if isinstance(trainer.optimizer, PESG):
            trainer.optimizer.update_regularizer()  # LibAUC: a new reference point each epoch
    log_due = state.step % recipe.log_every == 0 or state.step == loop.total
    checkpoint_due = state.step % recipe.checkpoint_every == 0 or state.step == loop.total
    if log_due or checkpoint_due:
        _stop_if_diverged(loop.training, state, int(window.bad.item()))  # before anything of these steps is written
    if log_due:
        _log_step(loop, state, window, lr)
    if checkpoint_due:
        _save_checkpoint(loop, state)
        window.start = time.perf_counter()  # validation is not training time


def _log_step(loop: _Loop, state: _TrainState, window: _Window, lr: float) -> None:
    """The mean loss of the window over all ranks and its throughput: into the log and a Step event (rank 0); a new window."""
    loss = loop.training.dist.mean(float(window.running.item()) / window.steps)
    now = time.perf_counter()
    seconds = now - window.start
    state.elapsed += seconds
    state.images += window.images
    rate = window.images / seconds if seconds > 0 else math.nan
    if loop.log is not None:
        loop.log.train(state.step, state.epoch, loss, lr, rate, state.elapsed)
        loop.training.report(events.Step(step=state.step, total=loop.total, epoch=state.epoch, loss=loss, images_per_second=rate))
    window.restart(now)


def _save_checkpoint(loop: _Loop, state: _TrainState) -> None:
    """A checkpoint at the state's step, unless the weights or their validation scores are not finite (a RunError then)."""
    # Weights can turn non-finite with a finite loss (an infinite gradient): never save them.
    finite = bool(torch.stack([torch.isfinite(p).all() for p in loop.trainer.module.parameters()]).all())
    _stop_if_diverged(loop.training, state, 0 if finite else state.step, "the weights")
    try:
        _checkpoint(loop, state)
    except _NonFinite:
        _stop_if_diverged(loop.training, state, state.step, "the model's validation scores")
    state.last_saved = state.step


def _stop_if_diverged(training: _Training, state: _TrainState, bad: int, what: str = "the training loss") -> None:
    """A RunError on every rank when any rank saw a non-finite loss (``bad``: its first such step, 0 for none)."""
    steps = [s for s in training.dist.gather(bad) if s > 0]
    if not steps:
        return
    kept = (
        f"{training.folder / STATE} holds the last good checkpoint (step {state.last_saved}), from which the same command resumes"
        if state.last_saved is not None
        else "no checkpoint was written"
    )  # fmt: skip
    raise RunError(f"{what} became NaN or infinite at step {min(steps)}: training stopped; {kept}. Lower the learning rate, or check the data")


def _checkpoint(loop: _Loop, state: _TrainState) -> None:
    """Validate (every rank scores a share), write the weights and state and keep the best (rank 0); every rank takes rank 0's kept list."""
    training, trainer = loop.training, loop.trainer
    dist = training.dist
    rng = dist.gather(_rng_state(training.placement))
    metric, aurocs = _validate(trainer, training.setup, training.recipe.batch_size, dist)  # every rank scores a share; rank 0 decides
    kept = state.kept
    if dist.main:
        _record_validation(loop, state, metric, aurocs)
        kept = _write_checkpoint(loop, state, metric, rng)
    dist.barrier()
    kept, trainer.plateau = dist.broadcast((kept, trainer.plateau))
    state.kept = list(kept)


def _record_validation(loop: _Loop, state: _TrainState, metric: float, aurocs: dict[str, float]) -> None:
    """Rank 0: the plateau schedule's step, the validation log line and event."""
    training = loop.training
    if training.recipe.schedule == "plateau" and not loop.trainer.pretraining and not math.isnan(metric):
        _plateau_step(loop.trainer.plateau, metric, training.recipe)
    if not len(training.setup.valid_rows):
        return
    if loop.log is not None:
        loop.log.validation(state.step, state.epoch, metric, aurocs)
    if training.progress is not None:
        from chexpert.evaluate.scoring import mean_auroc_tasks

        training.progress(events.Validation(step=state.step, mean_auroc=metric, aurocs=aurocs, tasks=mean_auroc_tasks(aurocs)))


def _write_checkpoint(loop: _Loop, state: _TrainState, metric: float, rng: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Rank 0: the weights, then state.pt naming the checkpoints kept, then the others removed; the kept list."""
    training, step = loop.training, state.step
    folder = training.folder
    weights = loop.trainer.state()
    path = folder.checkpoint_file(step)
    path.parent.mkdir(exist_ok=True)
    save_atomic(path, {"model": weights["model"], "step": step, "metric": metric})
    ranked = sorted_kept([*[k for k in state.kept if k[0] != step], (step, metric)], folder)
    kept = [(c.step, c.metric) for c in ranked[: training.recipe.keep_best]]
    saved = {
        **weights, "step": step, "epoch": state.epoch, "batch": state.position, "rng": rng, "kept": kept,
        "elapsed": state.elapsed, "images": state.images, "chexpert": __version__,
    }  # fmt: skip
    save_atomic(folder / STATE, saved)
    folder.drop_checkpoints_except([s for s, _ in kept])  # evicted only now that the state no longer names them
    training.report(events.Checkpoint(step=step, path=str(path), kept=len(kept)))
    return kept


def _plateau_step(plateau: dict[str, Any], metric: float, recipe: Recipe) -> None:
    """Reduce-on-plateau (on the mean validation AUROC): times ``lr_factor`` after more than ``patience`` validations without a better one."""
    if metric > plateau["best"]:
        plateau["best"], plateau["bad"] = metric, 0
        return
    plateau["bad"] += 1
    if plateau["bad"] > recipe.patience:
        plateau["factor"], plateau["bad"] = plateau["factor"] * recipe.lr_factor, 0


def _write_summary(folder: RunFolder, state: _TrainState) -> None:
    import json

    ranked = sorted_kept(state.kept, folder)
    elapsed, images = state.elapsed, state.images
    summary = {
        "steps": state.step,
        "epochs_completed": state.epoch,
        "seconds": round(elapsed, 3),
        "images": images,
        "images_per_second": round(images / elapsed, 1) if elapsed > 0 else None,
        "kept": [{"step": c.step, "metric": None if math.isnan(c.metric) else c.metric, "file": str(c.path.relative_to(folder.path))} for c in ranked],
        "best_mean_auroc": None if not ranked or math.isnan(ranked[0].metric) else ranked[0].metric,
    }
    save_atomic(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
