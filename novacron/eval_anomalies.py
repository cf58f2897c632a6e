"""``novacron eval anomalies DIR``: the worker's anomaly alerts scored on NAB-format data.

Each series (``DIR/data/<family>/<file>.csv``, ``timestamp,value``) is replayed as one
host's single-metric telemetry through the worker's pipeline (the same processors,
model and alert lifecycle, an in-memory window store). A NAB detection is an alert
**opening**: updates and the resolve of an open alert are one incident, as on-call
sees it. Scored with the Numenta Anomaly Benchmark's rules (:mod:`models.nab`): per
file, per family and over the corpus, normalised between the detector that never
fires (0) and the perfect one (100), for the three NAB profiles.

Threshold procedure (the same for every corpus, never per file): the replay records
each sample's anomaly score once; the alert lifecycle is then re-run on those scores
for every threshold of :data:`THRESHOLDS` with all other alert settings as the worker
has them, and the threshold with the best corpus score is reported beside the score at
the worker's own threshold (``NOVACRON_ALERT_THRESHOLD``), which is the number to
quote for a corpus the threshold was not tuned on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from agents.settings import Settings
from agents.wiring import model_source, pipeline_for
from models.nab import (
    LabelledSeries,
    Profile,
    load_corpus,
    load_profiles,
    normalised,
    null_and_perfect,
    score_file,
)
from models.serving import ModelHolder
from streams.alerts import AlertPolicy, AlertTracker
from streams.detector import AnomalyScore
from streams.errors import InputFileError
from streams.pipeline import RawMessage
from streams.records import MetricView, SourceRef
from streams.store import InMemoryWindowStore

THRESHOLDS: tuple[float, ...] = tuple(round(0.3 + 0.025 * i, 3) for i in range(27))
"""Candidate alert thresholds of the sweep: 0.300, 0.325, ..., 0.950."""

METRIC = "value"
"""The metric name a NAB series is replayed as (anomaly type ``general``)."""

BATCH = 500
"""Messages per pipeline batch in the replay (the result does not depend on it)."""


@dataclass(slots=True)
class SeriesRun:
    """One series as the pipeline scored it."""

    series: LabelledSeries
    scores: np.ndarray
    opened: np.ndarray
    """Rows where the worker's pipeline opened an alert (at the worker's threshold)."""


@dataclass(slots=True)
class ProfileResult:
    """A profile's scores: at the worker's threshold and at the corpus-best one."""

    profile: str
    worker_threshold: float
    worker_score: float
    best_threshold: float
    best_score: float
    families: dict[str, float] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    sweep: dict[float, float] = field(default_factory=dict)


def _messages(series: LabelledSeries) -> list[RawMessage]:
    key = series.name.removesuffix(".csv").replace("/", ".")
    out = []
    for row, (ts, value) in enumerate(zip(series.timestamps, series.values, strict=True)):
        body = orjson.dumps({"host_id": key, "ts": float(ts), "metrics": {METRIC: float(value)}})
        out.append(RawMessage(body, SourceRef("telemetry.host.v1", file=series.name, row=row)))
    return out


async def _replay(settings: Settings, series: LabelledSeries) -> SeriesRun:
    holder = ModelHolder(model_source(settings, "baseline"))
    store = InMemoryWindowStore(settings.window_size)
    pipeline = pipeline_for(settings, holder, store, time.time, with_scores=True)
    messages = _messages(series)
    rows = {m.source.event_id(): i for i, m in enumerate(messages)}
    scores = np.zeros(len(messages))
    opened = np.zeros(len(messages), dtype=bool)
    alerts_topic = settings.topics.alerts
    for start in range(0, len(messages), BATCH):
        outcome = await pipeline.handle("host", messages[start : start + BATCH])
        if outcome.dead_letters:
            first = outcome.dead_letters[0]
            msg = (
                f"{series.name}: {len(outcome.dead_letters)} rows were refused "
                f"({first.error_kind}: {first.reason}); fix or remove them"
            )
            raise InputFileError(msg)
        for line in outcome.scores:
            doc = orjson.loads(line.value)
            scores[rows[doc["event_id"]]] = doc.get("anomaly_score") or 0.0
        for record in outcome.outputs:
            if record.topic != alerts_topic:
                continue
            doc = orjson.loads(record.value)
            if doc["status"] == "open":
                opened[rows[doc["source_event_ids"][0]]] = True
    return SeriesRun(series, scores, opened)


def replay_corpus(
    settings: Settings, root: Path, progress: Callable[[str], None] | None = None
) -> list[SeriesRun]:
    """Every series of ``root`` replayed through the worker's pipeline."""
    try:
        corpus = load_corpus(root)
    except (ValueError, FileNotFoundError) as exc:
        raise InputFileError(str(exc)) from exc
    runs = []
    for series in corpus:
        if progress is not None:
            progress(series.name)
        runs.append(asyncio.run(_replay(settings, series)))
    return runs


def openings(scores: np.ndarray, policy: AlertPolicy) -> np.ndarray:
    """Rows where the alert lifecycle opens an alert on a single metric's scores.

    Examples:
        >>> policy = AlertPolicy(0.5, evidence_k=1, evidence_n=1, resolve_after=2, cooldown=0)
        >>> openings(np.array([0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.8]), policy).nonzero()[0]
        array([1, 6])
    """
    tracker = AlertTracker("series", policy)
    out = np.zeros(len(scores), dtype=bool)
    view = (MetricView(METRIC, 0.0, 0.0, 0.0, 0.0, 1.0),)
    for i, s in enumerate(scores):
        scored = AnomalyScore(float(s), 0.0, 1.0, {}, view, True, i)
        out[i] = any(t.status == "open" for t in tracker.step(str(i), float(i), scored))
    return out


