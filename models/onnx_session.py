"""Opening a served ONNX model: the one place onnxruntime sessions are made.

Every served model (the bandwidth LSTMs, the workload classifier, the forecast ensemble)
is one ONNX file with its own metadata property; :func:`open_session` loads it on the
CPU and returns the session with that property's text, or raises
:class:`~streams.errors.ModelError` saying what is wrong with the file.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from streams.errors import ModelError


def open_session(
    path: Path, metadata_key: str, what: str, threads: int = 0
) -> tuple[ort.InferenceSession, str]:
    """The session of the ONNX file at ``path`` and its ``metadata_key`` property.

    Args:
        path: the model file.
        metadata_key: the metadata property the model's exporter writes.
        what: how the file is named in errors, with what to do about it (e.g. "a forecast
            model exported by `novacron train forecast`").
        threads: onnxruntime intra-op threads (0: onnxruntime's default).

    Raises:
        ModelError: a missing file, one onnxruntime cannot load, or one without the
            metadata property.
    """
    source = repr(str(path))
    if not Path(path).is_file():
        msg = f"Model file {source} does not exist."
        raise ModelError(msg)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        msg = f"onnxruntime cannot load {source}: {exc}"
        raise ModelError(msg) from exc
    meta = session.get_modelmeta().custom_metadata_map
    if metadata_key not in meta:
        msg = f"{source} has no {metadata_key!r} metadata property: it is not {what}."
        raise ModelError(msg)
    return session, meta[metadata_key]
