"""The compiled serving encoding and interval equal the numpy reference used in training."""

from __future__ import annotations

import numpy as np
import pytest

from models import compiled
from models.features import FeatureStats, encode_windows
from models.lstm_predictor import window_volatility
from models.synthetic import synthesize_link_series

STATS = FeatureStats(2.0, 1.5, 1.0, 0.5, 0.1, 0.2, 0.5, 0.3)


def windows(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    series = synthesize_link_series("internet", 400, seed=seed)
    out = np.stack([series[i : i + 60] for i in range(0, 320, 8)])
    out[rng.random(out.shape) < 0.05] = np.nan  # missing measures here and there
    out[:5, :, :4] = np.nan  # throughput-only probes
    out[5:8, :25] = np.nan  # left padding of short windows
    out[8, :, 0] = np.nan
    out[8, :, 4] = np.nan  # no bandwidth at all
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_encoding_equals_the_reference(seed: int) -> None:
    w = windows(seed)
    ref_x, ref_last = encode_windows(w, STATS)
    x, last = compiled.encode(w, compiled.stats_array(STATS))
    np.testing.assert_allclose(x, ref_x, atol=2e-6, rtol=1e-5)
    np.testing.assert_array_equal(np.isnan(last), np.isnan(ref_last))
    np.testing.assert_allclose(last[~np.isnan(last)], ref_last[~np.isnan(ref_last)])


@pytest.mark.parametrize("steps", [4, 10])
def test_compiled_interval_equals_the_reference(steps: int) -> None:
    w = windows(4)
    x, last = encode_windows(w, STATS)
    out = np.random.default_rng(0).normal(0, 0.1, len(w))
    point, lower, upper, conf = compiled.interval(out, last, x, -1.2, 1.3, 0.01, steps)
    scale = window_volatility(x, 0.01, steps)
    ok = np.isfinite(last)
    np.testing.assert_allclose(point[ok], np.exp(last + out)[ok])
    np.testing.assert_allclose(lower[ok], np.exp(last + out - 1.2 * scale)[ok])
    np.testing.assert_allclose(upper[ok], np.exp(last + out + 1.3 * scale)[ok])
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.isnan(point[~ok]).all() and (conf[~ok] == 0).all()
