"""The ``novacron`` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agents.settings import Settings
from streams.errors import NovacronError

from .forecast_cli import eval_forecast, train_forecast
from .models_cli import models_app
from .retrain_cli import retrain_command
from .simulate_cli import simulate_app
from .workload_cli import train_workload

app = typer.Typer(
    help="NovaCron telemetry ML: streaming bandwidth predictions, alerts and actions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Kafka + Redis stack.", no_args_is_help=True)
schemas_app = typer.Typer(help="Topic schemas.", no_args_is_help=True)
train_app = typer.Typer(help="Train models (needs the train extra).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models on real traces.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; figures go to bench/results/.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
app.add_typer(simulate_app, name="simulate")
train_app.command("forecast")(train_forecast)
eval_app.command("forecast")(eval_forecast)
train_app.command("workload")(train_workload)
app.command("retrain")(retrain_command)

console = Console(stderr=True)
out = Console()


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@app.callback()
def _main(ctx: typer.Context) -> None:
    ctx.obj = Settings()


@stack_app.command("up")
def stack_up(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 90.0,
    secure: Annotated[
        bool,
        typer.Option(
            help="Kafka with SASL_SSL (SCRAM-SHA-512) and Redis with TLS and an ACL user; "
            "client settings go to <state_dir>/secure/credentials.env. Give it a state dir "
            "and ports of its own (NOVACRON_STATE_DIR, NOVACRON_KAFKA_PORT, ...)."
        ),
    ] = False,
) -> None:
    """Start (or reuse) the local Kafka broker and Redis server; wait until ready."""
    from . import stack

    settings = _settings(ctx)
    if secure:
        settings = settings.model_copy(update={"stack_secure": True})
    status = stack.stack_up(settings, timeout_s=timeout, progress=out.print)
    out.print(stack.render(status))


@stack_app.command("down")
def stack_down(
    ctx: typer.Context,
    purge: Annotated[bool, typer.Option(help="Also delete Kafka and Redis data.")] = False,
) -> None:
    """Stop what `stack up` started (never a service it did not start)."""
    from . import stack

    stopped = stack.stack_down(_settings(ctx), purge=purge)
    out.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(ctx: typer.Context) -> None:
    """Show each component of the local stack; exit 1 if one is not reachable."""
    from . import stack

    status = stack.stack_status(_settings(ctx))
    out.print(stack.render(status))
    if not status.healthy:
        raise typer.Exit(1)


@app.command()
def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option(help="Keep redrawing, like top (Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks (rates).")] = 2.0,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            help="A worker's /metrics URL; repeat for each worker (default: the "
            "local worker's, from NOVACRON_WEB_HOST/PORT)."
        ),
    ] = None,
) -> None:
    """A running deployment: workers in the group, their partitions and lag, rates in
    and out, dead letters in the last minute, model versions served."""
    from aiokafka.errors import KafkaError

    from .status import default_metrics_url, run_status

    settings = _settings(ctx)
    try:
        asyncio.run(
            run_status(
                settings,
                out,
                metrics_urls=metrics or [default_metrics_url(settings)],
                interval_s=interval,
                watch=watch,
            )
        )
    except KafkaError as exc:
        console.print(
            f"[red]The broker at {settings.bootstrap_servers} did not answer ({exc}). Is the "
            "stack up (`make stack-up`), or is NOVACRON_KAFKA_BOOTSTRAP wrong?[/]"
        )
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


@app.command()
def worker(
    ctx: typer.Context,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run a stream worker (Faust) until stopped; several share the partitions."""
    from agents.lean_imports import decline_unused_imports

    decline_unused_imports()  # before the worker's modules import River
    from agents.worker import run_worker

    run_worker(_settings(ctx), loglevel=loglevel)


