"""The numpy anomaly evaluators equal scikit-learn's ``score_samples``; the per-key bundle
scores in [0, 1] and survives a bytes round trip; HalfSpaceTrees state restores exactly."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from river.anomaly import HalfSpaceTrees
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from models.anomaly_fitted import (
    DETECTOR_NAMES,
    FORMAT_VERSION,
    IFOREST_N_ESTIMATORS,
    LOF_N_NEIGHBORS,
    SVM_NU,
    FittedDetectors,
    FittedForest,
    FittedLOF,
    FittedSVM,
    fit_detectors,
    hst_state,
    restore_hst,
    scores_many,
)

ATOL = 1e-9
HST_FEATURES = ("cpu", "mem", "net_in", "net_out")


def training_rows(n_features: int, seed: int = 0, n_rows: int = 256) -> np.ndarray:
    """Correlated rows, like standardised host telemetry."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    return rng.normal(size=(n_rows, n_features)) @ (np.eye(n_features) + 0.5 * mixing)


def query_rows(n_features: int, seed: int = 1) -> np.ndarray:
    """Training-like rows, rows far outside the training range and single-axis spikes."""
    rng = np.random.default_rng(seed)
    inside = rng.normal(size=(40, n_features))
    outside = rng.normal(size=(20, n_features)) * 8 + 5
    spikes = np.eye(n_features) * 50
    return np.vstack([inside, outside, spikes, -spikes])


def assert_scores_equal(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ATOL)


# The evaluators equal scikit-learn --------------------------------------------------


@pytest.mark.parametrize("n_features", [1, 3, 8])
def test_forest_equals_sklearn(n_features: int) -> None:
    X = training_rows(n_features)
    model = IsolationForest(n_estimators=50, max_samples=64, random_state=3).fit(X)
    forest = FittedForest.from_sklearn(model)
    for rows in (query_rows(n_features), X, X[:1]):
        assert_scores_equal(forest.score_samples(rows), model.score_samples(rows))


@pytest.mark.parametrize("n_features", [3, 8])
def test_forest_with_feature_subsets_and_nan_equals_sklearn(n_features: int) -> None:
    X = training_rows(n_features, seed=2)
    model = IsolationForest(n_estimators=30, max_features=0.5, random_state=0).fit(X)
    rows = query_rows(n_features)
    rows[::3, 0] = np.nan
    rows[1::4, -1] = np.nan
    forest = FittedForest.from_sklearn(model)
    assert_scores_equal(forest.score_samples(rows), model.score_samples(rows))


@pytest.mark.parametrize("n_features", [1, 3, 8])
@pytest.mark.parametrize("gamma", ["scale", "auto", 0.3])
def test_svm_equals_sklearn(n_features: int, gamma: str | float) -> None:
    X = training_rows(n_features, seed=4)
    model = OneClassSVM(kernel="rbf", nu=0.05, gamma=gamma).fit(X)
    svm = FittedSVM.from_sklearn(model)
    for rows in (query_rows(n_features), X[:1]):
        assert_scores_equal(svm.score_samples(rows), model.score_samples(rows))


@pytest.mark.parametrize("n_features", [1, 3, 8])
@pytest.mark.parametrize("n_neighbors", [5, 20])
def test_lof_equals_sklearn(n_features: int, n_neighbors: int) -> None:
    X = training_rows(n_features, seed=5)
    model = LocalOutlierFactor(n_neighbors=n_neighbors, novelty=True).fit(X)
    lof = FittedLOF.from_sklearn(model)
    for rows in (query_rows(n_features), X[:1]):
        assert_scores_equal(lof.score_samples(rows), model.score_samples(rows))


def test_lof_with_more_neighbors_than_other_rows_equals_sklearn() -> None:
    X = training_rows(2, seed=6, n_rows=12)
    with pytest.warns(UserWarning, match="n_neighbors"):
        model = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(X)  # k becomes 11
    rows = query_rows(2)
    assert_scores_equal(
        FittedLOF.from_sklearn(model).score_samples(rows), model.score_samples(rows)
    )


def test_unsupported_models_are_refused() -> None:
    X = training_rows(2)
    with pytest.raises(ValueError, match="rbf"):
        FittedSVM.from_sklearn(OneClassSVM(kernel="linear").fit(X))
    with pytest.raises(ValueError, match="novelty=True"):
        FittedLOF.from_sklearn(LocalOutlierFactor(n_neighbors=5).fit(X))
    with pytest.raises(ValueError, match="euclidean"):
        FittedLOF.from_sklearn(LocalOutlierFactor(novelty=True, metric="manhattan").fit(X))


