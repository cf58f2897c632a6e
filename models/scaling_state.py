"""The scaling controller's state per target, and its compact, versioned bytes.

The worker persists a target's state with its window after every sample and restores
it on any worker; replay and the simulator start from the same bytes. A state of
another format, or bytes that are not a state, raise :class:`StateFormatError` with what
to do (drop the key's state: the controller starts again from the next sample).
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass, field

import numpy as np

from streams.errors import ModelError

STATE_FORMAT = 1
"""Version of the byte layout below."""

_MAGIC = b"NSC"
_HEADER = struct.Struct("<3sBqdddHHHHH")
"""magic, format, spec, last_ts, last_out_ts, last_in_ts, then the lengths of pending,
recommendations, actual, forecasts and scores."""


class StateFormatError(ModelError):
    """Bytes given as a scaling state are not one this code can read."""


@dataclass(slots=True)
class TargetState:
    """What the controller keeps about one target between samples.

    Attributes:
        spec: instances asked for (ready or starting).
        last_ts: event time of the last sample taken (``-inf``: none yet).
        last_out_ts, last_in_ts: event times of the last scale-out and scale-in.
        pending: ``[ready_ts, count]`` of instances asked for and still starting,
            oldest first.
        recommendations: ``(ts, instances)`` the controller recommended within its
            stabilisation window.
        actual: ``(ts, demand)`` within the stabilisation window.
        forecasts: ``(due_ts, point, width)``: forecasts at the lead time waiting for
            the actual demand at ``due_ts`` (the calibration's inputs).
        scores: the calibration's normalised errors ``(actual - point) / width``,
            oldest first, at float32 precision (so the bytes round-trip exactly).
        sorted_scores: the same, sorted (derived, not stored).
    """

    spec: int
    last_ts: float = -math.inf
    last_out_ts: float = -math.inf
    last_in_ts: float = -math.inf
    pending: list[list[float]] = field(default_factory=list)
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    actual: list[tuple[float, float]] = field(default_factory=list)
    forecasts: list[tuple[float, float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    sorted_scores: list[float] = field(default_factory=list)

    @property
    def starting(self) -> int:
        """Instances asked for and not yet ready."""
        return int(sum(count for _, count in self.pending))

    def add_score(self, score: float, keep: int) -> None:
        """Record a calibration error, forgetting the oldest beyond ``keep``.

        Examples:
            >>> s = TargetState(spec=1)
            >>> for x in (0.5, -1.0, 2.0):
            ...     s.add_score(x, keep=2)
            >>> s.scores, s.sorted_scores
            ([-1.0, 2.0], [-1.0, 2.0])
        """
        value = float(np.float32(score))
        self.scores.append(value)
        bisect.insort(self.sorted_scores, value)
        while len(self.scores) > keep:
            old = self.scores.pop(0)
            del self.sorted_scores[bisect.bisect_left(self.sorted_scores, old)]

    def upper_score(self, quantile: float) -> float:
        """The split-conformal ``quantile`` of the scores (the ``ceil((n + 1) q)``-th
        smallest, the largest when that is beyond ``n``).

        Examples:
            >>> s = TargetState(spec=1)
            >>> for x in range(1, 11):
            ...     s.add_score(float(x), keep=100)
            >>> s.upper_score(0.5), s.upper_score(0.9)
            (6.0, 10.0)
        """
        n = len(self.sorted_scores)
        rank = min(math.ceil((n + 1) * quantile), n)
        return self.sorted_scores[max(rank, 1) - 1]


def encode_state(state: TargetState) -> bytes:
    """The state as bytes (:data:`STATE_FORMAT`).

    Examples:
        >>> s = TargetState(spec=3, last_ts=60.0, pending=[[240.0, 2.0]])
        >>> decode_state(encode_state(s)) == s
        True
    """
    header = _HEADER.pack(
        _MAGIC, STATE_FORMAT, state.spec, state.last_ts, state.last_out_ts, state.last_in_ts,
        len(state.pending), len(state.recommendations), len(state.actual),
        len(state.forecasts), len(state.scores),
    )  # fmt: skip
    parts = [
        header,
        np.asarray(state.pending, dtype="<f8").tobytes(),
        np.asarray(state.recommendations, dtype="<f8").tobytes(),
        np.asarray(state.actual, dtype="<f8").tobytes(),
        np.asarray(state.forecasts, dtype="<f8").tobytes(),
        np.asarray(state.scores, dtype="<f4").tobytes(),
    ]
    return b"".join(parts)


def decode_state(blob: bytes) -> TargetState:
    """A state from :func:`encode_state`'s bytes."""
    if len(blob) < _HEADER.size or blob[:3] != _MAGIC:
        msg = (
            f"Expected a scaling controller state (bytes starting with {_MAGIC!r}). Got "
            f"{len(blob)} bytes starting with {bytes(blob[:3])!r}: drop the key's state."
        )
        raise StateFormatError(msg)
    magic, fmt, spec, last_ts, out_ts, in_ts, *counts = _HEADER.unpack_from(blob)
    if fmt != STATE_FORMAT:
        msg = (
            f"Scaling state format {fmt} cannot be read by this version (format "
            f"{STATE_FORMAT}): drop the key's state; the controller starts again."
        )
        raise StateFormatError(msg)
    n_pending, n_recs, n_actual, n_fc, n_scores = counts
    widths = ((n_pending, 2, 8), (n_recs, 2, 8), (n_actual, 2, 8), (n_fc, 3, 8), (n_scores, 1, 4))
    expected = _HEADER.size + sum(n * cols * size for n, cols, size in widths)
    if len(blob) != expected:
        msg = (
            f"A scaling state of format {STATE_FORMAT} with these lengths has {expected} "
            f"bytes. Got {len(blob)}: the state is truncated or corrupt; drop it."
        )
        raise StateFormatError(msg)
    offset = _HEADER.size
    arrays: list[np.ndarray] = []
    for n, cols, size in widths:
        dtype = "<f8" if size == 8 else "<f4"
        arrays.append(np.frombuffer(blob, dtype=dtype, count=n * cols, offset=offset))
        offset += n * cols * size
    pending, recs, actual, forecasts, scores = arrays
    score_list = scores.astype(float).tolist()
    return TargetState(
        spec=spec,
        last_ts=last_ts,
        last_out_ts=out_ts,
        last_in_ts=in_ts,
        pending=pending.reshape(-1, 2).tolist(),
        recommendations=[(t, int(r)) for t, r in recs.reshape(-1, 2).tolist()],
        actual=[(t, d) for t, d in actual.reshape(-1, 2).tolist()],
        forecasts=[(t, p, w) for t, p, w in forecasts.reshape(-1, 3).tolist()],
        scores=score_list,
        sorted_scores=sorted(score_list),
    )
