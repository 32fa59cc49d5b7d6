"""Class activation maps (Zhou et al. 2016): where in the image each observation's score comes from.

For networks that end in global average pooling and one linear layer (DenseNet, ResNet, the
built-in tiny-cnn), the logit of an observation is the spatial mean of a map: the classifier's
weights for that observation times the last feature maps. That map is the CAM, computed directly
(no gradients, no extra package): exact, and one forward pass of the feature extractor. For a
U-MultiClass column, the map of the positive logit minus the negative one.

>>> import torch
>>> from chexpert.train.inference import input_transform
>>> inputs = input_transform(run.recipe, train=False)(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
>>> maps = class_activation_maps(run.model(), run.head, inputs)
>>> maps.shape  # (images, observations, h, w) at the feature maps' resolution
torch.Size([2, 14, 4, 4])
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chexpert.errors import InvalidArgumentError
from chexpert.fileio import atomic_write
from chexpert.train.heads import Head

__all__ = ["class_activation_maps", "overlay", "CamWriter"]


def _features_and_classifier(model: torch.nn.Module) -> tuple[torch.nn.Module | None, torch.nn.Linear]:
    """(the module giving the last feature maps, the linear classifier) of a supported network."""
    from chexpert.train.models import TinyCNN

    if isinstance(model, TinyCNN):
        return model.features[:-1], model.classifier  # the last layer is the global average pool
    name = type(model).__name__
    if name == "DenseNet" and isinstance(getattr(model, "classifier", None), torch.nn.Linear):
        return None, model.classifier  # type: ignore[return-value]
    if name == "ResNet" and isinstance(getattr(model, "fc", None), torch.nn.Linear):
        return None, model.fc  # type: ignore[return-value]
    raise InvalidArgumentError(f"class activation maps need a network ending in global average pooling and a linear layer "
                               f"(tiny-cnn, densenet*, resnet*); not {name}")  # fmt: skip


def _feature_maps(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    features, _ = _features_and_classifier(model)
    if features is not None:
        return features(inputs)  # type: ignore[no-any-return]
    if type(model).__name__ == "DenseNet":
        return F.relu(model.features(inputs))  # type: ignore[operator]  # torchvision's DenseNet.forward does the same
    m = model
    x = m.maxpool(m.relu(m.bn1(m.conv1(inputs))))  # type: ignore[operator]
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))  # type: ignore[operator,no-any-return]


@torch.no_grad()
def class_activation_maps(model: torch.nn.Module, head: Head, inputs: torch.Tensor) -> torch.Tensor:
    """(images, observations, h, w) maps whose spatial mean plus the bias is each observation's logit.

    >>> from chexpert.train.models import build_model
    >>> from chexpert.train.heads import Head
    >>> x = torch.zeros(8, 1, 64, 64)
    >>> head = Head(("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"), (False,) * 5)
    >>> class_activation_maps(build_model("tiny-cnn", outputs=5, channels=1), head, x).shape
    torch.Size([8, 5, 8, 8])
    """
    _, classifier = _features_and_classifier(model)
    maps = _feature_maps(model, inputs).float()
    weight = classifier.weight.float()
    rows = []
    at = 0
    for multi in head.multiclass:
        if multi:  # negative, positive, uncertain: the positive class against the negative one
            rows.append(weight[at + 1] - weight[at])
            at += 3
        else:
            rows.append(weight[at])
            at += 1
    return torch.einsum("bkhw,ok->bohw", maps, torch.stack(rows))


def overlay(image: np.ndarray, cam: np.ndarray, *, strength: float = 0.45) -> np.ndarray:
    """(h, w, 3) uint8 RGB: the grey ``image`` with ``cam`` (any shape; stretched to its range, resized) in a jet colour map.

    >>> overlay(np.zeros((64, 64), np.uint8), np.random.rand(8, 8)).shape
    (64, 64, 3)
    """
    import cv2

    h, w = image.shape
    span = float(cam.max() - cam.min())
    scaled = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
    heat = cv2.resize(scaled.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    grey = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    return np.clip((1 - strength) * grey + strength * colour, 0, 255).astype(np.uint8)  # type: ignore[no-any-return]


def _file_name(observation: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", observation) + ".png"


class CamWriter:
    """Writes ``DIR/<image name without suffix>/<Observation>.png`` for each batch ``predict`` scores.

    The map is the ensemble's: the sum of each member's CAM (their logits' maps), stretched to
    its range per image and observation. The background is the image as the network saw it.
    """

    def __init__(self, folder: str | os.PathLike[str], models: Sequence[torch.nn.Module], head: Head, names: Sequence[str]) -> None:
        self.folder = Path(folder).expanduser()
        self.models, self.head, self.names = list(models), head, list(names)
        for model in self.models:
            _features_and_classifier(model)  # unsupported networks fail before any image is read
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidArgumentError(f"{self.folder} is a file, not a folder for the saliency maps")

    def __call__(self, batch: dict[str, torch.Tensor], inputs: torch.Tensor) -> None:
        import cv2

        maps_np = torch.stack([class_activation_maps(m, self.head, inputs) for m in self.models]).sum(dim=0).cpu().numpy()
        shown = inputs[:, 0].float().cpu().numpy()  # the network's input plane, normalised: back to 0-255 for display
        for j, row in enumerate(batch["row"].tolist()):
            plane = shown[j]
            span = float(plane.max() - plane.min())
            grey = ((plane - plane.min()) / span * 255 if span > 0 else np.zeros_like(plane)).astype(np.uint8)
            # Inside the folder whatever the name is (an image given by absolute path, or with ".."):
            # nothing is written outside it.
            inside = [part for part in Path(self.names[row]).with_suffix("").parts if part not in ("..", ".") and part != Path(self.names[row]).anchor]
            target = self.folder.joinpath(*inside)
            target.mkdir(parents=True, exist_ok=True)
            for k, observation in enumerate(self.head.observations):
                picture = overlay(grey, maps_np[j, k])
                ok, encoded = cv2.imencode(".png", picture[..., ::-1])
                if not ok:
                    raise OSError(f"cannot encode the saliency map of {self.names[row]}")
                atomic_write(target / _file_name(observation), encoded.tobytes(), sync=False)  # never through a link at the name
