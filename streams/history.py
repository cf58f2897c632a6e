"""A key's long history of numeric rows, persisted in chunks with its window.

The workload processor needs far more than the 60-sample window (seasonality wants at
least a day of samples). :class:`ChunkedHistory` keeps a key's newest ``capacity`` rows
in memory and persists them as fixed-size chunks, each a state field of its own: a
batch rewrites only the chunks its new rows fall in (one small field for the usual one
sample per key), not the whole history. A chunk records which rows it holds, so a
restore keeps only the chunks that belong to the history's current end.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np

_HEAD = struct.Struct("<qi")  # chunk index, rows
_MAGIC = b"H1"


class ChunkedHistory:
    """The newest ``capacity`` rows of ``columns`` floats, with the count ever appended.

    Examples:
        >>> h = ChunkedHistory(capacity=4, columns=2, chunk=2)
        >>> h.append(np.arange(10.0).reshape(5, 2))
        >>> h.end, h.rows().tolist()
        (5, [[2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])
        >>> fields = h.dump("h")
        >>> sorted(fields)
        ['h0', 'h1', 'h2']
        >>> ChunkedHistory.restore(fields, "h", end=5, capacity=4, columns=2, chunk=2).rows()[-1]
        array([8., 9.])
    """

    def __init__(self, capacity: int, columns: int, chunk: int = 32) -> None:
        self.capacity = capacity
        self.columns = columns
        self.chunk = chunk
        self.end = 0
        self._rows = np.empty((0, columns))
        self._dumped = 0

    @property
    def slots(self) -> int:
        """Chunk fields a key's history uses (enough to hold ``capacity`` rows whole)."""
        return -(-self.capacity // self.chunk) + 1

    def field_names(self, prefix: str) -> tuple[str, ...]:
        return tuple(f"{prefix}{slot}" for slot in range(self.slots))

    def rows(self) -> np.ndarray:
        """The newest ``min(end, capacity)`` rows, oldest first."""
        return self._rows[-self.capacity :]

    def append(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        kept = -(-self.capacity // self.chunk) * self.chunk + self.chunk
        self._rows = np.concatenate([self._rows, np.asarray(rows, dtype=float)])[-kept:]
        self.end += len(rows)

    def dump(self, prefix: str) -> dict[str, bytes]:
        """The chunks changed since the last dump, as fields ``{prefix}{slot}``."""
        first_kept = self.end - len(self._rows)
        out: dict[str, bytes] = {}
        if self.end == self._dumped:
            return out
        for c in range(
            max(self._dumped, first_kept) // self.chunk, (self.end - 1) // self.chunk + 1
        ):
            lo, hi = max(c * self.chunk, first_kept), min((c + 1) * self.chunk, self.end)
            if lo >= hi:
                continue
            rows = self._rows[lo - first_kept : hi - first_kept]
            head = _MAGIC + _HEAD.pack(c, len(rows)) + struct.pack("<q", lo)
            out[f"{prefix}{c % self.slots}"] = head + rows.astype("<f8").tobytes()
        self._dumped = self.end
        return out

    @classmethod
    def restore(
        cls,
        fields: Mapping[str, bytes],
        prefix: str,
        end: int,
        capacity: int,
        columns: int,
        chunk: int = 32,
    ) -> ChunkedHistory:
        """The history whose newest row is global row ``end - 1``, from its chunk fields.

        Chunks that do not belong to this end (older rounds of the ring, or missing)
        stop the walk back: the history then holds only the newest contiguous rows.
        """
        history = cls(capacity, columns, chunk)
        parts: list[np.ndarray] = []
        cursor = end
        for c in range((end - 1) // chunk, -1, -1):
            if end - cursor >= capacity or cursor <= 0:
                break
            blob = fields.get(f"{prefix}{c % history.slots}")
            if blob is None or blob[:2] != _MAGIC:
                break
            index, n = _HEAD.unpack_from(blob, 2)
            (lo,) = struct.unpack_from("<q", blob, 2 + _HEAD.size)
            if index != c or lo + n != cursor:
                # a chunk written at an end other than this one: stop here
                break
            body = np.frombuffer(blob, dtype="<f8", offset=2 + _HEAD.size + 8)
            parts.append(body.reshape(n, columns))
            cursor = lo
            if lo != c * chunk:
                # the chunk's older rows were never kept here
                break
        history._rows = np.concatenate(parts[::-1]) if parts else np.empty((0, columns))
        history.end = end
        history._dumped = end
        return history
