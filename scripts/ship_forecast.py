"""Ship the active demand forecast ensemble of a (staging) registry in models/artifacts/.

Copies the ONNX file to ``models/artifacts/forecast-ensemble.onnx``, APPENDS its entry to
``manifest.json`` (the entries already there are kept byte for byte; the file is read
right before it is written, since other models append to it too) and appends a section
to ``TRAINING_REPORT.md``. Refuses to ship twice unless ``--replace`` (which then
replaces only the forecast entry's text). Usage::

    NOVACRON_REGISTRY_URL=sqlite:////tmp/fstage/registry.sqlite \\
    NOVACRON_ARTIFACT_DIR=/tmp/fstage/artifacts \\
        .venv/bin/python scripts/ship_forecast.py --command "novacron train forecast ..."
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from models.forecast import MODEL_NAME  # noqa: E402
from models.registry import ModelRegistry, ModelVersion  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "artifacts"
FILE = f"{MODEL_NAME}.onnx"


def manifest_text_with(entry: dict[str, Any], text: str, replace: bool) -> str:
    """``text`` (the manifest) with ``entry`` appended as the last list item, in the same
    layout (2-space indent); the other entries' text is untouched."""
    entries = json.loads(text)
    block = "\n".join("  " + line for line in json.dumps(entry, indent=2).splitlines())
    names = [e.get("name") for e in entries]
    if MODEL_NAME in names:
        if not replace:
            sys.exit(f"{MODEL_NAME} is already in the manifest; pass --replace to ship anew.")
        if names[-1] != MODEL_NAME:
            sys.exit(f"{MODEL_NAME} is not the last manifest entry; edit the manifest by hand.")
        start = text.rindex('\n  {\n    "name": "' + MODEL_NAME)
        head = text[:start].rstrip()
        head = head[:-1] if head.endswith(",") else head
        return head + ",\n" + block + "\n]\n"
    head = text.rstrip()
    if not head.endswith("]"):
        sys.exit("manifest.json does not end with ']'; edit it by hand.")
    body = head[:-1].rstrip()
    return body + ("," if entries else "") + "\n" + block + "\n]\n"


def report_section(
    name: str, mv: ModelVersion, metrics: dict[str, dict[str, float]], command: str
) -> str:
    horizons = mv.params["horizons"]
    lines = [
        "",
        f"## {name}",
        "",
        "Trained with:",
        "",
        "```",
        command,
        "```",
        "",
        f"- parameters: `{json.dumps(mv.params, sort_keys=True)}`",
        f"- dataset: {next((d for d in metrics if not d.startswith('baseline:')), '')}",
        "",
        "Normalised MAE (absolute error over the window's mean level) on the held-out test "
        "series of the training generator (15 % of the series, never fitted):",
        "",
        "| method | " + " | ".join(f"h{h}" for h in horizons) + " |",
        "|---|" + "---|" * len(horizons),
    ]
    for dataset, figures in sorted(metrics.items(), key=lambda kv: kv[0].startswith("baseline")):
        label = "ensemble (ONNX)" if not dataset.startswith("baseline:") else dataset[9:]
        cells = " | ".join(f"{figures[f'nmae_h{h}']:.4f}" for h in horizons)
        lines.append(f"| {label} | {cells} |")
    ens = mv.metrics
    lines += [
        "",
        "Interval coverage (nominal 0.8): "
        + ", ".join(f"h{h} {ens[f'coverage_h{h}']:.3f}" for h in horizons)
        + f"; mean confidence {ens['mean_confidence']:.3f}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", required=True, help="the training command, for the report")
    parser.add_argument("--notes", default="", help="text appended to the report section")
    parser.add_argument("--replace", action="store_true")
    args = parser.parse_args()
    registry = ModelRegistry.from_url(Settings().registry_url, Settings().artifact_dir)
    mv = registry.active(MODEL_NAME)
    if mv is None:
        sys.exit(f"No version of {MODEL_NAME} is active in {Settings().registry_url}.")
    shutil.copyfile(registry.verify(mv), BUNDLE / FILE)
    digest = hashlib.sha256((BUNDLE / FILE).read_bytes()).hexdigest()
    metrics = registry.metrics(MODEL_NAME, mv.version)
    entry = {
        "name": MODEL_NAME,
        "mode": mv.mode,
        "kind": mv.kind,
        "file": FILE,
        "sha256": digest,
        "params": mv.params,
        "metrics": mv.metrics,
        "history": [],
        "dataset": next((d for d in metrics if not d.startswith("baseline:")), ""),
        "baselines": {d: m for d, m in metrics.items() if d.startswith("baseline:")},
        "notes": mv.notes,
    }
    manifest = BUNDLE / "manifest.json"
    manifest.write_text(manifest_text_with(entry, manifest.read_text(), args.replace))
    section = report_section(MODEL_NAME, mv, metrics, args.command)
    with (BUNDLE / "TRAINING_REPORT.md").open("a", encoding="utf-8") as report:
        report.write(section + (args.notes.rstrip() + "\n" if args.notes else ""))
    print(f"shipped {mv.ref} ({digest[:12]}, {(BUNDLE / FILE).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
