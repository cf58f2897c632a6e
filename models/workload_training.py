"""``novacron train workload``: synthetic hosts -> features -> forest + KMeans -> ONNX.

The classifier learns the **stable workload types** of :mod:`models.synthetic_workloads`
(``CPU_INTENSIVE`` ... ``STEADY_STATE``), never per-pattern or per-host ids: a
host's pattern changes with the window it is seen through, its type does not.

- **Data**: ``hosts_per_type`` hosts of each type drawn from
  :data:`~models.synthetic_workloads.TRAIN` (seed ``seed``) for training, a validation
  set from the same ranges (seed ``seed + 1``) for the unknown threshold, and a
  held-out set from :data:`~models.synthetic_workloads.HELD_OUT` (other seeds *and*
  other ranges of levels, noise, gaps, mixtures, periods and sampling steps) for the
  reported figures.
- **Models**: a RandomForestClassifier (100 trees, ``class_weight="balanced"``) on the
  raw features (trees do not need scaling, and a scaler in front of them would add
  float32 rounding at the split thresholds in ONNX), and a Pipeline of StandardScaler
  and KMeans (8 clusters) for discovery: each host's group, recorded with what each
  group holds.
- **Export**: both converted by skl2onnx and merged into ONE ONNX graph sharing the
  input ``features`` (outputs ``probabilities`` and ``cluster``), with labels, feature
  names, ``min_samples``, ``max_samples`` and the unknown threshold in its
  ``novacron`` metadata property; the export is checked against scikit-learn's
  ``predict_proba`` before it is registered.
- **Registry**: ``workload-classifier`` (mode ``host``, kind ``onnx-sklearn``) with
  params, held-out metrics (macro-F1, per-type F1, baselines) and the dataset.

This module needs the train extra (scikit-learn is a serving dependency; skl2onnx and
onnx are not); serving is :mod:`models.workload`.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import compose, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from streams.errors import ConfigError, ModelError

from .registry import ModelRegistry, ModelVersion
from .synthetic_workloads import HELD_OUT, LABELS, TRAIN, SyntheticHost, generate_hosts
from .workload import (
    CLUSTER,
    INPUT_NAME,
    METADATA_KEY,
    MODEL_NAME,
    PROBABILITIES,
    OnnxWorkloadClassifier,
    WorkloadModelMetadata,
)
from .workload_features import FEATURE_NAMES, RESOURCES, features_many

Activation = Literal["auto", "always", "never"]
MODE = "host"
KIND = "onnx-sklearn"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-5


@dataclass(frozen=True, slots=True)
class WorkloadTrainRequest:
    """What to train on and how.

    Attributes:
        hosts_per_type: training hosts of each workload type.
        validation_per_type, held_out_per_type: hosts of each type in those sets.
        seed: seeds the data (train ``seed``, validation ``seed + 1``, held-out
            ``seed + 1000``) and the models.
        trees, clusters: forest size and KMeans groups (100 and 8 for the shipped model).
        min_samples: rows below which a host is ``UNKNOWN``. 120 (2 hours at one sample a
            minute, 20 minutes at 10 s): the fewest the training data has; below it the
            levels and variation of a noisy host are not settled yet.
        max_samples: the newest rows read (the worker keeps 1,440).
        unknown_rate: share of correctly classified validation hosts allowed to fall
            under the unknown threshold (the threshold is that quantile of their top
            probability, within [0.2, 0.5]).
        activate: ``auto`` activates only if the new version's held-out macro-F1 is at
            least the active version's on the same hosts; ``always`` / ``never``.
    """

    hosts_per_type: int = 500
    validation_per_type: int = 100
    held_out_per_type: int = 150
    seed: int = 0
    trees: int = 100
    clusters: int = 8
    min_samples: int = 120
    max_samples: int = 1440
    unknown_rate: float = 0.01
    activate: Activation = "auto"


@dataclass(slots=True)
class TrainedWorkloadModel:
    """An exported model and its figures on the held-out set."""

    onnx_path: Path
    forest: RandomForestClassifier
    kmeans: Pipeline
    params: dict[str, Any]
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    held_out: list[SyntheticHost]
    parity_max_abs: float
    train_seconds: float


@dataclass(slots=True)
class WorkloadTrainReport:
    """The registered version, whether it was activated and why, and its figures."""

    version: ModelVersion
    activated: bool
    reason: str
    trained: TrainedWorkloadModel
    active_before: str | None = None
    active_metrics: dict[str, float] = field(default_factory=dict)


def dataset(hosts: list[SyntheticHost]) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and label indices (into :data:`LABELS`) of generated hosts."""
    features = features_many([h.history for h in hosts], [h.step_s for h in hosts])
    return features, np.array([LABELS.index(h.workload_type) for h in hosts])


