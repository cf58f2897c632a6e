"""``novacron models``: list, show, activate and roll back registered model versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from agents.settings import Settings
from models.registry import ModelRegistry, ModelVersion
from streams.errors import RegistryError

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)

# soft_wrap: paths and digests stay on one line, so they can be copied.
out = Console(soft_wrap=True)

KEY_METRICS = ("mae", "rmse", "acc20", "coverage", "f1", "auc")


def _registry(ctx: typer.Context) -> ModelRegistry:
    # As the worker opens it: a fresh registry lists the shipped models as active.
    from agents.wiring import open_registry

    settings: Settings = ctx.obj
    return open_registry(settings)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _key_metrics(mv: ModelVersion) -> str:
    shown = [f"{k}={mv.metrics[k]:.4g}" for k in KEY_METRICS if k in mv.metrics]
    return " ".join(shown) or "-"


@models_app.command("list")
def list_models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
) -> None:
    """Every registered version: status, creation time, key metrics, checksum."""
    versions = _registry(ctx).versions(name)
    if not versions:
        out.print("No models registered." if name is None else f"No versions of '{name}'.")
        return
    table = Table(title="Model registry (times in UTC)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("name", "version", "mode", "status", "created", "key metrics", "sha256"):
        table.add_column(column, overflow="fold", no_wrap=column in ("version", "sha256"))
    for mv in versions:
        status = "[bold green]active[/]" if mv.status == "active" else mv.status
        table.add_row(
            mv.name,
            mv.version,
            mv.mode,
            status,
            _when(mv.created_at),
            _key_metrics(mv),
            mv.sha256[:12],
        )
    out.print(table)


@models_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[
        str | None, typer.Argument(help="Version; the active one if left out.")
    ] = None,
) -> None:
    """One version in detail: params, metrics per dataset, training history, artifact check."""
    registry = _registry(ctx)
    if version is None:
        active = registry.active(name)
        if active is None:
            known = ", ".join(mv.version for mv in registry.versions(name))
            if not known:
                models = ", ".join(sorted({mv.name for mv in registry.versions()})) or "none"
                msg = f"Model '{name}' is not in the registry. Known models: {models}."
                raise RegistryError(msg)
            msg = (
                f"Model '{name}' has no active version; name one: "
                f"`novacron models show {name} VERSION`. Known versions: {known}."
            )
            raise RegistryError(msg)
        mv = active
    else:
        mv = registry.get(name, version)

    out.print(f"[bold]{mv.ref}[/]  mode={mv.mode}  kind={mv.kind}  status={mv.status}")
    out.print(f"created {_when(mv.created_at)}; activated {_when(mv.activated_at)}")
    if mv.notes:
        out.print(f"notes: {mv.notes}")
    out.print("params: " + (", ".join(f"{k}={v}" for k, v in mv.params.items()) or "-"))
    for dataset, latest in registry.metrics(mv.name, mv.version).items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in latest.items())
        out.print(f"metrics on {dataset or '(unnamed dataset)'}: {shown}")
    history = registry.history(mv.name, mv.version)
    if history:
        out.print(f"training history: {len(history)} epochs")
        metrics = dict.fromkeys(k for row in history for k in row if k != "epoch")
        for metric in metrics:
            values = [row[metric] for row in history if metric in row]
            out.print(
                f"  {metric}: first {values[0]:.4g}, last {values[-1]:.4g}, "
                f"min {min(values):.4g}, max {max(values):.4g}"
            )
    out.print(f"artifact: {registry.artifact_path(mv)} ({mv.size_bytes} bytes)")
    try:
        registry.verify(mv)
    except RegistryError as exc:
        out.print(f"[bold red]verification failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    out.print(f"[green]verified[/]: sha256 {mv.sha256}")


@models_app.command("activate")
def activate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to activate.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
) -> None:
    """Verify a version's artifact and make it the active one; workers pick it up."""
    registry = _registry(ctx)
    previous = registry.active(name)
    mv = registry.activate(name, version, reason=reason)
    was = f" (was {previous.version})" if previous is not None else ""
    out.print(f"activated {mv.ref}{was}")


@models_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")] = "",
) -> None:
    """Re-activate the version that was active before the current one."""
    registry = _registry(ctx)
    previous = registry.active(name)
    mv = registry.rollback(name, reason=reason)
    was = f" (was {previous.version})" if previous is not None else ""
    out.print(f"rolled back {name} to version {mv.version}{was}")
