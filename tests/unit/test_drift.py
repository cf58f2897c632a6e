"""Drift monitor: false alarms, delays, the two tiers, snapshots and resets.

The bounds come from ``bench/drift_calibration.py`` (full run, in
``bench/results/drift_calibration.md``) on the same generators, plus a margin.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from river import drift

from online.drift import INPUT_SETTINGS, RESIDUAL_SETTINGS, DriftMonitor, DriftSettings
from online.drift_streams import Change, level_stream, residual_stream
from streams.errors import ConfigError, ModelError

# River's PageHinkley defaults (delta 0.005, threshold 50, alpha 1 - 1e-4) inside the monitor.
RIVER_DEFAULTS = DriftSettings(
    ph_delta=0.005, ph_threshold=50.0, warning_threshold=20.0, ph_alpha=1 - 1e-4
)
# At most this many confirmed drifts per 100,000 stationary samples (the calibration's
# target; the chosen settings had none in its 800,000 stationary samples).
MAX_STATIONARY_DRIFTS = 1
# Samples from an abrupt change of the log error's mean (>= 0.1) to the drift: the
# benchmark's p90 was 44 (0.1), 26 (0.2 and 0.3).
ABRUPT_BOUND = 80
# Variance x3 of the log error: drift p90 106. Variance x2: warning p90 331, the drift
# missed in 6 of 12 runs; x1.5 is beyond the monitor (drift missed in 8 of 12).
VARIANCE3_BOUND = 200
VARIANCE2_WARNING_BOUND = 500
# Input monitor, level halving: warning p90 41, drift p90 120. A doubling is not in the
# calibration: it must be seen within the halving's drift bound.
HALVING_WARNING_BOUND = 80
HALVING_DRIFT_BOUND = 200
HORIZON = 2_000
SEEDS = range(6)


def events(monitor: DriftMonitor, xs: np.ndarray, *, reset: bool = True) -> list[tuple[int, str]]:
    """(index, event) of every event, resetting after each drift as the caller does."""
    out = []
    for i, x in enumerate(xs.tolist()):
        event = monitor.update(x)
        if event is not None:
            out.append((i, event))
            if event == "drift" and reset:
                monitor.reset()
    return out


def change_at(seed: int) -> int:
    return int(np.random.default_rng(seed).integers(1_000, 3_000))


def first_after(found: list[tuple[int, str]], at: int, kind: str) -> int | None:
    return next((i for i, e in found if e == kind and i >= at), None)


def test_stationary_residuals_raise_at_most_the_calibrated_false_alarms() -> None:
    # The benchmark's second stationary stream (the change streams' noise level).
    x = residual_stream(100_000, seed=10_001, sd=0.05)
    drifts = [i for i, e in events(DriftMonitor(RESIDUAL_SETTINGS), x) if e == "drift"]
    assert len(drifts) <= MAX_STATIONARY_DRIFTS
    # River's PageHinkley defaults in the same monitor fail it by two orders of magnitude.
    river = [i for i, e in events(DriftMonitor(RIVER_DEFAULTS), x) if e == "drift"]
    assert len(river) > 50


def test_warnings_stay_latched_for_the_hold() -> None:
    x = residual_stream(100_000, seed=10_001, sd=0.05)
    warnings = [i for i, e in events(DriftMonitor(RESIDUAL_SETTINGS), x) if e == "warning"]
    assert warnings, "the stream has warnings to check"
    assert all(
        b - a > RESIDUAL_SETTINGS.warning_hold for a, b in zip(warnings, warnings[1:], strict=False)
    )


@pytest.mark.parametrize("size", [0.1, 0.3])
def test_abrupt_change_is_confirmed_within_the_bound_after_a_warning(size: float) -> None:
    warned_first = 0
    for seed in SEEDS:
        at = change_at(seed)
        x = residual_stream(at + 2_000, seed=seed, change=Change("abrupt", at, size))
        monitor = DriftMonitor(RESIDUAL_SETTINGS)
        found = events(monitor, x, reset=False)
        confirmed = first_after(found, at, "drift")
        assert confirmed is not None and confirmed - at <= ABRUPT_BOUND, (seed, found)
        warned = first_after(found, at, "warning")
        # A warning of this change came first, or none did and the drift is its warning.
        assert warned is None or warned < confirmed
        evidence = monitor.evidence()
        assert int(evidence["seen"]) == confirmed + 1  # values counted, the drift's included
        if warned is not None:
            assert evidence["warned_at"] == warned + 1
        warned_first += warned is not None
        assert [e for i, e in found if at <= i < confirmed].count("warning") <= 1
    assert warned_first >= len(SEEDS) - 1


def test_river_default_page_hinkley_is_too_slow_for_the_abrupt_bound() -> None:
    at = change_at(0)
    x = residual_stream(at + 2_000, seed=0, change=Change("abrupt", at, 0.1))
    ph = drift.PageHinkley()
    alarms = []
    for i, v in enumerate(x.tolist()):
        ph.update(v)
        if ph.drift_detected:
            alarms.append(i)
    assert not any(at <= i <= at + ABRUPT_BOUND for i in alarms)


def test_variance_only_changes() -> None:
    within = warned_within = 0
    for seed in SEEDS:
        at = change_at(seed)
        x3 = residual_stream(at + 2_000, seed=seed, change=Change("variance", at, 3.0))
        confirmed = first_after(events(DriftMonitor(RESIDUAL_SETTINGS), x3), at, "drift")
        assert confirmed is not None and confirmed - at < HORIZON, seed
        within += confirmed - at <= VARIANCE3_BOUND
        # x2 is warned about; its confirmation is not guaranteed within 2,000 samples.
        x2 = residual_stream(at + 2_000, seed=seed, change=Change("variance", at, 2.0))
        found = events(DriftMonitor(RESIDUAL_SETTINGS), x2)
        first = min(i for i, e in found if i >= at)
        assert first - at < HORIZON, (seed, found)
        warned_within += first - at <= VARIANCE2_WARNING_BOUND
    # p90 bounds: one run in ten is later (x3: 308 samples on seed 3; x2: 504 on seed 5).
    assert within >= len(SEEDS) - 1
    assert warned_within >= len(SEEDS) - 1


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_input_monitor_warns_on_a_level_change_either_way(factor: float) -> None:
    for seed in SEEDS:
        at = change_at(seed)
        x = level_stream(at + 2_000, seed=seed, change=Change("abrupt", at, factor))
        found = events(DriftMonitor(INPUT_SETTINGS), x)
        warned = first_after(found, at, "warning") or first_after(found, at, "drift")
        bound = HALVING_WARNING_BOUND if factor == 0.5 else HALVING_DRIFT_BOUND
        assert warned is not None and warned - at <= bound, (seed, found)
        if factor == 0.5:
            confirmed = first_after(found, at, "drift")
            assert confirmed is not None and confirmed - at <= HALVING_DRIFT_BOUND, seed


def test_stationary_level_raises_few_input_events() -> None:
    x = level_stream(100_000, seed=10_001, sd=0.2)
    found = events(DriftMonitor(INPUT_SETTINGS), x)
    assert [e for _, e in found].count("drift") <= MAX_STATIONARY_DRIFTS
    assert [e for _, e in found].count("warning") <= 20


def test_snapshot_round_trip_continues_exactly() -> None:
    at = 1_500
    x = residual_stream(3_000, seed=3, change=Change("gradual", at, 0.3)).tolist()
    for cut in (50, 1_000, at + 150):  # warming up, monitoring, warning latched
        original = DriftMonitor(RESIDUAL_SETTINGS)
        for v in x[:cut]:
            original.update(v)
        blob = original.dumps()
        restored = DriftMonitor.loads(blob)
        assert restored.seen == original.seen == cut
        assert restored.evidence() == original.evidence()
        rest = np.asarray(x[cut:])
        assert events(restored, rest, reset=False) == events(original, rest, reset=False)
        assert restored.evidence() == original.evidence()
        assert len(blob) < 4_096


def test_a_snapshot_written_before_the_compact_state_continues_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Links' states in Redis written by a worker before the monitor had its own
    ``__getstate__`` (Python's default: a dict of the slots) load and continue exactly;
    the compact state names the shipped settings instead of pickling them."""
    x = residual_stream(3_000, seed=5, change=Change("abrupt", 1_500, 0.3)).tolist()
    for settings in (RESIDUAL_SETTINGS, INPUT_SETTINGS, RIVER_DEFAULTS):
        original = DriftMonitor(settings)
        for v in x[:1_000]:
            original.update(v)
        compact = original.dumps()
        with monkeypatch.context() as m:
            m.delattr(DriftMonitor, "__getstate__")
            old = original.dumps()
        assert old != compact
        assert len(compact) < len(old)
        rest = np.asarray(x[1_000:])
        want = events(original, rest, reset=False)
        for blob in (old, compact):
            restored = DriftMonitor.loads(blob)
            assert restored.settings == settings
            assert events(restored, rest, reset=False) == want
            assert restored.evidence() == original.evidence()


