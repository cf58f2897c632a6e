"""River's Half-Space Trees as arrays: the same scores and state as River's own
``score_one``/``learn_one``, for many keys at once, across window pivots."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from river.anomaly import HalfSpaceTrees

from models.anomaly_fitted import hst_state, restore_hst
from models.anomaly_hst import CompiledHST, score_and_learn

NAMES = ("cpu_pct", "disk_pct", "mem_pct")


def river_and_compiled(keys: int, window: int) -> tuple[list[HalfSpaceTrees], list[CompiledHST]]:
    def model(seed: int) -> HalfSpaceTrees:
        return HalfSpaceTrees(n_trees=10, height=6, window_size=window, seed=seed)

    return [model(s) for s in range(keys)], [CompiledHST.grow(model(s), NAMES) for s in range(keys)]


@pytest.mark.parametrize("window", [7, 50])
def test_many_keys_at_once_score_and_learn_as_river_does(window: int) -> None:
    rng = np.random.default_rng(0)
    river, compiled = river_and_compiled(4, window)
    for _ in range(30):
        sizes = rng.integers(0, 3 * window, len(river))  # some keys absent, some pivot twice
        rows = [rng.random((m, len(NAMES))) for m in sizes]
        want = []
        for model, x in zip(river, rows, strict=True):
            for row in x:
                features = dict(zip(NAMES, row.tolist(), strict=True))
                want.append(float(model.score_one(features)) if model.trees else 0.0)
                model.learn_one(features)
        got = score_and_learn(compiled, np.vstack(rows), np.repeat(np.arange(len(river)), sizes))
        assert np.array_equal(got, np.array(want))
    for model, c in zip(river, compiled, strict=True):
        assert c.state() == hst_state(model)
    assert any(not c.first_window for c in compiled)


def test_a_restored_state_scores_on_as_the_original() -> None:
    rng = np.random.default_rng(1)
    _, (original,) = river_and_compiled(1, 20)
    score_and_learn([original], rng.random((55, 3)), np.zeros(55, dtype=np.int64))
    blob = original.state()
    fresh_model = HalfSpaceTrees(n_trees=10, height=6, window_size=20, seed=0)
    restore_hst(fresh_model, NAMES, blob)
    fresh = CompiledHST.of(fresh_model, NAMES)
    x = rng.random((40, 3))
    key = np.zeros(40, dtype=np.int64)
    assert np.array_equal(score_and_learn([fresh], x, key), score_and_learn([original], x, key))


def test_columns_follow_the_names_not_the_trees_order() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((60, 3))
    key = np.zeros(60, dtype=np.int64)
    (a,) = river_and_compiled(1, 10)[1]
    b = CompiledHST.grow(HalfSpaceTrees(n_trees=10, height=6, window_size=10, seed=0), NAMES[::-1])
    assert np.array_equal(score_and_learn([a], x, key), score_and_learn([b], x[:, ::-1], key))


def test_the_arrays_keep_no_river_objects() -> None:
    # a key's trees as River nodes were about 1,270 objects for the collector to walk
    model = HalfSpaceTrees(n_trees=10, height=6, window_size=10, seed=0)
    compiled = CompiledHST.grow(model, NAMES)
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
    assert compiled.max_score == HalfSpaceTrees(n_trees=10, height=6, window_size=10)._max_score
