"""Processors: window -> features -> model -> decision, as pure functions over a batch.

The caller loads the windows of a batch's keys, calls :meth:`process`, persists
``appends`` and sends the outputs. Nothing here touches Kafka, Redis or a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.predictor import BandwidthPredictor, bandwidth_target
from online.gain import OnlineGain

from .records import (
    MEASURES,
    BandwidthPrediction,
    HostSample,
    LinkSample,
    ModelRef,
    WindowEntry,
)
from .windows import median_steps

PredictorLookup = Callable[[str], BandwidthPredictor]


@dataclass(slots=True)
class LinkBatchResult:
    """What one batch of link samples produced.

    Attributes:
        appends: new window entries per link, in order (duplicates are not re-added).
        predictions: one per sample whose window held the model's history, in input order.
        scores: one ``scores.v1`` dict per input sample, in input order.
        warming_up: samples whose window was still shorter than the model's history.
        duplicates: samples whose event id was already in the window (a redelivery).
    """

    appends: dict[str, list[WindowEntry]] = field(default_factory=dict)
    predictions: list[BandwidthPrediction] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    warming_up: int = 0
    duplicates: int = 0
    no_history: int = 0


@dataclass(slots=True)
class _Due:
    sample: LinkSample
    window: list[WindowEntry]
    score: dict[str, Any]


class _KeyWindow:
    """The mutable view of one key's window while a batch is processed."""

    __slots__ = ("entries", "ids")

    def __init__(self, entries: Sequence[WindowEntry]) -> None:
        self.entries = list(entries)
        self.ids = {e.event_id for e in entries}


