"""Generate the AsyncAPI 3.0 document of the worker's topics from ``schemas/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import schemas
from streams.topics import INPUT_ROLES, Topics

_KEYS = {
    "link": "link_id",
    "host": "host_id",
    "predictions": "link_id",
    "alerts": "host_id or link_id",
    "workload": "host_id",
    "scaling": "host_id or cluster",
    "dlq": "the key of the refused message",
    "model_events": "model name",
}
"""The record key of each Kafka topic, by role (``scores`` is not a Kafka topic)."""


def build_asyncapi() -> str:
    """The AsyncAPI document as YAML text (deterministic)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for role, key in _KEYS.items():
        topic = Topics.schema(role)
        schema = schemas.load(topic)
        name = topic.replace(".", "_")
        messages[name] = {
            "name": topic,
            "title": schema.get("title", topic),
            "contentType": "application/json",
            "summary": schema.get("description", schema.get("title", topic)),
            "bindings": {"kafka": {"key": {"type": "string", "description": key}}},
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{topic}.json"},
            },
        }
        channels[name] = {
            "address": topic,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        action = "receive" if role in INPUT_ROLES else "send"
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
