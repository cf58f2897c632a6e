"""What a demand forecast costs: the Random Forest alone and the whole ensemble.

Both go through the serving path the worker uses (:meth:`OnnxForecaster.forecast_many`:
features, one onnxruntime call, weights, intervals, one ``DemandForecast`` per series).
"Random Forest alone" is the same file cut down to the forest's output
(``onnx.utils.extract_model``) with weight 1. Histories are held-out synthetic demand
windows (60 values) of every family.

- **latency at batch 1**: ``--calls`` single-series calls, median and p95 per call;
- **throughput at batch 512** (the worker's batch across hosts) and at 8,192 (a trace
  replay in chunks): forecasts per second over ``--calls`` calls;

each repeated ``--repeat`` times (the two models alternating), the median of the repeats
reported. The seed's figures
to beat: Random Forest < 10 ms and 1,000 forecasts/s; ensemble < 100 ms and 100/s.

Usage::

    .venv/bin/python bench/forecast.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.forecast import METADATA_KEY, OnnxForecaster  # noqa: E402
from models.forecast_metrics import forecast_windows  # noqa: E402
from models.serving import SHIPPED_BUNDLE  # noqa: E402
from models.synthetic_demand import HELD_OUT_RANGES, demand_series  # noqa: E402

SEED_TARGETS = {
    "random_forest": {"latency_ms": 10.0, "forecasts_per_s": 1000.0},
    "ensemble": {"latency_ms": 100.0, "forecasts_per_s": 100.0},
}


def forest_only(path: Path, out: Path) -> Path:
    """The model file with only the forest's output, weighted 1."""
    onnx.utils.extract_model(str(path), str(out), ["x"], ["random_forest"])
    source = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads(source[METADATA_KEY])
    h = len(meta["horizons"])
    meta["members"] = ["random_forest"]
    meta["weights"] = {group: [[1.0] * h] for group in meta["weights"]}
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(out))
    return out


Data = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str | None, ...]]


def measure(model: OnnxForecaster, batch: int, calls: int, data: Data) -> dict[str, float]:
    hist, ts, step, types = data
    rows = np.arange(batch) % len(hist)
    model.forecast_many(hist[rows], ts[rows], step[rows], [types[i] for i in rows])  # warm-up
    times = []
    for i in range(calls):
        if batch == 1:  # a different series each call
            rows = np.array([i % len(hist)])
        chosen = [types[j] for j in rows]
        start = time.perf_counter()
        model.forecast_many(hist[rows], ts[rows], step[rows], chosen)
        times.append(time.perf_counter() - start)
    t = np.array(times)
    return {
        "p50_ms": float(np.median(t) * 1e3),
        "p95_ms": float(np.quantile(t, 0.95) * 1e3),
        "forecasts_per_s": float(batch * len(t) / t.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_BUNDLE / "forecast-ensemble.onnx")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    parser.add_argument("--output", type=Path, default=Path("bench/results/forecast.json"))
    args = parser.parse_args()
    series = demand_series(90, seed=2024, ranges=HELD_OUT_RANGES)
    w = forecast_windows(series, 60, (1, 3, 5, 10, 15, 30), per_series=100, seed=2024)
    data: Data = (w.histories, w.last_ts, w.step_s, w.types)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "random_forest": OnnxForecaster.load(
                forest_only(args.model, Path(tmp) / "rf.onnx"), "rf-only", "bench", args.threads
            ),
            "ensemble": OnnxForecaster.load(args.model, "forecast-ensemble", "bench", args.threads),
        }
        results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in models}
        for batch, calls in ((1, args.calls), (512, max(args.calls // 20, 10)),
                             (8192, max(args.calls // 200, 3))):  # fmt: skip
            # The two models alternate, so a burst of load from elsewhere hits both.
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
            for _ in range(args.repeat):
                for name, model in models.items():
                    runs[name].append(measure(model, batch, calls, data))
            for name in models:
                r = {k: statistics.median(run[k] for run in runs[name]) for k in runs[name][0]}
                results[name][f"batch_{batch}"] = r
                print(
                    f"{name:14s} batch {batch:5d}: p50 {r['p50_ms']:8.3f} ms  "
                    f"p95 {r['p95_ms']:8.3f} ms  {r['forecasts_per_s']:10.0f} forecasts/s"
                )
    report = {
        "command": " ".join(sys.argv),
        "model": str(args.model),
        "repeat": args.repeat,
        "calls_at_batch_1": args.calls,
        "threads": args.threads or "onnxruntime default",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
        "seed_targets": SEED_TARGETS,
        "vs_seed": {
            name: {
                "latency_x_better": SEED_TARGETS[name]["latency_ms"]
                / results[name]["batch_1"]["p50_ms"],
                "throughput_x_better_at_512": results[name]["batch_512"]["forecasts_per_s"]
                / SEED_TARGETS[name]["forecasts_per_s"],
            }
            for name in results
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
