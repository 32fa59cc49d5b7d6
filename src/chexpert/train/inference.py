"""Predictions of a run: per image, and per study as the maximum over its views, in the CSV forms ``evaluate`` reads.

>>> predictions = predict("runs/u-ones", "~/data/CheXpert-v1.0-small", split="valid")
>>> predictions.write("predictions.csv")  # per image (Path), and predictions-studies.csv (Study)
(PosixPath('predictions.csv'), PosixPath('predictions-studies.csv'))
>>> from chexpert.evaluate import evaluate
>>> 0 <= evaluate(predictions.studies, "~/data/CheXpert-v1.0-small/valid.csv").mean_auroc <= 1
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from chexpert import schema
from chexpert.augment import IMAGENET_MEAN, IMAGENET_STD, Augment
from chexpert.discover import open_dataset as open_release
from chexpert.errors import InvalidArgumentError, RunError
from chexpert.evaluate import AGGREGATES
from chexpert.fileio import atomic_writer
from chexpert.index import Index
from chexpert.release import Release
from chexpert.store import MANIFEST, Store, open_store
from chexpert.train.device import Placement, resolve_placement
from chexpert.train.heads import Head
from chexpert.train.models import GREY_MEAN, GREY_STD
from chexpert.train.recipe import Recipe
from chexpert.train.run import Checkpoint, Run, open_run
from chexpert.validation import check_choice, check_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Predictions", "predict", "input_transform", "study_scores", "score_batches"]


def input_transform(recipe: Recipe, *, train: bool) -> Augment:
    """The recipe's uint8 -> network input map: its augmentations when ``train``, else resize and normalise only.

    >>> input_transform(Recipe(channels=1, size=64), train=False)(torch.zeros(2, 1, 64, 64, dtype=torch.uint8)).shape
    torch.Size([2, 1, 64, 64])
    """
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if recipe.channels == 3 else (GREY_MEAN, GREY_STD)
    fixed = recipe.crop_scale == (1.0, 1.0)
    augment = Augment(
        size=recipe.network_size,
        crop_scale=recipe.crop_scale,
        crop_ratio=(1.0, 1.0) if fixed else (3 / 4, 4 / 3),
        degrees=recipe.degrees,
        translate=recipe.translate,
        brightness=recipe.brightness,
        contrast=recipe.contrast,
        mean=mean,
        std=std,
        channels=recipe.channels,
    )
    # Without random transforms, training sees exactly what inference sees (no resampling pass).
    return augment.train(train and recipe.augments)


@dataclass(frozen=True, eq=False)
class Predictions:
    """``images``: one row per image (``Path`` and a probability per observation); ``studies``: one per study (``Study``)."""

    images: pd.DataFrame
    studies: pd.DataFrame
    aggregate: str = "max"

    def write(self, path: str | os.PathLike[str], studies: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
        """Write the per-image CSV to ``path`` and the per-study CSV to ``studies`` (default ``<stem>-studies.csv`` beside it).

        >>> predictions = predict("runs/u-ones", "CheXpert-v1.0-small", split="valid")
        >>> predictions.write("predictions.csv")
        (PosixPath('predictions.csv'), PosixPath('predictions-studies.csv'))
        """
        path = Path(path)
        study_path = Path(studies) if studies is not None else path.with_name(f"{path.stem}-studies{path.suffix or '.csv'}")
        if study_path.absolute() == path.absolute():
            raise InvalidArgumentError(f"the per-image and per-study predictions would both be written to {path}")
        for target, frame in ((path, self.images), (study_path, self.studies)):
            if target.is_dir():
                raise IsADirectoryError(21, "is a folder, not a file to write", str(target))
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_writer(target, "w", encoding="utf-8", newline="") as handle:
                frame.to_csv(handle, index=False, float_format="%.6f")
        return path, study_path


def study_scores(keys: np.ndarray, scores: np.ndarray, aggregate: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """(sorted study keys, one row of scores per study): the maximum (or mean) over each study's images.

    >>> study_scores(np.array(["b", "a", "b"]), np.array([[0.1], [0.5], [0.7]]))[1].tolist()
    [[0.5], [0.7]]
    """
    check_choice("aggregate", aggregate, AGGREGATES)
    studies, inverse = np.unique(np.asarray(keys).astype(object), return_inverse=True)
    if aggregate == "max":
        out = np.full((len(studies), scores.shape[1]), -np.inf)
        np.maximum.at(out, inverse, scores)
    else:
        out = np.zeros((len(studies), scores.shape[1]))
        np.add.at(out, inverse, scores)
        out /= np.bincount(inverse, minlength=len(studies))[:, None]
    return studies, out


@torch.no_grad()
def score_batches(
    models: Sequence[torch.nn.Module],
    head: Head,
    batches: Iterable[dict[str, torch.Tensor]],
    placement: Placement,
    transform: Callable[[torch.Tensor], torch.Tensor],
    each: Callable[[dict[str, torch.Tensor], torch.Tensor], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(row of each image, (images, observations) probabilities averaged over ``models``) for the loader's batches.

    ``each(batch, inputs)`` is called after every batch (progress, saliency maps).
    """
    rows, probabilities = [], []
    gpu = placement.device.type == "cuda"
    for batch in batches:
        inputs = transform(batch["image"].to(placement.device, non_blocking=gpu))
        if placement.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with placement.autocast_context():
            outputs = [head.probabilities(model(inputs)) for model in models]
        probabilities.append((torch.stack(outputs).sum(dim=0) / len(outputs)).cpu().numpy())
        rows.append(batch["row"].numpy())
        if each is not None:
            each(batch, inputs)
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, len(head.observations)), dtype=np.float32)
    return np.concatenate(rows), np.concatenate(probabilities)


