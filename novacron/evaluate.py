"""``novacron eval bandwidth DIR``: the served predictor against simple baselines on traces.

Each trace is resampled to its fixed grid (zero-order hold), written as a CSV and run
through ``novacron replay`` with the registry's active models, so the figures are those
of the predictor the worker serves (with the per-link online gain when the settings
enable it). The same replay with the online gain switched the other way is scored
alongside (``model_only`` or ``with_online_gain``). Files the model trained or was
validated on are left out. Baselines are scored on exactly the same targets.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from agents.settings import Settings
from agents.wiring import model_source
from models.baseline import best_ewma_alpha, ewma, harmonic_mean, last_value
from models.datasets import Series, read_series
from models.scoring import metrics_dict, score
from models.serving import ModelSource
from online.gain import OnlineGain
from streams.sources import ReadOptions

from .replaying import run_replay

BASELINES = ("last_value", "ewma", "harmonic_mean_5")
MODEL_ONLY = "model_only"
WITH_GAIN = "with_online_gain"


@dataclass(slots=True)
class FamilyResult:
    """Figures of one trace family."""

    family: str
    files: int
    excluded: int
    model: str
    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    ewma_alpha: float = 0.5
    gain_ci90: tuple[float, float] = (float("nan"), float("nan"))
    """90% bootstrap interval (resampling whole traces) of the served predictor's MAE
    reduction against the best baseline, in percent."""
    acc20_ci90: tuple[float, float] = (float("nan"), float("nan"))
    """90% bootstrap interval (whole traces) of the served ±20% accuracy minus the best
    baseline's, in percentage points."""

    def best_baseline(self) -> str:
        return min(BASELINES, key=lambda b: self.methods[b]["mae"])

    def gain_pct(self) -> float:
        """How much lower the served MAE is than the best baseline's, in percent."""
        return 100 * (1 - self.methods["served"]["mae"] / self.methods[self.best_baseline()]["mae"])

    def beats_all(self, metric: str, higher_is_better: bool) -> bool:
        mine = self.methods["served"][metric]
        others = [self.methods[b][metric] for b in BASELINES]
        return mine > max(others) if higher_is_better else mine < min(others)


def _trace_csv(series: Series, path: Path) -> None:
    lines = ["timestamp,link_id,mode,throughput_mbps"]
    target = series.values[:, 4]
    for i, value in enumerate(target):
        lines.append(f"{i * series.step_s:.3f},{series.name},internet,{value:.6f}")
    path.write_text("\n".join(lines) + "\n")


def _served(
    settings: Settings, csv_path: Path, length: int, source: ModelSource, horizon: int
) -> np.ndarray:
    """Replay a trace CSV; aligned: ``out[t]`` is (point, lower, upper) for sample ``t``."""
    out_path = csv_path.with_suffix(".jsonl")
    options = ReadOptions(kind="link")
    run_replay(settings, csv_path, out_path, options=options, source=source, show_progress=False)
    keys = ("predicted_bandwidth_mbps", "lower_mbps", "upper_mbps")
    rows = [
        [np.nan if line["value"].get(k) is None else line["value"][k] for k in keys]
        for line in map(orjson.loads, out_path.read_bytes().splitlines())
        if line["topic"] == settings.topics.scores
    ]
    values = np.array(rows, dtype=float).reshape(-1, 3)
    out = np.full((length, 3), np.nan)
    out[horizon : values.shape[0]] = values[: values.shape[0] - horizon]
    return out


def _by_trace(
    mine: np.ndarray, theirs: np.ndarray, counts: np.ndarray, reps: int, seed: int, kind: str
) -> tuple[float, float]:
    """5th and 95th percentiles of a figure over draws of whole traces with replacement."""
    draws = np.random.default_rng(seed).integers(0, mine.size, (reps, mine.size))
    a, b = mine[draws].sum(axis=1), theirs[draws].sum(axis=1)
    if kind == "mae_gain":
        figures = 100 * (1 - a / np.maximum(b, 1e-12))
    else:  # difference of hit rates, in points
        figures = 100 * (a - b) / counts[draws].sum(axis=1)
    low, high = np.percentile(figures, [5, 95])
    return round(float(low), 2), round(float(high), 2)


