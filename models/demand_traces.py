"""Demand traces from CSV files, on a regular step, for the scaling simulator.

A trace is a CSV with a header, a time column and a demand column. The time column holds
timestamps (ISO 8601 or ``%Y-%m-%d %H:%M:%S``; read as UTC when they carry no offset) or
a numeric minute index. Rows are sorted by time; a repeated time keeps its last row; rows
without a finite demand are left out. The step is the median spacing of the rows, so a
trace may be at any regular step (NASA's requests are per minute, NAB's utilisation every
5 minutes). Missing rows (gaps) are closed up: the row after a gap is simulated as the
next step, and the gap is reported (``missing_steps``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streams.errors import InputFileError


@dataclass(frozen=True, slots=True)
class DemandTrace:
    """A demand series on a regular step.

    Attributes:
        name: the file's stem.
        ts: event time of each row (seconds since the epoch, or minutes x 60 from an
            index), ascending.
        demand: the demand per row, finite and >= 0.
        step_s: seconds between rows (the median spacing).
        missing_steps: steps absent from the file (closed up in the simulation).
        column: the demand column read.
    """

    name: str
    ts: np.ndarray
    demand: np.ndarray
    step_s: float
    missing_steps: int
    column: str

    @property
    def minutes(self) -> float:
        """The simulated length in minutes (rows x step).

        Examples:
            >>> trace_from_values([1.0, 2.0, 3.0], step_s=300.0).minutes
            15.0
        """
        return len(self.demand) * self.step_s / 60.0

    @property
    def sim_ts(self) -> np.ndarray:
        """Regular times ``ts[0] + i x step_s``: the clock every simulated policy sees."""
        return self.ts[0] + np.arange(len(self.demand)) * self.step_s


def trace_from_values(
    values: list[float] | np.ndarray, step_s: float = 60.0, name: str = "trace", t0: float = 0.0
) -> DemandTrace:
    """A trace from demand values at a regular step (tests, synthetic series).

    Examples:
        >>> trace_from_values([5.0, 6.0]).ts.tolist()
        [0.0, 60.0]
    """
    demand = np.asarray(values, dtype=float)
    _check_demand(demand, name)
    ts = t0 + np.arange(len(demand)) * float(step_s)
    return DemandTrace(name, ts, demand, float(step_s), 0, "demand")


def load_trace(path: Path, column: str, time_column: str | None = None) -> DemandTrace:
    """Read a trace; ``time_column`` defaults to the first column other than ``column``.

    Raises:
        InputFileError: the file cannot be read, lacks a column, has too few rows, or a
            time or demand value cannot be used (the message says which).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        msg = f"Cannot read the trace {str(path)!r}: {exc}"
        raise InputFileError(msg) from exc
    if len(rows) < 3:
        msg = f"The trace {str(path)!r} needs a header and at least 2 rows. Got {len(rows)} lines."
        raise InputFileError(msg)
    header = [h.strip() for h in rows[0]]
    if column not in header:
        msg = f"The trace {str(path)!r} has no column {column!r}. Its columns: {header}."
        raise InputFileError(msg)
    others = [h for h in header if h != column]
    tcol = time_column if time_column is not None else (others[0] if others else None)
    if tcol is None or tcol not in header:
        msg = f"The trace {str(path)!r} has no time column {tcol!r}. Its columns: {header}."
        raise InputFileError(msg)
    ti, di = header.index(tcol), header.index(column)
    body = [r for r in rows[1:] if len(r) > max(ti, di)]
    ts = _parse_times([r[ti].strip() for r in body], path, tcol)
    demand = np.array([_float(r[di]) for r in body])
    keep = np.isfinite(demand)
    ts, demand = ts[keep], demand[keep]
    order = np.argsort(ts, kind="stable")
    ts, demand = ts[order], demand[order]
    last = np.r_[ts[1:] != ts[:-1], True]  # a repeated time keeps its last row
    ts, demand = ts[last], demand[last]
    if len(ts) < 2:
        msg = f"The trace {str(path)!r} has fewer than 2 rows with a finite {column!r}."
        raise InputFileError(msg)
    _check_demand(demand, str(path))
    gaps = np.diff(ts)
    step = float(np.median(gaps))
    missing = int(np.sum(np.maximum(np.rint(gaps / step) - 1, 0)))
    return DemandTrace(path.stem, ts, demand, step, missing, column)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _parse_times(values: list[str], path: Path, column: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in values]) * 60.0  # a minute index
    except ValueError:
        pass
    out = np.empty(len(values))
    for i, text in enumerate(values):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            msg = (
                f"Row {i + 2} of {str(path)!r}: the time column {column!r} must hold ISO "
                f"timestamps ('%Y-%m-%d %H:%M:%S') or a minute index. Got {text!r}."
            )
            raise InputFileError(msg) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        out[i] = when.timestamp()
    return out


def _check_demand(demand: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(demand)) or np.any(demand < 0):
        bad = demand[~np.isfinite(demand) | (demand < 0)][:3].tolist()
        msg = f"Demand must be finite and >= 0 in {where!r}. Got values such as {bad}."
        raise InputFileError(msg)
