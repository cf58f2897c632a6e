"""``novacron simulate``: replay demand traces against scaling policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from streams.capacity import SCALING_POLICIES, Forecaster
from streams.errors import NovacronError

simulate_app = typer.Typer(
    help="Replay demand traces against autoscalers (Kubernetes' HPA and ours).",
    no_args_is_help=True,
)


@simulate_app.callback()
def _simulate() -> None:
    """Replay demand traces against autoscalers (Kubernetes' HPA and ours)."""


out = Console(soft_wrap=True)
err = Console(stderr=True)

ENSEMBLE = "forecast-ensemble"
"""The shipped forecaster's name in models/artifacts/manifest.json."""


def load_forecaster(choice: str, model_path: Path | None) -> Forecaster | None:
    """The forecaster our policies use: ``ensemble`` (the shipped one, or
    ``model_path``), ``persistence``, ``none``, or ``auto`` (the ensemble when one is
    shipped or given, else persistence, said on stderr)."""
    from models.demand_baseline import PersistenceForecaster

    if choice == "none":
        return None
    if choice == "persistence":
        return PersistenceForecaster()
    try:
        return _ensemble(model_path)
    except (NovacronError, ImportError) as exc:
        if choice == "ensemble":
            msg = f"Cannot load the forecast ensemble: {exc}"
            raise typer.BadParameter(msg, param_hint="--forecaster") from exc
        err.print(f"[yellow]No forecast ensemble ({exc}); our policies use persistence.[/]")
        return PersistenceForecaster()


def _ensemble(model_path: Path | None) -> Forecaster:
    from models.forecast import OnnxForecaster
    from models.registry_records import check_digest

    if model_path is not None:
        return OnnxForecaster.load(model_path, ENSEMBLE, f"file:{model_path.name}")
    bundle = Path(__file__).resolve().parent.parent / "models" / "artifacts"
    manifest = bundle / "manifest.json"
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in entries:
        if entry.get("name") == ENSEMBLE:
            path = bundle / entry["file"]
            check_digest(path, entry["sha256"], "The shipped forecast ensemble", "reinstall")
            version = str(entry.get("version") or f"shipped-{entry['sha256'][:12]}")
            return OnnxForecaster.load(path, ENSEMBLE, version)
    msg = f"{str(manifest)!r} lists no {ENSEMBLE!r}"
    raise NovacronError(msg)


@simulate_app.command("scaling")
def scaling(
    trace: Annotated[Path, typer.Option("--trace", help="CSV: a time column and a demand column.")],
    column: Annotated[str, typer.Option("--column", help="The demand column.")],
    time_column: Annotated[
        str | None,
        typer.Option(help="Timestamps or a minute index (default: the first other column)."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write results.json, the plots and the frontier here."),
    ] = None,
    frontier: Annotated[
        bool, typer.Option(help="Sweep HPA's target and our settings (always with --report).")
    ] = False,
    capacity_per_instance: Annotated[
        float | None,
        typer.Option(help="Demand one instance serves [default: mean demand / (10 x 0.6)]."),
    ] = None,
    ready_delay_s: Annotated[
        float, typer.Option(help="Seconds until asked-for instances serve.")
    ] = 180.0,
    sla_utilisation: Annotated[
        float,
        typer.Option(help="A step violates the SLA above this utilisation of ready capacity."),
    ] = 0.8,
    hpa_target: Annotated[float, typer.Option(help="HPA's target utilisation.")] = 0.6,
    min_instances: Annotated[int, typer.Option(help="Fewest instances, every policy.")] = 1,
    max_instances: Annotated[int, typer.Option(help="Most instances, every policy.")] = 1000,
    policy: Annotated[
        list[str] | None,
        typer.Option(help=f"Our policies to run [default: all of {SCALING_POLICIES}]."),
    ] = None,
    forecaster: Annotated[
        str, typer.Option(help="auto | ensemble | persistence | none (our policies' forecasts).")
    ] = "auto",
    forecaster_model: Annotated[
        Path | None, typer.Option(help="An ensemble ONNX file instead of the shipped one.")
    ] = None,
) -> None:
    """Replay a trace against Kubernetes' HPA, a static fleet, an oracle and our policies."""
    from tqdm import tqdm

    from models.demand_traces import load_trace
    from models.hpa import HpaSettings
    from models.scaling_comparison import simulate_trace, total_steps
    from models.simulation import CapacityModel, default_capacity_per_instance

    policies = [p.upper() for p in policy] if policy else list(SCALING_POLICIES)
    unknown = [p for p in policies if p not in SCALING_POLICIES]
    if unknown:
        msg = f"must be among {list(SCALING_POLICIES)}. Got {unknown}."
        raise typer.BadParameter(msg, param_hint="--policy")
    if forecaster not in ("auto", "ensemble", "persistence", "none"):
        msg = f"must be one of auto, ensemble, persistence, none. Got {forecaster!r}."
        raise typer.BadParameter(msg, param_hint="--forecaster")
    try:
        data = load_trace(trace, column, time_column)
        cap = capacity_per_instance or default_capacity_per_instance(data.demand)
        model = CapacityModel(cap, ready_delay_s, sla_utilisation, min_instances, max_instances)
        hpa = HpaSettings(
            target_utilisation=hpa_target, min_replicas=min_instances, max_replicas=max_instances
        )
        fc = load_forecaster(forecaster, forecaster_model)
        sweep = frontier or report is not None
        total = total_steps(data, policies, sweep, fc.lookback if fc is not None else None)
        with tqdm(total=total, unit="step", file=sys.stderr, disable=total < 50_000) as bar:
            result = simulate_trace(data, model, fc, hpa, policies, sweep, bar.update)
    except NovacronError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    _print(result)
    if report is not None:
        from models.simulation_report import write_report

        extra = {"command": " ".join(sys.argv), "trace_file": str(trace), "column": column}
        files = write_report(result, data, report, extra)
        out.print(f"wrote {len(files)} files to {report}")


def _print(result: Any) -> None:
    from models.scaling_comparison import HPA, acceptance

    verdicts = acceptance(result)["passes"]
    table = Table(
        title=f"{result.trace}: {result.minutes:.0f} minutes at {result.step_s:.0f} s steps, "
        f"forecaster {result.forecaster}",
        caption="violations in SLA-violation minutes, cost in instance-minutes; starts: "
        "instances started; $/HPA: cost with the design's prices, starts included; "
        "pass: >= 50% fewer violations than HPA at <= 5% more cost (instance-minutes)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("policy", no_wrap=True, min_width=len("ours-performance_optimized"))
    for name in (
        "violations",
        "cost",
        "actions",
        "starts",
        "viol/HPA",
        "cost/HPA",
        "$/HPA",
        "pass",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    for name, run in result.runs.items():
        ratios = result.ratios(name)
        table.add_row(
            name,
            f"{run.sla_violation_minutes:.0f}",
            f"{run.cost_instance_minutes:.0f}",
            str(run.actions),
            str(run.instance_starts),
            _fmt(ratios["violations_vs_hpa"]),
            _fmt(ratios["cost_vs_hpa"]),
            _fmt(ratios["cost_dollars_vs_hpa"]),
            {True: "yes", False: "no"}.get(verdicts.get(name), "") if name != HPA else "",
        )
    Console(soft_wrap=True, width=max(out.width, 110)).print(table)  # whole numbers
    if result.frontier:
        from models.scaling_comparison import frontier_below

        below = frontier_below(result.frontier)["below_everywhere"]
        out.print(f"our frontier below HPA's everywhere: {'yes' if below else 'no'}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
