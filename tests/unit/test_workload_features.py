"""Workload features: seasonality checked by the ACF, trend, burstiness, resource mix,
gaps, the compiled twin against the numpy reference, and the pattern rules."""

from __future__ import annotations

import numpy as np
import pytest

from models.synthetic_patterns import pattern_host, pattern_series
from models.synthetic_workloads import HELD_OUT, TRAIN, SyntheticHost, generate_hosts
from models.workload_features import (
    FEATURE_NAMES,
    RESOURCES,
    feature_dict,
    features_many,
    history_features,
    pattern_type,
)
from streams.capacity import HOST_METRICS, PATTERN_TYPES
from streams.errors import ConfigError, ModelError

N = 1440


def host(**columns: np.ndarray) -> np.ndarray:
    """A history with the given metrics (by short name), NaN elsewhere."""
    names = {"cpu": 0, "mem": 1, "disk": 2, "net_in": 3, "net_out": 4, "requests": 5}
    length = len(next(iter(columns.values())))
    out = np.full((length, len(HOST_METRICS)), np.nan)
    for name, values in columns.items():
        out[:, names[name]] = values
    return out


def features(history: np.ndarray, step_s: float = 60.0) -> dict[str, float]:
    return feature_dict(history_features(history, step_s))


@pytest.mark.parametrize("period", [12, 60, 97, 240])
def test_a_sine_gives_its_period_with_high_confidence_and_the_acf_confirms_it(
    period: int,
) -> None:
    t = np.arange(N)
    f = features(host(cpu=50 + 30 * np.sin(2 * np.pi * t / period)), step_s=30.0)
    assert abs(f["period_samples"] - period) <= max(1.0, 0.01 * period)
    assert f["period_s"] == pytest.approx(30.0 * f["period_samples"])
    assert f["seasonal_confidence"] > 0.9
    assert f["seasonal_acf"] > 0.9


@pytest.mark.parametrize("seed", range(5))
def test_white_noise_has_low_seasonal_confidence(seed: int) -> None:
    noise = np.random.default_rng(seed).normal(50, 10, N)
    f = features(host(cpu=noise, mem=noise[::-1] * 0 + 40 + noise / 10))
    assert f["seasonal_confidence"] < 0.2


def test_a_cron_spike_train_gives_the_cron_period_not_a_harmonic() -> None:
    t = np.arange(N)
    rng = np.random.default_rng(3)
    cpu = 5 + 80 * (t % 45 < 2) + rng.normal(0, 1, N)
    f = features(host(cpu=cpu, mem=np.full(N, 40.0)))
    assert f["period_samples"] == 45
    assert f["seasonal_confidence"] > 0.7


def test_a_period_the_acf_does_not_confirm_gets_low_confidence() -> None:
    # One burst of a sine in the middle: the FFT has a peak, the lag-60 ACF is weak.
    t = np.arange(N)
    rng = np.random.default_rng(1)
    cpu = 50 + rng.normal(0, 5, N)
    cpu[700:760] += 30 * np.sin(2 * np.pi * t[700:760] / 60)
    assert features(host(cpu=cpu))["seasonal_confidence"] < 0.3


def test_a_ramp_trends_up_and_a_fall_trends_down() -> None:
    t = np.arange(N)
    noise = np.random.default_rng(0).normal(0, 1, N)
    up = features(host(cpu=10 + 40 * t / N + noise))
    down = features(host(cpu=50 - 40 * t / N + noise))
    flat = features(host(cpu=30 + noise))
    assert up["trend_direction"] == 1 and up["trend_score"] > 0.5 and up["trend_slope"] > 0
    assert down["trend_direction"] == -1 and down["trend_score"] < -0.5
    assert flat["trend_direction"] == 0 and abs(flat["trend_score"]) < 0.05
    assert up["trend_r2"] > 0.9 > flat["trend_r2"]


def test_burstiness_of_a_constant_is_minus_one_and_of_sparse_bursts_positive() -> None:
    assert features(host(cpu=np.full(N, 37.0)))["burstiness"] == -1.0
    bursts = np.where(np.random.default_rng(2).uniform(size=N) < 0.03, 90.0, 0.5)
    assert features(host(cpu=bursts))["burstiness"] > 0.3


def test_gaps_do_not_break_anything_and_change_little() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(N)
    full = host(
        cpu=50 + 20 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 2, N),
        mem=60 + rng.normal(0, 1, N),
        disk=20 + rng.exponential(2, N),
    )
    gappy = full.copy()
    gappy[100:160] = np.nan  # a run of missing rows
    gappy[rng.uniform(size=gappy.shape) < 0.05] = np.nan  # scattered missing values
    gappy[:7] = np.nan  # the oldest rows missing
    gappy[-3:] = np.nan  # and the newest
    a, b = features(full), features(gappy)
    assert all(np.isfinite(list(b.values())))
    assert b["period_samples"] == a["period_samples"] == 60
    assert b["cpu_level"] == pytest.approx(a["cpu_level"], rel=0.02)
    assert b["mem_level"] == pytest.approx(a["mem_level"], rel=0.02)
    assert b["seasonal_confidence"] > 0.8


