"""Uncertainty policies: values for every code under every policy, blank mode and No Finding mode."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from chexpert import schema
from chexpert.errors import CSVFormatError
from chexpert.index import read_csv
from chexpert.policy import (
    IGNORE_CLASS,
    NO_FINDING_MODES,
    PRESETS,
    UNCERTAINTY_POLICIES,
    Policy,
    RowKeyedDrawsWarning,
    apply,
    get_policy,
    read_soft_labels,
)
from tests.real_counts import REAL_LABELS

OBS = schema.OBSERVATIONS
POS, NEG, UNC, BLANK = (int(c) for c in (schema.Code.POSITIVE, schema.Code.NEGATIVE, schema.Code.UNCERTAIN, schema.Code.BLANK))
CODES = (POS, NEG, UNC, BLANK)
NF, SD = OBS.index("No Finding"), OBS.index("Support Devices")


@pytest.fixture(scope="module")
def real(real_train_csv):
    return read_csv(real_train_csv)


def uniform_rows() -> np.ndarray:
    """Four rows: every observation positive, negative, uncertain, blank."""
    return np.repeat(np.array(CODES, dtype=np.int8)[:, None], len(OBS), axis=1)


def paths_for(n: int, prefix: str = "CheXpert-v1.0-small/") -> np.ndarray:
    return np.array([f"{prefix}train/patient{i + 1:05d}/study1/view1_frontal.jpg" for i in range(n)], dtype=np.dtypes.StringDType())


# ---------------------------------------------------------------------------------------------
# Every code under every policy and blank mode


# (target, mask) per code for the binary policies; smoothing gives a range for uncertain.
# observation policy -> raw code -> (target, or the (low, high) range of a smoothed one; mask)
BINARY_EXPECTED: dict[str, dict[int, tuple[float | tuple[float, float], bool]]] = {
    "ignore": {POS: (1.0, True), NEG: (0.0, True), UNC: (0.0, False)},
    "zeros": {POS: (1.0, True), NEG: (0.0, True), UNC: (0.0, True)},
    "ones": {POS: (1.0, True), NEG: (0.0, True), UNC: (1.0, True)},
    "smooth-ones": {POS: (1.0, True), NEG: (0.0, True), UNC: ((0.55, 0.85), True)},
    "smooth-zeros": {POS: (1.0, True), NEG: (0.0, True), UNC: ((0.0, 0.3), True)},
    "self-trained": {POS: (1.0, True), NEG: (0.0, True), UNC: (0.625, True)},
}


def soft_table(paths: np.ndarray, value: float = 0.625) -> pd.DataFrame:
    return pd.DataFrame({"Path": paths.astype(object), **{o: value for o in OBS}})


@pytest.mark.parametrize("blank", ["negative", "ignore"])
@pytest.mark.parametrize("name", sorted(UNCERTAINTY_POLICIES))
def test_every_code_under_every_policy(name, blank):
    codes = uniform_rows()
    paths = paths_for(len(codes))
    t = apply(Policy(uncertain=name, blank=blank), codes, paths=paths, soft_labels=soft_table(paths))
    assert t.observations == OBS
    assert t.targets.dtype == np.float32 and t.mask.dtype == bool
    if name == "multiclass":
        assert t.multiclass.all() and not t.mask.any()
        expected_classes = {POS: 1, NEG: 0, UNC: 2, BLANK: 0 if blank == "negative" else IGNORE_CLASS}
        assert t.classes is not None
        for row, code in enumerate(CODES):
            assert (t.classes[row] == expected_classes[code]).all()
            assert (t.targets[row] == (1.0 if code == POS else 0.0)).all()
        return
    assert t.classes is None and not t.multiclass.any()
    expected = dict(BINARY_EXPECTED[name])
    expected[BLANK] = (0.0, blank == "negative")
    for row, code in enumerate(CODES):
        target, mask = expected[code]
        assert (t.mask[row] == mask).all()
        if isinstance(target, tuple):
            assert ((t.targets[row] >= target[0]) & (t.targets[row] <= target[1])).all()
        else:
            assert (t.targets[row] == target).all()


def reference(policy: Policy, row: np.ndarray) -> list[tuple[float, bool, int]]:
    """A plain, per-entry reading of the rules, for the deterministic policies."""
    out = []
    for j, observation in enumerate(OBS):
        name, code = policy.uncertainty(observation), int(row[j])
        if name == "multiclass":
            cls = {POS: 1, NEG: 0, UNC: 2, BLANK: 0}[code]
            if code == BLANK and policy.blank == "ignore":
                cls = IGNORE_CLASS
            out.append((float(code == POS), False, cls))
        elif code == BLANK:
            out.append((0.0, policy.blank == "negative", IGNORE_CLASS))
        elif code == UNC:
            target, mask = BINARY_EXPECTED[name][UNC]
            assert isinstance(target, float)  # the deterministic policies only: no smoothed range
            out.append((target, mask, IGNORE_CLASS))
        else:
            out.append((float(code == POS), True, IGNORE_CLASS))
    if policy.no_finding == "negates-others" and row[NF] == POS:
        for j in range(len(OBS)):
            if j not in (NF, SD):
                multiclass = policy.uncertainty(OBS[j]) == "multiclass"
                out[j] = (0.0, not multiclass, 0 if multiclass else IGNORE_CLASS)
    if policy.no_finding == "derive":
        positive = False
        for j in range(len(OBS)):
            if j not in (NF, SD):
                target, mask, cls = out[j]
                positive |= cls == 1 if policy.uncertainty(OBS[j]) == "multiclass" else (mask and target >= 0.5)
        out[NF] = (0.0 if positive else 1.0, True, IGNORE_CLASS)
    return out


@pytest.mark.parametrize("no_finding", ["as-labelled", "derive", "negates-others"])
@pytest.mark.parametrize("blank", ["negative", "ignore"])
def test_mixed_policies_match_a_per_entry_reference(blank, no_finding):
    rng = np.random.default_rng(5)
    codes = rng.choice(np.array(CODES, dtype=np.int8), size=(400, len(OBS)))
    codes[:50, NF] = POS  # the released No Finding is positive or blank; make negation frequent
    names = ["ignore", "zeros", "ones", "multiclass"]
    per_observation = {o: names[j % 4] for j, o in enumerate(OBS)}
    policy = Policy(uncertain="zeros", per_observation=per_observation, blank=blank, no_finding=no_finding)
    t = apply(policy, codes)
    assert t.classes is not None
    for i, row in enumerate(codes):
        for j, (target, mask, cls) in enumerate(reference(policy, row)):
            assert (t.targets[i, j], t.mask[i, j], t.classes[i, j]) == (target, mask, cls), (i, OBS[j], row.tolist())


# ---------------------------------------------------------------------------------------------
# Label smoothing


def smoothed(policy: Policy, n: int = 20_000, **kwargs: Any) -> np.ndarray:
    codes = np.full((n, len(OBS)), UNC, dtype=np.int8)
    return apply(policy, codes, **kwargs).targets


@pytest.mark.parametrize(("name", "bounds"), [("smooth-ones", (0.55, 0.85)), ("smooth-zeros", (0.0, 0.3))])
def test_smoothing_draws_fill_the_paper_range_uniformly(name, bounds):
    values = smoothed(Policy(uncertain=name), paths=paths_for(20_000))
    lo, hi = bounds
    assert values.min() >= lo and values.max() <= hi
    assert values.min() < lo + 0.001 and values.max() > hi - 0.001
    assert abs(values.mean() - (lo + hi) / 2) < 0.003
    # Uniform: each tenth of the range holds about a tenth of the draws.
    share = np.histogram(values, bins=10, range=(lo, hi))[0] / values.size
    assert np.abs(share - 0.1).max() < 0.01
    # Observations of one image are drawn independently.
    assert abs(np.corrcoef(values[:, 1], values[:, 2])[0, 1]) < 0.05


@pytest.mark.filterwarnings("ignore::chexpert.policy.RowKeyedDrawsWarning")
def test_smoothing_range_is_configurable():
    values = smoothed(Policy(uncertain="smooth-ones", smooth_ones=(0.7, 0.75)), n=2000)
    assert values.min() >= 0.7 and values.max() <= 0.75 and values.max() - values.min() > 0.045
    point = smoothed(Policy(uncertain="smooth-zeros", smooth_zeros=(0.1, 0.1)), n=10)
    assert np.allclose(point, 0.1)


def test_smoothing_is_deterministic_by_seed_and_per_image():
    paths = paths_for(500)
    policy = Policy(uncertain="smooth-ones", seed=3)
    first = smoothed(policy, n=500, paths=paths)
    assert np.array_equal(first, smoothed(policy, n=500, paths=paths))
    other = smoothed(dataclasses.replace(policy, seed=4), n=500, paths=paths)
    assert (first != other).mean() > 0.99
    # Per image: reordering or subsetting the rows keeps each image's draws.
    order = np.random.default_rng(0).permutation(500)[:120]
    assert np.array_equal(smoothed(policy, n=120, paths=paths[order]), first[order])
    # ... and the release prefix does not matter.
    full = paths_for(500, prefix="CheXpert-v1.0/")
    assert np.array_equal(smoothed(policy, n=500, paths=full), first)
    # Without paths the draws are keyed by row position, still deterministic, with a named warning.
    with pytest.warns(RowKeyedDrawsWarning, match="pass the Index itself"):
        by_position = smoothed(policy, n=500)
    with pytest.warns(RowKeyedDrawsWarning):
        assert np.array_equal(by_position, smoothed(policy, n=500))
    assert not np.array_equal(by_position, first)


def test_the_documented_form_keys_draws_by_image(small_release):
    # The README's form, apply_policy(policy, index): an image gets the same draws in any selection
    # and any order; index.labels (bare codes) would key them by row position, and warns.
    import chexpert

    train = chexpert.open(small_release).index("train")
    frontal = chexpert.select(train, views=["Frontal"])
    policy = Policy(uncertain="smooth-ones", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RowKeyedDrawsWarning)
        everything = chexpert.apply_policy(policy, train)
        documented = chexpert.apply_policy(policy, frontal)
        order = np.random.default_rng(0).permutation(len(frontal))
        shuffled = chexpert.apply_policy(policy, frontal.take(order))
    rows = np.flatnonzero(train.frontal)
    assert (frontal.labels == UNC).any()  # there are draws to compare
    np.testing.assert_array_equal(documented.targets, everything.targets[rows])
    np.testing.assert_array_equal(shuffled.targets, documented.targets[order])
    with pytest.warns(RowKeyedDrawsWarning):
        bare = chexpert.apply_policy(policy, frontal.labels)
    assert not np.array_equal(bare.targets, documented.targets)


@pytest.mark.filterwarnings("ignore::chexpert.policy.RowKeyedDrawsWarning")
def test_smoothing_leaves_known_labels_exact():
    codes = uniform_rows()
    for name in ("smooth-ones", "smooth-zeros"):
        t = apply(Policy(uncertain=name), codes)
        assert (t.targets[[0, 1, 3]] == np.array([[1.0], [0.0], [0.0]])).all()
        assert t.mask.all()


# ---------------------------------------------------------------------------------------------
# Per-observation mapping and the three-way encoding


def test_per_observation_mapping_with_default():
    policy = Policy(uncertain="zeros", per_observation={"Edema": "ones", "Cardiomegaly": "multiclass", "Fracture": "ignore"})
    t = apply(policy, uniform_rows())
    edema, cardio, fracture, lesion = (OBS.index(o) for o in ("Edema", "Cardiomegaly", "Fracture", "Lung Lesion"))
    unc = 2
    assert t.targets[unc, edema] == 1.0 and t.mask[unc, edema]
    assert t.targets[unc, lesion] == 0.0 and t.mask[unc, lesion]
    assert not t.mask[unc, fracture]
    assert t.multiclass.tolist() == [j == cardio for j in range(len(OBS))]
    assert t.classes is not None
    assert t.classes[:, cardio].tolist() == [1, 0, 2, 0]
    assert (np.delete(t.classes, cardio, axis=1) == IGNORE_CLASS).all()
    assert not t.mask[:, cardio].any()
    assert policy.uncertainty("Edema") == "ones" and policy.uncertainty("Pneumonia") == "zeros"
    # Stored canonically: the mapping's order does not matter and the Policy is hashable.
    same = Policy(uncertain="zeros", per_observation={"Fracture": "ignore", "Cardiomegaly": "multiclass", "Edema": "ones"})
    assert same == policy and hash(same) == hash(policy)


def test_observations_choose_and_order_columns():
    codes = np.array([[POS, NEG, UNC, BLANK, POS, NEG, UNC, BLANK, POS, NEG, UNC, BLANK, POS, NEG]], dtype=np.int8)
    t = apply(Policy(uncertain="ones", observations=("Pneumothorax", "Cardiomegaly", "No Finding")), codes)
    assert t.observations == ("Pneumothorax", "Cardiomegaly", "No Finding")
    assert t.targets.tolist() == [[0.0, 1.0, 1.0]]


# ---------------------------------------------------------------------------------------------
# No Finding


def row(**codes: int) -> np.ndarray:
    out = np.full(len(OBS), BLANK, dtype=np.int8)
    for name, code in codes.items():
        out[OBS.index(name.replace("_", " "))] = code
    return out


def derived(policy: Policy, *rows: np.ndarray) -> list[float]:
    t = apply(dataclasses.replace(policy, no_finding="derive"), np.stack(rows))
    assert t.mask[:, NF].all()
    return t.targets[:, NF].tolist()


@pytest.mark.filterwarnings("ignore::chexpert.policy.RowKeyedDrawsWarning")
def test_no_finding_derived_from_the_others_after_the_policy():
    rows = (
        row(),  # nothing mentioned
        row(Edema=POS),
        row(Support_Devices=POS),  # devices do not count
        row(No_Finding=POS, Edema=POS),  # the raw No Finding is overruled
        row(Edema=UNC),
        row(Edema=NEG, Fracture=NEG),
    )
    assert derived(Policy(uncertain="ones"), *rows) == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert derived(Policy(uncertain="zeros"), *rows) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert derived(Policy(uncertain="ignore"), *rows) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert derived(Policy(uncertain="smooth-ones"), *rows)[4] == 0.0  # draws >= 0.55 count as positive
    assert derived(Policy(uncertain="smooth-zeros"), *rows)[4] == 1.0
    assert derived(Policy(uncertain="multiclass"), *rows) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]  # uncertain class is not positive
    t = apply(Policy(uncertain="multiclass", no_finding="derive"), np.stack(rows))
    assert t.classes is not None
    assert not t.multiclass[NF] and (t.classes[:, NF] == IGNORE_CLASS).all()


def test_no_finding_negates_others_only_where_raw_no_finding_is_positive():
    codes = np.stack([row(No_Finding=POS, Edema=UNC, Support_Devices=POS), row(Edema=UNC, Support_Devices=POS)])
    policy = Policy(uncertain="ignore", blank="ignore", per_observation={"Cardiomegaly": "multiclass"}, no_finding="negates-others")
    t = apply(policy, codes)
    cardio = OBS.index("Cardiomegaly")
    binary_others = [j for j in range(len(OBS)) if j not in (NF, SD, cardio)]
    assert (t.targets[0, binary_others] == 0).all() and t.mask[0, binary_others].all()
    assert t.classes is not None
    assert t.classes[0, cardio] == 0 and not t.mask[0, cardio]
    assert t.targets[0, SD] == 1.0 and t.targets[0, NF] == 1.0
    # Row 1 is untouched: Edema uncertain and blanks stay masked.
    assert not t.mask[1, binary_others].any() and t.classes[1, cardio] == IGNORE_CLASS


def test_no_finding_drop_and_as_labelled():
    dropped = apply(Policy(no_finding="drop"), uniform_rows())
    assert dropped.observations == OBS[1:] and dropped.targets.shape == (4, 13)
    with pytest.raises(ValueError, match="'drop'.*No Finding"):
        Policy(no_finding="drop", observations=("No Finding", "Edema"))
    kept = apply(Policy(uncertain="ones"), uniform_rows())
    assert kept.targets[:, NF].tolist() == [1.0, 0.0, 1.0, 0.0]
    # derive without No Finding among the targets changes nothing.
    five = Policy(uncertain="ones", observations=schema.COMPETITION_TASKS)
    assert np.array_equal(apply(five, uniform_rows()).targets, apply(dataclasses.replace(five, no_finding="derive"), uniform_rows()).targets)


# ---------------------------------------------------------------------------------------------
# U-SelfTrained


def test_self_trained_looks_up_soft_labels_by_path():
    codes = np.stack([row(Consolidation=UNC), row(Consolidation=POS), row(Consolidation=UNC, Edema=UNC)])
    paths = paths_for(3)
    # Keys without the release prefix match too; row 1 (not uncertain) need not be in the table.
    table = pd.DataFrame({"Path": [str(paths[0]).split("/", 1)[1], str(paths[2])], "Consolidation": [0.2, 0.9], "Edema": [0.4, 0.7]})
    policy = Policy(uncertain="self-trained", observations=("Consolidation", "Edema"))
    t = apply(policy, codes, paths=paths, soft_labels=table)
    assert t.targets.tolist() == [[pytest.approx(0.2), 0.0], [1.0, 0.0], [pytest.approx(0.9), pytest.approx(0.7)]]
    assert t.mask.all()
    mapping = {str(paths[0]): {"Consolidation": 0.2, "Edema": 0.4}, str(paths[2]): {"Consolidation": 0.9, "Edema": 0.7}}
    assert np.array_equal(apply(policy, codes, paths=paths, soft_labels=mapping).targets, t.targets)
    indexed = table.set_index("Path")
    assert np.array_equal(apply(policy, codes, paths=paths, soft_labels=indexed).targets, t.targets)


def test_self_trained_errors_name_what_is_missing():
    codes = np.stack([row(Consolidation=UNC), row(Consolidation=UNC)])
    paths = paths_for(2)
    policy = Policy(uncertain="self-trained", observations=("Consolidation",))
    table = pd.DataFrame({"Path": [str(paths[0])], "Consolidation": [0.5]})
    with pytest.raises(ValueError, match="no row for Path 'train/patient00002/study1/view1_frontal.jpg'"):
        apply(policy, codes, paths=paths, soft_labels=table)
    with pytest.raises(ValueError, match="no column for 'Consolidation'"):
        apply(policy, codes, paths=paths, soft_labels=table.rename(columns={"Consolidation": "Edema"}))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        apply(policy, codes[:1], paths=paths[:1], soft_labels=table.assign(Consolidation=1.5))
    with pytest.raises(ValueError, match="must be in"):
        apply(policy, codes[:1], paths=paths[:1], soft_labels=table.assign(Consolidation=np.nan))
    with pytest.raises(ValueError, match="paths="):
        apply(policy, codes, soft_labels=table)
    with pytest.raises(ValueError, match="twice"):
        apply(policy, codes, paths=paths, soft_labels=pd.concat([table, table]))


# ---------------------------------------------------------------------------------------------
# Presets


def test_presets_resolve_and_unknown_names_list_valid_ones():
    for name, policy in PRESETS.items():
        assert get_policy(name) is policy
    custom = Policy(uncertain="ones")
    assert get_policy(custom) is custom
    with pytest.raises(ValueError, match="unknown policy preset 'u-twos'; valid: u-ignore, u-zeros"):
        get_policy("u-twos")


@pytest.mark.parametrize(
    ("preset", "uncertain_target", "uncertain_mask"),
    [("u-ignore", 0.0, False), ("u-zeros", 0.0, True), ("u-ones", 1.0, True)],
)
def test_simple_presets(preset, uncertain_target, uncertain_mask):
    t = apply(preset, uniform_rows())
    assert t.observations == OBS
    assert (t.targets[2] == uncertain_target).all() and (t.mask[2] == uncertain_mask).all()
    assert (t.targets[3] == 0).all() and t.mask[3].all()  # blanks negative, as the CheXpert paper trained


@pytest.mark.filterwarnings("ignore::chexpert.policy.RowKeyedDrawsWarning")
def test_lsr_presets_follow_pham_2019():
    ones, zeros = apply("u-ones-lsr", uniform_rows()), apply("u-zeros-lsr", uniform_rows())
    assert ((ones.targets[2] >= 0.55) & (ones.targets[2] <= 0.85)).all()
    assert ((zeros.targets[2] >= 0.0) & (zeros.targets[2] <= 0.3)).all()
    assert apply("u-multiclass", uniform_rows()).multiclass.all()


def test_chexpert_paper_best():
    with pytest.raises(ValueError, match="U-SelfTrained for Consolidation.*soft_labels"):
        apply("chexpert-paper-best", uniform_rows())
    paths = paths_for(4)
    t = apply("chexpert-paper-best", uniform_rows(), paths=paths, soft_labels=soft_table(paths, 0.3))
    assert t.observations == schema.COMPETITION_TASKS
    column = {o: i for i, o in enumerate(t.observations)}
    unc = 2
    assert t.targets[unc, column["Atelectasis"]] == 1.0 and t.targets[unc, column["Edema"]] == 1.0
    assert t.targets[unc, column["Consolidation"]] == pytest.approx(0.3)
    assert t.multiclass.tolist() == [o in ("Cardiomegaly", "Pleural Effusion") for o in t.observations]
    assert t.classes is not None
    assert t.classes[:, column["Cardiomegaly"]].tolist() == [1, 0, 2, 0]


def test_libauc_preset_matches_what_libauc_meant(real_train_csv, real):
    # LibAUC's datasets.CheXpert, with its chained in-place edits written so they take effect.
    frame = pd.read_csv(real_train_csv)
    t = apply("libauc", real)
    for j, column in enumerate(t.observations):
        expected = frame[column].replace(-1, 1 if column in ("Edema", "Atelectasis") else 0).fillna(0)
        assert np.array_equal(t.targets[:, j], expected.to_numpy(np.float32)), column
    assert t.mask.all()


def test_torchxrayvision_preset_matches_their_dataset(tmp_path, real_train_csv, real):
    xrv = pytest.importorskip("torchxrayvision")
    rng = np.random.default_rng(1)
    codes = rng.choice(np.array(CODES, dtype=np.int8), size=(300, len(OBS)))
    codes[:, NF] = rng.choice(np.array([POS, BLANK], dtype=np.int8), size=300)
    spell = {int(code): text for text, code in schema.LABEL_SPELLINGS.items()}
    lines = [",".join(schema.CSV_COLUMNS)]
    for i, labels in enumerate(codes):
        meta = [f"CheXpert-v1.0-small/train/patient{i + 1:05d}/study1/view1_frontal.jpg", "Female", "50", "Frontal", "AP"]
        lines.append(",".join(meta + [spell[int(c)] for c in labels]))
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    for source, index in ((csv, read_csv(csv)), (real_train_csv, real)):
        theirs = xrv.datasets.CheX_Dataset(imgpath=str(tmp_path), csvpath=str(source), views=["*"], unique_patients=False)
        ours = apply("torchxrayvision", index)
        assert [o.replace("Pleural Effusion", "Effusion") for o in ours.observations] == list(theirs.pathologies)
        assert np.array_equal(np.isnan(theirs.labels), ~ours.mask)
        assert np.array_equal(np.nan_to_num(theirs.labels, nan=0.0), ours.targets)


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uncertain": "twos"}, "unknown uncertainty policy 'twos'; valid: ignore, zeros, ones, multiclass"),
        ({"per_observation": {"Edema": "maybe"}}, "for 'Edema' 'maybe'; valid: ignore"),
        ({"per_observation": {"Oedema": "ones"}}, "unknown observation 'Oedema'; valid: No Finding"),
        ({"blank": "zero"}, "unknown blank policy 'zero'; valid: negative, ignore"),
        ({"no_finding": "derived"}, "unknown No Finding mode 'derived'; valid: " + ", ".join(NO_FINDING_MODES)),
        ({"observations": ("Edema", "Edema")}, "twice"),
        ({"observations": ()}, "empty"),
        ({"smooth_ones": (0.9, 0.5)}, "0 <= lo <= hi <= 1"),
        ({"smooth_zeros": (-0.1, 0.3)}, "0 <= lo <= hi <= 1"),
        ({"smooth_ones": 0.7}, "0 <= lo <= hi <= 1"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_policy_validates_up_front(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)


def test_apply_validates_labels():
    with pytest.raises(ValueError, match=r"\(N, 14\)"):
        apply("u-ones", np.zeros((3, 13), dtype=np.int8))
    bad = uniform_rows()
    bad[1, 5] = 2
    with pytest.raises(ValueError, match=r"labels\[1, 5\] \(Edema\) is 2; valid codes: 1 \(positive\)"):
        apply("u-ones", bad)
    with pytest.raises(ValueError, match="integer"):
        apply("u-ones", uniform_rows().astype(np.float32))
    with pytest.raises(ValueError, match="paths has shape"):
        apply("u-ones-lsr", uniform_rows(), paths=paths_for(3))


# ---------------------------------------------------------------------------------------------
# The real train.csv


def test_real_train_csv_under_u_ignore_with_blanks_ignored(real):
    t = apply(Policy(uncertain="ignore", blank="ignore"), real)
    for j, observation in enumerate(OBS):
        positive, uncertain, negative, blank = REAL_LABELS[observation]
        assert int((~t.mask[:, j]).sum()) == uncertain + blank, observation
        assert int((t.mask[:, j] & (t.targets[:, j] == 1)).sum()) == positive, observation
        assert int((t.mask[:, j] & (t.targets[:, j] == 0)).sum()) == negative, observation
    # Smoothing on the real file: exactly the uncertain entries leave {0, 1}.
    lsr = apply("u-ones-lsr", real)
    soft = (lsr.targets != 0) & (lsr.targets != 1)
    assert soft.sum(axis=0).tolist() == [REAL_LABELS[o][1] for o in OBS]


# ---------------------------------------------------------------------------------------------
# Soft labels from a CSV (U-SelfTrained), and positives under a policy


def test_soft_labels_from_a_csv(tmp_path):
    paths = paths_for(4)
    codes = uniform_rows()  # positive, negative, uncertain, blank
    soft = pd.DataFrame({"Path": [str(p).replace("-small", "") for p in paths], "Consolidation": [0.9, 0.8, 0.35, ""], "Edema": ["", "", "0.6", ""]})
    soft.to_csv(tmp_path / "soft.csv", index=False)
    table = read_soft_labels(tmp_path / "soft.csv")
    for source in (table, tmp_path / "soft.csv", str(tmp_path / "soft.csv")):
        t = apply("chexpert-paper-best", codes, paths=paths, soft_labels=source)
        consolidation = t.observations.index("Consolidation")
        assert t.targets[:, consolidation].tolist() == pytest.approx([1.0, 0.0, 0.35, 0.0])  # only the uncertain row is looked up
    assert PRESETS["chexpert-paper-best"].soft_label_observations == ("Consolidation",)
    assert PRESETS["u-ones"].soft_label_observations == ()
    soft.assign(Consolidation=["0.9", "high", "0.3", ""]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CSVFormatError, match=r"bad.csv, row 3: 'Consolidation' is not a number: 'high'"):
        read_soft_labels(tmp_path / "bad.csv")
    soft.drop(columns="Path").to_csv(tmp_path / "nopath.csv", index=False)
    with pytest.raises(CSVFormatError, match="need a Path column"):
        read_soft_labels(tmp_path / "nopath.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CSVFormatError, match="empty"):
        read_soft_labels(tmp_path / "empty.csv")
    with pytest.raises(CSVFormatError, match="not a folder"):
        read_soft_labels(tmp_path)


def test_positive_under_a_policy():
    codes = uniform_rows()
    ones = apply("u-ones", codes)
    assert ones.positive("Edema").ravel().tolist() == [True, False, True, False]
    ignore = apply("u-ignore", codes)
    assert ignore.positive(["Edema", "Fracture"]).tolist() == [[True, True], [False, False], [False, False], [False, False]]
    multiclass = apply("u-multiclass", codes)  # three-way: only the positive class is positive
    assert multiclass.positive("Edema").ravel().tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="among the policy's targets"):
        apply("libauc", codes).positive("Fracture")
