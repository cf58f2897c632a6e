"""Every record the code can emit validates against its topic's schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

import schemas
from models.baseline import HarmonicMeanPredictor
from novacron.replaying import build_replay_pipeline
from novacron.settings import Settings
from streams.pipeline import RawMessage
from streams.records import SourceRef


@pytest.mark.parametrize("name", schemas.RECORD_SCHEMAS)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas.load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    schemas.validator(name)  # check_schema raises on an invalid schema


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


@pytest.mark.parametrize("online_gain", [False, True])
def test_every_pipeline_output_validates(online_gain: bool) -> None:
    pipeline = build_replay_pipeline(Settings(online_gain=online_gain))
    outcome = asyncio.run(pipeline.handle_link(_messages()))
    topics = {r.topic for r in outcome.outputs}
    assert topics == {"predictions.bandwidth.v1", "telemetry.dlq.v1"}
    for record in outcome.outputs:
        errors = list(schemas.validator(record.topic).iter_errors(record.value))
        assert errors == [], (record.topic, errors[0].message if errors else None)
    for score in outcome.scores:
        assert schemas.validator("scores.v1").is_valid(score), score
    predictions = [r.value for r in outcome.outputs if r.topic == "predictions.bandwidth.v1"]
    if online_gain:
        assert predictions and all(0 <= p["online_gain"] <= 1.5 for p in predictions)
    else:
        assert predictions and not any("online_gain" in p for p in predictions)


def test_baseline_accepts_its_declared_input_spec() -> None:
    import numpy as np

    predictor = HarmonicMeanPredictor("internet")
    windows = np.full((4, predictor.window_steps, 5), 100.0)
    forecast = predictor.predict(windows)
    assert forecast.point.shape == (4,)
    assert np.all(forecast.lower <= forecast.point) and np.all(forecast.point <= forecast.upper)


def test_asyncapi_document_is_current(tmp_path: Path) -> None:
    from novacron.asyncapi import build_asyncapi

    committed = Path(schemas.__file__).with_name("asyncapi.yaml").read_text(encoding="utf-8")
    assert build_asyncapi() == committed, (
        "schemas/asyncapi.yaml is stale: run `novacron schemas asyncapi`"
    )


def test_model_loaded_events_validate() -> None:
    from models.serving import model_loaded_events

    records = model_loaded_events(
        {"internet": "bandwidth-lstm-internet:1", "datacenter": "harmonic-mean:1"},
        {"internet": "bandwidth-lstm-internet:2", "datacenter": "bandwidth-lstm-datacenter:1"},
        1.8e9,
    )
    assert len(records) == 2
    for record in records:
        assert schemas.validator("model.events.v1").is_valid(record), record