class BandwidthProcessor:
    """Appends link samples to their windows and predicts the next bandwidth.

    Args:
        predictor_for: returns the active predictor of a mode; looked up once per batch,
            so a model swapped between batches is used from the next batch on.
        window_size: entries kept per link.
        online: learns per link how much of the model's correction to the last value
            to take (see :mod:`online.gain`); ``None`` publishes the model's output as is.
            With it, each appended entry keeps the model's unadapted prediction for it
            to learn from.

    Examples:
        >>> from models.baseline import HarmonicMeanPredictor
        >>> proc = BandwidthProcessor(lambda mode: HarmonicMeanPredictor(mode, window_steps=3))
        >>> samples = [LinkSample(f"e{i}", "l1", 1.7e9 + i, "internet", bandwidth_mbps=100.0 + i)
        ...            for i in range(4)]
        >>> result = proc.process(samples, {})
        >>> [p.event_id for p in result.predictions], result.warming_up
        (['e2', 'e3'], 2)
        >>> round(result.predictions[-1].predicted_bandwidth_mbps, 2)
        101.99
    """

    def __init__(
        self,
        predictor_for: PredictorLookup,
        window_size: int = 60,
        online: OnlineGain | None = None,
    ) -> None:
        self.predictor_for = predictor_for
        self.window_size = window_size
        self.online = online

    def history_depth(self, modes: Sequence[str]) -> int:
        """Window entries a batch of these modes needs: the longest model history.

        Only these are loaded from the store; a redelivered event is recognised while it
        is among them (a redelivery replays the last uncommitted batch, well within).
        """
        steps = [self.predictor_for(mode).window_steps for mode in set(modes)]
        return min(max(steps, default=1), self.window_size)

    def process(
        self, samples: Sequence[LinkSample], windows: Mapping[str, Sequence[WindowEntry]]
    ) -> LinkBatchResult:
        result = LinkBatchResult()
        state: dict[str, _KeyWindow] = {}
        predictors: dict[str, BandwidthPredictor] = {}
        due: dict[str, list[_Due]] = {}
        for sample in samples:
            predictor = predictors.get(sample.mode)
            if predictor is None:
                predictor = predictors[sample.mode] = self.predictor_for(sample.mode)
            win = state.get(sample.link_id)
            if win is None:
                win = state[sample.link_id] = _KeyWindow(windows.get(sample.link_id, ()))
            snapshot = self._advance(win, sample, result, predictor.window_steps)
            actual = sample.bandwidth_mbps
            if actual is None:
                actual = sample.throughput_mbps
            score: dict[str, Any] = {
                "event_id": sample.event_id,
                "key": sample.link_id,
                "ts": sample.ts,
                "topic": "telemetry.link.v1",
                "actual_bandwidth_mbps": actual,
                "predicted_bandwidth_mbps": None,
            }
            result.scores.append(score)
            if len(snapshot) < predictor.min_history:
                result.warming_up += 1
                continue
            due.setdefault(sample.mode, []).append(_Due(sample, snapshot, score))
        for mode, items in due.items():
            self._predict(predictors[mode], items, result)
        if len(due) > 1:
            # Modes were predicted in separate model calls; restore the input order.
            order = {s.event_id: i for i, s in enumerate(samples)}
            result.predictions.sort(key=lambda p: order[p.event_id])
        return result

    def _advance(
        self, win: _KeyWindow, sample: LinkSample, result: LinkBatchResult, steps: int
    ) -> list[WindowEntry]:
        """Append the sample (unless redelivered); return the last ``steps`` entries up to it."""
        if sample.event_id in win.ids:
            result.duplicates += 1
            for i, entry in enumerate(win.entries):
                if entry.event_id == sample.event_id:
                    return win.entries[max(0, i + 1 - steps) : i + 1]
        entry = WindowEntry(sample.event_id, sample.ts, sample.values())
        win.entries.append(entry)
        win.ids.add(entry.event_id)
        if len(win.entries) > self.window_size:
            win.ids.discard(win.entries.pop(0).event_id)
        result.appends.setdefault(sample.link_id, []).append(entry)
        return win.entries[-steps:]

    def _predict(
        self, predictor: BandwidthPredictor, items: list[_Due], result: LinkBatchResult
    ) -> None:
        steps = predictor.window_steps
        batch = np.full((len(items), steps, len(MEASURES)), np.nan)
        times = np.full((len(items), steps), np.nan)
        for row, item in enumerate(items):
            n = len(item.window)  # shorter than steps only during a link's first samples
            batch[row, steps - n :] = [e.values for e in item.window]
            times[row, steps - n :] = [e.ts for e in item.window]
        intervals = median_steps(times)
        forecast = predictor.predict(batch)
        model = ModelRef(predictor.name, predictor.version)
        seen_mask = np.any(np.isfinite(batch), axis=1)
        # The model's own points of this batch, for the online gain (none without it).
        made = (
            {}
            if self.online is None
            else {
                item.sample.event_id: float(p)
                for item, p in zip(items, forecast.point, strict=True)
                if math.isfinite(p)
            }
        )
        gain, factor = self._online_gain(items, batch, forecast.point, made, predictor)
        for i, item in enumerate(items):
            point = float(forecast.point[i])
            if not math.isfinite(point):
                result.no_history += 1
                continue
            scale = float(factor[i])
            point = max(point * scale, 0.0)
            lower = min(max(float(forecast.lower[i]) * scale, 0.0), point)
            upper = max(float(forecast.upper[i]) * scale, point)
            sample = item.sample
            step = float(intervals[i])
            prediction = BandwidthPrediction(
                link_id=sample.link_id,
                mode=sample.mode,
                event_id=sample.event_id,
                ts=sample.ts,
                target_ts=sample.ts + predictor.horizon_steps * step,
                horizon_steps=predictor.horizon_steps,
                predicted_bandwidth_mbps=point,
                lower_mbps=lower,
                upper_mbps=upper if math.isfinite(upper) else point,
                interval_level=forecast.interval_level,
                confidence=float(np.clip(forecast.confidence[i], 0.0, 1.0)),
                model=model,
                window_from_ts=item.window[0].ts,
                window_samples=len(item.window),
                features_seen=tuple(
                    m for m, seen in zip(MEASURES, seen_mask[i], strict=True) if seen
                ),
                online_gain=None if gain is None else round(float(gain[i]), 4),
            )
            result.predictions.append(prediction)
            item.score.update(
                predicted_bandwidth_mbps=point,
                lower_mbps=prediction.lower_mbps,
                upper_mbps=prediction.upper_mbps,
                target_ts=prediction.target_ts,
                model_version=f"{model.name}:{model.version}",
            )
        if self.online is None:
            return
        # Persist the model's own predictions with the entries: the pairs the gain learns from.
        for link, entries in result.appends.items():
            if any(e.event_id in made and e.predicted is None for e in entries):
                result.appends[link] = [
                    WindowEntry(e.event_id, e.ts, e.values, e.names, made[e.event_id])
                    if e.event_id in made and e.predicted is None
                    else e
                    for e in entries
                ]

    def _online_gain(
        self,
        items: list[_Due],
        batch: np.ndarray,
        point: np.ndarray,
        made: Mapping[str, float],
        predictor: BandwidthPredictor,
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Each row's gain and the factor it puts on the model's point and interval.

        The pairs come from the stored predictions of the window's entries and, for
        entries of this batch, from this call's predictions, so a link's prediction is
        the same however its samples were split into batches.
        """
        if self.online is None:
            return None, np.ones(len(items))
        steps = batch.shape[1]
        predicted = np.full((len(items), steps), np.nan)
        nan, lookup = math.nan, made.get
        for row, item in enumerate(items):
            n = len(item.window)
            predicted[row, steps - n :] = [
                lookup(e.event_id, nan) if e.predicted is None else e.predicted for e in item.window
            ]
        series = bandwidth_target(batch)
        gain = self.online.gains_for(series, predicted, predictor.horizon_steps)
        return gain, self.online.adapt(point, series[:, -1], gain)


def host_entries(samples: Sequence[HostSample]) -> dict[str, list[WindowEntry]]:
    """Window entries of host samples grouped by host, in input order.

    Examples:
        >>> host_entries([HostSample("e1", "h1", 1.7e9, {"cpu_pct": 50.0})])["h1"][0].names
        ('cpu_pct',)
    """
    out: dict[str, list[WindowEntry]] = {}
    for s in samples:
        out.setdefault(s.host_id, []).append(
            WindowEntry(s.event_id, s.ts, tuple(s.metrics.values()), names=tuple(s.metrics))
        )
    return out
