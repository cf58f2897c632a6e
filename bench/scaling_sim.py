"""Scaling on real traces: Kubernetes' HPA against our policies (``novacron simulate
scaling``'s core on every trace), per trace and overall.

Writes bench/results/scaling_sim.json (per trace and overall: violation minutes, cost,
actions per policy and their ratios to HPA, the acceptance test, the frontiers) and
bench/results/scaling_sim/*.png (a capacity plot per trace, a frontier per trace and
overall).

    .venv/bin/python bench/scaling_sim.py                    # the shipped ensemble
    .venv/bin/python bench/scaling_sim.py --forecaster persistence
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.demand_traces import load_trace  # noqa: E402
from models.scaling_comparison import (  # noqa: E402
    HPA,
    MAX_EXTRA_COST,
    MIN_FEWER_VIOLATIONS,
    OURS_PREFIX,
    frontier_below,
    ours_name,
    simulate_trace,
)
from models.scaling_policy import POLICIES  # noqa: E402
from models.simulation import CapacityModel, default_capacity_per_instance  # noqa: E402
from models.simulation_report import plot_capacity, plot_frontier  # noqa: E402
from novacron.simulate_cli import load_forecaster  # noqa: E402

DEFAULT = ours_name("PREDICTIVE")
"""The worker's default policy: drawn in every trace's capacity plot."""
DATA = Path("/work/shared/data")
NAB = DATA / "nab" / "data"
TRACES = [
    (DATA / "workload" / "nasa_requests_per_minute.csv", "requests", "timestamp_local_utc-4"),
    *[
        (p, "value", "timestamp")
        for p in sorted((NAB / "realAWSCloudwatch").glob("ec2_cpu_utilization_*.csv"))
        + sorted((NAB / "realAWSCloudwatch").glob("rds_cpu_utilization_*.csv"))
    ],
    (NAB / "realAWSCloudwatch" / "elb_request_count_8c0756.csv", "value", "timestamp"),
    (NAB / "realKnownCause" / "cpu_utilization_asg_misconfiguration.csv", "value", "timestamp"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forecaster", default="auto", help="auto | ensemble | persistence | none")
    ap.add_argument("--forecaster-model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/scaling_sim.json")
    ap.add_argument("--plots", type=Path, default=ROOT / "bench/results/scaling_sim")
    ap.add_argument("--only", default="", help="Only traces whose name contains this.")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()

    forecaster = load_forecaster(args.forecaster, args.forecaster_model)
    per_trace: dict[str, Any] = {}
    comparisons = []
    started = time.perf_counter()
    for path, column, time_column in TRACES:
        if args.only not in path.stem:
            continue
        t0 = time.perf_counter()
        trace = load_trace(path, column, time_column)
        model = CapacityModel(default_capacity_per_instance(trace.demand))
        result = simulate_trace(trace, model, forecaster, frontier=True)
        comparisons.append(result)
        entry = result.to_json()
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        per_trace[trace.name] = entry
        _print_trace(entry)
        if not args.no_plots:
            best = entry["acceptance"]["best_ours"]
            names = [HPA, DEFAULT] + ([best] if best and best != DEFAULT else [])
            plot_capacity(result, trace, args.plots / f"{trace.name}.png", names)
            title = f"{trace.name}: cost / violation frontier"
            cost = result.runs[HPA].cost_instance_minutes
            plot_frontier(result.frontier, args.plots / f"{trace.name}_frontier.png", title, cost)
    overall = _overall(comparisons)
    if not args.no_plots and comparisons:
        cost = overall["policies"][HPA]["cost_instance_minutes"]
        plot_frontier(
            overall["frontier"], args.plots / "frontier.png", "All traces: cost / violations", cost
        )
    fixed = _fixed_policy_verdicts(per_trace)
    report = {
        "command": " ".join(sys.argv),
        "forecaster": comparisons[0].forecaster if comparisons else None,
        "criterion": f"at least {MIN_FEWER_VIOLATIONS:.0%} fewer violation minutes than HPA "
        f"at no more than {MAX_EXTRA_COST:.0%} more cost",
        "our_policies": {name: s.as_dict() for name, s in POLICIES.items()},
        "traces": per_trace,
        "overall": overall,
        "per_policy_over_traces": fixed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    _print_overall(overall, fixed)
    print(f"wrote {args.out}")


def _overall(comparisons: list[Any]) -> dict[str, Any]:
    """Sums over traces per policy, and per frontier setting."""
    if not comparisons:
        return {}
    names = list(comparisons[0].runs)
    policies: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = [c.runs[name] for c in comparisons]
        policies[name] = {
            "sla_violation_minutes": sum(r.sla_violation_minutes for r in runs),
            "cost_instance_minutes": sum(r.cost_instance_minutes for r in runs),
            "actions": sum(r.actions for r in runs),
        }
    hpa = policies[HPA]
    for figures in policies.values():
        figures["violations_vs_hpa"] = _ratio(
            figures["sla_violation_minutes"], hpa["sla_violation_minutes"]
        )
        figures["cost_vs_hpa"] = _ratio(
            figures["cost_instance_minutes"], hpa["cost_instance_minutes"]
        )
    frontier: dict[str, list[dict[str, Any]]] = {}
    for family in comparisons[0].frontier:
        points = []
        for i, p in enumerate(comparisons[0].frontier[family]):
            points.append(
                {
                    "setting": p["setting"],
                    "cost_instance_minutes": sum(
                        c.frontier[family][i]["cost_instance_minutes"] for c in comparisons
                    ),
                    "sla_violation_minutes": sum(
                        c.frontier[family][i]["sla_violation_minutes"] for c in comparisons
                    ),
                    "actions": sum(c.frontier[family][i]["actions"] for c in comparisons),
                }
            )
        frontier[family] = points
    passes = {
        name: bool(
            f["cost_instance_minutes"] <= hpa["cost_instance_minutes"] * (1 + MAX_EXTRA_COST)
            and f["sla_violation_minutes"] <= hpa["sla_violation_minutes"] * MIN_FEWER_VIOLATIONS
        )
        for name, f in policies.items()
        if name.startswith(OURS_PREFIX)
    }
    return {
        "policies": policies,
        "passes": passes,
        "frontier": frontier,
        "frontier_below_hpa": frontier_below(frontier),
    }


def _fixed_policy_verdicts(per_trace: dict[str, Any]) -> dict[str, Any]:
    """For each of our policies kept the same on every trace: the traces it passes."""
    out: dict[str, Any] = {}
    for name, entry in per_trace.items():
        for policy, ok in entry["acceptance"]["passes"].items():
            row = out.setdefault(policy, {"passes": [], "fails": []})
            row["passes" if ok else "fails"].append(name)
    return out


def _print_trace(entry: dict[str, Any]) -> None:
    pol = entry["policies"]
    hpa = pol[HPA]
    best = entry["acceptance"]["best_ours"]
    cells = []
    for name, f in pol.items():
        if name == HPA:
            continue
        v, c = f["violations_vs_hpa"], f["cost_vs_hpa"]
        mark = "*" if entry["acceptance"]["passes"].get(name) else " "
        short = name.replace(OURS_PREFIX, "")[:6]
        cells.append(f"{short} {_fmt(v)}/{c:.3f}{mark}")
    below = entry["frontier_below_hpa"]["below_everywhere"]
    print(
        f"{entry['trace'][:30]:30s} hpa {hpa['sla_violation_minutes']:7.0f} min "
        f"{hpa['cost_instance_minutes']:9.0f} inst-min | "
        + " ".join(cells)
        + f" | best {best} | frontier below: {below} ({entry['seconds']} s)",
        flush=True,
    )


def _print_overall(overall: dict[str, Any], fixed: dict[str, Any]) -> None:
    if not overall:
        return
    print("overall (sums over traces), violations and cost relative to HPA:")
    for name, f in overall["policies"].items():
        ok = overall["passes"].get(name)
        n_pass = len(fixed.get(name, {}).get("passes", []))
        n_all = n_pass + len(fixed.get(name, {}).get("fails", []))
        tail = (
            f"  passes {'yes' if ok else 'no '}  traces passed {n_pass}/{n_all}"
            if ok is not None
            else ""
        )
        print(
            f"  {name:28s} violations {_fmt(f['violations_vs_hpa'])}  cost "
            f"{_fmt(f['cost_vs_hpa'])}  actions {f['actions']}{tail}"
        )
    print(
        f"our frontier below HPA's everywhere: {overall['frontier_below_hpa']['below_everywhere']}"
    )


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:5.3f}"


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
