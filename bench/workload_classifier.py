"""What the shipped workload classifier scores and costs (in process, no Kafka).

1. **Held-out figures**: macro-F1 and per-type F1 of the served model (UNKNOWN counts
   as wrong) on the held-out synthetic hosts its training reported on (150 per type,
   seed 1000, :data:`~models.synthetic_workloads.HELD_OUT` ranges), against the
   dominant-resource rule and the majority class; and the macro-F1 when only the
   newest 24 ... 1,440 rows of each host are given (``min_samples`` lowered to 24 for
   that), which is why the model asks for 120.
   The pattern types the rules give each workload type's hosts are recorded too.
2. **Cost per host** at 1,440 rows: ``classify_many`` for a batch of 1 and of 256 hosts,
   and its parts (features compiled and numpy, the ONNX run), median of ``--repeat``
   timed calls after a warm-up.

Usage::

    .venv/bin/python bench/workload_classifier.py --repeat 50
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.serving import SHIPPED_BUNDLE  # noqa: E402
from models.synthetic_workloads import HELD_OUT, LABELS, generate_hosts  # noqa: E402
from models.workload import MODEL_NAME, OnnxWorkloadClassifier  # noqa: E402
from models.workload_features import features_many  # noqa: E402
from models.workload_training import baselines, dataset, evaluate  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "workload_classifier.json"


def median_us(call: Callable[[], object], repeat: int, per: int) -> float:
    """Median microseconds per item of ``per`` items over ``repeat`` calls (one warm-up)."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / per * 1e6


def by_length(classifier: OnnxWorkloadClassifier, hosts: list, lengths: list[int]) -> dict:
    """Macro-F1 when only the newest ``length`` rows of each host are given."""
    meta = dataclasses.replace(classifier.metadata, min_samples=24)
    relaxed = OnnxWorkloadClassifier(classifier.name, classifier.version, classifier.session, meta)
    truth = [h.workload_type for h in hosts]
    out = {}
    for length in lengths:
        classes = relaxed.classify_many(
            [h.history[-length:] for h in hosts], [h.step_s for h in hosts]
        )
        predicted = [c.workload_type for c in classes]
        out[str(length)] = round(
            float(
                f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0)
            ),
            4,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--per-type", type=int, default=150, help="held-out hosts per type")
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    manifest = json.loads((SHIPPED_BUNDLE / "manifest.json").read_text())
    entry = next(e for e in manifest if e["name"] == MODEL_NAME)
    classifier = OnnxWorkloadClassifier.load(SHIPPED_BUNDLE / entry["file"], version="shipped")
    hosts = generate_hosts(args.per_type, seed=1000, params=HELD_OUT)
    metrics = evaluate(classifier, hosts)
    features, truth = dataset(hosts)
    rules = baselines(features, truth, majority=0)
    lengths = by_length(classifier, hosts, [24, 60, 120, 240, 720, 1440])
    classes = classifier.classify_many([h.history for h in hosts], [h.step_s for h in hosts])
    patterns: dict[str, Counter[str]] = {label: Counter() for label in LABELS}
    for host, found in zip(hosts, classes, strict=True):
        patterns[host.workload_type][found.pattern_type] += 1
    print(f"held-out macro-F1 {metrics['macro_f1']:.4f} on {len(hosts)} hosts")
    for label in LABELS:
        print(f"  {label:18s} {metrics[f'f1_{label}']:.3f}")
    print("macro-F1 by rows given:", lengths)

    full = [h for h in generate_hosts(30, seed=4242, params=HELD_OUT) if len(h.history) == 1440]
    batch = (full * (256 // len(full) + 1))[:256]
    histories = [h.history for h in batch]
    steps = [h.step_s for h in batch]
    rows = features_many(histories, steps)
    costs = {}
    for size in (1, 256):
        h, s = histories[:size], steps[:size]
        few = max(5, args.repeat // 5)  # the numpy reference is slow at large batches

        def served(h: list = h, s: list = s) -> object:
            return classifier.classify_many(h, s)

        def compiled(h: list = h, s: list = s) -> object:
            return features_many(h, s)

        def reference(h: list = h, s: list = s) -> object:
            return features_many(h, s, compiled=False)

        def onnx_run(size: int = size) -> object:
            return classifier.predict(rows[:size])

        costs[f"batch_{size}"] = {
            "classify_many_us_per_host": median_us(served, args.repeat, size),
            "features_compiled_us_per_host": median_us(compiled, args.repeat, size),
            "features_numpy_us_per_host": median_us(reference, few, size),
            "onnx_run_us_per_host": median_us(onnx_run, args.repeat, size),
        }
        figures = ", ".join(f"{k} {v:.0f}" for k, v in costs[f"batch_{size}"].items())
        print(f"batch {size:3d}: {figures}")
    result = {
        "command": " ".join(["bench/workload_classifier.py", *sys.argv[1:]]),
        "model": f"{MODEL_NAME} (models/artifacts, sha256 {entry['sha256'][:12]})",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "held_out": {
            "hosts": len(hosts),
            "params": HELD_OUT.name,
            "seed": 1000,
            "metrics": metrics,
            "baselines": {name: figures["macro_f1"] for name, figures in rules.items()},
            "macro_f1_by_rows_given": lengths,
            "pattern_types_by_workload_type": {
                k: dict(v.most_common()) for k, v in patterns.items()
            },
        },
        "training": {
            key: entry["params"][key]
            for key in ("train_seconds", "train_hosts", "trees", "clusters", "unknown_threshold")
        },
        "rows": 1440,
        "repeat": args.repeat,
        "cost": costs,
    }
    OUT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