@app.command()
def produce(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(help="Samples per second, all entities together.")] = 200.0,
    links: Annotated[int, typer.Option(help="Number of links.")] = 8,
    hosts: Annotated[int, typer.Option(help="Number of hosts.")] = 0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: forever).")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many samples.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    batch_size: Annotated[int, typer.Option(help="Samples per message (1 = single).")] = 1,
    mode: Annotated[str, typer.Option(help="datacenter, internet or mixed.")] = "mixed",
    bad_fraction: Annotated[float, typer.Option(help="Fraction of bad messages.")] = 0.0,
    simulated_time: Annotated[
        bool, typer.Option(help="Event times on a fixed grid instead of the wall clock.")
    ] = False,
) -> None:
    """Write synthetic link (and host) telemetry to Kafka."""
    from tqdm import tqdm

    from .produce import produce as run_produce
    from .produce_messages import ProduceOptions, run_prefix

    options = ProduceOptions(
        rate=rate,
        links=links,
        hosts=hosts,
        duration_s=duration,
        count=count,
        seed=seed,
        batch_size=batch_size,
        mode=mode,
        bad_fraction=bad_fraction,
        time_mode="simulated" if simulated_time else "live",
        # event ids must not repeat across runs: a consumer dedupes on the prediction ids
        # made from them (a second run's samples would look like redeliveries)
        event_id_prefix=run_prefix("p"),
    )
    with tqdm(total=count, unit="sample", disable=not sys.stderr.isatty()) as bar:

        def progress(report: Any) -> None:
            bar.update(report.samples - bar.n)

        report = asyncio.run(run_produce(_settings(ctx), options, on_progress=progress))
    out.print(report)


@app.command()
def tail(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic to read, e.g. predictions.bandwidth.v1.")],
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
    key: Annotated[str | None, typer.Option(help="Only records with this key.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop after this many idle seconds.")
    ] = None,
) -> None:
    """Print records of an output topic, one readable line each."""
    from .tail import line_style
    from .tail import tail as run_tail

    def show(record: Any) -> None:
        style = None if record.error else line_style(record.topic, record.value)
        out.print(record.line(), style=style, highlight=False, markup=False)

    asyncio.run(
        run_tail(
            _settings(ctx),
            topic,
            from_beginning=from_beginning,
            limit=limit,
            key=key,
            timeout_s=timeout,
            on_record=show,
        )
    )


@app.command()
def replay(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV, JSONL or trace file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    kind: Annotated[str | None, typer.Option(help="link or host (default: inferred).")] = None,
    key: Annotated[str | None, typer.Option(help="Link/host id for rows without one.")] = None,
    mode: Annotated[str, typer.Option(help="Link mode for rows without one.")] = "datacenter",
    rename: Annotated[
        list[str] | None, typer.Option(help="Column rename OLD=NEW, repeatable.")
    ] = None,
    models: Annotated[
        str,
        typer.Option(
            help="registry: the active versions, as the worker serves them; "
            "baseline: the harmonic mean."
        ),
    ] = "registry",
) -> None:
    """Run the worker's pipeline over a file and write the records the worker would send."""
    from streams.sources import ReadOptions

    from .replaying import run_replay

    renames = dict(item.split("=", 1) for item in rename or [])
    options = ReadOptions(kind=kind, key=key, mode=mode, rename=renames)
    run = run_replay(_settings(ctx), input, output, options=options, models=models)
    for mode, ref in run.served.items():
        out.print(f"served {mode}: {ref}", highlight=False)
    out.print(run.report)


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[float | None, typer.Option(help="Seconds to run, then summarise.")] = None,
    rate: Annotated[float, typer.Option(help="Samples per second.")] = 100.0,
    links: Annotated[int, typer.Option(help="Number of links.")] = 6,
    drain: Annotated[
        float, typer.Option(help="Seconds to wait at the end for what is in flight.")
    ] = 60.0,
    summary: Annotated[
        Path | None, typer.Option(help="Also write the summary here as JSON.")
    ] = None,
) -> None:
    """Worker + synthetic telemetry on the local stack, with live predictions, alerts,
    classes and actions, and a summary that accounts for every message sent."""
    from .demo import run_demo

    code = run_demo(
        _settings(ctx),
        duration_s=duration,
        rate=rate,
        links=links,
        console=out,
        drain_s=drain,
        summary_path=summary,
    )
    raise typer.Exit(code)


