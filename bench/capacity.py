"""What the workload and scaling processors cost per host event: in process and in the worker.

1. **In process** (no Kafka, in-memory store): host batches as the worker sees them (50
   hosts with five metrics and a daily cycle, one sample each per batch), through the
   host pipeline without the capacity processors (the anomaly processor only, the
   worker's default otherwise) and with them (workload classifier and forecaster from
   the shipped bundle, the PREDICTIVE controller), side by side in one run, after a
   warm-up that gives every host a full workload history. Also the parts alone:
   classifying one host (1,440 rows) and 256 hosts together, forecasting 1 and 50
   series together, one controller step. Median of ``--repeat``.
2. **Worker throughput** on the local stack (``--worker``): mixed link and host telemetry
   as in ``bench/anomaly.py`` (50 links, 50 hosts), one worker with the capacity
   processors (the default) and one without (``NOVACRON_WORKLOAD=false``,
   ``NOVACRON_SCALING=false``), timed windows alternating between them.

Usage::

    .venv/bin/python bench/capacity.py --repeat 5 [--worker]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from agents.wiring import model_source, pipeline_for, scaling_controller  # noqa: E402
from models.serving import ModelHolder  # noqa: E402
from models.synthetic_incidents import normal_host  # noqa: E402
from streams.capacity import HOST_METRICS  # noqa: E402
from streams.pipeline import RawMessage, TelemetryPipeline  # noqa: E402
from streams.records import SourceRef  # noqa: E402
from streams.store import InMemoryWindowStore  # noqa: E402

HOSTS = 50
STEP_S = 60.0


def _time(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def host_batches(samples: int, hosts: int = HOSTS) -> list[list[RawMessage]]:
    """One batch per time step, one sample of every host in it."""
    series = [normal_host(samples, seed=k, period=1440) for k in range(hosts)]
    batches = []
    for i in range(samples):
        batch = []
        for k, metrics in enumerate(series):
            value = {
                "host_id": f"bh-{k}",
                "ts": 1.76e9 + STEP_S * i,
                "metrics": {m: round(float(v[i]), 3) for m, v in metrics.items()},
            }
            batch.append(RawMessage(orjson.dumps(value), SourceRef("telemetry.host.v1", 0, i)))
        batches.append(batch)
    return batches


def _pipeline(settings: Settings, holder: ModelHolder) -> TelemetryPipeline:
    return pipeline_for(settings, holder, InMemoryWindowStore(), time.time)


def in_process(repeat: int, warm_up: int, timed: int) -> dict[str, object]:
    """Per host event, the host pipeline with and without the capacity processors."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(
            registry_url=f"sqlite:///{tmp}/r.sqlite", artifact_dir=Path(tmp) / "artifacts"
        )
        holder = ModelHolder(model_source(base))
        cases = {
            "without": base.model_copy(update={"workload": False, "scaling": False}),
            "with": base,
        }
        batches = host_batches(warm_up + repeat * timed)
        pipes = {name: _pipeline(s, holder) for name, s in cases.items()}
        for batch in batches[:warm_up]:
            for pipe in pipes.values():
                asyncio.run(pipe.handle("host", batch))
        runs: dict[str, list[float]] = {name: [] for name in cases}
        outputs: dict[str, int] = dict.fromkeys(cases, 0)
        for r in range(repeat):
            window = batches[warm_up + r * timed : warm_up + (r + 1) * timed]
            for name, pipe in pipes.items():  # alternating, so drifts hit both cases
                t = time.perf_counter()
                for batch in window:
                    outcome = asyncio.run(pipe.handle("host", batch))
                    outputs[name] += len(outcome.outputs)
                runs[name].append((time.perf_counter() - t) / (timed * HOSTS) * 1e6)
        per_event = {name: statistics.median(v) for name, v in runs.items()}

        classifier = holder.workload()
        forecaster = holder.forecaster()
        parts: dict[str, float] = {}
        rng = np.random.default_rng(0)
        if classifier is not None:
            day = [normal_host(1440, seed=k, period=1440) for k in range(256)]
            histories = [np.column_stack([d.get(m, np.full(1440, np.nan)) for m in HOST_METRICS])
                         for d in day]  # fmt: skip
            parts["classify_1_host_1440_rows_us"] = 1e6 * _time(
                lambda: classifier.classify_many(histories[:1], [STEP_S]), repeat * 3
            )
            parts["classify_256_hosts_us_per_host"] = (
                1e6
                * _time(lambda: classifier.classify_many(histories, [STEP_S] * 256), repeat)
                / 256
            )
        if forecaster is not None:
            look = forecaster.lookback
            series = 50 + 10 * rng.standard_normal((50, look))
            last = np.full(50, 1.76e9)
            step = np.full(50, STEP_S)
            parts["forecast_1_series_us"] = 1e6 * _time(
                lambda: forecaster.forecast_many(series[:1], last[:1], step[:1], [None]),
                repeat * 5,
            )
            nones: list[str | None] = [None] * 50
            many = _time(lambda: forecaster.forecast_many(series, last, step, nones), repeat * 3)
            parts["forecast_50_series_us_per_series"] = 1e6 * many / 50
        controller = scaling_controller(base)
        state = controller.new_state(50.0)
        demand = 50 + 30 * np.sin(np.arange(2000) / 100)

        def steps() -> None:
            s = state
            for i, d in enumerate(demand):
                s, _ = controller.step(s, 1.76e9 + STEP_S * i, float(d), None, STEP_S)

        parts["controller_step_us"] = 1e6 * _time(steps, repeat) / len(demand)
    return {
        "host_event_us_median": per_event,
        "host_event_us_runs": runs,
        "capacity_us_per_host_event": round(per_event["with"] - per_event["without"], 1),
        "capacity_pct_of_host_pipeline": round(
            100 * (per_event["with"] - per_event["without"]) / per_event["with"], 1
        ),
        "outputs": outputs,
        "parts_us_median": {k: round(v, 1) for k, v in parts.items()},
        "traffic": {
            "hosts": HOSTS,
            "samples_per_host_per_batch": 1,
            "warm_up_batches": warm_up,
            "timed_batches_per_window": timed,
        },
    }