def gain_interval(
    served: list[np.ndarray],
    baseline: list[np.ndarray],
    actual: list[np.ndarray],
    *,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """90% bootstrap interval of ``100 * (1 - MAE_served / MAE_baseline)`` over traces.

    Whole traces are resampled, not points, because errors within a trace are correlated:
    the interval says how much the figure could move with another draw of test traces.

    Examples:
        >>> y = [np.ones(10)] * 4
        >>> gain_interval([np.full(10, 0.9)] * 4, [np.full(10, 0.8)] * 4, y)
        (50.0, 50.0)
    """
    mine = np.array([np.abs(p - y).sum() for p, y in zip(served, actual, strict=True)])
    theirs = np.array([np.abs(p - y).sum() for p, y in zip(baseline, actual, strict=True)])
    counts = np.array([y.size for y in actual])
    return _by_trace(mine, theirs, counts, reps, seed, "mae_gain")


def acc20_interval(
    served: list[np.ndarray],
    baseline: list[np.ndarray],
    actual: list[np.ndarray],
    *,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """90% bootstrap interval (whole traces) of the served ±20% accuracy minus a baseline's.

    In percentage points.

    Examples:
        >>> y = [np.ones(10)] * 4
        >>> acc20_interval([np.full(10, 1.1)] * 4, [np.full(10, 1.5)] * 4, y)
        (100.0, 100.0)
    """

    def hits(pred: list[np.ndarray]) -> np.ndarray:
        return np.array(
            [(np.abs(p - y) <= 0.2 * np.abs(y)).sum() for p, y in zip(pred, actual, strict=True)]
        )

    counts = np.array([y.size for y in actual])
    return _by_trace(hits(served), hits(baseline), counts, reps, seed, "acc20_diff")


def _choose_alpha(train: list[np.ndarray]) -> float:
    if not train:
        return 0.5
    return best_ewma_alpha(
        lambda a: float(np.nanmean(np.concatenate([np.abs(ewma(x, a) - x)[1:] for x in train])))
    )


def evaluate_bandwidth(settings: Settings, root: Path) -> list[FamilyResult]:
    """Score the active internet model and the baselines per family folder under ``root``."""
    source = model_source(settings)
    predictor = source()["internet"]
    extra = getattr(getattr(predictor, "metadata", None), "extra", {})
    seen = set(extra.get("trained_on", [])) | set(extra.get("validated_on", []))
    families: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.startswith(("LICENSE", "README", ".")) or path.suffix == ".json":
            continue
        families[path.parent.name].append(path)
    other = settings.model_copy(update={"online_gain": not settings.online_gain})
    other_name = MODEL_ONLY if settings.online_gain else WITH_GAIN
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for family, files in sorted(families.items()):
            scored: dict[str, list[np.ndarray]] = defaultdict(list)
            actual: list[np.ndarray] = []
            traces: list[tuple[np.ndarray, np.ndarray]] = []  # (series, scored mask)
            excluded: list[np.ndarray] = []
            result = FamilyResult(family, len(files), 0, f"{predictor.name}:{predictor.version}")
            for path in files:
                for series in read_series(path, family=family):
                    x = series.values[:, 4]
                    if series.name in seen:
                        excluded.append(x)
                        continue
                    csv_path = workdir / "trace.csv"
                    _trace_csv(series, csv_path)
                    served, alone = (
                        _served(s, csv_path, x.size, source, predictor.horizon_steps)
                        for s in (settings, other)
                    )
                    mask = np.isfinite(served[:, 0]) & np.isfinite(x)
                    mask[: predictor.min_history] = False
                    scored["served"].append(served[mask])
                    scored[other_name].append(alone[mask])
                    actual.append(x[mask])
                    traces.append((x, mask))
            result.excluded = len(excluded)
            result.ewma_alpha = _choose_alpha(excluded)
            for x, mask in traces:
                scored["last_value"].append(last_value(x)[mask])
                scored["ewma"].append(ewma(x, result.ewma_alpha)[mask])
                scored["harmonic_mean_5"].append(harmonic_mean(x, 5)[mask])
            if not actual:
                continue
            y = np.concatenate(actual)
            for method in ("served", other_name):
                p = np.concatenate(scored[method])
                result.methods[method] = metrics_dict(score(p[:, 0], y, p[:, 1], p[:, 2]))
            for method in BASELINES:
                result.methods[method] = metrics_dict(score(np.concatenate(scored[method]), y))
            points = [p[:, 0] for p in scored["served"]]
            result.gain_ci90 = gain_interval(points, scored[result.best_baseline()], actual)
            best_acc = max(BASELINES, key=lambda b: result.methods[b]["acc20"])
            result.acc20_ci90 = acc20_interval(points, scored[best_acc], actual)
            results.append(result)
    return results


def write_results(results: list[FamilyResult], path: Path, extra: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        **extra,
        "families": [
            {
                "family": r.family,
                "files": r.files,
                "excluded_trained_or_validated": r.excluded,
                "model": r.model,
                "ewma_alpha": r.ewma_alpha,
                "methods": r.methods,
                "served_beats_all_baselines_on_mae": r.beats_all("mae", higher_is_better=False),
                "served_beats_all_baselines_on_acc20": r.beats_all("acc20", higher_is_better=True),
                "best_baseline": r.best_baseline(),
                "mae_vs_best_baseline_pct": r.gain_pct(),
                "mae_vs_best_baseline_pct_ci90_by_trace": list(r.gain_ci90),
                "acc20_minus_best_baseline_points_ci90_by_trace": list(r.acc20_ci90),
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def served_on_series(
    predictor: Any, series: Series, online: OnlineGain | None, *, chunk: int = 2_000
) -> np.ndarray:
    """Run one link through the worker's pipeline; ``out[t]`` predicts ``x[t]``.

    Rows are (point, lower, upper); samples go in batches of ``chunk``, and the window
    holds the model's history, as in the worker.
    """
    from streams.pipeline import RawMessage, build_pipeline
    from streams.processors import ProcessorParts
    from streams.records import MEASURES, SourceRef
    from streams.store import InMemoryWindowStore

    size = predictor.window_steps
    parts = ProcessorParts(lambda mode: predictor, size, online)
    pipeline = build_pipeline(parts, InMemoryWindowStore(size), clock=lambda: 0.0)
    index: dict[str, int] = {}
    messages = []
    for i, row in enumerate(series.values):
        event_id = f"{series.name}-{i}"
        index[event_id] = i
        sample = {"event_id": event_id, "link_id": series.name, "mode": predictor.mode,
                  "ts": 1.7e9 + i * series.step_s}  # fmt: skip
        sample.update((m, float(v)) for m, v in zip(MEASURES, row, strict=True) if np.isfinite(v))
        messages.append(RawMessage(orjson.dumps(sample), SourceRef(pipeline.topics.link)))
    out = np.full((len(messages), 3), np.nan)

    async def run() -> None:
        for start in range(0, len(messages), chunk):
            outcome = await pipeline.handle_link(messages[start : start + chunk])
            for record in outcome.outputs:
                if record.topic != pipeline.topics.predictions:
                    continue  # a row the decoder refused: no prediction, as in the worker
                p = orjson.loads(record.value)
                t = index[p["source_event_ids"][0]] + predictor.horizon_steps
                if t < out.shape[0]:
                    out[t] = (p["predicted_bandwidth_mbps"], p["lower_mbps"], p["upper_mbps"])

    asyncio.run(run())
    return out


def evaluate_synthetic(
    settings: Settings, mode: str, *, links: int, length: int, seed: int
) -> dict[str, dict[str, float]]:
    """The served predictor, the other online-gain setting and the baselines on the
    synthetic test split.

    With the same ``links``, ``length`` and ``seed`` as ``novacron train`` this is the
    synthetic part of the training run's test set (the last 15% of each series). Every
    link runs through the worker's processor twice: as ``settings`` serve it, and with
    the online gain switched the other way (``model_only`` or ``with_online_gain``).
    """
    from models.datasets import build_windows, synthetic_series
    from models.features import series_windows
    from models.scoring import baseline_predictions, choose_ewma_alpha

    predictor = model_source(settings)()[mode]
    window = max(predictor.window_steps, 10)
    series = synthetic_series(mode, links, length, seed)
    data = build_windows(series, window, by_file=False)
    test = data["test"]
    ref = f"{predictor.name}:{predictor.version}"
    other = MODEL_ONLY if settings.online_gain else WITH_GAIN
    runs: dict[str, list[np.ndarray]] = {f"served ({ref})": [], other: []}
    for s in series:
        _, targets, idx = series_windows(s.values, window, predictor.horizon_steps, start=9)
        chosen = idx[np.isfinite(targets) & (idx >= 0.85 * s.values.shape[0])]
        for name, on in zip(runs, (settings.online_gain, not settings.online_gain), strict=True):
            online = OnlineGain() if on else None
            runs[name].append(served_on_series(predictor, s, online)[chosen])
    through = {name: np.concatenate(parts) for name, parts in runs.items()}
    ok = np.all([np.isfinite(t[:, 0]) for t in through.values()], axis=0)
    results = {
        name: metrics_dict(score(t[ok, 0], test.targets[ok], t[ok, 1], t[ok, 2]))
        for name, t in through.items()
    }
    alpha = choose_ewma_alpha(data["train"])
    for name, pred in baseline_predictions(test.windows, alpha).items():
        results[name] = metrics_dict(score(pred[ok], test.targets[ok]))
    return results
