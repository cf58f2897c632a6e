"""Training and evaluation data for the bandwidth LSTM: synthetic links and telemetry files.

Files are read by the same code as ``novacron replay`` (so what trains is what serves)
and resampled onto a fixed grid by zero-order hold: the value at a grid time is the last
sample at or before it, which is what a poller sees and never looks ahead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streams.errors import InputFileError

from .features import last_bandwidth, series_windows
from .synthetic import synthesize_link_series


@dataclass(frozen=True, slots=True)
class Series:
    """One link's measures on a fixed grid: ``values`` is ``(n, 5)``, NaN = absent."""

    name: str
    values: np.ndarray
    step_s: float
    family: str = ""


@dataclass(slots=True)
class WindowSet:
    """Raw windows with their targets and training weights (each series counts alike)."""

    windows: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    names: list[str] = field(default_factory=list)
    families: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    @classmethod
    def empty(cls, window: int) -> WindowSet:
        return cls(np.zeros((0, window, 5)), np.zeros(0), np.zeros(0))

    def balance_families(self) -> None:
        """Reweight so every family (synthetic, each trace folder) has the same total weight.

        Without it the family with the most windows decides what the model learns.
        """
        if self.families.size != self.targets.size or self.targets.size == 0:
            return
        names = np.unique(self.families)
        share = self.weights.sum() / names.size
        for name in names:
            chosen = self.families == name
            self.weights[chosen] *= share / self.weights[chosen].sum()
        self.weights /= self.weights.mean()

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def synthetic_series(mode: str, links: int, length: int, seed: int) -> list[Series]:
    """``links`` synthetic series of ``length`` samples at 1 s (diurnal, bursts, shifts)."""
    return [
        Series(
            f"synthetic-{mode}-{i}",
            synthesize_link_series(mode, length, seed=seed + i),
            1.0,
            "synthetic",
        )
        for i in range(links)
    ]


def resample_zoh(times: np.ndarray, values: np.ndarray, step_s: float) -> np.ndarray:
    """The last sample at or before each grid time from the first sample on.

    Examples:
        >>> resample_zoh(np.array([0.0, 0.9, 2.5]), np.array([[1.0], [2.0], [3.0]]), 1.0)
        array([[1.],
               [2.],
               [2.]])
    """
    # Relative offsets: epoch times are too large for a 1e-9 tolerance to count.
    offsets = times - times[0]
    grid = step_s * np.arange(int(np.floor(offsets[-1] / step_s + 1e-6)) + 1)
    index = np.searchsorted(offsets, grid + 1e-6, side="right") - 1
    return values[index]


def read_series(path: Path, *, step_s: float | None = None, family: str = "") -> list[Series]:
    """Every link in a telemetry file (CSV, JSONL or trace), one fixed-grid series each."""
    # Imported here so that window building needs nothing but numpy (it also runs on
    # training machines that have only the numeric stack).
    from streams.codec import decode_link
    from streams.records import LinkSample
    from streams.sources import ReadOptions, read_messages

    by_link: dict[str, list[LinkSample]] = {}
    for role, raw, source in read_messages(path, ReadOptions(kind="link", mode="internet")):
        if role != "link":
            continue
        samples, _ = decode_link(raw, source)
        for sample in samples:
            by_link.setdefault(sample.link_id, []).append(sample)
    out = []
    for link, samples in by_link.items():
        samples.sort(key=lambda s: s.ts)
        times = np.array([s.ts for s in samples])
        if times.size < 2:
            continue
        values = np.array([s.values() for s in samples])
        step = step_s or float(np.median(np.diff(times))) or 1.0
        name = path.name if len(by_link) == 1 else f"{path.name}:{link}"
        out.append(Series(name, resample_zoh(times, values, step), step, family))
    return out


def read_directory(root: Path) -> list[Series]:
    """All files under ``root``; a file's family is its parent folder's name."""
    if not root.exists():
        msg = f"Training data {str(root)!r} does not exist."
        raise InputFileError(msg)
    files = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and not p.name.startswith(("LICENSE", "README", "."))
            and p.suffix != ".json"
        )
    )
    series: list[Series] = []
    for file in files:
        series.extend(read_series(file, family=file.parent.name))
    return series