@pytest.mark.parametrize("n_features", [1, 3, 8])
def test_fit_detectors_uses_the_documented_settings(n_features: int) -> None:
    X = training_rows(n_features, seed=7)
    detectors = fit_detectors(X, seed=11)
    z = ((X - detectors.center) / detectors.scale).astype(np.float32).astype(np.float64)
    rows = (query_rows(n_features) - detectors.center) / detectors.scale
    forest = IsolationForest(n_estimators=IFOREST_N_ESTIMATORS, max_samples=64, random_state=11)
    svm = OneClassSVM(kernel="rbf", nu=SVM_NU, gamma="scale")
    lof = LocalOutlierFactor(n_neighbors=LOF_N_NEIGHBORS, novelty=True)
    pairs = ((detectors.forest, forest), (detectors.svm, svm), (detectors.lof, lof))
    for ours, model in pairs:
        assert_scores_equal(ours.score_samples(rows), model.fit(z).score_samples(rows))


# Fitting and scoring the per-key bundle ---------------------------------------------


@pytest.mark.parametrize("n_features", [1, 3, 8])
def test_scores_are_fractions_and_separate_outliers(n_features: int) -> None:
    rows = training_rows(n_features, seed=8, n_rows=456)
    detectors = fit_detectors(rows[:256], seed=0)
    fresh = rows[256:]  # same distribution, unseen
    outlier = np.full((1, n_features), 12.0)
    fresh_scores, outlier_scores = detectors.scores(fresh), detectors.scores(outlier)
    assert set(fresh_scores) == set(DETECTOR_NAMES)
    for name in DETECTOR_NAMES:
        scores = fresh_scores[name]
        assert scores.shape == (200,)
        assert ((scores >= 0) & (scores <= 1)).all(), name
        assert outlier_scores[name][0] > 0.95, name
        assert scores.mean() < 0.65, name  # about 0.5: unseen rows like the training rows


def test_constant_columns_fit_and_score() -> None:
    rng = np.random.default_rng(10)
    X = np.column_stack([rng.normal(size=128), np.full(128, 3.0), rng.normal(size=128)])
    X[::40, 1] = 4.0  # a mostly constant column with rare spikes: IQR 0, std > 0
    X_flat = np.column_stack([X[:, 0], np.full(128, 3.0), X[:, 2]])
    for data in (X, X_flat):
        detectors = fit_detectors(data)
        assert np.isfinite(detectors.scale).all() and (detectors.scale > 0).all()
        rows = np.vstack([data[:5], [[0.0, 3.0, 0.0], [0.0, 9.0, 0.0]]])
        for name, scores in detectors.scores(rows).items():
            assert ((scores >= 0) & (scores <= 1)).all(), name
    assert fit_detectors(X_flat).scale[1] == 1.0
    assert fit_detectors(X).scale[1] == pytest.approx(X[:, 1].std())


def test_all_constant_rows_fit_and_score() -> None:
    detectors = fit_detectors(np.full((64, 2), 5.0))
    scores = detectors.scores(np.array([[5.0, 5.0], [6.0, 5.0]]))
    for name in DETECTOR_NAMES:
        assert ((scores[name] >= 0) & (scores[name] <= 1)).all(), name
        assert scores[name][0] == 0.5, name  # in the middle of the all-tied training scores
    assert scores["one_class_svm"][1] == 1.0
    assert scores["local_outlier_factor"][1] == 1.0


def test_fitting_is_deterministic_for_a_seed() -> None:
    X = training_rows(3, seed=12)
    first, again, other = fit_detectors(X, seed=5), fit_detectors(X, seed=5), fit_detectors(X, 6)
    for name, values in first.to_arrays().items():
        np.testing.assert_array_equal(values, again.to_arrays()[name], err_msg=name)
    assert not np.array_equal(first.forest.threshold, other.forest.threshold)


