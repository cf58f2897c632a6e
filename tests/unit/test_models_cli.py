"""``novacron models`` commands, run through Typer's CliRunner against a temp registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agents.settings import Settings
from models.registry import ModelRegistry
from models.serving import SHIPPED_BUNDLE
from novacron.models_cli import models_app
from streams.errors import RegistryError

NAME = "bandwidth-dc"
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(registry_url=f"sqlite:///{tmp_path}/r.sqlite", artifact_dir=tmp_path / "a")


@pytest.fixture
def app(settings: Settings) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _main(ctx: typer.Context) -> None:
        ctx.obj = settings

    app.add_typer(models_app, name="models")
    return app


@pytest.fixture
def registry(settings: Settings, tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry.from_url(settings.registry_url, settings.artifact_dir)
    for i, content in enumerate((b"one", b"two"), start=1):
        source = tmp_path / f"m{i}.onnx"
        source.write_bytes(content)
        registry.register(
            NAME,
            source,
            mode="datacenter",
            params={"units": 128},
            metrics={"mae": 0.1 * i, "acc20": 0.9},
            history=[{"epoch": 1, "loss": 0.8}, {"epoch": 2, "loss": 0.3}],
            dataset="synthetic-dc",
        )
    return registry


def test_list(app: typer.Typer, registry: ModelRegistry) -> None:
    registry.activate(NAME, "2")
    result = CliRunner().invoke(app, ["models", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert NAME in result.output
    assert "mae=0.2 acc20=0.9" in result.output
    assert "active" in result.output and "registered" in result.output
    assert registry.get(NAME, "1").sha256[:12] in result.output


def test_fresh_registry_lists_the_shipped_models_as_active(app: typer.Typer) -> None:
    # As the worker and replay open it: the shipped models are imported on first use.
    shipped = json.loads((SHIPPED_BUNDLE / "manifest.json").read_text())
    result = CliRunner().invoke(app, ["models", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    for entry in shipped:
        assert any(r[:1] == [entry["name"]] and "active" in r for r in rows), result.output


def test_show_active_by_default(app: typer.Typer, registry: ModelRegistry) -> None:
    registry.activate(NAME, "1")
    result = CliRunner().invoke(app, ["models", "show", NAME], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"{NAME}:1" in result.output
    assert "units=128" in result.output
    assert "metrics on synthetic-dc: mae=0.1, acc20=0.9" in result.output
    assert "training history: 2 epochs" in result.output
    assert "loss: first 0.8, last 0.3" in result.output
    assert "verified" in result.output


def test_show_reports_a_failed_verification(app: typer.Typer, registry: ModelRegistry) -> None:
    registry.artifact_path(registry.get(NAME, "2")).write_bytes(b"tampered")
    result = CliRunner().invoke(app, ["models", "show", NAME, "2"], env=WIDE)
    assert result.exit_code == 1
    assert "verification failed" in result.output


def test_show_without_active_version(app: typer.Typer, registry: ModelRegistry) -> None:
    result = CliRunner().invoke(app, ["models", "show", NAME], env=WIDE)
    assert isinstance(result.exception, RegistryError)
    assert "no active version" in str(result.exception)


def test_activate_and_rollback(app: typer.Typer, registry: ModelRegistry) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["models", "activate", NAME, "1"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"activated {NAME}:1" in result.output
    result = runner.invoke(app, ["models", "activate", NAME, "2", "--reason", "better"], env=WIDE)
    assert f"activated {NAME}:2 (was 1)" in result.output
    result = runner.invoke(app, ["models", "rollback", NAME, "--reason", "regression"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"rolled back {NAME} to version 1 (was 2)" in result.output
    assert registry.active_versions()[NAME] == "1"


def test_errors_are_registry_errors(app: typer.Typer, registry: ModelRegistry) -> None:
    result = CliRunner().invoke(app, ["models", "activate", NAME, "9"], env=WIDE)
    assert isinstance(result.exception, RegistryError)
    assert "Known versions: 1, 2." in str(result.exception)
