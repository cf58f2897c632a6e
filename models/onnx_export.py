"""Export a trained Keras bandwidth model to ONNX, checked against Keras.

Needs the ``train`` extra (TensorFlow, tf2onnx); they are imported inside
:func:`export_onnx`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import ModelError

from .datasets import WindowSet
from .features import CHANNELS, FeatureStats, encode_windows
from .lstm_predictor import ModelMetadata, model_name

PARITY_TOLERANCE = 1e-4


def export_onnx(
    model: Any, metadata: ModelMetadata, test: WindowSet, stats: FeatureStats
) -> tuple[Path, float]:
    """Convert with tf2onnx, embed the metadata, and refuse a graph that differs from Keras."""
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, metadata.window, len(CHANNELS)), tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "novacron", metadata.to_json()
    path = Path(tempfile.mkdtemp(prefix="novacron-train-")) / f"{model_name(metadata.mode)}.onnx"
    onnx.save(proto, str(path))
    # Every test window: the first few thousand may all be one family (a mixed set starts
    # with the synthetic links, where a model can be nearly constant) and prove little.
    x, last = encode_windows(test.windows, stats)
    x = x[np.isfinite(last)]
    keras_out = model.predict(x, batch_size=1024, verbose=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    parity = float(np.max(np.abs(keras_out - onnx_out))) if x.size else 0.0
    if parity >= PARITY_TOLERANCE:
        msg = (
            f"ONNX output differs from Keras by {parity:.2e} (limit {PARITY_TOLERANCE}); "
            "not exporting."
        )
        raise ModelError(msg)
    return path, parity
