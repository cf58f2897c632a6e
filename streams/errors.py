"""The project's exceptions: one root, a subclass per kind of failure."""

from __future__ import annotations


class NovacronError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(NovacronError):
    """A setting or command-line option has a value the system cannot use."""


class DecodeError(NovacronError):
    """A telemetry message could not be accepted.

    Attributes:
        kind: one of the dead-letter ``error_kind`` values
            (``malformed_json``, ``schema_violation``, ``unknown_schema_version``,
            ``invalid_value``).
        reason: what was wrong, naming the field, the expected and the received value.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class StoreUnavailable(NovacronError):
    """The window store (Redis) could not be reached or failed mid-call.

    The batch that needed it is retried as a whole; nothing of it was acknowledged.
    """


class StoreConflict(StoreUnavailable):
    """A window changed between a batch's load and its append (another worker appended).

    Nothing was appended; the batch is processed again from freshly loaded windows.
    """


class StackError(NovacronError):
    """A component of the local Kafka + Redis stack failed to start or answer."""


class ModelError(NovacronError):
    """A model cannot be loaded, trained or used as asked."""


class RegistryError(ModelError):
    """The model registry refused an operation (unknown version, bad checksum, ...)."""


class InputFileError(NovacronError):
    """A telemetry file given to replay or training cannot be read."""
