"""What the per-link online path costs: per event in process, and in the worker end to end.

1. **In process** (no Kafka, in-memory store, the shipped LSTMs from the bundle): link
   batches as the worker sees them (50 internet links, one sample each per batch),
   through the link pipeline with the online path (learner, drift monitors, online
   accuracy, champion/challenger: the default) and without it (``online_links=None``),
   side by side in one run after a warm-up that fills every window. Also the parts
   alone: one ``LinkOnline.step`` (learn + predict + both detectors + accuracy), and
   the state's dump + load. Median of ``--repeat``.
2. **Worker throughput** on the local stack (``--worker``): mixed link and host telemetry
   as in ``bench/anomaly.py`` (50 links, 50 hosts, one sample per message), one worker
   with the online path (the default) and one without (``NOVACRON_ONLINE=false``), timed
   windows alternating between them.

Usage::

    .venv/bin/python bench/online_cost.py --repeat 5 [--worker]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_costs import batches  # noqa: E402

from agents.settings import Settings  # noqa: E402
from agents.wiring import model_source, pipeline_for  # noqa: E402
from models.serving import ModelHolder  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from online.link import LinkOnline  # noqa: E402
from streams.pipeline import RawMessage, TelemetryPipeline  # noqa: E402
from streams.records import ModelRef  # noqa: E402
from streams.store import InMemoryWindowStore  # noqa: E402

LINKS = 50


def link_batches(samples: int, links: int = LINKS) -> list[list[RawMessage]]:
    """One batch per time step, one sample of every link in it."""
    return batches("internet", 1, samples, links)


def _pipeline(settings: Settings, holder: ModelHolder) -> TelemetryPipeline:
    return pipeline_for(settings, holder, InMemoryWindowStore(), time.time)


def in_process(repeat: int, warm_up: int, timed: int) -> dict[str, object]:
    holder = ModelHolder(model_source(Settings()))
    holder.refresh()
    batches = link_batches(warm_up + timed * repeat * 2)
    pipes = {
        "online-on": _pipeline(Settings(online=True), holder),
        "online-off": _pipeline(Settings(online=False), holder),
    }
    for pipe in pipes.values():
        for batch in batches[:warm_up]:
            asyncio.run(pipe.handle("link", batch))
    runs: dict[str, list[float]] = {case: [] for case in pipes}
    at = warm_up
    for _ in range(repeat):
        for case, pipe in pipes.items():  # alternating windows of the same stream position
            window = batches[at : at + timed]
            started = time.perf_counter()
            for batch in window:
                asyncio.run(pipe.handle("link", batch))
            runs[case].append((time.perf_counter() - started) / (timed * LINKS) * 1e6)
        at += timed
    on, off = statistics.median(runs["online-on"]), statistics.median(runs["online-off"])

    # the parts alone: one link stepped through a stream, and its state's round trip
    path = LinkOnline()
    state = path.new()
    x = synthesize_link_series("internet", 1000 * repeat + 100, seed=99)[:, 0]
    model = ModelRef("bandwidth-lstm-internet", "1")
    step_us = []
    for r in range(repeat):
        started = time.perf_counter()
        for i in range(8, 1008):
            j = r * 1000 + i
            path.step(
                state, link_id="ol", mode="internet", event_id=f"e{j}", ts=1.76e9 + j,
                recent=x[j - 7 : j + 1], batch_point=float(x[j]) * 1.01,
                batch_lower=float(x[j]) * 0.9, batch_upper=float(x[j]) * 1.1, batch_model=model,
            )  # fmt: skip
        step_us.append((time.perf_counter() - started) / 1000 * 1e6)
    blob = path.dump(state)
    started = time.perf_counter()
    for _ in range(1000):
        path.load(path.dump(state))
    round_trip_us = (time.perf_counter() - started) / 1000 * 1e6
    return {
        "us_per_link_event_median": {"online-on": round(on, 1), "online-off": round(off, 1)},
        "us_per_link_event_runs": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
        "online_cost_us_per_link_event": round(on - off, 1),
        "online_cost_pct_of_link_throughput": round(100 * (1 - off / on), 1),
        "step_us_median": round(statistics.median(step_us), 1),
        "state_bytes": len(blob),
        "state_dump_load_us": round(round_trip_us, 1),
        "setup": {"links": LINKS, "warm_up_batches": warm_up, "timed_batches": timed},
    }


def worker_throughput(window: int, repeat: int) -> dict[str, list[float]]:
    """One worker with the online path and one without, windows alternating."""
    from bench.anomaly import KEYS, workers_side_by_side

    cases = {"online-on": {"NOVACRON_ONLINE": "true"}, "online-off": {"NOVACRON_ONLINE": "false"}}
    return workers_side_by_side(cases, KEYS, 600, window, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed windows per case")
    parser.add_argument("--warm-up", type=int, default=80, help="batches before timing")
    parser.add_argument("--timed", type=int, default=40, help="batches per timed window")
    parser.add_argument("--worker", action="store_true", help="also the worker on the stack")
    parser.add_argument("--window", type=int, default=200, help="worker: samples per key")
    parser.add_argument("--output", type=Path, default=Path("bench/results/online_cost.json"))
    args = parser.parse_args()
    np.seterr(all="ignore")
    summary: dict[str, object] = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "in_process": in_process(args.repeat, args.warm_up, args.timed),
    }
    if args.worker:
        runs = worker_throughput(args.window, args.repeat)
        on = statistics.median(runs["online-on"])
        off = statistics.median(runs["online-off"])
        summary["worker"] = {
            "samples_per_s_median": {"online-on": on, "online-off": off},
            "samples_per_s_runs": runs,
            "online_cost_pct_of_throughput": round(100 * (1 - on / off), 1),
        }
    summary["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
