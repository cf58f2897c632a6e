"""Synthetic telemetry: ranges, reproducibility and the structure a forecaster learns."""

from __future__ import annotations

import numpy as np
import pytest

from models.synthetic import LINK_COLUMNS, LinkTrafficSource, synthesize_link_series
from models.synthetic_hosts import (
    HOST_METRICS,
    HOST_PROFILES,
    HostTrafficSource,
    synthesize_host_series,
)
from streams.errors import ConfigError

BW, LAT, LOSS, JIT, THR = range(5)

RANGES = {
    "datacenter": {BW: (1000.0, 10000.0), LAT: (1.0, 10.0), LOSS: (0.0, 0.001)},
    "internet": {BW: (100.0, 900.0), LAT: (50.0, 500.0), LOSS: (0.0, 2.0)},
}
DAY_S = 86_400


def _runs(mask: np.ndarray, min_len: int) -> int:
    """Number of runs of True at least ``min_len`` long."""
    padded = np.concatenate([[False], mask, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    lengths = edges[1::2] - edges[0::2]
    return int((lengths >= min_len).sum())


def _rolling_median(x: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    padded = np.pad(x, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)


def _utilisation(x: np.ndarray) -> np.ndarray:
    # throughput = bandwidth * (0.6 + 0.35 * utilisation + noise)
    return (x[:, THR] / x[:, BW] - 0.6) / 0.35


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
@pytest.mark.parametrize("step_s", [1.0, 60.0])
def test_link_values_stay_in_the_mode_ranges(mode: str, step_s: float) -> None:
    x = synthesize_link_series(mode, 50_000, step_s=step_s, seed=11)
    assert x.shape == (50_000, len(LINK_COLUMNS))
    assert np.isfinite(x).all()
    for col, (lo, hi) in RANGES[mode].items():
        assert x[:, col].min() >= lo, LINK_COLUMNS[col]
        assert x[:, col].max() <= hi, LINK_COLUMNS[col]
    assert (x[:, JIT] >= 0).all()
    if mode == "datacenter":
        assert x[:, LOSS].max() < 0.001
    ratio = x[:, THR] / x[:, BW]
    assert ratio.min() >= 0.6 - 1e-9
    assert ratio.max() <= 0.95 + 1e-9


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_link_values_use_the_range_not_a_constant(mode: str) -> None:
    x = synthesize_link_series(mode, 20_000, step_s=60.0, seed=2)
    lo, hi = RANGES[mode][BW]
    spread = np.percentile(x[:, BW], 95) - np.percentile(x[:, BW], 5)
    assert spread > 0.2 * (hi - lo)
    assert x[:, LOSS].std() > 0


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_same_seed_same_series_and_rng_matches_seed(mode: str) -> None:
    a = synthesize_link_series(mode, 3000, seed=42)
    b = synthesize_link_series(mode, 3000, seed=42)
    c = synthesize_link_series(mode, 3000, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_different_seeds_differ(mode: str) -> None:
    a = synthesize_link_series(mode, 500, seed=1)
    b = synthesize_link_series(mode, 500, seed=2)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_diurnal_cycle_is_the_dominant_frequency(mode: str) -> None:
    step_s = 60.0
    n = 14 * DAY_S // int(step_s)  # two weeks of minutes
    bw = synthesize_link_series(mode, n, step_s=step_s, seed=5)[:, BW]
    power = np.abs(np.fft.rfft(bw - bw.mean()))
    peak = int(np.argmax(power[1:])) + 1
    assert n / peak == pytest.approx(DAY_S / step_s, rel=0.05)


def test_diurnal_period_scales_with_step() -> None:
    # at 10 s per sample a day is 8640 rows; lag-autocorrelation is high a day
    # apart and negative half a day apart
    bw = synthesize_link_series("internet", 8640 * 4, step_s=10.0, seed=8)[:, BW]
    z = bw - bw.mean()

    def acf(lag: int) -> float:
        return float(np.dot(z[:-lag], z[lag:]) / np.dot(z, z))

    assert acf(8640) > 0.15
    assert acf(4320) < -0.2


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_noise_is_autocorrelated(mode: str) -> None:
    x = synthesize_link_series(mode, 20_000, step_s=1.0, seed=3)
    bw = x[:, BW]
    lag1 = np.corrcoef(bw[:-1], bw[1:])[0, 1]
    assert lag1 > 0.9


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_bursts_raise_utilisation_and_latency_for_a_while(mode: str) -> None:
    x = synthesize_link_series(mode, 20_000, step_s=1.0, seed=9)
    util = _utilisation(x)
    excess = util - _rolling_median(util, 601)
    bursts = _runs(excess > 0.15, min_len=5)
    assert bursts >= 5  # about one every 10 minutes over 5.5 hours
    in_burst = excess > 0.15
    assert x[in_burst, LAT].mean() > x[~in_burst, LAT].mean()
    assert x[in_burst, BW].mean() < x[~in_burst, BW].mean()


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_regime_changes_shift_the_level_for_hours(mode: str) -> None:
    step_s = 60.0
    x = synthesize_link_series(mode, 14 * 1440, step_s=step_s, seed=4)
    # dividing out the utilisation term leaves capacity: regime level times small noise
    capacity = np.log(x[:, BW] / (1.0 - 0.65 * np.clip(_utilisation(x), 0.02, 0.97)))
    hourly = capacity[: len(capacity) // 60 * 60].reshape(-1, 60).mean(axis=1)
    jumps = np.abs(np.diff(hourly))
    assert (jumps > 0.15).sum() >= 5
    # most hours continue the level of the previous hour: shifts last a while
    assert np.median(jumps) < 0.08


def test_bad_mode_raises_in_house_style() -> None:
    with pytest.raises(ConfigError) as info:
        synthesize_link_series("dc", 10, seed=0)
    assert str(info.value) == (
        "The 'mode' parameter of synthesize_link_series must be one of "
        "{'datacenter', 'internet'}. Got 'dc' instead."
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n": -1}, "The 'n' parameter of synthesize_link_series must be an int >= 0"),
        ({"n": 10, "step_s": 0.0}, "The 'step_s' parameter of synthesize_link_series"),
        ({"n": 10, "seed": 1, "rng": np.random.default_rng(1)}, "either 'seed' or 'rng'"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        synthesize_link_series("internet", **kwargs)


def test_zero_samples_is_an_empty_array() -> None:
    assert synthesize_link_series("internet", 0, seed=0).shape == (0, 5)


@pytest.mark.parametrize("profile", sorted(HOST_PROFILES))
def test_host_metrics_in_range(profile: str) -> None:
    m = synthesize_host_series(5000, seed=6, profile=profile)
    assert tuple(sorted(m)) == tuple(sorted(HOST_METRICS))
    for name, values in m.items():
        assert values.shape == (5000,)
        assert np.isfinite(values).all(), name
        assert values.min() >= 0.0, name
    assert m["cpu_pct"].max() <= 100.0
    assert m["mem_pct"].max() <= 100.0


def test_host_series_has_a_daily_cycle_and_is_reproducible() -> None:
    a = synthesize_host_series(14 * 1440, seed=12)
    b = synthesize_host_series(14 * 1440, seed=12)
    np.testing.assert_array_equal(a["cpu_pct"], b["cpu_pct"])
    req = a["requests_per_s"]
    power = np.abs(np.fft.rfft(req - req.mean()))
    assert len(req) / (int(np.argmax(power[1:])) + 1) == pytest.approx(1440, rel=0.05)


def test_bad_host_profile_raises_in_house_style() -> None:
    with pytest.raises(ConfigError) as info:
        synthesize_host_series(10, profile="gpu")
    assert str(info.value) == (
        "The 'profile' parameter of synthesize_host_series must be one of "
        "{'batch', 'database', 'idle', 'web'}. Got 'gpu' instead."
    )


def test_start_ts_aligns_the_daily_peak_to_the_afternoon() -> None:
    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    x = synthesize_link_series("internet", 14 * 1440, step_s=60.0, seed=1, start_ts=midnight)
    util = _utilisation(x).reshape(14, 1440).mean(axis=0)
    busiest_hour = int(np.argmax(util.reshape(24, 60).mean(axis=1)))
    assert 12 <= busiest_hour <= 16


@pytest.mark.parametrize("mode", ["datacenter", "internet"])
def test_link_source_is_reproducible_and_seamless(mode: str) -> None:
    a = LinkTrafficSource(mode, seed=21, chunk_size=100).take(20_000)
    b = LinkTrafficSource(mode, seed=21, chunk_size=100).take(20_000)
    np.testing.assert_array_equal(a, b)
    lo, hi = RANGES[mode][BW]
    assert a[:, BW].min() >= lo
    assert a[:, BW].max() <= hi
    steps = np.abs(np.diff(a[:, BW]))
    seams = steps[99::100]  # from the last row of a chunk to the first of the next
    assert seams.mean() < 1.5 * steps.mean()


def test_host_source_rows_follow_metric_order() -> None:
    src = HostTrafficSource(seed=4, profile="web", chunk_size=50)
    rows = src.take(120)
    assert rows.shape == (120, len(HOST_METRICS))
    metrics = src.next_metrics()
    assert list(metrics) == list(HOST_METRICS)
    assert 0.0 <= metrics["cpu_pct"] <= 100.0


def test_source_rejects_bad_mode_and_chunk_size() -> None:
    with pytest.raises(ConfigError, match="The 'mode' parameter of LinkTrafficSource"):
        LinkTrafficSource("wan")
    with pytest.raises(ConfigError, match="'chunk_size'"):
        LinkTrafficSource("internet", chunk_size=0)
