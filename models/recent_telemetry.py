"""Recent link telemetry as retraining uses it: one series per link in event-time
order, split in time into train, validation and the recent holdout, cut into windows.

A link's targets in the last ``holdout`` fraction of its samples are the holdout (the
inputs of a holdout window look back into earlier samples, as serving does); before
them, the last ``validation`` fraction is validation and the rest is training. Plain
numpy over decoded samples: no Kafka, no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from streams.errors import ModelError
from streams.records import LinkSample

from .datasets import Series, WindowSet
from .features import last_bandwidth, series_windows
from .training import mode_config

FIRST_TARGET = 9
"""Index of a link's first target: a prediction needs 10 samples (as in training)."""
RECENT_FAMILY = "recent"


@dataclass(frozen=True, slots=True)
class RecentLink:
    """One link's recent samples in event-time order, with their event times."""

    series: Series
    times: np.ndarray


def recent_links(samples: Iterable[LinkSample]) -> list[RecentLink]:
    """One series per link, in event-time order, each event id once.

    Samples are kept as they arrived (not resampled): the worker's window holds the
    last samples of a link whatever their spacing, and that is what the model serves.

    Examples:
        >>> s = [LinkSample("e2", "l1", 1.7e9 + 2, "internet", bandwidth_mbps=20.0),
        ...      LinkSample("e1", "l1", 1.7e9 + 1, "internet", bandwidth_mbps=10.0),
        ...      LinkSample("e1", "l1", 1.7e9 + 1, "internet", bandwidth_mbps=10.0)]
        >>> [(r.series.name, r.series.values[:, 0].tolist()) for r in recent_links(s)]
        [('l1', [10.0, 20.0])]
    """
    by_link: dict[str, dict[str, LinkSample]] = {}
    for sample in samples:
        by_link.setdefault(sample.link_id, {}).setdefault(sample.event_id, sample)
    out = []
    for link in sorted(by_link):
        ordered = sorted(by_link[link].values(), key=lambda s: s.ts)
        times = np.array([s.ts for s in ordered], dtype=np.float64)
        values = np.array([s.values() for s in ordered], dtype=np.float64).reshape(-1, 5)
        step = float(np.median(np.diff(times))) if times.size > 1 else 1.0
        out.append(RecentLink(Series(link, values, step or 1.0, RECENT_FAMILY), times))
    return out


def split_points(n: int, holdout: float, validation: float) -> tuple[int, int]:
    """Where validation starts and where the holdout starts in a series of ``n``.

    Examples:
        >>> split_points(100, 0.2, 0.2)
        (64, 80)
    """
    holdout_start = math.floor(n * (1.0 - holdout))
    return math.floor(holdout_start * (1.0 - validation)), holdout_start


@dataclass(frozen=True, slots=True)
class Span:
    """Event times of the first and last target of a part, and how many targets."""

    start: float
    end: float
    targets: int


@dataclass(frozen=True, slots=True)
class LinkSplit:
    """One link's train, validation and holdout parts (targets; inputs look back)."""

    link: str
    train: Span | None
    val: Span | None
    holdout: Span | None


@dataclass(slots=True)
class RecentData:
    """Recent telemetry of one mode, split in time and cut into the mode's windows."""

    mode: str
    links: list[RecentLink]
    splits: dict[str, LinkSplit]
    windows: dict[str, WindowSet]
    holdout: float
    validation: float
    dropped: int = 0

    @property
    def samples(self) -> int:
        return sum(link.times.size for link in self.links)

    @property
    def start(self) -> float:
        return min(float(link.times[0]) for link in self.links)

    @property
    def end(self) -> float:
        return max(float(link.times[-1]) for link in self.links)

    @property
    def dataset(self) -> str:
        """The registry's dataset name: links, samples and time range."""
        return (
            f"recent telemetry: {len(self.links)} links, {self.samples} samples, "
            f"{utc(self.start)} to {utc(self.end)}"
        )

    def summary(self) -> dict[str, Any]:
        """Links, samples, time range and holdout, for the retrain records."""
        holdouts = [s.holdout for s in self.splits.values() if s.holdout is not None]
        return {
            "mode": self.mode,
            "links": len(self.links),
            "samples": self.samples,
            "samples_dropped": self.dropped,
            "time_range": {"start": self.start, "end": self.end},
            "holdout": {
                "fraction": self.holdout,
                "start": min(h.start for h in holdouts),
                "end": max(h.end for h in holdouts),
                "targets": sum(h.targets for h in holdouts),
            },
            "windows": {part: len(ws) for part, ws in self.windows.items()},
        }


