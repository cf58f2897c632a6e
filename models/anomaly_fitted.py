"""Per-key anomaly detectors: fitted by scikit-learn, scored by compact numpy evaluators.

The worker scores each host/link key's telemetry against detectors fitted on that key's
recent history. scikit-learn fits them (off the hot path), but its ``score_samples``
costs milliseconds per call (input validation, joblib), so scoring uses the evaluators
here instead. Each reproduces scikit-learn 1.9's ``score_samples`` of the model it was
built from (tests hold them equal to 1e-9), imports nothing but numpy, and serialises
to a few KB so the fitted state can be kept in Redis:

- :class:`FittedForest` is an ``IsolationForest`` (all trees traversed at once),
- :class:`FittedSVM` an rbf ``OneClassSVM``,
- :class:`FittedLOF` a ``LocalOutlierFactor(novelty=True)`` (brute-force neighbours).

:func:`fit_detectors` fits the three on robustly scaled columns with fixed settings and
keeps each detector's training score quantiles, so :meth:`FittedDetectors.scores` gives
comparable values in [0, 1]; :meth:`FittedDetectors.to_bytes` and
:meth:`FittedDetectors.from_bytes` carry it to and from Redis.

:func:`hst_state` and :func:`restore_hst` do the same for River's ``HalfSpaceTrees``,
whose learned state is only its node masses and window counters.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from river.anomaly import HalfSpaceTrees
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.svm import OneClassSVM

__all__ = [
    "DETECTOR_NAMES",
    "FORMAT_VERSION",
    "HST_FORMAT_VERSION",
    "IFOREST_MAX_SAMPLES",
    "IFOREST_N_ESTIMATORS",
    "LOF_N_NEIGHBORS",
    "N_QUANTILES",
    "SCALE_FLOOR",
    "SVM_NU",
    "FittedDetectors",
    "FittedForest",
    "FittedLOF",
    "FittedSVM",
    "fit_detectors",
    "HstShape",
    "hst_fingerprint",
    "hst_state",
    "pack_hst_state",
    "restore_hst",
    "robust_scaling",
]

DETECTOR_NAMES: tuple[str, str, str] = (
    "isolation_forest",
    "one_class_svm",
    "local_outlier_factor",
)
"""Keys of :meth:`FittedDetectors.scores`, in the order the detectors are stored."""

FORMAT_VERSION = 2
"""Version of the :meth:`FittedDetectors.to_bytes` layout; other versions are refused."""

HST_FORMAT_VERSION = 1
"""Version of the :func:`hst_state` layout; other versions are refused."""

IFOREST_N_ESTIMATORS = 25
"""Trees per isolation forest: enough for stable scores on 64-512 rows, cheap to walk."""

IFOREST_MAX_SAMPLES = 64
"""Rows per isolation tree (capped at the row count); trees are at most 6 splits deep."""

SVM_NU = 0.05
"""One-class SVM ``nu``: about 5% of the training rows may fall outside the boundary."""

LOF_N_NEIGHBORS = 20
"""LOF neighbourhood size (capped at rows - 1), scikit-learn's default."""

N_QUANTILES = 33
"""Training anomaly scores are kept as this many evenly spaced quantiles (0%, 3.125%, ...)."""

SCALE_FLOOR = 1e-6
"""Column spreads (IQR, then standard deviation) under this count as zero; see
:func:`robust_scaling`. Absolute, since the features come in already standardised."""

_MAGIC = b"NCAD"
_HEADER = struct.Struct("<4sH")
_HST_MAGIC = b"NCHS"
_HST_HEADER = struct.Struct("<4sHIIIIBII")
_LOF_EPS = 1e-10  # scikit-learn's guard against 1/0 when duplicates outnumber k


def _frozen(values: Any, dtype: Any) -> np.ndarray:
    """A C-contiguous, read-only copy of ``values`` as ``dtype`` (the dataclasses' arrays)."""
    out = np.array(values, dtype=dtype, order="C", copy=True)
    out.setflags(write=False)
    return out


