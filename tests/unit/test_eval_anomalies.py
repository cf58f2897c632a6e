"""``novacron eval anomalies`` on a small NAB-format corpus written by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from novacron.cli import app
from novacron.eval_anomalies import THRESHOLDS
from streams.errors import InputFileError

START = datetime(2014, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def stamp(i: int) -> str:
    return (START + i * STEP).strftime("%Y-%m-%d %H:%M:%S")


def write_series(root: Path, name: str, values: np.ndarray) -> None:
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["timestamp,value"] + [f"{stamp(i)},{v:.4f}" for i, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")


def corpus(root: Path) -> None:
    rng = np.random.default_rng(5)
    n = 1400  # the daily cycle (288 samples) is learned from 1024 samples on
    day = 10 * np.sin(2 * np.pi * np.arange(n) / 288)
    spiky = 50 + day + rng.normal(0, 1.0, n)
    spiky[1200:1212] += 40.0
    quiet = 50 + day + rng.normal(0, 1.0, n)
    write_series(root, "fam/spike.csv", spiky)
    write_series(root, "fam/quiet.csv", quiet)
    labels = root / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True)
    window = [stamp(1180) + ".000000", stamp(1230) + ".000000"]
    labels.write_text(json.dumps({"fam/spike.csv": [window], "fam/quiet.csv": []}))


def test_eval_anomalies_scores_detects_and_plots(tmp_path: Path) -> None:
    corpus(tmp_path / "nab")
    out, plots = tmp_path / "out.json", tmp_path / "plots"
    result = CliRunner().invoke(
        app,
        ["eval", "anomalies", str(tmp_path / "nab"), "--output", str(out), "--plot", str(plots)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "NAB score" in result.output and "ARTime" in result.output
    doc = json.loads(out.read_text())
    assert doc["files"] == 2 and doc["windows"] == 1
    profiles = {p["profile"]: p for p in doc["profiles"]}
    assert set(profiles) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    standard = profiles["standard"]
    assert standard["best_threshold"] in THRESHOLDS
    assert standard["best_score"] >= standard["worker_score"]
    spike = next(f for f in standard["files"] if f["file"] == "fam/spike.csv")
    assert spike["detected"] == 1, spike
    quiet = next(f for f in standard["files"] if f["file"] == "fam/quiet.csv")
    assert quiet["false_positives"] == 0, quiet
    assert standard["worker_score"] > 50
    assert sorted(p.name for p in plots.iterdir()) == ["fam__quiet.png", "fam__spike.png"]


def test_a_series_missing_from_the_labels_is_refused_with_the_fix(tmp_path: Path) -> None:
    corpus(tmp_path / "nab")
    write_series(tmp_path / "nab", "fam/extra.csv", np.ones(400))
    result = CliRunner().invoke(app, ["eval", "anomalies", str(tmp_path / "nab")])
    assert isinstance(result.exception, InputFileError)  # `main` prints it, no traceback
    assert "fam/extra.csv" in str(result.exception) and "labels" in str(result.exception)