def fit_models(
    features: np.ndarray, labels: np.ndarray, trees: int, clusters: int, seed: int
) -> tuple[RandomForestClassifier, Pipeline]:
    """The forest on the stable type labels and the scaler + KMeans for discovery."""
    forest = RandomForestClassifier(
        n_estimators=trees, class_weight="balanced", min_samples_leaf=2, random_state=seed
    )
    forest.fit(features, labels)
    kmeans = Pipeline(
        [("scale", StandardScaler()), ("kmeans", KMeans(clusters, n_init=10, random_state=seed))]
    )
    kmeans.fit(features)
    return forest, kmeans


def export_onnx(
    forest: RandomForestClassifier, kmeans: Pipeline, metadata: WorkloadModelMetadata
) -> onnx.ModelProto:
    """ONE ONNX graph: the forest's ``probabilities`` and the KMeans ``cluster``.

    The two skl2onnx graphs share the input ``features``; the KMeans one gets a prefix
    on every other name so that nothing collides when their nodes are joined.
    """
    initial = [(INPUT_NAME, FloatTensorType([None, len(FEATURE_NAMES)]))]
    forest_onnx = convert_sklearn(
        forest, initial_types=initial, options={id(forest): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )  # fmt: skip
    kmeans_onnx = convert_sklearn(kmeans, initial_types=initial, target_opset=TARGET_OPSET)
    kmeans_graph = compose.add_prefix_graph(kmeans_onnx.graph, "kmeans_", rename_inputs=False)
    outputs = {
        forest_onnx.graph.output[1].name: PROBABILITIES,
        kmeans_graph.output[0].name: CLUSTER,
    }
    nodes = [*forest_onnx.graph.node, *kmeans_graph.node]
    for node in nodes:
        for i, name in enumerate(node.output):
            node.output[i] = outputs.get(name, name)
    graph_outputs = [
        helper.make_tensor_value_info(PROBABILITIES, onnx.TensorProto.FLOAT, [None, len(LABELS)]),
        helper.make_tensor_value_info(CLUSTER, onnx.TensorProto.INT64, [None]),
    ]
    graph = helper.make_graph(
        nodes, "workload_classifier", list(forest_onnx.graph.input), graph_outputs,
        initializer=[*forest_onnx.graph.initializer, *kmeans_graph.initializer],
    )  # fmt: skip
    opsets = {
        op.domain: op.version for op in [*forest_onnx.opset_import, *kmeans_onnx.opset_import]
    }
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets.items()],
        producer_name="novacron",
    )
    model.ir_version = forest_onnx.ir_version
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.checker.check_model(model)
    return model


def _scores(truth: np.ndarray, predicted: list[str]) -> dict[str, float]:
    labels = [LABELS[i] for i in truth]
    per_type = f1_score(labels, predicted, labels=list(LABELS), average=None, zero_division=0)
    metrics = {
        "macro_f1": float(np.mean(per_type)),
        "accuracy": float(np.mean([a == b for a, b in zip(labels, predicted, strict=True)])),
        "unknown_share": float(np.mean([p == "UNKNOWN" for p in predicted])),
        "n": float(len(labels)),
    }
    metrics.update({f"f1_{label}": float(f) for label, f in zip(LABELS, per_type, strict=True)})
    return metrics


