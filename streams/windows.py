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
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

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

    def entry(self) -> WindowEntry: ...


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
    """

    entries: dict[str, list[WindowEntry]] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    fresh: list[bool] = field(default_factory=list)
    appends: dict[str, list[WindowEntry]] = field(default_factory=dict)
    duplicates: int = 0

    def upto(self, key: str, index: int, steps: int) -> list[WindowEntry]:
        """The last ``steps`` entries of ``key`` up to and including sample ``index``'s."""
        pos = self.positions[index]
        if pos < 0:
            return []
        return self.entries[key][max(0, pos + 1 - steps) : pos + 1]

    def only(self, index: int) -> BatchWindows:
        """A view for sample ``index`` alone (a processor re-run on one sample)."""
        return BatchWindows(self.entries, [self.positions[index]], [self.fresh[index]], {}, 0)

    def annotate(self, predicted: Mapping[str, float]) -> None:
        """Keep a model's prediction with each new entry it was made at (not yet holding one)."""
        if not predicted:
            return
        for key, new in self.appends.items():
            if any(e.event_id in predicted and e.predicted is None for e in new):
                self.appends[key] = [
                    WindowEntry(e.event_id, e.ts, e.values, e.names, predicted[e.event_id])
                    if e.event_id in predicted and e.predicted is None
                    else e
                    for e in new
                ]


def advance(samples: Sequence[Keyed], loaded: Mapping[str, Sequence[WindowEntry]]) -> BatchWindows:
    """Append each sample to its key's window unless it was appended before.

    A sample was appended before when its event id is in the loaded window, or when a
    later sample of the same key in this batch is the window's newest entry: the broker
    redelivers a partition from its last committed offset, so everything of that key
    up to the newest entry was appended, even what the window (or the part of it
    loaded) no longer holds.

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
    """
    newest = {key: window[-1].event_id for key, window in loaded.items() if window}
    replayed_upto: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if newest.get(sample.key) == sample.event_id:
            replayed_upto[sample.key] = i
    view = BatchWindows()
    ids: dict[str, dict[str, int]] = {}
    for i, sample in enumerate(samples):
        key = sample.key
        entries = view.entries.get(key)
        if entries is None:
            entries = view.entries[key] = list(loaded.get(key, ()))
            ids[key] = {e.event_id: i for i, e in enumerate(entries)}
        known = ids[key]
        pos = known.get(sample.event_id)
        if pos is None and i < replayed_upto.get(key, -1):
            pos = -1
        fresh = pos is None
        if pos is None:
            entry = sample.entry()
            pos = known[entry.event_id] = len(entries)
            entries.append(entry)
            view.appends.setdefault(key, []).append(entry)
        else:
            view.duplicates += 1
        view.positions.append(pos)
        view.fresh.append(fresh)
    return view


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
