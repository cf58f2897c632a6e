"""The bandwidth LSTMs with float and with int8 weights, side by side: speed and accuracy.

The float models are read from a git revision (``--float-rev``, the one before
``scripts/quantize_bandwidth_models.py`` rewrote ``models/artifacts``), the int8 ones from
the working tree. In one run:

- **speed**: bare onnxruntime (the serving session options), the same inputs, batches of
  1, 50 (one consumer batch of 50 links) and 256 (the predictor's largest call);
  predictions/s, median of ``--rounds``, the two models alternating;
- **accuracy**: each model registered and activated in its own temporary registry, then
  ``novacron eval bandwidth`` (the real throughput traces, per family) and ``novacron eval
  synthetic`` (each mode's synthetic test split, as in training) through the worker's
  processor.

Ships when every MAE is within ``TOLERANCE`` of the float model's. Writes
bench/results/quantization.json.

    .venv/bin/python bench/quantization.py --float-rev 3383e10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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
from models.lstm_predictor import model_name  # noqa: E402
from models.onnx_session import open_session  # noqa: E402
from novacron.evaluate import evaluate_bandwidth, evaluate_synthetic  # noqa: E402
from streams.records import MODES  # noqa: E402

TOLERANCE = 0.01
"""Largest relative MAE change accepted (1%)."""
BATCHES = (1, 50, 256)
DATA = ROOT.parent / "shared" / "data" / "throughput"


def float_model(rev: str, mode: str, into: Path) -> Path:
    path = into / f"{model_name(mode)}-float.onnx"
    blob = subprocess.run(  # noqa: S603 - git, a fixed path of this repository
        ["git", "show", f"{rev}:models/artifacts/{model_name(mode)}.onnx"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    path.write_bytes(blob)
    return path


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
    parser.add_argument("--float-rev", required=True, help="git revision with the float models")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/quantization.json")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": " ".join(["bench/quantization.py", *sys.argv[1:]]),
        "tolerance_mae_change": TOLERANCE,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {
            "float": {m: float_model(args.float_rev, m, root) for m in MODES},
            "int8": {m: ROOT / "models" / "artifacts" / f"{model_name(m)}.onnx" for m in MODES},
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
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    for mode, rows in report["speed"].items():
        for batch, row in rows.items():
            rates = row["predictions_per_s_median"]
            print(f"{mode:10s} batch {batch:>3s}: {rates} x{row['speed_up']}")
    for name, change in changes.items():
        print(f"MAE change {name}: {change:+.3%}")
    print(f"within {TOLERANCE:.0%}: {report['within_tolerance']}; wrote {args.output}")


if __name__ == "__main__":
    main()
