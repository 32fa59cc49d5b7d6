"""Networks by name: torchvision's classifiers (DenseNet-121 by default), timm's when installed, and a tiny CNN.

:func:`build_model` returns the network with its 1000-way ImageNet layer replaced by one with
``outputs`` units and, for ``channels=1``, its first convolution taking one plane (ImageNet
filters summed over RGB, which is what they computed on a grey image repeated three times).

ImageNet weights are never downloaded: ``weights="imagenet"`` loads torchvision's own file from the
torch hub cache (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default)
when it is there, and otherwise fails saying which file to place where. A path loads that file.

>>> build_model("tiny-cnn", outputs=5, channels=1)(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 5])
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn

from chexpert.errors import ChexpertError, InvalidArgumentError, option
from chexpert.validation import check_choice, check_int

__all__ = ["build_model", "model_names", "imagenet_weights_file", "TINY_CNN", "WeightsNotFoundError"]

#: The built-in small network (four conv-BN-ReLU stages) the demo trains on the CPU.
TINY_CNN: Final = "tiny-cnn"
_IMAGENET_CLASSES = 1000
#: Mean and spread of ImageNet's RGB statistics, for networks fed one grey channel.
GREY_MEAN, GREY_STD = 0.449, 0.226


class WeightsNotFoundError(ChexpertError, FileNotFoundError):
    """Pretrained weights were asked for and their file is not on this machine (nothing is downloaded)."""


class TinyCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU stages (widths w, 2w, 4w, 8w), max-pooled between, global average, linear.

    Small enough to learn the look-alike's findings on two CPU cores in a minute at 64 x 64.
    """

    def __init__(self, outputs: int, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = channels
        for stage in range(4):
            out = width * 2**stage
            layers += [nn.Conv2d(previous, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2) if stage < 3 else nn.AdaptiveAvgPool2d(1))
            previous = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(previous, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _torchvision() -> Any:
    try:
        import torchvision
    except ModuleNotFoundError:
        raise ModuleNotFoundError("torchvision models need torchvision: pip install 'chexpert[train]'") from None
    return torchvision


def _timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts besides timm's: the tiny CNN and torchvision's classifiers.

    >>> "densenet121" in model_names() and "tiny-cnn" in model_names()
    True
    """
    names = [TINY_CNN]
    if importlib.util.find_spec("torchvision") is not None:
        tv = _torchvision()
        names += sorted(tv.models.list_models(module=tv.models))
    return names


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of model ``name`` (the file need not exist).

    >>> imagenet_weights_file("densenet121").name
    'densenet121-a639ec97.pth'
    """
    tv = _torchvision()
    try:
        weights = tv.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise InvalidArgumentError(f"torchvision has no ImageNet weights for {name!r}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / str(weights.url).rsplit("/", 1)[-1]


def build_model(name: str = "densenet121", *, outputs: int, channels: int = 3, weights: str = "none") -> nn.Module:
    """The network ``name`` with ``outputs`` output units for ``channels`` (1 or 3) input planes.

    ``name`` is ``"tiny-cnn"``, a torchvision classifier (``torchvision.models.list_models()``) or,
    when timm is installed, a timm model. ``weights`` is ``"none"`` (random initialisation, from
    the current torch seed), ``"imagenet"`` or the path of a weights file for the 1000-class model.

    >>> build_model("densenet121", outputs=14, weights="none").classifier  # doctest: +ELLIPSIS
    Linear(in_features=1024, out_features=14, bias=True)
    """
    check_int("outputs", outputs, low=1)
    check_choice("channels", channels, (1, 3))
    if name == TINY_CNN:
        if weights != "none":
            raise InvalidArgumentError(f"{TINY_CNN} has no pretrained weights; use weights='none'")
        return TinyCNN(outputs, channels)
    tv_names = set(model_names()[1:]) if importlib.util.find_spec("torchvision") is not None else set()
    if name in tv_names:
        model = _torchvision_model(name, weights)
    elif _timm_available():
        return _timm_model(name, outputs, channels, weights)
    else:
        shown = ", ".join(sorted(tv_names)[:12])
        raise InvalidArgumentError(f"unknown model {name!r}: not {TINY_CNN} nor a torchvision classifier (e.g. {shown}, ...); timm models need timm installed")
    _replace_classifier(model, outputs, name)
    if channels == 1:
        _one_input_plane(model, name)
    return model


def _torchvision_model(name: str, weights: str) -> nn.Module:
    tv = _torchvision()
    kwargs: dict[str, Any] = {}
    if name in ("inception_v3", "googlenet"):
        kwargs["aux_logits"] = False  # one output; the auxiliary heads are ImageNet training aids
        kwargs["init_weights"] = True
    if weights == "none":
        return tv.models.get_model(name, weights=None, **kwargs)
    if weights == "imagenet":
        path = imagenet_weights_file(name)
        if not path.is_file():
            env = "TORCH_HOME" if "TORCH_HOME" in os.environ else "TORCH_HOME (unset: the default applies)"
            url = str(tv.models.get_model_weights(name).DEFAULT.url)
            raise WeightsNotFoundError(
                f"ImageNet weights for {name} are not on this machine and chexpert never downloads: place the file "
                f"{path.name} in {path.parent} (from {url}; {env} decides the folder), or pass "
                f"{option('weights', 'FILE')} with the file's path, or train from scratch with {option('weights', 'none')}"
            )
        source: Path = path
    else:
        source = Path(weights).expanduser()
        if not source.is_file():
            raise WeightsNotFoundError(f"{source}: weights file not found (weights must be 'none', 'imagenet' or a file)")
    state = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = tv.models.get_model(name, weights=None, **kwargs)
    if name.startswith("densenet"):
        state = _densenet_keys(state)
    try:
        model.load_state_dict(state, strict=not kwargs)  # without aux heads, their weights are extra
    except RuntimeError as exc:
        raise InvalidArgumentError(f"{source}: not {name} ImageNet weights ({str(exc).splitlines()[0]})") from None
    return model


def _densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's DenseNet files use old key names ('norm.1'); its loader renames them, as here."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    out = {}
    for key, value in state.items():
        match = pattern.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _timm_model(name: str, outputs: int, channels: int, weights: str) -> nn.Module:
    import timm

    known = timm.list_models()
    if name not in known:
        import difflib

        torchvision_names = model_names()[1:] if importlib.util.find_spec("torchvision") is not None else []
        close = difflib.get_close_matches(name, list(dict.fromkeys([*torchvision_names, *known])), n=5)
        raise InvalidArgumentError(
            f"unknown model {name!r}: neither {TINY_CNN}, a torchvision classifier nor a timm model" + (f"; close names: {', '.join(close)}" if close else "")
        )
    if weights == "none":
        return timm.create_model(name, pretrained=False, num_classes=outputs, in_chans=channels)
    if weights == "imagenet":
        raise WeightsNotFoundError(f"chexpert never downloads: for timm's {name}, save its pretrained weights to a file and pass {option('weights', 'FILE')}")
    source = Path(weights).expanduser()
    if not source.is_file():
        raise WeightsNotFoundError(f"{source}: weights file not found")
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(source)}, num_classes=outputs, in_chans=channels)


def _replace_classifier(model: nn.Module, outputs: int, name: str) -> None:
    """Swap the last layer giving 1000 ImageNet classes (a Linear, or SqueezeNet's 1x1 Conv2d) for ``outputs`` units."""
    last: tuple[nn.Module, str, nn.Module] | None = None
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if (isinstance(child, nn.Linear) and child.out_features == _IMAGENET_CLASSES) or (
                isinstance(child, nn.Conv2d) and child.out_channels == _IMAGENET_CLASSES
            ):
                last = (parent, child_name, child)
    if last is None:
        raise InvalidArgumentError(f"{name}: no 1000-class output layer found to replace")
    parent, child_name, child = last
    if isinstance(child, nn.Linear):
        new: nn.Module = nn.Linear(child.in_features, outputs, bias=child.bias is not None)
    else:
        new = nn.Conv2d(child.in_channels, outputs, child.kernel_size, child.stride, child.padding, bias=child.bias is not None)  # type: ignore[arg-type]
    setattr(parent, child_name, new)


def _one_input_plane(model: nn.Module, name: str) -> None:
    """Make the first 3-channel convolution take one channel, its filters summed over RGB."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                conv = nn.Conv2d(
                    1, child.out_channels, child.kernel_size, child.stride, child.padding,  # type: ignore[arg-type]
                    child.dilation, child.groups, child.bias is not None, child.padding_mode,  # type: ignore[arg-type]
                )  # fmt: skip
                with torch.no_grad():
                    conv.weight.copy_(child.weight.sum(dim=1, keepdim=True))
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)  # type: ignore[union-attr]
                setattr(parent, child_name, conv)
                return
    raise InvalidArgumentError(f"{name}: no 3-channel input convolution found to make single-channel")
