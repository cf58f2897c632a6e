"""NAB scoring: probation, window rewards, false-positive costs, normalisation, sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.nab import (
    LabelledSeries,
    Profile,
    load_corpus,
    load_profiles,
    normalised,
    null_and_perfect,
    probation_rows,
    score_file,
    sweep_threshold,
)

STANDARD = Profile("standard", tp=1.0, fp=0.11, fn=1.0)
REAL_NAB = Path("/work/shared/data/nab")
ROWS = 1000
WINDOWS = {
    "synth/two_windows.csv": [(400, 449), (700, 749)],
    "synth/one_window.csv": [(500, 599)],
    "synth/quiet.csv": [],
}


def _stamp(row: int) -> np.datetime64:
    return np.datetime64("2015-03-01T00:00:00") + np.timedelta64(300 * row, "s")


def _text(moment: np.datetime64) -> str:
    return str(moment).replace("T", " ")


def _write_corpus(root: Path, windows: dict[str, list[tuple[int, int]]] = WINDOWS) -> Path:
    rng = np.random.default_rng(7)
    labels = {}
    for name, rows in windows.items():
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"]
        lines += [f"{_text(_stamp(i))},{v:.4f}" for i, v in enumerate(rng.normal(size=ROWS))]
        path.write_text("\n".join(lines) + "\n")
        labels[name] = [
            [_text(_stamp(a)) + ".000000", _text(_stamp(b)) + ".000000"] for a, b in rows
        ]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> list[LabelledSeries]:
    return load_corpus(_write_corpus(tmp_path))


def _series(corpus: list[LabelledSeries], name: str) -> LabelledSeries:
    return next(s for s in corpus if s.name == name)


def _fires(at: list[int]) -> np.ndarray:
    flags = np.zeros(ROWS, dtype=bool)
    flags[at] = True
    return flags


def test_corpus_maps_label_timestamps_to_inclusive_rows(corpus: list[LabelledSeries]) -> None:
    assert [s.name for s in corpus] == sorted(WINDOWS)
    for series in corpus:
        assert series.family == "synth"
        assert series.windows == tuple(WINDOWS[series.name])
        assert series.timestamps[1] - series.timestamps[0] == 300.0
        assert series.values.shape == (ROWS,)


@pytest.mark.parametrize("profile", list(load_profiles(None).values()), ids=lambda p: p.name)
def test_null_detector_scores_zero_and_perfect_one_hundred(
    corpus: list[LabelledSeries], profile: Profile
) -> None:
    null = perfect = never = starts = 0.0
    for series in corpus:
        file_null, file_perfect = null_and_perfect(series, profile)
        null += file_null
        perfect += file_perfect
        never += score_file(series, _fires([]), profile).raw
        starts += score_file(series, _fires([a for a, _ in series.windows]), profile).raw
    assert null == pytest.approx(-3 * profile.fn)
    assert perfect == pytest.approx(3 * profile.tp)
    assert normalised(never, null, perfect) == pytest.approx(0.0)
    assert normalised(starts, null, perfect) == pytest.approx(100.0)


def test_earlier_detection_in_a_window_earns_more(corpus: list[LabelledSeries]) -> None:
    series = _series(corpus, "synth/one_window.csv")
    null, _ = null_and_perfect(series, STANDARD)
    first, early, late, last = (
        score_file(series, _fires([row]), STANDARD) for row in (500, 520, 580, 599)
    )
    assert first.raw - null == pytest.approx(STANDARD.tp + STANDARD.fn)
    assert first.raw > early.raw > late.raw > last.raw > null
    assert (first.tp, first.fn, first.fp, first.windows) == (1, 0, 0, 1)


def test_only_the_first_detection_in_a_window_counts(corpus: list[LabelledSeries]) -> None:
    series = _series(corpus, "synth/one_window.csv")
    once = score_file(series, _fires([510]), STANDARD)
    again = score_file(series, _fires([510, 511, 550, 599]), STANDARD)
    assert again.raw == pytest.approx(once.raw)
    assert again.tp == 1


def test_detections_in_probation_are_not_scored(corpus: list[LabelledSeries]) -> None:
    series = _series(corpus, "synth/quiet.csv")
    probation = probation_rows(ROWS)
    assert probation == 150
    inside = score_file(series, _fires([0, 10, probation - 1]), STANDARD)
    after = score_file(series, _fires([probation]), STANDARD)
    assert (inside.raw, inside.fp) == (0.0, 0)
    assert (after.raw, after.fp) == (pytest.approx(-STANDARD.fp), 1)


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    assert [probation_rows(n) for n in (10, 4032, 5000, 5001, 22695)] == [1, 604, 750, 750, 750]


def test_false_positive_cost_grows_with_distance_past_the_window(
    corpus: list[LabelledSeries],
) -> None:
    series = _series(corpus, "synth/one_window.csv")
    null, _ = null_and_perfect(series, STANDARD)
    width = 100
    costs = [
        null - score_file(series, _fires([599 + gap]), STANDARD).raw for gap in (1, 50, 99, 350)
    ]
    assert 0.0 < costs[0] < 0.05 * STANDARD.fp
    assert costs[0] < costs[1] < costs[2] < STANDARD.fp
    assert 350 / (width - 1) > 3.0
    assert costs[3] == pytest.approx(STANDARD.fp)


def test_false_positive_before_any_window_costs_the_full_weight(
    corpus: list[LabelledSeries],
) -> None:
    series = _series(corpus, "synth/two_windows.csv")
    null, _ = null_and_perfect(series, STANDARD)
    cost = null - score_file(series, _fires([300]), STANDARD).raw
    assert cost == pytest.approx(STANDARD.fp)


def test_sweep_finds_the_threshold_that_separates_a_planted_score(
    corpus: list[LabelledSeries],
) -> None:
    rng = np.random.default_rng(3)
    scores = []
    for series in corpus:
        score = rng.uniform(0.0, 0.5, ROWS)
        score[[start for start, _ in series.windows]] = 0.9
        scores.append(score)
    threshold, best = sweep_threshold(corpus, scores, STANDARD)
    assert 0.5 < threshold <= 0.9
    assert best == pytest.approx(100.0)


def test_sweep_agrees_with_scoring_each_threshold(corpus: list[LabelledSeries]) -> None:
    rng = np.random.default_rng(11)
    scores = [np.round(rng.random(ROWS) ** 4, 3) for _ in corpus]
    candidates = np.array([0.3, 0.6, 0.9, 0.99, 0.999])
    null = sum(null_and_perfect(s, STANDARD)[0] for s in corpus)
    perfect = sum(null_and_perfect(s, STANDARD)[1] for s in corpus)
    by_threshold = {
        float(t): normalised(
            sum(score_file(s, x >= t, STANDARD).raw for s, x in zip(corpus, scores, strict=True)),
            null,
            perfect,
        )
        for t in candidates
    }
    threshold, best = sweep_threshold(corpus, scores, STANDARD, candidates)
    assert best == pytest.approx(max(by_threshold.values()))
    assert by_threshold[threshold] == pytest.approx(best)
    default_threshold, default_best = sweep_threshold(corpus, scores, STANDARD)
    assert default_best >= best - 1e-9
    assert default_best == pytest.approx(
        normalised(
            sum(
                score_file(s, x >= default_threshold, STANDARD).raw
                for s, x in zip(corpus, scores, strict=True)
            ),
            null,
            perfect,
        )
    )


def test_sweep_never_firing_is_a_candidate(corpus: list[LabelledSeries]) -> None:
    scores = [np.full(ROWS, 0.5) for _ in corpus]
    threshold, best = sweep_threshold(corpus, scores, STANDARD)
    assert threshold > 0.5
    assert best == pytest.approx(0.0)


def test_file_missing_from_labels_names_file_and_labels_path(tmp_path: Path) -> None:
    root = _write_corpus(tmp_path)
    labels_path = root / "labels" / "combined_windows.json"
    labels = json.loads(labels_path.read_text())
    del labels["synth/quiet.csv"]
    labels_path.write_text(json.dumps(labels))
    with pytest.raises(ValueError, match="synth/quiet.csv") as info:
        load_corpus(root)
    assert str(labels_path) in str(info.value)


def test_missing_labels_file_names_its_path(tmp_path: Path) -> None:
    root = _write_corpus(tmp_path)
    labels_path = root / "labels" / "combined_windows.json"
    labels_path.unlink()
    with pytest.raises(FileNotFoundError, match="combined_windows.json") as info:
        load_corpus(root)
    assert str(labels_path) in str(info.value)


def test_label_timestamp_absent_from_the_data_is_rejected(tmp_path: Path) -> None:
    root = _write_corpus(tmp_path)
    labels_path = root / "labels" / "combined_windows.json"
    labels = json.loads(labels_path.read_text())
    labels["synth/quiet.csv"] = [["2001-01-01 00:00:00.000000", "2001-01-01 01:00:00.000000"]]
    labels_path.write_text(json.dumps(labels))
    with pytest.raises(ValueError, match="matches 0 rows"):
        load_corpus(root)


def test_profiles_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    cost = {"tpWeight": 1.0, "fnWeight": 3.0, "fpWeight": 0.5, "tnWeight": 1.0}
    path.write_text(json.dumps({"standard": {"CostMatrix": cost}}))
    profiles = load_profiles(path)
    assert profiles["standard"] == Profile("standard", tp=1.0, fp=0.5, fn=3.0)
    assert profiles["reward_low_FN_rate"] == Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)
    assert load_profiles(None)["reward_low_FP_rate"].fp == 0.22


@pytest.mark.skipif(not REAL_NAB.is_dir(), reason=f"no NAB copy at {REAL_NAB}")
def test_real_corpus_null_scores_zero_and_perfect_one_hundred() -> None:
    corpus = load_corpus(REAL_NAB)
    assert len(corpus) == 35
    windows = sum(len(s.windows) for s in corpus)
    for profile in load_profiles(REAL_NAB / "config" / "profiles.json").values():
        null = perfect = 0.0
        for series in corpus:
            file_null, file_perfect = null_and_perfect(series, profile)
            null += file_null
            perfect += file_perfect
        assert null == pytest.approx(-windows * profile.fn)
        assert perfect == pytest.approx(windows * profile.tp)
        assert normalised(null, null, perfect) == 0.0
        assert normalised(perfect, null, perfect) == 100.0


def test_one_row_window_followed_by_rows_is_rejected_like_nab() -> None:
    series = LabelledSeries(
        "synth/one_row.csv", "synth", np.arange(ROWS) * 300.0, np.zeros(ROWS), ((500, 500),)
    )
    with pytest.raises(ValueError, match="one-row window"):
        score_file(series, _fires([]), STANDARD)