#: File name endings ``predict`` takes from a folder (any case); a file given by name may have any.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".dcm", ".dicom")


class ImageFiles(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Image files decoded and resized as ``prepare`` does (JPEG, PNG, DICOM by content), one batch per item.

    Item ``positions`` (a list of numbers) is ``{"image": (B, 1, size, size) uint8, "row": positions}``.
    Files are read with the release's safe reader (regular files only, at most 64 MiB); an
    unreadable or undecodable file is an error naming it.

    >>> a, b = "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "CheXpert-v1.0-small/valid/patient64542/study1/view1_frontal.jpg"
    >>> ImageFiles([a, b], 64)[[0, 1]]["image"].shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(self, paths: Sequence[str], size: int, resize: str = "pad") -> None:
        self.paths = [str(p) for p in paths]
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        from chexpert.errors import ImageReadError
        from chexpert.imaging import decode_resized
        from chexpert.safeio import read as _read
        from chexpert.schema import MAX_IMAGE_BYTES

        images = np.empty((len(positions), 1, self.size, self.size), dtype=np.uint8)
        for j, i in enumerate(positions):
            path = self.paths[i]
            try:
                data = _read(None, path, MAX_IMAGE_BYTES, ImageReadError, lambda: ("/",))
            except FileNotFoundError:
                raise ImageReadError("not found", file=path) from None
            decode_resized(data, self.size, self.resize, file=path, out=images[j, 0])
        return {"image": torch.from_numpy(images), "row": torch.as_tensor(np.asarray(positions, dtype=np.int64))}


def image_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """(paths to read, names to report) of an image file, a folder (searched recursively, :data:`IMAGE_SUFFIXES`) or a list.

    Names are relative to the folder (or to the files' common folder), so a CheXpert-shaped
    folder gives ``valid/patient64541/study1/view1_frontal.jpg``.

    >>> paths, names = image_files("CheXpert-v1.0-small/valid/")
    >>> paths[0], names[0]
    ('CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg', 'patient64541/study1/view1_frontal.jpg')
    """
    if isinstance(source, str | os.PathLike):
        root = Path(source).expanduser()
        if root.is_dir():
            found = sorted(
                (Path(folder) / name for folder, _, names in os.walk(root) for name in names if name.lower().endswith(IMAGE_SUFFIXES)),
                key=lambda p: p.as_posix(),
            )
            if not found:
                raise InvalidArgumentError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
            return [str(p) for p in found], [p.relative_to(root).as_posix() for p in found]
        files = [root]
    else:
        files = [Path(p).expanduser() for p in source]
        if not files:
            raise InvalidArgumentError("no image files to predict")
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise InvalidArgumentError(f"{missing[0]}: no such image file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    absolute = [p.absolute() for p in files]
    base = Path(os.path.commonpath([p.parent for p in absolute]))
    return [str(p) for p in files], [p.relative_to(base).as_posix() for p in absolute]


def _one_thread(_: int) -> None:
    from chexpert.imaging import one_thread_per_worker

    one_thread_per_worker()


def _study_of(name: str) -> str:
    """The study of an image: CheXpert's ``split/patientN/studyN`` when the path has one, else its folder."""
    try:
        return schema.study_key(name)
    except InvalidArgumentError:
        parent = name.rsplit("/", 1)[0] if "/" in name else "."
        return parent


def _is_release(path: Path) -> bool:
    """Whether ``path`` opens as a CheXpert download (else it is taken as a folder of images)."""
    from chexpert.errors import ChexpertError

    try:
        open_release(path)
    except (ChexpertError, OSError):
        return False
    return True


def _source_rows(
    run: Run, source: Store | Release | Index | str | os.PathLike[str] | Sequence[str | os.PathLike[str]], split: str | None
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The dataset to read, the name of each image it covers and each image's study (a split's rows, all views)."""
    recipe = run.recipe
    if isinstance(source, str | os.PathLike) and (Path(source).expanduser() / MANIFEST).is_file():
        source = open_store(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source).expanduser()
        # A zip is a release download; any other file is an image; a folder is a release if it opens as one.
        files = (path.is_file() and path.suffix.lower() != ".zip") or (path.is_dir() and not _is_release(path))
    else:
        files = isinstance(source, list | tuple)
    if files:
        paths, names = image_files(source)  # type: ignore[arg-type]
        studies = np.asarray([_study_of(n) for n in names], dtype=object)
        return ImageFiles(paths, recipe.size, recipe.resize), np.asarray(names, dtype=object), studies
    dataset, index = _release_rows(run, source, split)  # type: ignore[arg-type]
    return dataset, index.path.astype(object), index.study_keys()


def _release_rows(run: Run, source: Store | Release | Index | str | os.PathLike[str], split: str | None) -> tuple[Any, Index]:
    """The dataset to read and the index rows it covers (the split's rows, all views)."""
    from chexpert.frameworks.torch import JPEGDataset, StoreDataset

    recipe = run.recipe
    if isinstance(source, Store):
        if (source.size, source.resize) != (recipe.size, recipe.resize):
            raise InvalidArgumentError(
                f"{source.path} holds {source.size}x{source.size} images ({source.resize}); the run was trained on "
                f"{recipe.size}x{recipe.size} ({recipe.resize}): predict from a store prepared like the run's, or from the release"
            )
        rows = np.arange(len(source)) if split is None else np.flatnonzero(source.index.split == schema.SPLITS.index(split))
        return StoreDataset(source, rows=rows), source.index.take(rows)
    if isinstance(source, Index):
        index = source if split is None else source.take(source.split == schema.SPLITS.index(split))
        if index.release is None:
            raise InvalidArgumentError("the Index is not bound to a release, so its images cannot be read; make it with release.index()")
    else:
        release = source if isinstance(source, Release) else open_release(source)
        if split is not None and split not in release.splits:
            raise InvalidArgumentError(f"split {split!r} is not in {release.root}; it has: {', '.join(release.splits)}")
        index = release.index(split)
    return JPEGDataset(index, size=recipe.size, resize=recipe.resize), index


def ensemble_members(run: Run, ensemble: int | None) -> list[Checkpoint]:
    """The ``ensemble`` best checkpoints (default: every kept one)."""
    if not run.checkpoints:
        raise RunError(f"{run.path} has no checkpoint yet: train first")
    if ensemble is None:
        return list(run.checkpoints)
    check_int("ensemble", ensemble, low=1)
    return list(run.checkpoints[:ensemble])


def _predict_loader(dataset: Any, batch_size: int, workers: int, *, gpu: bool) -> Any:
    """Batches of every image of ``dataset`` (image files or store rows) in order, on this process."""
    from chexpert.frameworks.torch import dataloader

    if isinstance(dataset, ImageFiles):
        chunks = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
        return torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=chunks, num_workers=workers, pin_memory=gpu,
            worker_init_fn=_one_thread if workers else None,
        )  # fmt: skip
    # Every image on this process, whatever process group is active (dataloader would shard by rank by itself).
    return dataloader(dataset, batch_size=batch_size, shuffle=False, rank=0, world_size=1, num_workers=workers, pin_memory=gpu)


def predict(
    run: Run | str | os.PathLike[str],
    source: Store | Release | Index | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    split: str | None = "valid",
    ensemble: int | None = None,
    aggregate: str = "max",
    batch_size: int = 64,
    workers: int = 0,
    device: str | torch.device | None = None,
    cam: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Probabilities for every image of ``split`` (all views), averaged over the ``ensemble`` best checkpoints.

    ``source`` is the release (images decoded as the run's store was prepared), a store prepared
    at the run's size, or image files: a folder (searched recursively for JPEG, PNG and DICOM
    files), one file or a list of files, decoded and resized as ``prepare`` does (``split`` does
    not apply). Studies get the ``aggregate`` ("max", the paper's; or "mean") of their
    images: a CheXpert path's study, else the image's folder. U-MultiClass columns give the
    positive class's probability against the negative one. ``cam`` is a folder for class
    activation maps (:func:`chexpert.train.saliency.class_activation_maps`): one PNG overlay per
    image and observation, ``CAM/<image name without suffix>/<Observation>.png``.
    ``progress(done, total)`` is called after each batch.

    >>> p = predict("runs/demo", "CheXpert-v1.0-small", split="valid")
    >>> p.studies.columns[:2].tolist()
    ['Study', 'No Finding']
    """
    import pandas as pd

    run = run if isinstance(run, Run) else open_run(run)
    if split is not None:
        check_choice("split", split, schema.SPLITS)
    check_choice("aggregate", aggregate, AGGREGATES)
    check_int("batch_size", batch_size, low=1)
    check_int("workers", workers, low=0)
    members = ensemble_members(run, ensemble)
    recipe = run.recipe
    placement = resolve_placement(device, recipe.precision, recipe.channels_last)
    dataset, names, study_keys = _source_rows(run, source, split)
    if len(names) == 0:
        raise InvalidArgumentError(f"no images to predict in split {split!r}")
    models = []
    for checkpoint in members:
        model = run.model(checkpoint).to(placement.device)
        if placement.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        models.append(model)
    loader = _predict_loader(dataset, batch_size, workers, gpu=placement.device.type == "cuda")
    transform = input_transform(recipe, train=False).to(placement.device)
    done = 0
    writer = None
    if cam is not None:
        from chexpert.train.saliency import CamWriter

        writer = CamWriter(cam, models, run.head, [str(n) for n in names])

    def each(batch: dict[str, torch.Tensor], inputs: torch.Tensor) -> None:
        nonlocal done
        if writer is not None:
            writer(batch, inputs)
        done += len(batch["row"])
        if progress is not None:
            progress(done, len(names))

    positions, probabilities = score_batches(models, run.head, loader, placement, transform, each)
    order = np.argsort(positions, kind="stable")
    probabilities = probabilities[order]
    if not np.isfinite(probabilities).all():
        bad = int((~np.isfinite(probabilities)).any(axis=1).sum())
        first = names[int(np.flatnonzero(~np.isfinite(probabilities).all(axis=1))[0])]
        raise RunError(
            f"{run.path}: the model gives NaN or infinite scores for {bad} of {len(names)} images (first {first}) with checkpoint "
            f"{', '.join(str(c.step) for c in members)}; nothing written: a diverged run or a damaged checkpoint"
        )
    columns = list(run.head.observations)
    images = pd.DataFrame(probabilities.astype(np.float64), columns=columns)
    images.insert(0, "Path", names)
    studies, per_study = study_scores(study_keys, probabilities.astype(np.float64), aggregate)
    study_frame = pd.DataFrame(per_study, columns=columns)
    study_frame.insert(0, "Study", studies.astype(object))
    return Predictions(images, study_frame, aggregate)
