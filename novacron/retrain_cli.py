"""``novacron retrain``: retrain bandwidth models when the worker asks for it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from agents.settings import Settings
from streams.errors import ConfigError

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def parse_units(text: str | None) -> tuple[int, int] | None:
    """``"32,16"`` -> ``(32, 16)``; None keeps the mode's units.

    Examples:
        >>> parse_units("32,16"), parse_units(None)
        ((32, 16), None)
    """
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        msg = (
            "The '--units' option must be two positive integers 'A,B' (the two LSTM "
            f"layers, e.g. '32,16'). Got {text!r} instead."
        )
        raise ConfigError(msg)
    return int(parts[0]), int(parts[1])


def retrain_command(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option(help="Handle the requests there now, exit once the topic is idle.")
    ] = False,
    idle_exit: Annotated[
        float, typer.Option(help="With --once: exit after this many seconds without records.")
    ] = 10.0,
    cooldown: Annotated[
        float, typer.Option(help="Least seconds between two retrains of one model.")
    ] = 600.0,
    lookback: Annotated[
        float, typer.Option(help="Train on the link topic's records of the last N seconds.")
    ] = 3600.0,
    max_samples: Annotated[
        int, typer.Option(help="At most this many samples (the newest).")
    ] = 200_000,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping keeps the best).")] = 5,
    units: Annotated[
        str | None, typer.Option(help="LSTM units 'A,B' (default: the mode's).")
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Last fraction of each link's samples, held out.")
    ] = 0.2,
    synthetic_links: Annotated[
        int, typer.Option(help="Synthetic links of the mode mixed into training.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="TensorFlow threads (default: NOVACRON_TF_THREADS).")
    ] = None,
) -> None:
    """Consume retrain requests from model.events.v1, retrain the model on recent link
    telemetry, activate it only if it beats the active version on the recent holdout."""
    from models.recent_telemetry import utc
    from models.retraining import RetrainOptions

    from .retrain_loop import RetrainJobOptions, run_retrain_job

    settings: Settings = ctx.obj
    for name, value in (("--idle-exit", idle_exit), ("--cooldown", cooldown),
                        ("--lookback", lookback)):  # fmt: skip
        if value < 0 or (name == "--lookback" and value == 0):
            msg = f"The '{name}' option must be a positive number of seconds. Got {value!r}."
            raise ConfigError(msg)
    training = RetrainOptions(
        epochs=epochs,
        units=parse_units(units),
        max_samples=max_samples,
        holdout=holdout,
        synthetic_links=synthetic_links,
        seed=seed,
        threads=settings.tf_threads if threads is None else threads,
    )
    options = RetrainJobOptions(
        cooldown_s=cooldown,
        lookback_s=lookback,
        once=once,
        idle_exit_s=idle_exit,
        training=training,
    )
    console.print(
        f"retrain: reading {settings.topics.model_events} as group {settings.app_id}-retrain, "
        f"telemetry from {settings.topics.link}"
    )

    def say(text: str) -> None:
        console.print(text, markup=False)

    summary = asyncio.run(run_retrain_job(settings, options, say))
    out.print(
        f"requests {summary.requests}, retrains {summary.retrains} "
        f"({summary.activated} activated, {summary.rejected} rejected), "
        f"requests skipped {summary.skipped}"
    )
    for name, (count, ready_at) in summary.waiting.items():
        out.print(
            f"{name}: {count} request(s) wait for the cooldown (until {utc(ready_at)}); "
            "they stay uncommitted and the next run handles them"
        )
