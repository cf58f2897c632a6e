"""Where a running worker's CPU goes, including what the stage table cannot see: the
Kafka consumer and producer, Faust's per-event machinery and the event loop.

One ``novacron worker`` on the local stack, every shipped processor on, is sent link
samples for ``--seconds`` while ``py-spy`` samples its stacks (``--rate`` per second,
non-blocking, threads that are idle left out). Each sampled stack is put in one bucket:

* **pipeline** when any frame is in the core (``streams``, ``models``, ``online``):
  the part ``bench/stage_costs.py`` attributes, split by the library the leaf is in;
* **aiokafka consumer** / **aiokafka producer** / **aiokafka other** by the aiokafka
  module on the stack;
* **faust** when a Faust or mode frame is on the stack and none of the above;
* **agents** (the worker's own glue: batching, delivery, metrics) and **other** (by the
  leaf's module: the event loop, selectors).

Writes ``bench/results/profile_worker.json`` with the share of samples per bucket and
the top leaf functions. Usage (the local stack up)::

    .venv/bin/python bench/profile_worker.py --mode datacenter --per-message 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker_throughput import messages, produce_all, samples  # noqa: E402

from agents.settings import Settings  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    forget_isolated_topics,
    isolated_env,
    settings_for,
)

CORE = ("streams", "models", "online")


def module_path(frame: str) -> str:
    """``func (streams/store.py:12)`` -> ``streams/store.py`` (py-spy shows paths from
    their ``sys.path`` entry)."""
    inside = frame.rsplit("(", 1)[-1]
    return inside.rsplit(":", 1)[0]


def library(path: str) -> str:
    """The top-level package or module of a frame's file."""
    return path.split("/", 1)[0].removesuffix(".py")


def bucket(frames: list[str]) -> str:
    paths = [module_path(f) for f in frames]
    if any(library(path) in CORE for path in paths):
        return f"pipeline: {library(paths[-1])}"
    for path in paths:
        if path.startswith("aiokafka/consumer/"):
            return "aiokafka consumer"
        if path.startswith("aiokafka/producer/"):
            return "aiokafka producer"
    if any(library(path) == "aiokafka" for path in paths):
        return "aiokafka other"
    if any(library(path) in ("faust", "mode") for path in paths):
        return "faust"
    if any(library(path) == "agents" for path in paths):
        return "agents"
    return f"other: {library(paths[-1])}"


def analyse(raw: Path) -> dict[str, object]:
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        n = int(count)
        total += n
        buckets[bucket(frames)] += n
        leaves[frames[-1]] += n
    groups: Counter[str] = Counter()
    for name, n in buckets.items():
        groups[name.split(":", 1)[0].split(" ", 1)[0]] += n
    return {
        "samples": total,
        "share_by_group": {k: v / total for k, v in groups.most_common()},
        "share_by_bucket": {k: v / total for k, v in buckets.most_common()},
        "top_leaf_functions": {k: v / total for k, v in leaves.most_common(25)},
    }


async def feed(settings: Settings, mode: str, per_message: int, seconds: float, rate: float) -> int:
    """Send link samples in rounds of 5,000, at most ``rate`` per second (more than the
    worker takes, so it is never idle, without flooding the broker), until ``seconds``
    have passed; return how many were sent."""
    sent, rounds = 0, 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if sent > rate * elapsed:
            await asyncio.sleep(0.1)
            continue
        rows = samples(5_000, mode)
        for row in rows:  # each round continues the links' time, and has new ids
            row["ts"] = float(row["ts"]) + rounds * 100  # type: ignore[arg-type]
            row["event_id"] = f"{row['event_id']}-{rounds}"
        await produce_all(settings, settings.topics.link, messages(rows, per_message))
        sent += len(rows)
        rounds += 1
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("datacenter", "internet"), default="datacenter")
    parser.add_argument("--per-message", type=int, choices=(1, 100), default=100)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--feed-rate", type=float, default=6_000, help="link samples sent per second, at most"
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/profile_worker.json"))
    args = parser.parse_args()
    env = isolated_env("bench-profile")
    settings = settings_for(env)
    proc = start_worker(settings, Path(".novacron/logs/bench-profile.log"), env)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        try:
            wait_healthy(settings, proc, timeout_s=180)
            spy = subprocess.Popen(  # noqa: S603 - py-spy from our own environment
                [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                 str(proc.pid), "--rate", str(args.rate), "--duration", str(int(args.seconds)),
                 "--nonblocking", "--format", "raw", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            sent = asyncio.run(
                feed(settings, args.mode, args.per_message, args.seconds, args.feed_rate)
            )
            _, err = spy.communicate(timeout=120)
            if spy.returncode != 0:
                msg = f"py-spy failed ({spy.returncode}): {err.decode()[-2000:]}"
                raise RuntimeError(msg)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        profile = analyse(raw)
    summary = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "case": f"{args.mode} links, {args.per_message} samples per message, one worker, "
        "every shipped processor on",
        "samples_sent": sent,
        **profile,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["share_by_group"], indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()
