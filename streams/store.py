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

from .errors import StoreConflict, StoreUnavailable
from .records import WindowEntry
from .windows import CappedWindow


def encode_entry(entry: WindowEntry) -> bytes:
    """Serialize a window entry.

    Examples:
        >>> encode_entry(WindowEntry("e1", 1.5, (2.0, float("nan"))))
        b'["e1",1.5,2.0,null]'
        >>> encode_entry(WindowEntry("e1", 1.5, (2.0,), predicted=2.5, position=(3, 17)))
        b'["e1",1.5,2.0,{"p":2.5,"o":[3,17]}]'
        >>> encode_entry(WindowEntry("h1", 2.0, (51.0,), names=("cpu_pct",), position=(0, 4)))
        b'["h1",2.0,{"cpu_pct":51.0},{"o":[0,4]}]'
    """
    meta: dict[str, Any] = {}
    if entry.predicted is not None:
        meta["p"] = entry.predicted
    if entry.position is not None:
        meta["o"] = entry.position
    if entry.names is not None:
        metrics = dict(zip(entry.names, entry.values, strict=True))
        return orjson.dumps([entry.event_id, entry.ts, metrics, *([meta] if meta else [])])
    values: list[Any] = [None if math.isnan(v) else v for v in entry.values]
    if meta:
        values.append(meta)
    return orjson.dumps([entry.event_id, entry.ts, *values])


def decode_entry(raw: bytes | str) -> WindowEntry:
    """Inverse of :func:`encode_entry` (entries written before ``"o"`` existed read too).

    Examples:
        >>> decode_entry(b'["e1",1.5,2.0,null]')
        WindowEntry(event_id='e1', ts=1.5, values=(2.0, nan), names=None, predicted=None, \
position=None)
        >>> decode_entry(b'["h1",2.0,{"cpu_pct":51.0},{"o":[0,4]}]').position
        (0, 4)
        >>> decode_entry(b'["e1",1.5,2.0,{"p":2.5}]').predicted
        2.5
    """
    event_id, ts, *values = orjson.loads(raw)
    if values and isinstance(values[0], dict):
        metrics: dict[str, float] = values[0]
        meta = values[1] if len(values) > 1 else {}
        return WindowEntry(
            str(event_id),
            float(ts),
            tuple(metrics.values()),
            names=tuple(metrics),
            position=_position(meta),
        )
    meta = values.pop() if values and isinstance(values[-1], dict) else {}
    predicted = meta.get("p")
    return WindowEntry(
        str(event_id),
        float(ts),
        tuple(math.nan if v is None else float(v) for v in values),
        predicted=None if predicted is None else float(predicted),
        position=_position(meta),
    )


class EntryDecoder:
    """:func:`decode_entry` with a bounded memory of the entries it decoded.

    A window is loaded whole for every batch that touches its key, and between two
    batches it moves by the few entries the first one appended: the rest are the same
    bytes decoded again. Entries are immutable, so the same bytes give an equal entry
    and the decoded one can be handed out again. Two generations of at most
    ``capacity // 2`` entries each: a lookup that hits the older one moves the entry to
    the newer one; when the newer one is full, the older one is dropped. The memory is
    bounded by ``capacity`` entries (about 0.5 KB each); a working set larger than that
    only loses the speed-up.

    Examples:
        >>> d = EntryDecoder(capacity=4)
        >>> a = d.decode(b'["e1",1.5,2.0,null]')
        >>> d.decode(b'["e1",1.5,2.0,null]') is a, d.hits, d.misses
        (True, 1, 1)
    """

    def __init__(self, capacity: int = 131_072) -> None:
        if capacity < 2:
            msg = f"The 'capacity' of EntryDecoder must be >= 2. Got {capacity!r} instead."
            raise ValueError(msg)
        self._half = capacity // 2
        self._new: dict[bytes, WindowEntry] = {}
        self._old: dict[bytes, WindowEntry] = {}
        self.hits = 0
        self.misses = 0

    def decode(self, raw: bytes) -> WindowEntry:
        entry = self._new.get(raw)
        if entry is not None:
            self.hits += 1
            return entry
        entry = self._old.get(raw)
        if entry is None:
            self.misses += 1
            entry = decode_entry(raw)
        else:
            self.hits += 1
        if len(self._new) >= self._half:
            self._old, self._new = self._new, {}
        self._new[raw] = entry
        return entry

    def decode_all(self, raws: Sequence[bytes]) -> list[WindowEntry]:
        return [self.decode(r) for r in raws]


