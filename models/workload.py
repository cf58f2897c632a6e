"""Serve the workload classifier from one ONNX file with onnxruntime (no scikit-learn).

The file (written by :mod:`models.workload_training`) holds two graphs that share the
input ``features`` (``(batch, len(FEATURE_NAMES))`` float32, the vectors of
:func:`models.workload_features.history_features`):

- a random forest giving ``probabilities`` ``(batch, len(labels))``;
- a scaler and KMeans giving ``cluster`` ``(batch,)``, the host's discovered group.

Its ``novacron`` metadata property holds the label names, the feature names, the
fewest samples a host needs (``min_samples``), the most it reads (``max_samples``, the
newest rows) and the probability below which a host is ``UNKNOWN``. Everything is
checked at load, not at the first host.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streams.capacity import HOST_METRICS, WORKLOAD_TYPES, WorkloadClass
from streams.errors import ModelError

from .onnx_session import open_session
from .workload_features import (
    FEATURE_NAMES,
    MIN_SEASONAL_SAMPLES,
    features_many,
    pattern_type,
    round_significant,
)

MODEL_NAME = "workload-classifier"
"""Registry name of the workload classifier, also the stem of its ONNX file."""

METADATA_KEY = "novacron"
FORMAT = "novacron-workload-classifier/1"
INPUT_NAME = "features"
PROBABILITIES = "probabilities"
CLUSTER = "cluster"
_RETRAIN = "Retrain it with `novacron train workload`."


@dataclass(frozen=True, slots=True)
class WorkloadModelMetadata:
    """What serving needs besides the graphs.

    Attributes:
        labels: the workload type of each probability column.
        feature_names: the input columns, :data:`FEATURE_NAMES` when it was trained.
        min_samples: rows of history below which a host is ``UNKNOWN``.
        max_samples: the newest rows read from a longer history.
        unknown_threshold: top probability below which a host is ``UNKNOWN``.
        clusters: the number of KMeans groups.
        extra: anything else training recorded (what each cluster holds, the data).
    """

    labels: tuple[str, ...]
    feature_names: tuple[str, ...]
    min_samples: int
    max_samples: int
    unknown_threshold: float
    clusters: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "labels": list(self.labels),
                "feature_names": list(self.feature_names),
                "min_samples": self.min_samples,
                "max_samples": self.max_samples,
                "unknown_threshold": self.unknown_threshold,
                "clusters": self.clusters,
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> WorkloadModelMetadata:
        """Parse and check the metadata of ``source`` (a path, for messages).

        Raises:
            ModelError: not JSON, another format, or a value serving cannot use.
        """
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                msg = (
                    f"The {METADATA_KEY!r} metadata of {source} must have format {FORMAT!r}. "
                    f"Got {data.get('format')!r} instead. {_RETRAIN}"
                )
                raise ModelError(msg)
            meta = cls(
                labels=tuple(str(label) for label in data["labels"]),
                feature_names=tuple(str(name) for name in data["feature_names"]),
                min_samples=int(data["min_samples"]),
                max_samples=int(data["max_samples"]),
                unknown_threshold=float(data["unknown_threshold"]),
                clusters=int(data["clusters"]),
                extra=dict(data.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = f"The {METADATA_KEY!r} metadata of {source} is unreadable: {exc!r}. {_RETRAIN}"
            raise ModelError(msg) from exc
        meta.check(source)
        return meta

    def check(self, source: str) -> None:
        """Raise :class:`ModelError` naming the first value serving cannot use."""
        known = set(WORKLOAD_TYPES) - {"UNKNOWN"}
        unknown = [label for label in self.labels if label not in known]
        if not self.labels or unknown or len(set(self.labels)) != len(self.labels):
            msg = (
                f"The labels of {source} must be distinct workload types of {sorted(known)}. "
                f"Got {list(self.labels)} instead. {_RETRAIN}"
            )
            raise ModelError(msg)
        if self.feature_names != FEATURE_NAMES:
            msg = (
                f"{source} was trained on features {list(self.feature_names)}; this version "
                f"of NovaCron computes {list(FEATURE_NAMES)}. {_RETRAIN}"
            )
            raise ModelError(msg)
        if not MIN_SEASONAL_SAMPLES <= self.min_samples <= self.max_samples:
            msg = (
                f"The min_samples of {source} must be in [{MIN_SEASONAL_SAMPLES}, "
                f"max_samples={self.max_samples}]. Got {self.min_samples} instead. {_RETRAIN}"
            )
            raise ModelError(msg)
        if not 0.0 <= self.unknown_threshold <= 1.0 or self.clusters < 1:
            msg = (
                f"The unknown_threshold of {source} must be in [0, 1] and clusters >= 1. Got "
                f"{self.unknown_threshold!r} and {self.clusters!r} instead. {_RETRAIN}"
            )
            raise ModelError(msg)


class OnnxWorkloadClassifier:
    """The workload classifier behind :class:`streams.capacity.WorkloadClassifier`.

    Hosts are batched: one feature pass per history length and one ``session.run`` for
    all hosts with enough history.
    """

    def __init__(
        self, name: str, version: str, session: ort.InferenceSession, meta: WorkloadModelMetadata
    ) -> None:
        self.name = name
        self.version = version
        self.session = session
        self.metadata = meta
        self.min_samples = meta.min_samples
        self.labels = meta.labels

    @classmethod
    def load(
        cls, path: Path, *, name: str = MODEL_NAME, version: str, threads: int = 1
    ) -> OnnxWorkloadClassifier:
        """Load and check an artifact: wrong metadata or graph fails here, not at serving.

        Raises:
            ModelError: a missing or unreadable file, missing or wrong metadata, or
                inputs and outputs other than the ones described above.
        """
        source = repr(str(path))
        session, text = open_session(
            Path(path),
            METADATA_KEY,
            f"a workload classifier exported by NovaCron. {_RETRAIN}",
            threads,
        )
        meta = WorkloadModelMetadata.from_json(text, source)
        inputs = session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME] or list(inputs[0].shape[1:]) != [
            len(FEATURE_NAMES)
        ]:
            got = [(i.name, i.shape) for i in inputs]
            msg = (
                f"{source} must have one input {INPUT_NAME!r} of shape "
                f"[batch, {len(FEATURE_NAMES)}]. Got {got} instead. {_RETRAIN}"
            )
            raise ModelError(msg)
        outputs = {o.name for o in session.get_outputs()}
        if not {PROBABILITIES, CLUSTER} <= outputs:
            msg = (
                f"{source} must have outputs {PROBABILITIES!r} and {CLUSTER!r}. "
                f"Got {sorted(outputs)} instead. {_RETRAIN}"
            )
            raise ModelError(msg)
        classifier = cls(name, version, session, meta)
        probabilities, _ = classifier.predict(np.zeros((1, len(FEATURE_NAMES))))
        # Compile the feature kernels now rather than on the first batch of hosts.
        classifier.classify_many([np.ones((meta.min_samples, len(HOST_METRICS)))], [60.0])
        if probabilities.shape != (1, len(meta.labels)):
            msg = (
                f"{source} gives {probabilities.shape[1]} probabilities per host for "
                f"{len(meta.labels)} labels. {_RETRAIN}"
            )
            raise ModelError(msg)
        return classifier

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(k, labels)`` and KMeans clusters ``(k,)`` of feature rows.

        A lone row runs with a copy of itself: onnxruntime's matrix kernels give a
        one-row batch other last digits than a larger one, and a host's class must not
        depend on the hosts it was batched with (replay equals the worker).
        """
        rows = np.asarray(features, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
        n = rows.shape[0]
        if n == 0:
            return np.zeros((0, len(self.labels))), np.zeros(0, dtype=np.int64)
        if n == 1:
            rows = np.repeat(rows, 2, axis=0)
        probabilities, cluster = self.session.run([PROBABILITIES, CLUSTER], {INPUT_NAME: rows})
        return (
            np.asarray(probabilities, dtype=np.float64)[:n],
            np.asarray(cluster, dtype=np.int64)[:n],
        )

    def classify_many(
        self, histories: Sequence[np.ndarray], step_s: Sequence[float]
    ) -> list[WorkloadClass]:
        """One class per history (see :class:`streams.capacity.WorkloadClassifier`).

        A history with fewer than ``min_samples`` rows, or no reported metric, is
        ``UNKNOWN`` with confidence 0, zero probabilities and cluster -1; its pattern
        and features are still given. A host whose most probable type has a
        probability under the model's ``unknown_threshold`` is ``UNKNOWN`` with that
        probability as its confidence. Only the newest ``max_samples`` rows are read.

        Raises:
            ModelError: a history is not ``(n, 6)``, a step is not positive, or the
                sequences differ in length.
        """
        if len(histories) != len(step_s):
            msg = (
                f"classify_many needs one step per history. Got {len(histories)} histories "
                f"and {len(step_s)} steps instead."
            )
            raise ModelError(msg)
        newest = [np.asarray(h, dtype=np.float64)[-self.metadata.max_samples :] for h in histories]
        features = features_many(newest, step_s)
        present = features[:, 0 : 3 * len(HOST_METRICS) : 3].any(axis=1)
        lengths = np.array([h.shape[0] for h in newest])
        ready = np.flatnonzero(present & (lengths >= self.min_samples))
        probabilities = np.zeros((len(newest), len(self.labels)))
        clusters = np.full(len(newest), -1, dtype=np.int64)
        probabilities[ready], clusters[ready] = self.predict(features[ready])
        rounded = round_significant(probabilities).tolist()
        tops = np.argmax(probabilities, axis=1).tolist()
        named_rows = round_significant(features).tolist()
        threshold = self.metadata.unknown_threshold
        out: list[WorkloadClass] = []
        for i, top in enumerate(tops):
            named = dict(zip(FEATURE_NAMES, named_rows[i], strict=True))
            confidence = rounded[i][top]
            known = confidence >= threshold and confidence > 0
            out.append(
                WorkloadClass(
                    workload_type=self.labels[top] if known else "UNKNOWN",
                    pattern_type=pattern_type(named),
                    confidence=confidence,
                    probabilities=dict(zip(self.labels, rounded[i], strict=True)),
                    features=named,
                    cluster=int(clusters[i]),
                )
            )
        return out
