"""Rolling windows as reducers: ``initialize() / agg(state, value) / result(state)``.

A window keeps the last ``capacity`` entries of a key in arrival order. Appending is
idempotent per event id, so a redelivered event does not enter the window twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import WindowEntry


@dataclass(frozen=True, slots=True)
class CappedWindow:
    """Reducer over window entries that keeps the newest ``capacity`` of them.

    Examples:
        >>> w = CappedWindow(capacity=2)
        >>> state = w.initialize()
        >>> for i in range(3):
        ...     state = w.agg(state, WindowEntry(f"e{i}", float(i), (float(i),)))
        >>> [e.event_id for e in w.result(state)]
        ['e1', 'e2']
    """

    capacity: int = 60

    def initialize(self) -> tuple[WindowEntry, ...]:
        return ()

    def agg(self, state: tuple[WindowEntry, ...], value: WindowEntry) -> tuple[WindowEntry, ...]:
        if len(state) < self.capacity:
            return (*state, value)
        return (*state[len(state) - self.capacity + 1 :], value)

    def result(self, state: tuple[WindowEntry, ...]) -> tuple[WindowEntry, ...]:
        return state


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
