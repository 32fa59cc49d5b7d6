"""Batched augmentations and normalisation that run on the device the batch is on (PyTorch).

Batches cross the bus as uint8 (a quarter of float32's bytes); everything here then works on the
whole batch at once on that device, with one random draw per image from an optional
``torch.Generator`` (for reproducible runs). Geometric transforms (random resized crop, rotation,
translation) are composed into one affine map per image and applied with a single bilinear
``grid_sample``; pixels outside the image are black, like the padding of a ``"pad"`` store.

>>> import torch
>>> batch = {"image": torch.zeros(8, 1, 320, 320, dtype=torch.uint8)}  # as the loaders give it
>>> device = "cuda" if torch.cuda.is_available() else "cpu"
>>> augment = Augment(size=288, degrees=10, translate=0.05, brightness=0.1, contrast=0.1)
>>> x = augment(batch["image"].to(device, non_blocking=True))  # uint8 (B,1,320,320) -> float (B,3,288,288)
>>> x.shape, x.dtype
(torch.Size([8, 3, 288, 288]), torch.float32)
>>> x = normalize(to_float(batch["image"]), channels=3)  # evaluation: no randomness
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from chexpert.errors import InvalidArgumentError
from chexpert.validation import check_number, check_range

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augment",
    "to_float",
    "random_resized_crop",
    "random_affine",
    "brightness_contrast",
    "normalize",
]

#: ImageNet statistics, for the ImageNet-pretrained networks most CheXpert models start from.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise InvalidArgumentError(f"images must be (B, H, W) or (B, C, H, W), got shape {tuple(images.shape)}")
    return images


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=like.device, dtype=torch.float32)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (B, H, W) or (B, C, H, W) -> float32 in [0, 1], shaped (B, C, H, W).

    >>> to_float(torch.tensor([[[0, 255]]], dtype=torch.uint8)).tolist()
    [[[[0.0, 1.0]]]]
    """
    images = _check_images(images)
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 pixels, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


