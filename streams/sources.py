"""Telemetry files as messages: the input adapter of replay, evaluation and training.

Reads JSONL (messages as on the wire), CSV (a timestamp column and metric columns) or
whitespace-separated traces (``time value ...``, no header) and yields each row as the
message a producer would have sent, with a :class:`SourceRef` naming file and row.
Nothing here runs the pipeline.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import InputFileError
from .records import MEASURES, MODES, SourceRef
from .topics import DEFAULT_TOPICS

RELATIVE_TIME_BASE = 1_577_836_800.0
"""Times below 2000-01-01 are taken as seconds from the trace start, placed at 2020-01-01."""
_EPOCH_2000 = 946_684_800.0
_TIME_COLUMNS = ("ts", "timestamp", "time", "time_s", "datetime", "date")
_METRIC_NAME = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read rows that do not say everything themselves.

    Attributes:
        kind: ``"link"``, ``"host"`` or ``None`` to infer (link when a column is a link
            measure or the file is a headerless trace).
        key: link or host id for rows without one (default: the file name).
        mode: link mode for rows without one.
        rename: column renames, e.g. ``{"value": "throughput_mbps"}``.
    """

    kind: str | None = None
    key: str | None = None
    mode: str = "datacenter"
    rename: dict[str, str] = field(default_factory=dict)


def parse_time(value: str) -> float:
    """Event time in epoch seconds from a number or an ISO-8601 / NAB timestamp (UTC).

    Examples:
        >>> parse_time("2014-04-10 00:02:00")
        1397088120.0
        >>> parse_time("12.5")
        1577836812.5
        >>> parse_time("1700000000")
        1700000000.0
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            msg = f"cannot read {value!r} as a time: expected epoch seconds or ISO-8601"
            raise InputFileError(msg) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return number if number >= _EPOCH_2000 else RELATIVE_TIME_BASE + number


def _cell(value: str) -> float | str | None:
    text = value.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _jsonl_messages(lines: Iterator[str], stem: str) -> Iterator[tuple[str, bytes, SourceRef]]:
    """Each line as a message; lines that are not a JSON object go to the link input.

    Examples:
        >>> lines = ['{"host_id": "h1", "ts": 1.7e9, "metrics": {}}', '[1, 2]', '{"link_id": 5}']
        >>> [(role, src.key) for role, _, src in _jsonl_messages(iter(lines), "f.jsonl")]
        [('host', 'h1'), ('link', None), ('link', None)]
    """
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        raw = line.rstrip("\n").encode("utf-8")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            obj = {}  # the decoder refuses it, with the reason, as the worker would
        sample = (
            obj["samples"][0] if isinstance(obj.get("samples"), list) and obj["samples"] else obj
        )
        role = "host" if isinstance(sample, dict) and "host_id" in sample else "link"
        key = sample.get("link_id") or sample.get("host_id") if isinstance(sample, dict) else None
        if not isinstance(key, str):
            key = None
        yield role, raw, SourceRef(DEFAULT_TOPICS.name(role), key=key, file=stem, row=row)


def _table_messages(
    header: Sequence[str] | None,
    rows: Iterator[Sequence[str]],
    stem: str,
    options: ReadOptions,
) -> Iterator[tuple[str, bytes, SourceRef]]:
    if header is None:
        names = ["time_s", "throughput_mbps"]
    else:
        names = [options.rename.get(h.strip(), h.strip()) for h in header]
    lowered = [n.lower() for n in names]
    time_index = next((lowered.index(c) for c in _TIME_COLUMNS if c in lowered), 0)
    kind = options.kind or ("link" if header is None or set(names) & set(MEASURES) else "host")
    if kind not in ("link", "host"):
        msg = (
            f"The 'kind' option of replay must be one of {{'link', 'host'}}. Got {kind!r} instead."
        )
        raise InputFileError(msg)
    if options.mode not in MODES:
        msg = (
            f"The 'mode' option of replay must be one of {set(MODES)}. "
            f"Got {options.mode!r} instead."
        )
        raise InputFileError(msg)
    topic = DEFAULT_TOPICS.name(kind)
    key_column = "link_id" if kind == "link" else "host_id"
    default_key = options.key or stem
    for row_number, row in enumerate(rows, start=1):
        if not row or all(not c.strip() for c in row):
            continue
        cells = dict(zip(names, row, strict=False))
        sample: dict[str, Any] = {key_column: (cells.pop(key_column, "") or default_key).strip()}
        sample["ts"] = parse_time(cells.pop(names[time_index]))
        event_id = cells.pop("event_id", "").strip()
        if event_id:
            sample["event_id"] = event_id
        if kind == "link":
            sample["mode"] = (cells.pop("mode", "") or options.mode).strip()
            for name, value in cells.items():
                parsed = _cell(value)
                if parsed is not None:
                    sample[name] = parsed
        else:
            cluster = cells.pop("cluster", "").strip()
            if cluster:
                sample["cluster"] = cluster
            metrics = {}
            for name, value in cells.items():
                parsed = _cell(value)
                if parsed is not None:
                    metrics[_METRIC_NAME.sub("_", name.lower()).strip("_") or "value"] = parsed
            sample["metrics"] = metrics
        # json, not orjson: a NaN cell must reach the decoder as NaN, to be refused there.
        raw = json.dumps(sample, allow_nan=True).encode("utf-8")
        yield kind, raw, SourceRef(topic, key=sample[key_column], file=stem, row=row_number)


def read_messages(path: Path, options: ReadOptions) -> Iterator[tuple[str, bytes, SourceRef]]:
    """Yield ``(input role, raw message bytes, source)`` for every record of a telemetry file.

    The role is ``"link"`` or ``"host"`` (see :data:`streams.topics.INPUT_ROLES`); the
    bytes are the message as a producer would have written it to that topic.
    """
    if not path.is_file():
        msg = f"Input file {str(path)!r} does not exist or is not a file."
        raise InputFileError(msg)
    stem = path.name
    handle: IO[str] = path.open(encoding="utf-8", newline="")
    with handle:
        first = handle.readline()
        rest = _chain(first, handle)
        if path.suffix in (".jsonl", ".ndjson") or first.lstrip().startswith("{"):
            yield from _jsonl_messages(rest, stem)
            return
        if "," in first or "\t" in first:
            dialect = csv.excel_tab if "\t" in first and "," not in first else csv.excel
            reader = csv.reader(rest, dialect)
            header = next(reader)
            numeric_header = all(isinstance(_cell(h), float) for h in header)
            if numeric_header:
                reader = csv.reader(_chain(first, io.StringIO("".join(handle))), dialect)
            yield from _table_messages(None if numeric_header else header, reader, stem, options)
            return
        rows = (line.split() for line in rest)
        yield from _table_messages(None, rows, stem, options)


def _chain(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest
