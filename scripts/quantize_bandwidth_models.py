"""Quantise the shipped bandwidth LSTMs' weights to int8 (onnxruntime dynamic quantisation).

The LSTM's matrix products take most of a link sample's cost in the worker
(``bench/stage_costs.py``); with int8 weights (activations quantised per call) onnxruntime
runs them 1.5x (datacenter) to 2.5x (internet) faster on a CPU, within 1% of the float
model's MAE (``bench/quantization.py`` measures both, side by side). Each model of
``models/artifacts/manifest.json`` named ``bandwidth-lstm-*`` that is not quantised yet
is rewritten in place: its ``novacron`` metadata property (window, scaling, interval
calibration) is kept, its manifest entry gets the new sha256 and
``params.quantization = {"scheme", "from_sha256"}``. A model already quantised is left
alone, so the script can run again after ``scripts/build_model_bundle.py`` ships newly
trained float models. Needs the ``onnx`` package (the train extra).

    .venv/bin/python scripts/quantize_bandwidth_models.py [--bundle models/artifacts]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "artifacts"
SCHEME = "int8 weights, dynamic activations (onnxruntime quantize_dynamic, QInt8)"


def quantize_file(source: Path, target: Path) -> None:
    """Write ``source`` with int8 weights to ``target``, keeping its metadata properties."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        quantize_dynamic(source, out, weight_type=QuantType.QInt8)
        original, quantized = onnx.load(source), onnx.load(out)
    have = {p.key for p in quantized.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in have:
            quantized.metadata_props.append(prop)
    onnx.save(quantized, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    args = parser.parse_args()
    manifest_path = args.bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    changed = 0
    for entry in manifest:
        if not entry["name"].startswith("bandwidth-lstm-"):
            continue
        params = entry.setdefault("params", {})
        if "quantization" in params:
            print(f"{entry['name']}: already quantised ({params['quantization']['scheme']})")
            continue
        path = args.bundle / entry["file"]
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        if before != entry["sha256"]:
            print(f"{path}: sha256 {before} is not the manifest's {entry['sha256']}; stopped.")
            return 1
        quantize_file(path, path)
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        params["quantization"] = {"scheme": SCHEME, "from_sha256": before}
        entry["notes"] = (entry.get("notes", "") + " Weights quantised to int8.").strip()
        changed += 1
        print(f"{entry['name']}: {before[:12]} -> {entry['sha256'][:12]}")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"quantised {changed} model(s) in {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
