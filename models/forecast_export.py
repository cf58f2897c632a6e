"""Export the forecast ensemble's fitted members into one ONNX graph (training side).

Each member is converted with skl2onnx; the graphs are prefixed with their member's
name (``onnx.compose.add_prefix``) and joined into one graph that reads one ``x`` and
outputs one ``(batch, horizons)`` tensor per member (the per-horizon Gradient Boosting
models are concatenated). Needs the ``train`` extra (skl2onnx, onnx).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streams.errors import ModelError

from .forecast import METADATA_KEY

OPSETS = {"": 17, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-4
"""Largest difference allowed between ONNX and scikit-learn outputs, in units of the
window's level (outputs are multiplied by it): a relative error of the forecast."""


def members_to_onnx(members: Mapping[str, Any], n_features: int, n_horizons: int) -> Any:
    """One ``onnx.ModelProto``: input ``x`` ``(batch, n_features)`` float32, one output per
    member named after it. A member is a multi-output estimator or a list of
    single-output ones (one per horizon)."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    nodes: list[Any] = []
    initializers: list[Any] = []
    outputs = []
    opsets: dict[str, int] = {}
    for name, member in members.items():
        parts = list(member) if isinstance(member, list | tuple) else [member]
        part_outputs = []
        for i, estimator in enumerate(parts):
            proto = convert_sklearn(
                estimator,
                initial_types=[("x", FloatTensorType([None, n_features]))],
                target_opset=OPSETS,
            )
            proto = onnx.compose.add_prefix(proto, f"{name}_{i}_")
            graph = proto.graph
            nodes.append(helper.make_node("Identity", ["x"], [graph.input[0].name]))
            nodes.extend(graph.node)
            initializers.extend(graph.initializer)
            part_outputs.append(graph.output[0].name)
            for opset in proto.opset_import:
                opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
        if len(part_outputs) == 1:
            nodes.append(helper.make_node("Identity", part_outputs, [name]))
        else:
            nodes.append(helper.make_node("Concat", part_outputs, [name], axis=1))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, n_horizons]))
    graph = helper.make_graph(
        nodes,
        "forecast_ensemble",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_features])],
        outputs,
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())]
    )
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


def with_metadata(model: Any, metadata_json: str) -> bytes:
    """The serialised model with ``metadata_json`` as its ``novacron`` property."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json
    return bytes(model.SerializeToString())


def sklearn_outputs(members: Mapping[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    """Each member's ``(k, horizons)`` scikit-learn predictions (the reference for parity)."""
    out = {}
    for name, member in members.items():
        parts = list(member) if isinstance(member, list | tuple) else [member]
        out[name] = np.concatenate(
            [np.asarray(m.predict(x)).reshape(len(x), -1) for m in parts], axis=1
        )
    return out


def check_parity(reference: Mapping[str, np.ndarray], onnx_out: Mapping[str, np.ndarray]) -> float:
    """The largest ONNX - scikit-learn difference; ModelError above the tolerance."""
    worst = max(float(np.max(np.abs(onnx_out[n] - r), initial=0.0)) for n, r in reference.items())
    if not worst < PARITY_TOLERANCE:
        msg = (
            f"The ONNX ensemble differs from scikit-learn by {worst:.2e} level units "
            f"(limit {PARITY_TOLERANCE}); not exporting."
        )
        raise ModelError(msg)
    return worst
