"""Numenta Anomaly Benchmark (NAB v1.x) scoring, in numpy.

The semantics are those of numenta/NAB's ``nab/sweeper.py`` (which ``nab/scorer.py``
and ``nab/optimizer.py`` call) and of the normalisation in ``nab/runner.py``:

* the first :func:`probation_rows` rows of a file are not scored at all;
* inside a labelled window only the best (that is the first) detection counts, and it
  earns a scaled-sigmoid reward: the full TP weight on the window's first row, less
  for later rows; a window with no scored detection costs the FN weight;
* a detection outside every window costs the FP weight: in full before the first
  window, and after a window scaled by its distance past that window's end, so a
  detection just after a window costs almost nothing and one three widths past costs
  the full weight;
* a corpus score is ``100 * (raw - null) / (perfect - null)`` with ``null`` the
  detector that never fires and ``perfect`` the one that fires on the first row of
  every window.

Scoring depends on row positions only, never on elapsed time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBATION_FRACTION = 0.15
"""Share of a file's rows, capped at 15% of 5000, that NAB leaves unscored."""

_NOTHING_THRESHOLD = 1.1
_LABEL_SUFFIX = ".000000"
_HEADER = "timestamp,value"


@dataclass(frozen=True, slots=True)
class Profile:
    """Weights of a true positive, a false positive and a false negative."""

    name: str
    tp: float
    fp: float
    fn: float


DEFAULT_PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
)
"""NAB's three application profiles (``config/profiles.json``)."""


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """One NAB data file with its anomaly windows as inclusive row ranges.

    ``name`` is ``"family/file.csv"`` as in the labels file and ``timestamps`` are
    seconds since the epoch (UTC).
    """

    name: str
    family: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class FileScore:
    """NAB raw score of one file with window-level TP/FN and row-level FP counts.

    ``tp`` and ``fn`` count the scored windows with and without a scored detection
    (``tp + fn == windows``); ``fp`` counts the scored detections outside windows.
    NAB's own result files count rows for TP and FN instead.
    """

    name: str
    raw: float
    tp: int
    fp: int
    fn: int
    windows: int


@dataclass(frozen=True, slots=True)
class _Rows:
    """Per-row scoring inputs of one series under one profile."""

    weight: np.ndarray
    window: np.ndarray
    first: int
    segments: tuple[tuple[int, int], ...]


def load_profiles(path: Path | None) -> dict[str, Profile]:
    """NAB's default profiles, overridden and extended by a NAB ``profiles.json``.

    Examples:
        >>> load_profiles(None)["standard"]
        Profile(name='standard', tp=1.0, fp=0.11, fn=1.0)
    """
    profiles = {p.name: p for p in DEFAULT_PROFILES}
    if path is None:
        return profiles
    raw = json.loads(path.read_text())
    try:
        for name, entry in raw.items():
            cost = entry["CostMatrix"]
            profiles[name] = Profile(
                name, float(cost["tpWeight"]), float(cost["fpWeight"]), float(cost["fnWeight"])
            )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        msg = (
            f"{path} is not a NAB profiles file: each profile needs a CostMatrix "
            f"with tpWeight, fpWeight and fnWeight ({exc!r})"
        )
        raise ValueError(msg) from exc
    return profiles


def load_corpus(root: Path) -> list[LabelledSeries]:
    """Every ``root/data/<family>/<file>.csv`` with its windows from ``root/labels``."""
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        msg = (
            f"NAB labels file {labels_path} not found: copy labels/combined_windows.json "
            f"from numenta/NAB into {root / 'labels'}"
        )
        raise FileNotFoundError(msg)
    labels = json.loads(labels_path.read_text())
    paths = sorted((root / "data").glob("*/*.csv"))
    if not paths:
        msg = f"no NAB data files under {root / 'data'} (expected data/<family>/<file>.csv)"
        raise FileNotFoundError(msg)
    corpus = []
    for path in paths:
        name = f"{path.parent.name}/{path.name}"
        if name not in labels:
            msg = (
                f"{name} has no entry in {labels_path}: add one (an empty list if the "
                f"file has no anomalies) or remove {path}"
            )
            raise ValueError(msg)
        stamps, values = _read_csv(path)
        windows = _window_rows(stamps, labels[name], name, labels_path)
        seconds = stamps.astype(np.int64).astype(np.float64)
        corpus.append(LabelledSeries(name, path.parent.name, seconds, values, windows))
    return corpus


def probation_rows(n: int) -> int:
    """Number of leading rows NAB does not score in a file of ``n`` rows.

    Examples:
        >>> probation_rows(4032), probation_rows(22695)
        (604, 750)
    """
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000))


def score_file(series: LabelledSeries, detections: np.ndarray, profile: Profile) -> FileScore:
    """NAB raw score of boolean per-row ``detections`` on one file."""
    rows = _rows(series, profile)
    scored = _as_detections(series, detections).copy()
    scored[: rows.first] = False
    false_positives = scored & (rows.window < 0)
    best = _window_best(rows, scored)
    detected = best > -np.inf
    raw = float(rows.weight[false_positives].sum()) + float(np.maximum(best, -profile.fn).sum())
    tp = int(detected.sum())
    return FileScore(
        series.name, raw, tp, int(false_positives.sum()), detected.size - tp, detected.size
    )


