"""``novacron bench inference``: the worker's predictor path against bare onnxruntime.

For each mode's active model and each batch size, in one run and interleaved round by
round (the machine is shared and noisy), it times:

* ``predictor``: :meth:`LstmBandwidthPredictor.predict` on raw windows, as the worker
  calls it (feature encoding, one ``session.run``, interval and confidence);
* ``bare_onnxruntime``: ``session.run`` alone on the same model with inputs encoded
  beforehand.

It reports predictions/s and p50/p99 latency per batch (medians over rounds).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from models.lstm_predictor import LstmBandwidthPredictor
from models.synthetic import synthesize_link_series


def _windows(mode: str, window: int, batch: int, seed: int) -> np.ndarray:
    series = synthesize_link_series(mode, batch + window, seed=seed)
    starts = np.arange(batch)
    return np.stack([series[s : s + window] for s in starts])


def _time(call: Callable[[], Any], seconds: float) -> list[float]:
    call()  # warm-up
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def bench_model(
    predictor: LstmBandwidthPredictor,
    batches: tuple[int, ...] = (1, 64, 512),
    rounds: int = 5,
    seconds: float = 0.4,
) -> list[dict[str, Any]]:
    """Interleaved timings of the predictor path and bare onnxruntime per batch size."""
    rows = []
    for batch in batches:
        windows = _windows(predictor.mode, predictor.window_steps, batch, seed=batch)
        encoded, _ = predictor.encode(windows)
        spec = predictor.loaded.input_spec
        session = predictor.loaded.session
        runs: dict[str, list[list[float]]] = {"predictor": [], "bare_onnxruntime": []}
        feeds = {spec.name: encoded}

        def served(w: np.ndarray = windows) -> object:
            return predictor.predict(w)

        def bare(f: dict[str, np.ndarray] = feeds, s: Any = session) -> object:
            return s.run(None, f)

        for _ in range(rounds):
            runs["predictor"].append(_time(served, seconds))
            runs["bare_onnxruntime"].append(_time(bare, seconds))
        row: dict[str, Any] = {
            "mode": predictor.mode,
            "model": f"{predictor.name}:{predictor.version}",
            "batch": batch,
        }
        for path, per_round in runs.items():
            rates = [batch * len(s) / sum(s) for s in per_round]
            row[path] = {
                "predictions_per_s": statistics.median(rates),
                "p50_ms": statistics.median(float(np.percentile(s, 50)) * 1e3 for s in per_round),
                "p99_ms": statistics.median(float(np.percentile(s, 99)) * 1e3 for s in per_round),
            }
        row["predictor_vs_bare"] = (
            row["predictor"]["predictions_per_s"] / row["bare_onnxruntime"]["predictions_per_s"]
        )
        rows.append(row)
    return rows
