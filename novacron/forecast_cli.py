"""``novacron train forecast`` and ``novacron eval forecast`` (added to :mod:`novacron.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agents.settings import Settings

out = Console()
console = Console(stderr=True)


def train_forecast(
    ctx: typer.Context,
    series: Annotated[int, typer.Option(help="Synthetic demand series (split 70/15/15).")] = 540,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    windows_per_series: Annotated[int, typer.Option(help="Windows drawn per series.")] = 120,
    trees: Annotated[int, typer.Option(help="Trees of the forest and of each boosting.")] = 100,
    jobs: Annotated[int, typer.Option(help="Processes for the tree fits.")] = 2,
    workload_hosts: Annotated[
        int,
        typer.Option(
            help="Also train on this many labelled synthetic hosts per workload type "
            "(models.synthetic_workloads), every metric a series."
        ),
    ] = 0,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="Activate the new version (default: only if it beats the active one on "
            "the same test windows).",
        ),
    ] = None,
) -> None:
    """Train the demand forecast ensemble (RF + GB + Ridge), export one ONNX, register it."""
    from agents.wiring import open_registry
    from models.forecast_training import (
        ForecastTrainRequest,
        register_forecaster,
        train_forecaster,
        workload_host_series,
    )

    settings: Settings = ctx.obj
    hosts = tuple(workload_host_series(workload_hosts, seed)) if workload_hosts else ()
    request = ForecastTrainRequest(
        series=series, seed=seed, windows_per_series=windows_per_series, trees=trees,
        n_jobs=jobs, activate="auto" if activate is None else ("always" if activate else "never"),
        extra_series=hosts,
    )  # fmt: skip
    console.print(f"training on {series} synthetic series (seed {seed}) ...")
    trained = train_forecaster(request)
    report = register_forecaster(open_registry(settings), trained, request.activate)
    table = Table(title=f"{report.version.ref} on held-out synthetic series (nmae)")
    horizons = request.horizons
    table.add_column("method")
    for h in horizons:
        table.add_column(f"h{h}", justify="right")
    for name, figures in {"ensemble": trained.metrics, **trained.baselines}.items():
        table.add_row(name, *(f"{figures[f'nmae_h{h}']:.4f}" for h in horizons))
    out.print(table)
    coverage = " ".join(f"h{h} {trained.metrics[f'coverage_h{h}']:.3f}" for h in horizons)
    out.print(f"interval coverage (nominal {request.interval_level}): {coverage}")
    out.print(
        f"{trained.params['onnx_bytes'] / 1e6:.2f} MB, parity {trained.parity_max_abs:.1e}, "
        f"{trained.params['train_seconds']:.0f} s; {report.reason}"
    )


def eval_forecast(
    ctx: typer.Context,
    data_dir: Annotated[
        Path,
        typer.Argument(help="The shared data folder (workload/ and nab/ inside)."),
    ],
    model: Annotated[
        Path | None,
        typer.Option(help="An ONNX forecast model file (default: the registry's active one)."),
    ] = None,
    series: Annotated[int, typer.Option(help="Held-out synthetic series.")] = 270,
    seed: Annotated[int, typer.Option(help="Seed of the held-out synthetic series.")] = 1001,
    output: Annotated[Path, typer.Option(help="JSON results file.")] = Path(
        "bench/results/eval_forecast.json"
    ),
) -> None:
    """The forecaster vs persistence and seasonal naive: held-out synthetic and real traces."""
    from agents.wiring import open_registry
    from models.forecast import MODEL_NAME, OnnxForecaster
    from streams.errors import ModelError

    from .eval_forecast import evaluate_forecaster, write_results

    if model is None:
        registry = open_registry(ctx.obj)
        active = registry.active(MODEL_NAME)
        if active is None:
            msg = f"No version of {MODEL_NAME} is active: run `novacron train forecast` first."
            raise ModelError(msg)
        forecaster = OnnxForecaster.load(registry.verify(active), MODEL_NAME, active.version)
    else:
        forecaster = OnnxForecaster.load(model, MODEL_NAME, model.name)
    results = evaluate_forecaster(
        forecaster, data_dir, series, seed, progress=lambda name: console.print(name)
    )
    write_results(results, output, {"command": " ".join(sys.argv), "data": str(data_dir)})
    horizons = results["horizons"]
    table = Table(title=f"{results['model']}: MAE relative to persistence (< 1 beats it)")
    table.add_column("dataset", no_wrap=True, max_width=24)
    table.add_column("method", no_wrap=True)
    for h in horizons:
        table.add_column(f"h{h}", justify="right")
    table.add_column("coverage", justify="right", no_wrap=True)
    datasets = {"synthetic (held out)": (results["synthetic"]["all"], "nmae")}
    datasets |= {name: (scores, "mae") for name, scores in results["real"].items()}
    for name, (scores, key) in datasets.items():
        base = scores["persistence"]
        for method in ("ensemble", "random_forest", "gradient_boosting", "ridge", "seasonal_naive"):
            figures = scores[method]
            cells = (f"{figures[f'{key}_h{h}'] / base[f'{key}_h{h}']:.3f}" for h in horizons)
            cov = f"{figures['coverage']:.3f}" if "coverage" in figures else ""
            table.add_row(name if method == "ensemble" else "", method, *cells, cov)
    out.print(table)
    out.print(f"wrote {output}")
