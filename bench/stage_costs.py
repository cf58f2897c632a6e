"""Where a link sample's time goes in the worker's pipeline: a stage-by-stage cost table.

The worker's pipeline (every shipped processor, the shipped LSTMs, the online path on)
runs in process on the real Redis of the local stack (``novacron stack up``), batch by
batch as the worker hands it batches, with a timer around each stage:

- ``decode + validation``: the input decoder (JSON, schema rules, dead letters);
- ``window load`` / ``state load``: the Redis round trips and decoding the entries;
- one row per processor (``bandwidth``: features, the LSTM and the online path;
  ``anomaly``), with ``of which ...`` rows inside them: the ONNX runtime's own time
  (``Session.run``) and the links' online path;
- ``record encoding``: output records to JSON bytes;
- ``window append + state write``: the Lua script that appends the batch's entries and
  processor state;
- ``pipeline bookkeeping``: the rest (windows advanced, annotations, counts).

Four cases: datacenter and internet links, one sample per message and 100 samples per
message. Time outside the pipeline (the Kafka consumer and producer, Faust's per-event
machinery, the worker's commit and metrics) is the worker's end-to-end cost minus these
rows: ``bench/worker_throughput.py`` measures the end-to-end side.

Writes bench/results/stage_costs.json (µs per sample and share per stage, medians of
``--repeat``) and prints one table per case.

    .venv/bin/python bench/stage_costs.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime.capi.onnxruntime_inference_collection as ort_session  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
import redis.exceptions  # noqa: E402

import streams.pipeline as pipeline_module  # noqa: E402
from agents.settings import Settings  # noqa: E402
from agents.wiring import model_source, pipeline_for  # noqa: E402
from models.serving import ModelHolder  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from streams.pipeline import RawMessage  # noqa: E402
from streams.records import SourceRef  # noqa: E402
from streams.store import RedisWindowStore, decode_entry  # noqa: E402

LINKS = 50
CASES = (
    ("datacenter", 1),
    ("datacenter", 100),
    ("internet", 1),
    ("internet", 100),
)


class Clock:
    """Seconds spent per stage (nested stages are also counted in their parent)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[stage] += time.perf_counter() - started

        return wrapper

    def timed_async(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.spent[stage] += time.perf_counter() - started

        return wrapper


class EveryEntryDecoded:
    """The stores' decoding before they remembered decoded entries (``--compare``)."""

    def decode(self, raw: bytes) -> Any:
        return decode_entry(raw)

    def decode_all(self, raws: Any) -> list[Any]:
        return [decode_entry(r) for r in raws]


class TimedProcessor:
    """A processor whose ``process`` is timed; everything else is the processor's."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner = inner
        self.process = clock.timed(inner.name, inner.process)
        online = getattr(inner, "_online", None)
        if online is not None:
            inner._online = clock.timed(f"of which {inner.name}: online path", online)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def link_sample(mode: str, link: str, i: int, ts: float, row: Any) -> dict[str, Any]:
    """Sample ``i`` of ``link``: the measures of a synthetic series' ``row`` at ``ts``."""
    return {
        "event_id": f"{link}-{i}",
        "link_id": link,
        "ts": ts,
        "mode": mode,
        "bandwidth_mbps": round(float(row[0]), 3),
        "latency_ms": round(float(row[1]), 3),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    msg = f"no VmRSS for process {pid}"
    raise RuntimeError(msg)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the worker's fitting process and its fork server)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """The resident memory of every process below ``pid`` (0 when it has none), and the
    proportional memory (``/proc/<p>/smaps_rollup``) of ``pid`` and those together, in MB,
    from one walk of the process table. Proportional: a page shared by n of them counts
    1/n in each, so the sum is what they take from the machine together, where adding their
    RSS counts the pages a fork server shares with its children more than once."""
    children_rss = together_pss = 0.0
    for proc in (pid, *descendants(pid)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, RuntimeError):
            if proc != pid:  # unless it ended meanwhile
                children_rss += rss_mb(proc)
            for line in Path(f"/proc/{proc}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    together_pss += int(line.split()[1]) / 1024
                    break
    return children_rss, together_pss


def batches(mode: str, per_message: int, steps: int, links: int = LINKS) -> list[list[RawMessage]]:
    """The worker's batches: with one sample per message, one message per link and step;
    with 100, one message per link holding its next 100 samples."""
    series = [synthesize_link_series(mode, steps, seed=k) for k in range(links)]
    out: list[list[RawMessage]] = []
    offset = 0
    for start in range(0, steps, per_message):
        batch = []
        for k, rows in enumerate(series):
            samples = [
                link_sample(mode, f"sc-{mode}-{k}", i, 1.76e9 + i, rows[i])
                for i in range(start, min(start + per_message, steps))
            ]
            value = samples[0] if per_message == 1 else {"samples": samples}
            offset += 1
            batch.append(RawMessage(orjson.dumps(value), SourceRef("telemetry.link.v1", 0, offset)))
        out.append(batch)
    return out


def bench_store(settings: Settings) -> tuple[aioredis.Redis, RedisWindowStore]:
    """A window store on the local Redis under a prefix of its own (see :func:`drop_store`)."""
    client = aioredis.from_url(settings.redis_dsn)
    store = RedisWindowStore(
        client,
        capacity=settings.window_size,
        prefix=f"novacron-bench:{uuid.uuid4().hex}",
        unavailable=(redis.exceptions.RedisError, OSError),
    )
    return client, store


async def drop_store(client: aioredis.Redis, store: RedisWindowStore) -> None:
    """Delete what a :func:`bench_store` wrote and close its client."""
    keys = [k async for k in client.scan_iter(match=f"{store.prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def run_case(
    mode: str, per_message: int, repeat: int, holder: ModelHolder, entry_memory: bool = True
) -> dict[str, Any]:
    settings = Settings()
    client, store = bench_store(settings)
    if not entry_memory:
        store._decoder = EveryEntryDecoded()  # type: ignore[assignment]
    clock = Clock()
    pipe = pipeline_for(settings, holder, store, time.time)
    pipe.processors["link"] = tuple(TimedProcessor(p, clock) for p in pipe.processors["link"])
    pipe._encode = clock.timed("record encoding", pipe._encode)  # type: ignore[method-assign]
    store.load = clock.timed_async("window load", store.load)  # type: ignore[method-assign]
    store.load_state = clock.timed_async("state load", store.load_state)  # type: ignore[method-assign]
    store.append = clock.timed_async("window append + state write", store.append)  # type: ignore[method-assign]
    decoder = pipeline_module.DECODERS["link"]
    pipeline_module.DECODERS["link"] = clock.timed("decode + validation", decoder)
    session_run = ort_session.Session.run
    ort_session.Session.run = clock.timed("of which ONNX runtime", session_run)  # type: ignore[method-assign]

    warm = max(80 // per_message, 1) + 1  # windows full and models warm
    timed = max(40 // per_message, 2)  # batches per timed window: 2,000 or 10,000 samples
    steps = (warm + timed * repeat) * per_message
    work = batches(mode, per_message, steps)
    runs: list[dict[str, float]] = []
    try:
        for batch in work[:warm]:
            await pipe.handle("link", batch)
        at = warm
        for _ in range(repeat):
            clock.spent.clear()
            samples = 0
            started = time.perf_counter()
            for batch in work[at : at + timed]:
                out = await pipe.handle("link", batch)
                samples += out.accepted
            total = time.perf_counter() - started
            at += timed
            spent = dict(clock.spent)
            inside = sum(v for k, v in spent.items() if not k.startswith("of which"))
            spent["pipeline bookkeeping"] = total - inside
            runs.append(
                {k: v / samples * 1e6 for k, v in spent.items()} | {"total": total / samples * 1e6}
            )
    finally:
        pipeline_module.DECODERS["link"] = decoder
        ort_session.Session.run = session_run  # type: ignore[method-assign]
        await drop_store(client, store)
    stages = sorted({k for r in runs for k in r})
    median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in stages}
    total = median.pop("total")
    rows = [
        {"stage": k, "us_per_sample": round(v, 1), "share": round(v / total, 3)}
        for k, v in sorted(median.items(), key=lambda kv: -kv[1])
    ]
    return {
        "mode": mode,
        "samples_per_message": per_message,
        "links": LINKS,
        "us_per_sample_total": round(total, 1),
        "samples_per_s": round(1e6 / total),
        "stages": rows,
        "runs_us_per_sample_total": [round(r["total"], 1) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/stage_costs.json"))
    parser.add_argument(
        "--compare",
        type=int,
        default=0,
        metavar="N",
        help="also: N alternating rounds of the single-sample cases with and without the "
        "stores' memory of decoded entries, side by side",
    )
    args = parser.parse_args()
    holder = ModelHolder(model_source(Settings()))
    holder.refresh()
    comparison = compare(args.compare, holder) if args.compare else None
    cases = []
    for mode, per_message in CASES:
        result = asyncio.run(run_case(mode, per_message, args.repeat, holder))
        cases.append(result)
        print(
            f"\n{mode} links, {per_message} sample(s) per message: "
            f"{result['us_per_sample_total']} us/sample ({result['samples_per_s']:,}/s in process)"
        )
        for row in result["stages"]:
            print(f"  {row['stage']:38s} {row['us_per_sample']:9.1f} us  {row['share']:6.1%}")
    report = {
        "command": " ".join(["bench/stage_costs.py", *sys.argv[1:]]),
        "machine": {"cpus": 2, "python": platform.python_version()},
        "what": "in-process pipeline on the real Redis, every shipped link processor on; "
        "medians of --repeat timed windows",
        "cases": cases,
        "entry_memory_comparison": comparison,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.output}")


def compare(rounds: int, holder: ModelHolder) -> dict[str, Any]:
    """Single-sample cases with and without the decoded-entry memory, alternating."""
    out: dict[str, Any] = {}
    for mode in ("datacenter", "internet"):
        totals: dict[str, list[float]] = {"with": [], "without": []}
        loads: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(rounds):
            for case in ("without", "with"):
                result = asyncio.run(run_case(mode, 1, 1, holder, entry_memory=case == "with"))
                totals[case].append(result["us_per_sample_total"])
                load = next(r for r in result["stages"] if r["stage"] == "window load")
                loads[case].append(load["us_per_sample"])
        med = {k: statistics.median(v) for k, v in totals.items()}
        out[mode] = {
            "us_per_sample_total_median": med,
            "window_load_us_per_sample_median": {k: statistics.median(v) for k, v in loads.items()},
            "runs_us_per_sample_total": totals,
            "speed_up_paired_median": round(
                statistics.median(
                    a / b for a, b in zip(totals["without"], totals["with"], strict=True)
                ),
                3,
            ),
        }
        print(f"{mode}, one sample per message: {med} us/sample, {out[mode]}")
    return out


if __name__ == "__main__":
    main()