def worker_throughput(window: int, repeat: int) -> dict[str, list[float]]:
    """One worker with the capacity processors and one without, windows alternating."""
    from bench.anomaly import KEYS, workers_side_by_side

    on = {"NOVACRON_WORKLOAD": "true", "NOVACRON_SCALING": "true"}
    off = {"NOVACRON_WORKLOAD": "false", "NOVACRON_SCALING": "false"}
    cases = {"capacity-on": on, "capacity-off": off}
    return workers_side_by_side(cases, KEYS, 1100, window, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed windows per case")
    parser.add_argument("--warm-up", type=int, default=1500, help="batches before timing")
    parser.add_argument("--timed", type=int, default=60, help="batches per timed window")
    parser.add_argument("--worker", action="store_true", help="also the worker on the stack")
    parser.add_argument("--window", type=int, default=200, help="worker: samples per key")
    parser.add_argument("--output", type=Path, default=Path("bench/results/capacity.json"))
    args = parser.parse_args()
    summary: dict[str, object] = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "in_process": in_process(args.repeat, args.warm_up, args.timed),
    }
    if args.worker:
        runs = worker_throughput(args.window, args.repeat)
        on = statistics.median(runs["capacity-on"])
        off = statistics.median(runs["capacity-off"])
        summary["worker"] = {
            "samples_per_s_median": {"capacity-on": on, "capacity-off": off},
            "samples_per_s_runs": runs,
            "capacity_cost_pct_of_throughput": round(100 * (1 - on / off), 1),
        }
    summary["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
