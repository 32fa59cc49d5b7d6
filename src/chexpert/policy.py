"""Raw label codes -> training targets and a loss mask, under an uncertainty policy per observation.

The index keeps the four raw states (``schema.Code``); a :class:`Policy` says what each becomes.
Each uncertainty policy is one small function, chosen by name from :data:`UNCERTAINTY_POLICIES`:

================== ================================================================================
``ignore``         U-Ignore: uncertain entries are masked out of the loss.
``zeros``          U-Zeros: uncertain -> 0.
``ones``           U-Ones: uncertain -> 1.
``multiclass``     U-MultiClass: three-way target negative / positive / uncertain (see :class:`Targets`).
``smooth-ones``    uncertain -> uniform draw from ``Policy.smooth_ones`` (Pham et al. 2019: [0.55, 0.85]).
``smooth-zeros``   uncertain -> uniform draw from ``Policy.smooth_zeros`` (Pham et al. 2019: [0, 0.3]).
``self-trained``   U-SelfTrained: uncertain -> soft label from a user-supplied table keyed by CSV Path.
================== ================================================================================

Positive is always 1 and negative 0. Blanks (not mentioned in the report) are negative, as the
CheXpert paper trained, or masked (``blank="ignore"``), as torchxrayvision does.

>>> labels = np.array([[1, 0, -1, -2] + [-2] * 10], dtype=np.int8)
>>> t = apply("u-ones", labels)
>>> t.targets[0, :4].tolist(), t.mask[0, :4].tolist()
([1.0, 0.0, 1.0, 0.0], [True, True, True, True])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chexpert import schema
from chexpert.errors import CSVFormatError, InvalidArgumentError
from chexpert.index import Index, observation_position
from chexpert.validation import check_choice

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Policy",
    "Targets",
    "RowKeyedDrawsWarning",
    "apply",
    "get_policy",
    "read_soft_labels",
    "PRESETS",
    "UNCERTAINTY_POLICIES",
    "BLANK_POLICIES",
    "NO_FINDING_MODES",
    "IGNORE_CLASS",
    "NEGATIVE_CLASS",
    "POSITIVE_CLASS",
    "UNCERTAIN_CLASS",
]

#: Three-way class indices of U-MultiClass targets (``Targets.classes``).
NEGATIVE_CLASS, POSITIVE_CLASS, UNCERTAIN_CLASS = 0, 1, 2
#: ``Targets.classes`` value for entries outside the three-way loss; PyTorch's CrossEntropyLoss default ``ignore_index``.
IGNORE_CLASS = -100

BLANK_POLICIES: tuple[str, ...] = ("negative", "ignore")
#: ``as-labelled``: No Finding is an observation like the others.
#: ``derive``: No Finding is 1 where no other observation except Support Devices is positive after the
#: policy (a counted binary target >= 0.5, or three-way class positive), 0 otherwise; always counted.
#: ``negates-others``: where the raw No Finding is positive, every other observation except Support
#: Devices becomes a counted negative (torchxrayvision does this).
#: ``drop``: No Finding is left out of the targets.
NO_FINDING_MODES: tuple[str, ...] = ("as-labelled", "derive", "negates-others", "drop")

_NO_FINDING = observation_position("No Finding")
_SUPPORT_DEVICES = observation_position("Support Devices")
#: Observations whose positivity rules No Finding out (all but No Finding and Support Devices).
_PATHOLOGIES = tuple(j for j in range(len(schema.OBSERVATIONS)) if j not in (_NO_FINDING, _SUPPORT_DEVICES))
_STR = np.dtypes.StringDType()

#: What ``soft_labels=`` takes: a DataFrame (``Path`` column or index), a mapping Path -> {observation: value}, or a CSV path.
SoftLabels = Union["pd.DataFrame", Mapping[str, Mapping[str, float]], str, "os.PathLike[str]"]


class RowKeyedDrawsWarning(UserWarning):
    """Label-smoothing draws keyed by row position, because bare codes came without paths.

    Then a subset or a reordering of the rows gets other draws for the same image. Pass the
    :class:`~chexpert.index.Index` itself (``apply("u-ones-lsr", frontal)``) or ``paths=``: the
    draws are then keyed by image path, the same in any selection and order.
    """


@dataclass(frozen=True)
class Policy:
    """How raw codes become targets: configuration only, applied by :func:`apply`.

    ``uncertain`` names the uncertainty policy of every observation not in ``per_observation``
    (a mapping observation -> policy name; stored as sorted pairs so a Policy is hashable).
    ``observations`` picks and orders the target columns (default: all 14 in CSV order, without
    No Finding when ``no_finding="drop"``). Smoothing draws are a pure function of ``seed``, the
    image and the observation, so a subset or a reordering of the rows gets the same values.

    >>> Policy(uncertain="zeros", per_observation={"Edema": "ones"}).uncertainty("Edema")
    'ones'
    >>> Policy(uncertain="sometimes")
    Traceback (most recent call last):
    ...
    chexpert.errors.InvalidArgumentError: unknown uncertainty policy 'sometimes'; valid: ignore, zeros, ones, multiclass, smooth-ones, smooth-zeros, self-trained
    """

    uncertain: str = "ignore"
    per_observation: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    blank: str = "negative"
    no_finding: str = "as-labelled"
    observations: tuple[str, ...] | None = None
    smooth_ones: tuple[float, float] = (0.55, 0.85)
    smooth_zeros: tuple[float, float] = (0.0, 0.3)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("uncertain", self.uncertain, UNCERTAINTY_POLICIES, what="uncertainty policy")
        pairs = self.per_observation.items() if isinstance(self.per_observation, Mapping) else self.per_observation
        pairs = tuple((str(o), str(p)) for o, p in pairs)
        for observation, name in pairs:
            observation_position(observation)
            check_choice("per_observation", name, UNCERTAINTY_POLICIES, what=f"uncertainty policy for {observation!r}")
        if len({o for o, _ in pairs}) != len(pairs):
            raise InvalidArgumentError(f"per_observation names an observation twice: {pairs}")
        object.__setattr__(self, "per_observation", tuple(sorted(pairs, key=lambda p: observation_position(p[0]))))
        check_choice("blank", self.blank, BLANK_POLICIES, what="blank policy")
        check_choice("no_finding", self.no_finding, NO_FINDING_MODES, what="No Finding mode")
        if self.observations is not None:
            observations = (self.observations,) if isinstance(self.observations, str) else tuple(self.observations)
            if not observations:
                raise InvalidArgumentError("observations is empty; give at least one of: " + ", ".join(schema.OBSERVATIONS))
            for observation in observations:
                observation_position(observation)
            if len(set(observations)) != len(observations):
                raise InvalidArgumentError(f"observations lists a name twice: {observations}")
            if self.no_finding == "drop" and "No Finding" in observations:
                raise InvalidArgumentError("no_finding='drop' but observations lists 'No Finding'; remove one of the two")
            object.__setattr__(self, "observations", observations)
        for name in ("smooth_ones", "smooth_zeros"):
            value = getattr(self, name)
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                lo, hi = 1.0, 0.0  # reported below
            if not 0.0 <= lo <= hi <= 1.0:
                raise InvalidArgumentError(f"{name} must be (lo, hi) with 0 <= lo <= hi <= 1, got {value!r}")
            object.__setattr__(self, name, (lo, hi))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise InvalidArgumentError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def target_observations(self) -> tuple[str, ...]:
        """The target columns, in order.

        >>> Policy(no_finding="drop").target_observations[0]
        'Enlarged Cardiomediastinum'
        """
        if self.observations is not None:
            return self.observations
        if self.no_finding == "drop":
            return tuple(o for o in schema.OBSERVATIONS if o != "No Finding")
        return schema.OBSERVATIONS

    def uncertainty(self, observation: str) -> str:
        """The uncertainty policy name used for ``observation``."""
        observation_position(observation)
        return dict(self.per_observation).get(observation, self.uncertain)

    @property
    def soft_label_observations(self) -> tuple[str, ...]:
        """The target observations under U-SelfTrained, whose uncertain entries need ``soft_labels``.

        >>> PRESETS["chexpert-paper-best"].soft_label_observations
        ('Consolidation',)
        """
        return tuple(o for o in self.target_observations if self.uncertainty(o) == "self-trained")


@dataclass(frozen=True, eq=False)
class Targets:
    """Training targets for N images and K observations (``observations``, in column order).

    Every entry counts in at most one loss:

    - binary columns (``multiclass[j]`` False): ``targets[:, j]`` float32 in [0, 1], counted where
      ``mask[:, j]`` (bool; use ``mask.astype(np.float32)`` as loss weights); ``classes[:, j]`` is
      ``IGNORE_CLASS``.
    - U-MultiClass columns (``multiclass[j]`` True): ``classes[:, j]`` int64 in
      {NEGATIVE_CLASS=0, POSITIVE_CLASS=1, UNCERTAIN_CLASS=2}, ``IGNORE_CLASS`` (-100) where not
      counted; ``mask[:, j]`` is False and ``targets[:, j]`` holds 1 for positive, 0 otherwise
      (handy for evaluation, never a training target).

    ``classes`` is None when no column is three-way.
    """

    targets: np.ndarray
    mask: np.ndarray
    observations: tuple[str, ...]
    multiclass: np.ndarray
    classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def positive(self, observations: str | Iterable[str] | None = None) -> np.ndarray:
        """Bool ``(N, k)``: which rows count as positive for each of ``observations`` (default: all).

        Positive is a counted binary target >= 0.5, or the three-way class POSITIVE_CLASS;
        uncounted entries are not positive. :func:`chexpert.sampling.balanced_weights` turns this
        into class-balanced sampling weights (the loaders' ``balance=``).

        >>> apply("u-ones", np.array([[1, -1, 0] + [-2] * 11], dtype=np.int8)).positive(["No Finding", "Cardiomegaly"]).tolist()
        [[True, False]]
        """
        names = self.observations if observations is None else ((observations,) if isinstance(observations, str) else tuple(observations))
        missing = [o for o in names if o not in self.observations]
        if missing or not names:
            raise InvalidArgumentError(
                f"observations must be among the policy's targets ({', '.join(self.observations)}); got {', '.join(map(repr, missing)) or 'none'}"
            )
        columns = [self.observations.index(o) for o in names]
        binary = self.mask[:, columns] & (self.targets[:, columns] >= 0.5)
        if self.classes is None:
            return binary
        return np.where(self.multiclass[columns], self.classes[:, columns] == POSITIVE_CLASS, binary)


class _Part(NamedTuple):
    targets: np.ndarray  # float32 (N, k)
    mask: np.ndarray  # bool (N, k)
    classes: np.ndarray | None = None  # int64 (N, k), only for three-way policies


@dataclass(frozen=True)
class _Context:
    """What some policies need besides the codes; paths are prepared only if a policy asks."""

    policy: Policy
    rows: int
    raw_paths: np.ndarray | None  # CSV Path per row, any release prefix
    soft_labels: pd.DataFrame | None  # indexed by Path without release prefix

    @cached_property
    def paths(self) -> np.ndarray | None:
        """Paths without release prefix (object array), so every release keys an image alike."""
        return None if self.raw_paths is None else _strip_prefixes(self.raw_paths)

    @cached_property
    def keys(self) -> np.ndarray:
        """uint64 per image: a hash of its path, or the row position when paths are unknown."""
        if self.paths is None:
            return np.arange(self.rows, dtype=np.uint64)
        import pandas as pd

        # SipHash with pandas' fixed key: stable across runs and processes, unlike Python's hash().
        return pd.util.hash_array(self.paths, categorize=False)


def _positive(codes: np.ndarray) -> np.ndarray:
    return (codes == schema.Code.POSITIVE).astype(np.float32)


def _uncertain(codes: np.ndarray) -> np.ndarray:
    return codes == schema.Code.UNCERTAIN


def u_ignore(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """U-Ignore: uncertain entries do not count."""
    return _Part(_positive(codes), ~_uncertain(codes))


def u_zeros(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """U-Zeros: uncertain -> 0."""
    return _Part(_positive(codes), np.ones(codes.shape, dtype=bool))


def u_ones(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """U-Ones: uncertain -> 1."""
    return _Part((_positive(codes) + _uncertain(codes)).astype(np.float32), np.ones(codes.shape, dtype=bool))


def u_multiclass(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """U-MultiClass: three-way classes; blanks start as negative (the blank policy may mask them)."""
    classes = np.full(codes.shape, NEGATIVE_CLASS, dtype=np.int64)
    classes[codes == schema.Code.POSITIVE] = POSITIVE_CLASS
    classes[_uncertain(codes)] = UNCERTAIN_CLASS
    return _Part(_positive(codes), np.zeros(codes.shape, dtype=bool), classes)


def _smooth(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context, bounds: tuple[float, float]) -> _Part:
    if ctx.paths is None and _uncertain(codes).any():
        warnings.warn(
            "label smoothing without paths draws by row position, so a subset or a "
            "reordering of these rows gets other values for the same image; pass the Index itself "
            "(apply_policy(policy, index), not index.labels) or paths= to key the draws by image",
            RowKeyedDrawsWarning,
            stacklevel=4,  # _smooth <- u_smooth_* <- apply <- the caller
        )
    lo, hi = bounds
    positions = np.array([observation_position(o) for o in observations], dtype=np.uint64)
    draws = lo + (hi - lo) * _uniform(ctx.keys, positions, ctx.policy.seed)
    targets = np.where(_uncertain(codes), draws, _positive(codes)).astype(np.float32)
    return _Part(targets, np.ones(codes.shape, dtype=bool))


def u_smooth_ones(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """Label smoothing toward ones: uncertain -> uniform in ``Policy.smooth_ones``."""
    return _smooth(codes, observations, ctx, ctx.policy.smooth_ones)


def u_smooth_zeros(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """Label smoothing toward zeros: uncertain -> uniform in ``Policy.smooth_zeros``."""
    return _smooth(codes, observations, ctx, ctx.policy.smooth_zeros)


def u_self_trained(codes: np.ndarray, observations: tuple[str, ...], ctx: _Context) -> _Part:
    """U-SelfTrained: uncertain -> the soft label given for that image (CSV Path) and observation."""
    if ctx.soft_labels is None:
        raise InvalidArgumentError(
            f"the policy uses U-SelfTrained for {', '.join(observations)}, which needs soft_labels=: a table "
            "keyed by CSV Path with a column per observation (e.g. the predictions of a U-Ignore model "
            "on the training images); none was given"
        )
    if ctx.paths is None:
        raise InvalidArgumentError("U-SelfTrained looks soft labels up by CSV Path: pass paths= or an Index instead of bare labels")
    missing = [o for o in observations if o not in ctx.soft_labels.columns]
    if missing:
        raise InvalidArgumentError(f"soft_labels has no column for {', '.join(map(repr, missing))}; it has: {', '.join(map(str, ctx.soft_labels.columns))}")
    uncertain = _uncertain(codes)
    targets = _positive(codes)
    rows = np.flatnonzero(uncertain.any(axis=1))
    if len(rows):
        where = ctx.soft_labels.index.get_indexer(ctx.paths[rows])
        if (where < 0).any():
            lost = rows[where < 0]
            raise InvalidArgumentError(
                f"soft_labels has no row for Path {(ctx.paths[lost[0]])!r}" + (f" (and {len(lost) - 1} more uncertain images)" if len(lost) > 1 else "")
            )
        table = ctx.soft_labels[list(observations)].to_numpy(dtype=np.float64)[where]
        needed = uncertain[rows]
        bad = needed & ~((table >= 0.0) & (table <= 1.0))  # also catches NaN
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InvalidArgumentError(f"soft label for Path {(ctx.paths[rows[r]])!r}, {observations[c]!r} is {table[r, c]!r}; soft labels must be in [0, 1]")
        targets[rows] = np.where(needed, table, targets[rows])
    return _Part(targets, np.ones(codes.shape, dtype=bool))


#: Uncertainty policy name -> function(codes (N, k) int8, observations, context) -> targets, mask[, classes].
UNCERTAINTY_POLICIES: dict[str, Callable[[np.ndarray, tuple[str, ...], _Context], _Part]] = {
    "ignore": u_ignore,
    "zeros": u_zeros,
    "ones": u_ones,
    "multiclass": u_multiclass,
    "smooth-ones": u_smooth_ones,
    "smooth-zeros": u_smooth_zeros,
    "self-trained": u_self_trained,
}

_COMPETITION_ORDER_LIBAUC = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")

#: Named configurations; :func:`get_policy` resolves a name.
PRESETS: dict[str, Policy] = {
    "u-ignore": Policy(uncertain="ignore"),
    "u-zeros": Policy(uncertain="zeros"),
    "u-ones": Policy(uncertain="ones"),
    "u-multiclass": Policy(uncertain="multiclass"),
    # Pham et al. 2019, "Interpreting chest X-rays via CNNs that exploit hierarchical disease
    # dependencies and uncertainty labels": label-smoothing regularisation.
    "u-ones-lsr": Policy(uncertain="smooth-ones"),
    "u-zeros-lsr": Policy(uncertain="smooth-zeros"),
    # Irvin et al. 2019, Table 1: the best policy per competition task on the validation set.
    "chexpert-paper-best": Policy(
        uncertain="ignore",
        per_observation={
            "Atelectasis": "ones",
            "Edema": "ones",
            "Cardiomegaly": "multiclass",
            "Pleural Effusion": "multiclass",
            "Consolidation": "self-trained",
        },
        observations=schema.COMPETITION_TASKS,
    ),
    # torchxrayvision CheX_Dataset: 13 pathologies sorted by name (No Finding only zeroes the others),
    # uncertain and blank become NaN, i.e. masked.
    "torchxrayvision": Policy(
        uncertain="ignore",
        blank="ignore",
        no_finding="negates-others",
        observations=tuple(sorted(o for o in schema.OBSERVATIONS if o != "No Finding")),
    ),
    # LibAUC datasets.CheXpert as written (its chained in-place pandas edits do nothing under
    # pandas 3): U-Ones for Edema and Atelectasis, U-Zeros otherwise, blanks negative, its column order.
    "libauc": Policy(
        uncertain="zeros",
        per_observation={"Edema": "ones", "Atelectasis": "ones"},
        observations=_COMPETITION_ORDER_LIBAUC,
    ),
}


def get_policy(policy: str | Policy) -> Policy:
    """Return ``policy`` itself, or the preset of that name.

    >>> get_policy("u-ones").uncertain
    'ones'
    """
    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, str) or policy not in PRESETS:
        raise InvalidArgumentError(f"unknown policy preset {policy!r}; valid: {', '.join(PRESETS)} (or a Policy)")
    return PRESETS[policy]


def apply(
    policy: str | Policy,
    labels: np.ndarray | Index,
    *,
    paths: np.ndarray | Iterable[str] | None = None,
    soft_labels: SoftLabels | None = None,
) -> Targets:
    """Turn raw codes (N, 14) in ``schema.OBSERVATIONS`` order into :class:`Targets`.

    ``labels`` may be an :class:`~chexpert.index.Index`, whose paths are then used: pass the Index
    (``apply("u-ones-lsr", frontal)``), so that every image gets the same smoothing draws in any
    selection and order. ``paths`` (the CSV Path of each row, any release prefix) do the same for
    bare codes and look up soft labels; without them smoothing draws are keyed by row position,
    with a :class:`RowKeyedDrawsWarning`. ``soft_labels`` (for
    ``self-trained``) is a DataFrame with a ``Path`` column (or index) and a column per
    observation, a mapping Path -> {observation: value}, or the path of such a CSV (see
    :func:`read_soft_labels`); only uncertain entries are looked up.

    >>> t = apply(Policy(uncertain="ignore", blank="ignore"), np.array([[1, 0, -1, -2] * 3 + [1, 1]], dtype=np.int8))
    >>> t.targets[0, :4].tolist(), t.mask[0, :4].tolist()
    ([1.0, 0.0, 0.0, 0.0], [True, True, False, False])
    """
    policy = get_policy(policy)
    if isinstance(labels, Index):
        if paths is None:
            paths = labels.path
        labels = labels.labels
    codes = _check_labels(labels)
    n = len(codes)
    if paths is not None:
        paths = np.asarray(paths, dtype=_STR)
        if paths.shape != (n,):
            raise InvalidArgumentError(f"paths has shape {paths.shape}; expected ({n},), one per row of labels")
    ctx = _Context(policy, n, paths, _soft_table(soft_labels))

    wanted = [observation_position(o) for o in policy.target_observations]
    derive = policy.no_finding == "derive" and _NO_FINDING in wanted
    needed = sorted(set(wanted) | (set(_PATHOLOGIES) if derive else set()))

    width = len(schema.OBSERVATIONS)
    targets = np.zeros((n, width), dtype=np.float32)
    mask = np.zeros((n, width), dtype=bool)
    classes = np.full((n, width), IGNORE_CLASS, dtype=np.int64)
    multiclass = np.zeros(width, dtype=bool)
    groups: dict[str, list[int]] = {}
    for j in needed:
        groups.setdefault(policy.uncertainty(schema.OBSERVATIONS[j]), []).append(j)
    for name, columns in groups.items():
        part = UNCERTAINTY_POLICIES[name](codes[:, columns], tuple(schema.OBSERVATIONS[j] for j in columns), ctx)
        targets[:, columns] = part.targets
        mask[:, columns] = part.mask
        if part.classes is not None:
            classes[:, columns] = part.classes
            multiclass[columns] = True

    if policy.blank == "ignore":
        blank = codes == schema.Code.BLANK
        mask &= ~blank
        classes[blank] = IGNORE_CLASS
    # Blanks under "negative" are already 0 / NEGATIVE_CLASS: every policy reads them as not positive.

    if policy.no_finding == "negates-others":
        healthy = codes[:, _NO_FINDING] == schema.Code.POSITIVE
        others = np.array(_PATHOLOGIES)
        rows = np.ix_(healthy, others)
        targets[rows] = 0.0
        mask[rows] = ~multiclass[others]
        classes[rows] = np.where(multiclass[others], NEGATIVE_CLASS, IGNORE_CLASS)
    elif derive:
        positive = np.where(multiclass, classes == POSITIVE_CLASS, mask & (targets >= 0.5))
        targets[:, _NO_FINDING] = ~positive[:, list(_PATHOLOGIES)].any(axis=1)
        mask[:, _NO_FINDING] = True
        classes[:, _NO_FINDING] = IGNORE_CLASS
        multiclass[_NO_FINDING] = False

    multiclass = multiclass[wanted]
    return Targets(
        targets=np.take(targets, wanted, axis=1),
        mask=np.take(mask, wanted, axis=1),
        observations=policy.target_observations,
        multiclass=multiclass,
        classes=np.take(classes, wanted, axis=1) if multiclass.any() else None,
    )


def _check_labels(labels: Any) -> np.ndarray:
    codes = np.asarray(labels)
    if codes.ndim != 2 or codes.shape[1] != len(schema.OBSERVATIONS):
        raise InvalidArgumentError(f"labels must be (N, {len(schema.OBSERVATIONS)}) raw codes in schema.OBSERVATIONS order, got shape {codes.shape}")
    if codes.dtype.kind not in "iu":
        raise InvalidArgumentError(f"labels must hold integer schema.Code values, got dtype {codes.dtype}")
    bad = (codes < min(schema.Code)) | (codes > max(schema.Code))  # the codes are contiguous
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InvalidArgumentError(
            f"labels[{r}, {c}] ({schema.OBSERVATIONS[c]}) is {codes[r, c]}; valid codes: "
            + ", ".join(f"{int(code)} ({code.name.lower()})" for code in schema.Code)
        )
    return codes.astype(np.int8, copy=False)


def _strip_prefixes(paths: np.ndarray) -> np.ndarray:
    """Vectorised ``schema.strip_release_prefix``, as an object array of str."""
    releases = "|".join(d.replace(".", "\\.") for d in schema.RELEASE_DIRS.values())
    stripped = pc.replace_substring_regex(pc.replace_substring(pa.array(paths, type=pa.string()), "\\", "/"), f"^(?:{releases})/", "")
    return stripped.to_numpy(zero_copy_only=False)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(keys: np.ndarray, positions: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) per (image key, observation position, seed): a counter-based generator."""
    mixed = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64)))
    bits = _splitmix64(mixed[:, None] + positions[None, :].astype(np.uint64) * np.uint64(0xD1B54A32D192ED03))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def read_soft_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A soft-label CSV for U-SelfTrained: a ``Path`` column (CSV Paths, any release prefix) and a column per observation.

    Such a file is typically a U-Ignore model's predictions on the training images (``chexpert
    predict`` writes this form). Cells must be numbers (empty where not needed); an error names
    the file, the row and the column. Values are checked against [0, 1] where
    :func:`apply` uses them, for the uncertain entries only.

    >>> soft = read_soft_labels("u-ignore-predictions.csv")
    >>> apply("chexpert-paper-best", train, soft_labels=soft).targets.shape
    (27, 5)
    """
    import pandas as pd

    from chexpert.safeio import read_text_csv

    name = os.fspath(path)
    if os.path.isdir(name):
        raise CSVFormatError("soft labels must be a CSV file, not a folder", file=name)
    # Read as evaluate reads its files: a zip, FIFO, folder, binary or empty file is one line naming it.
    frame = read_text_csv(name, "soft-label")
    if "Path" not in frame.columns:
        raise CSVFormatError(f"soft labels need a Path column (the CSV Path of each image); columns are {list(frame.columns)}", file=name)
    columns = [c for c in frame.columns if c in schema.OBSERVATIONS]
    if not columns:
        raise CSVFormatError("soft labels have none of the 14 observations as a column: " + ", ".join(schema.OBSERVATIONS), file=name)
    table = pd.DataFrame(index=frame["Path"].to_numpy(dtype=object))
    for column in columns:
        text = frame[column].str.strip()
        values = pd.to_numeric(text.replace("", "nan"), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & ~text.isin(["", "nan", "NaN"]).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise CSVFormatError(f"{column!r} is not a number: {frame[column].iloc[row]!r}", file=name, row=row + 2)
        table[column] = values
    return table


def _soft_table(soft_labels: SoftLabels | None) -> pd.DataFrame | None:
    if soft_labels is None:
        return None
    import pandas as pd

    if isinstance(soft_labels, str | os.PathLike):
        soft_labels = read_soft_labels(soft_labels)
    if isinstance(soft_labels, pd.DataFrame):
        table = soft_labels.set_index("Path") if "Path" in soft_labels.columns else soft_labels
    elif isinstance(soft_labels, Mapping):
        table = pd.DataFrame.from_dict(dict(soft_labels), orient="index")
    else:
        raise InvalidArgumentError(f"soft_labels must be a pandas DataFrame or a mapping Path -> {{observation: value}}, got {type(soft_labels).__name__}")
    table = table.set_axis(pd.Index(_strip_prefixes(np.asarray(table.index.astype(str), dtype=_STR)), dtype=object), axis=0)
    if table.index.has_duplicates:
        first = table.index[table.index.duplicated()][0]
        raise InvalidArgumentError(f"soft_labels lists Path {first!r} twice (release prefixes are ignored)")
    return table
