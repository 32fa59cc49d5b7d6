"""Fixtures for the doctests of src/chexpert: small look-alike downloads, so the examples run as written.

Each doctest runs in a fresh folder of its own (also its ``$HOME``, so ``~/data/...`` works) holding
links (copies, for CSV files) to look-alike downloads made once per session by :mod:`chexpert.synth`, each built only
when some doctest names it (``CheXpert-v1.0-small``, ``CheXpert-v1.0-small.zip``,
``chexpert-plus``, ``mimic-cxr-jpg``, the test set's ``chexpert-test-set-labels`` and
``CheXlocalize``, a prepared store ``chexpert-320``, and ``predictions.csv`` with the readers
``bc4.csv``, ``bc6.csv``, ``bc8.csv`` for the small release's ``valid.csv``). The same links are
in ``data/``. The names ``release``, ``index``, ``train``, ``valid``, ``store`` and ``result``
that examples use without defining are given to the doctests that mention them.

This file lives in src/, outside the package, so that it is not installed with it (pyproject's
``packages.find`` takes packages only). It must not import torch: the TensorFlow modules'
doctests run in a process that refuses it (tests/tensorflow/conftest.py).
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

import chexpert
from chexpert import schema
from chexpert.evaluate import evaluate

# Patients: enough valid studies for every competition task to have positives and negatives.
_TRAIN_PATIENTS, _VALID_PATIENTS = 4, 60


class _Downloads:
    """Look-alike downloads in one session folder, each built on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.built: dict[Callable[[_Downloads], list[Path]], list[Path]] = {}

    def small(self) -> list[Path]:
        from chexpert.synth import synthesize

        return [synthesize(self.folder / "small", patients=_TRAIN_PATIENTS, valid_patients=_VALID_PATIENTS, test_patients=20)]

    def small_zip(self) -> list[Path]:
        from chexpert.synth import synthesize

        return [synthesize(self.folder / "zip", patients=_TRAIN_PATIENTS, valid_patients=_VALID_PATIENTS, layout="zip")]

    def plus(self) -> list[Path]:
        from chexpert.synth.plus import synthesize_plus

        return [synthesize_plus(self.folder / "plus", patients=3, valid_patients=2)]

    def mimic(self) -> list[Path]:
        from chexpert.synth.mimic import synthesize_mimic

        return [synthesize_mimic(self.folder / "mimic", patients=3)]

    def test_set(self) -> list[Path]:
        from chexpert.synth.testset import synthesize_test

        out = synthesize_test(self.folder / "test", patients=3)
        return [out / "chexpert-test-set-labels", out / "CheXlocalize"]

    def small_with_test_set(self) -> list[Path]:
        """One folder holding the small release (train and valid) and the test set beside it."""
        from chexpert.synth import synthesize
        from chexpert.synth.testset import synthesize_test

        folder = self.folder / "data"
        synthesize(folder, patients=_TRAIN_PATIENTS, valid_patients=_VALID_PATIENTS)
        return [synthesize_test(folder, patients=3)]

    def store(self) -> list[Path]:
        release = chexpert.open(self.get("CheXpert-v1.0-small")[0])
        chexpert.prepare(release, self.folder / "chexpert-320")
        return [self.folder / "chexpert-320"]

    def run(self) -> list[Path]:
        """A finished training run, four steps of a tiny CNN on 32-pixel images (seconds, on a CPU)."""
        from chexpert.train import Recipe, train

        release = self.get("CheXpert-v1.0-small")[0]
        recipe = Recipe(model="tiny-cnn", weights="none", channels=1, size=32, batch_size=8, max_steps=4, checkpoint_every=2, log_every=1)
        folder = self.folder / "runs"
        train(release, folder / "u-ones", recipe, workers=0)
        (folder / "demo").symlink_to(folder / "u-ones")
        return [folder]

    def predictions(self) -> list[Path]:
        """Model scores per image for the small release's CSVs, and three readers' study labels.

        ``predictions.csv`` (also ``valid_predictions.csv``), ``densenet.csv`` and ``resnet.csv``
        score valid.csv; ``test_predictions.csv`` test_labels.csv; ``u-ignore-predictions.csv``
        train.csv (soft labels); ``bc4.csv``, ``bc6.csv``, ``bc8.csv`` read the valid studies.
        """
        release = self.get("CheXpert-v1.0-small")[0]
        folder = self.folder / "predictions"
        folder.mkdir()
        rng = np.random.default_rng(0)

        def scores(csv: str, name: str, signal: float) -> Path:
            rows = pd.read_csv(release / csv)
            labels = rows[list(schema.OBSERVATIONS)].to_numpy() == 1
            values = np.round(np.clip(signal * labels + (1 - signal) * rng.random(labels.shape), 0, 1), 2)
            pd.DataFrame(values, columns=list(schema.OBSERVATIONS)).assign(Path=rows["Path"])[["Path", *schema.OBSERVATIONS]].to_csv(folder / name, index=False)
            return folder / name

        paths = [scores("valid.csv", "predictions.csv", 0.4), scores("valid.csv", "densenet.csv", 0.4), scores("valid.csv", "resnet.csv", 0.3)]
        paths += [scores("test_labels.csv", "test_predictions.csv", 0.4), scores("train.csv", "u-ignore-predictions.csv", 0.0)]
        shutil.copyfile(paths[0], folder / "valid_predictions.csv")
        paths.append(folder / "valid_predictions.csv")
        valid = pd.read_csv(release / "valid.csv")
        studies = valid.assign(Study=valid["Path"].str.rsplit("/", n=1).str[0].str.replace("-small", "", regex=False))
        truth = studies.groupby("Study", sort=True)[list(schema.OBSERVATIONS)].max().eq(1).astype(int)
        for reader in ("bc4", "bc6", "bc8"):
            reads = np.where(rng.random(truth.shape) < 0.85, truth, 1 - truth)
            paths.append(folder / f"{reader}.csv")
            pd.DataFrame(reads, columns=list(schema.OBSERVATIONS)).assign(Study=truth.index)[["Study", *schema.OBSERVATIONS]].to_csv(paths[-1], index=False)
        return paths

    # What a doctest must mention for each download to be linked into its folder.
    BUILDERS: ClassVar[dict[str, Callable[[_Downloads], list[Path]]]] = {
        "CheXpert-v1.0-small.zip": small_zip,
        "CheXpert-v1.0-small": small,
        "chexpert-plus": plus,
        "mimic-cxr-jpg": mimic,
        "chexpert-test-set-labels": test_set,
        "CheXlocalize": test_set,
        "chexpert-320": store,
        "predictions.csv": predictions,
        "bc4.csv": predictions,
        "u-ignore-predictions.csv": predictions,
        "densenet.csv": predictions,
        "test_predictions.csv": predictions,
        "runs/": run,
    }

    def get(self, name: str) -> list[Path]:
        return self.make(self.BUILDERS[name])

    def make(self, build: Callable[[_Downloads], list[Path]]) -> list[Path]:
        if build not in self.built:
            self.built[build] = build(self)
        return self.built[build]


