"""What anomaly detection costs: per detector and per event, and in the worker end to end.

1. **Scoring cost per event** (in process, no Kafka): each detector of the ensemble and
   the whole ensemble, for a host reporting five metrics (a daily cycle), a
   single-metric series and a datacenter link's five measures (no cycle within reach):
   one key alone in runs of 1, 10 and 100 samples, and 50 keys scored together
   (``AnomalyEnsemble.score_batch``, as the worker scores a batch) in runs of 1 and 10.
   Median of ``--repeat``.
2. **Worker throughput** on the local stack, mixed link and host telemetry (50 links,
   50 hosts with five metrics and a daily cycle, one sample per message), with the
   anomaly processor (the default) and without it (``NOVACRON_ANOMALY=false``), one
   worker per case, timed windows alternating between them. Keys first get an untimed
   warm-up that leaves them of spread ages (the youngest ``--warm-up`` samples, the
   others spread over one refit interval), as in a deployment that has been running:
   each timed window then holds its share of refits, period estimates and
   checkpoints. Then ``--repeat`` timed windows of ``--window`` samples per key per
   case: from the first message sent until the worker's ``novacron_messages_in``
   counters (a batch counts once its outputs were delivered and its windows stored)
   reach every message of both topics.

Usage::

    .venv/bin/python bench/anomaly.py --repeat 3
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
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from models.anomaly import AnomalyEnsemble, KeyEnsemble, Recipe, _raw_detectors, _Tape  # noqa: E402
from models.anomaly_fitted import fit_detectors, restore_hst  # noqa: E402
from models.anomaly_hst import score_and_learn  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from models.synthetic_incidents import normal_host  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from streams.records import MEASURES  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    forget_isolated_topics,
    isolated_env,
    settings_for,
)

KEYS = 50


# -- 1. scoring cost ------------------------------------------------------------------


def _warm(metrics: dict[str, np.ndarray], upto: int) -> KeyEnsemble:
    key = AnomalyEnsemble().new("bench")
    rows = [{k: float(v[i]) for k, v in metrics.items()} for i in range(upto)]
    for a in range(0, upto, 200):
        key.score_many([f"w{i}" for i in range(a, a + 200)], rows[a : a + 200])
    return key


def _time(fn: Callable[[], object], repeat: int) -> float:
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return statistics.median(best)


def _statistical(key: KeyEnsemble, values: np.ndarray) -> None:
    """The six statistical detectors of the key's next samples, in runs of 10."""
    kept = len(key.values.rows)
    merged = np.vstack([key.values.rows, values[N_WARM : N_WARM + N_SCORE]])
    steps = np.vstack([np.zeros((1, merged.shape[1])), np.diff(merged, axis=0)])
    cached = [key._baseline]
    for a in range(0, N_SCORE, 10):
        at = kept + a
        tape = _Tape.build(
            [(merged[:at], steps[:at])],
            [(merged[at : at + 10], steps[at : at + 10])],
            [key.t + a],
            key.recipe,
        )
        tape.periods[:] = key.periods
        _, cached = _raw_detectors(tape, key.recipe, cached)  # type: ignore[assignment]


def scoring_costs(repeat: int) -> dict[str, dict[str, float]]:
    """Microseconds per event, per case, per detector and for the whole ensemble."""
    out: dict[str, dict[str, float]] = {}
    for label, names in (("host-5-metrics", None), ("series-1-metric", ("cpu_pct",))):
        metrics = normal_host(N_WARM + N_SCORE, seed=3)
        if names is not None:
            metrics = {k: metrics[k] for k in names}
        out[label] = _costs(metrics, repeat)
        print(label, json.dumps(out[label]), flush=True)
    # a datacenter link's five measures each second: no period within the detectors'
    # reach (512 samples), unlike the hosts' daily cycle of 288 five-minute samples
    link = synthesize_link_series("datacenter", N_WARM + N_SCORE, seed=3)
    out["datacenter-link-5-metrics"] = _costs(dict(zip(MEASURES, link.T, strict=True)), repeat)
    print("datacenter-link-5-metrics", json.dumps(out["datacenter-link-5-metrics"]), flush=True)
    return out


N_WARM, N_SCORE = 3000, 600
MANY = 50
"""Keys scored together (as the worker scores a batch's keys)."""


def _costs(metrics: dict[str, np.ndarray], repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    n = len(next(iter(metrics.values())))
    rows = [{k: float(v[i]) for k, v in metrics.items()} for i in range(n)]
    warm = _warm(metrics, N_WARM)
    state = warm.dump()
    restore = _time(lambda: AnomalyEnsemble().restore("bench", state), repeat)
    for run in (1, 10, 100):

        def ensemble(run: int = run) -> None:
            key = AnomalyEnsemble().restore("bench", state)
            for a in range(N_WARM, N_WARM + N_SCORE, run):
                key.score_many([f"s{i}" for i in range(a, a + run)], rows[a : a + run])

        out[f"ensemble, runs of {run}"] = round(
            1e6 * (_time(ensemble, repeat) - restore) / N_SCORE, 1
        )
    model = AnomalyEnsemble()
    for run in (1, 10):

        def together(run: int = run) -> None:
            keys = [model.restore("bench", state) for _ in range(MANY)]
            for a in range(N_WARM, N_WARM + N_SCORE // 4, run):
                part = rows[a : a + run]
                model.score_batch([(k, [f"s{i}" for i in range(a, a + run)], part) for k in keys])

        spent = _time(together, repeat) - MANY * restore
        out[f"ensemble, {MANY} keys at once, runs of {run}"] = round(
            1e6 * spent / (MANY * (N_SCORE // 4)), 1
        )
    values = np.array([[r[k] for k in metrics] for r in rows])
    out["statistical detectors (the six together), runs of 10"] = round(
        1e6 * _time(lambda: _statistical(warm, values), repeat) / N_SCORE, 1
    )
    x = np.hstack([values[1:], np.diff(values, axis=0)])
    fitted = fit_detectors(x[:256], seed=1)
    z = (x[N_WARM : N_WARM + 10] - fitted.center) / fitted.scale
    for name, part in (
        ("isolation_forest", fitted.forest),
        ("one_class_svm", fitted.svm),
        ("local_outlier_factor", fitted.lof),
    ):
        spent = _time(lambda p=part: [p.score_samples(z) for _ in range(100)], repeat)
        out[f"{name}, runs of 10"] = round(1e6 * spent / 1000, 1)
    hst = warm.hst
    assert hst is not None
    span = values.max(axis=0) + 1.0
    scaled = np.clip(values / span, 0, 1)
    feats = [dict(zip(metrics, row.tolist(), strict=True)) for row in scaled]
    river = warm._new_hst()
    restore_hst(river, warm.names, hst.state())

    def river_online() -> None:
        for f in feats[:N_SCORE]:
            river.score_one(f)
            river.learn_one(f)

    def online() -> None:
        for a in range(0, N_SCORE, 10):
            score_and_learn([hst], scaled[a : a + 10], np.zeros(10, dtype=np.int64))

    out["half_space_trees (River's score_one + learn_one)"] = round(
        1e6 * _time(river_online, repeat) / N_SCORE, 1
    )
    out["half_space_trees (as arrays, runs of 10)"] = round(
        1e6 * _time(online, repeat) / N_SCORE, 1
    )
    fit = _time(lambda: fit_detectors(x[:256], seed=1), repeat)
    out["fit of the three batch detectors (per refit, us)"] = round(1e6 * fit, 0)
    return out


# -- 2. worker throughput -----------------------------------------------------------------


def key_messages(
    per_key: int, keys: int
) -> tuple[list[list[tuple[bytes, bytes]]], list[list[tuple[bytes, bytes]]]]:
    """Per key, ``per_key`` messages of link ``bl-k`` and of host ``bh-k`` (five metrics,
    a daily cycle, noise)."""
    links: list[list[tuple[bytes, bytes]]] = []
    hosts: list[list[tuple[bytes, bytes]]] = []
    for k in range(keys):
        link, host = f"bl-{k}", f"bh-{k}"
        metrics = normal_host(per_key, seed=k)
        links.append(
            [
                (
                    link.encode(),
                    orjson.dumps(
                        {
                            "event_id": f"{link}-{i}",
                            "link_id": link,
                            "ts": 1.76e9 + 10 * i,
                            "mode": "internet",
                            "bandwidth_mbps": 300.0 + (i * 7919 + k) % 400,
                            "latency_ms": 40.0 + (i + k) % 9,
                        }
                    ),
                )
                for i in range(per_key)
            ]
        )
        hosts.append(
            [
                (
                    host.encode(),
                    orjson.dumps(
                        {
                            "event_id": f"{host}-{i}",
                            "host_id": host,
                            "ts": 1.76e9 + 10 * i,
                            "metrics": {m: round(float(v[i]), 3) for m, v in metrics.items()},
                        }
                    ),
                )
                for i in range(per_key)
            ]
        )
    return links, hosts


def interleaved(
    links: list[list[tuple[bytes, bytes]]],
    hosts: list[list[tuple[bytes, bytes]]],
    lo: list[int],
    hi: list[int],
) -> list[tuple[bytes, bytes]]:
    """Messages ``lo[k]:hi[k]`` of every key, round robin (a link's, then its host's)."""
    out = []
    for i in range(max(h - low for low, h in zip(lo, hi, strict=True))):
        for k, (low, h) in enumerate(zip(lo, hi, strict=True)):
            if low + i < h:
                out += [links[k][low + i], hosts[k][low + i]]
    return out


def _messages_in(settings: Settings) -> dict[str, float]:
    """The worker's count of delivered messages per input topic (from its /metrics)."""
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local worker
        text = response.read().decode()
    return {
        sample.labels["topic"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "novacron_messages_in"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def _processed(settings: Settings, want: dict[str, int], timeout_s: float = 900) -> float:
    """Wait until the worker has delivered (processed, sent the outputs of, stored) at
    least ``want[topic]`` messages of each input topic; the time it was seen (polled
    every 20 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await asyncio.to_thread(_messages_in, settings)
        if all(got.get(topic, 0) >= n for topic, n in want.items()):
            return time.time()
        if time.monotonic() > deadline:
            msg = f"the worker delivered {got} of {want} messages within {timeout_s:.0f} s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.02)


async def _send(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    try:
        for key, value in messages:
            topic = settings.topics.link if key.startswith(b"bl-") else settings.topics.host
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class _Case:
    """One worker's traffic: its settings, messages and how many it has been sent."""

    settings: Settings
    links: list[list[tuple[bytes, bytes]]]
    hosts: list[list[tuple[bytes, bytes]]]
    stagger: list[int]
    sent: int = 0

    async def warm_up(self) -> None:
        keys = len(self.stagger)
        await _send(self.settings, interleaved(self.links, self.hosts, [0] * keys, self.stagger))
        self.sent = sum(self.stagger)
        await _processed(self.settings, self._want())

    async def window(self, r: int, size: int) -> float:
        lo = [s + r * size for s in self.stagger]
        batch = interleaved(self.links, self.hosts, lo, [low + size for low in lo])
        self.sent += len(batch) // 2
        await asyncio.sleep(1.0)
        started = time.time()
        await _send(self.settings, batch)
        finished = await _processed(self.settings, self._want())
        return len(batch) / (finished - started)

    def _want(self) -> dict[str, int]:
        return dict.fromkeys((self.settings.topics.link, self.settings.topics.host), self.sent)


async def _measure(
    cases: dict[str, Settings], keys: int, warm_up: int, window: int, repeat: int
) -> dict[str, list[float]]:
    """Warm every case's worker up, then time windows alternating between the cases."""
    stagger = [warm_up + k * Recipe().refit_every // keys for k in range(keys)]
    links, hosts = key_messages(max(stagger) + repeat * window, keys)
    traffic = {name: _Case(settings, links, hosts, stagger) for name, settings in cases.items()}
    for case in traffic.values():
        await case.warm_up()
    results: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(repeat):
        for name, case in traffic.items():
            results[name].append(await case.window(r, window))
            print(f"{name} window {r}: {results[name][-1]:,.0f} samples/s", flush=True)
    return results


def worker_throughput(keys: int, warm_up: int, window: int, repeat: int) -> dict[str, list[float]]:
    """One worker per case (anomaly processor on, off), both started and warmed up (keys
    of spread ages: the youngest ``warm_up`` samples, the others spread over one refit
    interval, so each window holds its share of refits, period estimates and
    checkpoints), then timed windows of ``window`` samples per key alternating between
    them: the idle one waits, the other has the machine."""
    cases = {
        "anomaly-on": {"NOVACRON_ANOMALY": "true"},
        "anomaly-off": {"NOVACRON_ANOMALY": "false"},
    }
    return workers_side_by_side(cases, keys, warm_up, window, repeat)


def workers_side_by_side(
    cases: dict[str, dict[str, str]], keys: int, warm_up: int, window: int, repeat: int
) -> dict[str, list[float]]:
    """One worker per case (its environment overrides), each in its own isolated topics
    and Redis prefix, warmed up and then timed in alternating windows (samples/s)."""
    settings_of: dict[str, Settings] = {}
    procs = []
    try:
        for case, overrides in cases.items():
            env = isolated_env(f"bench-{case}") | overrides
            settings = settings_for(env)
            log = Path(".novacron/logs") / f"bench-{case}.log"
            procs.append(start_worker(settings, log, env))
            wait_healthy(settings, procs[-1], timeout_s=120)
            settings_of[case] = settings
        return asyncio.run(_measure(settings_of, keys, warm_up, window, repeat))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--window", type=int, default=200, help="samples per key in each timed window"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed windows per case")
    parser.add_argument("--keys", type=int, default=KEYS, help="links, and as many hosts")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=1100,
        help="samples of the youngest key before the timed windows (keys are spread over "
        "one refit interval beyond it)",
    )
    parser.add_argument(
        "--skip-worker",
        action="store_true",
        help="only the scoring costs (the output keeps its last worker figures)",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/anomaly.json"))
    args = parser.parse_args()
    costs = scoring_costs(max(3, args.repeat))
    summary: dict[str, object] = {
        "command": " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scoring_us_per_event_median": costs,
    }
    if args.skip_worker and args.output.exists():  # keep the last worker figures
        previous = json.loads(args.output.read_text())
        summary |= {k: v for k, v in previous.items() if k.startswith(("worker", "anomaly_cost"))}
    if not args.skip_worker:
        runs = worker_throughput(args.keys, args.warm_up, args.window, args.repeat)
        on = statistics.median(runs["anomaly-on"])
        off = statistics.median(runs["anomaly-off"])
        summary |= {
            "worker_samples_per_s_median": {"anomaly-on": on, "anomaly-off": off},
            "worker_samples_per_s_runs": runs,
            "anomaly_cost_pct_of_throughput": round(100 * (1 - on / off), 1),
            "worker_traffic": {
                "links": args.keys,
                "hosts": args.keys,
                "youngest_key_samples_before_timing": args.warm_up,
                "key_ages_spread_over": Recipe().refit_every,
                "timed_samples_per_window": 2 * args.keys * args.window,
            },
            "target_pct": 30,
        }
    summary["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "scoring_us_per_event_median"}, indent=2
        )
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        forget_isolated_topics()  # the workers' topics: a local broker keeps every run's
