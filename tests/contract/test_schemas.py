"""Every record type the code can emit validates against its topic's schema.

Record types are discovered (any class of the core with a ``topic`` role and
``to_record``), not listed, and each must be produced by the scenario below: a record
type nothing here produces fails the suite until the scenario covers it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import orjson
import pytest

import schemas
from agents.settings import Settings
from agents.wiring import model_source
from models.baseline import HarmonicMeanPredictor
from models.serving import ModelHolder, model_loaded_events
from novacron.replaying import replay_pipeline
from streams.codec import EncodedRecord, encode_output
from streams.pipeline import RawMessage
from streams.predictor import BandwidthPredictor
from streams.records import MODES, SourceRef
from streams.topics import Topics, roles

CORE = ("streams", "models", "online")


def record_types() -> list[type]:
    found: dict[str, type] = {}
    for package in CORE:
        module = importlib.import_module(package)
        names = [package] + [
            m.name for m in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")
        ]
        for name in names:
            for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
                if isinstance(getattr(cls, "topic", None), str) and callable(
                    getattr(cls, "to_record", None)
                ):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


@pytest.mark.parametrize("name", schemas.RECORD_SCHEMAS)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    schemas.validator(name)  # check_schema raises on an invalid schema


def test_every_topic_role_has_a_schema() -> None:
    assert sorted(Topics.schema(r) for r in roles()) == sorted(schemas.RECORD_SCHEMAS)


def _messages() -> list[RawMessage]:
    good = [
        orjson.dumps(
            {
                "link_id": f"l{i % 3}",
                "ts": 1.7e9 + i,
                "mode": "internet" if i % 2 else "datacenter",
                "bandwidth_mbps": 100.0 + i,
                "latency_ms": 5.0,
            }
        )
        for i in range(40)
    ]
    bad = [b"{", b'{"link_id": "x"}', b'{"schema_version": 3}', b"\xff"]
    raws = good[:20] + bad + good[20:]
    return [
        RawMessage(r, SourceRef("telemetry.link.v1", 0, i, key="k")) for i, r in enumerate(raws)
    ]


def _host_messages() -> list[RawMessage]:
    raws = [
        orjson.dumps({"host_id": f"h{i % 2}", "ts": 1.7e9 + i, "cluster": "c1",
                      "metrics": {"cpu_pct": 20.0 + i, "mem_pct": 40.0}})
        for i in range(30)
    ] + [b'{"host_id": "h1", "ts": 1.7e9, "metrics": {}}']  # fmt: skip
    return [RawMessage(r, SourceRef("telemetry.host.v1", 1, i)) for i, r in enumerate(raws)]


def _incident_messages() -> list[RawMessage]:
    """A host that runs normally, has a CPU incident, and recovers: an alert opens,
    is updated and resolves."""
    rng = np.random.default_rng(7)
    cpu = 40.0 + rng.normal(0, 2.0, 560)
    cpu[400:430] = np.linspace(85.0, 97.0, 30)
    raws = [
        orjson.dumps({"host_id": "h-incident", "ts": 1.7e9 + 60 * i,
                      "metrics": {"cpu_pct": float(c), "mem_pct": 50.0}})
        for i, c in enumerate(cpu)
    ]  # fmt: skip
    return [RawMessage(r, SourceRef("telemetry.host.v1", 2, i)) for i, r in enumerate(raws)]


def _daily_messages() -> list[RawMessage]:
    """A host with a compressed daily cycle: it is classified and scaled out and in."""
    rng = np.random.default_rng(5)
    i = np.arange(900)
    cpu = 50 - 40 * np.cos(2 * np.pi * i / 300) + rng.normal(0, 2.0, len(i))
    raws = [
        orjson.dumps({"host_id": "h-daily", "ts": 1.7e9 + 60 * n,
                      "metrics": {"cpu_pct": float(np.clip(c, 0, 100)), "mem_pct": 30.0}})
        for n, c in enumerate(cpu)
    ]  # fmt: skip
    return [RawMessage(r, SourceRef("telemetry.host.v1", 3, n)) for n, r in enumerate(raws)]


@cache
def _capacity_records() -> tuple[EncodedRecord, ...]:
    """What the shipped workload classifier and forecaster make of a daily host."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            registry_url=f"sqlite:///{tmp}/r.sqlite", artifact_dir=Path(tmp) / "artifacts"
        )
        pipeline = replay_pipeline(settings, ModelHolder(model_source(settings)))
        outcome = asyncio.run(pipeline.handle("host", _daily_messages()))
    return tuple(outcome.outputs + outcome.scores)


