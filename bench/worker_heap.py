"""What the worker's heap costs its garbage collector: links through the in-process
pipeline, then the objects the collector tracks and how long a full collection takes.

Every shipped link processor runs on the real Redis of the local stack (``novacron stack
up``), as ``bench/stage_costs.py`` runs them. Each case is a fresh process: ``--links``
datacenter links send ``--steps`` single-sample messages, a batch per step. Two cases,
alternating over ``--repeat`` rounds:

- ``frozen``: ``gc.freeze()`` after the models load, as ``novacron worker`` does;
- ``unfrozen``: everything left in the collector's sight.

Per case (medians): the full (generation-2) collections the run triggered, their total
and longest pause, a full collection's time after the run, the objects it tracks, and
the resident memory the run added per link.

Writes bench/results/worker_heap.json::

    .venv/bin/python bench/worker_heap.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CASES = ("unfrozen", "frozen")


async def _case(freeze: bool, links: int, steps: int) -> dict[str, Any]:
    from stage_costs import batches, bench_store, drop_store, rss_mb

    from agents.settings import Settings
    from agents.wiring import model_source, pipeline_for
    from models.serving import ModelHolder
    from streams.pipeline import RawMessage
    from streams.records import SourceRef

    settings = Settings()
    holder = ModelHolder(model_source(settings))
    holder.refresh()
    client, store = bench_store(settings)
    pipe = pipeline_for(settings, holder, store, time.time)
    work = [[m.value for m in batch] for batch in batches("datacenter", 1, steps, links)]
    gc.collect()
    if freeze:
        gc.freeze()
    pauses: list[float] = []
    started: dict[str, float] = {}

    def watch(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started["t"])

    rss_before = rss_mb(os.getpid())
    gc.callbacks.append(watch)
    began = time.perf_counter()
    try:
        offset = 0
        for values in work:
            messages = []
            for value in values:
                offset += 1
                messages.append(RawMessage(value, SourceRef("telemetry.link.v1", 0, offset)))
            await pipe.handle("link", messages)
        elapsed = time.perf_counter() - began
    finally:
        gc.callbacks.remove(watch)
        await drop_store(client, store)
    del work
    gc.collect()
    rss_after = rss_mb(os.getpid())
    full = []
    for _ in range(5):
        t = time.perf_counter()
        gc.collect()
        full.append(time.perf_counter() - t)
    tracked = gc.get_objects()
    kinds = Counter(type(o).__name__ for o in tracked)
    return {
        "case": "frozen" if freeze else "unfrozen",
        "samples_per_s": round(links * steps / elapsed),
        "full_collections_during_run": len(pauses),
        "full_collection_pause_total_ms": round(1000 * sum(pauses)),
        "full_collection_pause_max_ms": round(1000 * max(pauses, default=0.0)),
        "full_collection_after_run_ms": round(1000 * statistics.median(full), 1),
        "tracked_objects": len(tracked),
        "most_tracked": dict(kinds.most_common(6)),
        "rss_added_kb_per_link": round((rss_after - rss_before) * 1024 / links),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/worker_heap.json")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one child run
    args = parser.parse_args()
    if args.case:
        result = asyncio.run(_case(args.case == "frozen", args.links, args.steps))
        print(json.dumps(result))
        return
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for round_ in range(args.repeat):
        for case in CASES if round_ % 2 == 0 else CASES[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, "--case", case, "--links", str(args.links),
                 "--steps", str(args.steps)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[case].append(result)
            print(json.dumps(result), flush=True)
    medians = {
        case: {
            k: statistics.median(r[k] for r in rs)
            for k in rs[0]
            if isinstance(rs[0][k], int | float) and not isinstance(rs[0][k], bool)
        }
        for case, rs in runs.items()
    }
    report = {
        "command": " ".join(["bench/worker_heap.py", *sys.argv[1:]]),
        "links": args.links,
        "steps": args.steps,
        "medians": medians,
        "runs": runs,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for case, m in medians.items():
        print(f"{case}: {m}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
