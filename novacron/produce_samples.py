"""Telemetry samples as ``novacron produce`` writes them, and bad messages made on purpose.

:func:`link_sample_dict` and :func:`host_sample_dict` build one sample of the
``telemetry.link.v1`` and ``telemetry.host.v1`` schemas; :func:`envelope` wraps
samples into a message and :func:`corrupt` makes one invalid in a way that
:data:`BAD_KINDS` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import orjson

from models.synthetic import LINK_COLUMNS

__all__ = [
    "BAD_KINDS",
    "Stream",
    "corrupt",
    "envelope",
    "host_sample_dict",
    "link_sample_dict",
]

BAD_KINDS: tuple[str, ...] = (
    "malformed_json",
    "wrong_type",
    "missing_field",
    "nan_literal",
    "negative_value",
    "absurd_value",
    "unknown_schema_version",
)
"""Kinds of bad message, in the order that
:func:`novacron.produce_messages.iter_messages` cycles through them."""

_NAN_PLACEHOLDER = "__novacron_nan__"
Stream = Literal["link", "host"]


# --------------------------------------------------------------------------- sample dicts


def _r4(value: float) -> float:
    return round(float(value), 4)


def link_sample_dict(
    link_id: str, ts: float, mode: str, row: Sequence[float] | np.ndarray,
    event_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One ``telemetry.link.v1`` sample with all five measures, rounded to 4 decimals.

    Examples:
        >>> link_sample_dict("link-0001", 1700000000.0, "internet",
        ...                  [812.41234, 85.2, 0.123456, 4.1, 700.0], event_id="p-link-0001-0")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'link_id': 'link-0001', 'ts': 1700000000.0, 'mode': 'internet',
         'bandwidth_mbps': 812.4123, 'latency_ms': 85.2, 'packet_loss_pct': 0.1235,
         'jitter_ms': 4.1, 'throughput_mbps': 700.0, 'event_id': 'p-link-0001-0'}
    """
    sample: dict[str, Any] = {"link_id": link_id, "ts": round(float(ts), 3), "mode": mode}
    sample.update({name: _r4(v) for name, v in zip(LINK_COLUMNS, row, strict=True)})
    if event_id is not None:
        sample["event_id"] = event_id
    return sample


def host_sample_dict(
    host_id: str, ts: float, metrics: Mapping[str, float], *,
    cluster: str | None = None, event_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One ``telemetry.host.v1`` sample, metric values rounded to 4 decimals.

    Examples:
        >>> host_sample_dict("host-0000", 1700000000.0, {"cpu_pct": 41.23456}, cluster="c-00")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'host_id': 'host-0000', 'ts': 1700000000.0, 'metrics': {'cpu_pct': 41.2346},
         'cluster': 'c-00'}
    """
    sample: dict[str, Any] = {
        "host_id": host_id,
        "ts": round(float(ts), 3),
        "metrics": {k: _r4(v) for k, v in metrics.items()},
    }
    if cluster is not None:
        sample["cluster"] = cluster
    if event_id is not None:
        sample["event_id"] = event_id
    return sample


# --------------------------------------------------------------------------- bad messages


def corrupt(stream: Stream, samples: list[dict[str, Any]], kind: str) -> bytes:
    """A message built from ``samples`` and made invalid in the way ``kind`` names."""
    first = samples[0]
    if kind == "wrong_type":
        if stream == "link":
            first["bandwidth_mbps"] = "fast"
        else:
            first["metrics"]["cpu_pct"] = "high"
    elif kind == "missing_field":
        del first["ts"]
    elif kind == "nan_literal":
        if stream == "link":
            first["latency_ms"] = _NAN_PLACEHOLDER
        else:
            first["metrics"]["cpu_pct"] = _NAN_PLACEHOLDER
    elif kind == "negative_value":
        # a negative host metric passes the open schema; the worker refuses it as invalid_value
        if stream == "link":
            first["latency_ms"] = -5.0
        else:
            first["metrics"]["cpu_pct"] = -5.0
    elif kind == "absurd_value":
        if stream == "link":
            first["bandwidth_mbps"] = 1e9
        else:
            first["metrics"]["cpu_pct"] = 1e15
    version = 99 if kind == "unknown_schema_version" else 1
    raw = orjson.dumps(envelope(samples, schema_version=version))
    if kind == "nan_literal":
        raw = raw.replace(orjson.dumps(_NAN_PLACEHOLDER), b"NaN")
    elif kind == "malformed_json":
        raw = raw[: max(1, len(raw) * 2 // 3)]  # cut mid-message, as a crashed writer would
    return raw


def envelope(samples: list[dict[str, Any]], *, schema_version: int = 1) -> dict[str, Any]:
    """The message body of ``samples``: one sample as it is, several under ``"samples"``."""
    if len(samples) == 1:
        return {**samples[0], "schema_version": schema_version}
    return {"schema_version": schema_version, "samples": samples}
