"""JSON Schemas (draft 2020-12), one per topic, shipped as package data.

Other services code against these files; `novacron schemas asyncapi` documents them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

RECORD_SCHEMAS: tuple[str, ...] = tuple(
    sorted(
        entry.name.removesuffix(".json")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".json")
    )
)
"""Every schema shipped, named as its topic is by default (``scores.v1`` is file-only)."""


@cache
def load(name: str) -> dict[str, Any]:
    """Return the parsed schema called ``name`` (e.g. ``"telemetry.link.v1"``).

    Examples:
        >>> load("telemetry.link.v1")["$schema"]
        'https://json-schema.org/draft/2020-12/schema'
    """
    if name not in RECORD_SCHEMAS:
        msg = f"Unknown schema {name!r}. Expected one of {sorted(RECORD_SCHEMAS)}."
        raise KeyError(msg)
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """A draft 2020-12 validator for the schema called ``name``."""
    schema = load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def sample_schema(name: str) -> dict[str, Any]:
    """The schema of one sample of a telemetry topic, with the shared ``$defs`` inlined.

    Examples:
        >>> sorted(sample_schema("telemetry.host.v1")["required"])
        ['host_id', 'metrics', 'ts']
    """
    schema = load(name)
    sample: dict[str, Any] = dict(schema["$defs"]["sample"])
    sample["$schema"] = schema["$schema"]
    return sample
