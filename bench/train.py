"""How close does the recipe's training step, fed from the store, come to the same step on tensors already on the device?

Run (GPU session, under 5 minutes): python bench/train.py
Run (CPU, small):                   python bench/train.py --model tiny-cnn --size 64 --steps 10 --warmup 2 --images 1000

For each batch size (default 16, the paper's, 64 and 128), in one run:
- limit: ``Trainer.step`` on a batch that is already a float tensor on the device (no loading, no
  augmentation, no copy): the compute limit of the model, precision and memory format;
- recipe: the same step fed as ``chexpert train`` feeds it: the store's DataLoader (``--workers``
  processes), the uint8 batch copied to the device and augmented there (``Feeder``: on a GPU a side
  stream prepares the next batch while the current one computes);
- ratio recipe / limit, and the epoch time of the full 223,414-image train split that the recipe's
  rate gives.

The data is the 5,000-image small-release look-alike (bench-data/, generated once by
chexpert.synth), prepared at ``--size``. Options: ``--precision`` (auto: bf16 on a GPU),
``--channels-last``, ``--compile`` (a torch.compile mode, e.g. max-autotune or reduce-overhead,
which captures CUDA graphs), ``--augment`` (the recipe with random crop/rotation/brightness).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np
import torch

TRAIN_SPLIT_IMAGES = 223_414


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    from chexpert.frameworks.torch import StoreDataset, dataloader
    from chexpert.release import open_release
    from chexpert.store import prepare
    from chexpert.train.device import Feeder, resolve_placement, step_seed
    from chexpert.train.loop import Trainer, head_of
    from chexpert.train.recipe import Recipe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first (compilation, cuDNN autotuning)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: 4 on a GPU, 0 on the CPU)")
    parser.add_argument("--images", type=int, default=_common.SMALL_IMAGES, help="training images of the look-alike to use")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "off"))
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--compile", default=None, metavar="MODE", help="torch.compile mode (default: eager)")
    parser.add_argument("--augment", action="store_true", help="random crop, rotation, shift, brightness, contrast")
    args = parser.parse_args()

    channels_last: str | bool = {"auto": "auto", "on": True, "off": False}[args.channels_last]
    placement = resolve_placement(args.device, args.precision, channels_last)
    device = placement.device
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'} ({placement.describe()}), "
          f"{os.cpu_count()} cores, torch {torch.__version__}, model {args.model} at {args.size}x{args.size}, "
          f"{'torch.compile ' + args.compile if args.compile else 'eager'}, {workers} loader workers")  # fmt: skip
    if device.type == "cpu":
        print("No GPU here: CPU figures (the recipe's GPU paths, side stream and autocast, are not exercised).")

    # Up to 1,000 images: bench/predict.py's look-alike (quicker to make on a small machine).
    release = open_release(_common.small_release() if args.images > 1_000 else _common.look_alike("predict", 1_000, 350))
    train_index = release.index("train")
    rows = np.arange(min(args.images, len(train_index)))
    store = prepare(release, _common.BENCH_DATA / "stores" / f"train-{args.size}-{len(rows)}", size=args.size, index=train_index.take(rows),
                    workers=os.cpu_count() or 1)  # fmt: skip
    augment = {"crop_scale": (0.8, 1.0), "degrees": 5.0, "translate": 0.03, "brightness": 0.05, "contrast": 0.05} if args.augment else {}
    head = head_of("u-ones")
    results = []
    for batch_size in args.batches:
        recipe = Recipe(
            model=args.model, weights="none", size=args.size, batch_size=batch_size, precision=args.precision,
            channels_last=channels_last, compile=args.compile is not None, **augment,  # type: ignore[arg-type]
        )  # fmt: skip
        torch.manual_seed(0)
        trainer = Trainer(recipe, head, placement)
        if args.compile:
            trainer.model = torch.compile(trainer.module, mode=args.compile)  # type: ignore[assignment]
        # Limit: a ready float batch on the device.
        inputs = torch.randn(batch_size, recipe.channels, args.size, args.size, device=device)
        if placement.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        labels = {
            "targets": torch.randint(0, 2, (batch_size, len(head.observations)), device=device).float(),
            "mask": torch.ones(batch_size, len(head.observations), dtype=torch.bool, device=device),
        }
        for _ in range(args.warmup):
            trainer.step(inputs, labels)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = trainer.step(inputs, labels)
        loss.item()
        _sync(device)
        limit = args.steps * batch_size / (time.perf_counter() - start)

        # Recipe: the store's loader, copy and augmentation on the device, the same step.
        loader = dataloader(StoreDataset(store, policy="u-ones"), batch_size=batch_size, seed=0, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0, drop_last=True)  # fmt: skip

        def batches(loader: object = loader) -> object:
            while True:
                yield from loader  # type: ignore[attr-defined]

        feeder = iter(Feeder(batches(), placement, trainer.transform, lambda i: step_seed(0, 0, i)))
        for _ in range(args.warmup):
            batch = next(feeder)
            trainer.step(batch.inputs, batch.labels)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            batch = next(feeder)
            loss = trainer.step(batch.inputs, batch.labels)
        loss.item()
        _sync(device)
        recipe_rate = args.steps * batch_size / (time.perf_counter() - start)
        results.append((batch_size, limit, recipe_rate))
        del feeder, loader, trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"\n{'batch':>6s} {'limit img/s':>12s} {'recipe img/s':>13s} {'recipe/limit':>13s} {'epoch of 223,414 images':>24s}")
    for batch_size, limit, recipe_rate in results:
        epoch = TRAIN_SPLIT_IMAGES / recipe_rate
        print(f"{batch_size:6d} {limit:12,.0f} {recipe_rate:13,.0f} {recipe_rate / limit:12.0%} {epoch / 60:20,.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