def _total(
    runs: Sequence[SeriesRun], detections: Sequence[np.ndarray], profile: Profile
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    raw = null = perfect = 0.0
    files = []
    by_family: dict[str, list[float]] = {}
    for run, det in zip(runs, detections, strict=True):
        scored = score_file(run.series, det, profile)
        lo, hi = null_and_perfect(run.series, profile)
        raw, null, perfect = raw + scored.raw, null + lo, perfect + hi
        files.append(
            {
                "file": run.series.name,
                "raw": round(scored.raw, 4),
                "windows": scored.windows,
                "detected": scored.tp,
                "false_positives": scored.fp,
            }
        )
        fam = by_family.setdefault(run.series.family, [0.0, 0.0, 0.0])
        fam[0] += scored.raw
        fam[1] += lo
        fam[2] += hi
    families = {
        name: round(normalised(r, n, p), 2) if p != n else round(r, 2)
        for name, (r, n, p) in sorted(by_family.items())
    }
    return normalised(raw, null, perfect), files, families


def evaluate_anomalies(
    settings: Settings, runs: Sequence[SeriesRun], profiles_path: Path | None = None
) -> list[ProfileResult]:
    """NAB scores of the replayed series, per profile (threshold procedure above)."""
    policy = settings.alert_policy()
    results = []
    for profile in load_profiles(profiles_path).values():
        sweep = {}
        cache: dict[float, list[np.ndarray]] = {}
        for threshold in THRESHOLDS:
            at = replace(policy, threshold=threshold)
            cache[threshold] = [openings(run.scores, at) for run in runs]
            sweep[threshold] = round(_total(runs, cache[threshold], profile)[0], 3)
        best = max(THRESHOLDS, key=lambda t: (sweep[t], -abs(t - policy.threshold)))
        worker, files, families = _total(runs, [run.opened for run in runs], profile)
        best_score, _, best_families = _total(runs, cache[best], profile)
        results.append(
            ProfileResult(
                profile=profile.name,
                worker_threshold=policy.threshold,
                worker_score=round(worker, 2),
                best_threshold=best,
                best_score=round(best_score, 2),
                families=families | {f"{k} (best threshold)": v for k, v in best_families.items()},
                files=files,
                sweep=sweep,
            )
        )
    return results


def check_consistent(settings: Settings, runs: Sequence[SeriesRun]) -> None:
    """The lifecycle re-run at the worker's threshold must open exactly the alerts the
    pipeline opened (else the sweep would not describe the worker)."""
    policy = settings.alert_policy()
    for run in runs:
        again = openings(run.scores, policy)
        if not np.array_equal(again, run.opened):
            msg = (
                f"{run.series.name}: the alert lifecycle re-run on the scores opens at rows "
                f"{again.nonzero()[0][:5].tolist()}, the pipeline at "
                f"{run.opened.nonzero()[0][:5].tolist()}"
            )
            raise AssertionError(msg)


def published(root: Path) -> dict[str, Any]:
    """NAB's published scoreboard (``scoreboard_readme.json`` beside the data), if any."""
    path = root / "scoreboard_readme.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {"source": doc.get("_source", ""), "scoreboard": doc.get("scoreboard", {})}


def plot_runs(
    runs: Sequence[SeriesRun], results: Sequence[ProfileResult], directory: Path
) -> list[Path]:
    """One PNG per series: values, labelled windows, anomaly score, threshold, alerts."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        msg = "plots need matplotlib: pip install 'novacron[plot]'"
        raise InputFileError(msg) from exc
    threshold = next(r.worker_threshold for r in results if r.profile == "standard")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        s = run.series
        x = np.arange(len(s.values))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True)
        top.plot(x, s.values, lw=0.6, color="black")
        for lo, hi in s.windows:
            for ax in (top, bottom):
                ax.axvspan(lo, hi, color="tab:orange", alpha=0.25, lw=0)
        for i in run.opened.nonzero()[0]:
            top.axvline(i, color="tab:red", lw=1.0)
        top.set_title(f"{s.name}  (orange: labelled windows, red: alerts opened)")
        bottom.plot(x, run.scores, lw=0.6, color="tab:blue", label="anomaly score")
        bottom.axhline(threshold, color="tab:red", ls="--", lw=0.8, label="threshold")
        bottom.set_ylim(0, 1.02)
        bottom.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = directory / (s.name.removesuffix(".csv").replace("/", "__") + ".png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write_results(
    results: Sequence[ProfileResult],
    runs: Sequence[SeriesRun],
    root: Path,
    path: Path,
    extra: dict[str, Any],
) -> None:
    """The figures as JSON (per profile: worker and best threshold, families, files)."""
    doc = {
        **extra,
        "data": str(root),
        "files": len(runs),
        "windows": sum(len(r.series.windows) for r in runs),
        "rows": sum(len(r.series.values) for r in runs),
        "detection": "an alert opening (the worker's alert lifecycle)",
        "thresholds_swept": list(THRESHOLDS),
        "profiles": [
            {
                "profile": r.profile,
                "worker_threshold": r.worker_threshold,
                "worker_score": r.worker_score,
                "best_threshold": r.best_threshold,
                "best_score": r.best_score,
                "families": r.families,
                "sweep": {str(k): v for k, v in r.sweep.items()},
                "files": r.files,
            }
            for r in results
        ],
        "published": published(root),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
