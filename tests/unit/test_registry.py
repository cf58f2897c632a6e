"""The model registry: versions, checksums, activation, rollback and bundles, on a temp dir."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from itertools import count
from pathlib import Path

import pytest

from models.registry import ModelRegistry, ModelVersion
from streams.errors import ConfigError, RegistryError

NAME = "bandwidth-dc"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    ticks = count(1_700_000_000)
    return ModelRegistry(tmp_path / "db" / "r.sqlite", tmp_path / "art", clock=lambda: next(ticks))


def _artifact(tmp_path: Path, content: bytes, filename: str = "lstm.onnx") -> Path:
    path = tmp_path / "src" / content.decode()[:16] / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _register(registry: ModelRegistry, tmp_path: Path, content: bytes) -> ModelVersion:
    return registry.register(NAME, _artifact(tmp_path, content), mode="datacenter")


def test_round_trip(registry: ModelRegistry, tmp_path: Path) -> None:
    v1 = registry.register(
        NAME,
        _artifact(tmp_path, b"one"),
        mode="datacenter",
        params={"units": [128, 64], "dropout": 0.2},
        metrics={"mae": 0.12, "acc20": 0.87},
        history=[{"epoch": 1, "loss": 0.9, "val_loss": 1.0}, {"epoch": 2, "loss": 0.5}],
        dataset="synthetic-dc",
        notes="first",
    )
    v2 = _register(registry, tmp_path, b"two")

    assert (v1.ref, v2.ref) == (f"{NAME}:1", f"{NAME}:2")
    assert v1.status == "registered" and v1.activated_at is None
    assert v1.artifact_path == f"{NAME}/1/lstm.onnx"
    assert v1.sha256 == hashlib.sha256(b"one").hexdigest()
    assert v1.size_bytes == 3
    assert v1.params == {"units": [128, 64], "dropout": 0.2}
    assert v1.metrics == {"mae": 0.12, "acc20": 0.87}
    assert v1.created_at == 1_700_000_000
    assert registry.artifact_path(v1).read_bytes() == b"one"
    assert [mv.ref for mv in registry.versions()] == [v1.ref, v2.ref]
    assert registry.get(NAME, 1) == v1
    assert registry.active(NAME) is None
    assert registry.active_versions() == {}

    active = registry.activate(NAME, "2", reason="better")
    assert active.status == "active" and active.activated_at is not None
    assert registry.active(NAME) == active
    assert registry.active_versions() == {NAME: "2"}
    assert registry.get(NAME, "1").status == "registered"

    assert registry.metrics(NAME, "1") == {"synthetic-dc": {"mae": 0.12, "acc20": 0.87}}
    registry.record_metrics(NAME, "1", "synthetic-dc", {"mae": 0.11})
    registry.record_metrics(NAME, "1", "replay", {"coverage": 0.9})
    assert registry.metrics(NAME, "1") == {
        "synthetic-dc": {"mae": 0.11, "acc20": 0.87},
        "replay": {"coverage": 0.9},
    }
    assert registry.history(NAME, "1") == [
        {"epoch": 1, "loss": 0.9, "val_loss": 1.0},
        {"epoch": 2, "loss": 0.5},
    ]
    assert registry.history(NAME, "2") == []


def test_versions_are_numbered_numerically(registry: ModelRegistry, tmp_path: Path) -> None:
    for i in range(11):
        _register(registry, tmp_path, f"v{i}".encode())
    assert [mv.version for mv in registry.versions(NAME)] == [str(i) for i in range(1, 12)]


def test_tables_named_in_the_design(registry: ModelRegistry) -> None:
    with sqlite3.connect(registry.db_path) as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    expected = {"model_registry", "performance_metrics", "training_history", "activations"}
    assert expected <= tables
    assert mode == "wal"


def test_reopening_keeps_data(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"one")
    again = ModelRegistry(registry.db_path, registry.artifact_dir)
    assert [mv.ref for mv in again.versions()] == [f"{NAME}:1"]


def test_corrupt_artifact_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(registry, tmp_path, b"one")
    path = registry.artifact_path(mv)
    path.write_bytes(b"tampered")
    for call in (lambda: registry.verify(mv), lambda: registry.activate(NAME, "1")):
        with pytest.raises(RegistryError) as info:
            call()
        message = str(info.value)
        assert str(path) in message
        assert f"expected sha256 {mv.sha256}" in message
        assert hashlib.sha256(b"tampered").hexdigest() in message
        assert f"novacron models rollback {NAME}" in message
    assert registry.active(NAME) is None


def test_missing_artifact_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    mv = _register(registry, tmp_path, b"one")
    registry.artifact_path(mv).unlink()
    with pytest.raises(RegistryError, match="sha256") as info:
        registry.activate(NAME, "1")
    assert "missing" in str(info.value)


def test_rollback(registry: ModelRegistry, tmp_path: Path) -> None:
    for content in (b"one", b"two", b"three"):
        _register(registry, tmp_path, content)
    registry.activate(NAME, "1")
    registry.activate(NAME, "2")
    registry.activate(NAME, "3")
    assert registry.rollback(NAME, reason="regression").version == "2"
    assert registry.active_versions() == {NAME: "2"}
    assert registry.get(NAME, "3").status == "registered"
    assert registry.rollback(NAME).version == "1"
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback(NAME)
    assert registry.active_versions() == {NAME: "1"}


def test_rollback_skips_versions_that_fail_verification(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    for content in (b"one", b"two", b"three"):
        _register(registry, tmp_path, content)
    for version in ("1", "2", "3"):
        registry.activate(NAME, version)
    registry.artifact_path(registry.get(NAME, "2")).write_bytes(b"bad")
    assert registry.rollback(NAME).version == "1"
    registry.artifact_path(registry.get(NAME, "1")).write_bytes(b"bad")
    registry.activate(NAME, "3")
    with pytest.raises(RegistryError, match="no earlier active version verifies"):
        registry.rollback(NAME)


def test_rollback_without_previous(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"one")
    with pytest.raises(RegistryError, match="no active version to roll back from"):
        registry.rollback(NAME)
    registry.activate(NAME, "1")
    with pytest.raises(RegistryError, match="version 1 is the first one activated"):
        registry.rollback(NAME)


def test_unknown_version_and_model(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"one")
    _register(registry, tmp_path, b"two")
    with pytest.raises(RegistryError) as info:
        registry.get(NAME, "9")
    assert str(info.value) == f"Model '{NAME}' has no version '9'. Known versions: 1, 2."
    with pytest.raises(RegistryError, match=f"Known models: {NAME}"):
        registry.activate("nope", "1")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "../escape"}, "A model name must match"),
        ({"mode": ""}, "'mode'"),
        ({"metrics": {"mae": float("nan")}}, "finite number"),
        ({"history": [{"loss": 1.0}]}, "integer 'epoch'"),
        ({"params": {"f": object()}}, "JSON-serialisable"),
    ],
)
def test_register_rejects_bad_input(
    registry: ModelRegistry, tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"name": NAME, "mode": "datacenter"} | kwargs
    name = str(args.pop("name"))
    with pytest.raises(RegistryError, match=match):
        registry.register(name, _artifact(tmp_path, b"one"), **args)  # type: ignore[arg-type]
    assert registry.versions() == []


def _bundle(tmp_path: Path, content: bytes, sha256: str | None = None) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "dc.onnx").write_bytes(content)
    entry = {
        "name": NAME,
        "mode": "datacenter",
        "file": "dc.onnx",
        "sha256": sha256 or hashlib.sha256(content).hexdigest(),
        "params": {"window": 30},
        "metrics": {"mae": 0.1},
        "history": [{"epoch": 1, "loss": 0.3}],
        "dataset": "synthetic-dc",
        "notes": "bundled default",
    }
    (bundle / "manifest.json").write_text(json.dumps([entry]), encoding="utf-8")
    return bundle


def test_import_bundle_is_idempotent(registry: ModelRegistry, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, b"default")
    imported = registry.import_bundle(bundle)
    assert [(mv.ref, mv.status) for mv in imported] == [(f"{NAME}:1", "active")]
    assert imported[0].params == {"window": 30}
    assert registry.metrics(NAME, "1") == {"synthetic-dc": {"mae": 0.1}}
    assert registry.history(NAME, "1") == [{"epoch": 1, "loss": 0.3}]
    assert registry.import_bundle(bundle) == []
    assert len(registry.versions()) == 1


def test_an_upgraded_bundle_replaces_the_shipped_model(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.import_bundle(_bundle(tmp_path / "old", b"old default"))
    activated = registry.import_bundle(_bundle(tmp_path / "new", b"new default"))
    assert [mv.ref for mv in activated] == [f"{NAME}:2"]
    assert registry.active(NAME).version == "2"  # type: ignore[union-attr]
    assert registry.import_bundle(_bundle(tmp_path / "new", b"new default")) == []


def test_an_upgraded_bundle_leaves_the_users_model_active(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.import_bundle(_bundle(tmp_path / "old", b"old default"))
    mine = _register(registry, tmp_path, b"trained by the user")
    registry.activate(NAME, mine.version, reason="beats the shipped one")
    assert registry.import_bundle(_bundle(tmp_path / "new", b"new default")) == []
    assert registry.active(NAME).version == mine.version  # type: ignore[union-attr]
    assert len(registry.versions(NAME)) == 3  # the new shipped model is registered, not active


def test_import_bundle_checks_the_manifest_sha256(registry: ModelRegistry, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, b"default", sha256="0" * 64)
    with pytest.raises(RegistryError, match=f"expected sha256 {'0' * 64}"):
        registry.import_bundle(bundle)
    assert registry.versions() == []


def test_import_bundle_without_manifest(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="manifest.json"):
        registry.import_bundle(tmp_path)


def test_second_reader_sees_activation(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, b"one")
    _register(registry, tmp_path, b"two")
    reader = ModelRegistry(registry.db_path, registry.artifact_dir)
    assert reader.active_versions() == {}
    registry.activate(NAME, "1")
    assert reader.active_versions() == {NAME: "1"}
    registry.activate(NAME, "2")
    assert reader.active_versions() == {NAME: "2"}
    assert reader.active(NAME) == registry.active(NAME)


def test_from_url(tmp_path: Path) -> None:
    registry = ModelRegistry.from_url(f"sqlite:///{tmp_path}/x/r.sqlite", tmp_path / "a")
    assert registry.db_path == tmp_path / "x" / "r.sqlite"
    assert registry.db_path.exists() and (tmp_path / "a").is_dir()


@pytest.mark.parametrize("url", ["postgresql://db/registry", "sqlite:///:memory:", "sqlite://"])
def test_from_url_refuses_other_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///PATH"):
        ModelRegistry.from_url(url, tmp_path / "a")