def test_bad_input_is_refused() -> None:
    detectors = fit_detectors(training_rows(3, seed=13, n_rows=64))
    with pytest.raises(ValueError, match="shape"):
        detectors.scores(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        detectors.scores(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        detectors.scores(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_detectors(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        fit_detectors(np.array([[0.0, np.inf], [1.0, 2.0]]))


# Serialisation ------------------------------------------------------------------------


def test_bytes_round_trip_gives_identical_scores() -> None:
    detectors = fit_detectors(training_rows(3, seed=14), seed=2)
    blob = detectors.to_bytes()
    assert len(blob) < 24_000  # about 18 KB for 256 rows x 3 features
    restored = FittedDetectors.from_bytes(blob)
    rows = query_rows(3)
    expected, got = detectors.scores(rows), restored.scores(rows)
    for name in DETECTOR_NAMES:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(restored.forest.threshold, detectors.forest.threshold)


def test_other_versions_and_foreign_blobs_are_refused() -> None:
    blob = fit_detectors(training_rows(2, seed=15, n_rows=64)).to_bytes()
    newer = blob[:4] + struct.pack("<H", FORMAT_VERSION + 1) + blob[6:]
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        FittedDetectors.from_bytes(newer)
    with pytest.raises(ValueError, match="not a detector blob"):
        FittedDetectors.from_bytes(b"PK\x03\x04" + blob[4:])
    with pytest.raises(ValueError, match="too short"):
        FittedDetectors.from_bytes(b"")


def test_corrupt_blobs_raise_value_error() -> None:
    blob = fit_detectors(training_rows(2, seed=16, n_rows=64)).to_bytes()
    rng = np.random.default_rng(0)
    damaged = [blob[:n] for n in (6, 40, len(blob) // 2, len(blob) - 1)]
    for _ in range(30):
        at = int(rng.integers(60, len(blob) - 200))
        damaged.append(blob[:at] + rng.bytes(16) + blob[at + 16 :])
    for bad in damaged:
        with pytest.raises(ValueError, match="anomaly detectors"):
            FittedDetectors.from_bytes(bad)


def test_inconsistent_forest_arrays_are_refused() -> None:
    arrays = fit_detectors(training_rows(2, seed=17, n_rows=64)).forest.to_arrays()
    sizes = arrays["tree_sizes"].copy()
    sizes[0] += 1
    sizes[1] -= 1
    with pytest.raises(ValueError, match="isolation forest"):
        FittedForest.from_arrays({**arrays, "tree_sizes": sizes})
    with pytest.raises(ValueError, match="isolation forest"):
        FittedForest.from_arrays({**arrays, "threshold": arrays["threshold"][:-1]})


# River HalfSpaceTrees state -------------------------------------------------------------


def hst_rows(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{f: rng.random() for f in HST_FEATURES} for _ in range(n)]


def new_hst(seed: int = 42) -> HalfSpaceTrees:
    return HalfSpaceTrees(n_trees=5, height=6, window_size=50, seed=seed)


@pytest.mark.parametrize("n_learned", [0, 20, 137])  # none, inside the first window, later
def test_hst_round_trip_scores_identically(n_learned: int) -> None:
    original = new_hst()
    for x in hst_rows(n_learned, seed=1):
        original.learn_one(x)
    restored = new_hst()
    restore_hst(restored, list(HST_FEATURES), hst_state(original))
    assert (restored.counter, restored._first_window) == (original.counter, original._first_window)
    for x in hst_rows(120, seed=2):  # crosses at least two window pivots
        assert restored.score_one(x) == original.score_one(x)
        original.learn_one(x)
        restored.learn_one(x)
    assert hst_state(restored) == hst_state(original)


def test_hst_state_is_compact() -> None:
    model = HalfSpaceTrees(seed=1)  # River's defaults: 10 trees of height 8
    for x in hst_rows(300, seed=3):
        model.learn_one(x)
    assert len(hst_state(model)) < 8_000  # 5110 nodes, 40 KB of raw uint32 masses


def test_hst_state_refuses_other_trees_and_corruption() -> None:
    original = new_hst()
    for x in hst_rows(60, seed=4):
        original.learn_one(x)
    state = hst_state(original)
    with pytest.raises(ValueError, match="does not match"):
        restore_hst(new_hst(seed=7), list(HST_FEATURES), state)
    with pytest.raises(ValueError, match="does not match"):
        restore_hst(new_hst(), ["cpu", "mem"], state)
    with pytest.raises(ValueError, match="window_size=50"):
        restore_hst(HalfSpaceTrees(n_trees=5, height=6, window_size=40, seed=42), [], state)
    with pytest.raises(ValueError, match="corrupt"):
        restore_hst(new_hst(), list(HST_FEATURES), state[:-5])
    with pytest.raises(ValueError, match="not a HalfSpaceTrees state"):
        restore_hst(new_hst(), list(HST_FEATURES), b"XXXX" + state[4:])
    with pytest.raises(ValueError, match="format version 99"):
        restore_hst(new_hst(), list(HST_FEATURES), state[:4] + struct.pack("<H", 99) + state[6:])
    with pytest.raises(ValueError, match="feature names"):
        restore_hst(new_hst(), [], state)


# -- many keys at once ----------------------------------------------------------------


def test_many_fits_at_once_score_as_each_fit_and_independently_of_the_others() -> None:
    """The worker scores a batch's rows of every key's fit in one call: each row equals its
    own fit's ``scores`` and does not depend on the rows and fits beside it (fits of
    other sizes, a young key's first fit on 127 rows among them)."""
    fits = [
        fit_detectors(training_rows(4, seed=s, n_rows=n), seed=s)
        for s, n in ((0, 256), (1, 127), (2, 256), (3, 40))
    ]
    rng = np.random.default_rng(9)
    x = np.vstack([query_rows(4, seed=s) for s in range(4)])
    key = rng.integers(0, len(fits), len(x))
    together = scores_many(fits, x, key)
    for i in range(len(x)):
        alone = scores_many([fits[key[i]]], x[i : i + 1], np.zeros(1, dtype=np.intp))
        assert np.array_equal(together[i], alone[0])
    for k, fit in enumerate(fits):
        rows = key == k
        own = fit.scores(x[rows])
        for d, name in enumerate(DETECTOR_NAMES):
            np.testing.assert_allclose(together[rows, d], own[name], rtol=0, atol=ATOL)
    assert together.min() >= 0.0 and together.max() <= 1.0 and together.std() > 0.05