def _position(meta: dict[str, Any]) -> tuple[int, int] | None:
    found = meta.get("o")
    return None if found is None else (int(found[0]), int(found[1]))


class WindowStore(Protocol):
    """Per-key rolling windows. Calls are per batch of keys, never per event."""

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        """The newest ``last`` entries (default: all) of each key's window, oldest first."""
        ...

    async def load_state(
        self, namespace: str, keys: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, bytes]]:
        """The named state fields processors keep with each key's window (absent: left out)."""
        ...

    async def append(
        self,
        namespace: str,
        entries: Mapping[str, Sequence[WindowEntry]],
        expect_newest: Mapping[str, str | None] | None = None,
        states: Mapping[str, Mapping[str, bytes]] | None = None,
    ) -> None:
        """Append entries to each key's window, keeping the newest ``capacity``.

        With ``expect_newest`` (key -> event id of the newest entry when the batch loaded
        the window, ``None`` for an empty one), nothing is appended unless every key's
        window still ends there: :class:`StoreConflict` says another worker appended in
        between (a partition that moved while a batch was in flight). ``states`` (key ->
        field -> bytes) are written with the entries, all or nothing, so a key's state
        always describes its window as stored.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


_ANY = "\x00any"
"""Placeholder for "no expectation" about a window's newest entry."""

# KEYS: windows, then their state hashes. ARGV: capacity, ttl, then per key: expected
# newest event id ("" for an empty window, _ANY for none), the number of entries, the
# entries, the number of state fields, then field, value, field, value... Returns 1
# when all was appended, or 1 + the (1-based) index of the first window that did not
# end as expected, having written nothing.
_APPEND_LUA = """
local capacity, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local windows = #KEYS / 2
local i = 3
for k = 1, windows do
  local expected, n = ARGV[i], tonumber(ARGV[i + 1])
  if expected ~= "\0any" then
    local newest = redis.call("LINDEX", KEYS[k], -1)
    local id = ""
    if newest then id = tostring(cjson.decode(newest)[1]) end
    if id ~= expected then return k + 1 end
  end
  i = i + 3 + n + 2 * tonumber(ARGV[i + 2 + n])
end
i = 3
for k = 1, windows do
  local n = tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + n, 1000 do  -- unpack's limit on values
    redis.call("RPUSH", KEYS[k], unpack(ARGV, j, math.min(j + 999, i + 1 + n)))
  end
  if n > 0 then
    redis.call("LTRIM", KEYS[k], -capacity, -1)
    redis.call("EXPIRE", KEYS[k], ttl)
  end
  local m = tonumber(ARGV[i + 2 + n])
  if m > 0 then
    redis.call("HSET", KEYS[windows + k], unpack(ARGV, i + 3 + n, i + 2 + n + 2 * m))
    redis.call("EXPIRE", KEYS[windows + k], ttl)
  end
  i = i + 3 + n + 2 * m
end
return 1
"""


