"""Workload classes and scaling actions from the real worker on the real Kafka broker and
Redis server, with the shipped classifier and forecaster.

A host with a daily cycle in CPU (three days at one sample a minute, noise on top) must
get a SCALE_OUT each day before demand breaches its capacity's SLA level, early enough
for the new instance to be ready (the controller's lead time), and a SCALE_IN after the
peak, with no flapping: each day's actions go out, then in, never back and forth. Every
record validates against its schema, and the host is classified.
"""

from __future__ import annotations

import math
import time

import numpy as np
import orjson
import pytest
import redis

import schemas

from .conftest import WorkerHandle, collect, run, send

pytestmark = pytest.mark.integration

HOST = "sc-daily"
DAYS = 3
DAY = 1440
STEP_S = 60.0
T0 = 1.75e9
SLA = 80.0
"""Demand over 80% of one instance (cpu_pct 80 on one host) breaches the SLA."""


def daily_cpu() -> np.ndarray:
    rng = np.random.default_rng(11)
    t = np.arange(DAYS * DAY)
    cpu = 50.0 - 38.0 * np.cos(2 * math.pi * t / DAY) + rng.normal(0.0, 2.0, len(t))
    return np.clip(cpu, 0.0, 100.0)


def processed_upto(worker: WorkerHandle, host: str) -> str | None:
    client = redis.Redis.from_url(worker.settings.redis_dsn)
    try:
        upto = client.hget(f"{worker.settings.redis_key_prefix}:state:host:{host}", "scaling.upto")
    finally:
        client.close()
    return None if upto is None else upto.decode()


def test_scale_out_before_the_daily_peak_and_in_after_it(worker: WorkerHandle) -> None:
    t = worker.settings.topics
    cpu = daily_cpu()
    messages = [
        (
            HOST.encode(),
            orjson.dumps(
                {
                    "event_id": f"{HOST}-{i}",
                    "host_id": HOST,
                    "ts": T0 + STEP_S * i,
                    "metrics": {"cpu_pct": round(float(v), 3), "mem_pct": 35.0},
                }
            ),
        )
        for i, v in enumerate(cpu)
    ]
    run(send(worker.settings, t.host, messages))
    last = f"{HOST}-{len(cpu) - 1}"
    deadline = time.monotonic() + 300
    while processed_upto(worker, HOST) != last:
        if time.monotonic() > deadline:
            pytest.fail(f"the worker processed {HOST} up to {processed_upto(worker, HOST)}")
        time.sleep(1.0)
    out = run(collect(worker.settings, [t.scaling, t.workload], until=lambda r: True, settle_s=3))

    for topic, schema in ((t.scaling, "actions.scaling.v1"), (t.workload, "workload.class.v1")):
        validator = schemas.validator(schema)
        for key, value in out[topic]:
            assert key == HOST
            assert validator.is_valid(value), list(validator.iter_errors(value))[:1]
    classes = [v for _, v in out[t.workload]]
    assert classes, "the host was never classified"
    assert classes[0]["trigger"] == "first"

    actions = sorted((v for _, v in out[t.scaling]), key=lambda v: v["ts"])
    assert actions, "no scaling action at all"
    assert len({a["action_id"] for a in actions}) == len(actions)
    lead = actions[0]["reason"]["lead_time_s"]
    report = []
    for day in range(DAYS):
        lo, hi = T0 + day * DAY * STEP_S, T0 + (day + 1) * DAY * STEP_S
        today = [a for a in actions if lo <= a["ts"] < hi]
        kinds = [a["action"] for a in today]
        # no flapping: out (one or more steps), then in; never back and forth
        first_in = kinds.index("SCALE_IN") if "SCALE_IN" in kinds else len(kinds)
        assert set(kinds[:first_in]) <= {"SCALE_OUT"}, (day, kinds)
        assert set(kinds[first_in:]) <= {"SCALE_IN"}, (day, kinds)
        assert "SCALE_OUT" in kinds and "SCALE_IN" in kinds, (day, kinds)
        out_ts = today[0]["ts"]
        breach = next(i for i in range(day * DAY, (day + 1) * DAY) if cpu[i] > SLA)
        breach_ts = T0 + breach * STEP_S
        peak_ts = T0 + (day * DAY + DAY // 2) * STEP_S
        in_ts = today[first_in]["ts"]
        report.append((day, (breach_ts - out_ts) / 60, (in_ts - peak_ts) / 60, kinds))
        assert breach_ts - out_ts >= lead, (
            f"day {day}: SCALE_OUT at {out_ts} is {(breach_ts - out_ts) / 60:.0f} min "
            f"before the first SLA breach, less than the {lead / 60:.0f} min lead time"
        )
        assert in_ts > peak_ts, f"day {day}: scaled in before the peak"
        scale_in = today[first_in]
        assert scale_in["reason"]["demand"] < scale_in["current_value"] * 100 * 0.8
        assert scale_in["reason"]["forecast"], "a scale-in must have a forecast that agrees"
    # the measured lead and lag, for the record (pytest -s shows them)
    print("day, minutes out before breach, minutes in after peak, actions:", report)  # noqa: T201
