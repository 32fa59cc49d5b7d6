"""The numpy metrics against scikit-learn, hand-computed answers and direct O(n^2) formulas."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from chexpert.evaluate import metrics, operating
from chexpert.evaluate.metrics import UndefinedMetricWarning

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _random_case(rng: np.random.Generator, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(2, 80))
    scores = rng.integers(0, 6, n) / 5.0 if ties else rng.random(n)
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[rng.integers(n)] = True
    labels[rng.integers(n)] = False if labels.sum() > 1 else labels[0]
    return scores, labels


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_average_precision_equal_sklearn(ties):
    rng = np.random.default_rng(1 + ties)
    checked = 0
    for _ in range(120):
        scores, labels = _random_case(rng, ties)
        if labels.all() or not labels.any():
            continue
        checked += 1
        assert metrics.auroc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
        assert metrics.average_precision(scores, labels) == pytest.approx(sklearn_metrics.average_precision_score(labels, scores), abs=1e-12)
    assert checked > 80


def test_roc_and_pr_curves_equal_sklearn_with_ties():
    rng = np.random.default_rng(3)
    scores, labels = rng.integers(0, 8, 200) / 7.0, rng.random(200) < 0.3
    fp, tp, thresholds = metrics.roc_curve(scores, labels)
    fpr, tpr, sk_thresholds = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fp / fp[-1], fpr)
    np.testing.assert_allclose(tp / tp[-1], tpr)
    np.testing.assert_array_equal(thresholds[1:], sk_thresholds[1:])
    precision, recall, pr_thresholds = metrics.precision_recall_curve(scores, labels)
    sk_precision, sk_recall, sk_pr_thresholds = sklearn_metrics.precision_recall_curve(labels, scores)
    # sklearn lists thresholds ascending and appends the (recall 0, precision 1) end point.
    np.testing.assert_allclose(precision, sk_precision[:-1][::-1])
    np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
    np.testing.assert_array_equal(pr_thresholds, sk_pr_thresholds[::-1])


def test_known_answers_by_hand():
    # Positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert metrics.auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    # A tie between a positive and a negative counts one half: (1 + 0.5) / 2.
    assert metrics.auroc(np.array([0.2, 0.5, 0.5]), np.array([0, 0, 1])) == 0.75
    # Ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision 1 at recall 1/2, 2/3 at recall 1.
    assert metrics.average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # All scores tied: one threshold, precision = prevalence.
    assert metrics.average_precision(np.full(4, 0.5), np.array([1, 0, 0, 0])) == 0.25
    assert metrics.auroc(np.full(4, 0.5), np.array([1, 0, 0, 0])) == 0.5
    np.testing.assert_array_equal(metrics.midranks(np.array([3.0, 1.0, 3.0, 3.0, 0.0])), [4.0, 2.0, 4.0, 4.0, 1.0])


@pytest.mark.parametrize("labels", [np.zeros(5, bool), np.ones(5, bool)])
def test_one_class_gives_nan_and_a_named_warning(labels):
    scores = np.linspace(0, 1, 5)
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        assert math.isnan(metrics.auroc(scores, labels))
    with pytest.warns(UndefinedMetricWarning):
        aucs, covariance = metrics.delong(scores, labels)
    assert np.isnan(aucs).all() and np.isnan(covariance).all()
    if not labels.any():
        with pytest.warns(UndefinedMetricWarning, match="without positives"):
            assert math.isnan(metrics.average_precision(scores, labels))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert metrics.average_precision(scores, labels) == 1.0  # defined: every call is right


def test_bootstrap_counts_are_histograms_of_one_index_matrix():
    counts = metrics.bootstrap_counts(7, 50, seed=3)
    assert counts.shape == (7, 50) and counts.dtype == np.int32
    assert (counts.sum(axis=0) == 7).all()
    draws = np.random.default_rng(3).integers(0, 7, size=(50, 7))
    np.testing.assert_array_equal(counts, np.stack([np.bincount(row, minlength=7) for row in draws], axis=1))
    np.testing.assert_array_equal(counts, metrics.bootstrap_counts(7, 50, seed=3))
    assert not np.array_equal(counts, metrics.bootstrap_counts(7, 50, seed=4))


def _counts_before_blocks(n: int, resamples: int, seed: int) -> np.ndarray:
    """bootstrap_counts as it was before drawing in blocks (commit 90a5931): one (resamples, n) draw."""
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n), dtype=np.int64)
    draws += np.arange(resamples, dtype=np.int64)[:, None] * n
    counts = np.bincount(draws.ravel(), minlength=resamples * n).astype(np.int32).reshape(resamples, n)
    return np.ascontiguousarray(counts.T)


@pytest.mark.parametrize(("n", "resamples", "seed"), [(1, 3, 0), (2, 9, 1), (7, 50, 3), (333, 101, 8), (4_000, 17, 2)])
@pytest.mark.parametrize("block_bytes", [1, 8 * 333 * 3, None])
def test_bootstrap_blocks_draw_exactly_the_numbers_of_one_draw(n, resamples, seed, block_bytes):
    reference = _counts_before_blocks(n, resamples, seed)
    blocks = list(metrics.bootstrap_blocks(n, resamples, seed, block_bytes=block_bytes))
    assert [c.start for c, _ in blocks] == sorted({c.start for c, _ in blocks}) and blocks[-1][0].stop == resamples
    assert all(counts.dtype == np.int32 and counts.flags.c_contiguous for _, counts in blocks)
    # No block of a single resample unless there is only one: einsum would sum AP in another order.
    assert all(c.stop - c.start >= 2 for c, _ in blocks) or resamples == 1
    np.testing.assert_array_equal(np.hstack([counts for _, counts in blocks]), reference)
    np.testing.assert_array_equal(metrics.bootstrap_counts(n, resamples, seed), reference)


def test_bootstrap_blocks_bound_memory():
    import tracemalloc

    n, resamples = 50_000, 400
    scores, labels = np.random.default_rng(0).random(n), np.random.default_rng(1).random(n) < 0.2
    task = metrics.SortedScores(scores, labels)
    tracemalloc.start()
    try:
        for _, counts in metrics.bootstrap_blocks(n, resamples, seed=0, block_bytes=2**20):
            task.bootstrap_auroc(counts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One (resamples, n) draw would hold 160 MB of int64 draws, and as much again for their histogram.
    assert peak < 16 * 2**20, peak


def test_scores_of_blocks_are_bit_identical_to_one_matrix():
    rng = np.random.default_rng(4)
    n = 300
    scores, labels = np.round(rng.random(n), 2), rng.random(n) < 0.1
    reference = _counts_before_blocks(n, 203, 5)
    expected_auroc = metrics.bootstrap_auroc(scores, labels, reference)
    expected_ap = metrics.bootstrap_average_precision(scores, labels, reference)
    task = metrics.SortedScores(scores, labels)
    for block_bytes in (1, 8 * n * 3, 8 * n * 200):
        auroc, ap = np.full(203, np.nan), np.full(203, np.nan)
        for columns, counts in metrics.bootstrap_blocks(n, 203, 5, block_bytes=block_bytes):
            auroc[columns], ap[columns] = task.bootstrap_auroc(counts), task.bootstrap_average_precision(counts)
        assert auroc.tobytes() == expected_auroc.tobytes() and ap.tobytes() == expected_ap.tobytes(), block_bytes


@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_metrics_equal_sklearn_on_each_resample(ties):
    rng = np.random.default_rng(10 + ties)
    n = 40
    scores = rng.integers(0, 5, n) / 4.0 if ties else rng.random(n)
    labels = rng.random(n) < 0.25
    counts = metrics.bootstrap_counts(n, 120, seed=0)
    aurocs = metrics.bootstrap_auroc(scores, labels, counts)
    aps = metrics.bootstrap_average_precision(scores, labels, counts)
    one_class = 0
    for b in range(counts.shape[1]):
        rows = np.repeat(np.arange(n), counts[:, b])
        y, s = labels[rows], scores[rows]
        if y.all() or not y.any():
            one_class += 1
            assert math.isnan(aurocs[b])
            continue
        assert aurocs[b] == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)
        assert aps[b] == pytest.approx(sklearn_metrics.average_precision_score(y, s), abs=1e-12)
    assert one_class < 5


def test_bootstrap_auroc_is_exact_for_a_resample_of_the_identity():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(500), rng.random(500) < 0.3
    ones = np.ones((500, 1), np.int32)
    assert metrics.bootstrap_auroc(scores, labels, ones)[0] == metrics.auroc(scores, labels)


def test_percentile_interval_ignores_undefined_resamples():
    values = np.r_[np.arange(101.0), np.nan, np.nan]
    np.testing.assert_allclose(metrics.percentile_interval(values, 0.9), [5.0, 95.0])
    assert np.isnan(metrics.percentile_interval(np.full(4, np.nan))).all()
    assert np.isnan(metrics.percentile_interval(np.empty(0))).all()


def _direct_components(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components by their definition: every positive against every negative."""
    positives, negatives = scores[labels], scores[~labels]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


