"""Copy the active bandwidth models of a (staging) registry into models/artifacts/.

Writes the ONNX files, ``manifest.json`` (read by ``ModelRegistry.import_bundle`` when a
worker starts on an empty registry) and ``TRAINING_REPORT.md``. Usage::

    NOVACRON_REGISTRY_URL=sqlite:////tmp/stage/registry.sqlite \\
    NOVACRON_ARTIFACT_DIR=/tmp/stage/artifacts \\
        .venv/bin/python scripts/build_model_bundle.py --command-log /tmp/stage/commands.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from models.lstm_predictor import model_name  # noqa: E402
from models.registry import ModelRegistry  # noqa: E402
from streams.records import MODES  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "artifacts"
OTHER_MODELS = "# Shipped workload classifier"
"""Where the report's sections of the models this script does not write begin."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command-log", type=Path, help="file with the training commands used")
    parser.add_argument(
        "--source", action="append", default=[],
        help="MODE=REGISTRY_DB:ARTIFACT_DIR, take that mode from another registry",
    )  # fmt: skip
    args = parser.parse_args()
    default = ModelRegistry.from_url(Settings().registry_url, Settings().artifact_dir)
    sources = {}
    for item in args.source:
        mode, paths = item.split("=", 1)
        db, artifacts = paths.split(":", 1)
        sources[mode] = ModelRegistry(Path(db), Path(artifacts))
    BUNDLE.mkdir(parents=True, exist_ok=True)
    entries = []
    report = ["# Shipped bandwidth models", ""]
    if args.command_log and args.command_log.is_file():
        report += ["Trained with:", "", "```", args.command_log.read_text().strip(), "```", ""]
    for mode in MODES:
        name = model_name(mode)
        registry = sources.get(mode, default)
        mv = registry.active(name)
        if mv is None:
            print(f"{name}: nothing active; skipped")
            continue
        src = registry.verify(mv)
        file = f"{name}.onnx"
        shutil.copyfile(src, BUNDLE / file)
        digest = hashlib.sha256((BUNDLE / file).read_bytes()).hexdigest()
        metrics = registry.metrics(name, mv.version)
        entries.append(
            {
                "name": name,
                "mode": mode,
                "kind": mv.kind,
                "file": file,
                "sha256": digest,
                "params": mv.params,
                "metrics": mv.metrics,
                "history": registry.history(name, mv.version),
                "dataset": next((d for d in metrics if not d.startswith("baseline:")), ""),
                "baselines": {d: m for d, m in metrics.items() if d.startswith("baseline:")},
                "notes": mv.notes,
            }
        )
        report += [
            f"## {name}",
            "",
            f"- parameters: `{json.dumps(mv.params)}`",
            "",
            "| on the test split | MAE | MAE % of mean | ±10% | ±20% | coverage (80%) | mean confidence |",
            "|---|---|---|---|---|---|---|",
        ]
        for dataset, figures in sorted(metrics.items()):
            label = (
                "LSTM (ONNX)" if not dataset.startswith("baseline:") else dataset.split(":", 1)[1]
            )
            cov = figures.get("coverage")
            conf = figures.get("mean_confidence")
            report.append(
                f"| {label} | {figures['mae']:.4g} | {figures['mae_pct_of_mean']:.2f} | "
                f"{100 * figures['acc10']:.1f}% | {100 * figures['acc20']:.1f}% | "
                f"{'' if cov is None else f'{100 * cov:.1f}%'} | {'' if conf is None else f'{conf:.3f}'} |"
            )
        report.append("")
    # The other shipped models (workload classifier, forecaster) and their report sections
    # stay as they are: they have their own commands (see TRAINING_REPORT.md).
    names = {model_name(mode) for mode in MODES}
    manifest = BUNDLE / "manifest.json"
    kept = [
        e for e in (json.loads(manifest.read_text()) if manifest.is_file() else [])
        if e["name"] not in names
    ]  # fmt: skip
    manifest.write_text(json.dumps(entries + kept, indent=2) + "\n")
    old = BUNDLE / "TRAINING_REPORT.md"
    text = old.read_text() if old.is_file() else ""
    others = text[text.index(OTHER_MODELS) :] if OTHER_MODELS in text else ""
    old.write_text("\n".join(report) + "\n" + others)
    print(f"wrote {len(entries)} models to {BUNDLE}")


if __name__ == "__main__":
    main()
