"""What a training run does, as one frozen value: the paper's baseline by default, every choice named.

A :class:`Recipe` holds everything that decides a run's result (model, input, policy, optimiser,
schedule, augmentation, precision, seed); how it runs (workers, device) is given to
:func:`chexpert.train.train` instead, so that a run resumed with more workers or on another
machine continues the same run. Recipes are written to the run folder as JSON and compared on
resume.

The defaults are the CheXpert paper's (Irvin et al. 2019): DenseNet-121 from ImageNet weights, 320
x 320 inputs, Adam (beta 0.9/0.999) at a fixed learning rate of 1e-4, batch 16, 3 epochs, a
checkpoint (and a validation) every 4,800 iterations, no augmentation, U-Ones.

>>> Recipe().model, Recipe().batch_size, Recipe().checkpoint_every
('densenet121', 16, 4800)
>>> Recipe(batch_size=0)
Traceback (most recent call last):
    ...
chexpert.errors.InvalidArgumentError: batch_size must be an integer >= 1, not 0
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chexpert.errors import InvalidArgumentError
from chexpert.imaging import RESIZE_MODES
from chexpert.policy import PRESETS, Policy, get_policy
from chexpert.validation import check_choice, check_int, check_number, check_range, check_type

__all__ = ["Recipe", "RECIPES", "VIEWS", "PRECISIONS", "SCHEDULES", "LOSSES", "OPTIMIZERS", "get_recipe", "read_recipe", "recipe_toml"]

#: Which training images a recipe uses.
VIEWS: Final[tuple[str, ...]] = ("all", "frontal", "lateral")
#: Mixed precision: "auto" is bf16 on a GPU that has it (else fp16), none on the CPU.
PRECISIONS: Final[tuple[str, ...]] = ("auto", "bf16", "fp16", "off")
_AUTO_OR_BOOL = ("auto", True, False)
#: Learning-rate schedules (after any warm-up): fixed, times ``lr_factor`` every ``step_every``
#: epochs, cosine down to ``min_lr``, times ``lr_factor`` after ``patience`` validations without a
#: better mean validation AUROC.
SCHEDULES: Final[tuple[str, ...]] = ("constant", "step", "cosine", "plateau")
#: Training losses: binary cross-entropy (the paper), or LibAUC's AUC-margin loss (needs ``pesg``).
LOSSES: Final[tuple[str, ...]] = ("bce", "aucm")
#: Optimisers: Adam (the paper), or LibAUC's PESG (for the AUC-margin loss).
OPTIMIZERS: Final[tuple[str, ...]] = ("adam", "pesg")


@dataclass(frozen=True)
class Recipe:
    """Every choice that decides a training run's result (see the module docstring for the defaults).

    ``size``/``resize`` are those of the prepared store the run reads (``chexpert prepare``);
    ``input_size`` (default ``size``) is what the network sees after augmentation. ``weights``
    is ``"none"``, ``"imagenet"`` (torchvision's file, loaded from the torch hub cache, never
    downloaded) or the path of a local weights file. ``policy`` is a preset name from
    :data:`chexpert.policy.PRESETS` or a :class:`~chexpert.policy.Policy`. ``max_steps`` stops
    early (``None``: ``epochs`` full epochs). A checkpoint is validated and written every
    ``checkpoint_every`` steps and at the end; the ``keep_best`` best (by mean validation AUROC)
    are kept for the ensemble. Augmentation is off with the defaults (the paper used none):
    ``crop_scale``, ``degrees``, ``translate``, ``brightness`` and ``contrast`` turn on
    :class:`chexpert.augment.Augment`'s transforms.

    The learning rate follows ``schedule`` (:data:`SCHEDULES`) after a linear warm-up of
    ``warmup_steps``. ``loss``/``optimizer`` ``"aucm"``/``"pesg"`` is LibAUC's deep AUC
    maximisation (the AUC-margin loss with ``margin``, PESG with ``epoch_decay`` and
    ``momentum``); with ``pretrain_epochs`` the run first trains that many epochs with
    cross-entropy and Adam at ``pretrain_lr``, then switches (the schedule starts at the switch).

    >>> Recipe(policy="u-multiclass", model="resnet18", weights="none").policy
    'u-multiclass'
    """

    model: str = "densenet121"
    weights: str = "imagenet"
    channels: int = 3
    size: int = 320
    resize: str = "pad"
    input_size: int | None = None
    policy: str | Policy = "u-ones"
    views: str = "all"
    batch_size: int = 16
    epochs: int = 3
    max_steps: int | None = None
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    checkpoint_every: int = 4800
    keep_best: int = 10
    log_every: int = 50
    crop_scale: tuple[float, float] = (1.0, 1.0)
    degrees: float = 0.0
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    precision: str = "auto"
    channels_last: str | bool = "auto"
    compile: bool = False
    seed: int = 0
    schedule: str = "constant"
    warmup_steps: int = 0
    step_every: int = 1
    lr_factor: float = 0.1
    patience: int = 1
    min_lr: float = 0.0
    loss: str = "bce"
    optimizer: str = "adam"
    margin: float = 1.0
    epoch_decay: float = 0.0
    momentum: float = 0.9
    pretrain_epochs: int = 0
    pretrain_lr: float = 1e-4

    def __post_init__(self) -> None:
        check_type("model", self.model, str, "a model name such as 'densenet121'")
        if not self.model:
            raise InvalidArgumentError("model must name a model, e.g. 'densenet121'")
        check_type("weights", self.weights, str, "'none', 'imagenet' or the path of a weights file")
        check_choice("channels", self.channels, (1, 3))
        check_int("size", self.size, low=8, high=4096)
        check_choice("resize", self.resize, RESIZE_MODES)
        if self.input_size is not None:
            check_int("input_size", self.input_size, low=8, high=4096)
        if isinstance(self.policy, str):
            get_policy(self.policy)
        else:
            check_type("policy", self.policy, Policy, f"a Policy or a preset name ({', '.join(PRESETS)})")
        check_choice("views", self.views, VIEWS)
        check_int("batch_size", self.batch_size, low=1)
        check_int("epochs", self.epochs, low=1)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, low=1)
        check_number("lr", self.lr, low=0.0, open_low=True)
        object.__setattr__(self, "betas", check_range("betas", self.betas, 0.0, 0.999999))
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_int("checkpoint_every", self.checkpoint_every, low=1)
        check_int("keep_best", self.keep_best, low=1)
        check_int("log_every", self.log_every, low=1)
        object.__setattr__(self, "crop_scale", check_range("crop_scale", self.crop_scale, 1e-3, 1.0))
        check_number("degrees", self.degrees, low=0.0, high=180.0)
        check_number("translate", self.translate, low=0.0, high=1.0)
        check_number("brightness", self.brightness, low=0.0, high=1.0)
        check_number("contrast", self.contrast, low=0.0, high=1.0)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("channels_last", self.channels_last, _AUTO_OR_BOOL)
        check_type("compile", self.compile, bool, "True or False")
        check_int("seed", self.seed, low=0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, low=0)
        check_int("step_every", self.step_every, low=1)
        check_number("lr_factor", self.lr_factor, low=0.0, high=1.0, open_low=True)
        check_int("patience", self.patience, low=0)
        check_number("min_lr", self.min_lr, low=0.0)
        check_choice("loss", self.loss, LOSSES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if (self.loss == "aucm") != (self.optimizer == "pesg"):
            raise InvalidArgumentError("loss 'aucm' and optimizer 'pesg' go together (PESG also updates the loss's own variables)")
        check_number("margin", self.margin, low=0.0)
        check_number("epoch_decay", self.epoch_decay, low=0.0)
        check_number("momentum", self.momentum, low=0.0, high=1.0)
        check_int("pretrain_epochs", self.pretrain_epochs, low=0)
        if self.pretrain_epochs >= self.epochs:
            raise InvalidArgumentError(f"pretrain_epochs ({self.pretrain_epochs}) must be fewer than epochs ({self.epochs})")
        check_number("pretrain_lr", self.pretrain_lr, low=0.0, open_low=True)

    @property
    def network_size(self) -> int:
        """The side of the images the network sees."""
        return self.input_size or self.size

    @property
    def augments(self) -> bool:
        """Whether any random transform is on."""
        return self.crop_scale != (1.0, 1.0) or bool(self.degrees or self.translate or self.brightness or self.contrast)

    def lr_at(self, step: int, steps_per_epoch: int, total: int, plateau: float = 1.0) -> float:
        """The learning rate of step ``step`` (0-based) of a run of ``total`` steps; ``plateau`` is the factor reduce-on-plateau reached.

        A pure function of its arguments, so a resumed run follows the same rates.

        >>> r = Recipe(lr=1.0, schedule="cosine", warmup_steps=2)
        >>> [round(r.lr_at(s, 10, 6), 3) for s in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
        """
        switch = self.pretrain_epochs * steps_per_epoch
        if step < switch:
            return self.pretrain_lr
        s, length = step - switch, max(total - switch, 1)
        if s < self.warmup_steps:
            return self.lr * (s + 1) / self.warmup_steps
        if self.schedule == "step":
            lr = self.lr * self.lr_factor ** ((s // steps_per_epoch) // self.step_every)
        elif self.schedule == "cosine":
            span = max(length - self.warmup_steps, 1)
            lr = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * (s - self.warmup_steps) / span))
        elif self.schedule == "plateau":
            lr = self.lr * plateau
        else:
            lr = self.lr
        return max(lr, self.min_lr) if self.schedule != "constant" else lr

    def resolved_policy(self) -> Policy:
        """The policy as a :class:`~chexpert.policy.Policy`."""
        return get_policy(self.policy)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and checked).

        >>> Recipe().replace(epochs=1).epochs
        1
        """
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back.

        >>> Recipe.from_json(Recipe(policy="u-zeros").to_json()) == Recipe(policy="u-zeros")
        True
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(self.policy, Policy):
            out["policy"] = {"policy": _policy_json(self.policy)}
        out["betas"] = list(self.betas)
        out["crop_scale"] = list(self.crop_scale)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe :meth:`to_json` wrote; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown recipe field(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        values = dict(data)
        policy = values.get("policy")
        if isinstance(policy, Mapping):
            values["policy"] = _policy_from_json(policy["policy"])
        for name in ("betas", "crop_scale"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def _policy_json(policy: Policy) -> dict[str, Any]:
    out = dataclasses.asdict(policy)
    out["per_observation"] = [list(p) for p in policy.per_observation]
    return out


def _policy_from_json(data: Mapping[str, Any]) -> Policy:
    values = dict(data)
    values["per_observation"] = tuple(tuple(p) for p in values.get("per_observation", ()))
    if values.get("observations") is not None:
        values["observations"] = tuple(values["observations"])
    for name in ("smooth_ones", "smooth_zeros"):
        if name in values:
            values[name] = tuple(values[name])
    return Policy(**values)


#: Named recipes: the paper's baseline, and the small network the demo trains on the CPU in a minute.
RECIPES: dict[str, Recipe] = {
    "chexpert-paper": Recipe(),
    "demo": Recipe(
        model="tiny-cnn",
        weights="none",
        channels=1,
        size=64,
        policy="u-ones",
        batch_size=32,
        epochs=10,
        lr=1e-3,
        checkpoint_every=120,
        keep_best=3,
        log_every=10,
    ),
    # The CheXpert leaderboard's deep AUC maximisation (Yuan et al. 2021, LibAUC): DenseNet-121
    # trained with cross-entropy, then fine-tuned with the AUC-margin loss and PESG at lr 0.1,
    # divided by 10 each epoch, with LibAUC's CheXpert settings (margin 1, epoch_decay 2e-3,
    # weight_decay 1e-5, batch 32).
    "libauc-aucm": Recipe(
        batch_size=32,
        epochs=3,
        pretrain_epochs=1,
        pretrain_lr=1e-4,
        loss="aucm",
        optimizer="pesg",
        lr=0.1,
        schedule="step",
        step_every=1,
        lr_factor=0.1,
        margin=1.0,
        epoch_decay=2e-3,
        weight_decay=1e-5,
    ),
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """``recipe`` itself, or the named recipe from :data:`RECIPES`.

    >>> get_recipe("demo").model
    'tiny-cnn'
    """
    if isinstance(recipe, Recipe):
        return recipe
    return RECIPES[check_choice("recipe", recipe, RECIPES, what="recipe")]


_FILE_KINDS = (".toml", ".json", ".yaml", ".yml")


@dataclass(frozen=True)
class RecipeFile:
    """A recipe file read: the recipe, and the fields the file itself sets (``base`` aside)."""

    recipe: Recipe
    keys: frozenset[str]


def read_recipe(path: str | os.PathLike[str]) -> Recipe:
    """The recipe in a TOML (or JSON, or YAML when PyYAML is installed) file.

    Keys are :class:`Recipe` fields (``weight-decay`` or ``weight_decay``); ``base`` names the
    recipe of :data:`RECIPES` the file changes (default: the paper's). ``policy`` is a preset name
    or a table of :class:`~chexpert.policy.Policy` fields. Unknown keys and bad values are an
    error naming the file.

    >>> _ = Path("r.toml").write_text('base = "demo"\\nlr = 3e-4\\nschedule = "cosine"\\n')
    >>> read_recipe("r.toml").lr
    0.0003
    """
    return read_recipe_values(path).recipe


def _read_recipe_file(path: str | os.PathLike[str]) -> tuple[Path, Any]:
    file = Path(path).expanduser()
    if file.suffix.lower() not in _FILE_KINDS:
        raise InvalidArgumentError(f"{str(path)!r} is neither a named recipe ({', '.join(RECIPES)}) nor a recipe file ({', '.join(_FILE_KINDS)})")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgumentError(f"{file}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"{file}: unreadable recipe file ({exc.__class__.__name__})") from None
    data: Any
    try:
        if file.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif file.suffix.lower() == ".json":
            import json

            data = json.loads(text)
        else:
            try:
                import yaml
            except ImportError:
                raise InvalidArgumentError(f"{file}: YAML recipes need PyYAML (pip install pyyaml); or write it as TOML") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc)) from None
    except ValueError as exc:  # tomllib's and json's errors are ValueErrors
        raise InvalidArgumentError(f"{file}: not a valid {file.suffix.lstrip('.').upper()} recipe ({str(exc).splitlines()[0]})") from None
    return file, data


def read_recipe_values(path: str | os.PathLike[str]) -> RecipeFile:
    """:func:`read_recipe`, also saying which fields the file sets (``chexpert train`` lets a store decide the others' size)."""
    file, data = _read_recipe_file(path)
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{file}: a recipe file holds keys and values (Recipe fields)")
    values = {str(k).replace("-", "_"): v for k, v in data.items()}
    base = values.pop("base", "chexpert-paper")
    policy = values.get("policy")
    if isinstance(policy, Mapping) and "policy" not in policy:
        values["policy"] = {"policy": dict(policy)}
    try:
        start = get_recipe(base).to_json()
        start.update(values)
        return RecipeFile(Recipe.from_json(start), frozenset(values))
    except (InvalidArgumentError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{file}: {exc}") from None


def recipe_toml(recipe: Recipe) -> str:
    """``recipe`` as the TOML :func:`read_recipe` reads back (fields left at None are left out).

    >>> read_recipe_text = recipe_toml(Recipe(lr=3e-4))
    >>> "lr = 0.0003" in read_recipe_text
    True
    """
    top: list[str] = []
    tables: list[str] = []
    for key, value in recipe.to_json().items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append(f"\n[{key}.policy]")
            tables += [f"{k} = {_toml_value(v)}" for k, v in value["policy"].items() if v is not None]
        else:
            top.append(f"{key} = {_toml_value(value)}")
    return "\n".join(["# The resolved recipe of this run (run.json holds the same); chexpert train --recipe FILE reads it.", *top, *tables]) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)  # numbers and ASCII-escaped strings are the same in TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InvalidArgumentError(f"cannot write {value!r} to TOML")