def test_snapshot_of_another_object_is_refused() -> None:
    with pytest.raises(ModelError, match="drift monitor snapshot"):
        DriftMonitor.loads(b"\x80\x05N.")  # pickle of None


def test_non_finite_values_are_ignored() -> None:
    x = residual_stream(3_000, seed=4, change=Change("abrupt", 1_500, 0.3))
    holey = np.insert(x, [10, 200, 1_600, 1_600], [math.nan, math.inf, -math.inf, math.nan])
    clean, dirty = DriftMonitor(RESIDUAL_SETTINGS), DriftMonitor(RESIDUAL_SETTINGS)
    expected = [e for _, e in events(clean, x, reset=False)]
    got = [e for _, e in events(dirty, holey, reset=False)]
    assert got == expected and "drift" in got
    assert dirty.seen == clean.seen
    assert DriftMonitor().update(math.nan) is None


def test_after_a_drift_values_wait_for_reset_which_starts_afresh() -> None:
    x = residual_stream(4_000, seed=5, change=Change("abrupt", 1_500, 0.3))
    monitor = DriftMonitor(RESIDUAL_SETTINGS)
    found = events(monitor, x[:2_000], reset=False)
    assert found[-1][1] == "drift"
    evidence = monitor.evidence()
    assert evidence["tier"] == "drift" and evidence["detector"] == "page_hinkley"
    assert float(evidence["mean_after"]) > float(evidence["mean_before"])
    json.dumps(evidence)
    assert all(monitor.update(v) is None for v in x[2_000:2_500].tolist())
    assert monitor.evidence() == evidence
    monitor.reset()
    assert monitor.seen == 0 and monitor.evidence()["tier"] == "none"
    tail = x[2_500:]
    assert events(monitor, tail) == events(DriftMonitor(RESIDUAL_SETTINGS), tail)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"mode": "sideways"}, "'mode' of DriftSettings must be one of"),
        ({"confirm": "vote"}, "'confirm' of DriftSettings must be one of"),
        ({"warning_threshold": 60.0}, "warning_threshold <= ph_threshold"),
        ({"clip": 0.0}, "'clip' of DriftSettings must be > 0"),
        ({"warmup": -1}, "warmup >= 0"),
    ],
)
def test_settings_are_checked(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DriftSettings(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("confirm", ["adwin", "either", "both"])
def test_adwin_confirmation_counts_only_the_watched_direction(confirm: str) -> None:
    settings = DriftSettings(confirm=confirm)
    better = residual_stream(4_000, seed=6, sd=0.1)
    better[2_000:] *= 0.2  # the model got better: no drift to report
    assert "drift" not in [e for _, e in events(DriftMonitor(settings), better)]
    worse = residual_stream(4_000, seed=6, change=Change("abrupt", 2_000, 0.3))
    found = events(DriftMonitor(settings), worse)
    assert first_after(found, 2_000, "drift") is not None