@pytest.mark.parametrize("ties", [False, True])
def test_delong_components_equal_the_direct_quadratic_computation(ties):
    rng = np.random.default_rng(20 + ties)
    for _ in range(50):
        n = int(rng.integers(4, 60))
        labels = np.arange(n) % 3 == 0
        rng.shuffle(labels)
        two = rng.integers(0, 4, (2, n)) / 3.0 if ties else rng.random((2, n))
        v10, v01 = metrics.delong_components(two, labels)
        for r in range(2):
            direct10, direct01 = _direct_components(two[r], labels)
            np.testing.assert_allclose(v10[r], direct10, atol=1e-12)
            np.testing.assert_allclose(v01[r], direct01, atol=1e-12)
        aucs, covariance = metrics.delong(two, labels)
        d10 = np.stack([_direct_components(two[r], labels)[0] for r in range(2)])
        d01 = np.stack([_direct_components(two[r], labels)[1] for r in range(2)])
        expected = np.cov(d10) / labels.sum() + np.cov(d01) / (~labels).sum()
        np.testing.assert_allclose(covariance, expected, atol=1e-14)
        np.testing.assert_allclose(aucs, [sklearn_metrics.roc_auc_score(labels, s) for s in two], atol=1e-12)


def test_delong_variance_matches_bootstrap_variance_on_a_large_case():
    rng = np.random.default_rng(5)
    n = 1500
    labels = rng.random(n) < 0.3
    first = rng.normal(size=n) + 1.2 * labels
    second = first + rng.normal(scale=1.0, size=n)
    _, covariance = metrics.delong(np.vstack([first, second]), labels)
    counts = metrics.bootstrap_counts(n, 2000, seed=1)
    boot = np.vstack([metrics.bootstrap_auroc(first, labels, counts), metrics.bootstrap_auroc(second, labels, counts)])
    np.testing.assert_allclose(np.diag(covariance), boot.var(axis=1), rtol=0.12)
    np.testing.assert_allclose(covariance[0, 1], np.cov(boot)[0, 1], rtol=0.15)
    difference_variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    assert difference_variance == pytest.approx((boot[0] - boot[1]).var(), rel=0.12)