@schemas_app.command("asyncapi")
def schemas_asyncapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = Path(
        "schemas/asyncapi.yaml"
    ),
) -> None:
    """Generate the AsyncAPI 3.0 document of every topic from schemas/."""
    from .asyncapi import write_asyncapi

    write_asyncapi(output)
    out.print(f"wrote {output}")


@train_app.command("bandwidth")
def train_bandwidth(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="datacenter or internet.")],
    data: Annotated[
        list[Path] | None, typer.Option(help="Telemetry file or folder (repeatable).")
    ] = None,
    synthetic: Annotated[bool, typer.Option(help="Also train on synthetic links.")] = True,
    synthetic_links: Annotated[int, typer.Option(help="Synthetic links.")] = 8,
    synthetic_length: Annotated[int, typer.Option(help="Samples per synthetic link.")] = 6000,
    epochs: Annotated[int | None, typer.Option(help="Max epochs (default: the mode's).")] = None,
    units: Annotated[
        str | None, typer.Option(help="LSTM units 'A,B' (default: the mode's).")
    ] = None,
    stride: Annotated[int, typer.Option(help="Keep every n-th training window.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    horizon: Annotated[int, typer.Option(help="Predict this many samples ahead.")] = 1,
    activate: Annotated[
        str, typer.Option(help="auto (if it beats the active), always, never.")
    ] = "auto",
) -> None:
    """Train the bandwidth LSTM, export it to ONNX and register it."""
    from agents.wiring import open_registry
    from models.bandwidth_training import TrainRequest
    from models.bandwidth_training import train_bandwidth as run_training

    from .reports import print_train_report

    if activate not in ("auto", "always", "never"):
        msg = (
            f"The 'activate' option must be one of {{'auto', 'always', 'never'}}. Got {activate!r}."
        )
        raise NovacronError(msg)
    parsed_units = tuple(int(u) for u in units.split(",")) if units else None
    request = TrainRequest(
        mode=mode,
        data=tuple(data or ()),
        synthetic=synthetic,
        synthetic_links=synthetic_links,
        synthetic_length=synthetic_length,
        epochs=epochs,
        units=parsed_units if parsed_units and len(parsed_units) == 2 else None,  # type: ignore[arg-type]
        stride=stride,
        seed=seed,
        horizon=horizon,
        activate=activate,  # type: ignore[arg-type]
        threads=_settings(ctx).tf_threads,
    )
    registry = open_registry(_settings(ctx))

    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        console.print(
            f"epoch {epoch:3d}  loss {logs.get('loss', float('nan')):.5f}  "
            f"val_loss {logs.get('val_loss', float('nan')):.5f}"
        )

    report = run_training(registry, request, on_epoch=on_epoch)
    print_train_report(report, out)


@eval_app.command("bandwidth")
def eval_bandwidth(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Folder of trace families (one subfolder each).")
    ],
    output: Annotated[Path, typer.Option(help="JSON results file.")] = Path(
        "bench/results/eval_bandwidth.json"
    ),
) -> None:
    """The served predictor vs last value, EWMA and harmonic mean, per trace family."""
    from .evaluate import evaluate_bandwidth, write_results
    from .reports import print_eval

    results = evaluate_bandwidth(_settings(ctx), directory)
    write_results(results, output, {"command": " ".join(sys.argv), "data": str(directory)})
    print_eval(results, out)
    out.print(f"wrote {output}")