def scenario(online_gain: bool) -> list[EncodedRecord]:
    """Everything the system emits on link and host telemetry, good and bad, and a swap."""
    settings = Settings(online_gain=online_gain)
    pipeline = replay_pipeline(settings, ModelHolder(model_source(settings, "baseline")))
    out: list[EncodedRecord] = list(_capacity_records())
    for role, messages in (
        ("link", _messages()),
        ("host", _host_messages()),
        ("host", _incident_messages()),
    ):
        outcome = asyncio.run(pipeline.handle(role, messages))
        out += outcome.outputs + outcome.scores
    swap = model_loaded_events({"internet": "m:1"}, {"internet": "m:2"}, 1.8e9)
    return out + [encode_output(e, settings.topics, 1.8e9) for e in swap]


@pytest.mark.parametrize("online_gain", [False, True])
def test_every_output_validates_against_its_topic_schema(online_gain: bool) -> None:
    records = scenario(online_gain)
    for record in records:
        value = orjson.loads(record.value)
        errors = list(schemas.validator(record.topic).iter_errors(value))
        assert errors == [], (record.topic, errors[0].message if errors else None)
    alerts = [orjson.loads(r.value) for r in records if r.topic == Topics().alerts]
    actions = [orjson.loads(r.value) for r in records if r.topic == Topics().scaling]
    assert {"SCALE_OUT", "SCALE_IN"} <= {a["action"] for a in actions}
    assert any(a["reason"].get("forecast") for a in actions)
    assert {"open", "resolve"} <= {a["status"] for a in alerts}
    predictions = [orjson.loads(r.value) for r in records if r.topic == Topics().predictions]
    if online_gain:
        assert predictions and all(0 <= p["online_gain"] <= 1.5 for p in predictions)
    else:
        assert predictions and not any("online_gain" in p for p in predictions)


@pytest.mark.parametrize("cls", record_types(), ids=lambda c: c.__qualname__)
def test_every_record_type_is_produced_and_checked(cls: type) -> None:
    produced = {r.topic for r in scenario(online_gain=False)}
    assert Topics().name(cls.topic) in produced, (
        f"{cls.__qualname__} ({cls.topic}) is never produced by the contract scenario"
    )


def _predictors(tmp_path: Path) -> list[BandwidthPredictor]:
    settings = Settings(
        registry_url=f"sqlite:///{tmp_path}/r.sqlite", artifact_dir=tmp_path / "artifacts"
    )
    shipped = [m for role, m in model_source(settings)().items() if role in MODES]
    return [HarmonicMeanPredictor("internet"), HarmonicMeanPredictor("datacenter"), *shipped]


def test_every_served_model_accepts_its_declared_input_spec(tmp_path: Path) -> None:
    for predictor in _predictors(tmp_path):
        assert isinstance(predictor, BandwidthPredictor)
        windows = np.full((4, predictor.window_steps, 5), 100.0)
        windows[:, :, 1:4] = (5.0, 0.01, 1.0)
        forecast = predictor.predict(windows)
        for part in (forecast.point, forecast.lower, forecast.upper, forecast.confidence):
            assert part.shape == (4,), predictor.name
        assert np.all(forecast.lower <= forecast.point + 1e-9), predictor.name
        assert np.all(forecast.point <= forecast.upper + 1e-9), predictor.name
        assert 0 < forecast.interval_level < 1


def test_asyncapi_document_is_current(tmp_path: Path) -> None:
    from novacron.asyncapi import build_asyncapi

    committed = Path(schemas.__file__).with_name("asyncapi.yaml").read_text(encoding="utf-8")
    assert build_asyncapi() == committed, (
        "schemas/asyncapi.yaml is stale: run `novacron schemas asyncapi`"
    )
