"""Champion/challenger between a batch model and an online learner, for one key.

Shared by the links' online path (:mod:`online.link`) and the hosts' (:mod:`online.demand`):
the recent figures of both models, the batch model's long-run accuracy, when the batch
model counts as degraded, the switch with hysteresis, and the records that say so.

A key's state (a ``LinkState`` or a ``HostState``) carries the attributes of
:class:`Contested`; the functions here read and update them in place.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

from streams.records import ModelEvent, ModelRef

FAST = 0.05
"""Weight of the newest scored prediction in the recent figures (~20-sample memory)."""
SLOW = 0.002
"""Weight of the newest in the batch model's long-run accuracy (~500-sample memory)."""


@dataclass(slots=True)
class Recent:
    """Exponentially weighted recent error and ±20% accuracy of one model on one key."""

    err: float = math.nan
    acc: float = math.nan
    n: int = 0

    def add(self, pct_error: float, within: bool) -> None:
        hit = 1.0 if within else 0.0
        if self.n == 0:
            self.err, self.acc = pct_error, hit
        else:
            self.err += FAST * (pct_error - self.err)
            self.acc += FAST * (hit - self.acc)
        self.n += 1

    def view(self) -> tuple[float | None, float | None]:
        if self.n == 0:
            return None, None
        return round(self.err, 6), round(self.acc, 6)

    def plain(self) -> tuple[float, float, int]:
        return (self.err, self.acc, self.n)


class Rules(Protocol):
    """The settings the contest reads (``LinkOnlineSettings``, ``DemandOnlineSettings``)."""

    @property
    def switch_margin(self) -> float: ...

    @property
    def patience(self) -> int: ...

    @property
    def loss_points(self) -> float: ...

    @property
    def warm_up(self) -> int: ...


class Contested(Protocol):
    """The champion/challenger part of a key's online state."""

    batch: Recent
    online: Recent
    long_run_acc: float
    champion: str
    streak: int
    adapting: int


def score_batch(state: Contested, pct_error: float, within: bool) -> None:
    """Add one scored batch prediction to the recent and the long-run figures."""
    state.batch.add(pct_error, within)
    hit = 1.0 if within else 0.0
    if math.isnan(state.long_run_acc):
        state.long_run_acc = hit
    else:
        state.long_run_acc += SLOW * (hit - state.long_run_acc)


def low(state: Contested, rules: Rules) -> bool:
    """The batch model's recent ±20% accuracy is well below its own long-run figure."""
    return (
        state.batch.n >= rules.warm_up
        and not math.isnan(state.long_run_acc)
        and state.batch.acc < state.long_run_acc - rules.loss_points
    )


def degraded(state: Contested, rules: Rules) -> bool:
    """Adapting after a confirmed drift, or :func:`low`."""
    return state.adapting > 0 or low(state, rules)


def choose(state: Contested, rules: Rules, online_ready: bool, batch: str) -> str | None:
    """One sample of the contest: the champion before, if it changed (else ``None``).

    The online learner (champion ``"online"``) wins once it is ready, the batch model
    (champion ``batch``) is degraded, and the learner's recent error is lower by
    ``switch_margin`` for ``patience`` samples in a row. The batch model wins back once
    it is no longer degraded and as good, or, while still degraded, better by the same
    margin, for as many samples (two-sided hysteresis).
    """
    if state.adapting > 0:
        state.adapting -= 1
    bad = degraded(state, rules)
    ready = (
        online_ready
        and state.online.n >= rules.warm_up
        and state.batch.n >= 1
        and not math.isnan(state.online.err)
    )
    before = state.champion
    if state.champion == batch:
        better = ready and bad and state.online.err < (1 - rules.switch_margin) * state.batch.err
        state.streak = state.streak + 1 if better else 0
        if state.streak >= rules.patience:
            state.champion, state.streak = "online", 0
    else:
        margin = rules.switch_margin if bad else 0.0
        back = not ready or state.batch.err <= (1 - margin) * state.online.err
        state.streak = state.streak + 1 if back else 0
        if state.streak >= rules.patience:
            state.champion, state.streak = batch, 0
            state.adapting = 0
    return before if state.champion != before else None


def changed_event(
    state: Contested,
    before: str,
    ts: float,
    event_id: str,
    detail: dict[str, Any],
    batch_model: ModelRef,
    online_model: ModelRef,
) -> ModelEvent:
    """The ``champion_changed`` record of a switch (keyed by the new champion's model)."""
    return ModelEvent(
        "champion_changed",
        online_model if state.champion == "online" else batch_model,
        ts,
        detail={
            **detail,
            "event_id": event_id,
            "champion": state.champion,
            "previous": before,
            "batch_model": {"name": batch_model.name, "version": batch_model.version},
            "batch_recent_abs_pct_error": num(state.batch.err),
            "online_recent_abs_pct_error": num(state.online.err),
        },
    )


def summary_event(
    state: Contested,
    rules: Rules,
    ts: float,
    samples: int,
    detail: dict[str, Any],
    batch_model: ModelRef,
    online_model: ModelRef,
) -> ModelEvent:
    """The periodic ``accuracy_summary`` record of one key."""
    batch_err, batch_acc = state.batch.view()
    online_err, online_acc = state.online.view()
    return ModelEvent(
        "accuracy_summary",
        batch_model,
        ts,
        detail={
            **detail,
            "samples": samples,
            "champion": state.champion,
            "degraded": degraded(state, rules),
            "batch": {
                "recent_abs_pct_error": batch_err,
                "recent_within_20pct": batch_acc,
                "long_run_within_20pct": num(state.long_run_acc),
                "scored": state.batch.n,
            },
            "online": {
                "name": online_model.name,
                "version": online_model.version,
                "recent_abs_pct_error": online_err,
                "recent_within_20pct": online_acc,
                "scored": state.online.n,
            },
        },
    )


def key_group(key: str, groups: int) -> str:
    """A stable bucket of a key (crc32): ``g00`` .. ``g15`` for 16 groups.

    Examples:
        >>> key_group("link-0001", 16) == key_group("link-0001", 16)
        True
    """
    return f"g{zlib.crc32(key.encode('utf-8')) % groups:02d}"


def plain(ref: ModelRef | None) -> tuple[str, str] | None:
    return None if ref is None else (ref.name, ref.version)


def to_ref(value: tuple[str, str] | None) -> ModelRef | None:
    return None if value is None else ModelRef(*value)


def num(value: float | None) -> float | None:
    """A finite value rounded for a record, else ``None``."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)