def baselines(
    features: np.ndarray, truth: np.ndarray, majority: int
) -> dict[str, dict[str, float]]:
    """Macro-F1 of simple rules on the same hosts: the dominant resource, the majority."""
    resource_type = ("CPU_INTENSIVE", "MEMORY_INTENSIVE", "IO_INTENSIVE", "NETWORK_INTENSIVE")
    dominant = features[:, FEATURE_NAMES.index("dominant_resource")].astype(int)
    rule = [resource_type[d] if 0 <= d < len(RESOURCES) else "UNKNOWN" for d in dominant]
    return {
        "dominant_resource": _scores(truth, rule),
        "majority_class": _scores(truth, [LABELS[majority]] * len(truth)),
    }


def evaluate(classifier: OnnxWorkloadClassifier, hosts: list[SyntheticHost]) -> dict[str, float]:
    """Served figures (UNKNOWN counts as wrong) of ``classifier`` on ``hosts``."""
    classes = classifier.classify_many([h.history for h in hosts], [h.step_s for h in hosts])
    truth = np.array([LABELS.index(h.workload_type) for h in hosts])
    return _scores(truth, [c.workload_type for c in classes])


def _threshold(
    forest: RandomForestClassifier, features: np.ndarray, truth: np.ndarray, rate: float
) -> float:
    probabilities = forest.predict_proba(features)
    right = probabilities.argmax(axis=1) == truth
    top = probabilities.max(axis=1)[right]
    quantile = float(np.quantile(top, rate)) if top.size else 0.2
    return float(np.clip(np.floor(quantile * 100) / 100, 0.2, 0.5))


def _cluster_members(kmeans: Pipeline, features: np.ndarray, truth: np.ndarray) -> dict[str, str]:
    groups = kmeans.predict(features)
    described: dict[str, str] = {}
    for group in range(kmeans[-1].n_clusters):
        counts = Counter(LABELS[t] for t in truth[groups == group])
        total = max(sum(counts.values()), 1)
        described[str(group)] = ", ".join(f"{k} {v / total:.0%}" for k, v in counts.most_common(3))
    return described


def train_workload_model(request: WorkloadTrainRequest, out_dir: Path) -> TrainedWorkloadModel:
    """Generate, fit, export to ``out_dir/workload-classifier.onnx`` and evaluate.

    Raises:
        ConfigError: a request value out of range.
        ModelError: the ONNX export disagrees with scikit-learn.
    """
    if request.hosts_per_type < 2 or request.held_out_per_type < 1 or request.trees < 1:
        msg = (
            "train_workload needs hosts_per_type >= 2, held_out_per_type >= 1 and trees >= 1. "
            f"Got {request.hosts_per_type}, {request.held_out_per_type}, {request.trees}."
        )
        raise ConfigError(msg)
    started = time.perf_counter()
    train_hosts = generate_hosts(request.hosts_per_type, request.seed, TRAIN)
    validation = generate_hosts(request.validation_per_type, request.seed + 1, TRAIN)
    held_out = generate_hosts(request.held_out_per_type, request.seed + 1000, HELD_OUT)
    x_train, y_train = dataset(train_hosts)
    forest, kmeans = fit_models(x_train, y_train, request.trees, request.clusters, request.seed)
    x_val, y_val = dataset(validation)
    threshold = _threshold(forest, x_val, y_val, request.unknown_rate)
    members = _cluster_members(kmeans, x_train, y_train)
    metadata = WorkloadModelMetadata(
        labels=LABELS,
        feature_names=FEATURE_NAMES,
        min_samples=request.min_samples,
        max_samples=request.max_samples,
        unknown_threshold=threshold,
        clusters=request.clusters,
        extra={
            "cluster_members": members,
            "trained_on": f"synthetic {TRAIN.name} seed {request.seed}",
        },
    )
    model = export_onnx(forest, kmeans, metadata)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{MODEL_NAME}.onnx"
    onnx.save_model(model, onnx_path)
    train_seconds = time.perf_counter() - started
    served = OnnxWorkloadClassifier.load(onnx_path, version="candidate")
    x_held, y_held = dataset(held_out)
    parity = parity_max_abs(served, forest, np.vstack([x_val, x_held]))
    if parity > PARITY_TOLERANCE:
        msg = (
            f"The ONNX export's probabilities differ from scikit-learn's by {parity:.3g} "
            f"(tolerance {PARITY_TOLERANCE}); the export is wrong, not registered."
        )
        raise ModelError(msg)
    params: dict[str, Any] = {
        "data": (
            f"synthetic hosts of the 11 workload types: train {request.hosts_per_type}/type "
            f"(seed {request.seed}, {TRAIN.name} ranges), validation "
            f"{request.validation_per_type}/type (seed {request.seed + 1}, {TRAIN.name}), "
            f"held out {request.held_out_per_type}/type (seed {request.seed + 1000}, "
            f"{HELD_OUT.name} ranges: other steps, levels, noise, gaps, mixtures, periods)"
        ),
        "trees": request.trees,
        "clusters": request.clusters,
        "class_weight": "balanced",
        "min_samples_leaf": 2,
        "seed": request.seed,
        "hosts_per_type": request.hosts_per_type,
        "train_hosts": len(train_hosts),
        "validation_hosts": len(validation),
        "held_out_hosts": len(held_out),
        "min_samples": request.min_samples,
        "max_samples": request.max_samples,
        "unknown_threshold": threshold,
        "features": len(FEATURE_NAMES),
        "labels": list(LABELS),
        "cluster_members": members,
        "parity_max_abs": parity,
        "train_seconds": train_seconds,
    }
    majority = int(np.bincount(y_train).argmax())
    return TrainedWorkloadModel(
        onnx_path=onnx_path, forest=forest, kmeans=kmeans, params=params,
        metrics=evaluate(served, held_out), baselines=baselines(x_held, y_held, majority),
        held_out=held_out, parity_max_abs=parity, train_seconds=train_seconds,
    )  # fmt: skip


