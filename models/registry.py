"""The model registry: versions, checksummed artifacts, activation and rollback.

SQLite holds the rows (``model_registry``, ``performance_metrics``,
``training_history`` and the ``activations`` audit trail); artifacts are copied
to ``artifact_dir/<name>/<version>/<file>``. One writer process (trainer, CLI)
and many reader processes (workers polling :meth:`ModelRegistry.active_versions`)
share the database in WAL mode: each call opens a connection, runs one short
transaction and closes it.

The schema, the row type and the checks on stored values are in
:mod:`models.registry_records`; the import of a shipped bundle in :mod:`models.bundle`.

Examples:
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = Path(tmp.name)
    >>> _ = (root / "lstm.onnx").write_bytes(b"weights v1")
    >>> registry = ModelRegistry(root / "registry.sqlite", root / "artifacts")
    >>> v1 = registry.register(
    ...     "bandwidth-dc", root / "lstm.onnx", mode="datacenter",
    ...     metrics={"mae": 0.12, "acc20": 0.88}, dataset="synthetic-dc",
    ...     history=[{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.4}],
    ... )
    >>> v1.ref, v1.status, v1.artifact_path, v1.sha256[:12]
    ('bandwidth-dc:1', 'registered', 'bandwidth-dc/1/lstm.onnx', '13e35c44395f')
    >>> _ = (root / "lstm.onnx").write_bytes(b"weights v2")
    >>> registry.register("bandwidth-dc", root / "lstm.onnx", mode="datacenter").ref
    'bandwidth-dc:2'
    >>> registry.activate("bandwidth-dc", "1").status
    'active'
    >>> registry.activate("bandwidth-dc", "2", reason="better mae").ref
    'bandwidth-dc:2'
    >>> registry.active_versions()
    {'bandwidth-dc': '2'}
    >>> registry.rollback("bandwidth-dc", reason="regression").ref
    'bandwidth-dc:1'
    >>> registry.metrics("bandwidth-dc", "1")
    {'synthetic-dc': {'mae': 0.12, 'acc20': 0.88}}
    >>> registry.history("bandwidth-dc", "1")
    [{'epoch': 1, 'loss': 0.9}, {'epoch': 2, 'loss': 0.4}]
    >>> tmp.cleanup()
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streams.errors import ConfigError, RegistryError

from . import bundle
from .registry_records import (
    BY_VERSION,
    COLUMNS,
    MODEL_NAME,
    SCHEMA,
    ModelVersion,
    active_stack,
    check_digest,
    epoch_row,
    file_digest,
    finite,
    insert_metrics,
    to_version,
)

log = logging.getLogger(__name__)
_BUSY_TIMEOUT_S = 10.0


class ModelRegistry:
    """Versions of named models in SQLite, their artifacts on disk with a sha256.

    Args:
        db_path: the SQLite file; it and its parent directory are created if missing.
        artifact_dir: where registered artifacts are copied.
        clock: seconds since the epoch, for timestamps (injectable for tests).
    """

    def __init__(
        self, db_path: Path, artifact_dir: Path, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db_path = Path(db_path)
        self.artifact_dir = Path(artifact_dir)
        self._clock = clock
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.artifact_dir.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            msg = f"Cannot open the model registry at '{self.db_path}': {exc}"
            raise RegistryError(msg) from exc

    @classmethod
    def from_url(cls, url: str, artifact_dir: Path) -> ModelRegistry:
        """The registry at ``url`` (``sqlite:///PATH``) with artifacts under ``artifact_dir``."""
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.startswith(prefix) else ""
        if not path or path == ":memory:":
            msg = (
                "The 'registry_url' setting must be a 'sqlite:///PATH' URL to a database file "
                f"(e.g. 'sqlite:///.novacron/registry.sqlite'). Got {url!r} instead."
            )
            raise ConfigError(msg)
        return cls(Path(path), artifact_dir)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def register(
        self,
        name: str,
        artifact: Path,
        *,
        mode: str,
        kind: str = "onnx",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        history: Sequence[Mapping[str, float]] | None = None,
        dataset: str = "",
        notes: str = "",
    ) -> ModelVersion:
        """Copy ``artifact`` into the registry as the next version of ``name``.

        ``metrics`` go to ``performance_metrics`` under ``dataset``; each ``history``
        row holds an ``"epoch"`` and metric values. The new version is 'registered'.
        """
        if not MODEL_NAME.fullmatch(name):
            msg = f"A model name must match {MODEL_NAME.pattern!r}. Got {name!r} instead."
            raise RegistryError(msg)
        if not mode:
            msg = f"The 'mode' of model '{name}' must be a non-empty string. Got {mode!r} instead."
            raise RegistryError(msg)
        artifact = Path(artifact)
        if not artifact.is_file():
            msg = f"The artifact to register as '{name}' must be a file. Got '{artifact}' instead."
            raise RegistryError(msg)
        metric_rows = finite(metrics or {}, f"metric of '{name}'")
        epochs = [epoch_row(row, name) for row in history or ()]
        try:
            params_json = json.dumps(dict(params or {}), sort_keys=True)
        except (TypeError, ValueError) as exc:
            msg = f"The params of model '{name}' must be JSON-serialisable: {exc}"
            raise RegistryError(msg) from exc
        now = self._clock()
        with self._write() as conn:
            (latest,) = conn.execute(
                "SELECT MAX(CAST(version AS INTEGER)) FROM model_registry WHERE name = ?", (name,)
            ).fetchone()
            version = str((latest or 0) + 1)
            relative = Path(name) / version / artifact.name
            target = self.artifact_dir / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                shutil.copyfile(artifact, partial)
                os.replace(partial, target)
                digest, size = file_digest(target)
                conn.execute(
                    f"INSERT INTO model_registry ({COLUMNS}) "  # noqa: S608 (constant columns)
                    "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, 'registered', ?, ?, ?, NULL)",
                    (name, version, mode, kind, relative.as_posix(), digest, size, now,
                     params_json, json.dumps(metric_rows, sort_keys=True), notes),
                )  # fmt: skip
                insert_metrics(conn, (name, version, dataset), metric_rows, now)
                conn.executemany(
                    "INSERT INTO training_history (name, version, epoch, metric, value, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [(name, version, e, k, v, now) for e, values in epochs for k, v in values],
                )
            except BaseException:
                shutil.rmtree(target.parent, ignore_errors=True)
                raise
        log.info("Registered %s:%s (%s, %d bytes)", name, version, digest[:12], size)
        return self.get(name, version)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._connect() as conn:
            return conn.execute(sql, args).fetchall()

    def _select(self, where: str, args: Sequence[Any]) -> list[ModelVersion]:
        sql = f"SELECT {COLUMNS} FROM model_registry {where} ORDER BY name, {BY_VERSION}"  # noqa: S608 (where is a constant)
        return [to_version(row) for row in self._rows(sql, args)]

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version, or those of ``name``; by name, then numeric version."""
        return self._select("", ()) if name is None else self._select("WHERE name = ?", (name,))

    def get(self, name: str, version: str | int) -> ModelVersion:
        """The version ``version`` of ``name``; RegistryError naming the known ones if absent."""
        found = self._select("WHERE name = ? AND version = ?", (name, str(version)))
        if found:
            return found[0]
        known = [mv.version for mv in self.versions(name)]
        if not known:
            raise RegistryError(self._unknown_model(name))
        msg = f"Model '{name}' has no version '{version}'. Known versions: {', '.join(known)}."
        raise RegistryError(msg)

    def active(self, name: str) -> ModelVersion | None:
        """The active version of ``name``, or None if none is active."""
        found = self._select("WHERE name = ? AND status = 'active'", (name,))
        return found[0] if found else None

    def active_versions(self) -> dict[str, str]:
        """Model name -> active version: one indexed query, cheap enough to poll."""
        sql = "SELECT name, version FROM model_registry WHERE status = 'active' ORDER BY name"
        return dict(self._rows(sql))

    def activate(self, name: str, version: str | int, *, reason: str = "") -> ModelVersion:
        """Make ``version`` the active one of ``name`` after verifying its artifact."""
        mv = self.get(name, version)
        self.verify(mv)
        return self._switch(mv, action="activate", reason=reason)

    def rollback(self, name: str, *, reason: str = "") -> ModelVersion:
        """Re-activate the version active before the current one, per the activations log.

        Versions whose artifact fails verification (or that are retired) are skipped.
        """
        current = self.active(name)
        if current is None:
            if not self.versions(name):
                raise RegistryError(self._unknown_model(name))
            msg = (
                f"Model '{name}' has no active version to roll back from. "
                f"Activate one with `novacron models activate {name} VERSION`."
            )
            raise RegistryError(msg)
        sql = "SELECT version, action FROM activations WHERE name = ? ORDER BY id"
        stack = active_stack(self._rows(sql, (name,)))
        earlier = dict.fromkeys(v for v in reversed(stack[:-1]) if v != current.version)
        problems: list[str] = []
        for version in earlier:
            mv = self.get(name, version)
            try:
                if mv.status == "retired":
                    msg = f"{mv.ref} is retired."
                    raise RegistryError(msg)
                self.verify(mv)
            except RegistryError as exc:
                log.warning("Rollback of %s skips %s: %s", name, mv.ref, exc)
                problems.append(str(exc))
                continue
            return self._switch(mv, action="rollback", reason=reason)
        if not problems:
            msg = (
                f"Model '{name}' has no earlier active version to roll back to: version "
                f"{current.version} is the first one activated. Activate another with "
                f"`novacron models activate {name} VERSION`."
            )
        else:
            msg = (
                f"Model '{name}' cannot roll back from version {current.version}: no earlier "
                f"active version verifies. {' '.join(problems)}"
            )
        raise RegistryError(msg)

    def _switch(self, mv: ModelVersion, *, action: str, reason: str) -> ModelVersion:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                "SELECT version FROM model_registry WHERE name = ? AND status = 'active'",
                (mv.name,),
            ).fetchone()
            previous = None if row is None else row[0]
            if previous != mv.version:
                conn.execute(
                    "UPDATE model_registry SET status = 'registered' "
                    "WHERE name = ? AND status = 'active'",
                    (mv.name,),
                )
                conn.execute(
                    "UPDATE model_registry SET status = 'active', activated_at = ? "
                    "WHERE name = ? AND version = ?",
                    (now, mv.name, mv.version),
                )
                conn.execute(
                    "INSERT INTO activations (name, version, previous_version, action, reason, at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (mv.name, mv.version, previous, action, reason, now),
                )
        log.info("%s %s (was %s): %s", action, mv.ref, previous, reason or "no reason given")
        return self.get(mv.name, mv.version)

    def record_metrics(
        self, name: str, version: str | int, dataset: str, metrics: Mapping[str, float]
    ) -> None:
        """Add evaluation ``metrics`` of a version on ``dataset``; later values supersede."""
        mv = self.get(name, version)
        values = finite(metrics, f"metric of {mv.ref}")
        now = self._clock()
        with self._write() as conn:
            insert_metrics(conn, (mv.name, mv.version, dataset), values, now)

    def metrics(self, name: str, version: str | int) -> dict[str, dict[str, float]]:
        """Dataset -> metric -> latest value of a version."""
        mv = self.get(name, version)
        sql = (
            "SELECT dataset, metric, value FROM performance_metrics WHERE name = ? AND version = ?"
        )
        result: dict[str, dict[str, float]] = {}
        for dataset, metric, value in self._rows(sql + " ORDER BY id", (mv.name, mv.version)):
            result.setdefault(dataset, {})[metric] = value
        return result

    def history(self, name: str, version: str | int) -> list[dict[str, float]]:
        """The training history of a version: one ``{"epoch": n, metric: value}`` per epoch."""
        mv = self.get(name, version)
        sql = "SELECT epoch, metric, value FROM training_history WHERE name = ? AND version = ?"
        epochs: dict[int, dict[str, float]] = {}
        for epoch, metric, value in self._rows(sql + " ORDER BY epoch, id", (mv.name, mv.version)):
            epochs.setdefault(epoch, {"epoch": epoch})[metric] = value
        return list(epochs.values())

    def artifact_path(self, mv: ModelVersion) -> Path:
        """Where the artifact of ``mv`` lies on disk."""
        return self.artifact_dir / mv.artifact_path

    def verify(self, mv: ModelVersion) -> Path:
        """The artifact's path, after checking it exists and has the recorded sha256."""
        fix = f"re-register the model or roll back with `novacron models rollback {mv.name}`"
        return check_digest(self.artifact_path(mv), mv.sha256, f"The artifact of {mv.ref}", fix)

    def import_bundle(self, bundle_dir: Path) -> list[ModelVersion]:
        """Register and activate the shipped models of a bundle (``manifest.json``).

        See :func:`models.bundle.import_bundle`; returns the versions activated (none on
        a second call).
        """
        return bundle.import_bundle(self, bundle_dir)

    def digests(self) -> set[tuple[str, str]]:
        """Every registered ``(name, sha256)`` pair."""
        return set(self._rows("SELECT name, sha256 FROM model_registry"))

    def last_activation(self, name: str) -> tuple[str, str] | None:
        """``(action, reason)`` of the latest activation or rollback of ``name``, if any."""
        rows = self._rows(
            "SELECT action, reason FROM activations WHERE name = ? ORDER BY id DESC LIMIT 1",
            (name,),
        )
        return (rows[0][0], str(rows[0][1])) if rows else None

    def _unknown_model(self, name: str) -> str:
        names = sorted(n for (n,) in self._rows("SELECT DISTINCT name FROM model_registry"))
        known = ", ".join(names) if names else "none (the registry is empty)"
        return f"Model '{name}' is not in the registry at '{self.db_path}'. Known models: {known}."
