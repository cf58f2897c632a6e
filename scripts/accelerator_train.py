"""Fit the bandwidth LSTM on a GPU machine with Keras 3 on the JAX or PyTorch backend.

The machine needs only numpy, onnxruntime and Keras (installed from wheels carried with
the working tree); the weights come back and ``scripts/accelerator_finish.py`` rebuilds the
same windows here, loads them into the TensorFlow-backend model, calibrates, exports to
ONNX (with the parity check) and registers the version. Usage on the accelerator::

    python -m pip install --no-deps --no-index .gpu/*.whl   # keras and its pure wheels
    KERAS_BACKEND=jax python scripts/accelerator_train.py --series .gpu/internet.npz \\
        --mode internet --out "$OUT"

``--init-from DIR`` continues from an earlier fit's weights and input statistics (for
example a model fitted on real traces, fine-tuned on traces plus synthetic links). It runs
on any Keras backend, so a short fine-tune also works on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.datasets import assemble, load_series  # noqa: E402
from models.features import FeatureStats, fit_stats  # noqa: E402
from models.training import fit_model, mode_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--units", default="")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--init-from", type=Path, default=None)
    args = parser.parse_args()
    config = mode_config(args.mode)
    units = tuple(int(u) for u in args.units.split(",")) if args.units else None
    synthetic, folders = load_series(args.series)
    data = assemble(synthetic, folders, config.window, stride=args.stride, seed=args.seed)
    stats = fit_stats([data["train"].windows[:, -1, :]])
    init, start = None, None
    if args.init_from is not None:
        # The earlier model's input scaling is part of what it learned: keep it.
        start = json.loads((args.init_from / "fit.json").read_text())
        stats = FeatureStats.from_dict(start["stats"])
        units = tuple(start["units"])
        init = args.init_from / "model.weights.h5"
    print({k: len(v) for k, v in data.items()}, flush=True)
    started = time.time()

    def report(epoch: int, logs: dict[str, float]) -> None:
        print(f"epoch {epoch} {logs} {time.time() - started:.0f}s", flush=True)

    model, history, seconds = fit_model(
        config,
        data,
        stats,
        epochs=args.epochs,
        units=units,
        seed=args.seed,
        on_epoch=report,
        max_seconds=args.max_seconds,
        init_weights=init,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_weights(args.out / "model.weights.h5")
    (args.out / "fit.json").write_text(json.dumps({
        "history": history, "train_seconds": seconds, "stats": stats.to_dict(),
        "units": list(units or config.units), "epochs": args.epochs, "stride": args.stride,
        "seed": args.seed, "mode": args.mode, "backend": __import__("keras").backend.backend(),
        "series": args.series.name,
        "init_from": None if start is None else {"dir": str(args.init_from), "fit": start},
    }, indent=2))  # fmt: skip
    print(f"done in {seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
