"""Bandwidth: each link sample's window -> the link's next bandwidth, with an interval."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..predictor import BandwidthPredictor, OnlineAdjuster, OnlineLinkPath, bandwidth_target
from ..records import (
    MEASURES,
    BandwidthPrediction,
    LinkSample,
    ModelRef,
    OutputRecord,
    Score,
    WindowEntry,
)
from ..windows import BatchWindows, median_steps
from .base import HeldStates, PredictorLookup, ProcessorParts, ProcessorResult

ONLINE_FIELD = "online.link"
ONLINE_UPTO = "online.upto"


@dataclass(slots=True)
class _Due:
    sample: LinkSample
    window: list[WindowEntry]
    score: Score | None


@dataclass(slots=True)
class _Online:
    """A link's online state in memory, at event ``upto``."""

    upto: str | None
    state: Any
    dirty: bool = False
    saved: dict[str, bytes] = field(default_factory=dict)
    """The fields last persisted (a batch redone sample by sample restarts from them)."""


class BandwidthProcessor:
    """Predicts each link's next bandwidth from the window ending at each sample.

    Args:
        predictor_for: returns the active predictor of a mode; looked up once per batch,
            so a model swapped between batches is used from the next batch on.
        window_size: entries kept per link (the most history a batch loads).
        online: learns per link how much of the model's correction to the last value
            to take (see :mod:`online.gain`); ``None`` publishes the model's output as is.
            With it, each new window entry keeps the model's unadapted prediction for
            it to learn from (:attr:`ProcessorResult.predicted`).
        online_links: per-link online learner, drift detectors and champion/challenger
            (see :mod:`online.link`); its state per link is kept with the link's window
            (``online.link``, at the event ``online.upto``), restored by whichever
            worker owns the link, and advanced once per new sample in event order, so a
            redone batch does exactly what it did the first time.
        cache_keys: links whose online state is held in memory between batches.

    Examples:
        >>> from models.baseline import HarmonicMeanPredictor
        >>> from streams.windows import advance
        >>> proc = BandwidthProcessor(lambda mode: HarmonicMeanPredictor(mode, window_steps=3))
        >>> samples = [LinkSample(f"e{i}", "l1", 1.7e9 + i, "internet", bandwidth_mbps=100.0 + i)
        ...            for i in range(4)]
        >>> result = proc.process(samples, advance(samples, {}), None)
        >>> [p.event_id for p in result.records], result.counts["warming_up"]
        (['e2', 'e3'], 2)
        >>> round(result.records[-1].predicted_bandwidth_mbps, 2)
        101.99
    """

    name = "bandwidth"

    def __init__(
        self,
        predictor_for: PredictorLookup,
        window_size: int = 60,
        online: OnlineAdjuster | None = None,
        online_links: OnlineLinkPath | None = None,
        cache_keys: int = 8192,
    ) -> None:
        self.predictor_for = predictor_for
        self.window_size = window_size
        self.online = online
        self.online_links = online_links
        self.state_fields: tuple[str, ...] = (
            () if online_links is None else (ONLINE_FIELD, ONLINE_UPTO)
        )
        self._held: HeldStates[_Online] = HeldStates(
            cache_keys, lambda s: s.upto, lambda s: s.dirty, lambda s: s.saved
        )

    @classmethod
    def from_parts(cls, parts: ProcessorParts) -> BandwidthProcessor:
        return cls(
            parts.predictors,
            parts.window_size,
            parts.bandwidth_adapter,
            online_links=parts.online_links,
        )

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        if self.online_links is None:
            return []
        return self._held.missing(newest)

    def history_depth(self, samples: Sequence[LinkSample]) -> int:
        """Window entries a batch needs: the longest history of its modes' models.

        Only these are loaded from the store; a redelivered event is recognised while it
        is among them (a redelivery replays the last uncommitted batch, well within).
        """
        steps = [self.predictor_for(mode).window_steps for mode in {s.mode for s in samples}]
        if self.online_links is not None:
            steps.append(self.online_links.lookback)
        return min(max(steps, default=1), self.window_size)

    def process(
        self,
        samples: Sequence[LinkSample],
        windows: BatchWindows,
        scores: Sequence[Score] | None,
    ) -> ProcessorResult:
        result = ProcessorResult()
        predictors: dict[str, BandwidthPredictor] = {}
        due: dict[str, list[_Due]] = {}
        warming_up = 0
        for i, sample in enumerate(samples):
            if not windows.fresh[i]:
                continue  # a redelivery: its prediction was delivered before it was stored
            predictor = predictors.get(sample.mode)
            if predictor is None:
                predictor = predictors[sample.mode] = self.predictor_for(sample.mode)
            snapshot = windows.upto(sample.link_id, i, predictor.window_steps)
            score = None
            if scores is not None:
                score = scores[i]
                actual = sample.bandwidth_mbps
                if actual is None:
                    actual = sample.throughput_mbps
                score.fields["actual_bandwidth_mbps"] = actual
                score.fields["predicted_bandwidth_mbps"] = None
            if len(snapshot) < predictor.min_history:
                warming_up += 1
                continue
            due.setdefault(sample.mode, []).append(_Due(sample, snapshot, score))
        result.counts = {"warming_up": warming_up, "no_history": 0}
        predictions: list[BandwidthPrediction] = []
        for mode, items in due.items():
            self._predict(predictors[mode], items, predictions, result)
        if len(due) > 1:
            # Modes were predicted in separate model calls; restore the input order.
            order = {s.event_id: i for i, s in enumerate(samples)}
            predictions.sort(key=lambda p: order[p.event_id])
        if self.online_links is None:
            result.records.extend(predictions)
        else:
            result.records.extend(
                self._online(self.online_links, samples, windows, scores, predictions, result)
            )
        result.counts["predictions"] = len(predictions)
        return result

    def _online(
        self,
        path: OnlineLinkPath,
        samples: Sequence[LinkSample],
        windows: BatchWindows,
        scores: Sequence[Score] | None,
        predictions: list[BandwidthPrediction],
        result: ProcessorResult,
    ) -> list[OutputRecord]:
        """Step each link's online state through its new samples, in event order, and
        publish the champion's prediction for each; returns the records in input order
        (each sample's prediction, then the model events it caused)."""
        by_event = {p.event_id: p for p in predictions}
        runs: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            if windows.fresh[i]:
                runs.setdefault(sample.link_id, []).append(i)
        served: dict[str, BandwidthPrediction] = {}
        events: list[tuple[int, int, OutputRecord]] = []
        states: dict[str, _Online] = {}
        online_served = 0
        for key, indexes in runs.items():
            held = states[key] = self._state_for(path, key, windows, indexes[0])
            held.dirty = True
            self._held.hold(key, held)
            group = path.key_group(key)
            # the link's series once per batch; each sample steps on its own prefix
            values = np.array([e.values for e in windows.entries[key]], dtype=np.float64)
            series = bandwidth_target(values.reshape(1, -1, len(MEASURES)))[0]
            for i in indexes:
                sample = samples[i]
                made = by_event.get(sample.event_id)
                pos = windows.positions[i]
                recent = (
                    series[max(0, pos + 1 - path.lookback) : pos + 1] if pos >= 0 else series[:0]
                )
                step = path.step(
                    held.state,
                    link_id=key,
                    mode=sample.mode,
                    event_id=sample.event_id,
                    ts=sample.ts,
                    recent=recent,
                    batch_point=None if made is None else made.predicted_bandwidth_mbps,
                    batch_lower=None if made is None else made.lower_mbps,
                    batch_upper=None if made is None else made.upper_mbps,
                    batch_model=None if made is None else made.model,
                )
                held.upto = sample.event_id
                events.extend((i, k, event) for k, event in enumerate(step.events))
                result.scored.extend((sample.mode, group, one) for one in step.scored)
                if scores is not None:
                    scores[i].fields.update(
                        online_predicted_mbps=step.online_point, champion=step.champion
                    )
                if made is None:
                    continue
                if step.point is not None and step.lower is not None and step.upper is not None:
                    online_served += 1
                    made = dataclasses.replace(
                        made,
                        predicted_bandwidth_mbps=step.point,
                        lower_mbps=min(step.lower, step.point),
                        upper_mbps=max(step.upper, step.point),
                        model=step.served,
                        serving=step.serving,
                    )
                    if scores is not None:
                        scores[i].fields.update(
                            predicted_bandwidth_mbps=made.predicted_bandwidth_mbps,
                            lower_mbps=made.lower_mbps,
                            upper_mbps=made.upper_mbps,
                            model_version=f"{made.model.name}:{made.model.version}",
                        )
                else:
                    made = dataclasses.replace(made, serving=step.serving)
                served[sample.event_id] = made
        # only once every link is done: a batch that raised is redone from the last saves
        for key, done in states.items():
            done.dirty = False
            done.saved = {
                ONLINE_FIELD: path.dump(done.state),
                ONLINE_UPTO: (done.upto or "").encode(),
            }
            result.states[key] = done.saved
        result.counts["online_steps"] = sum(len(v) for v in runs.values())
        result.counts["served_online"] = online_served
        order = {sample.event_id: i for i, sample in enumerate(samples)}
        placed: list[tuple[int, int, OutputRecord]] = [
            (order[p.event_id], -1, served.get(p.event_id, p)) for p in predictions
        ]
        placed.extend(events)
        placed.sort(key=lambda item: (item[0], item[1]))
        return [record for _, _, record in placed]

    def _state_for(
        self, path: OnlineLinkPath, key: str, windows: BatchWindows, index: int
    ) -> _Online:
        previous, current, candidates = self._held.resume(key, windows, index)
        if current is not None:
            return current
        for stored in candidates:
            if ONLINE_FIELD in stored and stored.get(ONLINE_UPTO, b"").decode() == (previous or ""):
                return _Online(previous, path.load(stored[ONLINE_FIELD]), saved=dict(stored))
        return _Online(None, path.new())

    def _predict(
        self,
        predictor: BandwidthPredictor,
        items: list[_Due],
        predictions: list[BandwidthPrediction],
        result: ProcessorResult,
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
                result.counts["no_history"] += 1
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
            predictions.append(prediction)
            if item.score is not None:
                item.score.fields.update(
                    predicted_bandwidth_mbps=point,
                    lower_mbps=prediction.lower_mbps,
                    upper_mbps=prediction.upper_mbps,
                    target_ts=prediction.target_ts,
                    model_version=f"{model.name}:{model.version}",
                )
        # The model's own predictions go with the new entries: the pairs the gain learns from.
        result.predicted.update(made)

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