@eval_app.command("anomalies")
def eval_anomalies(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            help="NAB-format folder: data/<family>/<file>.csv (timestamp,value) and "
            "labels/combined_windows.json (config/profiles.json optional)."
        ),
    ],
    output: Annotated[Path, typer.Option(help="JSON results file.")] = Path(
        "bench/results/eval_anomalies.json"
    ),
    plot: Annotated[
        Path | None, typer.Option(help="Write one PNG per series into this folder.")
    ] = None,
) -> None:
    """The worker's anomaly alerts scored with the Numenta Anomaly Benchmark's rules."""
    from tqdm import tqdm

    from .eval_anomalies import (
        check_consistent,
        evaluate_anomalies,
        plot_runs,
        published,
        replay_corpus,
        write_results,
    )
    from .reports import print_anomaly_eval

    settings = _settings(ctx)
    with tqdm(unit="series", disable=not sys.stderr.isatty(), leave=False) as bar:

        def progress(name: str) -> None:
            bar.set_description(name)
            bar.update()

        runs = replay_corpus(settings, directory, progress)
    check_consistent(settings, runs)
    profiles = directory / "config" / "profiles.json"
    results = evaluate_anomalies(settings, runs, profiles if profiles.exists() else None)
    write_results(results, runs, directory, output, {"command": " ".join(sys.argv)})
    print_anomaly_eval(results, published(directory), out)
    out.print(f"wrote {output}")
    if plot is not None:
        written = plot_runs(runs, results, plot)
        out.print(f"wrote {len(written)} plots to {plot}")


@eval_app.command("synthetic")
def eval_synthetic(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="datacenter or internet.")],
    links: Annotated[int, typer.Option(help="Synthetic links (as in training).")] = 8,
    length: Annotated[int, typer.Option(help="Samples per link (as in training).")] = 6000,
    seed: Annotated[int, typer.Option(help="Seed (as in training).")] = 0,
    output: Annotated[Path | None, typer.Option(help="JSON results file.")] = None,
) -> None:
    """The active model vs baselines on the synthetic test split of a mode."""
    import json

    from rich.table import Table

    from .evaluate import evaluate_synthetic

    results = evaluate_synthetic(_settings(ctx), mode, links=links, length=length, seed=seed)
    table = Table(title=f"synthetic {mode} test split ({links} links x {length}, seed {seed})")
    for column in ("predictor", "MAE", "±10%", "±20%", "coverage", "n"):
        table.add_column(column, justify="right")
    for name, m in results.items():
        cov = m.get("coverage")
        table.add_row(
            name,
            f"{m['mae']:.4g}",
            f"{100 * m['acc10']:.1f}%",
            f"{100 * m['acc20']:.1f}%",
            "" if cov is None else f"{100 * cov:.1f}%",
            str(int(m["n"])),
        )
    out.print(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": " ".join(sys.argv), "mode": mode, "results": results}
        output.write_text(json.dumps(payload, indent=2) + "\n")


@bench_app.command("inference")
def bench_inference(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option(help="JSON results file.")] = Path(
        "bench/results/inference.json"
    ),
    rounds: Annotated[int, typer.Option(help="Interleaved rounds per case.")] = 5,
) -> None:
    """Predictions/s and latency: the worker's predictor path vs bare onnxruntime."""
    import json

    from agents.wiring import model_source
    from models.lstm_predictor import LstmBandwidthPredictor

    from .bench_inference import bench_model
    from .reports import print_inference

    rows = []
    for mode, predictor in model_source(_settings(ctx))().items():
        if not isinstance(predictor, LstmBandwidthPredictor):
            out.print(f"{mode}: no LSTM active (serving {predictor.name}); skipped")
            continue
        rows.extend(bench_model(predictor, rounds=rounds))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    print_inference(rows, out)
    out.print(f"wrote {output}")


def main() -> None:
    """Console-script entry point: turns project errors into a message and exit 2."""
    try:
        app()
    except NovacronError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