@pytest.fixture(scope="session")
def _doctest_downloads(tmp_path_factory: pytest.TempPathFactory) -> _Downloads:
    return _Downloads(tmp_path_factory.mktemp("doctest-downloads"))


# Objects the examples use without defining them, each made only for the doctests that mention it:
# the downloads it needs, and how it is made from them.
_SMALL = ("CheXpert-v1.0-small",)
_OBJECTS: dict[str, tuple[tuple[str, ...], Callable[[], Any]]] = {
    "release": (_SMALL, lambda: chexpert.open("CheXpert-v1.0-small")),
    "index": (_SMALL, lambda: chexpert.open("CheXpert-v1.0-small").index("train")),
    "train": (_SMALL, lambda: chexpert.open("CheXpert-v1.0-small").index("train")),
    "valid": (_SMALL, lambda: chexpert.open("CheXpert-v1.0-small").index("valid")),
    "store": (("chexpert-320",), lambda: chexpert.open_store("chexpert-320")),
    "result": ((*_SMALL, "predictions.csv"), lambda: evaluate("predictions.csv", "CheXpert-v1.0-small/valid.csv")),
    "run": (("runs/",), lambda: _open_run("runs/u-ones")),
}


def _open_run(path: str) -> Any:
    from chexpert.train.run import open_run  # imports torch: only where a doctest needs a run

    return open_run(path)


@pytest.fixture(autouse=True)
def _doctest_folder(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each doctest in a folder of its own holding the downloads it names (nothing for other tests)."""
    test = getattr(request.node, "dtest", None)
    if test is None:
        yield
        return
    # What the examples that run mention (a skipped one needs nothing built).
    source = "\n".join(example.source for example in test.examples if not example.options.get(doctest.SKIP))
    # A name the module defines (loop.py's function train, a package's submodule) is left to the module.
    used = [name for name in _OBJECTS if name not in test.globs and re.search(rf"(?<![.\w]){name}\b", source)]
    wanted = {name for name in _Downloads.BUILDERS if name in source} | {need for name in used for need in _OBJECTS[name][0]}
    downloads: _Downloads = request.getfixturevalue("_doctest_downloads")
    if re.search(r"""["']~/data["']""", source):  # ~/data itself: the small release and the test set beside it
        (tmp_path / "data").symlink_to(downloads.make(_Downloads.small_with_test_set)[0])
    else:
        (tmp_path / "data").mkdir()
    for name in sorted(wanted):
        for path in downloads.get(name):
            for folder in (tmp_path, tmp_path / "data") if not (tmp_path / "data").is_symlink() else (tmp_path,):
                # Loose files are copied: the safe readers refuse a file linked from elsewhere.
                if path.suffix == ".csv":
                    shutil.copyfile(path, folder / path.name)
                elif not (folder / path.name).exists():
                    (folder / path.name).symlink_to(path)
                if path.name == "CheXpert-Plus" and not (folder / "chexpert-plus").exists():
                    (folder / "chexpert-plus").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    # ~ is this folder, but caches and settings stay where they are (matplotlib's font list, torch's).
    for variable, default in (("XDG_CACHE_HOME", "~/.cache"), ("XDG_CONFIG_HOME", "~/.config")):
        monkeypatch.setenv(variable, os.environ.get(variable) or os.path.expanduser(default))
    monkeypatch.setenv("HOME", str(tmp_path))
    namespace: dict[str, Any] = request.getfixturevalue("doctest_namespace")
    namespace.clear()
    namespace.update(chexpert=chexpert, np=np, Path=Path, tmp_path=tmp_path)
    for name in used:
        namespace[name] = _OBJECTS[name][1]()
    yield
    namespace.clear()
