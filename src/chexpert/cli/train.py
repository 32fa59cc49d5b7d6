"""``chexpert train``, ``chexpert predict`` and ``chexpert demo``."""

from __future__ import annotations

import argparse
import math
import os

from chexpert import schema
from chexpert.cli._common import non_negative_int, positive_int
from chexpert.errors import ChexpertError
from chexpert.progress import Reporter


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _switch(text: str) -> str | bool:
    lowered = text.lower()
    if lowered in ("auto",):
        return "auto"
    if lowered in ("on", "yes", "true", "1"):
        return True
    if lowered in ("off", "no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from chexpert.evaluate import AGGREGATES
    from chexpert.imaging import RESIZE_MODES
    from chexpert.policy import PRESETS
    from chexpert.train.recipe import LOSSES, OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULES, VIEWS

    training = sub.add_parser(
        "train",
        help="train the paper's baseline (or any recipe) on a prepared store; resumes an interrupted run",
        description="Train a recipe (default: the CheXpert paper's DenseNet-121 baseline) on ROOT, a prepared store or a "
        "release (prepared once into --store). Checkpoints are validated on the valid split at study level; the best are "
        "kept for an ensemble. Running the same command again resumes an interrupted run where its last checkpoint left it. "
        "Several GPUs or machines: start it with torchrun.",
    )
    training.add_argument("root", help="prepared store, or release folder/zip (prepared into --store)")
    training.add_argument("--out", required=True, metavar="RUN", help="run folder (new, empty, or this run's to resume)")
    training.add_argument(
        "--recipe", default="chexpert-paper", metavar="NAME|FILE",
        help=f"starting recipe: {', '.join(RECIPES)}, or a TOML/JSON/YAML file of recipe fields (RUN/recipe.toml is one); "
        "the options below change it (default chexpert-paper)",
    )  # fmt: skip
    training.add_argument("--policy", choices=PRESETS, help="uncertainty policy preset")
    training.add_argument("--model", help="tiny-cnn, any torchvision classifier (densenet121, resnet50, ...) or a timm model")
    training.add_argument("--weights", help="none, imagenet (from the torch hub cache; never downloaded) or a weights file")
    training.add_argument("--channels", type=int, choices=(1, 3), help="input planes fed to the network")
    training.add_argument("--size", type=positive_int, help="store image side (default: a store's own; a release is prepared at this size)")
    training.add_argument("--resize", choices=RESIZE_MODES, help="how the store was resized (default: a store's own)")
    training.add_argument("--input-size", type=positive_int, help="side of the network's input after augmentation (default: --size)")
    training.add_argument("--views", choices=VIEWS, help="training images of these views (validation uses all)")
    training.add_argument("--batch-size", type=positive_int, help="images per step and rank")
    training.add_argument("--epochs", type=positive_int)
    training.add_argument("--max-steps", type=positive_int, help="stop after this many steps")
    training.add_argument("--lr", type=_number, help="learning rate (after pretraining, when there is one)")
    training.add_argument("--betas", type=_number, nargs=2, metavar=("B1", "B2"), help="Adam's betas (default 0.9 0.999)")
    training.add_argument("--weight-decay", type=_number, help="weight decay (default 0)")
    training.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default constant)")
    training.add_argument("--warmup-steps", type=non_negative_int, help="linear warm-up steps before the schedule")
    training.add_argument("--step-every", type=positive_int, metavar="EPOCHS", help="step schedule: multiply by --lr-factor every EPOCHS")
    training.add_argument("--lr-factor", type=_number, help="step and plateau schedules' factor (default 0.1)")
    training.add_argument("--patience", type=non_negative_int, help="plateau: validations without a better mean AUROC before reducing")
    training.add_argument("--min-lr", type=_number, help="floor of the cosine and plateau schedules")
    training.add_argument("--loss", choices=LOSSES, help="bce, or aucm (LibAUC's AUC-margin loss; with --optimizer pesg)")
    training.add_argument("--optimizer", choices=OPTIMIZERS, help="adam, or pesg (LibAUC's, for --loss aucm)")
    training.add_argument("--margin", type=_number, help="AUC-margin loss margin (default 1.0)")
    training.add_argument("--epoch-decay", type=_number, help="PESG's pull towards the previous epoch's mean weights")
    training.add_argument("--momentum", type=_number, help="PESG momentum (default 0.9)")
    training.add_argument("--pretrain-epochs", type=non_negative_int, help="epochs of cross-entropy and Adam before --loss/--optimizer")
    training.add_argument("--pretrain-lr", type=_number, help="Adam's learning rate while pretraining")
    training.add_argument("--crop-scale", type=_number, nargs=2, metavar=("LO", "HI"), help="random resized crop area range (default 1 1: off)")
    training.add_argument("--degrees", type=_number, help="random rotation up to this many degrees")
    training.add_argument("--translate", type=_number, help="random shift up to this fraction of the side")
    training.add_argument("--brightness", type=_number, help="random brightness change up to this fraction")
    training.add_argument("--contrast", type=_number, help="random contrast change up to this fraction")
    training.add_argument("--checkpoint-every", type=positive_int, metavar="STEPS", help="validate and checkpoint every STEPS steps")
    training.add_argument("--keep-best", type=positive_int, metavar="K", help="checkpoints kept for the ensemble")
    training.add_argument("--log-every", type=positive_int, metavar="STEPS", help="log the mean loss every STEPS steps")
    training.add_argument("--precision", choices=PRECISIONS, help="mixed precision (auto: bf16 on a GPU, off on the CPU)")
    training.add_argument("--channels-last", type=_switch, metavar="auto|on|off", help="channels-last memory format (auto: on a GPU)")
    training.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    training.add_argument("--seed", type=non_negative_int)
    training.add_argument("--store", metavar="DIR", help="where to prepare a release given as ROOT (default RUN/store-SIZE-RESIZE)")
    training.add_argument("--soft-labels", metavar="CSV", help="U-SelfTrained labels (Path + observations); default: train them first")
    training.add_argument("--no-validation", action="store_true", help="do not score checkpoints on the valid split")
    training.add_argument("--workers", type=non_negative_int, help="loader processes (default 0 on the CPU, up to 8 on a GPU)")
    training.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU if any)")
    training.add_argument("--deterministic", action="store_true", help="deterministic kernels only (slower on GPUs)")
    training.add_argument("--overwrite", action="store_true", help="replace a run of another recipe or data at --out")
    training.add_argument("--quiet", action="store_true", help="only the final line")
    training.set_defaults(func=_train)

    predicting = sub.add_parser(
        "predict",
        help="write a run's predictions per image and per study, as evaluate reads them",
        description="Predict every image of a split of a release or store, or image files (a folder searched recursively, "
        "or files: JPEG, PNG, DICOM, decoded and resized as prepare does), with a run's best checkpoints (averaged), and each "
        "study as the maximum over its images. Writes OUT (Path column) and OUT-studies.csv (Study column).",
    )
    predicting.add_argument("run", metavar="RUN", help="run folder written by chexpert train")
    predicting.add_argument(
        "root", nargs="+", metavar="SOURCE", help="release folder/zip, a store prepared at the run's size, a folder of images, or image files"
    )
    predicting.add_argument("--cam", metavar="DIR", help="write class activation map overlays: DIR/<image>/<Observation>.png")
    predicting.add_argument("--out", required=True, metavar="CSV", help="per-image predictions to write")
    predicting.add_argument("--studies", metavar="CSV", help="per-study predictions to write (default OUT-studies.csv)")
    predicting.add_argument("--split", choices=schema.SPLITS, default="valid", help="images to predict (default valid)")
    predicting.add_argument("--ensemble", type=positive_int, metavar="K", help="average the K best checkpoints (default: every kept one)")
    predicting.add_argument("--aggregate", choices=AGGREGATES, default="max", help="study score from its images (default max)")
    predicting.add_argument("--batch-size", type=positive_int, default=64)
    predicting.add_argument("--workers", type=non_negative_int, default=0, help="loader processes (default 0)")
    predicting.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU if any)")
    predicting.set_defaults(func=_predict)

    demo = sub.add_parser(
        "demo",
        help="the whole job on a generated look-alike: synth, verify, prepare, train, predict, evaluate, report.html",
        description="Generate a small look-alike release, verify and prepare it, train a small network on the CPU "
        "(about a minute), predict and score the validation studies, and write OUT/report.html.",
    )
    demo.add_argument("out", nargs="?", default="demo", metavar="OUT", help="folder for everything the demo writes (default demo)")
    demo.add_argument("--patients", type=positive_int, default=600, help="training patients of the look-alike (default 600)")
    demo.add_argument("--valid-patients", type=positive_int, default=200, help="validation patients (default 200, as released)")
    demo.add_argument("--steps", type=positive_int, default=None, help="training steps (default: the demo recipe's 10 epochs)")
    demo.add_argument("--size", type=positive_int, default=64, help="image side for training (default 64)")
    demo.add_argument("--seed", type=non_negative_int, default=0)
    demo.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap resamples for the intervals (default 1000)")
    demo.add_argument("--workers", type=positive_int, default=None, help="processes for synth and prepare (default: all cores)")
    demo.set_defaults(func=_demo)


