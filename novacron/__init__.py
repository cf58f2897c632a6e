"""NovaCron telemetry ML: the command line, settings, errors and the local stack."""

__version__ = "0.1.0"
