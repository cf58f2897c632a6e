"""Client options from settings: one place that knows how to reach Kafka and Redis.

Every Kafka client of the project (the worker's Faust app, its health check and topic
creation, the producer, ``tail``, the demo, the local stack's own checks) and every
Redis client takes its security options from here, so a cluster with SASL_SSL and a
Redis with TLS and an ACL user are reached the same way everywhere. Nothing connects
here.
"""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from .settings import Settings


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (empty for PLAINTEXT).

    Examples:
        >>> kafka_options(Settings(kafka_security_protocol="PLAINTEXT"))
        {}
        >>> opts = kafka_options(Settings(kafka_security_protocol="SASL_SSL",
        ...                               kafka_username="u", kafka_password="p"))
        >>> opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"]
        ('SASL_SSL', 'SCRAM-SHA-512', 'u')
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    cafile = str(settings.kafka_ca_file) if settings.kafka_ca_file else None
    password = settings.kafka_password.get_secret_value() if settings.kafka_password else None
    return {
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": password,
        "ssl_context": create_ssl_context(cafile=cafile),
    }


def redis_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url(settings.redis_dsn, ...)``.

    Examples:
        >>> redis_options(Settings(redis_username="w", redis_password="s"))["username"]
        'w'
    """
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options: dict[str, Any] = {"username": settings.redis_username, "password": password}
    if settings.redis_tls and settings.redis_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
    return options
