"""Training windows: alignment, horizon, splits, family balance, series files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.datasets import (
    Series,
    assemble,
    build_windows,
    load_series,
    read_series,
    resample_zoh,
    save_series,
    split_of,
)
from models.features import series_windows


@pytest.mark.parametrize("horizon", [1, 3])
def test_window_ends_horizon_steps_before_its_target(horizon: int) -> None:
    series = np.arange(1.0, 41.0)[:, None] * np.ones((1, 5))
    raw, targets, index = series_windows(series, window=5, horizon=horizon, start=9)
    for w, y, t in zip(raw, targets, index, strict=True):
        assert y == series[t, 0]
        assert w[-1, 0] == series[t - horizon, 0]


def test_chronological_split_keeps_test_after_train() -> None:
    s = Series("s", np.arange(1.0, 1001.0)[:, None] * np.ones((1, 5)), 1.0, "synthetic")
    data = build_windows([s], 10, by_file=False)
    assert data["train"].targets.max() < data["val"].targets.min()
    assert data["val"].targets.max() < data["test"].targets.min()
    assert len(data["test"]) == pytest.approx(0.15 * 1000, abs=2)


def test_file_split_is_deterministic_and_near_70_15_15() -> None:
    labels = [split_of(f"trace_{i}") for i in range(2000)]
    assert labels == [split_of(f"trace_{i}") for i in range(2000)]
    assert labels.count("train") / 2000 == pytest.approx(0.70, abs=0.04)
    assert labels.count("test") / 2000 == pytest.approx(0.15, abs=0.04)


def test_families_weigh_the_same_in_training() -> None:
    big = [Series(f"a{i}", np.full((600, 5), 10.0 + i), 1.0, "big") for i in range(6)]
    small = [Series(f"b{i}", np.full((200, 5), 5.0), 1.0, "small") for i in range(2)]
    train = assemble(big, [small], 10)["train"]
    sums = {f: train.weights[train.families == f].sum() for f in ("big", "small")}
    assert train.families.size == train.targets.size
    assert sums["big"] == pytest.approx(sums["small"], rel=1e-9)


def test_families_of_different_levels_weigh_the_same_in_the_loss() -> None:
    """A 1 Gbit/s family must not outweigh a 1 Mbit/s one in the training loss."""
    from models.features import FeatureStats
    from models.training import _targets

    rng = np.random.default_rng(0)
    fast = [Series(f"f{i}", 1e3 * (1 + 0.1 * rng.random((300, 5))), 1.0, "fast") for i in range(2)]
    slow = [Series(f"s{i}", 1 + 0.1 * rng.random((300, 5)), 1.0, "slow") for i in range(2)]
    train = assemble(fast, [slow], 10)["train"]
    _, _, weights, ok = _targets(train, FeatureStats())
    families = train.families[ok]
    assert weights[families == "fast"].sum() == pytest.approx(
        weights[families == "slow"].sum(), rel=0.02
    )


def test_series_file_round_trip(tmp_path: Path) -> None:
    s = [Series("x", np.random.default_rng(0).random((50, 5)), 1.0, "synthetic")]
    f = [[Series("y", np.ones((20, 5)), 5.0, "fcc")]]
    save_series(tmp_path / "s.npz", s, f)
    s2, f2 = load_series(tmp_path / "s.npz")
    assert np.array_equal(s2[0].values, s[0].values) and f2[0][0].step_s == 5.0
    assert f2[0][0].family == "fcc"


def test_trace_file_is_read_and_held_on_a_grid(tmp_path: Path) -> None:
    trace = tmp_path / "norway_bus_0"
    trace.write_text("0.0 1.5\n1.0 2.5\n2.4 3.5\n3.0 4.5\n")
    (series,) = read_series(trace)
    assert series.step_s == pytest.approx(1.0)
    assert series.values[:, 4].tolist() == [1.5, 2.5, 2.5, 4.5]
    assert np.isnan(series.values[:, 0]).all()


def test_zero_order_hold_never_looks_ahead() -> None:
    out = resample_zoh(np.array([0.0, 2.5]), np.array([[1.0], [9.0]]), 1.0)
    assert out[:, 0].tolist() == [1.0, 1.0, 1.0]