class InMemoryWindowStore:
    """A dict-backed store for replay and unit tests.

    Entries are kept encoded, as in Redis, so a replay sees exactly what a worker reads.
    """

    def __init__(self, capacity: int = 60) -> None:
        self.capacity = capacity
        self._decoder = EntryDecoder()
        self._window: CappedWindow[bytes] = CappedWindow(capacity)
        self._data: dict[str, tuple[bytes, ...]] = {}
        self._state: dict[str, dict[str, bytes]] = {}

    async def load_state(
        self, namespace: str, keys: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, bytes]]:
        found: dict[str, dict[str, bytes]] = {}
        for key in keys:
            stored = self._state.get(f"{namespace}:{key}", {})
            values = {f: stored[f] for f in fields if f in stored}
            if values:
                found[key] = values
        return found

    async def load(
        self, namespace: str, keys: Sequence[str], last: int | None = None
    ) -> dict[str, list[WindowEntry]]:
        start = -min(last or self.capacity, self.capacity)
        decode = self._decoder.decode_all
        return {k: decode(self._data.get(f"{namespace}:{k}", ())[start:]) for k in keys}

    async def append(
        self,
        namespace: str,
        entries: Mapping[str, Sequence[WindowEntry]],
        expect_newest: Mapping[str, str | None] | None = None,
        states: Mapping[str, Mapping[str, bytes]] | None = None,
    ) -> None:
        for key, expected in (expect_newest or {}).items():
            stored = self._data.get(f"{namespace}:{key}", ())
            newest = self._decoder.decode(stored[-1]).event_id if stored else None
            if entries.get(key) and newest != expected:
                msg = f"the {namespace} window of {key!r} ends at {newest!r}, not {expected!r}"
                raise StoreConflict(msg)
        for key, new in entries.items():
            if new:
                name = f"{namespace}:{key}"
                stored = self._data.get(name, self._window.initialize())
                self._data[name] = self._window.extend(stored, map(encode_entry, new))
        for key, fields in (states or {}).items():
            self._state.setdefault(f"{namespace}:{key}", {}).update(fields)

    async def close(self) -> None:
        return None


class RedisWindowStore:
    """Windows as capped Redis lists, one round trip per batch, TTL on idle keys.

    A batch's appends are one Lua script, atomic in Redis: all of them or none, and only
    if every window still ends at the entry the batch loaded (otherwise
    :class:`StoreConflict`), so a batch retried after a failure never finds half of
    itself in the windows and two workers never append the same events twice. A failure
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
        self._append_script: Any = None
        self._decoder = EntryDecoder()

    def redis_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:{namespace}:{key}"

    def state_key(self, namespace: str, key: str) -> str:
        """The hash of processor state kept with a key's window."""
        return f"{self.prefix}:state:{namespace}:{key}"

    async def load_state(
        self, namespace: str, keys: Sequence[str], fields: Sequence[str]
    ) -> dict[str, dict[str, bytes]]:
        if not keys or not fields:
            return {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self.state_key(namespace, key), list(fields))
                results = await pipe.execute()
        except self._unavailable as exc:
            msg = f"loading {len(keys)} {namespace} states from Redis failed: {exc!r}"
            raise StoreUnavailable(msg) from exc
        found: dict[str, dict[str, bytes]] = {}
        for key, values in zip(keys, results, strict=True):
            present = {f: v for f, v in zip(fields, values, strict=True) if v is not None}
            if present:
                found[key] = present
        return found

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
        decode = self._decoder.decode_all
        return {k: decode(raw) for k, raw in zip(keys, results, strict=True)}

    async def append(
        self,
        namespace: str,
        entries: Mapping[str, Sequence[WindowEntry]],
        expect_newest: Mapping[str, str | None] | None = None,
        states: Mapping[str, Mapping[str, bytes]] | None = None,
    ) -> None:
        states = states or {}
        keys = list(dict.fromkeys([k for k, new in entries.items() if new] + list(states)))
        if not keys:
            return
        expect = expect_newest or {}
        args: list[Any] = [self.capacity, self.ttl_s]
        for key in keys:
            new = entries.get(key, ())
            expected = expect.get(key, _ANY) if expect_newest is not None and new else _ANY
            args += [_ANY if expected is _ANY else (expected or ""), len(new)]
            args += [encode_entry(e) for e in new]
            fields = states.get(key, {})
            args.append(len(fields))
            for name, value in fields.items():
                args += [name, value]
        try:
            if self._append_script is None:
                self._append_script = self.client.register_script(_APPEND_LUA)
            done = await self._append_script(
                keys=[self.redis_key(namespace, k) for k in keys]
                + [self.state_key(namespace, k) for k in keys],
                args=args,
            )
        except self._unavailable as exc:
            msg = f"appending to {len(keys)} {namespace} windows in Redis failed: {exc!r}"
            raise StoreUnavailable(msg) from exc
        if int(done) != 1:
            msg = (
                f"the {namespace} window of {keys[int(done) - 2]!r} no longer ends where this "
                "batch loaded it: another worker appended in between"
            )
            raise StoreConflict(msg)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()