def parity_max_abs(
    served: OnnxWorkloadClassifier, forest: RandomForestClassifier, features: np.ndarray
) -> float:
    """Largest difference between the ONNX probabilities and ``predict_proba``."""
    onnx_probabilities, _ = served.predict(features)
    return float(np.max(np.abs(onnx_probabilities - forest.predict_proba(features)), initial=0.0))


def train_workload(
    registry: ModelRegistry, request: WorkloadTrainRequest, work_dir: Path | None = None
) -> WorkloadTrainReport:
    """Train, export, register and (as ``request.activate`` says) activate the classifier."""
    with tempfile.TemporaryDirectory(prefix="novacron-workload-") as tmp:
        trained = train_workload_model(request, Path(work_dir or tmp))
        return register_trained(registry, trained, request.activate)


def register_trained(
    registry: ModelRegistry, trained: TrainedWorkloadModel, activate: Activation = "auto"
) -> WorkloadTrainReport:
    """Register an exported classifier and activate it as ``activate`` says."""
    dataset_name = f"synthetic-{HELD_OUT.name}"
    version = registry.register(
        MODEL_NAME, trained.onnx_path, mode=MODE, kind=KIND, params=trained.params,
        metrics=trained.metrics, dataset=dataset_name,
        notes=(
            f"forest on stable workload types; held-out macro-F1 {trained.metrics['macro_f1']:.3f}"
            f" vs dominant-resource rule {trained.baselines['dominant_resource']['macro_f1']:.3f}"
            f" and majority class {trained.baselines['majority_class']['macro_f1']:.3f}"
        ),
    )  # fmt: skip
    for name, figures in trained.baselines.items():
        registry.record_metrics(MODEL_NAME, version.version, f"baseline:{name}", figures)
    report = WorkloadTrainReport(version, False, "", trained)
    active = registry.active(MODEL_NAME)
    report.active_before = active.version if active else None
    if activate == "never":
        report.reason = "not activated (--no-activate)"
    elif activate == "always" or active is None:
        report.activated = True
        report.reason = "first version of this model" if active is None else "activated (always)"
    else:
        current = OnnxWorkloadClassifier.load(registry.verify(active), version=active.version)
        report.active_metrics = evaluate(current, trained.held_out)
        new, old = trained.metrics["macro_f1"], report.active_metrics["macro_f1"]
        report.activated = new >= old
        verb = "matches or beats" if report.activated else "does not beat"
        report.reason = (
            f"held-out macro-F1 {new:.4f} {verb} active v{active.version}'s {old:.4f} "
            "on the same hosts"
        )
    if report.activated:
        registry.activate(MODEL_NAME, version.version, reason=report.reason)
    return report