def test_delong_test_of_a_model_against_itself_and_against_noise():
    rng = np.random.default_rng(6)
    labels = rng.random(300) < 0.4
    good = rng.normal(size=300) + 2.0 * labels
    same = metrics.delong_test(good, good, labels)
    assert same["difference"] == 0.0 and same["z"] == 0.0 and same["p_value"] == 1.0
    noise = rng.normal(size=300)
    versus = metrics.delong_test(good, noise, labels)
    assert versus["difference"] > 0.3 and versus["p_value"] < 1e-6 and versus["lo"] > 0
    aucs, covariance = metrics.delong(np.vstack([good, noise]), labels)
    standard_error = math.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    assert versus["difference"] == pytest.approx(aucs[0] - aucs[1])
    assert versus["z"] == pytest.approx((aucs[0] - aucs[1]) / standard_error)
    assert versus["p_value"] == pytest.approx(math.erfc(abs(versus["z"]) / math.sqrt(2)))
    assert versus["hi"] - versus["lo"] == pytest.approx(2 * 1.959963984540054 * standard_error)
    lo, hi = metrics.delong_interval(good, labels)
    assert lo < metrics.auroc(good, labels) < hi


def test_delong_interval_by_hand():
    # Positives 0.35, 0.8, 0.9; negatives 0.1, 0.4, 0.3: V10 = (2/3, 1, 1), V01 = (1, 2/3, 1).
    # Each has sample variance 1/27; variance = 1/27/3 + 1/27/3 = 2/81.
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9]), np.array([0, 0, 1, 1, 0, 1])
    aucs, covariance = metrics.delong(scores, labels)
    assert aucs[0] == pytest.approx(8 / 9) and covariance[0, 0] == pytest.approx(2 / 81)
    lo, hi = metrics.delong_interval(scores, labels, level=0.95)
    assert lo == pytest.approx(8 / 9 - 1.959963984540054 * math.sqrt(2 / 81)) and hi == 1.0


