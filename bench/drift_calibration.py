"""How the drift monitor's settings were chosen: delay, misses and false alarms per setting.

Every candidate (River detectors fed the signal as it is, River's DummyDriftDetector at
the alarm rate of the detector it is compared with, and :class:`online.drift.DriftMonitor`
settings) runs on the same seeded streams of :mod:`online.drift_streams`, for each of the
two signals the worker monitors per link:

- stationary streams of 100,000 samples (links of several noise levels): confirmed
  drifts and warnings per 100,000 samples (a caller resets the monitor after a drift);
- changes (abrupt, gradual over 500 samples, variance only; three sizes each) at a
  random sample between 1,000 and 3,000: samples from the change to the first drift
  after it (median and p90 over seeds; a change with no drift within 2,000 samples is
  missed and counts as infinitely late), and the same for the first warning.

False alarms also count the samples before each change (the first 1,000-3,000 after a
start, where the reference is young). Each monitor's settings are the monitor candidate
with at most 1 confirmed drift and 20 warnings per 100,000 samples of no change, never
missing the required cases, whose median delay on the required abrupt changes (mean over
the sizes) is least; then the lowest warning threshold that keeps the warnings under 20.
The chosen settings are replayed on the throughput traces in ../shared/data/throughput
(residuals of the shipped internet LSTM, models/artifacts) and timed; the report says
whether online.drift's constants equal the choice. Usage::

    .venv/bin/python bench/drift_calibration.py            # 3-4 minutes on 2 cores
    .venv/bin/python bench/drift_calibration.py --quick    # fewer streams, 1-2 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from river import drift
from river.drift import binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online.drift import INPUT_SETTINGS, RESIDUAL_SETTINGS, DriftMonitor, DriftSettings  # noqa: E402
from online.drift_streams import Change, level_stream, residual_stream  # noqa: E402

HORIZON = 2_000
CHANGE_FROM, CHANGE_TO = 1_000, 3_000
STATIONARY_N = 100_000
FA_TARGET = 1.0  # confirmed drifts per 100,000 stationary samples
WARN_TARGET = 20.0  # warnings per 100,000 stationary samples
WARNING_RATIOS = (0.25, 0.4, 0.6)
TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "throughput"
CPUS = min(os.cpu_count() or 1, 2)


@dataclass(frozen=True)
class Signal:
    name: str
    generate: Callable[..., np.ndarray]
    stationary_sds: tuple[float, ...]
    change_sd: float
    cases: tuple[tuple[str, float], ...]
    mode: str
    required: tuple[str, ...]  # abrupt cases the chosen monitor must never miss, scored
    never_missed: tuple[str, ...]  # other cases the chosen monitor must never miss


SIGNALS = {
    "residual": Signal(
        "residual", residual_stream, (0.03, 0.05, 0.1, 0.2), 0.05,
        tuple((k, s) for k in ("abrupt", "gradual") for s in (0.1, 0.2, 0.3))
        + tuple(("variance", s) for s in (1.5, 2.0, 3.0)),
        "up", ("abrupt 0.1", "abrupt 0.2", "abrupt 0.3"), ("variance 3",),
    ),
    "input": Signal(
        "input", level_stream, (0.1, 0.2, 0.3), 0.2,
        tuple((k, s) for k in ("abrupt", "gradual") for s in (0.8, 0.5, 0.25))
        + tuple(("variance", s) for s in (1.5, 2.0, 3.0)),
        "both", ("abrupt 0.5", "abrupt 0.25"), (),
    ),
}  # fmt: skip


class Detector:
    """One candidate on one stream: ``update`` returns ``None``, ``"warning"`` or ``"drift"``."""

    def update(self, x: float) -> str | None:
        raise NotImplementedError


class RiverDetector(Detector):
    """A River detector as River writes it (it resets itself after a drift)."""

    def __init__(self, det: Any, transform: Callable[[float], Any] | None = None) -> None:
        self.det = det
        self.transform = transform

    def update(self, x: float) -> str | None:
        self.det.update(self.transform(x) if self.transform else x)
        return "drift" if self.det.drift_detected else None


class MonitorDetector(Detector):
    """A DriftMonitor, reset after each drift as the caller does."""

    def __init__(self, settings: DriftSettings) -> None:
        self.monitor = DriftMonitor(settings)

    def update(self, x: float) -> str | None:
        event = self.monitor.update(x)
        if event == "drift":
            self.monitor.reset()
        return event


@dataclass(frozen=True)
class Candidate:
    name: str
    family: str  # "river", "dummy" or "monitor"
    make: Callable[[int, int], Detector]  # (seed, stream length) -> detector
    settings: DriftSettings | None = None


def river(factory: Callable[[], Any], transform: Callable[[float], Any] | None = None) -> Any:
    """A ``make`` for a River detector built by ``factory`` (seed and length unused)."""

    def make(seed: int, n: int) -> Detector:
        return RiverDetector(factory(), transform)

    return make


def monitor_candidate(name: str, settings: DriftSettings) -> Candidate:
    return Candidate(name, "monitor", lambda seed, n: MonitorDetector(settings), settings)


def river_candidates(signal: Signal) -> list[Candidate]:
    out = [Candidate("PageHinkley() River defaults", "river", river(drift.PageHinkley))]
    if signal.name == "residual":
        thresholds, deltas, cut = (1.0, 2.0, 5.0, 10.0), (0.005, 0.02), 0.15
    else:
        thresholds, deltas, cut = (5.0, 10.0, 20.0, 40.0), (0.01, 0.05), 0.0
    for t in thresholds:
        for d in deltas:
            name = f"PageHinkley(threshold={t:g}, delta={d:g}, mode={signal.mode!r})"
            factory = partial(drift.PageHinkley, delta=d, threshold=t, mode=signal.mode)
            out.append(Candidate(name, "river", river(factory)))
    for d in (0.002, 1e-4, 1e-6):
        out.append(Candidate(f"ADWIN(delta={d:g})", "river", river(partial(drift.ADWIN, d))))
    if signal.name == "residual":
        for cls in (binary.DDM, binary.HDDMA, binary.FHDDM):
            name = f"{cls.__name__}() on 1[x > {cut}]"
            out.append(Candidate(name, "river", river(cls, lambda x: x > cut)))
    return out


def monitor_grid(signal: Signal) -> list[Candidate]:
    out = []
    river_like = DriftSettings(
        mode=signal.mode, ph_delta=0.005, ph_threshold=50.0, warning_threshold=20.0,
        ph_alpha=1 - 1e-4, adwin_delta=0.002,
    )  # fmt: skip
    out.append(monitor_candidate("monitor, River's PageHinkley defaults on z", river_like))
    grid: Iterable[tuple[float, float, float, float, str]]
    if signal.name == "residual":
        grid = [
            *((0.01, 5.0, d, t, "ph")
              for d in (0.5, 0.75, 1.0)
              for t in (50.0, 75.0, 100.0, 150.0, 200.0)),
            *((0.01, 3.0, d, t, "ph") for d in (0.5, 0.75) for t in (50.0, 75.0, 100.0)),
            *((0.01, 5.0, d, t, confirm)
              for d, t in ((0.5, 100.0), (1.0, 50.0))
              for confirm in ("either", "both")),
        ]  # fmt: skip
    else:
        grid = (
            (min_scale, 5.0, d, t, "ph")
            for min_scale in (0.01, 0.2)
            for d in (0.5, 1.0, 2.0)
            for t in (100.0, 200.0, 400.0)
        )
    for min_scale, clip, d, t, confirm in grid:
        s = DriftSettings(
            min_scale=min_scale, clip=clip, mode=signal.mode, ph_delta=d, ph_threshold=t,
            warning_threshold=0.4 * t, ph_alpha=1.0, confirm=confirm,
            adwin_delta=1e-3 if confirm == "both" else 1e-5,
        )  # fmt: skip
        out.append(monitor_candidate(describe(s), s))
    if signal.name == "residual":  # River's forgetting factor on a grid point
        s = DriftSettings(
            clip=3.0, mode=signal.mode, ph_delta=0.75, ph_threshold=50.0, warning_threshold=20.0,
            ph_alpha=1 - 1e-4,
        )  # fmt: skip
        out.append(monitor_candidate(describe(s), s))
    return out


def describe(s: DriftSettings) -> str:
    """The settings a grid varies (the others are the defaults of every candidate)."""
    shown = ["min_scale", "clip", "ph_delta", "ph_threshold", "warning_threshold", "confirm"]
    if s.confirm != "ph":
        shown.append("adwin_delta")
    if s.ph_alpha != 1.0:
        shown.append("ph_alpha")
    return "monitor(" + ", ".join(f"{name}={getattr(s, name)!r}" for name in shown) + ")"


# Streams, built once in the parent and shared with the forked workers.
STREAMS: dict[str, dict[str, Any]] = {}
CANDIDATES: dict[str, list[Candidate]] = {}


def build_streams(quick: bool) -> None:
    n_stationary = 2 if quick else 8
    n_seeds = 5 if quick else 12
    for name, signal in SIGNALS.items():
        stationary = [
            signal.generate(STATIONARY_N, seed=10_000 + i,
                            sd=signal.stationary_sds[i % len(signal.stationary_sds)]).tolist()
            for i in range(n_stationary)
        ]  # fmt: skip
        changes = {}
        for kind, size in signal.cases:
            runs = []
            for seed in range(n_seeds):
                at = int(np.random.default_rng(seed).integers(CHANGE_FROM, CHANGE_TO))
                x = signal.generate(at + HORIZON, seed=seed, sd=signal.change_sd,
                                    change=Change(kind, at, size))  # fmt: skip
                runs.append((at, x.tolist()))
            changes[f"{kind} {size:g}"] = runs
        STREAMS[name] = {"stationary": stationary, "changes": changes}
    cycle = [
        level_stream(STATIONARY_N, seed=20_000 + i, sd=0.2, cycle=0.35).tolist()
        for i in range(1 if quick else 2)
    ]
    STREAMS["input"]["cycle"] = cycle


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="lower"))


def summarise_delays(delays: list[float]) -> dict[str, float | int | None]:
    def finite(v: float) -> float | None:
        return None if math.isinf(v) else v

    return {
        "median": finite(percentile(delays, 50)),
        "p90": finite(percentile(delays, 90)),
        "missed": sum(math.isinf(d) for d in delays),
        "runs": len(delays),
    }


def evaluate(job: tuple[str, int]) -> dict[str, Any]:
    signal_name, index = job
    cand = CANDIDATES[signal_name][index]
    streams = STREAMS[signal_name]
    started = time.perf_counter()
    drifts = warnings = samples = 0
    for i, x in enumerate(streams["stationary"]):
        det = cand.make(10_000 + i, len(x))
        for v in x:
            e = det.update(v)
            if e == "drift":
                drifts += 1
            elif e == "warning":
                warnings += 1
        samples += len(x)
    out: dict[str, Any] = {
        "name": cand.name,
        "family": cand.family,
        "settings": dataclasses.asdict(cand.settings) if cand.settings else None,
        "stationary": {
            "samples": samples,
            "drifts_per_100k": round(drifts * 1e5 / samples, 3),
            "warnings_per_100k": round(warnings * 1e5 / samples, 3),
        },
    }
    if "cycle" in streams and cand.family != "dummy":
        cyc_d = cyc_w = cyc_n = 0
        for i, x in enumerate(streams["cycle"]):
            det = cand.make(20_000 + i, len(x))
            for v in x:
                e = det.update(v)
                cyc_d += e == "drift"
                cyc_w += e == "warning"
            cyc_n += len(x)
        out["daily_cycle"] = {
            "samples": cyc_n,
            "drifts_per_100k": round(cyc_d * 1e5 / cyc_n, 3),
            "warnings_per_100k": round(cyc_w * 1e5 / cyc_n, 3),
        }
    cases = {}
    pre_drifts = pre_warnings = pre_samples = 0
    for case, runs in streams["changes"].items():
        delays, warn_delays, lead = [], [], []
        warned_before = 0
        for seed, (at, x) in enumerate(runs):
            det = cand.make(seed, len(x))
            first_drift = first_warn = math.inf
            for t, v in enumerate(x):
                e = det.update(v)
                if e is None:
                    continue
                if t < at:
                    pre_drifts += e == "drift"
                    pre_warnings += e == "warning"
                    continue
                if e == "warning" and math.isinf(first_warn):
                    first_warn = t - at
                if e == "drift":
                    first_drift = t - at
                    break
            pre_samples += at
            delays.append(first_drift)
            warn_delays.append(min(first_warn, first_drift))
            if not math.isinf(first_drift):
                warned_before += first_warn < first_drift
                lead.append(first_drift - min(first_warn, first_drift))
        cases[case] = {
            "drift": summarise_delays(delays),
            "warning_or_drift": summarise_delays(warn_delays),
            "warned_strictly_before": warned_before,
            "median_warning_lead": statistics.median(lead) if lead else None,
        }
    out["cases"] = cases
    out["before_changes"] = {
        "samples": pre_samples,
        "drifts_per_100k": round(pre_drifts * 1e5 / pre_samples, 3),
        "warnings_per_100k": round(pre_warnings * 1e5 / pre_samples, 3),
    }
    # The rule's false alarm rates pool the long stationary streams with the first
    # 1,000-3,000 samples after a start, where the reference is young.
    total = samples + pre_samples
    out["false_alarms"] = {
        "samples": total,
        "drifts_per_100k": round((drifts + pre_drifts) * 1e5 / total, 3),
        "warnings_per_100k": round((warnings + pre_warnings) * 1e5 / total, 3),
    }
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def abrupt_score(result: dict[str, Any], signal: Signal) -> float:
    """Mean median delay over the required abrupt cases; infinite if one was ever missed."""
    cases = [result["cases"][name]["drift"] for name in signal.required]
    if any(c["missed"] for c in cases):
        return math.inf
    return float(statistics.mean(c["median"] for c in cases))


def eligible(result: dict[str, Any], signal: Signal) -> bool:
    st = result["false_alarms"]
    return (
        result["family"] == "monitor"
        and st["drifts_per_100k"] <= FA_TARGET
        and st["warnings_per_100k"] <= WARN_TARGET
        and math.isfinite(abrupt_score(result, signal))
        and not any(result["cases"][name]["drift"]["missed"] for name in signal.never_missed)
    )


def choose(results: list[dict[str, Any]], signal: Signal) -> dict[str, Any] | None:
    ok = [r for r in results if eligible(r, signal)]
    if not ok:
        return None
    return min(ok, key=lambda r: (abrupt_score(r, signal), r["false_alarms"]["drifts_per_100k"]))


def run_jobs(signal_name: str, candidates: list[Candidate]) -> list[dict[str, Any]]:
    start = len(CANDIDATES.setdefault(signal_name, []))
    CANDIDATES[signal_name].extend(candidates)
    jobs = [(signal_name, start + i) for i in range(len(candidates))]
    # Forked after the candidates are listed: the workers share STREAMS and CANDIDATES.
    with multiprocessing.get_context("fork").Pool(CPUS) as pool:
        results: list[dict[str, Any]] = pool.map(evaluate, jobs, chunksize=1)
    for r in results:
        fa = r["false_alarms"]
        print(f"  {signal_name:8s} {r['name'][:90]:90s} FA {fa['drifts_per_100k']:7.2f}"
              f" W {fa['warnings_per_100k']:7.2f}"
              f" abrupt {abrupt_score(r, SIGNALS[signal_name]):8.1f}"
              f" ({r['seconds']:.1f} s)", flush=True)  # fmt: skip
    return results


def dummy(method: str, t0: int, seed: int, n: int) -> Detector:
    """River's DummyDriftDetector at a uniformly random phase of its period ``t0``.

    Its period starts at its first update; ``k`` updates before the stream put the
    stream's start at phase ``k``. When its first alarm would fall after the stream's
    end anyway, the burn-in is skipped (it changes nothing and would cost ``t0`` updates).
    """
    w = 0 if method == "fixed" else max(t0 // 10, 1)
    det = drift.DummyDriftDetector(method, t_0=t0, w=w, seed=seed)
    k = int(np.random.default_rng(seed).integers(t0))
    if t0 - k < n:
        for _ in range(k):
            det.update(0.0)
    return RiverDetector(det)


def dummy_candidates(rate_per_100k: float, label: str, total: int) -> list[Candidate]:
    """Chance: River's DummyDriftDetector firing every ``t_0`` samples on average, where
    ``t_0`` gives the rate of ``label`` (once per all stationary samples if it had none)."""
    t0 = int(round(1e5 / rate_per_100k)) if rate_per_100k > 0 else total
    return [
        Candidate(
            f"DummyDriftDetector({method!r}, t_0={t0}): rate of {label}",
            "dummy",
            partial(dummy, method, t0),
        )
        for method in ("fixed", "random")
    ]


def calibrate(signal: Signal) -> dict[str, Any]:
    print(f"{signal.name}: grid", flush=True)
    results = run_jobs(signal.name, river_candidates(signal) + monitor_grid(signal))
    chosen = choose(results, signal)
    if chosen is None:  # nothing meets the targets: the fewest false alarms
        chosen = min((r for r in results if r["family"] == "monitor"),
                     key=lambda r: (r["false_alarms"]["drifts_per_100k"],
                                    abrupt_score(r, signal)))  # fmt: skip
    base = DriftSettings(**chosen["settings"])
    stage2 = [
        monitor_candidate(
            describe(dataclasses.replace(base, warning_threshold=ratio * base.ph_threshold)),
            dataclasses.replace(base, warning_threshold=ratio * base.ph_threshold),
        )
        for ratio in WARNING_RATIOS
        if not math.isclose(ratio * base.ph_threshold, base.warning_threshold)
    ]
    print(f"{signal.name}: warning thresholds of {chosen['name']}", flush=True)
    stage2_results = run_jobs(signal.name, stage2)
    final = min(
        (r for r in [chosen, *stage2_results]
         if r["false_alarms"]["warnings_per_100k"] <= WARN_TARGET
         and r["false_alarms"]["drifts_per_100k"] <= max(
             FA_TARGET, chosen["false_alarms"]["drifts_per_100k"])),
        key=lambda r: r["settings"]["warning_threshold"],
        default=chosen,
    )  # fmt: skip
    total = final["false_alarms"]["samples"]
    river_default = results[0]
    dummies = dummy_candidates(
        final["false_alarms"]["drifts_per_100k"], "the chosen monitor", total
    ) + dummy_candidates(river_default["false_alarms"]["drifts_per_100k"], "PageHinkley()", total)
    print(f"{signal.name}: chance baselines", flush=True)
    dummy_results = run_jobs(signal.name, dummies)
    return {
        "results": results + stage2_results + dummy_results,
        "chosen": final["name"],
        "chosen_settings": final["settings"],
    }


def replay_traces(settings: dict[str, DriftSettings]) -> dict[str, Any]:
    """Both monitors over every trace file, fed the shipped internet LSTM's residuals."""
    from models.datasets import read_directory
    from models.features import series_windows
    from models.lstm_predictor import LstmBandwidthPredictor, model_name

    path = Path(__file__).resolve().parents[1] / "models" / "artifacts"
    predictor = LstmBandwidthPredictor.load(
        path / f"{model_name('internet')}.onnx", name=model_name("internet"), version="shipped"
    )
    out: dict[str, Any] = {"model": "bandwidth-lstm-internet (models/artifacts, shipped)"}
    totals: dict[str, dict[str, int]] = {}
    for folder in ("fcc", "hsdpa_norway"):
        series = read_directory(TRACES / folder)
        counts: dict[str, dict[str, int]] = {}
        for s in series:
            raw, actual, _ = series_windows(
                s.values, predictor.window_steps, predictor.horizon_steps, predictor.min_history
            )
            predicted = predictor.predict(raw).point
            with np.errstate(divide="ignore", invalid="ignore"):
                signals = {
                    "residual": np.minimum(np.abs(np.log(actual / predicted)), 2.0),
                    "input": np.log(actual),
                }
            signals["PageHinkley() on the residual"] = signals["residual"]
            for name, x in signals.items():
                c = counts.setdefault(name, {"files": 0, "fed": 0, "monitored": 0, "warnings": 0,
                                             "drifts": 0, "files_with_drift": 0})  # fmt: skip
                c["files"] += 1
                if name in settings:
                    m = DriftMonitor(settings[name])
                    drifted = False
                    for v in x.tolist():
                        e = m.update(v)
                        if math.isfinite(v):
                            c["fed"] += 1
                            c["monitored"] += m.seen > settings[name].warmup or e is not None
                        c["warnings"] += e == "warning"
                        if e == "drift":
                            c["drifts"] += 1
                            drifted = True
                            m.reset()
                else:
                    ph = drift.PageHinkley()
                    drifted = False
                    for v in x[np.isfinite(x)].tolist():
                        ph.update(v)
                        c["fed"] += 1
                        c["monitored"] += 1
                        if ph.drift_detected:
                            c["drifts"] += 1
                            drifted = True
                c["files_with_drift"] += drifted
        for name, c in counts.items():
            t = totals.setdefault(name, dict.fromkeys(c, 0))
            for k, v in c.items():
                t[k] += v
        out[folder] = {name: rates(c) for name, c in counts.items()}
    out["overall"] = {name: rates(c) for name, c in totals.items()}
    return out


