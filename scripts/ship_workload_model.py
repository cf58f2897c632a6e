"""Copy the active workload classifier of a (staging) registry into models/artifacts/.

Writes ``workload-classifier.onnx`` and adds (or replaces, when it is the last one) its
entry in ``manifest.json``, leaving every other entry byte for byte as it was. Usage::

    NOVACRON_REGISTRY_URL=sqlite:////tmp/stage/registry.sqlite \\
    NOVACRON_ARTIFACT_DIR=/tmp/stage/artifacts \\
        .venv/bin/python -m novacron train workload --hosts 5500 --seed 0
    NOVACRON_REGISTRY_URL=sqlite:////tmp/stage/registry.sqlite \\
    NOVACRON_ARTIFACT_DIR=/tmp/stage/artifacts \\
        .venv/bin/python scripts/ship_workload_model.py
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
from models.registry import ModelRegistry  # noqa: E402
from models.workload import MODEL_NAME  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[1] / "models" / "artifacts"


def with_entry(manifest: str, entry: dict[str, object]) -> str:
    """``manifest`` (a JSON list, 2-space indent) with ``entry`` last, other bytes kept."""
    entries = json.loads(manifest)
    body = manifest.rstrip()
    if not body.endswith("]"):
        msg = "manifest.json must end with ']'"
        raise SystemExit(msg)
    if entries and entries[-1].get("name") == entry["name"]:
        start = body.rfind("\n  {")
        body = body[:start].rstrip().removesuffix(",") + "\n]" if len(entries) > 1 else "[\n]"
    elif any(e.get("name") == entry["name"] for e in entries):
        msg = f"{entry['name']} is in manifest.json but not last; edit it by hand"
        raise SystemExit(msg)
    text = "\n".join("  " + line for line in json.dumps(entry, indent=2).splitlines())
    head = body[:-1].rstrip()
    separator = ",\n" if head.rstrip().endswith("}") else "\n"
    return f"{head}{separator}{text}\n]\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    settings = Settings()
    registry = ModelRegistry.from_url(settings.registry_url, settings.artifact_dir)
    mv = registry.active(MODEL_NAME)
    if mv is None:
        print(f"{MODEL_NAME}: nothing active in {settings.registry_url}; train it first")
        raise SystemExit(1)
    file = f"{MODEL_NAME}.onnx"
    shutil.copyfile(registry.verify(mv), BUNDLE / file)
    digest = hashlib.sha256((BUNDLE / file).read_bytes()).hexdigest()
    metrics = registry.metrics(MODEL_NAME, mv.version)
    entry: dict[str, object] = {
        "name": MODEL_NAME,
        "mode": mv.mode,
        "kind": mv.kind,
        "file": file,
        "sha256": digest,
        "params": mv.params,
        "metrics": mv.metrics,
        "history": registry.history(MODEL_NAME, mv.version),
        "dataset": next((d for d in metrics if not d.startswith("baseline:")), ""),
        "baselines": {d: m for d, m in metrics.items() if d.startswith("baseline:")},
        "notes": mv.notes,
    }
    manifest = BUNDLE / "manifest.json"
    manifest.write_text(with_entry(manifest.read_text(encoding="utf-8"), entry), encoding="utf-8")
    print(f"shipped {mv.ref} as {file} ({digest[:12]}) in {manifest}")


if __name__ == "__main__":
    main()
