"""What the per-host online demand path costs: one ``DemandOnline.step`` and its state.

A host around 40 % CPU (AR(1) noise) with a stand-in forecaster's multi-horizon
forecast; after a warm-up of 1,000 samples, ``--samples`` steps are timed one by one
(learn + predict + drift monitor + online accuracy + champion/challenger), then the
state's size and a dump + load. Prints JSON.

Usage::

    .venv/bin/python bench/online_demand_cost.py [--samples 20000]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time

import numpy as np

from online.demand import DemandOnline
from streams.capacity import DemandForecast
from streams.records import ModelRef

HORIZONS = (1, 3, 5, 10, 15, 30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = 1000 + args.samples
    x = np.empty(n)
    dev = 0.0
    for i in range(n):
        dev = 0.6 * dev + rng.normal(0.0, 0.04)
        x[i] = 40.0 * math.exp(dev)
    model = ModelRef("forecast-ensemble", "1")
    forecasts = []
    for i in range(n):
        p = np.array([40.0 * (x[i] / 40.0) ** (0.6**h) for h in HORIZONS])
        forecasts.append(DemandForecast(HORIZONS, p, p * 0.85, p * 1.15, 0.8, 0.8))
    path = DemandOnline()
    state = path.new()
    times = []
    for i in range(n):
        recent = x[max(0, i - 7) : i + 1]
        start = time.perf_counter()
        path.step(state, host_id="h", event_id=f"e{i}", ts=1.75e9 + 60.0 * i, recent=recent,
                  forecast=forecasts[i], forecaster=model)  # fmt: skip
        if i >= 1000:
            times.append(time.perf_counter() - start)
    blob = path.dump(state)
    start = time.perf_counter()
    for _ in range(200):
        path.load(path.dump(state))
    roundtrip = (time.perf_counter() - start) / 200
    times.sort()
    print(  # noqa: T201
        json.dumps(
            {
                "step_us_median": round(statistics.median(times) * 1e6, 1),
                "step_us_p99": round(times[int(0.99 * len(times))] * 1e6, 1),
                "state_bytes": len(blob),
                "dump_load_us": round(roundtrip * 1e6, 1),
                "samples": args.samples,
                "machine": platform.machine(),
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
