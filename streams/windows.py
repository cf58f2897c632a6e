"""Rolling windows: the reducer that keeps the newest entries, and a batch's view of them.

:class:`CappedWindow` is the one definition of "keep the last N" (the in-memory store
and replay use it; the Redis store does the same server-side with ``LTRIM``).
:func:`advance` appends a batch's samples to the windows loaded for it, once, for every
processor of the input, and tells which samples are new. A sample already in a window
was appended by an earlier batch, and a batch's windows are persisted only after its
outputs were delivered: so its outputs exist, and processors make none for it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from .records import WindowEntry

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CappedWindow(Generic[T]):
    """Reducer that keeps the newest ``capacity`` values, oldest first.

    Examples:
        >>> w = CappedWindow(capacity=2)
        >>> state = w.initialize()
        >>> for i in range(3):
        ...     state = w.agg(state, f"e{i}")
        >>> w.result(state)
        ('e1', 'e2')
        >>> w.extend(("e1",), ["e2", "e3", "e4"])
        ('e3', 'e4')
    """

    capacity: int = 60

    def initialize(self) -> tuple[T, ...]:
        return ()

    def agg(self, state: tuple[T, ...], value: T) -> tuple[T, ...]:
        return self.extend(state, (value,))

    def extend(self, state: tuple[T, ...], values: Iterable[T]) -> tuple[T, ...]:
        """The state after ``agg`` of each value in turn, in one step."""
        merged = (*state, *values)
        return merged[max(0, len(merged) - self.capacity) :]

    def result(self, state: tuple[T, ...]) -> tuple[T, ...]:
        return state


class Keyed(Protocol):
    """A decoded sample: it belongs to a key and becomes one window entry."""

    @property
    def event_id(self) -> str: ...

    @property
    def key(self) -> str: ...

    def entry(self, position: tuple[int, int] | None = None) -> WindowEntry: ...


@dataclass(slots=True)
class BatchWindows:
    """The windows of a batch's keys after its samples were appended.

    Attributes:
        entries: per key, the loaded entries then the batch's new ones, oldest first.
        positions: per sample of the batch, the index of its entry in its key's list
            (for a redelivered sample, the entry it was first appended as; -1 where the
            loaded part of the window no longer holds it).
        fresh: per sample, whether it is new (``False``: a redelivery, already served).
        appends: per key, the entries new in this batch (what the store must persist).
        duplicates: samples that were redeliveries.
        newest: per key, the event id of the newest entry loaded (``None``: empty), which
            the store checks before it appends.
        states: per key, the stored state fields of stateful processors (only for the
            keys they asked for, see :meth:`streams.processors.Processor.missing_state`).
    """

    entries: dict[str, list[WindowEntry]] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    fresh: list[bool] = field(default_factory=list)
    appends: dict[str, list[WindowEntry]] = field(default_factory=dict)
    duplicates: int = 0
    newest: dict[str, str | None] = field(default_factory=dict)
    states: dict[str, dict[str, bytes]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def upto(self, key: str, index: int, steps: int) -> list[WindowEntry]:
        """The last ``steps`` entries of ``key`` up to and including sample ``index``'s."""
        pos = self.positions[index]
        if pos < 0:
            return []
        return self.entries[key][max(0, pos + 1 - steps) : pos + 1]

    def only(self, index: int) -> BatchWindows:
        """A view for sample ``index`` alone (a processor re-run on one sample)."""
        return BatchWindows(
            self.entries,
            [self.positions[index]],
            [self.fresh[index]],
            states=self.states,
            notes=self.notes,
        )

    def annotate(self, predicted: Mapping[str, float]) -> None:
        """Keep a model's prediction with each new entry it was made at (not yet holding one)."""
        if not predicted:
            return
        for key, new in self.appends.items():
            if any(e.event_id in predicted and e.predicted is None for e in new):
                self.appends[key] = [
                    replace(e, predicted=predicted[e.event_id])
                    if e.event_id in predicted and e.predicted is None
                    else e
                    for e in new
                ]


