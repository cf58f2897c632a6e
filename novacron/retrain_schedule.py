"""Which retrain requests ``novacron retrain`` acts on, when, and which it answers skipped.

Pure: requests come in with their position on the model events topic, time comes in as
``now``. Rules, per model name:

* a request for a model the job does not train, or whose mode disagrees with its name,
  is skipped (``unknown_model``, ``mode_mismatch``);
* a request whose id a retrain already handled (the registry says so) is skipped
  (``already_handled``): a request redelivered after a restart trains nothing twice;
* a request confirmed at or before the newest sample of the last retrain's data is
  skipped (``covered``): that retrain already trained and judged on its evidence;
* every other request waits, and all waiting requests of a model are coalesced into
  its next retrain, which starts no sooner than ``cooldown_s`` after the previous one
  started. Drift on many links at once therefore costs one retrain, and requests that
  bring evidence newer than a running retrain's data are kept for the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.retraining import RetrainHistory, RetrainRequest, retrainable_mode

Position = tuple[int, int]
"""``(partition, offset)`` of a request on the model events topic."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Requests answered with a ``retrain_skipped`` record, and why."""

    model: str
    requests: tuple[RetrainRequest, ...]
    kind: str
    reason: str
    version: str | None = None

    @property
    def request_ids(self) -> list[str]:
        return list(dict.fromkeys(r.request_id for r in self.requests))


@dataclass(slots=True)
class _ModelQueue:
    history: RetrainHistory
    pending: dict[Position, RetrainRequest] = field(default_factory=dict)
    running: dict[Position, RetrainRequest] = field(default_factory=dict)


def parse_request(value: Mapping[str, Any], source_id: str) -> RetrainRequest | None:
    """The retrain request in a schema-valid ``model.events.v1`` value; None for other events.

    ``source_id`` (``topic:partition:offset``) stands in for a missing request id, and
    the mode comes from the model's name where the detail leaves it out.

    Examples:
        >>> parse_request({"event": "retrain_requested", "ts": 1.8e9,
        ...     "model": {"name": "bandwidth-lstm-internet", "version": "3"},
        ...     "detail": {"request_id": "r1", "key": "l7", "reason": "drift"}}, "t:0:5")
        RetrainRequest(request_id='r1', model='bandwidth-lstm-internet', mode='internet', \
ts=1800000000.0, version='3', key='l7', reason='drift')
        >>> parse_request({"event": "activated", "ts": 1.8e9,
        ...     "model": {"name": "m", "version": "1"}}, "t:0:6") is None
        True
    """
    if value.get("event") != "retrain_requested":
        return None
    detail = value.get("detail") or {}
    name = str(value["model"]["name"])
    return RetrainRequest(
        request_id=str(detail.get("request_id") or source_id),
        model=name,
        mode=str(detail.get("mode") or retrainable_mode(name) or ""),
        ts=float(value["ts"]),
        version=str(value["model"]["version"]),
        key=str(detail.get("key") or ""),
        reason=str(detail.get("reason") or ""),
    )


class RetrainSchedule:
    """Requests per model: skipped, waiting, or coalesced into one due retrain.

    Args:
        cooldown_s: least wall-clock seconds between the starts of two retrains of a model.
        history: a model's past retrains (from the registry), read once per model.
    """

    def __init__(self, cooldown_s: float, history: Callable[[str], RetrainHistory]) -> None:
        self.cooldown_s = cooldown_s
        self._history = history
        self._queues: dict[str, _ModelQueue] = {}

    def _queue(self, name: str) -> _ModelQueue:
        if name not in self._queues:
            self._queues[name] = _ModelQueue(self._history(name))
        return self._queues[name]

    def admit(self, request: RetrainRequest, position: Position) -> Skip | None:
        """Queue a request, or say why it is skipped at once."""
        mode = retrainable_mode(request.model)
        if mode is None:
            reason = (
                f"model '{request.model}' is not one retrain trains; it retrains "
                "bandwidth-lstm-datacenter and bandwidth-lstm-internet"
            )
            return Skip(request.model, (request,), "unknown_model", reason)
        if request.mode != mode:
            reason = (
                f"the request's mode {request.mode!r} is not the mode of '{request.model}' "
                f"({mode!r}); the requester should name the model of the link's mode"
            )
            return Skip(request.model, (request,), "mode_mismatch", reason)
        queue = self._queue(request.model)
        done = queue.history.handled.get(request.request_id)
        if done is not None:
            reason = f"request {request.request_id} was handled by the retrain of v{done}"
            return Skip(request.model, (request,), "already_handled", reason, done)
        if position not in queue.running:
            queue.pending[position] = request
        return None

    def take_due(self, now: float) -> tuple[list[Skip], tuple[RetrainRequest, ...] | None]:
        """Skip waiting requests a retrain covered; hand out at most one due retrain.

        Nothing is handed out while a retrain runs. A due retrain's requests stay
        unhandled (see :meth:`unhandled`) until :meth:`finished`.
        """
        skips = []
        for name, queue in self._queues.items():
            covered_until = queue.history.covered_until
            if covered_until is None or not queue.pending:
                continue
            covered = {p: r for p, r in queue.pending.items() if r.ts <= covered_until}
            if covered:
                for p in covered:
                    del queue.pending[p]
                version = queue.history.last_version
                reason = (
                    f"the retrain of v{version} used telemetry up to {covered_until:.3f}, "
                    "on or after when these requests' drift was confirmed"
                )
                skips.append(Skip(name, tuple(covered.values()), "covered", reason, version))
        if any(q.running for q in self._queues.values()):
            return skips, None
        for queue in self._queues.values():
            if queue.pending and now >= self.ready_at(queue):
                queue.running, queue.pending = queue.pending, {}
                return skips, tuple(queue.running.values())
        return skips, None

    def ready_at(self, queue: _ModelQueue) -> float:
        last = queue.history.last_started
        return float("-inf") if last is None else last + self.cooldown_s

    def finished(self, name: str, history: RetrainHistory) -> None:
        """A model's running retrain is over; ``history`` is what it leaves behind."""
        queue = self._queue(name)
        queue.running = {}
        queue.history = history

    def waiting(self) -> dict[str, tuple[int, float]]:
        """Models with waiting requests: how many, and when their cooldown ends."""
        return {
            name: (len(q.pending), self.ready_at(q))
            for name, q in self._queues.items()
            if q.pending
        }

    def running(self) -> bool:
        return any(q.running for q in self._queues.values())

    def unhandled(self) -> list[Position]:
        """Positions of requests waiting or in a running retrain."""
        return [p for q in self._queues.values() for p in (*q.pending, *q.running)]


def commit_offsets(read: Mapping[int, int], unhandled: Iterable[Position]) -> dict[int, int]:
    """Offsets to commit per partition: the first unhandled request, else all read.

    Examples:
        >>> commit_offsets({0: 12, 1: 40}, [(1, 33), (1, 35)])
        {0: 12, 1: 33}
    """
    first: dict[int, int] = {}
    for partition, offset in unhandled:
        first[partition] = min(offset, first.get(partition, offset))
    return {p: min(next_offset, first.get(p, next_offset)) for p, next_offset in read.items()}
