"""What bounding the Random Forest costs: file size against held-out accuracy.

The shipped forecast ensemble bounds its forest (``max_depth``, ``min_samples_leaf``)
to keep the ONNX file a few MB. This fits the forest alone at several bounds on the same
training windows (the shipped recipe, fewer series) and reports, per setting, the size
of its ONNX graph and its normalised MAE per horizon on the held-out test series,
against persistence. Writes ``bench/results/forecast_tree_size.json``.

Usage::

    .venv/bin/python bench/forecast_tree_size.py --series 450
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.forecast_export import members_to_onnx, with_metadata  # noqa: E402
from models.forecast_features import feature_names, forecast_inputs, squash, unsquash  # noqa: E402
from models.forecast_metrics import forecast_windows  # noqa: E402
from models.forecast_training import ForecastTrainRequest, split_series  # noqa: E402
from models.synthetic_demand import demand_series  # noqa: E402

SETTINGS = ((9, 20), (12, 10), (None, 5))
"""(max_depth, min_samples_leaf): the shipped bound, a looser one, unbounded."""


def main() -> None:
    from sklearn.ensemble import RandomForestRegressor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=450)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--output", type=Path, default=Path("bench/results/forecast_tree_size.json")
    )
    args = parser.parse_args()
    r = ForecastTrainRequest(series=args.series)
    train_s, _, test_s = split_series(demand_series(r.series, r.seed), r.seed)
    train = forecast_windows(train_s, r.lookback, r.horizons, r.windows_per_series, r.seed)
    test = forecast_windows(test_s, r.lookback, r.horizons, r.windows_per_series, r.seed + 2)
    tr_in = forecast_inputs(train.histories, train.last_ts, train.step_s, r.horizons)
    te_in = forecast_inputs(test.histories, test.last_ts, test.step_s, r.horizons)
    y = squash(np.clip(train.targets(tr_in), -r.target_clip, r.target_clip), r.squash)
    level = te_in.level[:, None]
    persistence = (np.abs(test.histories[:, -1:] - test.future) / level).mean(axis=0)
    rows = []
    for depth, leaf in SETTINGS:
        started = time.perf_counter()
        forest = RandomForestRegressor(
            n_estimators=r.trees, max_depth=depth, min_samples_leaf=leaf, max_features=0.33,
            n_jobs=args.jobs, random_state=r.seed,
        ).fit(tr_in.x, y)  # fmt: skip
        fit_s = time.perf_counter() - started
        graph = members_to_onnx(
            {"random_forest": forest}, len(feature_names(r.lookback, r.horizons)), len(r.horizons)
        )
        size = len(with_metadata(graph, "{}"))
        change = unsquash(forest.predict(te_in.x), r.squash)
        point = (te_in.anchor[:, None] + change * te_in.scale[:, None]) * level
        nmae = (np.abs(point - test.future) / level).mean(axis=0)
        rows.append(
            {
                "max_depth": depth,
                "min_samples_leaf": leaf,
                "onnx_bytes": size,
                "fit_seconds": fit_s,
                "nmae": dict(zip((f"h{h}" for h in r.horizons), nmae.tolist(), strict=True)),
                "rel_persistence": dict(
                    zip((f"h{h}" for h in r.horizons), (nmae / persistence).tolist(), strict=True)
                ),
            }
        )
        print(
            f"depth {depth!s:>4} leaf {leaf:3d}: {size / 1e6:6.2f} MB  fit {fit_s:5.0f} s  nmae "
            + " ".join(f"{v:.4f}" for v in nmae)
        )
    report = {
        "command": " ".join(sys.argv),
        "series": args.series,
        "train_windows": len(train.histories),
        "test_windows": len(test.histories),
        "persistence_nmae": dict(
            zip((f"h{h}" for h in r.horizons), persistence.tolist(), strict=True)
        ),
        "settings": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