def advance(
    samples: Sequence[Keyed],
    loaded: Mapping[str, Sequence[WindowEntry]],
    positions: Sequence[tuple[int, int] | None] | None = None,
) -> BatchWindows:
    """Append each sample to its key's window unless it was appended before.

    A sample was appended before when its event id is in the loaded window, or when its
    message sits at or before the position of the window's newest entry (``positions``:
    each sample's message, ``(partition, offset)``): the broker redelivers a partition
    from its last committed offset, in order, so such a sample was stored even where
    the window, or the part of it loaded, no longer holds it. Without positions, a
    later sample of the same key being the newest entry says the same.

    Examples:
        >>> from streams.records import LinkSample
        >>> old = {"l1": [WindowEntry("e0", 1.0, (5.0,))]}
        >>> s = [LinkSample(f"e{i}", "l1", 1.0 + i, "internet", 5.0) for i in (0, 1, 2)]
        >>> view = advance(s, old)
        >>> view.positions, view.fresh, [e.event_id for e in view.appends["l1"]]
        ([0, 1, 2], [False, True, True], ['e1', 'e2'])
        >>> [e.event_id for e in view.upto("l1", 2, steps=2)]
        ['e1', 'e2']
        >>> advance(s, {"l1": [WindowEntry("e1", 2.0, (5.0,))]}).fresh  # e0 fell out
        [False, False, True]
        >>> stored = {"l1": [WindowEntry("e9", 9.0, (5.0,), position=(0, 9))]}
        >>> advance(s, stored, [(0, 4), (0, 9), (0, 10)]).fresh  # offsets 4 and 9 were stored
        [False, False, True]
    """
    newest = {key: window[-1] for key, window in loaded.items() if window}
    replayed_upto: dict[str, int] = {}
    for i, sample in enumerate(samples):
        last = newest.get(sample.key)
        if last is not None and last.event_id == sample.event_id:
            replayed_upto[sample.key] = i
    view = BatchWindows()
    ids: dict[str, dict[str, int]] = {}
    for i, sample in enumerate(samples):
        key = sample.key
        entries = view.entries.get(key)
        if entries is None:
            entries = view.entries[key] = list(loaded.get(key, ()))
            ids[key] = {e.event_id: i for i, e in enumerate(entries)}
            last = newest.get(key)
            view.newest[key] = None if last is None else last.event_id
        known = ids[key]
        position = None if positions is None else positions[i]
        pos = known.get(sample.event_id)
        if pos is None and (
            i < replayed_upto.get(key, -1) or _stored_before(position, newest.get(key))
        ):
            pos = -1
        fresh = pos is None
        if pos is None:
            entry = sample.entry(position)
            pos = known[entry.event_id] = len(entries)
            entries.append(entry)
            view.appends.setdefault(key, []).append(entry)
        else:
            view.duplicates += 1
        view.positions.append(pos)
        view.fresh.append(fresh)
    return view


def _stored_before(position: tuple[int, int] | None, newest: WindowEntry | None) -> bool:
    """Whether a message at ``position`` came before (or is) the window's newest entry's."""
    if position is None or newest is None or newest.position is None:
        return False
    return position[0] == newest.position[0] and position[1] <= newest.position[1]


def median_steps(times: np.ndarray, default: float = 1.0) -> np.ndarray:
    """Per row, the median positive interval between consecutive event times.

    Rows with no positive interval (one sample, or equal times) get ``default``.

    Examples:
        >>> median_steps(np.array([[0.0, 5.0, 10.0, 20.0], [3.0, 3.0, 3.0, 3.0]]))
        array([5., 1.])
    """
    if times.shape[1] < 2:
        return np.full(times.shape[0], default)
    diffs = np.diff(times, axis=1)  # NaN where a window is left-padded
    diffs[~(diffs > 0)] = np.nan
    ordered = np.sort(diffs, axis=1)
    count = np.sum(~np.isnan(diffs), axis=1)
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    low = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0]
    return np.where(count > 0, (low + high) / 2.0, default)
