"""Serve the bandwidth LSTM from ONNX with onnxruntime (no TensorFlow needed).

The artifact is one ONNX file; its ``novacron`` metadata property holds what serving
needs besides the graph: mode, window, encoding statistics and the conformal interval.
Inputs are checked at load, not at the first event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streams.errors import ModelError
from streams.predictor import IntervalForecast

from . import compiled
from .features import CHANNELS, FeatureStats
from .onnx_session import open_session

METADATA_KEY = "novacron"
FORMAT = "novacron-bandwidth-lstm/1"
VOLATILITY_STEPS = 10


def model_name(mode: str) -> str:
    """Registry name of a mode's bandwidth model, also the stem of its ONNX file.

    Examples:
        >>> model_name("internet")
        'bandwidth-lstm-internet'
    """
    return f"bandwidth-lstm-{mode}"


@dataclass(frozen=True, slots=True)
class IntervalSpec:
    """Normalised conformal interval: ``log(next/last)`` in ``out + q * scale``.

    ``scale`` is the window's recent volatility (std of one-step log changes over the
    last ``volatility_steps`` samples, at least ``scale_floor``), so the interval widens
    on a jumpy link and narrows on a steady one. ``q_low``/``q_high`` are quantiles of
    the normalised residuals on the calibration (validation) split. Models exported
    before ``volatility_steps`` was stored used 10.
    """

    level: float
    q_low: float
    q_high: float
    scale_floor: float
    volatility_steps: int = VOLATILITY_STEPS


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """Everything serving needs besides the ONNX graph."""

    mode: str
    window: int
    horizon: int
    min_history: int
    channels: tuple[str, ...]
    stats: FeatureStats
    interval: IntervalSpec
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "mode": self.mode,
                "window": self.window,
                "horizon": self.horizon,
                "min_history": self.min_history,
                "channels": list(self.channels),
                "stats": self.stats.to_dict(),
                "interval": {
                    "level": self.interval.level,
                    "q_low": self.interval.q_low,
                    "q_high": self.interval.q_high,
                    "scale_floor": self.interval.scale_floor,
                    "volatility_steps": self.interval.volatility_steps,
                },
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            msg = f"Model metadata format must be {FORMAT!r}. Got {data.get('format')!r} instead."
            raise ModelError(msg)
        return cls(
            mode=data["mode"],
            window=int(data["window"]),
            horizon=int(data["horizon"]),
            min_history=int(data["min_history"]),
            channels=tuple(data["channels"]),
            stats=FeatureStats.from_dict(data["stats"]),
            interval=IntervalSpec(**data["interval"]),
            extra=data.get("extra", {}),
        )


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The ONNX input the model declares: name and ``(batch, window, channels)``."""

    name: str
    window: int
    channels: int


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """An immutable loaded model: swapping models replaces this value, never mutates it."""

    version: str
    session: ort.InferenceSession
    input_spec: InputSpec


def window_volatility(
    encoded: np.ndarray, floor: float, steps: int = VOLATILITY_STEPS
) -> np.ndarray:
    """Std of one-step log changes of bandwidth over the last ``steps`` of each window.

    Examples:
        >>> x = np.zeros((1, 12, len(CHANNELS)), np.float32)
        >>> x[0, :, 1] = 1.0
        >>> x[0, :, 0] = np.log([1, 2] * 6)
        >>> round(float(window_volatility(x, 0.01)[0]), 3)
        0.731
    """
    rel = encoded[:, -steps - 1 :, 0].astype(np.float64)
    present = encoded[:, -steps - 1 :, 1] > 0
    both = present[:, 1:] & present[:, :-1]
    diffs = np.where(both, np.diff(rel, axis=1), 0.0)
    count = both.sum(axis=1)
    mean = diffs.sum(axis=1) / np.maximum(count, 1)
    var = (np.where(both, diffs - mean[:, None], 0.0) ** 2).sum(axis=1) / np.maximum(count - 1, 1)
    return np.maximum(np.sqrt(var), floor)


