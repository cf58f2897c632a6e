"""How the online gain's settings were chosen: candidates scored on trace files, per split.

Every trace file under DIR runs through the worker's processor with the active internet
model, once without the online gain and once per candidate (gain grid, learning rate).
Each family (trace folder) is scored on the files the model trained on, was validated
on and never saw (test), against last value on the same targets. The choice uses the
train and validation files only: the candidate with the highest mean, over the four
(family, split) cells, of the MAE reduction against last value (%) plus the ±20%
accuracy difference (points). The test cells are reported, never used. Usage::

    .venv/bin/python bench/online_gain_selection.py ../shared/data/throughput
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.settings import Settings  # noqa: E402
from agents.wiring import model_source  # noqa: E402
from models.baseline import last_value  # noqa: E402
from models.datasets import read_directory  # noqa: E402
from models.scoring import score  # noqa: E402
from novacron.evaluate import served_on_series  # noqa: E402
from online.gain import OnlineGain  # noqa: E402

CANDIDATES: dict[str, OnlineGain | None] = {"model alone": None} | {
    f"gains {grid} eta {eta}": OnlineGain(gains=grid, eta=eta)
    for grid in ((0.0, 0.5, 1.0, 1.5), (0.0, 0.5, 1.0, 1.5, 2.0))
    for eta in (2.0, 5.0, 10.0, 20.0)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--output", type=Path, default=Path("bench/results/online_gain.json"))
    args = parser.parse_args()
    predictor = model_source(Settings())()["internet"]
    extra = predictor.metadata.extra
    split_of = {n: "train" for n in extra["trained_on"]} | {n: "val" for n in extra["validated_on"]}
    series = read_directory(args.directory)
    start = predictor.min_history
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for name, online in CANDIDATES.items():
        pooled: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for s in series:
            x = s.values[:, 4]
            point = served_on_series(predictor, s, online)[:, 0]
            ok = np.isfinite(point) & np.isfinite(x)
            ok[: start + 1] = False
            cell = f"{s.family}/{split_of.get(s.name, 'test')}"
            last = last_value(x)
            pooled.setdefault(cell, []).append((point[ok], last[ok], x[ok]))
        cells[name] = {}
        for cell, parts in sorted(pooled.items()):
            p, last, y = (np.concatenate(col) for col in zip(*parts, strict=True))
            mine, theirs = score(p, y), score(last, y)
            cells[name][cell] = {
                "mae_gain_vs_last_pct": round(100 * (1 - mine.mae / theirs.mae), 3),
                "acc20_minus_last_points": round(100 * (mine.acc20 - theirs.acc20), 3),
                "n": int(y.size),
            }
        print(name, json.dumps(cells[name]), flush=True)

    def selection_score(name: str) -> float:
        chosen = [v for k, v in cells[name].items() if not k.endswith("/test")]
        return statistics.mean(
            v["mae_gain_vs_last_pct"] + v["acc20_minus_last_points"] for v in chosen
        )

    scores = {name: round(selection_score(name), 3) for name in cells}
    best = max(scores, key=scores.__getitem__)
    summary = {
        "command": " ".join(sys.argv),
        "model": f"{predictor.name}:{predictor.version}",
        "criterion": "mean over train/val (family, split) cells of MAE gain vs last value "
        "(%) + ±20% accuracy difference (points)",
        "selection_score": scores,
        "chosen": best,
        "default": f"gains {OnlineGain().gains} eta {OnlineGain().eta}",
        "cells": cells,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"chosen": best, "default": summary["default"], "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