def rates(c: dict[str, int]) -> dict[str, float | int]:
    fed = max(c["fed"], 1)
    monitored = max(c["monitored"], 1)
    return c | {
        "warnings_per_100k": round(c["warnings"] * 1e5 / fed, 1),
        "drifts_per_100k": round(c["drifts"] * 1e5 / fed, 1),
        "warnings_per_100k_monitored": round(c["warnings"] * 1e5 / monitored, 1),
        "drifts_per_100k_monitored": round(c["drifts"] * 1e5 / monitored, 1),
    }


def cost(settings: dict[str, DriftSettings]) -> dict[str, Any]:
    """Seconds per update (median of 5 runs over 100,000 values), snapshot size and time."""
    streams = {
        "residual": residual_stream(STATIONARY_N, seed=1).tolist(),
        "input": level_stream(STATIONARY_N, seed=1).tolist(),
    }
    out: dict[str, Any] = {}

    def per_update(make: Callable[[], Any], xs: list[float], river: bool) -> float:
        runs = []
        for _ in range(5):
            det = make()
            t = time.perf_counter()
            if river:
                for v in xs:
                    det.update(v)
                    _ = det.drift_detected
            else:
                for v in xs:
                    if det.update(v) == "drift":
                        det.reset()
            runs.append((time.perf_counter() - t) / len(xs) * 1e6)
        return round(statistics.median(runs), 2)

    for name, s in settings.items():
        xs = streams[name]
        m = DriftMonitor(s)
        fresh = len(m.dumps())
        for v in xs:
            if m.update(v) == "drift":
                m.reset()
        blob = m.dumps()
        reps = 2_000
        round_trips = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                DriftMonitor.loads(m.dumps())
            round_trips.append((time.perf_counter() - t) / reps * 1e6)
        out[name] = {
            "us_per_update": per_update(partial(DriftMonitor, s), xs, river=False),
            "snapshot_bytes_fresh": fresh,
            "snapshot_bytes_after_100k": len(blob),
            "dumps_plus_loads_us": round(statistics.median(round_trips), 1),
        }
    xs = streams["residual"]
    out["river PageHinkley alone"] = {"us_per_update": per_update(drift.PageHinkley, xs, True)}
    out["river ADWIN alone"] = {"us_per_update": per_update(drift.ADWIN, xs, True)}
    return out