class LstmBandwidthPredictor:
    """The LSTM of one mode behind the :class:`BandwidthPredictor` interface.

    ``predict`` takes raw windows ``(B, T, 5)``; windows shorter than the model's are
    left-padded. Rows go through ``session.run`` in chunks of at most ``max_rows_per_run``:
    onnxruntime's LSTM keeps every step's state for the whole batch, so one call on the
    50,000 windows of a batch of 100-sample messages would need about 17 GB for the
    internet model. onnxruntime's memory arena keeps what its largest call needed for the
    life of the session: 64-row calls leave it about 40 MB (internet model) and 13 MB
    (datacenter) where 256-row calls left 75-128 MB and 39 MB, at the same cost per row
    (within the noise of the same measurement); a row's output does not depend on the
    rows it is run with.
    """

    max_rows_per_run = 64

    def __init__(self, name: str, loaded: LoadedModel, metadata: ModelMetadata) -> None:
        self.name = name
        self.version = loaded.version
        self.loaded = loaded
        self.metadata = metadata
        self.mode = metadata.mode
        self.window_steps = metadata.window
        self.min_history = metadata.min_history
        self.horizon_steps = metadata.horizon
        self.interval_level = metadata.interval.level
        self._stats = compiled.stats_array(metadata.stats)
        # Compile the encoding and interval now rather than on the first event.
        self.predict(np.full((1, metadata.window, 5), 100.0))

    @classmethod
    def load(
        cls, path: Path, *, name: str, version: str, threads: int = 0
    ) -> LstmBandwidthPredictor:
        """Load and check an artifact; a wrong input spec fails here, not at serving."""
        session, text = open_session(
            path, METADATA_KEY, "a bandwidth model: export it with `novacron train`", threads
        )
        metadata = ModelMetadata.from_json(text)
        inputs = session.get_inputs()
        if len(inputs) != 1:
            msg = f"The model must have one input (batch, window, channels). Got {len(inputs)}."
            raise ModelError(msg)
        shape = inputs[0].shape
        expected = [metadata.window, len(CHANNELS)]
        if len(shape) != 3 or list(shape[1:]) != expected:
            msg = (
                f"The model input must have shape [batch, {expected[0]}, {expected[1]}]. "
                f"Got {shape}."
            )
            raise ModelError(msg)
        if metadata.channels != CHANNELS:
            msg = (
                f"The model was trained on channels {metadata.channels}; this version of "
                f"NovaCron encodes {CHANNELS}. Retrain it with `novacron train bandwidth`."
            )
            raise ModelError(msg)
        spec = InputSpec(inputs[0].name, metadata.window, len(CHANNELS))
        return cls(name, LoadedModel(version, session, spec), metadata)

    def encode(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's inputs for raw windows (left-padded or cut to the model window)."""
        steps = self.window_steps
        if windows.shape[1] < steps:
            pad = np.full((windows.shape[0], steps - windows.shape[1], windows.shape[2]), np.nan)
            windows = np.concatenate([pad, windows], axis=1)
        return compiled.encode(windows[:, -steps:], self._stats)

    def run(self, encoded: np.ndarray) -> np.ndarray:
        """Raw model output: predicted ``log(next / last)`` per row."""
        spec = self.loaded.input_spec
        step = self.max_rows_per_run
        parts = [
            self.loaded.session.run(None, {spec.name: encoded[start : start + step]})[0]
            for start in range(0, max(encoded.shape[0], 1), step)
        ]
        return np.asarray(np.concatenate(parts), dtype=np.float64).reshape(-1)

    def predict(self, windows: np.ndarray) -> IntervalForecast:
        encoded, last = self.encode(windows)
        spec = self.metadata.interval
        point, lower, upper, confidence = compiled.interval(
            self.run(encoded), last, encoded, spec.q_low, spec.q_high, spec.scale_floor,
            spec.volatility_steps,
        )  # fmt: skip
        return IntervalForecast(point, lower, upper, confidence, spec.level)
