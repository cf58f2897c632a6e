"""Shipped model bundles: ``manifest.json`` and its import into a registry.

A bundle is a folder of ONNX files with a ``manifest.json`` (written by
``scripts/build_model_bundle.py``); a worker that starts on an empty registry
imports the package's bundle through :meth:`ModelRegistry.import_bundle
<models.registry.ModelRegistry.import_bundle>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from streams.errors import RegistryError

from .registry_records import ModelVersion, check_digest

if TYPE_CHECKING:
    from .registry import ModelRegistry

BUNDLED = "bundled in"
"""How an activation by :func:`import_bundle` begins its reason."""


def import_bundle(registry: ModelRegistry, bundle_dir: Path) -> list[ModelVersion]:
    """Register and activate the shipped models of a bundle.

    ``bundle_dir/manifest.json`` is a list of ``{name, mode, file, sha256, params,
    metrics, history, dataset, notes}``; each file's sha256 is checked first. A model
    the registry lacks is registered and activated. A shipped model that is new to a
    registry that has the name (an upgraded package) is registered, and activated
    only if the active version is itself a shipped one: a version the user trained or
    activated by hand stays active. Returns the versions activated (none on a second
    call).
    """
    manifest = Path(bundle_dir) / "manifest.json"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"Cannot read the model bundle manifest '{manifest}': {exc}"
        raise RegistryError(msg) from exc
    if not isinstance(entries, list):
        msg = f"'{manifest}' must hold a JSON list. Got {type(entries).__name__} instead."
        raise RegistryError(msg)
    known = registry.digests()
    present = {name for name, _ in known}
    imported: list[ModelVersion] = []
    for index, entry in enumerate(entries):
        required = {"name", "mode", "file", "sha256"}
        if not isinstance(entry, dict) or not required <= entry.keys():
            msg = f"Entry {index} of '{manifest}' needs keys {sorted(required)}. Got {entry!r}."
            raise RegistryError(msg)
        if (entry["name"], entry["sha256"]) in known:
            continue
        source = Path(bundle_dir) / entry["file"]
        check_digest(source, entry["sha256"], "The bundled model", "reinstall the package")
        mv = registry.register(
            entry["name"], source, mode=entry["mode"], kind=entry.get("kind", "onnx"),
            params=entry.get("params"), metrics=entry.get("metrics"),
            history=entry.get("history"), dataset=entry.get("dataset", ""),
            notes=entry.get("notes", ""),
        )  # fmt: skip
        for dataset, figures in (entry.get("baselines") or {}).items():
            registry.record_metrics(mv.name, mv.version, dataset, figures)
        if mv.name in present and not _shipped_is_active(registry, mv.name):
            continue
        imported.append(registry.activate(mv.name, mv.version, reason=f"{BUNDLED} {bundle_dir}"))
    return imported


def _shipped_is_active(registry: ModelRegistry, name: str) -> bool:
    """Whether the latest activation of ``name`` was an import of a shipped bundle."""
    last = registry.last_activation(name)
    return last is not None and last[0] == "activate" and last[1].startswith(BUNDLED)
