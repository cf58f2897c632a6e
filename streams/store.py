"""Window stores: a small Protocol with an in-memory and a Redis implementation.

Entries are stored as compact JSON arrays ``[event_id, ts, v1, v2, ...]`` with ``null``
for absent values and, for a link entry the model has predicted from, a trailing
``{"p": prediction}``, so any worker of the consumer group can read any key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from .errors import StoreUnavailable
from .records import WindowEntry
from .windows import CappedWindow


def encode_entry(entry: WindowEntry) -> bytes:
    """Serialize a window entry.

    Examples:
        >>> encode_entry(WindowEntry("e1", 1.5, (2.0, float("nan"))))
        b'["e1",1.5,2.0,null]'
        >>> encode_entry(WindowEntry("e1", 1.5, (2.0,), predicted=2.5))
        b'["e1",1.5,2.0,{"p":2.5}]'
    """
    if entry.names is not None:
        return orjson.dumps(
            [entry.event_id, entry.ts, dict(zip(entry.names, entry.values, strict=True))]
        )
    values: list[Any] = [None if math.isnan(v) else v for v in entry.values]
    if entry.predicted is not None:
        values.append({"p": entry.predicted})
    return orjson.dumps([entry.event_id, entry.ts, *values])


def decode_entry(raw: bytes | str) -> WindowEntry:
    """Inverse of :func:`encode_entry`.

    Examples:
        >>> decode_entry(b'["e1",1.5,2.0,null]')
        WindowEntry(event_id='e1', ts=1.5, values=(2.0, nan), names=None, predicted=None)
        >>> decode_entry(b'["h1",2.0,{"cpu_pct":51.0}]')
        WindowEntry(event_id='h1', ts=2.0, values=(51.0,), names=('cpu_pct',), predicted=None)
        >>> decode_entry(b'["e1",1.5,2.0,{"p":2.5}]').predicted
        2.5
    """
    event_id, ts, *values = orjson.loads(raw)
    if values and isinstance(values[0], dict):
        metrics: dict[str, float] = values[0]
        return WindowEntry(str(event_id), float(ts), tuple(metrics.values()), names=tuple(metrics))
    predicted = None
    if values and isinstance(values[-1], dict):
        predicted = float(values.pop()["p"])
    return WindowEntry(
        str(event_id),
        float(ts),
        tuple(math.nan if v is None else float(v) for v in values),
        predicted=predicted,
    )


class WindowStore(Protocol):
    """Per-key rolling windows. Calls are per batch of keys, never per event."""

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        """The newest ``last`` entries (default: all) of each key's window, oldest first."""
        ...

    async def append(self, namespace: str, entries: Mapping[str, Sequence[WindowEntry]]) -> None:
        """Append entries to each key's window, keeping the newest ``capacity``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InMemoryWindowStore:
    """A dict-backed store for replay and unit tests.

    Entries are kept encoded, as in Redis, so a replay sees exactly what a worker reads.
    """

    def __init__(self, capacity: int = 60) -> None:
        self.capacity = capacity
        self._window: CappedWindow[bytes] = CappedWindow(capacity)
        self._data: dict[str, tuple[bytes, ...]] = {}

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        start = -min(last or self.capacity, self.capacity)
        return {
            k: [decode_entry(r) for r in self._data.get(f"{namespace}:{k}", ())[start:]]
            for k in keys
        }

    async def append(self, namespace: str, entries: Mapping[str, Sequence[WindowEntry]]) -> None:
        for key, new in entries.items():
            if new:
                name = f"{namespace}:{key}"
                stored = self._data.get(name, self._window.initialize())
                self._data[name] = self._window.extend(stored, map(encode_entry, new))

    async def close(self) -> None:
        return None


class RedisWindowStore:
    """Windows as capped Redis lists, one round trip per batch, TTL on idle keys.

    A batch's appends are one ``MULTI``/``EXEC`` transaction: all of them or none, so a
    batch retried after a failure never finds half of itself in the windows. A failure
    of the client surfaces as :class:`StoreUnavailable`, for the caller to retry.

    Args:
        client: a ``redis.asyncio.Redis`` client (owned by the caller unless
            ``owns_client``).
        capacity: entries kept per key (``LTRIM``).
        ttl_s: a key untouched for this long expires.
        prefix: key prefix, ``{prefix}:{namespace}:{key}``.
        unavailable: the client's exception types that mean "Redis is not answering"
            (the caller passes ``redis.exceptions.RedisError``; the core imports no
            client library).
    """

    def __init__(
        self,
        client: Any,
        *,
        capacity: int = 60,
        ttl_s: int = 86_400,
        prefix: str = "novacron:win",
        owns_client: bool = True,
        unavailable: tuple[type[BaseException], ...] = (OSError, TimeoutError),
    ) -> None:
        self.client = client
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._owns_client = owns_client
        self._unavailable = unavailable

    def redis_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:{namespace}:{key}"

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        if not keys:
            return {}
        depth = min(last or self.capacity, self.capacity)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.lrange(self.redis_key(namespace, key), -depth, -1)
                results = await pipe.execute()
        except self._unavailable as exc:
            msg = f"loading {len(keys)} {namespace} windows from Redis failed: {exc!r}"
            raise StoreUnavailable(msg) from exc
        return {k: [decode_entry(r) for r in raw] for k, raw in zip(keys, results, strict=True)}

    async def append(self, namespace: str, entries: Mapping[str, Sequence[WindowEntry]]) -> None:
        if not any(entries.values()):
            return
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for key, new in entries.items():
                    if not new:
                        continue
                    rkey = self.redis_key(namespace, key)
                    pipe.rpush(rkey, *(encode_entry(e) for e in new))
                    pipe.ltrim(rkey, -self.capacity, -1)
                    pipe.expire(rkey, self.ttl_s)
                await pipe.execute()
        except self._unavailable as exc:
            msg = f"appending to {len(entries)} {namespace} windows in Redis failed: {exc!r}"
            raise StoreUnavailable(msg) from exc

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()
