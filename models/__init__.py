"""Model implementations of the core's protocols: the bandwidth baselines and LSTM
(features, training, ONNX export and serving), scoring, the registry and shipped bundle,
synthetic link and host telemetry, datasets."""
