"""Per-link online path: River learner, drift detectors, online accuracy, champion/challenger.

The bandwidth processor calls :meth:`LinkOnline.step` once per new link sample, in event
order, with the link's recent bandwidth values and the batch model's prediction for the
next step. One step:

1. **Online accuracy.** The predictions made at the previous sample (batch, online and
   the one published) are checked against this sample's actual: absolute error, within
   ±20%, actual inside the published interval. These go to the worker's metrics per
   model version, mode and key group, and into exponentially weighted recent figures per
   link (about the last 20 scored predictions, :data:`online.champion.FAST`), plus a slow long-run
   figure of the batch model (:data:`online.champion.SLOW`) to compare against.
2. **Drift.** The batch model's residual ``min(|log(actual / predicted)|, 2)`` feeds a
   two-tier :class:`~online.drift.DriftMonitor` (warning, confirmed); the link's log
   bandwidth feeds a second one that only ever warns (links have daily cycles: an input
   change alone is news, not a reason to retrain). A confirmed drift emits
   ``drift_detected`` (the event time of the sample where it was confirmed, the link,
   its key group, the detector's evidence), puts the link in *adapting* mode and
   requests a retrain (at most one request per link per :attr:`LinkOnlineSettings.
   retrain_every` samples; replay writes ``retrain_skipped`` instead, saying so).
   Sustained accuracy loss (the batch model's recent ±20% accuracy more than
   :attr:`LinkOnlineSettings.loss_points` below its own long-run figure for
   :attr:`LinkOnlineSettings.loss_samples` samples) requests a retrain too.
3. **Learning.** The River learner (:class:`~online.learners.LinkLearner`) learns the
   previous sample's features -> this actual, then predicts the next step; it is given
   the batch model's own correction as a feature, so it learns to correct the batch
   model, and falls back to the recent values alone when there is none.
4. **Champion/challenger.** While the batch model is degraded (adapting after a
   confirmed drift, or its recent accuracy well below its long-run figure), the online
   learner becomes champion once its recent error is lower than the batch model's by
   :attr:`LinkOnlineSettings.switch_margin` for :attr:`LinkOnlineSettings.patience`
   samples in a row; the batch model takes over again once it is no longer degraded and
   its recent error is no worse than the online learner's for as many samples (or, while
   still degraded, once it is better by the same margin). A new batch version (a hot
   swap after a retrain) ends the adapting of the version before it. The published
   prediction (and its ``model``) is the champion's; the online learner's interval is its own split-
   conformal one (the quantile of its recent absolute log errors at the batch model's
   interval level). Every switch emits ``champion_changed``.
5. **Summaries.** Every :attr:`LinkOnlineSettings.summary_every` samples a link emits an
   ``accuracy_summary`` with both models' recent figures.

State: about 4 KB per link once learned (learner, two monitors, a ring of 64 errors),
pickled with the link's window after each batch. It is restored by whichever worker
owns the link, and a crash between two batches costs nothing: the state is stored in
the same Redis transaction as the window entries, so a batch that was not persisted is
redone from the state before it.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.predictor import OnlineStep, Scored
from streams.records import ModelEvent, ModelRef

from .champion import (
    Recent,
    changed_event,
    choose,
    degraded,
    key_group,
    low,
    num,
    plain,
    score_batch,
    summary_event,
    to_ref,
)
from .drift import INPUT_SETTINGS, RESIDUAL_SETTINGS, DriftMonitor
from .learners import LOOKBACK, LinkLearner, link_features

RESIDUAL_CAP = 2.0
EPS = 1e-3
RING = 64
STATE_FORMAT = "novacron-link-online/1"


@dataclass(frozen=True, slots=True)
class LinkOnlineSettings:
    """When the online path switches, requests, summarises.

    Attributes:
        key_groups: links are hashed into this many key groups (the label of the
            accuracy metrics; bounded, whatever the number of links).
        switch_margin: the online learner must beat the batch model's recent error by
            this fraction to become champion.
        patience: consecutive samples a switch condition must hold (both directions).
        adapt_samples: how long a link stays in adapting mode after a confirmed drift
            (it leaves earlier when the batch model is champion again and as good).
        loss_points: the batch model's recent ±20% accuracy this far below its
            long-run figure counts as degraded.
        loss_samples: sustained that long, the accuracy loss requests a retrain.
        retrain_every: at most one retrain request per link per this many samples.
        summary_every: samples between two ``accuracy_summary`` records of a link.
        warm_up: scored predictions before the recent figures are trusted.
        request_retrain: ``False`` (replay) writes ``retrain_skipped`` instead.
    """

    key_groups: int = 16
    switch_margin: float = 0.10
    patience: int = 5
    adapt_samples: int = 600
    loss_points: float = 0.15
    loss_samples: int = 120
    retrain_every: int = 3600
    summary_every: int = 600
    warm_up: int = 20
    request_retrain: bool = True


@dataclass(slots=True)
class LinkState:
    """One link's online state (pickled with the link's window)."""

    learner: LinkLearner = field(default_factory=LinkLearner)
    residual: DriftMonitor = field(default_factory=lambda: DriftMonitor(RESIDUAL_SETTINGS))
    inputs: DriftMonitor = field(default_factory=lambda: DriftMonitor(INPUT_SETTINGS))
    batch: Recent = field(default_factory=Recent)
    online: Recent = field(default_factory=Recent)
    long_run_acc: float = math.nan
    batch_version: str | None = None
    champion: str = "batch"
    streak: int = 0
    adapting: int = 0
    low_streak: int = 0
    seen: int = 0
    last_request: int = -(10**9)
    ring: deque[float] = field(default_factory=lambda: deque(maxlen=RING))
    # what was predicted at the previous sample, for the next actual
    prev_x: dict[str, float] | None = None
    prev_last: float | None = None
    prev_batch: float | None = None
    prev_batch_model: ModelRef | None = None
    prev_online: float | None = None
    prev_served: tuple[float, float, float] | None = None
    prev_served_model: ModelRef | None = None


def linear_quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile of finite ``values``, as ``numpy.quantile``'s default (linear)
    method computes it, to the bit: on the ring of 64 errors a link keeps, about 1.5 µs
    against numpy's 33 µs of per-call overhead.

    >>> linear_quantile([3.0, 1.0, 2.0, 4.0], 0.8)
    3.4000000000000004
    """
    ordered = sorted(values)
    virtual = (len(ordered) - 1) * q
    below = math.floor(virtual)
    if below >= len(ordered) - 1:
        return ordered[-1]
    a, b = ordered[below], ordered[below + 1]
    t = virtual - below
    diff = b - a
    # numpy's lerp: from the nearer end, so that t = 1 gives b exactly
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