# Operating points: the curve is read at a radiologist's false-positive rate, ties diagonal.


def test_radiologist_on_a_vertical_step_is_compared_with_its_top():
    scores, labels = np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 1, 0, 0])  # vertices (0,0) (0,1) (0,2) (1,2) (2,2)
    assert operating.curve_sensitivity(scores, labels, 0, 2) == (1.0, True)
    assert operating.curve_sensitivity(scores, labels, 0, 1) == (1.0, True)


def test_radiologist_across_a_run_of_ties_is_interpolated_exactly():
    # One positive and two negatives tied at 0.5 draw a diagonal from (0, 1/2) to (1, 1) in rates.
    scores, labels = np.array([0.9, 0.5, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0, 0])
    sensitivity, under = operating.curve_sensitivity(scores, labels, false_positives=1, true_positives=2)
    # At 1 of 3 false positives the diagonal from (0 FP, 1 TP) to (2 FP, 2 TP) is at 1.5 TP: 0.75.
    assert sensitivity == 0.75 and under is False
    assert operating.curve_sensitivity(scores, labels, false_positives=2, true_positives=2) == (1.0, True)
    # Two positives and two negatives tied: the diagonal from (0, 0) to (2, 2) passes through (1, 1) exactly.
    tied, y = np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 1, 0, 0])
    assert operating.curve_sensitivity(tied, y, false_positives=1, true_positives=1) == (0.5, True)  # on the curve: under
    assert operating.curve_sensitivity(tied, y, false_positives=1, true_positives=2) == (0.5, False)
    point = operating.reader_point(np.array([1, 0, 1, 0, 0]), labels, scores)
    assert (point["tp"], point["fp"], point["sensitivity"], point["specificity"]) == (1, 1, 0.5, 2 / 3)
    assert point["curve_sensitivity"] == 0.75 and point["under_curve"] is True


def test_thresholds_reach_their_targets_with_the_best_other_rate():
    rng = np.random.default_rng(8)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.normal(size=200) + labels, 1)
    positives, negatives = labels.sum(), (~labels).sum()
    candidates = np.unique(scores)
    sens = np.array([(scores[labels] >= t).mean() for t in candidates])
    spec = np.array([(scores[~labels] < t).mean() for t in candidates])
    point = operating.threshold(scores, labels, sensitivity=0.9)
    assert point["sensitivity"] >= 0.9 and point["specificity"] == spec[sens >= 0.9].max()
    assert point["tp"] == (scores[labels] >= point["threshold"]).sum() and point["tp"] + point["fn"] == positives
    point = operating.threshold(scores, labels, specificity=0.8)
    assert point["specificity"] >= 0.8 and point["sensitivity"] == sens[spec >= 0.8].max()
    assert point["tn"] == (scores[~labels] < point["threshold"]).sum() and point["tn"] + point["fp"] == negatives
    point = operating.threshold(scores, labels, youden=True)
    assert point["sensitivity"] + point["specificity"] == pytest.approx((sens + spec).max())
    with pytest.raises(ValueError, match="exactly one"):
        operating.threshold(scores, labels, sensitivity=0.9, youden=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        operating.threshold(scores, labels, specificity=1.5)
