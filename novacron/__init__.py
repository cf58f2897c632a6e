"""NovaCron telemetry ML: the command line, the local stack, producer, tail, demo, evaluation."""

__version__ = "0.1.0"
