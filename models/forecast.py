"""Serve the multi-horizon demand forecast ensemble from one ONNX file (onnxruntime only).

The ensemble (trained by :mod:`models.forecast_training`) is a Random Forest, a Gradient
Boosting model per horizon and a Ridge regression, all fitted on every training series
at once: each window is divided by its level (:mod:`models.forecast_features`), and each
member predicts the change from the last value at every horizon in units of that level.
The ONNX graph has one input (the features) and one output per member; its ``novacron``
metadata property holds everything else serving needs:

- **member weights** per horizon: inverse validation MAE of each member, normalised to
  sum to 1; one row of weights for all series (``"*"``) and, for each workload type
  with enough validation windows, that type's own (the classifier's type selects the
  weights: a periodic host leans on the members that track cycles, a bursty host on
  those that damp bursts). A type without its own weights uses ``"*"``.
- **interval quantiles** per horizon (and per type, like the weights): split-conformal
  quantiles of the validation residuals divided by each window's volatility (its RMS
  one-step change), so the interval of a jumpy series is wider than a smooth one's.
- the lookback, horizons, feature layout (checked against this code's at load) and the
  confidence constant ``k``: ``confidence = 1 / (1 + k * u)`` with ``u`` the mean over
  horizons of the interval's half-width plus the members' weighted spread, in units of
  the window's level.

Forecasts of a series whose history is never negative are clipped at zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streams.capacity import DemandForecast
from streams.errors import ModelError

from .forecast_features import ForecastInputs, feature_names, forecast_inputs, unsquash
from .onnx_session import open_session

MODEL_NAME = "forecast-ensemble"
FORMAT = "novacron-forecast-ensemble/1"
METADATA_KEY = "novacron"
MEMBERS = ("random_forest", "gradient_boosting", "ridge")
ALL_TYPES = "*"
"""The weights and quantiles group that serves series of no (or an unfitted) type."""
_CHUNK_ROWS = 4096


@dataclass(frozen=True, slots=True)
class ForecastMetadata:
    """Everything serving needs besides the ONNX graph (the file's ``novacron`` property).

    Attributes:
        lookback: values per history.
        horizons: steps ahead, ascending.
        members: ONNX output names, one ``(batch, len(horizons))`` output each.
        features: the input columns (must equal :func:`feature_names` of this code).
        weights: group -> ``(len(members), len(horizons))`` weights, columns summing to 1.
        q_low, q_high: group -> ``(len(horizons),)`` residual quantiles in volatility units.
        interval_level: nominal coverage of ``[lower, upper]``.
        confidence_k: the ``k`` of ``confidence = 1 / (1 + k * u)``.
        squash: the ``c`` of :func:`models.forecast_features.squash` the members learned.
        max_output: the largest squashed change in training; outputs are clipped to
            ``±max_output`` (the Ridge member can extrapolate far on unusual windows).
        extra: what training recorded (dataset, seed, ...), not read by serving.
    """

    lookback: int
    horizons: tuple[int, ...]
    members: tuple[str, ...]
    features: tuple[str, ...]
    weights: Mapping[str, np.ndarray]
    q_low: Mapping[str, np.ndarray]
    q_high: Mapping[str, np.ndarray]
    interval_level: float
    confidence_k: float
    squash: float
    max_output: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "lookback": self.lookback,
                "horizons": list(self.horizons),
                "members": list(self.members),
                "features": list(self.features),
                "weights": {g: np.asarray(w).tolist() for g, w in self.weights.items()},
                "interval": {
                    "level": self.interval_level,
                    "q_low": {g: np.asarray(q).tolist() for g, q in self.q_low.items()},
                    "q_high": {g: np.asarray(q).tolist() for g, q in self.q_high.items()},
                },
                "confidence_k": self.confidence_k,
                "squash": self.squash,
                "max_output": self.max_output,
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ForecastMetadata:
        """Parse and check the metadata; a missing or inconsistent field is a ModelError."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                msg = (
                    f"The forecast model's metadata format must be {FORMAT!r}. "
                    f"Got {data.get('format')!r} instead."
                )
                raise ModelError(msg)
            horizons = tuple(int(h) for h in data["horizons"])
            members = tuple(str(m) for m in data["members"])
            interval = data["interval"]
            meta = cls(
                lookback=int(data["lookback"]),
                horizons=horizons,
                members=members,
                features=tuple(str(f) for f in data["features"]),
                weights={g: np.asarray(w, dtype=np.float64) for g, w in data["weights"].items()},
                q_low={g: np.asarray(q, dtype=np.float64) for g, q in interval["q_low"].items()},
                q_high={g: np.asarray(q, dtype=np.float64) for g, q in interval["q_high"].items()},
                interval_level=float(interval["level"]),
                confidence_k=float(data["confidence_k"]),
                squash=float(data["squash"]),
                max_output=float(data["max_output"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = (
                f"The forecast model's metadata is incomplete or malformed ({exc!r}); "
                "re-export it with `novacron train forecast`."
            )
            raise ModelError(msg) from exc
        meta.check()
        return meta

    def check(self) -> None:
        """Refuse metadata this code cannot serve, saying what is wrong."""
        shape = (len(self.members), len(self.horizons))
        problems = []
        if list(self.horizons) != sorted(set(self.horizons)) or min(self.horizons, default=0) < 1:
            problems.append(f"horizons must be ascending positive steps, got {self.horizons}")
        if self.features != feature_names(self.lookback, self.horizons):
            problems.append(
                "its feature layout differs from this version's (retrain it with "
                "`novacron train forecast`)"
            )
        if ALL_TYPES not in self.weights or ALL_TYPES not in self.q_low:
            problems.append(f"the {ALL_TYPES!r} group of weights and quantiles is missing")
        for group, w in self.weights.items():
            if w.shape != shape or not np.allclose(w.sum(axis=0), 1.0) or np.any(w < 0):
                problems.append(f"weights of {group!r} must be {shape} columns summing to 1")
        for group in set(self.q_low) | set(self.q_high):
            lo, hi = self.q_low.get(group), self.q_high.get(group)
            if lo is None or hi is None or lo.shape != hi.shape or lo.shape != shape[1:]:
                problems.append(f"quantiles of {group!r} must be two ({shape[1]},) arrays")
            elif np.any(lo > hi) or not np.all(np.isfinite(lo) & np.isfinite(hi)):
                problems.append(f"quantiles of {group!r} must be finite with q_low <= q_high")
        if not 0.0 < self.interval_level < 1.0 or not self.confidence_k > 0:
            problems.append("interval level must be in (0, 1) and confidence_k > 0")
        if not self.squash > 0 or not self.max_output > 0:
            problems.append(
                f"squash and max_output must be > 0, got {self.squash, self.max_output}"
            )
        if problems:
            msg = "The forecast model's metadata cannot be served: " + "; ".join(problems) + "."
            raise ModelError(msg)


@dataclass(frozen=True, slots=True)
class ForecastArrays:
    """Forecasts of a batch as arrays (what :meth:`OnnxForecaster.forecast_many` wraps).

    Attributes:
        point, lower, upper: ``(k, len(horizons))`` in each series' units.
        confidence: ``(k,)`` in [0, 1].
        weights: ``(k, len(members))`` each member's weight averaged over horizons.
        members: ``(k, len(members), len(horizons))`` each member's forecast, in units.
    """

    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray
    weights: np.ndarray
    members: np.ndarray


class OnnxForecaster:
    """The demand forecast ensemble behind the :class:`streams.capacity.Forecaster` protocol.

    Build it with :meth:`load`; it is an immutable value (a new version is a new object).
    """

    def __init__(
        self, name: str, version: str, session: ort.InferenceSession, metadata: ForecastMetadata
    ) -> None:
        self.name = name
        self.version = version
        self.metadata = metadata
        self.lookback = metadata.lookback
        self.horizons = metadata.horizons
        self.interval_level = metadata.interval_level
        self._session = session
        self._input = _check_session(session, metadata)
        self._groups = {g: i for i, g in enumerate(metadata.weights)}
        self._weights = np.stack(list(metadata.weights.values()))  # (G, M, H)
        lo = [metadata.q_low.get(g, metadata.q_low[ALL_TYPES]) for g in metadata.weights]
        hi = [metadata.q_high.get(g, metadata.q_high[ALL_TYPES]) for g in metadata.weights]
        self._q = np.stack([np.stack(lo), np.stack(hi)])  # (2, G, H)

    @classmethod
    def load(
        cls, path: Path, name: str = MODEL_NAME, version: str = "0", threads: int = 1
    ) -> OnnxForecaster:
        """Load and check a model file; bad metadata or a wrong graph fails here."""
        session, text = open_session(
            Path(path),
            METADATA_KEY,
            "a forecast model exported by `novacron train forecast`",
            threads,
        )
        return cls(name, version, session, ForecastMetadata.from_json(text))

    def member_outputs(self, inputs: ForecastInputs) -> np.ndarray:
        """``(k, members, horizons)``: each member's raw output (a squashed change).

        A row's output does not depend on the rows it is batched with, so the worker and
        replay (which batch differently) publish the same figures: onnxruntime's matrix
        kernels give a one-row batch other last digits than a larger one, so a lone row
        runs with a copy of itself; and sessions run on one thread (:meth:`load`), since
        several threads split the trees' sums differently by batch size.
        """
        k = inputs.x.shape[0]
        out = np.empty((k, len(self.metadata.members), len(self.horizons)))
        for start in range(0, k, _CHUNK_ROWS):
            rows = inputs.x[start : start + _CHUNK_ROWS]
            n = len(rows)
            if n == 1:
                rows = np.repeat(rows, 2, axis=0)
            part = self._session.run(list(self.metadata.members), {self._input: rows})
            out[start : start + n] = np.stack(part, axis=1)[:n]
        return out

    def forecast_arrays(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> ForecastArrays:
        """Forecasts of ``(k, >= lookback)`` histories (the last ``lookback`` values used)."""
        h, ts, step = self._check_inputs(histories, last_ts, step_s, workload_types)
        inputs = forecast_inputs(h, ts, step, self.horizons)
        scale = inputs.scale[:, None]
        raw = self.member_outputs(inputs)
        bound = self.metadata.max_output
        change = unsquash(np.clip(raw, -bound, bound), self.metadata.squash)
        members = change * scale[:, None] + inputs.anchor[:, None, None]
        default = self._groups[ALL_TYPES]
        group = np.fromiter(
            (self._groups.get(t or ALL_TYPES, default) for t in workload_types), np.intp, len(h)
        )
        weights = self._weights[group]  # (k, M, H)
        point = np.einsum("kmh,kmh->kh", weights, members)
        spread = np.sqrt(np.einsum("kmh,kmh->kh", weights, (members - point[:, None]) ** 2))
        lower = point + self._q[0, group] * scale
        upper = point + self._q[1, group] * scale
        u = ((upper - lower) / 2 + spread).mean(axis=1)
        confidence = 1.0 / (1.0 + self.metadata.confidence_k * u)
        level = inputs.level[:, None]
        point, lower, upper = point * level, lower * level, upper * level
        members = members * level[:, None]
        floor = np.where(h.min(axis=1) >= 0, 0.0, -np.inf)[:, None]
        point, lower = np.maximum(point, floor), np.maximum(lower, floor)
        upper = np.maximum(upper, point)
        return ForecastArrays(point, lower, upper, confidence, weights.mean(axis=2), members)

    def forecast_many(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> list[DemandForecast]:
        """One :class:`DemandForecast` per history (see :meth:`forecast_arrays`)."""
        a = self.forecast_arrays(histories, last_ts, step_s, workload_types)
        names = self.metadata.members
        return [
            DemandForecast(
                self.horizons,
                a.point[i],
                a.lower[i],
                a.upper[i],
                self.interval_level,
                float(a.confidence[i]),
                dict(zip(names, a.weights[i].tolist(), strict=True)),
            )
            for i in range(a.point.shape[0])
        ]

    def _check_inputs(
        self,
        histories: np.ndarray,
        last_ts: np.ndarray,
        step_s: np.ndarray,
        workload_types: Sequence[str | None],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = np.asarray(histories, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] < self.lookback:
            msg = (
                f"The histories given to {self.name}:{self.version} must be a (k, >= "
                f"{self.lookback}) array. Got shape {h.shape} instead."
            )
            raise ModelError(msg)
        h = h[:, -self.lookback :]
        k = h.shape[0]
        ts = np.broadcast_to(np.asarray(last_ts, dtype=np.float64), (k,))
        step = np.broadcast_to(np.asarray(step_s, dtype=np.float64), (k,))
        if len(workload_types) != k:
            msg = f"Expected {k} workload types (one per history). Got {len(workload_types)}."
            raise ModelError(msg)
        bad = ~np.isfinite(h).all(axis=1) | ~np.isfinite(ts) | ~(step > 0)
        if bad.any():
            msg = (
                f"Histories, last_ts and step_s must be finite (step_s > 0); rows "
                f"{np.flatnonzero(bad)[:5].tolist()} are not. Fill or drop them first."
            )
            raise ModelError(msg)
        return h, ts, step


def _check_session(session: ort.InferenceSession, metadata: ForecastMetadata) -> str:
    """The input name, after checking the graph's input and outputs match the metadata."""
    inputs = session.get_inputs()
    n_features = len(metadata.features)
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [n_features]:
        got = [(i.name, i.shape) for i in inputs]
        msg = f"The forecast model must have one input (batch, {n_features}). Got {got}."
        raise ModelError(msg)
    outputs = {o.name: o.shape for o in session.get_outputs()}
    missing = [m for m in metadata.members if m not in outputs]
    wrong = [
        m for m in metadata.members if m in outputs and outputs[m][1:] != [len(metadata.horizons)]
    ]
    if missing or wrong:
        msg = (
            f"The forecast model's graph must output {list(metadata.members)} of shape "
            f"(batch, {len(metadata.horizons)}). Missing {missing}, wrong shape {wrong}; "
            f"outputs are {outputs}."
        )
        raise ModelError(msg)
    return str(inputs[0].name)