def _recipe_options() -> tuple[str, ...]:
    """Every Recipe field: each is an option of ``train`` (``--weight-decay`` for ``weight_decay``)."""
    import dataclasses

    from chexpert.train.recipe import Recipe

    return tuple(f.name for f in dataclasses.fields(Recipe))


def _torch_needed() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ChexpertError("training needs PyTorch: pip install 'chexpert[train]'")


def _train(args: argparse.Namespace) -> int:
    _torch_needed()
    from chexpert.progress import console
    from chexpert.train import get_recipe, train
    from chexpert.train.recipe import RECIPES, read_recipe_values

    if args.recipe in RECIPES:
        recipe, explicit = get_recipe(args.recipe), set()
    else:
        values = read_recipe_values(args.recipe)
        recipe, explicit = values.recipe, set(values.keys)
    changes = {name: getattr(args, name) for name in _recipe_options() if getattr(args, name) is not None}
    for name in ("betas", "crop_scale"):
        if name in changes:
            changes[name] = tuple(changes[name])
    explicit |= set(changes)
    store_shape = _store_shape(args.root)
    if store_shape is not None:
        # A store says its size: train at it unless the size was chosen (then a different one is an error naming both).
        for name, value in zip(("size", "resize"), store_shape):
            if name not in explicit:
                changes[name] = value
    recipe = recipe.replace(**changes)
    run = train(
        args.root, args.out, recipe, store=args.store, soft_labels=args.soft_labels, validate=not args.no_validation,
        workers=args.workers, device=args.device, deterministic=args.deterministic, overwrite=args.overwrite,
        progress=Reporter(args.quiet),
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    summary = run.summary()
    best = run.checkpoints[0] if run.checkpoints else None
    line = f"{run.path}: {summary.get('steps', 0):,} steps in {summary.get('seconds', 0):.0f} s"
    if best is not None and not math.isnan(best.metric):
        line += f"; best mean validation AUROC {best.metric:.3f} at step {best.step:,}"
    line += f"; {len(run.checkpoints)} checkpoints kept"
    console().print(line)
    return 0


def _store_shape(root: str) -> tuple[int, str] | None:
    """(size, resize) of the prepared store at ``root``, or None when ``root`` is no store."""
    import json
    from pathlib import Path

    from chexpert.store import MANIFEST

    manifest = Path(root).expanduser() / MANIFEST
    if not manifest.is_file():
        return None
    try:
        parameters = json.loads(manifest.read_text(encoding="utf-8"))["params"]
        return int(parameters["size"]), str(parameters["resize"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged manifest: train's own opening of the store names the problem


def _predict(args: argparse.Namespace) -> int:
    _torch_needed()
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from chexpert.progress import console
    from chexpert.train import predict

    source = args.root[0] if len(args.root) == 1 else list(args.root)
    with Progress(
        TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console(stderr=True),
        disable=not sys.stderr.isatty(), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("predict", total=None)
        predictions = predict(
            args.run, source, split=args.split, ensemble=args.ensemble, aggregate=args.aggregate, batch_size=args.batch_size,
            workers=args.workers, device=args.device, cam=args.cam, progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    images, studies = predictions.write(args.out, args.studies)
    console().print(f"{images}: {len(predictions.images):,} images; {studies}: {len(predictions.studies):,} studies ({args.aggregate} over views)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    _torch_needed()
    from chexpert.cli.demo import run_demo

    run_demo(
        args.out, patients=args.patients, valid_patients=args.valid_patients, steps=args.steps, size=args.size, seed=args.seed,
        bootstrap=args.bootstrap, workers=args.workers or os.cpu_count() or 1,
    )  # fmt: skip
    return 0
