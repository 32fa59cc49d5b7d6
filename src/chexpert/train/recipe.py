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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from chexpert.errors import InvalidArgumentError
from chexpert.imaging import RESIZE_MODES
from chexpert.policy import PRESETS, Policy, get_policy
from chexpert.validation import check_choice, check_int, check_number, check_range, check_type

__all__ = ["Recipe", "RECIPES", "VIEWS", "PRECISIONS", "get_recipe"]

#: Which training images a recipe uses.
VIEWS: Final[tuple[str, ...]] = ("all", "frontal", "lateral")
#: Mixed precision: "auto" is bf16 on a GPU that has it (else fp16), none on the CPU.
PRECISIONS: Final[tuple[str, ...]] = ("auto", "bf16", "fp16", "off")
_AUTO_OR_BOOL = ("auto", True, False)


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

    @property
    def network_size(self) -> int:
        """The side of the images the network sees."""
        return self.input_size or self.size

    @property
    def augments(self) -> bool:
        """Whether any random transform is on."""
        return self.crop_scale != (1.0, 1.0) or bool(self.degrees or self.translate or self.brightness or self.contrast)

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
}


def get_recipe(recipe: str | Recipe) -> Recipe:
    """``recipe`` itself, or the named recipe from :data:`RECIPES`.

    >>> get_recipe("demo").model
    'tiny-cnn'
    """
    if isinstance(recipe, Recipe):
        return recipe
    return RECIPES[check_choice("recipe", recipe, RECIPES, what="recipe")]
