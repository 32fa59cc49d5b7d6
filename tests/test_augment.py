"""Batched on-device augmentations: output ranges, identities, geometry, reproducibility."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import torch
else:
    torch = pytest.importorskip("torch")

from chexpert.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    brightness_contrast,
    normalize,
    random_affine,
    random_resized_crop,
    to_float,
)


def batch(n: int = 16, size: int = 40, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 1, size, size) with the full 0..255 range in every image."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    images[:, :, 0, 0], images[:, :, 0, 1] = 0, 255
    return images


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_to_float_maps_uint8_onto_the_unit_interval() -> None:
    x = to_float(batch())
    assert x.dtype == torch.float32 and x.min().item() == 0.0 and x.max().item() == 1.0
    assert to_float(torch.arange(256, dtype=torch.uint8).view(1, 16, 16)).flatten().tolist() == pytest.approx([i / 255 for i in range(256)], abs=1e-7)
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(
    "transform",
    [
        lambda x, g: random_resized_crop(x, 24, scale=(0.1, 1.0), generator=g),
        lambda x, g: random_affine(x, degrees=45, translate=0.3, generator=g),
        lambda x, g: brightness_contrast(x, brightness=0.9, contrast=0.9, generator=g),
        lambda x, g: Augment(24, degrees=45, translate=0.3, brightness=0.9, contrast=0.9, mean=0.0, std=1.0, channels=1)(x, generator=g),
    ],
    ids=["crop", "affine", "brightness-contrast", "augment-unnormalised"],
)
def test_every_augmentation_keeps_pixels_in_the_unit_interval(transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> None:
    for seed in range(5):
        out = transform(batch(seed=seed), gen(seed))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0
        # Not a constant output: the transform kept image content.
        assert out.std().item() > 0.05


def test_normalisation_range_and_values() -> None:
    out = normalize(batch(), channels=3)
    assert out.shape == (16, 3, 40, 40)
    for c in range(3):
        low, high = (0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert out[:, c].min().item() == pytest.approx(low, abs=1e-5)
        assert out[:, c].max().item() == pytest.approx(high, abs=1e-5)
    assert normalize(torch.tensor([[[[0, 51, 255]]]], dtype=torch.uint8), 0.2, 0.4, channels=1).flatten().tolist() == pytest.approx([-0.5, 0.0, 2.0])
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(batch(), 0.5, 0.0, channels=1)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        normalize(batch(), channels=2)


def test_augment_output_range_after_normalisation() -> None:
    augment = Augment(32, degrees=20, translate=0.1, brightness=0.3, contrast=0.3, seed=0)
    out = augment(batch())
    assert out.shape == (16, 3, 32, 32)
    lows = [(0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    highs = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    for c in range(3):
        assert lows[c] - 1e-5 <= out[:, c].min().item() and out[:, c].max().item() <= highs[c] + 1e-5


def test_zero_amounts_are_the_identity() -> None:
    x = batch()
    expected = to_float(x)
    g = gen()
    torch.testing.assert_close(random_resized_crop(x, scale=(1, 1), ratio=(1, 1), generator=g), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(random_affine(x, degrees=0, translate=0, generator=g), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(brightness_contrast(x, brightness=0, contrast=0, generator=g), expected, atol=1e-6, rtol=0)
    plain = Augment(crop_scale=(1, 1), crop_ratio=(1, 1), degrees=0, translate=0, brightness=0, contrast=0, mean=0, std=1, channels=1)
    torch.testing.assert_close(plain(x), expected, atol=1e-5, rtol=0)


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted (row, column) centre of each image, in pixels."""
    h, w = images.shape[-2:]
    weights = images[:, 0] / images[:, 0].sum(dim=(1, 2), keepdim=True)
    rows = (weights.sum(dim=2) * torch.arange(h)).sum(dim=1)
    cols = (weights.sum(dim=1) * torch.arange(w)).sum(dim=1)
    return torch.stack([rows, cols], dim=1)


def test_geometry_moves_pixels_where_it_should() -> None:
    # A bright dot 6 px above the centre of a 21 x 21 image (centre at 10, 10).
    dot = torch.zeros(64, 1, 21, 21)
    dot[:, 0, 4, 10] = 1.0
    # Rotation about the centre keeps the dot's distance to it, whatever the angle drawn ...
    turned = _centroids(random_affine(dot, degrees=60, translate=0, generator=gen()))
    radius = (turned - 10.0).norm(dim=1)
    assert torch.allclose(radius, torch.full_like(radius, 6.0), atol=0.35)
    angles = torch.rad2deg(torch.atan2(turned[:, 1] - 10.0, 10.0 - turned[:, 0]))
    assert angles.abs().max() <= 60.5 and angles.std() > 15  # ... and angles spread over +-60 degrees
    # A shift moves the dot by at most the translate fraction of the side on each axis.
    shifted = _centroids(random_affine(dot, degrees=0, translate=0.1, generator=gen()))
    moved = shifted - torch.tensor([4.0, 10.0])
    assert moved.abs().max() <= 0.1 * 21 + 0.05 and moved.abs().max() > 1.0
    # A crop of a quarter of the area, resized to the full side, magnifies twice.
    x = to_float(batch(1, 32))
    crop = random_resized_crop(x, 32, scale=(0.25, 0.25), ratio=(1, 1), generator=gen())
    assert _best_match_scale(x, crop) == 2


def _best_match_scale(original: torch.Tensor, crop: torch.Tensor) -> int:
    """Which integer magnification of some window of ``original`` the crop is closest to."""
    errors = {}
    for scale in (1, 2, 4):
        size = 32 // scale
        best = math.inf
        for top in range(0, 33 - size):
            for left in range(0, 33 - size):
                window = original[..., top : top + size, left : left + size]
                resized = torch.nn.functional.interpolate(window, size=32, mode="bilinear", align_corners=False)
                best = min(best, float((resized - crop).abs().mean()))
        errors[scale] = best
    return min(errors, key=errors.__getitem__)


def test_draws_are_per_image_and_reproducible() -> None:
    x = batch()
    a = Augment(seed=5)(x)
    b = Augment(seed=5)(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, Augment(seed=6)(x))
    same = x[:1].expand(8, -1, -1, -1).contiguous()
    out = Augment(seed=0, mean=0, std=1, channels=1)(same)
    assert len({tuple(np.round(o.flatten()[:50].numpy(), 4)) for o in out}) == 8
    evaluation = Augment(32, mean=0, std=1, channels=1).eval()
    torch.testing.assert_close(evaluation(x), evaluation(x))
    assert evaluation(x).shape == (16, 1, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"degrees": -1}, r"degrees must be a number in \[0, 180\]"),
        ({"crop_scale": (0.9, 0.5)}, "crop_scale must be"),
        ({"brightness": 2}, r"brightness must be a number in \[0, 1\]"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"size": 0}, "size must be a positive integer"),
    ],
)
def test_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Augment(**kwargs)  # type: ignore[arg-type]  # bad values on purpose: the checks under test