def split_of(name: str, seed: int = 0) -> str:
    """Deterministic 70/15/15 assignment of a file to train/val/test by a hash of its name.

    Examples:
        >>> split_of("norway_bus_1")
        'train'
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "train" if u < 0.70 else "val" if u < 0.85 else "test"


def build_windows(
    series: Sequence[Series],
    window: int,
    *,
    horizon: int = 1,
    start: int = 9,
    by_file: bool,
    stride: int = 1,
    seed: int = 0,
) -> dict[str, WindowSet]:
    """Windows split 70/15/15: chronologically within each series, or by series name.

    ``by_file=True`` keeps every target of a series in one split (for trace files: the
    model is never scored on a link it trained on). ``stride`` thins training windows.
    """
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, str, str]]] = {
        "train": [], "val": [], "test": []
    }  # fmt: skip
    for s in series:
        raw, targets, index = series_windows(s.values, window, horizon, start)
        ok = np.isfinite(targets)
        raw, targets, index = raw[ok], targets[ok], index[ok]
        if targets.size == 0:
            continue
        # The loss is |prediction - actual| / last; weighting it by last / level makes it
        # the absolute error in units of the series' level, so every series counts alike.
        level = float(np.mean(targets)) or 1.0
        weights = np.nan_to_num(last_bandwidth(raw)) / max(level, 1e-6)
        if by_file:
            labels = np.full(targets.shape, split_of(s.name, seed), dtype=object)
        else:
            n = s.values.shape[0]
            labels = np.where(index < 0.70 * n, "train", np.where(index < 0.85 * n, "val", "test"))
        for split in parts:
            chosen = labels == split
            if split == "train" and stride > 1:
                chosen &= (np.arange(targets.size) % stride) == 0
            if chosen.any():
                parts[split].append(
                    (raw[chosen], targets[chosen], weights[chosen], s.name, s.family)
                )
    out = {}
    for split, items in parts.items():
        if not items:
            out[split] = WindowSet.empty(window)
            continue
        w = np.concatenate([i[2] for i in items])
        out[split] = WindowSet(
            np.concatenate([i[0] for i in items]),
            np.concatenate([i[1] for i in items]),
            w / w.mean(),
            sorted({i[3] for i in items}),
            np.concatenate([np.full(i[1].size, i[4], dtype=object) for i in items]),
        )
    return out


def assemble(
    synthetic: Sequence[Series],
    folders: Sequence[Sequence[Series]],
    window: int,
    *,
    horizon: int = 1,
    stride: int = 1,
    seed: int = 0,
) -> dict[str, WindowSet]:
    """Train/val/test windows: synthetic series split by time, each folder by file."""
    parts = []
    if synthetic:
        parts.append(
            build_windows(synthetic, window, horizon=horizon, by_file=False, stride=stride)
        )
    for files in folders:
        if files:
            parts.append(
                build_windows(
                    files, window, horizon=horizon, by_file=len(files) > 1, stride=stride, seed=seed
                )
            )
    out = {}
    for split in ("train", "val", "test"):
        sets = [p[split] for p in parts if len(p[split])]
        if not sets:
            out[split] = WindowSet.empty(window)
            continue
        out[split] = WindowSet(
            np.concatenate([s.windows for s in sets]),
            np.concatenate([s.targets for s in sets]),
            np.concatenate([s.weights for s in sets]),
            sorted(n for s in sets for n in s.names),
            np.concatenate([s.families for s in sets]),
        )
    out["train"].balance_families()
    return out


def save_series(
    path: Path, synthetic: Sequence[Series], folders: Sequence[Sequence[Series]]
) -> None:
    """Write series to one ``.npz`` so another machine can rebuild the same windows."""
    arrays: dict[str, np.ndarray] = {}
    index = []
    for group, items in [("synthetic", synthetic)] + [
        (f"folder{i}", f) for i, f in enumerate(folders)
    ]:
        for n, s in enumerate(items):
            key = f"{group}__{n}"
            arrays[key] = s.values
            index.append([key, group, s.name, s.family, s.step_s])
    arrays["__index__"] = np.array(index, dtype=object)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def load_series(path: Path) -> tuple[list[Series], list[list[Series]]]:
    """Inverse of :func:`save_series`."""
    data = np.load(path, allow_pickle=True)
    synthetic: list[Series] = []
    folders: dict[str, list[Series]] = {}
    for key, group, name, family, step in data["__index__"]:
        series = Series(str(name), data[key], float(step), str(family))
        if group == "synthetic":
            synthetic.append(series)
        else:
            folders.setdefault(str(group), []).append(series)
    return synthetic, [folders[k] for k in sorted(folders)]