def null_and_perfect(series: LabelledSeries, profile: Profile) -> tuple[float, float]:
    """Raw scores of the detector that never fires and of the one on every window start."""
    never = np.zeros(series.timestamps.size, dtype=bool)
    starts = never.copy()
    starts[[start for start, _ in series.windows]] = True
    return score_file(series, never, profile).raw, score_file(series, starts, profile).raw


def normalised(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score: 0 for the null detector, 100 for the perfect one.

    Examples:
        >>> normalised(-2.0, -4.0, 4.0)
        25.0
    """
    if perfect == null:
        msg = "perfect and null scores are equal: there is no scored window to normalise by"
        raise ValueError(msg)
    return 100.0 * (raw - null) / (perfect - null)


def sweep_threshold(
    corpus: Sequence[LabelledSeries],
    scores: Sequence[np.ndarray],
    profile: Profile,
    thresholds: np.ndarray | None = None,
) -> tuple[float, float]:
    """Best threshold on anomaly ``scores`` (detection: score >= threshold) over a corpus.

    Returns the threshold and its normalised corpus score. By default the candidates
    are, as in NAB's optimiser, a threshold above every score (no detections) and
    every distinct scored value; ties go to the highest threshold.
    """
    if len(corpus) != len(scores):
        msg = f"{len(corpus)} series but {len(scores)} score arrays"
        raise ValueError(msg)
    levels, gains, base = _corpus_events(corpus, scores, profile)
    candidates = _candidates(levels, thresholds)
    order = np.argsort(-levels, kind="stable")
    totals = np.concatenate(([0.0], np.cumsum(gains[order])))
    reached = np.searchsorted(-levels[order], -candidates, side="right")
    raws = base + totals[reached]
    best = int(np.argmax(raws))
    null = perfect = 0.0
    for series in corpus:
        file_null, file_perfect = null_and_perfect(series, profile)
        null += file_null
        perfect += file_perfect
    return float(candidates[best]), normalised(float(raws[best]), null, perfect)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (datetime64[s]) and values of a NAB ``timestamp,value`` file."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip() != _HEADER:
        msg = f"{path}: expected the header {_HEADER!r}"
        raise ValueError(msg)
    try:
        fields = [line.split(",") for line in lines[1:] if line.strip()]
        stamps = np.array([row[0] for row in fields], dtype="datetime64[s]")
        values = np.array([float(row[1]) for row in fields])
    except (IndexError, ValueError) as exc:
        msg = f"{path}: rows must be 'YYYY-MM-DD HH:MM:SS,value' ({exc})"
        raise ValueError(msg) from exc
    return stamps, values


def _window_rows(
    stamps: np.ndarray, limits: list[list[str]], name: str, labels_path: Path
) -> tuple[tuple[int, int], ...]:
    """Inclusive row ranges of label windows whose limits must each match one row."""
    windows: list[tuple[int, int]] = []
    for start, end in limits:
        first = _row_of(stamps, start, name, labels_path)
        last = _row_of(stamps, end, name, labels_path)
        if last < first or (windows and first <= windows[-1][1]):
            msg = (
                f"{labels_path}: window [{start}, {end}] of {name} is reversed, out of "
                f"order or overlaps the previous one"
            )
            raise ValueError(msg)
        windows.append((first, last))
    return tuple(windows)


def _row_of(stamps: np.ndarray, label: str, name: str, labels_path: Path) -> int:
    """The one row of ``stamps`` equal to a label timestamp."""
    moment = np.datetime64(label.removesuffix(_LABEL_SUFFIX), "s")
    rows = np.flatnonzero(stamps == moment)
    if rows.size != 1:
        msg = (
            f"{labels_path}: window limit {label} of {name} matches {rows.size} rows; "
            f"label timestamps must match exactly one row of the data file"
        )
        raise ValueError(msg)
    return int(rows[0])


def _scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's reward curve ``2 * sigmoid(-5 x) - 1``, and -1 beyond x = 3."""
    curve = 2.0 / (1.0 + np.exp(5.0 * np.minimum(position, 3.0))) - 1.0
    return np.where(position > 3.0, -1.0, curve)


_MAX_TP = float(_scaled_sigmoid(np.array(-1.0)))


def _rows(series: LabelledSeries, profile: Profile) -> _Rows:
    """Each row's NAB sweep score if detected, its window, and the scored windows."""
    n = series.timestamps.size
    index = np.arange(n)
    starts = np.array([start for start, _ in series.windows], dtype=np.int64)
    ends = np.array([end for _, end in series.windows], dtype=np.int64)
    widths = (ends - starts + 1).astype(np.float64)
    window = np.full(n, -1, dtype=np.int64)
    for k, (start, end) in enumerate(series.windows):
        window[start : end + 1] = k
    inside = window >= 0
    weight = np.empty(n)
    held = window[inside]
    position = -(ends[held] - index[inside] + 1) / widths[held]
    weight[inside] = _scaled_sigmoid(position) * profile.tp / _MAX_TP
    weight[~inside] = _false_positive_cost(index[~inside], ends, widths, series.name) * profile.fp
    first = probation_rows(n)
    segments = tuple((max(start, first), end) for start, end in series.windows if end >= first)
    return _Rows(weight, window, first, segments)


def _false_positive_cost(
    rows: np.ndarray, ends: np.ndarray, widths: np.ndarray, name: str
) -> np.ndarray:
    """Unweighted cost of detections on rows outside windows, by the preceding window."""
    previous = np.searchsorted(ends, rows, side="left") - 1
    after = previous >= 0
    span = widths[previous[after]] - 1.0
    if np.any(span == 0.0):
        msg = (
            f"{name}: a one-row window is followed by unlabelled rows, which NAB's "
            f"sweeper cannot score (it divides by the window width minus one)"
        )
        raise ValueError(msg)
    cost = np.full(rows.size, -1.0)
    cost[after] = _scaled_sigmoid(np.abs(ends[previous[after]] - rows[after]) / span)
    return cost


def _as_detections(series: LabelledSeries, detections: np.ndarray) -> np.ndarray:
    """``detections`` as one boolean per row of ``series``."""
    flags = np.asarray(detections, dtype=bool)
    if flags.shape != series.timestamps.shape:
        msg = f"{series.name}: {flags.shape} detections for {series.timestamps.size} rows"
        raise ValueError(msg)
    return flags


def _window_best(rows: _Rows, scored: np.ndarray) -> np.ndarray:
    """Best sweep score among scored detections of each scored window, -inf if none."""
    if not rows.segments:
        return np.empty(0)
    masked = np.append(np.where(scored, rows.weight, -np.inf), -np.inf)
    bounds = np.array([(start, end + 1) for start, end in rows.segments]).ravel()
    best: np.ndarray = np.maximum.reduceat(masked, bounds)[::2]
    return best


def _corpus_events(
    corpus: Sequence[LabelledSeries], scores: Sequence[np.ndarray], profile: Profile
) -> tuple[np.ndarray, np.ndarray, float]:
    """Score levels of scored rows, the raw-score gain of each, and the no-detection score.

    Detecting every row at or above a level adds the gains of those rows: a row outside
    windows adds its sweep score, a row in a window what it raises the window's best by.
    """
    levels: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    windows: list[np.ndarray] = []
    offset = 0
    scored_windows = 0
    for series, values in zip(corpus, scores, strict=True):
        level = np.asarray(values, dtype=np.float64)
        if level.shape != series.timestamps.shape or np.isnan(level).any():
            msg = f"{series.name}: scores must be {series.timestamps.size} numbers, no NaN"
            raise ValueError(msg)
        rows = _rows(series, profile)
        window = rows.window[rows.first :]
        levels.append(level[rows.first :])
        weights.append(rows.weight[rows.first :])
        windows.append(np.where(window >= 0, window + offset, -1))
        offset += len(series.windows)
        scored_windows += len(rows.segments)
    level = np.concatenate(levels) if levels else np.empty(0)
    weight = np.concatenate(weights) if weights else np.empty(0)
    window = np.concatenate(windows) if windows else np.empty(0, dtype=np.int64)
    outside = window < 0
    inside_levels, inside_gains = _window_gains(
        level[~outside], weight[~outside], window[~outside], -profile.fn
    )
    return (
        np.concatenate((level[outside], inside_levels)),
        np.concatenate((weight[outside], inside_gains)),
        -profile.fn * scored_windows,
    )


def _window_gains(
    level: np.ndarray, weight: np.ndarray, window: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per in-window row, in descending level within each window: its level and gain."""
    if level.size == 0:
        return level, weight
    order = np.lexsort((-level, window))
    level, weight, window = level[order], weight[order], window[order]
    distinct, rank = np.unique(weight, return_inverse=True)
    stride = distinct.size + 1
    running = np.maximum.accumulate(window * stride + rank) - window * stride
    value = np.maximum(distinct[running], floor)
    before = np.concatenate(([floor], value[:-1]))
    before[np.flatnonzero(np.diff(window)) + 1] = floor
    return level, value - before


def _candidates(levels: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """Distinct candidate thresholds, highest first."""
    if thresholds is not None:
        given = np.unique(np.asarray(thresholds, dtype=np.float64))[::-1]
        if given.size == 0 or np.isnan(given).any():
            msg = "thresholds must be a non-empty array of numbers"
            raise ValueError(msg)
        return given
    top = float(levels.max()) if levels.size else -np.inf
    nothing = _NOTHING_THRESHOLD if top < _NOTHING_THRESHOLD else float(np.nextafter(top, np.inf))
    return np.concatenate(([nothing], np.unique(levels)[::-1]))