@pytest.mark.parametrize(
    ("columns", "dominant"),
    [
        ({"cpu": 85.0, "mem": 30.0, "disk": 5.0, "net_in": 10.0}, "cpu"),
        ({"cpu": 20.0, "mem": 92.0, "disk": 5.0, "net_in": 10.0}, "memory"),
        ({"cpu": 25.0, "mem": 40.0, "disk": 450.0, "net_in": 10.0}, "disk"),
        ({"cpu": 30.0, "mem": 40.0, "disk": 5.0, "net_in": 2500.0, "net_out": 900.0}, "network"),
    ],
)
def test_the_resource_mix_picks_the_dominant_resource(
    columns: dict[str, float], dominant: str
) -> None:
    rng = np.random.default_rng(5)
    history = host(**{k: v * (1 + 0.02 * rng.standard_normal(300)) for k, v in columns.items()})
    f = features(history)
    shares = [f[f"share_{r}"] for r in RESOURCES]
    assert RESOURCES[int(f["dominant_resource"])] == dominant
    assert RESOURCES[int(np.argmax(shares))] == dominant
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)


def test_an_absent_metric_is_told_from_a_zero_one() -> None:
    f = features(host(cpu=np.full(200, 40.0), requests=np.zeros(200)))
    assert (f["requests_present"], f["requests_level"], f["requests_cv"]) == (1.0, 0.0, 0.0)
    assert (f["disk_present"], f["disk_level"], f["disk_cv"]) == (0.0, -1.0, -1.0)


def test_short_empty_and_unreported_histories_give_finite_vectors() -> None:
    vectors = features_many(
        [np.zeros((0, 6)), np.ones((1, 6)), np.ones((10, 6)), np.full((50, 6), np.nan)],
        [60.0, 60.0, 10.0, 300.0],
    )
    assert vectors.shape == (4, len(FEATURE_NAMES)) and np.isfinite(vectors).all()
    short = feature_dict(vectors[2])
    assert short["period_samples"] == 0 and short["seasonal_confidence"] == 0
    assert short["cpu_present"] == 1.0 and short["span_s"] == 100.0
    nothing = feature_dict(vectors[3])
    assert nothing["dominant_resource"] == -1 and nothing["cpu_level"] == -1


def test_bad_histories_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ModelError, match=r"\(n, 6\).*Got shape \(10, 5\)"):
        history_features(np.ones((10, 5)), 60.0)
    with pytest.raises(ModelError, match="step_s.*> 0"):
        history_features(np.ones((10, 6)), 0.0)
    with pytest.raises(ModelError, match="one step per history"):
        features_many([np.ones((10, 6))], [60.0, 60.0])


def test_the_compiled_twin_equals_the_numpy_reference() -> None:
    hosts = generate_hosts(6, seed=21, params=HELD_OUT) + generate_hosts(3, seed=22)
    rng = np.random.default_rng(23)
    histories = [h.history for h in hosts]
    steps = [h.step_s for h in hosts]
    for pattern in PATTERN_TYPES:
        histories.append(pattern_host(pattern, 1440, 60.0, rng))
        steps.append(60.0)
    histories += [np.ones((10, 6)), np.full((40, 6), np.nan), np.zeros((0, 6))]
    steps += [60.0, 60.0, 60.0]
    reference = features_many(histories, steps, compiled=False)
    compiled = features_many(histories, steps)
    np.testing.assert_allclose(compiled, reference, rtol=1e-6, atol=1e-9)


def test_a_batch_equals_its_hosts_one_by_one() -> None:
    hosts = generate_hosts(2, seed=31, params=TRAIN)
    batch = features_many([h.history for h in hosts], [h.step_s for h in hosts])
    single = np.vstack([history_features(h.history, h.step_s) for h in hosts])
    np.testing.assert_array_equal(batch, single)


@pytest.mark.parametrize("pattern", PATTERN_TYPES)
def test_the_pattern_rules_name_generated_series(pattern: str) -> None:
    rng = np.random.default_rng(PATTERN_TYPES.index(pattern))
    named = []
    for length, step in [(1440, 60.0), (720, 300.0), (1440, 10.0), (600, 60.0)] * 5:
        if pattern == "SEASONAL" and length * step < 3 * 3600:
            length, step = 1440, 60.0
        history = pattern_host(pattern, length, step, rng)
        named.append(pattern_type(features(history, step)))
    assert named.count(pattern) >= 18, named  # at least 90 %


def test_pattern_series_refuses_what_it_cannot_draw() -> None:
    with pytest.raises(ConfigError, match="SEASONAL series needs 3 cycles"):
        pattern_series("SEASONAL", 100, 10.0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="must be one of"):
        pattern_series("WAVY", 100, 10.0, np.random.default_rng(0))


def test_the_generator_is_seeded_and_its_variants_differ() -> None:
    def same(a: list[SyntheticHost], b: list[SyntheticHost]) -> bool:
        pairs = zip(a, b, strict=True)
        return all(np.array_equal(x.history, y.history, equal_nan=True) for x, y in pairs)

    first = generate_hosts(1, seed=8)
    assert same(first, generate_hosts(1, seed=8))
    assert not same(first, generate_hosts(1, seed=9))
    held_out_steps = {h.step_s for h in generate_hosts(10, seed=8, params=HELD_OUT)}
    assert held_out_steps <= set(HELD_OUT.steps) and held_out_steps - set(TRAIN.steps)
    mixed = [h for h in generate_hosts(10, seed=8) if h.mixed_with is not None]
    assert mixed and all(h.mixed_with != h.workload_type and h.mix_share > 0 for h in mixed)
    gappy = generate_hosts(10, seed=8, params=HELD_OUT)
    assert all(np.isnan(h.history).any() for h in gappy)  # every held-out host has gaps