def _crop_matrices(n: int, scale: tuple[float, float], ratio: tuple[float, float], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n, 3, 3) maps from output to input coordinates (both in [-1, 1]) for random crops.

    As torchvision's RandomResizedCrop: area fraction uniform in ``scale``, aspect ratio
    log-uniform in ``ratio``; crops that would not fit are shrunk to fit, never pushed outside.
    """
    area = _uniform(n, *scale, like, generator)
    log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), like, generator)
    aspect = torch.exp(log_ratio)
    half_w = (torch.sqrt(area * aspect)).clamp(max=1.0)  # half-widths in [-1, 1] units
    half_h = (torch.sqrt(area / aspect)).clamp(max=1.0)
    cx = (1.0 - half_w) * (2.0 * torch.rand(n, generator=generator, device=like.device) - 1.0)
    cy = (1.0 - half_h) * (2.0 * torch.rand(n, generator=generator, device=like.device) - 1.0)
    m = torch.zeros(n, 3, 3, device=like.device)
    m[:, 0, 0], m[:, 0, 2] = half_w, cx
    m[:, 1, 1], m[:, 1, 2] = half_h, cy
    m[:, 2, 2] = 1.0
    return m


def _affine_matrices(n: int, degrees: float, translate: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n, 3, 3) random rotations by up to ``degrees`` and shifts by up to ``translate`` of the side."""
    angle = _uniform(n, -degrees, degrees, like, generator) * (math.pi / 180.0)
    shift = _uniform(2 * n, -2.0 * translate, 2.0 * translate, like, generator).view(n, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    m = torch.zeros(n, 3, 3, device=like.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, -sin, shift[:, 0]
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sin, cos, shift[:, 1]
    m[:, 2, 2] = 1.0
    return m


def _warp(images: torch.Tensor, matrices: torch.Tensor, size: int | None) -> torch.Tensor:
    b, c, h, w = images.shape
    out_h, out_w = (h, w) if size is None else (size, size)
    grid = F.affine_grid(matrices[:, :2, :], [b, c, out_h, out_w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _floats(images: torch.Tensor) -> torch.Tensor:
    images = _check_images(images)
    return to_float(images) if images.dtype == torch.uint8 else images


def random_resized_crop(
    images: torch.Tensor,
    size: int | None = None,
    *,
    scale: Sequence[float] = (0.7, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cut a random box from each image (area fraction in ``scale``, aspect in ``ratio``) and
    resize it to ``size`` (default: the input size), bilinearly. Values stay in the input's range.

    >>> random_resized_crop(torch.zeros(2, 1, 64, 64, dtype=torch.uint8), 32).shape
    torch.Size([2, 1, 32, 32])
    """
    images = _floats(images)
    matrices = _crop_matrices(len(images), check_range("scale", scale, 1e-3, 1.0), check_range("ratio", ratio, 1e-2, 1e2), images, generator)
    return _warp(images, matrices, size)


def random_affine(
    images: torch.Tensor,
    *,
    degrees: float = 10.0,
    translate: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate each image by up to ``degrees`` and shift it by up to ``translate`` of its side, about
    the centre; uncovered pixels are black. Values stay in the input's range (bilinear).

    >>> random_affine(torch.zeros(2, 1, 8, 8), degrees=5).shape
    torch.Size([2, 1, 8, 8])
    """
    images = _floats(images)
    matrices = _affine_matrices(
        len(images), check_number("degrees", degrees, low=0.0, high=180.0), check_number("translate", translate, low=0.0, high=1.0), images, generator
    )
    return _warp(images, matrices, None)


def brightness_contrast(
    images: torch.Tensor,
    *,
    brightness: float = 0.1,
    contrast: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale each image's contrast about its mean by a factor in [1 - contrast, 1 + contrast], add
    a brightness offset in [-brightness, brightness], and clamp to [0, 1].

    >>> brightness_contrast(torch.full((1, 1, 2, 2), 0.5), brightness=0.0, contrast=0.0).unique().tolist()
    [0.5]
    """
    images = _floats(images)
    brightness = check_number("brightness", brightness, low=0.0, high=1.0)
    contrast = check_number("contrast", contrast, low=0.0, high=1.0)
    n = len(images)
    factor = _uniform(n, 1.0 - contrast, 1.0 + contrast, images, generator).view(n, 1, 1, 1)
    offset = _uniform(n, -brightness, brightness, images, generator).view(n, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * factor + mean + offset).clamp_(0.0, 1.0)


def normalize(
    images: torch.Tensor,
    mean: float | Sequence[float] = IMAGENET_MEAN,
    std: float | Sequence[float] = IMAGENET_STD,
    *,
    channels: int = 3,
) -> torch.Tensor:
    """(x - mean) / std per channel, after repeating grayscale to ``channels`` (1 or 3).

    uint8 input is first scaled to [0, 1]. With ``channels=3`` the grayscale plane is expanded
    (not copied) to the three channels an ImageNet-pretrained network expects.

    >>> normalize(torch.tensor([[[255]]], dtype=torch.uint8), 0.5, 0.25, channels=1).item()
    2.0
    """
    images = _floats(images)
    if channels not in (1, 3):
        raise InvalidArgumentError(f"channels must be 1 or 3, not {channels!r}")
    if images.shape[1] not in (1, channels):
        raise InvalidArgumentError(f"images have {images.shape[1]} channels; cannot normalise to {channels}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(-1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(-1)
    for name, value in (("mean", mean_t), ("std", std_t)):
        if len(value) not in (1, channels):
            raise InvalidArgumentError(f"{name} has {len(value)} values for {channels} channels")
    if (std_t <= 0).any():
        raise InvalidArgumentError(f"std must be positive, got {std_t.tolist()}")
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return (images - mean_t.view(1, -1, 1, 1)) / std_t.view(1, -1, 1, 1)


class Augment(torch.nn.Module):
    """Training augmentation for a uint8 batch, done on its device: crop, rotate, shift, brightness
    and contrast, then normalisation. Returns float32 (B, channels, size, size).

    Each transform draws its parameters per image; set an amount to 0 (or ``crop_scale`` to
    (1, 1) and ``crop_ratio`` to (1, 1)) to turn it off. ``seed`` makes the draws reproducible:
    a generator is made on the batch's device the first time it is seen. In ``eval()`` mode
    only the resize to ``size`` and the normalisation are applied.

    >>> augment = Augment(size=224, seed=0)
    >>> augment(torch.randint(0, 256, (4, 1, 256, 256), dtype=torch.uint8)).shape
    torch.Size([4, 3, 224, 224])
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        crop_scale: Sequence[float] = (0.7, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        degrees: float = 10.0,
        translate: float = 0.05,
        brightness: float = 0.1,
        contrast: float = 0.1,
        mean: float | Sequence[float] = IMAGENET_MEAN,
        std: float | Sequence[float] = IMAGENET_STD,
        channels: int = 3,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InvalidArgumentError(f"size must be a positive integer or None, not {size!r}")
        if channels not in (1, 3):
            raise InvalidArgumentError(f"channels must be 1 or 3, not {channels!r}")
        self.size = size
        self.crop_scale = check_range("crop_scale", crop_scale, 1e-3, 1.0)
        self.crop_ratio = check_range("crop_ratio", crop_ratio, 1e-2, 1e2)
        self.degrees = check_number("degrees", degrees, low=0.0, high=180.0)
        self.translate = check_number("translate", translate, low=0.0, high=1.0)
        self.brightness = check_number("brightness", brightness, low=0.0, high=1.0)
        self.contrast = check_number("contrast", contrast, low=0.0, high=1.0)
        self.mean, self.std, self.channels = mean, std, channels
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _generator_for(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        images = _floats(images)
        if not self.training:
            if self.size is not None and images.shape[-2:] != (self.size, self.size):
                images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            return normalize(images.clamp_(0.0, 1.0), self.mean, self.std, channels=self.channels)
        generator = generator or self._generator_for(images.device)
        n = len(images)
        # Output -> input: first rotate/shift the output frame, then place it in the crop box.
        matrices = _crop_matrices(n, self.crop_scale, self.crop_ratio, images, generator) @ _affine_matrices(n, self.degrees, self.translate, images, generator)
        images = _warp(images, matrices, self.size)
        if self.brightness or self.contrast:
            images = brightness_contrast(images, brightness=self.brightness, contrast=self.contrast, generator=generator)
        return normalize(images, self.mean, self.std, channels=self.channels)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, degrees={self.degrees}, "
            f"translate={self.translate}, brightness={self.brightness}, contrast={self.contrast}, channels={self.channels}"
        )
