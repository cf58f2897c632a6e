"""What a processor is: the protocol the pipeline calls and the parts processors are built from."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..alerts import AlertPolicy
from ..capacity import Forecaster, OnlineDemandPath, ScalingController, WorkloadClassifier
from ..detector import AnomalyModel
from ..predictor import BandwidthPredictor, OnlineAdjuster, OnlineLinkPath, Scored
from ..records import ModelRef, OutputRecord, Score
from ..windows import BatchWindows

PredictorLookup = Callable[[str], BandwidthPredictor]
"""Returns the active bandwidth predictor of a link mode."""


@dataclass(slots=True)
class ProcessorResult:
    """What one processor made of a batch.

    Attributes:
        records: output records, in input order.
        predicted: model points to keep with the batch's new window entries, by event
            id (read back by the processor in later batches; see :mod:`online.gain`).
        counts: named counts the worker exports (e.g. ``predictions``, ``warming_up``).
            Names with a colon break a count down: ``alerts:<status>:<severity>`` and
            ``scaling_actions:<action>`` become labelled metrics of their own.
        states: per key, state fields to persist with the batch's window entries.
        notes: per key, what this processor tells the processors after it in the same
            batch (e.g. the host's workload class; see :attr:`BatchWindows.notes`).
        scored: earlier predictions checked against the batch's actuals (online
            accuracy), with the mode and key group of their link.
    """

    records: list[OutputRecord] = field(default_factory=list)
    predicted: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    states: dict[str, dict[str, bytes]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    scored: list[tuple[str, str, Scored]] = field(default_factory=list)


class Processor(Protocol):
    """Window -> features -> model -> decision over a batch of one input's samples.

    Pure: no Kafka, Redis or clock. The pipeline decodes the batch, loads the windows
    (:meth:`history_depth` entries per key), appends the samples once for every
    processor of the input (:func:`streams.windows.advance`), calls :meth:`process`,
    persists the new entries and encodes the records.
    """

    name: str
    state_fields: tuple[str, ...]
    """State fields the processor keeps per key with the window (``()``: stateless)."""

    def missing_state(self, newest: Mapping[str, str | None]) -> list[str]:
        """Keys whose state the processor must be given: those it does not hold as of
        the window's newest event id (``newest``: per key of the batch)."""
        ...

    def history_depth(self, samples: Sequence[Any]) -> int:
        """Window entries per key this batch needs loaded (the longest model history)."""
        ...

    def process(
        self, samples: Sequence[Any], windows: BatchWindows, scores: Sequence[Score] | None
    ) -> ProcessorResult:
        """Outputs of the batch's new samples (``windows.fresh``); adds this processor's
        figures to each sample's score. A redelivered sample gets no output: it is in the
        window only because its outputs were delivered."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessorParts:
    """What the registered processors are built from: models and options as plain values.

    Attributes:
        predictors: the active bandwidth predictor per link mode, looked up once per
            batch (a model swapped between batches serves from the next batch on).
        window_size: entries kept per key.
        bandwidth_adapter: adapts bandwidth points per link online (``None``: published
            as the model made them).
        anomaly: the anomaly model of hosts and links (``None``: no anomaly alerts).
        alert_policy: when anomaly alerts open, update and resolve.
        workload: the active workload classifier, looked up once per batch (``None``:
            no workload classes).
        workload_history: history rows the workload processor keeps per host.
        workload_bucket_s: seconds of a host's samples averaged into one history row.
        workload_version: the active classifier's name and version (for the scaling
            actions' list of models), or ``None``.
        forecaster: the active demand forecaster, looked up once per batch.
        scaling: the scaling controller (``None``: no scaling actions).
        scaling_metric: the host metric scaling demand is measured in.
        online_links: per-link online learning, drift detection and champion/challenger
            for the bandwidth processor (``None``: the batch model alone).
        online_demand: per-host online learning of demand, drift detection on the
            forecaster and champion/challenger for the scaling processor (``None``: the
            forecaster alone).
    """

    predictors: PredictorLookup
    window_size: int = 60
    bandwidth_adapter: OnlineAdjuster | None = None
    anomaly: AnomalyModel | None = None
    alert_policy: AlertPolicy = field(default_factory=AlertPolicy)
    workload: Callable[[], WorkloadClassifier | None] | None = None
    workload_history: int = 1440
    workload_bucket_s: float = 180.0
    workload_version: Callable[[], ModelRef | None] | None = None
    forecaster: Callable[[], Forecaster | None] | None = None
    scaling: ScalingController | None = None
    scaling_metric: str = "cpu_pct"
    online_links: OnlineLinkPath | None = None
    online_demand: OnlineDemandPath | None = None


S = TypeVar("S")


class HeldStates(Generic[S]):
    """Per-key states a processor holds in memory between batches; the least recently
    used leave beyond ``capacity`` (their state is in the store).

    Args:
        capacity: keys held at most.
        upto: the event id a state is at (the newest sample it has learned from).
        dirty: whether a state is being changed by a batch not yet delivered.
        saved: the fields a state last persisted (a batch redone sample by sample
            restarts from them).
    """

    def __init__(
        self,
        capacity: int,
        upto: Callable[[S], str | None],
        dirty: Callable[[S], bool],
        saved: Callable[[S], Mapping[str, bytes]],
    ) -> None:
        self.capacity = capacity
        self._upto = upto
        self._dirty = dirty
        self._saved = saved
        self._held: OrderedDict[str, S] = OrderedDict()

    def current(self, key: str, newest: str | None) -> S | None:
        """The state held for ``key`` if it is clean and at ``newest``, else ``None``."""
        held = self._held.get(key)
        if held is None or self._dirty(held) or self._upto(held) != newest:
            return None
        return held

    def get(self, key: str) -> S | None:
        return self._held.get(key)

    def resume(
        self, key: str, windows: BatchWindows, index: int
    ) -> tuple[str | None, S | None, list[Mapping[str, bytes]]]:
        """Where ``key``'s state must be for sample ``index`` of the batch, and from what.

        Returns the event id the state must be at (the window entry before the sample;
        ``None`` for a new key), the state held in memory if it is clean and there, and
        otherwise the stored field sets to restore it from, in order: the store's, then
        the last ones saved here (a batch redone sample by sample). The processor
        restores the first that is at that event id, else starts the key afresh.
        """
        entries = windows.entries[key]
        pos = windows.positions[index]
        previous = entries[pos - 1].event_id if pos > 0 else windows.newest.get(key)
        current = self.current(key, previous)
        if current is not None:
            return previous, current, []
        held = self._held.get(key)
        candidates = [windows.states.get(key), None if held is None else self._saved(held)]
        return previous, None, [fields for fields in candidates if fields]

    def missing(self, newest: Mapping[str, str | None]) -> list[str]:
        """The keys whose state is not held current (:meth:`Processor.missing_state`)."""
        return [key for key, last in newest.items() if self.current(key, last) is None]

    def hold(self, key: str, state: S) -> None:
        self._held[key] = state
        self._held.move_to_end(key)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)


ProcessorFactory = Callable[[ProcessorParts], Processor | None]
"""Makes a processor from the parts (``None``: the parts leave it out)."""
