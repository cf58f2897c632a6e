"""Interval calibration: the volatility window is chosen so that every family is covered."""

from __future__ import annotations

import numpy as np

from models.features import CHANNELS
from models.lstm_predictor import ModelMetadata
from models.scoring import calibrate_interval


def family(rng: np.random.Generator, n: int, recent: float, earlier: float) -> np.ndarray:
    """Encoded windows whose last 3 one-step changes have std ``recent``, the rest ``earlier``."""
    steps = np.concatenate([rng.normal(0, earlier, (n, 56)), rng.normal(0, recent, (n, 3))], axis=1)
    x = np.zeros((n, 60, len(CHANNELS)), np.float32)
    x[:, 1:, 0] = np.cumsum(steps, axis=1)
    x[:, :, 1] = 1.0
    return x


def coverage(spec: object, residuals: np.ndarray, x: np.ndarray) -> float:
    from models.lstm_predictor import window_volatility

    z = residuals / window_volatility(x, spec.scale_floor, spec.volatility_steps)  # type: ignore[attr-defined]
    return float(np.mean((z >= spec.q_low) & (z <= spec.q_high)))  # type: ignore[attr-defined]


def test_one_family_keeps_the_default_window_and_nominal_coverage() -> None:
    rng = np.random.default_rng(0)
    x = family(rng, 4000, 0.1, 0.1)
    residuals = rng.normal(0, 0.1, 4000)
    spec = calibrate_interval(residuals, x, np.full(4000, "synthetic", dtype=object), 0.8)
    assert spec.volatility_steps == 10
    assert abs(coverage(spec, residuals, x) - 0.8) < 0.01


def test_families_with_differently_timed_jumps_are_covered_alike() -> None:
    rng = np.random.default_rng(1)
    # A: the next error is as large as the last few steps' jumps, which were larger
    # than earlier ones. B: steady throughout. A 10-step scale under-covers A.
    xa, xb = family(rng, 3000, 0.3, 0.05), family(rng, 3000, 0.1, 0.1)
    ra, rb = rng.normal(0, 0.3, 3000), rng.normal(0, 0.1, 3000)
    x, residuals = np.concatenate([xa, xb]), np.concatenate([ra, rb])
    families = np.array(["a"] * 3000 + ["b"] * 3000, dtype=object)
    spec = calibrate_interval(residuals, x, families, 0.8)
    assert spec.volatility_steps < 10
    assert abs(coverage(spec, ra, xa) - 0.8) < 0.04
    assert abs(coverage(spec, rb, xb) - 0.8) < 0.04
    ten = calibrate_interval(residuals, x, np.full(6000, "one", dtype=object), 0.8)
    assert ten.volatility_steps == 10
    assert abs(coverage(ten, ra, xa) - 0.8) > 0.05  # what the old calibration gave


def test_models_without_a_stored_window_read_as_ten_steps() -> None:
    text = ModelMetadata.from_json(
        '{"format": "novacron-bandwidth-lstm/1", "mode": "internet", "window": 60,'
        ' "horizon": 1, "min_history": 10, "channels": [], "stats": {},'
        ' "interval": {"level": 0.8, "q_low": -1, "q_high": 1, "scale_floor": 0.01}}'
    )
    assert text.interval.volatility_steps == 10