def utc(ts: float) -> str:
    """``YYYY-MM-DD HH:MM:SS UTC``.

    Examples:
        >>> utc(1.7e9)
        '2023-11-14 22:13:20 UTC'
    """
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _newest(links: Sequence[RecentLink], max_samples: int) -> tuple[list[RecentLink], int]:
    total = sum(link.times.size for link in links)
    if total <= max_samples:
        return list(links), 0
    all_times = np.concatenate([link.times for link in links])
    cutoff = np.partition(all_times, total - max_samples)[total - max_samples]
    kept = []
    for link in links:
        first = int(np.searchsorted(link.times, cutoff, side="left"))
        if first < link.times.size:
            s = link.series
            kept.append(RecentLink(Series(s.name, s.values[first:], s.step_s, s.family),
                                   link.times[first:]))  # fmt: skip
    return kept, total - sum(link.times.size for link in kept)


def _span(times: np.ndarray, index: np.ndarray) -> Span | None:
    return (
        Span(float(times[index[0]]), float(times[index[-1]]), int(index.size))
        if index.size
        else None
    )


def _part_windows(
    links: Sequence[RecentLink], window: int, holdout: float, validation: float
) -> tuple[dict[str, WindowSet], dict[str, LinkSplit]]:
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]] = {
        "train": [], "val": [], "test": []
    }  # fmt: skip
    splits = {}
    for link in links:
        raw, targets, index = series_windows(link.series.values, window, 1, FIRST_TARGET)
        ok = np.isfinite(targets)
        raw, targets, index = raw[ok], targets[ok], index[ok]
        val_start, holdout_start = split_points(link.times.size, holdout, validation)
        labels = np.where(
            index < val_start, "train", np.where(index < holdout_start, "val", "test")
        )
        splits[link.series.name] = LinkSplit(
            link.series.name,
            *(_span(link.times, index[labels == part]) for part in ("train", "val", "test")),
        )
        if targets.size == 0:
            continue
        # As models.datasets.build_windows: |error| / last weighted by last / level, so
        # each link counts in units of its own level.
        level = float(np.mean(targets)) or 1.0
        weights = np.nan_to_num(last_bandwidth(raw)) / max(level, 1e-6)
        for part, items in parts.items():
            chosen = labels == part
            if chosen.any():
                items.append((raw[chosen], targets[chosen], weights[chosen], link.series.name))
    out = {}
    for part, items in parts.items():
        if not items:
            out[part] = WindowSet.empty(window)
            continue
        weights = np.concatenate([i[2] for i in items])
        out[part] = WindowSet(
            np.concatenate([i[0] for i in items]),
            np.concatenate([i[1] for i in items]),
            weights / weights.mean() if weights.mean() > 0 else np.ones_like(weights),
            sorted(i[3] for i in items),
            np.full(weights.size, RECENT_FAMILY, dtype=object),
        )
    return out, splits


def prepare_recent(
    links: Sequence[RecentLink],
    mode: str,
    *,
    max_samples: int = 200_000,
    holdout: float = 0.2,
    validation: float = 0.2,
) -> RecentData:
    """Keep the newest ``max_samples`` samples, split each link in time, cut the mode's
    windows: targets in the last ``holdout`` fraction of a link's samples are the
    holdout, the last ``validation`` fraction of those before it validation.

    Raises:
        ModelError: the telemetry gives no window in train, validation or holdout.

    Examples:
        >>> samples = [LinkSample(f"e{i}", "l1", 1.7e9 + i, "datacenter",
        ...                       bandwidth_mbps=100.0 + i % 7) for i in range(200)]
        >>> data = prepare_recent(recent_links(samples), "datacenter")
        >>> {part: len(ws) for part, ws in data.windows.items()}
        {'train': 119, 'val': 32, 'test': 40}
        >>> data.splits["l1"].holdout
        Span(start=1700000160.0, end=1700000199.0, targets=40)
    """
    config = mode_config(mode)
    kept, dropped = _newest([link for link in links if link.times.size], max_samples)
    windows, splits = _part_windows(kept, config.window, holdout, validation)
    sizes = {part: len(ws) for part, ws in windows.items()}
    if not kept or min(sizes.values()) == 0:
        samples = sum(link.times.size for link in kept)
        msg = (
            f"Retraining the {mode} model needs windows in train, validation and holdout; "
            f"the recent telemetry ({len(kept)} links, {samples} samples) gave "
            f"{sizes}. A link needs about {FIRST_TARGET + 1 + 10} samples; wait for more "
            "telemetry or look further back (--lookback)."
        )
        raise ModelError(msg)
    return RecentData(mode, kept, splits, windows, holdout, validation, dropped)


def holdout_windows(data: RecentData, window: int) -> WindowSet:
    """The holdout targets with windows of ``window`` steps (the same targets, in order,
    for any window length: a model is scored with the history it would be served)."""
    if window == data.windows["test"].windows.shape[1]:
        return data.windows["test"]
    windows, _ = _part_windows(data.links, window, data.holdout, data.validation)
    return windows["test"]
