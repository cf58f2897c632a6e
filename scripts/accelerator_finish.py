"""Register a model whose weights were fitted by ``scripts/accelerator_train.py``.

Rebuilds the same windows from the same series file, loads the weights into the
TensorFlow-backend Keras model, calibrates the interval, exports to ONNX with the parity
check, scores against the baselines and registers (and activates) the version::

    .venv/bin/python scripts/accelerator_finish.py --series .gpu/internet.npz \\
        --mode internet --fit-dir RESULTS --dataset synthetic+../shared/data/throughput
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from agents.settings import Settings  # noqa: E402
from models.bandwidth_training import register_trained  # noqa: E402
from models.datasets import assemble, load_series  # noqa: E402
from models.features import FeatureStats, fit_stats  # noqa: E402
from models.registry import ModelRegistry  # noqa: E402
from models.training import build_model, finalize, mode_config  # noqa: E402
from novacron.reports import print_train_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--fit-dir", type=Path, required=True)
    parser.add_argument("--dataset", default="")
    parser.add_argument("--activate", default="auto")
    args = parser.parse_args()
    fit = json.loads((args.fit_dir / "fit.json").read_text())
    config = mode_config(args.mode)
    synthetic, folders = load_series(args.series)
    data = assemble(synthetic, folders, config.window, stride=fit["stride"], seed=fit["seed"])
    stats = FeatureStats.from_dict(fit["stats"])
    # A fine-tune keeps the statistics of the model it started from; a fresh fit's must
    # match those of the rebuilt training windows, or the windows are not the same.
    if not fit.get("init_from"):
        rebuilt = fit_stats([data["train"].windows[:, -1, :]]).to_dict()
        fitted = stats.to_dict()
        if not all(abs(v - fitted[k]) <= 1e-6 * max(1.0, abs(v)) for k, v in rebuilt.items()):
            msg = "the rebuilt windows differ from those the weights were fitted on"
            raise SystemExit(msg)
    units = tuple(fit["units"])
    model = build_model(config, units)  # type: ignore[arg-type]
    model.load_weights(args.fit_dir / "model.weights.h5")
    extra = {
        "trained_on": data["train"].names, "validated_on": data["val"].names,
        "tested_on": data["test"].names, "fitted_with": fit["backend"],
    }  # fmt: skip
    if fit.get("init_from"):
        start = fit["init_from"]["fit"]
        extra["fine_tuned_from"] = {
            "epochs": len(start["history"]), "train_seconds": start["train_seconds"],
            "backend": start["backend"], "series": start.get("series", ""),
        }  # fmt: skip
    trained = finalize(
        config,
        model,
        data,
        stats,
        fit["history"],
        fit["train_seconds"],
        epochs=fit["epochs"],
        units=units,
        seed=fit["seed"],
        extra=extra,
    )  # type: ignore[arg-type]
    registry = ModelRegistry.from_url(Settings().registry_url, Settings().artifact_dir)
    report = register_trained(registry, args.mode, trained, args.dataset, args.activate)
    print_train_report(report, Console())


if __name__ == "__main__":
    main()