class LinkOnline:
    """The online path of every link (implements ``streams.predictor.OnlineLinkPath``).

    Args:
        settings: switching, request and summary rules.
        interval_level: nominal coverage of the online learner's interval (the batch
            model's level, so both intervals mean the same).
    """

    name = LinkLearner.name
    version = LinkLearner.version
    lookback = LOOKBACK

    def __init__(
        self, settings: LinkOnlineSettings | None = None, interval_level: float = 0.8
    ) -> None:
        self.settings = settings or LinkOnlineSettings()
        self.interval_level = interval_level
        self.model = ModelRef(self.name, self.version)

    def key_group(self, link_id: str) -> str:
        """A stable bucket of the link id (crc32), ``g00`` .. ``g15`` by default."""
        return key_group(link_id, self.settings.key_groups)

    def new(self) -> LinkState:
        return LinkState()

    def load(self, blob: bytes) -> LinkState:
        """The state :meth:`dump` wrote (written by this class into the worker's own
        store, never taken from a message: trusted as the model artifacts are)."""
        fields = pickle.loads(blob)  # noqa: S301
        if not (isinstance(fields, tuple) and fields and fields[0] == STATE_FORMAT):
            msg = f"A link's online state must be a {STATE_FORMAT!r} blob. Got {type(fields)!r}."
            raise TypeError(msg)
        (_, learner, residual, inputs, batch, online, long_run, version, champion, streak,
         adapting, low, seen, last_request, ring, px, plast, pbatch, pbmodel, ponline,
         pserved, psmodel) = fields  # fmt: skip
        return LinkState(
            LinkLearner.loads(learner), DriftMonitor.loads(residual), DriftMonitor.loads(inputs),
            Recent(*batch), Recent(*online), long_run, version, champion, streak, adapting,
            low, seen, last_request, deque(ring, maxlen=RING), px, plast, pbatch,
            to_ref(pbmodel), ponline, pserved, to_ref(psmodel),
        )  # fmt: skip

    def dump(self, state: LinkState) -> bytes:
        """The state as plain values and its parts' own snapshots (a pickle of the
        dataclasses themselves takes four times as long)."""
        b, o = state.batch, state.online
        return pickle.dumps(
            (STATE_FORMAT, state.learner.dumps(), state.residual.dumps(), state.inputs.dumps(),
             b.plain(), o.plain(), state.long_run_acc, state.batch_version,
             state.champion, state.streak, state.adapting, state.low_streak, state.seen,
             state.last_request, list(state.ring), state.prev_x, state.prev_last,
             state.prev_batch, plain(state.prev_batch_model), state.prev_online,
             state.prev_served, plain(state.prev_served_model)),
            protocol=5,
        )  # fmt: skip

    def step(
        self,
        state: LinkState,
        *,
        link_id: str,
        mode: str,
        event_id: str,
        ts: float,
        recent: np.ndarray,
        batch_point: float | None,
        batch_lower: float | None,
        batch_upper: float | None,
        batch_model: ModelRef | None,
    ) -> OnlineStep:
        s = self.settings
        events: list[ModelEvent] = []
        scored: list[Scored] = []
        state.seen += 1
        actual = float(recent[-1]) if len(recent) and math.isfinite(recent[-1]) else None
        detail = {"key": link_id, "key_group": self.key_group(link_id), "mode": mode}
        if batch_model is not None and batch_model.version != state.batch_version:
            self._new_batch_version(state, batch_model)
        if actual is not None and actual > 0:
            self._score(state, actual, scored)
            self._drift(state, actual, ts, event_id, detail, events)
            if state.prev_x is not None and state.prev_last is not None:
                target = math.log(max(actual, EPS) / max(state.prev_last, EPS))
                state.learner.learn(state.prev_x, target)
        # the next step's predictions
        history = recent[np.isfinite(recent)]
        history = np.maximum(history, EPS)
        last = float(history[-1]) if len(history) else None
        batch_log = (
            math.log(max(batch_point, EPS) / last)
            if batch_point is not None and last is not None and math.isfinite(batch_point)
            else None
        )
        x = link_features(history[-LOOKBACK:], batch_log) if last is not None else None
        online_point = None
        if x is not None and last is not None:
            online_point = last * math.exp(float(np.clip(state.learner.predict(x), -5.0, 5.0)))
        self._choose(state, ts, event_id, detail, events, online_point is not None)
        point = lower = upper = None
        served = batch_model or self.model
        if state.champion == "online" and online_point is not None:
            q = self._quantile(state)
            point, lower, upper = (
                online_point,
                online_point * math.exp(-q),
                online_point * math.exp(q),
            )
            served = self.model
        state.prev_x, state.prev_last = x, last
        state.prev_batch, state.prev_batch_model = batch_point, batch_model
        state.prev_online = online_point
        if point is not None and lower is not None and upper is not None:
            state.prev_served, state.prev_served_model = (point, lower, upper), served
        elif batch_point is not None and batch_lower is not None and batch_upper is not None:
            state.prev_served = (batch_point, batch_lower, batch_upper)
            state.prev_served_model = batch_model
        else:
            state.prev_served = state.prev_served_model = None
        if s.summary_every and state.seen % s.summary_every == 0 and batch_model is not None:
            events.append(self._summary(state, ts, detail, batch_model))
        serving = self._serving(state, batch_model, batch_point, online_point)
        return OnlineStep(
            point, lower, upper, served, state.champion, online_point, serving, events, scored
        )

    # -- the parts of a step -------------------------------------------------------------

    def _new_batch_version(self, state: LinkState, model: ModelRef) -> None:
        """A new batch version (a hot swap, a retrain): its figures start afresh, and
        drift is judged on its residuals from now on."""
        if state.batch_version is not None:
            state.batch = Recent()
            state.long_run_acc = math.nan
            state.low_streak = 0
            state.residual.reset()
            state.adapting = 0  # the drift was the old version's
        state.batch_version = model.version

    def _score(self, state: LinkState, actual: float, scored: list[Scored]) -> None:
        def check(predicted: float | None) -> tuple[float, float, bool] | None:
            if predicted is None or not math.isfinite(predicted):
                return None
            err = abs(actual - predicted)
            return err, err / actual, err <= 0.2 * actual

        batch = check(state.prev_batch)
        if batch is not None and state.prev_batch_model is not None:
            score_batch(state, batch[1], batch[2])
            scored.append(Scored("batch", state.prev_batch_model, batch[0], batch[2]))
        online = check(state.prev_online)
        if online is not None:
            state.online.add(online[1], online[2])
            state.ring.append(abs(math.log(max(actual, EPS) / max(state.prev_online or EPS, EPS))))
            scored.append(Scored("online", self.model, online[0], online[2]))
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
        state: LinkState,
        actual: float,
        ts: float,
        event_id: str,
        detail: dict[str, Any],
        events: list[ModelEvent],
    ) -> None:
        s = self.settings
        model = state.prev_batch_model
        if state.prev_batch is not None and model is not None and state.prev_batch > 0:
            residual = min(abs(math.log(actual / max(state.prev_batch, EPS))), RESIDUAL_CAP)
            fired = state.residual.update(residual)
            if fired is not None:
                evidence = state.residual.evidence()
                kind = "drift_detected" if fired == "drift" else "drift_warning"
                events.append(
                    ModelEvent(
                        kind,
                        model,
                        ts,
                        detail={
                            **detail,
                            "signal": "residual",
                            "event_id": event_id,
                            "evidence": evidence,
                        },
                    )
                )
                if fired == "drift":
                    state.residual.reset()
                    state.adapting = s.adapt_samples
                    self._request(state, ts, event_id, detail, events, "drift", evidence)
        level = state.inputs.update(math.log(actual))
        if level is not None and model is not None:
            events.append(
                ModelEvent(
                    "drift_warning",
                    model,
                    ts,
                    detail={
                        **detail,
                        "signal": "input",
                        "tier": level,
                        "event_id": event_id,
                        "evidence": state.inputs.evidence(),
                    },
                )
            )
            if level == "drift":
                state.inputs.reset()
        # sustained accuracy loss
        if low(state, self.settings):
            state.low_streak += 1
            if state.low_streak == s.loss_samples:
                evidence = {
                    "recent_within_20pct": round(state.batch.acc, 4),
                    "long_run_within_20pct": round(state.long_run_acc, 4),
                    "samples": s.loss_samples,
                }
                self._request(state, ts, event_id, detail, events, "accuracy", evidence)
        else:
            state.low_streak = 0

    def _request(
        self,
        state: LinkState,
        ts: float,
        event_id: str,
        detail: dict[str, Any],
        events: list[ModelEvent],
        reason: str,
        evidence: dict[str, Any],
    ) -> None:
        s = self.settings
        model = state.prev_batch_model
        if model is None or state.seen - state.last_request < s.retrain_every:
            return
        state.last_request = state.seen
        request = {
            **detail,
            "request_id": f"{model.name}:{model.version}:{detail['key']}:{event_id}",
            "reason": reason,
            "event_id": event_id,
            "evidence": evidence,
        }
        if s.request_retrain:
            events.append(ModelEvent("retrain_requested", model, ts, detail=request))
        else:
            request["why"] = "replay: retraining is skipped, this request was not sent"
            events.append(ModelEvent("retrain_skipped", model, ts, detail=request))

    def _choose(
        self,
        state: LinkState,
        ts: float,
        event_id: str,
        detail: dict[str, Any],
        events: list[ModelEvent],
        online_ready: bool,
    ) -> None:
        before = choose(state, self.settings, online_ready, "batch")
        if before is not None:
            model = state.prev_batch_model or self.model
            events.append(changed_event(state, before, ts, event_id, detail, model, self.model))

    def _quantile(self, state: LinkState) -> float:
        if len(state.ring) < 8:
            return 0.2
        return linear_quantile(state.ring, self.interval_level)

    def _summary(
        self, state: LinkState, ts: float, detail: dict[str, Any], model: ModelRef
    ) -> ModelEvent:
        return summary_event(state, self.settings, ts, state.seen, detail, model, self.model)

    def _serving(
        self,
        state: LinkState,
        batch_model: ModelRef | None,
        batch_point: float | None,
        online_point: float | None,
    ) -> dict[str, Any]:
        model = batch_model or self.model
        batch_err, batch_acc = state.batch.view()
        online_err, online_acc = state.online.view()
        return {
            "champion": state.champion,
            "degraded": degraded(state, self.settings),
            "batch": {
                "name": model.name,
                "version": model.version,
                "predicted_mbps": num(batch_point),
                "recent_abs_pct_error": batch_err,
                "recent_within_20pct": batch_acc,
            },
            "online": {
                "name": self.name,
                "version": self.version,
                "predicted_mbps": num(online_point),
                "recent_abs_pct_error": online_err,
                "recent_within_20pct": online_acc,
            },
        }
