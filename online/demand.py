"""Per-host online path: a River learner of demand, drift on the forecaster, champion/challenger.

The scaling processor calls :meth:`DemandOnline.step` once per new host sample, in event
order and before the scaling controller's step, with the host's recent demands and the
forecaster's multi-horizon forecast made at that sample. One step:

1. **Online accuracy.** The one-step forecasts made at the previous sample (the
   forecaster's first horizon, the learner's, and the first horizon the controller acted
   on) are checked against this sample's demand: absolute error, within ±20%, inside the
   acted-on interval. They go to the worker's metrics (mode ``host``, per key group) and
   into exponentially weighted recent figures per host (:data:`online.champion.FAST`), plus
   the forecaster's long-run ±20% accuracy (:data:`online.champion.SLOW`).
2. **Drift.** The forecaster's one-step residual ``min(|log(actual / predicted_1)|, 2)``,
   with :data:`FLOOR_SHARE` of the host's long-run mean demand added to both (so a few
   points of noise while a daily-cycle host idles at night are not a drift), feeds a
   :class:`~online.drift.DriftMonitor` with :data:`~online.drift.RESIDUAL_SETTINGS`.
   A warning writes ``drift_warning``; a confirmed drift writes
   ``drift_detected`` (the event time of the confirming sample, the host, its key group,
   the detector's evidence) and puts the host in adapting mode. No retrain is
   requested: ``novacron retrain`` retrains bandwidth models only, so the event carries
   the hint ``"retrain": "novacron train forecast"`` for an operator instead.
3. **Learning.** A :class:`~online.learners.LinkLearner` on the host's demand series
   (floored at :data:`EPS` before logs) learns the previous sample's features -> this
   demand, stacked on the forecaster's first horizon (``log(point[0] / last)`` is its
   batch correction), then predicts the next step.
4. **Champion/challenger.** As in :mod:`online.link`: while the forecaster is degraded
   (adapting after a confirmed drift, or its recent ±20% accuracy well below its own
   long-run figure) the learner becomes champion once its recent error is lower by
   ``switch_margin`` for ``patience`` samples in a row; the forecaster takes over again
   once it is as good for as many samples. Every switch writes ``champion_changed``.
5. **The forecast acted on.** The forecaster's own while it is champion. While the
   learner is, the forecaster's forecast with every horizon's point, lower and upper
   multiplied by the learner's level correction ``online_point / point[0]``, clipped to
   :data:`LEVEL_CLIP` (a factor of 0.4 to 2.5: one sample's learner output never moves
   capacity more than that): the controller keeps the forecaster's shape, horizons and
   interval width relative to the level, and gets the learner's level.
6. **Summaries.** Every ``summary_every`` samples a host writes ``accuracy_summary``.

The recent figures the champion is chosen on are relative to the same floored
demand; the exported metrics are relative to the actual alone.

State: about 2.4 KB per host (learner, one monitor, recent figures, the last forecasts),
stored with the controller's state so it is always at the same event.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.capacity import DemandForecast, DemandStep
from streams.predictor import Scored
from streams.records import ModelEvent, ModelRef

from .champion import (
    Recent,
    changed_event,
    choose,
    key_group,
    plain,
    score_batch,
    summary_event,
    to_ref,
)
from .drift import RESIDUAL_SETTINGS, DriftMonitor
from .learners import LOOKBACK, LinkLearner, link_features

EPS = 1e-2
"""Demand floor before logs (an idle host's 0 % CPU is 0.01 %)."""
FLOOR_SHARE = 0.5
"""Share of the host's long-run mean demand added to actual and forecast before the
drift residual and the recent figures the champion is chosen on: noise of a few
points is a large relative error while a daily-cycle host idles at night, and made its
forecaster look degraded every night (a confirmed drift on a stationary host)."""
LEVEL_WEIGHT = 0.0005
"""Weight of the newest demand in the long-run mean (~2,000 samples: over a day)."""
RESIDUAL_CAP = 2.0
LEVEL_CLIP = (0.4, 2.5)
"""Bounds of the learner's level correction applied to the forecast acted on."""
RETRAIN_HINT = "novacron train forecast"
STATE_FORMAT = "novacron-demand-online/1"


@dataclass(frozen=True, slots=True)
class DemandOnlineSettings:
    """When a host's online path switches and summarises (see
    :class:`online.link.LinkOnlineSettings`, whose meanings these share).

    Attributes:
        key_groups: hosts are hashed into this many key groups (metric label).
        switch_margin: the learner must beat the forecaster's recent error by this
            fraction to become champion.
        patience: consecutive samples a switch condition must hold (both directions).
        adapt_samples: how long a host stays degraded after a confirmed drift.
        loss_points: the forecaster's recent ±20% accuracy this far below its long-run
            figure counts as degraded.
        summary_every: samples between two ``accuracy_summary`` records of a host.
        warm_up: scored forecasts before the recent figures are trusted.
    """

    key_groups: int = 16
    switch_margin: float = 0.10
    patience: int = 5
    adapt_samples: int = 600
    loss_points: float = 0.15
    summary_every: int = 600
    warm_up: int = 20


@dataclass(slots=True)
class HostState:
    """One host's online demand state (stored with the controller's)."""

    learner: LinkLearner = field(default_factory=LinkLearner)
    residual: DriftMonitor = field(default_factory=lambda: DriftMonitor(RESIDUAL_SETTINGS))
    batch: Recent = field(default_factory=Recent)
    online: Recent = field(default_factory=Recent)
    long_run_acc: float = math.nan
    batch_version: str | None = None
    champion: str = "forecaster"
    streak: int = 0
    adapting: int = 0
    seen: int = 0
    level: float = math.nan
    """Long-run mean demand (EWMA, :data:`LEVEL_WEIGHT`)."""
    # what was forecast at the previous sample, for the next actual
    prev_x: dict[str, float] | None = None
    prev_last: float | None = None
    prev_batch: float | None = None
    prev_batch_model: ModelRef | None = None
    prev_online: float | None = None
    prev_served: tuple[float, float, float] | None = None
    prev_served_model: ModelRef | None = None


class DemandOnline:
    """The online demand path of every host (implements ``streams.capacity.
    OnlineDemandPath``).

    Examples:
        >>> path = DemandOnline()
        >>> state = path.new()
        >>> model = ModelRef("forecast-ensemble", "1")
        >>> step = None
        >>> for i in range(30):
        ...     d = np.full(min(i + 1, 8), 50.0)
        ...     f = DemandForecast((1, 5), np.array([50.0, 50.0]), np.array([45.0, 45.0]),
        ...                        np.array([55.0, 55.0]), 0.8, 0.9)
        ...     step = path.step(state, host_id="h", event_id=f"e{i}", ts=1.8e9 + 60 * i,
        ...                      recent=d, forecast=f, forecaster=model)
        >>> step.source, step.forecast is not None, round(step.online_point, 3)
        ('forecaster', True, 50.0)
        >>> [s.role for s in step.scored]
        ['batch', 'online', 'served']
    """

    name = "online-demand"
    version = "1"
    lookback = LOOKBACK

    def __init__(self, settings: DemandOnlineSettings | None = None) -> None:
        self.settings = settings or DemandOnlineSettings()
        self.model = ModelRef(self.name, self.version)

    def key_group(self, host_id: str) -> str:
        """A stable bucket of the host id (crc32), ``g00`` .. ``g15`` by default."""
        return key_group(host_id, self.settings.key_groups)

    def new(self) -> HostState:
        return HostState()

    def load(self, blob: bytes) -> HostState:
        """The state :meth:`dump` wrote (written by this class into the worker's own
        store, never taken from a message: trusted as the model artifacts are)."""
        fields = pickle.loads(blob)  # noqa: S301
        if not (isinstance(fields, tuple) and fields and fields[0] == STATE_FORMAT):
            msg = f"A host's online state must be a {STATE_FORMAT!r} blob. Got {type(fields)!r}."
            raise TypeError(msg)
        (_, learner, residual, batch, online, long_run, version, champion, streak, adapting,
         seen, level, px, plast, pbatch, pbmodel, ponline, pserved, psmodel) = fields  # fmt: skip
        return HostState(
            LinkLearner.loads(learner), DriftMonitor.loads(residual), Recent(*batch),
            Recent(*online), long_run, version, champion, streak, adapting, seen, level, px,
            plast, pbatch, to_ref(pbmodel), ponline, pserved, to_ref(psmodel),
        )  # fmt: skip

    def dump(self, state: HostState) -> bytes:
        """The state as plain values and its parts' own snapshots."""
        b, o = state.batch, state.online
        return pickle.dumps(
            (STATE_FORMAT, state.learner.dumps(), state.residual.dumps(), b.plain(),
             o.plain(), state.long_run_acc, state.batch_version, state.champion,
             state.streak, state.adapting, state.seen, state.level, state.prev_x, state.prev_last,
             state.prev_batch, plain(state.prev_batch_model), state.prev_online,
             state.prev_served, plain(state.prev_served_model)),
            protocol=5,
        )  # fmt: skip

    def step(
        self,
        state: HostState,
        *,
        host_id: str,
        event_id: str,
        ts: float,
        recent: np.ndarray,
        forecast: DemandForecast | None,
        forecaster: ModelRef | None,
    ) -> DemandStep:
        s = self.settings
        events: list[ModelEvent] = []
        scored: list[Scored] = []
        state.seen += 1
        detail: dict[str, Any] = {"key": host_id, "key_group": self.key_group(host_id)}
        history = np.asarray(recent, dtype=np.float64)[-LOOKBACK:]
        history = np.maximum(history[np.isfinite(history)], EPS)
        actual = float(history[-1]) if len(history) else None
        if actual is not None:
            floor = 0.0 if math.isnan(state.level) else FLOOR_SHARE * state.level
            self._score(state, actual, floor, scored)
            self._drift(state, actual, floor, ts, event_id, detail, events)
            if math.isnan(state.level):
                state.level = actual
            else:
                state.level += LEVEL_WEIGHT * (actual - state.level)
            if state.prev_x is not None and state.prev_last is not None:
                state.learner.learn(state.prev_x, math.log(actual / state.prev_last))
        if forecaster is not None and forecaster.version != state.batch_version:
            self._new_forecaster(state, forecaster)
        # the next step's forecasts
        batch_point = None
        if forecast is not None and len(forecast.point) and math.isfinite(forecast.point[0]):
            batch_point = float(forecast.point[0])
        batch_log = (
            math.log(max(batch_point, EPS) / actual)
            if batch_point is not None and actual is not None
            else None
        )
        x = link_features(history, batch_log) if actual is not None else None
        online_point = None
        if x is not None and actual is not None:
            online_point = actual * math.exp(state.learner.predict(x))
        self._choose(state, ts, event_id, detail, events, online_point is not None, forecaster)
        served, source = forecast, "forecaster"
        if (
            state.champion == "online"
            and forecast is not None
            and online_point is not None
            and batch_point is not None
        ):
            served, source = _relevel(forecast, online_point / max(batch_point, EPS)), "online"
        state.prev_x, state.prev_last = x, actual
        state.prev_batch = batch_point
        state.prev_batch_model = forecaster if batch_point is not None else None
        state.prev_online = online_point
        if served is not None and batch_point is not None:
            state.prev_served = (
                float(served.point[0]),
                float(served.lower[0]),
                float(served.upper[0]),
            )
            state.prev_served_model = self.model if source == "online" else forecaster
        else:
            state.prev_served = state.prev_served_model = None
        if s.summary_every and state.seen % s.summary_every == 0 and forecaster is not None:
            events.append(self._summary(state, ts, {**detail, "event_id": event_id}, forecaster))
        return DemandStep(served, source, state.champion, online_point, events, scored)

    # -- the parts of a step -------------------------------------------------------------

    def _new_forecaster(self, state: HostState, model: ModelRef) -> None:
        """A new forecaster version (a hot swap, ``novacron train forecast``): its
        figures start afresh and drift is judged on its residuals from now on."""
        if state.batch_version is not None:
            state.batch = Recent()
            state.long_run_acc = math.nan
            state.residual.reset()
        state.batch_version = model.version

    def _score(self, state: HostState, actual: float, floor: float, scored: list[Scored]) -> None:
        """The metrics get errors relative to the actual; the recent figures (what the
        champion is chosen on) relative to the actual plus ``floor``."""

        def check(predicted: float | None) -> tuple[float, float, bool, bool] | None:
            if predicted is None or not math.isfinite(predicted):
                return None
            err = abs(actual - predicted)
            scale = actual + floor
            return err, err / scale, err <= 0.2 * scale, err <= 0.2 * actual

        batch = check(state.prev_batch)
        if batch is not None and state.prev_batch_model is not None:
            score_batch(state, batch[1], batch[2])
            scored.append(Scored("batch", state.prev_batch_model, batch[0], batch[3]))
        online = check(state.prev_online)
        if online is not None:
            state.online.add(online[1], online[2])
            scored.append(Scored("online", self.model, online[0], online[3]))
        if state.prev_served is not None and state.prev_served_model is not None:
            point, lo, hi = state.prev_served
            err = abs(actual - point)
            scored.append(
                Scored(
                    "served", state.prev_served_model, err, err <= 0.2 * actual, lo <= actual <= hi
                )
            )

    def _drift(
        self,
        state: HostState,
        actual: float,
        floor: float,
        ts: float,
        event_id: str,
        detail: dict[str, Any],
        events: list[ModelEvent],
    ) -> None:
        model = state.prev_batch_model
        if state.prev_batch is None or model is None:
            return
        predicted = max(state.prev_batch, EPS) + floor
        residual = min(abs(math.log((actual + floor) / predicted)), RESIDUAL_CAP)
        fired = state.residual.update(residual)
        if fired is None:
            return
        kind = "drift_detected" if fired == "drift" else "drift_warning"
        event_detail = {
            **detail,
            "signal": "residual",
            "event_id": event_id,
            "evidence": state.residual.evidence(),
        }
        if fired == "drift":
            # the forecaster is not retrained by `novacron retrain` (bandwidth models only)
            event_detail["retrain"] = RETRAIN_HINT
            state.residual.reset()
            state.adapting = self.settings.adapt_samples
        events.append(ModelEvent(kind, model, ts, detail=event_detail))

    def _choose(
        self,
        state: HostState,
        ts: float,
        event_id: str,
        detail: dict[str, Any],
        events: list[ModelEvent],
        online_ready: bool,
        forecaster: ModelRef | None,
    ) -> None:
        before = choose(state, self.settings, online_ready, "forecaster")
        if before is not None:
            model = forecaster or state.prev_batch_model or self.model
            events.append(changed_event(state, before, ts, event_id, detail, model, self.model))

    def _summary(
        self, state: HostState, ts: float, detail: dict[str, Any], model: ModelRef
    ) -> ModelEvent:
        return summary_event(state, self.settings, ts, state.seen, detail, model, self.model)


def _relevel(forecast: DemandForecast, factor: float) -> DemandForecast:
    """``forecast`` with every horizon's point and interval times ``factor`` (clipped
    to :data:`LEVEL_CLIP`)."""
    k = min(max(factor, LEVEL_CLIP[0]), LEVEL_CLIP[1])
    return dataclasses.replace(
        forecast, point=forecast.point * k, lower=forecast.lower * k, upper=forecast.upper * k
    )
