"""``novacron train workload`` (added to :mod:`novacron.cli`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agents.settings import Settings

out = Console()
console = Console(stderr=True)


def train_workload(
    ctx: typer.Context,
    hosts: Annotated[
        int,
        typer.Option(
            help="Synthetic training hosts, split evenly over the 11 workload types "
            "(validation: a fifth as many; held out: 150 per type, other ranges)."
        ),
    ] = 5500,
    seed: Annotated[int, typer.Option(help="Random seed (data and models).")] = 0,
    activate: Annotated[
        bool,
        typer.Option(
            "--activate/--no-activate",
            help="Activate the new version if its held-out macro-F1 matches or beats the "
            "active version's on the same hosts (or none is active); --no-activate only "
            "registers it.",
        ),
    ] = True,
) -> None:
    """Train the workload classifier (forest + KMeans), export one ONNX, register it."""
    from agents.wiring import open_registry
    from models.synthetic_workloads import LABELS
    from models.workload_training import WorkloadTrainRequest
    from models.workload_training import train_workload as run_training

    settings: Settings = ctx.obj
    per_type = max(2, -(-hosts // len(LABELS)))
    request = WorkloadTrainRequest(
        hosts_per_type=per_type,
        validation_per_type=max(1, per_type // 5),
        seed=seed,
        activate="auto" if activate else "never",
    )
    console.print(f"training on {per_type * len(LABELS)} synthetic hosts (seed {seed}) ...")
    report = run_training(open_registry(settings), request)
    trained = report.trained
    table = Table(title=f"{report.version.ref}: F1 on {trained.metrics['n']:.0f} held-out hosts")
    table.add_column("workload type")
    table.add_column("forest (ONNX)", justify="right")
    for name in trained.baselines:
        table.add_column(name.replace("_", " "), justify="right")
    rows = {"macro": "macro_f1", **{label: f"f1_{label}" for label in LABELS}}
    for title, key in rows.items():
        baseline_cells = [f"{figures[key]:.3f}" for figures in trained.baselines.values()]
        table.add_row(title, f"{trained.metrics[key]:.3f}", *baseline_cells)
    out.print(table)
    metrics = trained.metrics
    out.print(
        f"accuracy {metrics['accuracy']:.3f}, unknown {metrics['unknown_share']:.1%}"
        f" (threshold {trained.params['unknown_threshold']}); trained in "
        f"{trained.train_seconds:.0f} s; ONNX parity {trained.parity_max_abs:.1e}"
    )
    out.print(f"{report.version.ref}: {report.reason}")
