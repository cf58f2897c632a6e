"""Generate the AsyncAPI 3.0 document of the worker's topics from ``schemas/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import schemas

_KEYS = {
    "telemetry.link.v1": "link_id",
    "telemetry.host.v1": "host_id",
    "predictions.bandwidth.v1": "link_id",
    "alerts.anomaly.v1": "host_id or link_id",
    "workload.class.v1": "host_id",
    "actions.scaling.v1": "host_id or cluster",
    "telemetry.dlq.v1": "the key of the refused message",
    "model.events.v1": "model name",
}
_RECEIVED = ("telemetry.link.v1", "telemetry.host.v1")


def build_asyncapi() -> str:
    """The AsyncAPI document as YAML text (deterministic)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in schemas.TOPIC_SCHEMAS:
        schema = schemas.load(topic)
        name = topic.replace(".", "_")
        messages[name] = {
            "name": topic,
            "title": schema.get("title", topic),
            "contentType": "application/json",
            "summary": schema.get("description", schema.get("title", topic)),
            "bindings": {"kafka": {"key": {"type": "string", "description": _KEYS[topic]}}},
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{topic}.json"},
            },
        }
        channels[name] = {
            "address": topic,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        action = "receive" if topic in _RECEIVED else "send"
        operations[f"{action}_{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
        }
    document = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "NovaCron telemetry ML worker",
            "version": "1.0.0",
            "description": (
                "Topics the NovaCron worker reads and writes. Generated from schemas/ by "
                "`novacron schemas asyncapi`; the JSON Schema files are the contract."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    return yaml.safe_dump(document, sort_keys=False, width=100)


def write_asyncapi(path: Path) -> None:
    """Write the document to ``path``."""
    path.write_text(build_asyncapi(), encoding="utf-8")
