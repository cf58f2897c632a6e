"""What anomaly detection costs: per detector and per event, and in the worker end to end.

1. **Scoring cost per event** (in process, no Kafka): each detector of the ensemble and
   the whole ensemble (``KeyEnsemble.score_many``), for a host reporting five metrics
   and a single-metric series, with runs of 1, 10 and 100 samples of a key at a time
   (the worker scores a key's samples of one batch together). Median of ``--repeat``.
2. **Worker throughput** on the local stack, mixed link and host telemetry (50 links,
   50 hosts with five metrics, one sample per message), with the anomaly processor
   (the default) and without it (``NOVACRON_ANOMALY=false``), interleaved in one run.
   Time runs from the first input sent until the last link prediction arrived and the
   worker's group committed every host message.

Usage::

    .venv/bin/python bench/anomaly.py --samples 40000 --repeat 3
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from bench.worker_throughput import count_until  # noqa: E402
from models.anomaly import AnomalyEnsemble, KeyEnsemble, _raw_detectors  # noqa: E402
from models.anomaly_fitted import fit_detectors  # noqa: E402
from models.synthetic_incidents import normal_host  # noqa: E402
from novacron.demo import start_worker, wait_healthy  # noqa: E402
from tests.integration.conftest import isolated_env, settings_for  # noqa: E402

KEYS = 50
WARM_UP = 10


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
    cached = None
    for a in range(0, N_SCORE, 10):
        end = kept + a + 10
        periods = np.repeat(key.periods[None, :], 10, axis=0)
        _, cached = _raw_detectors(
            merged[:end], steps[:end], kept + a, key.t + a, periods, key.recipe, cached
        )


def scoring_costs(repeat: int) -> dict[str, dict[str, float]]:
    """Microseconds per event, per case, per detector and for the whole ensemble."""
    out: dict[str, dict[str, float]] = {}
    for label, names in (("host-5-metrics", None), ("series-1-metric", ("cpu_pct",))):
        metrics = normal_host(N_WARM + N_SCORE, seed=3)
        if names is not None:
            metrics = {k: metrics[k] for k in names}
        out[label] = _costs(metrics, repeat)
        print(label, json.dumps(out[label]), flush=True)
    return out


N_WARM, N_SCORE = 3000, 600


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
    feats = [dict(zip(metrics, np.clip(v / span, 0, 1).tolist(), strict=True)) for v in values]

    def online() -> None:
        for f in feats[:N_SCORE]:
            hst.score_one(f)
            hst.learn_one(f)

    out["half_space_trees (score + learn)"] = round(1e6 * _time(online, repeat) / N_SCORE, 1)
    fit = _time(lambda: fit_detectors(x[:256], seed=1), repeat)
    out["fit of the three batch detectors (per refit, us)"] = round(1e6 * fit, 0)
    return out


# -- 2. worker throughput -----------------------------------------------------------------


def mixed(
    per_key: int, keys: int
) -> tuple[list[tuple[bytes, bytes, int]], list[tuple[bytes, bytes, int]]]:
    hosts = {f"bh-{h}": normal_host(per_key, seed=h) for h in range(keys)}
    links, host_msgs = [], []
    for i in range(per_key):
        for k in range(keys):
            link = f"bl-{k}"
            value = {
                "event_id": f"{link}-{i}",
                "link_id": link,
                "ts": 1.76e9 + 10 * i,
                "mode": "internet",
                "bandwidth_mbps": 300.0 + (i * 7919 + k) % 400,
                "latency_ms": 40.0 + (i + k) % 9,
            }
            links.append((link.encode(), orjson.dumps(value), 1))
            host = f"bh-{k}"
            sample = {
                "event_id": f"{host}-{i}",
                "host_id": host,
                "ts": 1.76e9 + 10 * i,
                "metrics": {m: round(float(v[i]), 3) for m, v in hosts[host].items()},
            }
            host_msgs.append((host.encode(), orjson.dumps(sample), 1))
    return links, host_msgs


async def _committed(settings: Settings, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(parts)
        done = await admin.list_consumer_group_offsets(settings.app_id, partitions=parts)
        return all(done.get(tp) is not None and done[tp].offset >= ends[tp] for tp in parts)
    finally:
        await consumer.stop()
        await admin.close()


async def _send(settings: Settings, messages: list[tuple[bytes, bytes, int]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    try:
        for key, value, _ in messages:
            topic = settings.topics.link if key.startswith(b"bl-") else settings.topics.host
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def _drained(settings: Settings, topic: str) -> None:
    deadline = time.monotonic() + 900
    while not await _committed(settings, topic):
        if time.monotonic() > deadline:
            msg = f"the worker did not commit every {topic} message in 900 s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.2)


async def worker_case(settings: Settings, n: int, keys: int, warm_up: int) -> float:
    """Samples/s of the timed part: ``n`` link + host samples after ``warm_up`` samples
    per key that are sent, and fully processed, first (untimed)."""
    per_key = warm_up + n // (2 * keys)
    links, hosts = mixed(per_key, keys)
    interleaved = [m for pair in zip(links, hosts, strict=True) for m in pair]
    split = 2 * keys * warm_up
    if split:
        await _send(settings, interleaved[:split])
        await _drained(settings, settings.topics.link)
        await _drained(settings, settings.topics.host)
    expected = len(links) - keys * (WARM_UP - 1)
    counter = asyncio.create_task(count_until(settings, settings.topics.predictions, expected, 900))
    await asyncio.sleep(1.0)
    started = time.time()
    await _send(settings, interleaved[split:])
    finished = await counter
    await _drained(settings, settings.topics.host)
    finished = max(finished, time.time())
    return (len(interleaved) - split) / (finished - started)


def worker_throughput(n: int, repeat: int, keys: int, warm_up: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"anomaly-on": [], "anomaly-off": []}
    for r in range(repeat):
        for case in results:
            env = isolated_env(f"bench-anomaly-{case}-{r}") | {
                "NOVACRON_ANOMALY": "true" if case == "anomaly-on" else "false"
            }
            settings = settings_for(env)
            log = Path(".novacron/logs") / f"bench-anomaly-{case}-{r}.log"
            proc = start_worker(settings, log, env)
            try:
                wait_healthy(settings, proc, timeout_s=120)
                rate = asyncio.run(worker_case(settings, n, keys, warm_up))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            results[case].append(rate)
            print(f"{case} run {r}: {rate:,.0f} samples/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40_000, help="link + host samples per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keys", type=int, default=KEYS, help="links, and as many hosts")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=0,
        help="samples per key sent and processed before the timed part (0: young keys)",
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
        runs = worker_throughput(args.samples, args.repeat, args.keys, args.warm_up)
        on = statistics.median(runs["anomaly-on"])
        off = statistics.median(runs["anomaly-off"])
        summary |= {
            "worker_samples_per_s_median": {"anomaly-on": on, "anomaly-off": off},
            "worker_samples_per_s_runs": runs,
            "anomaly_cost_pct_of_throughput": round(100 * (1 - on / off), 1),
            "worker_traffic": {
                "links": args.keys,
                "hosts": args.keys,
                "warm_up_samples_per_key": args.warm_up,
                "timed_samples": args.samples,
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
    main()
