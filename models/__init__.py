"""Batch models, training pipelines, synthetic data, the registry and ONNX export."""