def fmt_delay(d: dict[str, Any]) -> str:
    med = "–" if d["median"] is None else f"{d['median']:.0f}"
    p90 = "–" if d["p90"] is None else f"{d['p90']:.0f}"
    miss = f" ({d['missed']}/{d['runs']} missed)" if d["missed"] else ""
    return f"{med} / {p90}{miss}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Drift monitor calibration",
        "",
        f"`{report['command']}`, {report['measured_at']}, {report['seconds']:.0f} s on "
        f"{report['cpus']} CPUs. Stationary: {report['stationary_streams']} streams of "
        f"100,000 samples per signal; changes: {report['seeds']} seeds per case, change "
        f"at a random sample in [{CHANGE_FROM}, {CHANGE_TO}), missed = no drift within "
        f"{HORIZON} samples. Delays are samples from the change to the first confirmed "
        "drift, median / p90 over seeds (a miss counts as infinitely late: `–`).",
        "",
        "False alarms per 100,000 samples: `stationary; young`, on the stationary streams "
        "and on the samples before each change (the first 1,000-3,000 after a start, where "
        "the reference is young). Warnings are counted for the monitor only (River's "
        "detectors have one tier).",
        "",
        f"Rule: a monitor candidate with at most {FA_TARGET:g} confirmed drift and "
        f"{WARN_TARGET:g} warnings per 100,000 samples (stationary and young pooled), "
        "never missing the required cases (residual: every abrupt change and variance x3; "
        "input: the level halving or quartering), least mean median delay on those abrupt "
        "changes; then the lowest warning threshold (0.25, 0.4 or 0.6 of the drift "
        "threshold) that keeps the warnings under the target.",
        "",
    ]
    for name, sig in report["signals"].items():
        cases = list(SIGNALS[name].cases)
        lines += [
            f"## {name} (chosen: `{sig['chosen']}`)",
            "",
            "| detector | false drifts /100k | false warnings /100k | "
            + " | ".join(f"{k} {s:g}" for k, s in cases)
            + " |",
            "|---|---:|---:|" + "---:|" * len(cases),
        ]
        for r in sig["results"]:
            mark = "**" if r["name"] == sig["chosen"] else ""
            cells = [fmt_delay(r["cases"][f"{k} {s:g}"]["drift"]) for k, s in cases]
            st, young = r["stationary"], r["before_changes"]
            drifts = f"{st['drifts_per_100k']:g}; {young['drifts_per_100k']:g}"
            warn = (
                f"{st['warnings_per_100k']:g}; {young['warnings_per_100k']:g}"
                if r["family"] == "monitor"
                else "–"
            )
            lines.append(
                f"| {mark}{r['name']}{mark} | {drifts} | {warn} | " + " | ".join(cells) + " |"
            )
        chosen = next(r for r in sig["results"] if r["name"] == sig["chosen"])
        lines += [
            "",
            "Chosen monitor, first warning (or the drift) after the change, median / p90, "
            "and how many detected changes were warned strictly before the drift:",
            "",
            "| case | warning | warned before drift | median lead (samples) |",
            "|---|---:|---:|---:|",
        ]
        for case, c in chosen["cases"].items():
            detected = c["drift"]["runs"] - c["drift"]["missed"]
            lines.append(
                f"| {case} | {fmt_delay(c['warning_or_drift'])} | "
                f"{c['warned_strictly_before']}/{detected} | {c['median_warning_lead']} |"
            )
        if "daily_cycle" in chosen:
            dc = chosen["daily_cycle"]
            lines += [
                "",
                f"Stationary level with a daily cycle (amplitude 0.35 in log, "
                f"{dc['samples']:,} samples): {dc['drifts_per_100k']:g} drifts and "
                f"{dc['warnings_per_100k']:g} warnings per 100,000 samples.",
            ]
        lines.append("")
    real = report["traces"]
    lines += [
        "## Throughput traces",
        "",
        f"Residuals of {real['model']}; input = log(bandwidth) of the target sample. "
        "Each file is one link: fresh monitors, reset after each drift. Rates per 100,000 "
        "samples fed; `monitored` = samples after the warm-up.",
        "",
        "| folder | signal | files | fed | monitored | warnings | drifts | files with a drift "
        "| warnings /100k fed (monitored) | drifts /100k fed (monitored) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for folder in ("fcc", "hsdpa_norway", "overall"):
        for name, c in real[folder].items():
            lines.append(
                f"| {folder} | {name} | {c['files']} | {c['fed']} | {c['monitored']} | "
                f"{c['warnings']} | {c['drifts']} | {c['files_with_drift']} | "
                f"{c['warnings_per_100k']} ({c['warnings_per_100k_monitored']}) | "
                f"{c['drifts_per_100k']} ({c['drifts_per_100k_monitored']}) |"
            )
    lines += ["", "## Cost", "", "| monitor | µs per update | snapshot bytes (fresh / "
              "after 100k) | dumps+loads µs |", "|---|---:|---:|---:|"]  # fmt: skip
    for name, c in report["cost"].items():
        snap = (
            f"{c['snapshot_bytes_fresh']} / {c['snapshot_bytes_after_100k']}"
            if "snapshot_bytes_fresh" in c
            else "–"
        )
        lines.append(
            f"| {name} | {c['us_per_update']} | {snap} | {c.get('dumps_plus_loads_us', '–')} |"
        )
    lines += [
        "",
        f"Shipped constants equal the choice: {report['constants_match']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer streams and seeds")
    parser.add_argument(
        "--output", type=Path, default=None,
        help="path without suffix (default bench/results/drift_calibration, or "
        "bench/results/drift_calibration_quick with --quick)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.output is None:
        stem = "drift_calibration_quick" if args.quick else "drift_calibration"
        args.output = Path("bench/results") / stem
    started = time.perf_counter()
    build_streams(args.quick)
    signals = {signal.name: calibrate(signal) for signal in SIGNALS.values()}
    chosen = {name: DriftSettings(**sig["chosen_settings"]) for name, sig in signals.items()}
    shipped = {"residual": RESIDUAL_SETTINGS, "input": INPUT_SETTINGS}
    # Timed before the traces: onnxruntime's threads spin for a while after a run.
    print("cost", flush=True)
    timing = cost(shipped)
    print("traces", flush=True)
    traces = replay_traces(shipped)
    report = {
        "command": " ".join(["bench/drift_calibration.py", *sys.argv[1:]]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": CPUS,
        "stationary_streams": len(STREAMS["residual"]["stationary"]),
        "seeds": len(next(iter(STREAMS["residual"]["changes"].values()))),
        "targets": {"drifts_per_100k": FA_TARGET, "warnings_per_100k": WARN_TARGET},
        "signals": signals,
        "constants_match": {name: chosen[name] == shipped[name] for name in chosen},
        "shipped": {name: dataclasses.asdict(s) for name, s in shipped.items()},
        "traces": traces,
        "cost": timing,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.output}.md").write_text(markdown(report))
    print(json.dumps({"chosen": {k: v["chosen"] for k, v in signals.items()},
                      "constants_match": report["constants_match"],
                      "seconds": report["seconds"]}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
