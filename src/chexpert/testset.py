"""The test set and CheXlocalize's label files, read as released.

CheXpert's 500-study test set was scored in private until its labels were released: a study-level
``groundtruth.csv`` (majority of five consensus radiologists, integer 0/1, ``Study`` column such as
``CheXpert-v1.0/test/patient64741/study1``), the reads of the three benchmark radiologists and of
the five consensus radiologists (``bc<N>.csv``, same columns, observations in their own order),
and, in CheXlocalize, the images of the validation (``val/``) and test (``test/``) sets with
image-level ``val_labels.csv`` / ``test_labels.csv``.

Tolerances, because not every detail of these files is documented: columns are matched by name in
any order (CheXlocalize's "Airspace Opacity" is Lung Opacity); image-level label files may lack
the metadata columns (Sex, Age, Frontal/Lateral, AP/PA: the view then comes from the file name,
sex is Unknown, age 0, projection none); labels may be spelled ``1``/``0`` as well as
``1.0``/``0.0``; radiologist files are any ``bc<N>.csv`` or any CSV in a folder whose name says
``benchmark`` or ``consensus``, and without such a folder bc4, bc6 and bc8 are the benchmark
readers (as in the CheXpert paper's evaluation). The public labels repository's layout is read as
it is: ``radiologists/groundtruth/bc1_gt.csv`` (and bc2, bc3, bc5, bc7) are the consensus panel,
named ``bc1`` and so on, ``radiologists/benchmark_radiologists/bc4.csv`` (bc6, bc8) the benchmark. Without ``test_labels.csv`` the test split is
indexed from the images present joined with ``groundtruth.csv`` by study.

>>> release = chexpert.open("~/data")
>>> test = release.index("test")
>>> files = find_test_set(release)
>>> sorted(files.benchmark)
['bc4', 'bc6', 'bc8']
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from chexpert import schema
from chexpert.errors import ChexpertError, InvalidArgumentError, Problem, ReleaseNotFoundError, option
from chexpert.index import Index
from chexpert.release import CSV_NAMES, Release, ReleaseFile, open_release
from chexpert.splits import OBSERVATION_ALIASES, check_split, read_split, study_labels
from chexpert.validation import check_choice

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "OBSERVATION_ALIASES",
    "RADIOLOGIST_GROUPS",
    "BENCHMARK_READERS",
    "TestSetFiles",
    "read_split",
    "check_split",
    "find_test_set",
    "resolve_truth",
    "check_test_set",
]

#: Which radiologists ``evaluate`` compares with when given a release: the three benchmark
#: readers (as the competition did), the five whose majority is the ground truth, or all eight.
RADIOLOGIST_GROUPS: Final[tuple[str, ...]] = ("benchmark", "consensus", "all", "none")
#: The benchmark radiologists' file stems when no folder name says which group a file is in.
BENCHMARK_READERS: Final[tuple[str, ...]] = schema.BENCHMARK_READERS

_READER_FILE = re.compile(r"^bc\d+(?P<gt>_gt)?\.csv$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# The test set's files: truth and radiologists
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSetFiles:
    """The test set's label files found in a release (any of them may be absent).

    ``truth`` is ``groundtruth.csv``; ``labels`` the image-level ``test_labels.csv``;
    ``benchmark`` and ``consensus`` map a radiologist's name (the file stem, e.g. ``bc4``) to
    their file.
    """

    __test__ = False  # not a pytest test class

    release: Release
    truth: ReleaseFile | None
    labels: ReleaseFile | None
    benchmark: Mapping[str, ReleaseFile] = field(default_factory=dict)
    consensus: Mapping[str, ReleaseFile] = field(default_factory=dict)

    def radiologists(self, group: str = "benchmark") -> dict[str, ReleaseFile]:
        """The files of one group in :data:`RADIOLOGIST_GROUPS`, by name.

        >>> files = find_test_set("~/data")
        >>> sorted(files.radiologists("consensus"))
        ['bc1', 'bc2', 'bc3', 'bc5', 'bc7']
        """
        check_choice("radiologists", group, RADIOLOGIST_GROUPS)
        chosen = {"benchmark": self.benchmark, "consensus": self.consensus, "all": {**self.benchmark, **self.consensus}, "none": {}}[group]
        return dict(sorted(chosen.items(), key=lambda item: _reader_order(item[0])))


def _reader_order(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else 0, name)


def find_test_set(source: Release | str | os.PathLike[str]) -> TestSetFiles:
    """Find the test set's ``groundtruth.csv``, ``test_labels.csv`` and radiologist files.

    >>> files = find_test_set("~/data")
    >>> files.truth.path, sorted(files.benchmark)
    ('chexpert-test-set-labels/groundtruth.csv', ['bc4', 'bc6', 'bc8'])
    """
    release = source if isinstance(source, Release) else open_release(source)
    truths = [f for f in release.files if f.name == "groundtruth.csv"]
    labels = [f for f in release.files if f.name == CSV_NAMES["test"]]
    for what, found in (("groundtruth.csv", truths), (CSV_NAMES["test"], labels)):
        if len(found) > 1:
            raise ChexpertError(f"{release.root} holds {len(found)} {what} files: {', '.join(f.label for f in found)}; pass the one release folder you mean")
    benchmark: dict[str, ReleaseFile] = {}
    consensus: dict[str, ReleaseFile] = {}
    for file in release.files:
        folders = file.path.lower().split("/")[:-1]
        group = next((g for folder in reversed(folders) for g in ("benchmark", "consensus") if g in folder), None)
        reader = _READER_FILE.match(file.name)
        if group is None and reader is not None:
            # bc1_gt.csv (radiologists/groundtruth/ in the public repository): one of the panel whose majority is the truth.
            group = "consensus" if reader["gt"] else "benchmark" if Path(file.name).stem.lower() in BENCHMARK_READERS else "consensus"
        if group is None or not file.name.lower().endswith(".csv"):
            continue
        name = Path(file.name).stem
        if reader is not None and reader["gt"]:
            name = name[: -len(reader["gt"])]
        chosen = benchmark if group == "benchmark" else consensus
        other = chosen.get(name) or (consensus if group == "benchmark" else benchmark).get(name)
        if other is not None:
            raise ChexpertError(f"two radiologist files named {name!r}: {other.label} and {file.label}; keep one")
        chosen[name] = file
    return TestSetFiles(release, truths[0] if truths else None, labels[0] if labels else None, benchmark, consensus)


def _frame(file: ReleaseFile) -> str | pd.DataFrame:
    """A file as ``chexpert.evaluate`` takes it: its path on disk, or (inside a zip) a DataFrame
    that names the member in messages."""
    if file.archive is None:
        return file.location
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(file.read()), dtype=str, keep_default_na=False)
    frame.attrs["source"] = file.label
    return frame


def _is_release_root(truth: Any) -> bool:
    if isinstance(truth, Release):
        return True
    if not isinstance(truth, str | os.PathLike):
        return False
    path = Path(truth).expanduser()
    return path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path))


def _split_of(studies: np.ndarray, split: str | None, name: str) -> str:
    if split is not None:
        return check_choice("split", split, ("valid", "test"))
    found = sorted({str(s).split("/", 1)[0] for s in studies})
    if len(found) != 1 or found[0] not in ("valid", "test"):
        raise InvalidArgumentError(
            f"{name}: predictions hold studies of {', '.join(found) or 'no'} split(s); score one of valid or test at a time, "
            f"or choose with {option('split', 'test')}"
        )
    return found[0]


def resolve_truth(
    truth: Any,
    studies: np.ndarray,
    *,
    split: str | None = None,
    radiologists: Any = None,
    predictions_name: str = "predictions",
) -> tuple[Any, Any, Index | None]:
    """What ``evaluate`` scores against when ``truth`` is a release (folder, zip or :class:`Release`).

    Returns ``(truth, radiologists, metadata)``: for the test split the released
    ``groundtruth.csv`` (else the indexed ``test_labels.csv``), for valid the indexed valid CSV;
    the radiologists of the group named by ``radiologists`` (None: the benchmark three for the
    test split, none for valid); the split's Index for subgroup metadata when it can be read.
    ``split`` None takes the split the predicted ``studies`` are in. Anything else is returned
    unchanged.

    >>> truth, readers, metadata = resolve_truth("~/data", np.array(["test/patient64741/study1"]))
    >>> Path(truth).name, sorted(readers)
    ('groundtruth.csv', ['bc4', 'bc6', 'bc8'])
    """
    if not _is_release_root(truth):
        if isinstance(radiologists, str) and radiologists in RADIOLOGIST_GROUPS and not Path(radiologists).exists():
            if radiologists != "none":
                raise InvalidArgumentError(f"radiologists={radiologists!r} picks radiologists of a release: pass the release folder as the truth")
            return truth, (), None
        return truth, (() if radiologists is None else radiologists), None
    release = truth if isinstance(truth, Release) else open_release(truth)
    if release.kind == "mimic":  # MIMIC-CXR-JPG: study-level truth from its label file (see chexpert.mimic)
        from chexpert.mimic import MimicRelease
        from chexpert.mimic import resolve_truth as mimic_truth

        return mimic_truth(cast(MimicRelease, release), studies, split=split, radiologists=radiologists)
    chosen = _split_of(studies, split, predictions_name)
    files = find_test_set(release)
    metadata: Index | None = None
    if chosen in release.splits:
        try:
            metadata = release.index(chosen)
        except ChexpertError:
            metadata = None  # e.g. groundtruth.csv without the images; the truth itself is still read below
    if chosen == "test" and files.truth is not None:
        resolved: Any = _frame(files.truth)
    elif metadata is not None:
        resolved = metadata
    elif chosen in release.splits:
        resolved = read_split(release, chosen)  # raises the error that names file and row
    else:
        raise ReleaseNotFoundError(
            f"{release.root} has no {chosen} labels ({'groundtruth.csv or test_labels.csv' if chosen == 'test' else 'valid.csv or val_labels.csv'}); "
            f"splits present: {', '.join(release.splits) or 'none'}"
        )
    if radiologists is None:
        radiologists = "benchmark" if chosen == "test" else "none"
    if isinstance(radiologists, str) and radiologists in RADIOLOGIST_GROUPS and not Path(radiologists).exists():
        if chosen != "test" and radiologists != "none":
            raise InvalidArgumentError(f"radiologists={radiologists!r}: only the test set comes with radiologists' reads")
        found = files.radiologists(radiologists)
        if radiologists != "none" and not found:
            raise ReleaseNotFoundError(
                f"{release.root} holds no {radiologists} radiologists' files (bc<N>.csv); pass them with radiologists= "
                f"or choose {option('radiologists', 'none')}"
            )
        radiologists = {name: _frame(file) for name, file in found.items()}
    return resolved, radiologists, metadata


# ---------------------------------------------------------------------------------------------
# Checks for verify
# ---------------------------------------------------------------------------------------------


def check_test_set(release: Release, index: Index | None = None) -> list[Problem]:
    """Problems of the test set's label files: rows of groundtruth.csv without images, labels that
    disagree with test_labels.csv, radiologist files missing studies or holding others, bad values.

    ``index`` is the test split's Index when verify already has it.

    >>> release = chexpert.open("~/data")
    >>> [str(p) for p in check_test_set(release)]  # a complete test set: no problem
    []
    """
    files = find_test_set(release)
    problems: list[Problem] = []
    truth: dict[str, tuple[int, list[str]]] = {}
    if files.truth is not None:
        rows, found = study_labels(files.truth.read(), files.truth.label)
        problems += found
        truth = {key: (line, spellings) for line, key, spellings in rows}
        if index is None and "test" in release.splits:
            try:
                index = read_split(release, "test")
            except ChexpertError:
                index = None  # verify reports the test CSV's own problems
        truth_is_split_csv = "test" in release.splits and release.csv_bytes("test")[1] == files.truth.label
        if index is not None and len(index) and not truth_is_split_csv:  # else check_split reported its rows
            test_rows = index.take(index.split == schema.SPLITS.index("test"))
            keys = test_rows.study_keys()
            have = set(keys.tolist())
            for key, (line, _spellings) in truth.items():
                if key.startswith("test/") and key not in have:
                    problems.append(Problem("missing", files.truth.label, line, f"study {key!r} has no images in {release.root}"))
            spelled = {1: "1.0", 0: "0.0", -1: "-1.0", -2: ""}
            reported: set[str] = set()
            for key, labels in zip(keys.tolist(), test_rows.labels.tolist()):
                if key in truth and key not in reported:
                    line, spellings = truth[key]
                    differ = [o for o, a, b in zip(schema.OBSERVATIONS, (spelled[v] for v in labels), spellings) if a != b]
                    if differ:
                        reported.add(key)
                        problems.append(
                            Problem(
                                "disagree",
                                files.truth.label,
                                line,
                                f"study {key!r}: {', '.join(differ)} differ from the images' labels in the test split's CSV",
                            )
                        )
    for group in ("benchmark", "consensus"):
        for name, file in files.radiologists(group).items():
            problems += _check_reader(file, name, truth, files.truth)
    return problems


def _check_reader(file: ReleaseFile, name: str, truth: Mapping[str, tuple[int, list[str]]], truth_file: ReleaseFile | None) -> list[Problem]:
    rows, problems = study_labels(file.read(), file.label)
    if not truth or truth_file is None:
        return problems
    keys = {key for _line, key, _ in rows}
    missing = [key for key in truth if key not in keys]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        problems.append(Problem("coverage", file.label, None, f"radiologist {name} lacks {len(missing)} studies of {truth_file.name}: {shown}"))
    for line, key, _ in rows:
        if key not in truth:
            problems.append(Problem("coverage", file.label, line, f"study {key!r} is not in {truth_file.name}"))
    return problems
