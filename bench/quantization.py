"""The bandwidth LSTMs with float and with int8 weights, side by side: speed, accuracy, and
whether a window's prediction depends on the other windows of its onnxruntime call.

The int8 models are made here from the shipped float ones with onnxruntime's dynamic
quantisation (``quantize_dynamic``, QInt8 weights; activations are quantised per call,
with one scale for the whole input tensor), the float ones' ``novacron`` metadata copied.
In one run:

- **speed**: bare onnxruntime (the serving session options), the same inputs, batches of
  1, 50 (one consumer batch of 50 links) and 256 (the predictor's largest call);
  predictions/s, median of ``--rounds``, the two models alternating;
- **accuracy**: each model registered and activated in its own temporary registry, then
  ``novacron eval bandwidth`` (the real throughput traces, per family) and ``novacron eval
  synthetic`` (each mode's synthetic test split, as in training) through the worker's
  processor; within ``TOLERANCE`` of the float model's MAE or not;
- **batch dependence**: 50 real windows predicted in one call and one by one; the
  largest relative difference. Replay equality (the worker and ``novacron replay`` give
  the same records however the stream was batched) needs it to be zero.

Writes bench/results/quantization.json. Needs the ``onnx`` package (the train extra).

    .venv/bin/python bench/quantization.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.settings import Settings  # noqa: E402
from agents.wiring import open_registry  # noqa: E402
from models.lstm_predictor import LstmBandwidthPredictor, model_name  # noqa: E402
from models.onnx_session import open_session  # noqa: E402
from models.synthetic import synthesize_link_series  # noqa: E402
from novacron.evaluate import evaluate_bandwidth, evaluate_synthetic  # noqa: E402
from streams.records import MODES  # noqa: E402

TOLERANCE = 0.01
"""Largest relative MAE change accepted (1%)."""
BATCHES = (1, 50, 256)
DATA = ROOT.parent / "shared" / "data" / "throughput"


def int8_model(source: Path, target: Path) -> Path:
    """``source`` with int8 weights (dynamic quantisation), its metadata properties kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    original, quantized = onnx.load(source), onnx.load(target)
    have = {p.key for p in quantized.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in have:
            quantized.metadata_props.append(prop)
    onnx.save(quantized, target)
    return target


def batch_dependence(files: dict[str, Path], mode: str) -> dict[str, float]:
    """Largest relative difference between 50 real windows' point forecasts made in one
    call and made one window per call."""
    series = synthesize_link_series(mode, 400, seed=7)
    out = {}
    for kind, path in files.items():
        predictor = LstmBandwidthPredictor.load(path, name=model_name(mode), version=kind)
        w = predictor.window_steps
        windows = np.stack([series[i : i + w] for i in range(0, 300, 6)])  # 50 windows
        together = predictor.predict(windows).point
        alone = np.array([predictor.predict(windows[i : i + 1]).point[0] for i in range(50)])
        out[kind] = float(np.max(np.abs(together - alone) / np.abs(alone)))
    return out


def speed(files: dict[str, Path], rounds: int) -> dict[str, Any]:
    sessions = {k: open_session(p, "novacron", "a bandwidth model")[0] for k, p in files.items()}
    first = next(iter(sessions.values())).get_inputs()[0]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for batch in BATCHES:
        x = rng.normal(size=(batch, *first.shape[1:])).astype(np.float32)
        rates: dict[str, list[float]] = {k: [] for k in sessions}
        calls = max(2000 // batch, 8)
        for _ in range(rounds):
            for kind, session in sessions.items():
                name = session.get_inputs()[0].name
                session.run(None, {name: x})
                started = time.perf_counter()
                for _ in range(calls):
                    session.run(None, {name: x})
                rates[kind].append(calls * batch / (time.perf_counter() - started))
        med = {k: round(statistics.median(v)) for k, v in rates.items()}
        out[str(batch)] = {
            "predictions_per_s_median": med,
            "speed_up": round(med["int8"] / med["float"], 2),
        }
    return out


def settings_with(files: dict[str, Path], into: Path) -> Settings:
    settings = Settings(
        registry_url=f"sqlite:///{into / 'registry.sqlite'}", artifact_dir=into / "artifacts"
    )
    registry = open_registry(settings)
    for mode, path in files.items():
        version = registry.register(model_name(mode), path, mode=mode, kind="onnx-lstm")
        registry.activate(model_name(mode), version.version, reason="bench/quantization.py")
    return settings


def accuracy(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"bandwidth": {}, "synthetic": {}}
    for family in evaluate_bandwidth(settings, DATA):
        out["bandwidth"][family.family] = family.methods["served"]
    for mode in MODES:
        results = evaluate_synthetic(settings, mode, links=8, length=6000, seed=0)
        served = next(v for k, v in results.items() if k.startswith("served"))
        out["synthetic"][mode] = served
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/quantization.json")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": " ".join(["bench/quantization.py", *sys.argv[1:]]),
        "tolerance_mae_change": TOLERANCE,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shipped = ROOT / "models" / "artifacts"
        files = {
            "float": {m: shipped / f"{model_name(m)}.onnx" for m in MODES},
            "int8": {
                m: int8_model(shipped / f"{model_name(m)}.onnx", root / f"{m}-int8.onnx")
                for m in MODES
            },
        }
        report["batch_dependence_max_relative"] = {
            mode: batch_dependence({k: files[k][mode] for k in files}, mode) for mode in MODES
        }
        report["speed"] = {
            mode: speed({k: files[k][mode] for k in files}, args.rounds) for mode in MODES
        }
        figures = {}
        for kind, by_mode in files.items():
            (root / kind).mkdir()
            figures[kind] = accuracy(settings_with(by_mode, root / kind))
    changes: dict[str, float] = {}
    for part in ("bandwidth", "synthetic"):
        for name, f in figures["float"][part].items():
            q = figures["int8"][part][name]
            changes[f"{part}:{name}"] = round(q["mae"] / f["mae"] - 1, 5)
    report["accuracy"] = figures
    report["mae_change"] = changes
    report["within_tolerance"] = all(abs(c) <= TOLERANCE for c in changes.values())
    report["replay_equality_kept"] = all(
        row["int8"] == 0.0 for row in report["batch_dependence_max_relative"].values()
    )
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for mode, rows in report["speed"].items():
        for batch, row in rows.items():
            rates = row["predictions_per_s_median"]
            print(f"{mode:10s} batch {batch:>3s}: {rates} x{row['speed_up']}")
    for name, change in changes.items():
        print(f"MAE change {name}: {change:+.3%}")
    print(f"batch dependence: {report['batch_dependence_max_relative']}")
    print(
        f"MAE within {TOLERANCE:.0%}: {report['within_tolerance']}; replay equality kept: "
        f"{report['replay_equality_kept']}; wrote {args.output}"
    )


if __name__ == "__main__":
    main()