def _compact_floats(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 when that loses nothing (half the bytes), else float64."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow, values) else values


def _as_rows(X: Any, n_features: int, dtype: Any = np.float64) -> np.ndarray:
    """``X`` as a 2-D (rows, ``n_features``) array of ``dtype``, or ValueError."""
    out = np.asarray(X, dtype=dtype)
    if out.ndim != 2 or out.shape[1] != n_features:
        msg = f"expected an array of shape (n_rows, {n_features}), got shape {out.shape}"
        raise ValueError(msg)
    return out


def _average_path_length(n_samples: np.ndarray) -> np.ndarray:
    """Mean path length of an unsuccessful BST search among ``n_samples`` points.

    The same arithmetic as ``sklearn.ensemble._iforest._average_path_length`` (so the
    same bits): 0 for n <= 1, 1 for n == 2, else 2 (ln(n - 1) + gamma) - 2 (n - 1) / n.
    """
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _round_down_to_float32(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value.

    scikit-learn compares float32 inputs with float64 thresholds; for a float32 ``x``,
    ``x <= t`` exactly when ``x <= _round_down_to_float32(t)``, so thresholds can be
    stored and compared in float32 without changing a single decision.
    """
    t = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = t.astype(np.float32)
    above = out.astype(np.float64) > t
    out[above] = np.nextafter(out[above], np.float32(-np.inf))
    return out


def _squared_distances(x: np.ndarray, points_t: np.ndarray) -> np.ndarray:
    """Squared euclidean distances (rows of ``x``, columns of ``points_t``).

    ``points_t`` is the points transposed (features, points). Summed one feature at a
    time, as libsvm and scikit-learn's neighbour trees do, so the same bits as theirs.
    """
    total = np.square(x[:, 0, None] - points_t[0])
    for j in range(1, points_t.shape[0]):
        total += np.square(x[:, j, None] - points_t[j])
    return total


def _running_total(values: np.ndarray) -> np.ndarray:
    """Row sums of a 2-D array added left to right (the order of a C loop)."""
    return np.cumsum(values, axis=1)[:, -1]


# Isolation forest --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _ForestPlan:
    """Traversal arrays of all trees concatenated; derived from a :class:`FittedForest`.

    Indexed by slot ``2 * node`` (each array has two entries per node), which saves the
    doubling at every step of the walk: the node in slot ``s`` tests
    ``x[feature[s]] > threshold[s]`` (a NaN goes right where ``nan_right[s]``) and moves
    to slot ``children[s + went_right]``. Leaves lead to themselves, so ``n_steps`` steps
    from ``roots`` end every tree on its leaf, whose ``leaf_value`` (depth + average path
    length of its training samples - 1) is summed over the trees.
    """

    feature: np.ndarray
    threshold: np.ndarray
    nan_right: np.ndarray
    children: np.ndarray
    leaf_value: np.ndarray
    roots: np.ndarray
    n_steps: int
    denominator: float


def _preorder(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Node ids of one scikit-learn tree in pre-order (node, left subtree, right subtree)."""
    order: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] != -1:
            stack.append(int(right[node]))
            stack.append(int(left[node]))
    return np.asarray(order, dtype=np.intp)


def _check_preorder(is_leaf: np.ndarray, tree_sizes: np.ndarray) -> np.ndarray:
    """Running balance (+1 per leaf, -1 per split) of pre-ordered trees; ValueError if
    the leaf flags do not spell whole binary trees of the given sizes."""
    if tree_sizes.size == 0 or (tree_sizes < 1).any() or tree_sizes.sum() != is_leaf.size:
        msg = "isolation forest: tree sizes do not match the node count"
        raise ValueError(msg)
    balance = np.cumsum(np.where(is_leaf, 1, -1))
    ends = np.cumsum(tree_sizes) - 1
    before = np.concatenate(([0], balance[ends[:-1]]))
    relative = balance - np.repeat(before, tree_sizes)
    closes = np.zeros(is_leaf.size, dtype=bool)
    closes[ends] = True
    if (relative[ends] != 1).any() or (relative[~closes] > 0).any():
        msg = "isolation forest: node flags are not a pre-order of whole binary trees"
        raise ValueError(msg)
    return balance


def _right_children(is_leaf: np.ndarray, balance: np.ndarray) -> np.ndarray:
    """Right child of every split node of valid pre-ordered trees (its left is ``i + 1``).

    The left subtree of split ``i`` ends at the first ``j > i`` where the running balance
    reaches ``balance[i] + 1``; found for all splits at once by a search over
    (balance, position) keys.
    """
    n = balance.size
    keys = (balance - balance.min()) * (n + 1) + np.arange(n)
    order = np.argsort(keys, kind="stable")
    splits = np.flatnonzero(~is_leaf)
    wanted = (balance[splits] + 1 - balance.min()) * (n + 1) + splits + 1
    return order[np.searchsorted(keys[order], wanted)] + 1


def _node_depths(is_leaf: np.ndarray, right: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Depth of every node (roots are 1, as in scikit-learn's ``compute_node_depths``)."""
    depth = np.zeros(is_leaf.size, dtype=np.int64)
    frontier = roots
    level = 1
    while frontier.size:
        depth[frontier] = level
        splits = frontier[~is_leaf[frontier]]
        frontier = np.concatenate((splits + 1, right[splits]))
        level += 1
    return depth


def _forest_plan(forest: FittedForest) -> _ForestPlan:
    """Build the traversal arrays from the compact pre-order encoding (validating it)."""
    is_leaf = forest.split_feature < 0
    n_nodes, n_splits = is_leaf.size, int((~is_leaf).sum())
    if forest.threshold.size != n_splits or forest.nan_left.size != n_splits:
        msg = "isolation forest: thresholds do not match the split count"
        raise ValueError(msg)
    if forest.leaf_samples.size != n_nodes - n_splits or (forest.leaf_samples < 1).any():
        msg = "isolation forest: leaf sample counts do not match the leaf count"
        raise ValueError(msg)
    if (forest.split_feature >= forest.n_features).any() or forest.max_samples < 1:
        msg = "isolation forest: split feature or max_samples out of range"
        raise ValueError(msg)
    balance = _check_preorder(is_leaf, forest.tree_sizes)
    roots = np.concatenate(([0], np.cumsum(forest.tree_sizes)[:-1])).astype(np.intp)
    splits = np.flatnonzero(~is_leaf)
    right = np.zeros(n_nodes, dtype=np.intp)
    right[splits] = _right_children(is_leaf, balance)
    depth = _node_depths(is_leaf, right, roots)

    children = np.repeat(np.arange(n_nodes, dtype=np.intp), 2)
    children[2 * splits] = splits + 1
    children[2 * splits + 1] = right[splits]
    feature = np.zeros(n_nodes, dtype=np.intp)
    feature[splits] = forest.split_feature[splits]
    threshold = np.zeros(n_nodes, dtype=np.float32)
    threshold[splits] = forest.threshold
    nan_right = np.zeros(n_nodes, dtype=bool)
    nan_right[splits] = ~forest.nan_left
    leaf_value = np.zeros(n_nodes, dtype=np.float64)
    leaf_value[is_leaf] = depth[is_leaf] + _average_path_length(forest.leaf_samples) - 1.0
    apl = _average_path_length(np.array([forest.max_samples]))[0]
    return _ForestPlan(
        feature=np.repeat(feature, 2),
        threshold=np.repeat(threshold, 2),
        nan_right=np.repeat(nan_right, 2),
        children=2 * children,
        leaf_value=np.repeat(leaf_value, 2),
        roots=2 * roots,
        n_steps=int(depth.max()) - 1,
        denominator=float(forest.tree_sizes.size * apl),
    )


@dataclass(frozen=True, slots=True, eq=False)
class FittedForest:
    """A fitted ``IsolationForest`` as compact arrays, scored with numpy.

    Trees are stored in pre-order (each node, then its left, then its right subtree),
    which fixes the structure without child pointers: ``split_feature`` holds per node
    the input column it splits on, or -1 at a leaf; ``threshold`` (float32, rounded down
    so float32 comparisons decide exactly as scikit-learn's float64 ones) and
    ``nan_left`` (where a NaN goes) hold one entry per split, ``leaf_samples`` the
    training samples of each leaf, ``tree_sizes`` the nodes per tree. ``max_samples`` is
    the rows each tree was grown on (the score's normaliser).
    """

    n_features: int
    max_samples: int
    tree_sizes: np.ndarray
    split_feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    leaf_samples: np.ndarray
    _plan: _ForestPlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the arrays in their storage dtypes and build the traversal plan."""
        set_ = object.__setattr__
        set_(self, "tree_sizes", _frozen(self.tree_sizes, np.int32))
        set_(self, "split_feature", _frozen(self.split_feature, np.int32))
        set_(self, "threshold", _frozen(self.threshold, np.float32))
        set_(self, "nan_left", _frozen(self.nan_left, bool))
        set_(self, "leaf_samples", _frozen(self.leaf_samples, np.int32))
        set_(self, "_plan", _forest_plan(self))

    @classmethod
    def from_sklearn(cls, model: IsolationForest) -> FittedForest:
        """Compile a fitted ``IsolationForest`` (dense input; any ``max_features``)."""
        n_features = int(model.n_features_in_)
        subsampled = model._max_features != n_features  # as IsolationForest decides
        sizes, features, thresholds, nan_left, leaf_samples = [], [], [], [], []
        for estimator, columns in zip(model.estimators_, model.estimators_features_, strict=True):
            tree = estimator.tree_
            order = _preorder(tree.children_left, tree.children_right)
            leaf = tree.children_left[order] == -1
            local = np.where(leaf, 0, tree.feature[order])
            column = np.asarray(columns)[local] if subsampled else local
            sizes.append(order.size)
            features.append(np.where(leaf, -1, column))
            thresholds.append(_round_down_to_float32(tree.threshold[order][~leaf]))
            nan_left.append(tree.missing_go_to_left[order][~leaf].astype(bool))
            leaf_samples.append(tree.n_node_samples[order][leaf])
        return cls(
            n_features=n_features,
            max_samples=int(model._max_samples),
            tree_sizes=np.asarray(sizes),
            split_feature=np.concatenate(features),
            threshold=np.concatenate(thresholds),
            nan_left=np.concatenate(nan_left),
            leaf_samples=np.concatenate(leaf_samples),
        )

    @property
    def n_trees(self) -> int:
        """Number of trees in the forest."""
        return int(self.tree_sizes.size)

    def score_samples(self, X: Any) -> np.ndarray:
        """``IsolationForest.score_samples``: minus the anomaly score, lower = more abnormal.

        Inputs are cast to float32 as scikit-learn does; NaN follows each split's
        ``missing_go_to_left``.
        """
        x = _as_rows(X, self.n_features, np.float32)
        depths = self._path_lengths(x)
        plan = self._plan
        if plan.denominator != 0:
            ratio = depths / plan.denominator
        else:
            ratio = np.ones_like(depths)  # one training sample: scikit-learn's convention
        return -np.power(2.0, -ratio)

    def _path_lengths(self, x: np.ndarray) -> np.ndarray:
        """Summed path length over the trees of each float32 row of ``x``: every tree of
        every row walked at once, one vectorised step per level."""
        plan = self._plan
        n_rows, n_trees = x.shape[0], plan.roots.size
        flat = x.ravel()
        row_start = np.repeat(np.arange(n_rows, dtype=np.intp) * x.shape[1], n_trees)
        slot = np.tile(plan.roots, n_rows)
        with_nan = bool(np.isnan(flat).any())
        for _ in range(plan.n_steps):
            column = plan.feature[slot]
            value = flat[column if n_rows == 1 else row_start + column]
            right = value > plan.threshold[slot]
            if with_nan:
                right |= np.isnan(value) & plan.nan_right[slot]
            slot = plan.children[slot + right]
        per_tree = plan.leaf_value[slot].reshape(n_rows, n_trees)
        return _running_total(per_tree)  # trees added in scikit-learn's order

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the forest, for :meth:`from_arrays` and serialisation.

        Packed: ``nodes`` holds each node's split feature, or minus its sample count at
        a leaf; ``nan_left`` is bit-packed.
        """
        nodes = self.split_feature.astype(np.int32)
        nodes[nodes < 0] = -self.leaf_samples
        return {
            "shape": np.array([self.n_features, self.max_samples], dtype=np.int64),
            "tree_sizes": self.tree_sizes,
            "nodes": nodes,
            "threshold": self.threshold,
            "nan_left": np.packbits(self.nan_left),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FittedForest:
        """Rebuild from :meth:`to_arrays` output; ValueError if the arrays are inconsistent."""
        n_features, max_samples = (int(v) for v in arrays["shape"])
        nodes = np.asarray(arrays["nodes"], dtype=np.int64)
        threshold = np.asarray(arrays["threshold"])
        nan_left = np.unpackbits(np.asarray(arrays["nan_left"], dtype=np.uint8))
        return cls(
            n_features=n_features,
            max_samples=max_samples,
            tree_sizes=arrays["tree_sizes"],
            split_feature=np.maximum(nodes, -1),
            threshold=threshold,
            nan_left=nan_left[: threshold.size],
            leaf_samples=-nodes[nodes < 0],
        )


# One-class SVM -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class FittedSVM:
    """A fitted rbf ``OneClassSVM``: support vectors, their dual coefficients, the
    resolved ``gamma`` and ``rho`` (libsvm's offset, scikit-learn's ``offset_``)."""

    support_vectors: np.ndarray
    dual_coef: np.ndarray
    gamma: float
    rho: float
    _vectors_t: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the arrays and check their shapes agree."""
        object.__setattr__(self, "support_vectors", _frozen(self.support_vectors, np.float64))
        object.__setattr__(self, "dual_coef", _frozen(self.dual_coef, np.float64))
        sv, coef = self.support_vectors, self.dual_coef
        if sv.ndim != 2 or sv.shape[1] < 1 or coef.shape != (sv.shape[0],):
            msg = f"one-class SVM: {coef.shape} coefficients for support vectors {sv.shape}"
            raise ValueError(msg)
        object.__setattr__(self, "_vectors_t", _frozen(sv.T, np.float64))

    @classmethod
    def from_sklearn(cls, model: OneClassSVM) -> FittedSVM:
        """Compile a fitted dense ``OneClassSVM`` with the rbf kernel."""
        if model.kernel != "rbf":
            msg = f"one-class SVM: only the rbf kernel is supported, not {model.kernel!r}"
            raise ValueError(msg)
        if getattr(model, "_sparse", False):
            msg = "one-class SVM: models fitted on sparse input are not supported"
            raise ValueError(msg)
        return cls(
            support_vectors=model.support_vectors_,
            dual_coef=np.asarray(model.dual_coef_)[0],
            gamma=float(model._gamma),
            rho=float(model.offset_[0]),
        )

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return int(self.support_vectors.shape[1])

    def score_samples(self, X: Any) -> np.ndarray:
        """``OneClassSVM.score_samples``: sum of dual coef * rbf kernel, higher = more normal.

        Computed as scikit-learn does: libsvm's decision value ``sum - rho``, plus
        ``offset_`` (= rho).
        """
        x = _as_rows(X, self.n_features)
        kernel = np.exp(-self.gamma * _squared_distances(x, self._vectors_t))
        return (_running_total(kernel * self.dual_coef) - self.rho) + self.rho

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the SVM, for :meth:`from_arrays` and serialisation."""
        return {
            "support_vectors": _compact_floats(self.support_vectors),
            "dual_coef": self.dual_coef,
            "params": np.array([self.gamma, self.rho], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FittedSVM:
        """Rebuild from :meth:`to_arrays` output."""
        gamma, rho = (float(v) for v in arrays["params"])
        return cls(arrays["support_vectors"], arrays["dual_coef"], gamma, rho)


# Local outlier factor ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class FittedLOF:
    """A fitted ``LocalOutlierFactor(novelty=True)`` with the euclidean metric.

    Keeps the training rows, each row's distance to its k-th neighbour (``k_distance``)
    and its local reachability density (``lrd``); queries find their k nearest training
    rows by brute force. Exact-tie neighbours (duplicate training rows straddling the
    k-th place) may be picked differently from scikit-learn's tree search.
    """

    fit_X: np.ndarray
    k_distance: np.ndarray
    lrd: np.ndarray
    n_neighbors: int
    _fit_t: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the arrays and check their shapes agree."""
        for name in ("fit_X", "k_distance", "lrd"):
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64))
        n_rows = self.fit_X.shape[0] if self.fit_X.ndim == 2 and self.fit_X.shape[1] else -1
        shapes_ok = self.k_distance.shape == self.lrd.shape == (n_rows,)
        if not shapes_ok or not 1 <= self.n_neighbors <= n_rows:
            msg = f"local outlier factor: inconsistent shapes for {n_rows} training rows"
            raise ValueError(msg)
        object.__setattr__(self, "_fit_t", _frozen(self.fit_X.T, np.float64))

    @classmethod
    def from_sklearn(cls, model: LocalOutlierFactor) -> FittedLOF:
        """Compile a ``LocalOutlierFactor`` fitted with ``novelty=True`` on dense input."""
        if not model.novelty:
            msg = "local outlier factor: score_samples needs a model fitted with novelty=True"
            raise ValueError(msg)
        if model.effective_metric_ != "euclidean":
            msg = f"local outlier factor: only euclidean, not {model.effective_metric_!r}"
            raise ValueError(msg)
        k = int(model.n_neighbors_)
        return cls(
            fit_X=np.asarray(model._fit_X),
            k_distance=model._distances_fit_X_[:, k - 1],
            lrd=model._lrd,
            n_neighbors=k,
        )

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return int(self.fit_X.shape[1])

    def score_samples(self, X: Any) -> np.ndarray:
        """``LocalOutlierFactor.score_samples``: minus the LOF, higher = more normal."""
        x = _as_rows(X, self.n_features)
        squared = _squared_distances(x, self._fit_t)
        k = self.n_neighbors
        neighbors = np.argpartition(squared, k - 1, axis=1)[:, :k]
        near = np.sqrt(np.take_along_axis(squared, neighbors, axis=1))
        reach = np.maximum(near, self.k_distance[neighbors])
        x_lrd = 1.0 / (np.add.reduce(reach, axis=1) / k + _LOF_EPS)
        return -(np.add.reduce(self.lrd[neighbors] / x_lrd[:, None], axis=1) / k)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that define the LOF model, for :meth:`from_arrays` and serialisation."""
        return {
            "fit_X": _compact_floats(self.fit_X),
            "k_distance": self.k_distance,
            "lrd": self.lrd,
            "n_neighbors": np.array([self.n_neighbors], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FittedLOF:
        """Rebuild from :meth:`to_arrays` output."""
        (k,) = (int(v) for v in arrays["n_neighbors"])
        return cls(arrays["fit_X"], arrays["k_distance"], arrays["lrd"], k)


# The per-key bundle ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Cdf:
    """Empirical CDF of one detector's training anomaly scores, from their quantiles.

    Tied quantiles (a detector giving many rows one value) keep both their lowest and
    highest level; a score is then the mean of the two interpolations, so a row equal to
    a tied value gets the middle of the tie, not 0 or 1.
    """

    values: np.ndarray
    low: np.ndarray
    high: np.ndarray | None  # None when no quantiles tie (then high == low)

    @classmethod
    def from_quantiles(cls, quantiles: np.ndarray) -> _Cdf:
        """The CDF of sorted quantiles taken at evenly spaced levels 0..1."""
        levels = np.linspace(0.0, 1.0, quantiles.size)
        values, first = np.unique(quantiles, return_index=True)
        if values.size == quantiles.size:
            return cls(values, levels, None)
        last = np.append(first[1:], quantiles.size) - 1
        return cls(values, levels[first], levels[last])

    def __call__(self, anomaly: np.ndarray) -> np.ndarray:
        """Fraction of the training rows less anomalous than each value, in [0, 1]."""
        low = np.interp(anomaly, self.values, self.low, left=0.0, right=1.0)
        if self.high is None:
            return low
        high = np.interp(anomaly, self.values, self.high, left=0.0, right=1.0)
        return 0.5 * (low + high)


@dataclass(frozen=True, slots=True, eq=False)
class FittedDetectors:
    """The three detectors fitted on one key's history, with the column scaling and each
    detector's training score quantiles; built by :func:`fit_detectors`.

    ``center`` and ``scale`` standardise raw rows (``(X - center) / scale``) before the
    detectors see them; ``quantiles[i]`` holds :data:`N_QUANTILES` evenly spaced
    quantiles of detector ``DETECTOR_NAMES[i]``'s anomaly scores (minus
    ``score_samples``, higher = more anomalous) on the training rows.
    """

    center: np.ndarray
    scale: np.ndarray
    forest: FittedForest
    svm: FittedSVM
    lof: FittedLOF
    quantiles: np.ndarray
    _cdfs: tuple[_Cdf, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the arrays, check the shapes agree and build the score CDFs."""
        for name in ("center", "scale", "quantiles"):
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64))
        n = self.center.shape[0] if self.center.ndim == 1 else -1
        sizes = {self.scale.shape, (self.forest.n_features,), (self.svm.n_features,)}
        if sizes | {(self.lof.n_features,)} != {(n,)}:
            msg = "anomaly detectors: scaling and detectors disagree on the columns"
            raise ValueError(msg)
        if not (np.isfinite(self.center).all() and np.isfinite(self.scale).all()):
            msg = "anomaly detectors: non-finite column scaling"
            raise ValueError(msg)
        if (self.scale <= 0).any():
            msg = "anomaly detectors: column scales must be positive"
            raise ValueError(msg)
        shape = (len(DETECTOR_NAMES), N_QUANTILES)
        if self.quantiles.shape != shape or not np.isfinite(self.quantiles).all():
            msg = f"anomaly detectors: quantiles must be finite, of shape {shape}"
            raise ValueError(msg)
        cdfs = tuple(_Cdf.from_quantiles(np.sort(q)) for q in self.quantiles)
        object.__setattr__(self, "_cdfs", cdfs)

    @property
    def n_features(self) -> int:
        """Number of raw input columns."""
        return int(self.center.shape[0])

    def _scorers(self) -> tuple[Callable[[np.ndarray], np.ndarray], ...]:
        """Each detector's ``score_samples``, in :data:`DETECTOR_NAMES` order."""
        return (self.forest.score_samples, self.svm.score_samples, self.lof.score_samples)

    def anomaly(self, X: Any) -> dict[str, np.ndarray]:
        """Raw anomaly score per detector (minus ``score_samples``, higher = more anomalous)
        of raw rows ``X`` (n_rows, n_features); ValueError on non-finite input."""
        x = _as_rows(X, self.n_features)
        if not np.isfinite(x).all():
            msg = "anomaly detectors: rows must be finite"
            raise ValueError(msg)
        z = (x - self.center) / self.scale
        return {
            name: -score(z) for name, score in zip(DETECTOR_NAMES, self._scorers(), strict=True)
        }

    def scores(self, X: Any) -> dict[str, np.ndarray]:
        """Per detector, for each raw row of ``X``: the fraction of the training rows less
        anomalous than it, in [0, 1] (interpolated on the quantiles; higher = more
        anomalous)."""
        raw = self.anomaly(X)
        return {name: cdf(raw[name]) for name, cdf in zip(DETECTOR_NAMES, self._cdfs, strict=True)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """All arrays that define the detectors, with prefixed names."""
        arrays = {"center": self.center, "scale": self.scale, "quantiles": self.quantiles}
        parts = (("forest", self.forest), ("svm", self.svm), ("lof", self.lof))
        for prefix, part in parts:
            arrays.update({f"{prefix}.{k}": v for k, v in part.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FittedDetectors:
        """Rebuild from :meth:`to_arrays` output; ValueError if anything is inconsistent."""

        def part(prefix: str) -> dict[str, np.ndarray]:
            start = f"{prefix}."
            return {k.removeprefix(start): v for k, v in arrays.items() if k.startswith(start)}

        return cls(
            center=arrays["center"],
            scale=arrays["scale"],
            forest=FittedForest.from_arrays(part("forest")),
            svm=FittedSVM.from_arrays(part("svm")),
            lof=FittedLOF.from_arrays(part("lof")),
            quantiles=arrays["quantiles"],
        )

    def to_bytes(self) -> bytes:
        """A compact blob for Redis: a magic/version header, then an ``.npz`` of
        :meth:`to_arrays` (plain numeric arrays, nothing pickled)."""
        buffer = io.BytesIO()
        arrays: dict[str, Any] = self.to_arrays()
        np.savez(buffer, **arrays)  # written once per refit; compressing took ~18 ms
        payload = buffer.getvalue()
        check = zlib.crc32(payload).to_bytes(4, "big")
        return _HEADER.pack(_MAGIC, FORMAT_VERSION) + check + payload

    @classmethod
    def from_bytes(cls, blob: bytes) -> FittedDetectors:
        """Load :meth:`to_bytes` output; ValueError for a foreign, corrupt or other-version
        blob (refit the detectors then)."""
        if len(blob) < _HEADER.size:
            msg = f"anomaly detectors: blob of {len(blob)} bytes is too short"
            raise ValueError(msg)
        magic, version = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            msg = f"anomaly detectors: not a detector blob (magic {magic!r}, expected {_MAGIC!r})"
            raise ValueError(msg)
        if version != FORMAT_VERSION:
            msg = (
                f"anomaly detectors: blob has format version {version}, this code reads "
                f"version {FORMAT_VERSION}; refit the detectors"
            )
            raise ValueError(msg)
        check, payload = blob[_HEADER.size : _HEADER.size + 4], blob[_HEADER.size + 4 :]
        if zlib.crc32(payload).to_bytes(4, "big") != check:
            msg = "anomaly detectors: corrupt blob (checksum mismatch)"
            raise ValueError(msg)
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            return cls.from_arrays(arrays)
        except Exception as exc:  # zip, npy header and array checks fail in many ways
            msg = f"anomaly detectors: corrupt blob ({type(exc).__name__}: {exc})"
            raise ValueError(msg) from exc


def robust_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column center (median) and scale of ``X`` for :func:`fit_detectors`.

    The scale is the interquartile range; a column whose IQR is under
    :data:`SCALE_FLOOR` (mostly constant, e.g. an error count that is nearly always 0)
    uses its standard deviation instead, and a column that is constant too uses 1.
    """
    center = np.median(X, axis=0)
    q25, q75 = np.percentile(X, [25.0, 75.0], axis=0)
    iqr = q75 - q25
    std = X.std(axis=0)
    scale = np.where(iqr >= SCALE_FLOOR, iqr, np.where(std >= SCALE_FLOOR, std, 1.0))
    return center, scale


def fit_detectors(X: np.ndarray, seed: int = 0) -> FittedDetectors:
    """Fit the three detectors on one key's recent rows ``X`` (n_rows >= 2, n_features).

    Meant for 64-512 rows of 1-8 standardised features. Columns are first scaled by
    :func:`robust_scaling` (and the scaled rows rounded to float32); then, with fixed
    settings (the module constants):
    ``IsolationForest(n_estimators=50, max_samples=min(64, n), random_state=seed)``,
    ``OneClassSVM(kernel="rbf", nu=0.05, gamma="scale")`` and
    ``LocalOutlierFactor(n_neighbors=min(20, n - 1), novelty=True)``. Each detector's
    anomaly scores of the training rows are kept as quantiles: in-sample for the forest
    and the SVM, leave-one-out (``negative_outlier_factor_``) for LOF, since a training
    row scored as a novelty would count itself as its own nearest neighbour.
    Deterministic for a given ``seed``.
    """
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.svm import OneClassSVM

    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        msg = f"fit_detectors needs at least 2 rows and 1 column, got shape {x.shape}"
        raise ValueError(msg)
    if not np.isfinite(x).all():
        msg = "fit_detectors needs finite rows"
        raise ValueError(msg)
    center, scale = robust_scaling(x)
    # Rounded to float32 (the forest works in float32 anyway): the SVM's support vectors
    # and LOF's training rows are then stored losslessly in half the bytes.
    z = ((x - center) / scale).astype(np.float32).astype(np.float64)
    n_rows = z.shape[0]

    forest = IsolationForest(
        n_estimators=IFOREST_N_ESTIMATORS,
        max_samples=min(IFOREST_MAX_SAMPLES, n_rows),
        random_state=seed,
    ).fit(z)
    svm = OneClassSVM(kernel="rbf", nu=SVM_NU, gamma="scale").fit(z)
    lof = LocalOutlierFactor(n_neighbors=min(LOF_N_NEIGHBORS, n_rows - 1), novelty=True).fit(z)

    fitted_forest = FittedForest.from_sklearn(forest)
    fitted_svm = FittedSVM.from_sklearn(svm)
    training_anomaly = (
        -fitted_forest.score_samples(z),
        -fitted_svm.score_samples(z),
        -np.asarray(lof.negative_outlier_factor_, dtype=np.float64),
    )
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    return FittedDetectors(
        center=center,
        scale=scale,
        forest=fitted_forest,
        svm=fitted_svm,
        lof=FittedLOF.from_sklearn(lof),
        quantiles=np.stack([np.quantile(np.sort(a), levels) for a in training_anomaly]),
    )


# River HalfSpaceTrees ----------------------------------------------------------------


def _hst_nodes(model: HalfSpaceTrees) -> list[Any]:
    """Every node of every tree, trees in order, nodes in ``_tree_nodes`` order."""
    return [node for tree_nodes in model._tree_nodes for node in tree_nodes]


def _hst_fingerprint(nodes: list[Any]) -> int:
    """CRC32 of the trees' structure (which nodes split, on what feature, where), so a
    state is never poured into trees grown from another seed, limits or feature set."""
    is_split = [hasattr(node, "threshold") for node in nodes]
    splits = list(compress(nodes, is_split))
    crc = zlib.crc32(np.packbits(np.array(is_split, dtype=bool)).tobytes())
    crc = zlib.crc32(repr([node.feature for node in splits]).encode(), crc)
    thresholds = np.array([node.threshold for node in splits], dtype="<f8")
    return zlib.crc32(thresholds.tobytes(), crc)


def _hst_masses(nodes: list[Any]) -> np.ndarray:
    """(l_mass, r_mass) of each node, as an (n_nodes, 2) int64 array."""
    left = np.array([node.l_mass for node in nodes], dtype=np.int64)
    right = np.array([node.r_mass for node in nodes], dtype=np.int64)
    return np.column_stack((left, right))


def _pack_masses(masses: np.ndarray) -> bytes:
    """(n_nodes, 2) masses as zlib-compressed little-endian uint32, all l_mass then all
    r_mass, split into byte planes (the mostly-zero high bytes compress to nothing)."""
    if masses.size and (masses.min() < 0 or masses.max() > np.iinfo(np.uint32).max):
        msg = "HalfSpaceTrees: node masses do not fit uint32"
        raise ValueError(msg)
    words = np.ascontiguousarray(masses.T, dtype="<u4")
    planes = words.view(np.uint8).reshape(-1, 4).T
    return zlib.compress(np.ascontiguousarray(planes).tobytes(), 6)


def _unpack_masses(packed: bytes, n_nodes: int) -> np.ndarray:
    """Inverse of :func:`_pack_masses`; ValueError if the bytes do not hold ``n_nodes``."""
    try:
        raw = zlib.decompress(packed)
    except zlib.error as exc:
        msg = f"corrupt HalfSpaceTrees state ({exc})"
        raise ValueError(msg) from exc
    if len(raw) != n_nodes * 8:
        msg = f"corrupt HalfSpaceTrees state: {len(raw)} mass bytes for {n_nodes} nodes"
        raise ValueError(msg)
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(4, -1)
    words = np.ascontiguousarray(planes.T).view("<u4").ravel()
    return words.reshape(2, n_nodes).T


def hst_state(model: HalfSpaceTrees) -> bytes:
    """The learned state of a River ``HalfSpaceTrees``: window counter, first-window flag
    and every node's masses (uint32, zlib; see :func:`_pack_masses`), behind a header
    with the model's shape and a fingerprint of its trees.

    The trees themselves are not stored: they follow from the seed and the feature names
    (see :func:`restore_hst`). A model that has learned nothing gives a state without
    nodes.
    """
    nodes = _hst_nodes(model)
    shape = HstShape(model.n_trees, model.height, model.window_size, _hst_fingerprint(nodes))
    return pack_hst_state(shape, model.counter, bool(model._first_window), _hst_masses(nodes))


@dataclass(frozen=True, slots=True)
class HstShape:
    """What a :func:`hst_state` header says of the trees besides their masses."""

    n_trees: int
    height: int
    window_size: int
    fingerprint: int
    """:func:`_hst_fingerprint` of the grown trees."""


def pack_hst_state(shape: HstShape, counter: int, first_window: bool, masses: np.ndarray) -> bytes:
    """:func:`hst_state`'s bytes from its parts: ``masses`` is (n_nodes, 2) in River's
    node order (see :func:`_hst_nodes`); the array form of the trees writes its state
    with this, without River's node objects."""
    header = _HST_HEADER.pack(
        _HST_MAGIC,
        HST_FORMAT_VERSION,
        shape.n_trees,
        shape.height,
        shape.window_size,
        counter,
        bool(first_window),
        masses.shape[0],
        shape.fingerprint,
    )
    return header + _pack_masses(masses)


def hst_fingerprint(model: HalfSpaceTrees) -> int:
    """The fingerprint of a model's grown trees, as its :func:`hst_state` header has it."""
    return _hst_fingerprint(_hst_nodes(model))


def _read_hst_state(state: bytes) -> tuple[tuple[Any, ...], np.ndarray]:
    """Header fields and (n_nodes, 2) masses of a :func:`hst_state` blob, or ValueError."""
    if len(state) < _HST_HEADER.size:
        msg = f"HalfSpaceTrees state of {len(state)} bytes is too short"
        raise ValueError(msg)
    header = _HST_HEADER.unpack_from(state)
    if header[0] != _HST_MAGIC:
        msg = f"not a HalfSpaceTrees state (magic {header[0]!r}, expected {_HST_MAGIC!r})"
        raise ValueError(msg)
    if header[1] != HST_FORMAT_VERSION:
        msg = (
            f"HalfSpaceTrees state has format version {header[1]}, this code reads "
            f"version {HST_FORMAT_VERSION}"
        )
        raise ValueError(msg)
    return header, _unpack_masses(state[_HST_HEADER.size :], header[7])


def restore_hst(model: HalfSpaceTrees, features: Sequence[str], state: bytes) -> None:
    """Load a :func:`hst_state` blob into ``model``, a fresh ``HalfSpaceTrees`` with the
    original's parameters and seed; ``features`` are the names the original learned on.

    Grows the trees with one ``learn_one`` on those names (so the seeded random draws
    repeat the original's), then overwrites every node mass and the counters. ValueError
    if the parameters, seed or features do not reproduce the original trees (the model
    may then have grown its trees: discard it).
    """
    header, masses = _read_hst_state(state)
    _, _, n_trees, height, window_size, counter, first_window, n_nodes, crc = header
    if (model.n_trees, model.height, model.window_size) != (n_trees, height, window_size):
        msg = (
            f"HalfSpaceTrees state is for n_trees={n_trees}, height={height}, "
            f"window_size={window_size}; the model has n_trees={model.n_trees}, "
            f"height={model.height}, window_size={model.window_size}"
        )
        raise ValueError(msg)
    if n_nodes and not model.trees:
        if not features:
            msg = "HalfSpaceTrees state has trees: pass the feature names they were grown on"
            raise ValueError(msg)
        model.learn_one(dict.fromkeys(features, 0.0))
    nodes = _hst_nodes(model)
    if len(nodes) != n_nodes or _hst_fingerprint(nodes) != crc:
        msg = "HalfSpaceTrees state does not match the model's trees (other seed or features?)"
        raise ValueError(msg)
    for node, (l_mass, r_mass) in zip(nodes, masses.tolist(), strict=True):
        node.l_mass = l_mass
        node.r_mass = r_mass
    model.counter = counter
    model._first_window = bool(first_window)


# Many keys at once ---------------------------------------------------------------------


def scores_many(
    fits: Sequence[FittedDetectors], X: np.ndarray, key_of_row: np.ndarray
) -> np.ndarray:
    """:meth:`FittedDetectors.scores` of many keys' rows at once: row ``i`` is scored by
    ``fits[key_of_row[i]]`` (all fits on the same columns). Columns in
    :data:`DETECTOR_NAMES` order.

    Every tree, support vector and training row of all the fits is walked in one array
    operation (their arrays are joined once and reused while the batches bring the same
    fits back, as a worker's batches of the same keys do). A row's scores depend
    on its row and its fit only, never on which others share the call. They equal
    :meth:`FittedDetectors.scores` but for the order in which a local outlier factor
    adds its neighbours (sorted by distance, then training row, as scikit-learn's
    neighbour search returns them; ties at the k-th place go to the earlier row).
    """
    x = np.asarray(X, dtype=np.float64)
    key = np.asarray(key_of_row, dtype=np.intp)
    if x.ndim != 2 or len(key) != len(x):
        msg = f"fitted detectors: {len(key)} keys for rows of shape {x.shape}"
        raise ValueError(msg)
    out = np.zeros((len(x), len(DETECTOR_NAMES)))
    if not len(x):
        return out
    if not np.isfinite(x).all():
        msg = "anomaly detectors: rows must be finite"
        raise ValueError(msg)
    joined = _joined(fits)
    at = np.array([joined.index[id(f)] for f in fits], dtype=np.intp)[key]
    z = (x - joined.center[at]) / joined.scale[at]
    raw = (-joined.forest(z, at), -joined.svm(z, at), -joined.lof(z, at))
    for k, fit in enumerate(fits):
        rows = np.flatnonzero(key == k)
        if len(rows):
            for d, cdf in enumerate(fit._cdfs):
                out[rows, d] = cdf(raw[d][rows])
    return out


@dataclass(frozen=True, slots=True, eq=False)
class _Joined:
    """The arrays of several fits joined for :func:`scores_many` (fit ``k`` of ``fits``
    at position ``index[id(fit)]``)."""

    fits: tuple[FittedDetectors, ...]
    """Held so that the ids in ``index`` stay those of these fits."""
    index: dict[int, int]
    center: np.ndarray
    scale: np.ndarray
    plans: tuple[_ForestPlan, ...]
    feature: np.ndarray
    threshold: np.ndarray
    nan_right: np.ndarray
    children: np.ndarray
    leaf_value: np.ndarray
    roots: np.ndarray
    denominator: np.ndarray
    vectors: np.ndarray
    coef: np.ndarray
    gamma: np.ndarray
    rho: np.ndarray
    fit_x: np.ndarray
    valid: np.ndarray
    k_distance: np.ndarray
    lrd: np.ndarray
    neighbors: np.ndarray

    @classmethod
    def of(cls, fits: Sequence[FittedDetectors]) -> _Joined:
        plans = tuple(f.forest._plan for f in fits)
        offsets = np.cumsum([0] + [p.feature.size for p in plans[:-1]])
        svms, lofs = [f.svm for f in fits], [f.lof for f in fits]
        features = fits[0].n_features
        vectors = np.zeros((len(fits), max(s.support_vectors.shape[0] for s in svms), features))
        coef = np.zeros(vectors.shape[:2])
        for k, s in enumerate(svms):
            vectors[k, : s.support_vectors.shape[0]] = s.support_vectors
            coef[k, : s.dual_coef.size] = s.dual_coef
        rows = max(m.fit_X.shape[0] for m in lofs)
        fit_x = np.zeros((len(fits), rows, features))
        valid = np.zeros((len(fits), rows), dtype=bool)
        k_distance, lrd = np.zeros((len(fits), rows)), np.zeros((len(fits), rows))
        for k, m in enumerate(lofs):
            n = m.fit_X.shape[0]
            fit_x[k, :n], valid[k, :n] = m.fit_X, True
            k_distance[k, :n], lrd[k, :n] = m.k_distance, m.lrd
        same_trees = len({p.roots.size for p in plans}) == 1
        return cls(
            fits=tuple(fits),
            index={id(f): k for k, f in enumerate(fits)},
            center=np.stack([f.center for f in fits]),
            scale=np.stack([f.scale for f in fits]),
            plans=plans,
            feature=np.concatenate([p.feature for p in plans]),
            threshold=np.concatenate([p.threshold for p in plans]),
            nan_right=np.concatenate([p.nan_right for p in plans]),
            children=np.concatenate([p.children + o for p, o in zip(plans, offsets, strict=True)]),
            leaf_value=np.concatenate([p.leaf_value for p in plans]),
            roots=(
                np.stack([p.roots + o for p, o in zip(plans, offsets, strict=True)])
                if same_trees
                else np.zeros((0, 0), dtype=np.intp)
            ),
            denominator=np.array([p.denominator for p in plans]),
            vectors=vectors,
            coef=coef,
            gamma=np.array([s.gamma for s in svms]),
            rho=np.array([s.rho for s in svms]),
            fit_x=fit_x,
            valid=valid,
            k_distance=k_distance,
            lrd=lrd,
            neighbors=np.array([m.n_neighbors for m in lofs]),
        )

    def forest(self, z: np.ndarray, key: np.ndarray) -> np.ndarray:
        """``FittedForest.score_samples`` of each row by its key's forest (a leaf leads to
        itself, so the steps beyond a shallower forest's depth are idle)."""
        if not self.roots.size:  # forests of different sizes: one call per forest
            out = np.empty(len(z))
            for k, fit in enumerate(self.fits):
                rows = np.flatnonzero(key == k)
                out[rows] = fit.forest.score_samples(z[rows])
            return out
        trees = self.roots.shape[1]
        x = z.astype(np.float32)
        flat = x.ravel()
        row_start = np.repeat(np.arange(len(x), dtype=np.intp) * x.shape[1], trees)
        slot = self.roots[key].ravel()
        with_nan = bool(np.isnan(flat).any())
        for _ in range(max(p.n_steps for p in self.plans)):
            value = flat[row_start + self.feature[slot]]
            right = value > self.threshold[slot]
            if with_nan:
                right |= np.isnan(value) & self.nan_right[slot]
            slot = self.children[slot + right]
        depths = _running_total(self.leaf_value[slot].reshape(len(x), trees))
        denominator = self.denominator[key]
        ok = denominator != 0
        ratio = np.where(ok, depths / np.where(ok, denominator, 1.0), 1.0)
        return -np.power(2.0, -ratio)

    def svm(self, z: np.ndarray, key: np.ndarray) -> np.ndarray:
        """``FittedSVM.score_samples`` of each row by its key's SVM (support vectors padded
        with zero coefficients, which add exactly nothing at the end of the sum)."""
        mine = self.vectors[key]
        total = np.square(z[:, 0, None] - mine[:, :, 0])
        for j in range(1, z.shape[1]):
            total += np.square(z[:, j, None] - mine[:, :, j])
        kernel = np.exp(-self.gamma[key][:, None] * total)
        rho = self.rho[key]
        return (_running_total(kernel * self.coef[key]) - rho) + rho

    def lof(self, z: np.ndarray, key: np.ndarray) -> np.ndarray:
        """``FittedLOF.score_samples`` of each row by its key's model (training rows
        padded with infinitely far ones; the k nearest found by a stable sort)."""
        mine = self.fit_x[key]
        squared = np.square(z[:, 0, None] - mine[:, :, 0])
        for j in range(1, z.shape[1]):
            squared += np.square(z[:, j, None] - mine[:, :, j])
        squared = np.where(self.valid[key], squared, np.inf)
        order = np.argsort(squared, axis=1, kind="stable")
        neighbors_of = self.neighbors[key]
        out = np.empty(len(z))
        for k in np.unique(neighbors_of).tolist():
            rows = np.flatnonzero(neighbors_of == k)
            neighbors = order[rows, :k]
            near = np.sqrt(np.take_along_axis(squared[rows], neighbors, axis=1))
            owner = key[rows, None]
            reach = np.maximum(near, self.k_distance[owner, neighbors])
            # sums added in order (the same bits for a row however many rows there are)
            x_lrd = 1.0 / (_running_total(reach) / k + _LOF_EPS)
            out[rows] = -(_running_total(self.lrd[owner, neighbors] / x_lrd[:, None]) / k)
        return out


_JOINED: dict[int, _Joined] = {}
"""Per number of columns, the fits last joined (a worker's batches of hosts and of links
differ in columns)."""


def _joined(fits: Sequence[FittedDetectors]) -> _Joined:
    """Joined arrays holding at least ``fits``: the last ones joined if they do (a batch
    of the same keys, whatever their order or subset), else joined again with them (and
    the previous ones while those are not many more: fits replaced by refits fall away
    at the next rebuild)."""
    width = fits[0].n_features
    have = _JOINED.get(width)
    if have is not None and all(
        (k := have.index.get(id(f))) is not None and have.fits[k] is f for f in fits
    ):
        return have
    pool = {id(f): f for f in fits}
    if have is not None and len(have.fits) <= len(pool) + 64:
        for f in have.fits:
            pool.setdefault(id(f), f)
    joined = _Joined.of(list(pool.values()))
    _JOINED[width] = joined
    return joined
