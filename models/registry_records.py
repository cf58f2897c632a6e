"""What the model registry records, and the checks made before and after storing it.

The SQLite schema (``model_registry``, ``performance_metrics``, ``training_history``,
``activations``), the :class:`ModelVersion` row, the checks on names, metrics and
history rows, the replay of the activations log, and the sha256 of artifact files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import RegistryError

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
COLUMNS = (
    "id, name, version, mode, kind, artifact_path, sha256, size_bytes, created_at, status, "
    "params_json, metrics_json, notes, activated_at"
)
BY_VERSION = "CAST(version AS INTEGER)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS model_registry (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, mode TEXT NOT NULL,
    kind TEXT NOT NULL, artifact_path TEXT NOT NULL, sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'registered'
        CHECK (status IN ('registered', 'active', 'retired')),
    params_json TEXT NOT NULL DEFAULT '{}', metrics_json TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '', activated_at REAL, UNIQUE (name, version));
CREATE INDEX IF NOT EXISTS model_registry_status ON model_registry (status);
CREATE UNIQUE INDEX IF NOT EXISTS model_registry_one_active
    ON model_registry (name) WHERE status = 'active';
CREATE TABLE IF NOT EXISTS performance_metrics (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, dataset TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL NOT NULL, recorded_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS performance_metrics_model ON performance_metrics (name, version);
CREATE TABLE IF NOT EXISTS training_history (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, epoch INTEGER NOT NULL,
    metric TEXT NOT NULL, value REAL NOT NULL, recorded_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS training_history_model ON training_history (name, version);
CREATE TABLE IF NOT EXISTS activations (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, previous_version TEXT,
    action TEXT NOT NULL CHECK (action IN ('activate', 'rollback')),
    reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS activations_name ON activations (name, id);
"""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model (a ``model_registry`` row).

    Attributes:
        artifact_path: the artifact's path relative to the registry's artifact_dir.
        status: ``'registered'``, ``'active'`` or ``'retired'``.
        params: training parameters, parsed from ``params_json``.
        metrics: key metrics given at registration, parsed from ``metrics_json``.
    """

    id: int
    name: str
    version: str
    mode: str
    kind: str
    artifact_path: str
    sha256: str
    size_bytes: int
    created_at: float
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    notes: str
    activated_at: float | None

    @property
    def ref(self) -> str:
        """``"name:version"``."""
        return f"{self.name}:{self.version}"


def to_version(row: Sequence[Any]) -> ModelVersion:
    (id_, name, version, mode, kind, path, sha, size, created, status, params, metrics,
     notes, activated) = row  # fmt: skip
    return ModelVersion(
        id_, name, version, mode, kind, path, sha, size, created, status,
        json.loads(params), json.loads(metrics), notes, activated,
    )  # fmt: skip


def insert_metrics(
    conn: sqlite3.Connection, key: tuple[str, str, str], values: dict[str, float], now: float
) -> None:
    sql = "INSERT INTO performance_metrics (name, version, dataset, metric, value, recorded_at)"
    conn.executemany(
        sql + " VALUES (?, ?, ?, ?, ?, ?)", [(*key, k, v, now) for k, v in values.items()]
    )


def file_digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def check_digest(path: Path, expected: str, what: str, fix: str) -> Path:
    actual = file_digest(path)[0] if path.is_file() else "none (the file is missing)"
    if actual != expected:
        msg = f"{what} at '{path}' fails verification: expected sha256 {expected}, got {actual}."
        msg += f" To fix: {fix}."
        raise RegistryError(msg)
    return path


def finite(values: Mapping[str, Any], what: str) -> dict[str, float]:
    for key, value in values.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value):
            msg = f"Each {what} must be a finite number. Got {key}={value!r} instead."
            raise RegistryError(msg)
    return {key: float(value) for key, value in values.items()}


def epoch_row(row: Mapping[str, Any], name: str) -> tuple[int, list[tuple[str, float]]]:
    epoch = row.get("epoch")
    if (
        not isinstance(epoch, int | float)
        or isinstance(epoch, bool)
        or not float(epoch).is_integer()
    ):
        msg = f"Each training history row of '{name}' needs an integer 'epoch'. Got {dict(row)!r}."
        raise RegistryError(msg)
    rest = {k: v for k, v in row.items() if k != "epoch"}
    return int(epoch), list(finite(rest, f"history value of '{name}'").items())


def active_stack(log_rows: Sequence[tuple[str, str]]) -> list[str]:
    """Replay the activations log: an activation pushes, a rollback pops back to its target."""
    stack: list[str] = []
    for version, action in log_rows:
        if action == "rollback":
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:
                stack.append(version)
        else:
            stack.append(version)
    return stack
