"""The local stack's secure mode: a throwaway CA, the services' certificates, credentials.

``novacron stack up --secure`` starts Kafka with a SASL_SSL listener (SCRAM-SHA-512
users created when its storage is formatted) and Redis with TLS only and an ACL user
instead of the open default user, as a production deployment would. The CA, the
certificate (valid for ``localhost`` and the stack's host address) and random
passwords are made once with ``openssl`` under ``<state_dir>/secure/`` and reused;
``credentials.env`` there holds the ``NOVACRON_*`` settings a client needs.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from agents.settings import Settings
from streams.errors import StackError

from .stack_processes import StackPaths

KAFKA_ADMIN = "admin"
"""The broker's own SCRAM user (between its listeners)."""
CLIENT_USER = "novacron"
"""The SCRAM and Redis ACL user of workers and tools."""
_DAYS = "90"


@dataclass(frozen=True)
class SecureMaterial:
    """Files and secrets of a secure stack."""

    folder: Path
    ca: Path
    cert: Path
    key: Path
    kafka_keystore: Path
    admin_password: str
    client_password: str

    @property
    def env_file(self) -> Path:
        return self.folder / "credentials.env"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        msg = "the secure stack needs `openssl` (Debian package openssl); it is not on PATH"
        raise StackError(msg)
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        msg = f"`openssl {' '.join(args)}` exited {done.returncode}: {done.stderr[-1000:]}"
        raise StackError(msg)


def ensure_material(settings: Settings, paths: StackPaths) -> SecureMaterial:
    """The secure stack's CA, certificate and passwords, made on first use."""
    folder = paths.root / "secure"
    folder.mkdir(parents=True, exist_ok=True)
    material = SecureMaterial(
        folder,
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "kafka-keystore.pem",
        "",
        "",
    )
    if not material.kafka_keystore.exists():
        _make_certificates(settings, material)
    secrets_file = folder / "secrets.json"
    if not secrets_file.exists():
        values = {"admin": secrets.token_urlsafe(24), "client": secrets.token_urlsafe(24)}
        secrets_file.write_text(json.dumps(values))
        secrets_file.chmod(0o600)
    values = json.loads(secrets_file.read_text())
    material = SecureMaterial(
        folder,
        material.ca,
        material.cert,
        material.key,
        material.kafka_keystore,
        values["admin"],
        values["client"],
    )
    if not material.env_file.exists():
        _write_env(material)
    return material


def _make_certificates(settings: Settings, m: SecureMaterial) -> None:
    subj = ["-subj", "/CN=NovaCron local stack CA"]
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             m.ca.name, "-days", _DAYS, *subj, cwd=m.folder)  # fmt: skip
    names = {"localhost", settings.kafka_host, settings.redis_host}
    alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in sorted(names))
    (m.folder / "san.ext").write_text(f"subjectAltName={alt}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", m.key.name, "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=m.folder)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", m.ca.name, "-CAkey", "ca.key",
             "-CAcreateserial", "-out", m.cert.name, "-days", _DAYS, "-extfile", "san.ext",
             cwd=m.folder)  # fmt: skip
    m.kafka_keystore.write_text(m.key.read_text() + m.cert.read_text() + m.ca.read_text())
    for private in (m.key, m.kafka_keystore, m.folder / "ca.key"):
        private.chmod(0o600)


def _write_env(m: SecureMaterial) -> None:
    lines = {
        "NOVACRON_STACK_SECURE": "true",
        "NOVACRON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "NOVACRON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "NOVACRON_KAFKA_USERNAME": CLIENT_USER,
        "NOVACRON_KAFKA_PASSWORD": m.client_password,
        "NOVACRON_KAFKA_CA_FILE": str(m.ca),
        "NOVACRON_REDIS_TLS": "true",
        "NOVACRON_REDIS_USERNAME": CLIENT_USER,
        "NOVACRON_REDIS_PASSWORD": m.client_password,
        "NOVACRON_REDIS_CA_FILE": str(m.ca),
    }
    m.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    m.env_file.chmod(0o600)


def client_settings(settings: Settings, m: SecureMaterial) -> Settings:
    """``settings`` as a client of the secure stack sees them."""
    return settings.model_copy(
        update={
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_username": CLIENT_USER,
            "kafka_password": SecretStr(m.client_password),
            "kafka_ca_file": m.ca,
            "redis_tls": True,
            "redis_username": CLIENT_USER,
            "redis_password": SecretStr(m.client_password),
            "redis_ca_file": m.ca,
        }
    )


def kafka_secure_properties(settings: Settings, m: SecureMaterial) -> dict[str, str]:
    """What ``server.properties`` changes for a SASL_SSL listener with SCRAM users."""
    host, port = settings.kafka_host, settings.kafka_port
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{KAFKA_ADMIN}" password="{m.admin_password}";'
    )
    return {
        "listeners": f"SASL_SSL://{host}:{port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(m.kafka_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(m.ca),
    }


def kafka_scram_users(m: SecureMaterial) -> list[str]:
    """``kafka-storage format`` arguments that create the SCRAM users."""
    users = ((KAFKA_ADMIN, m.admin_password), (CLIENT_USER, m.client_password))
    args: list[str] = []
    for name, password in users:
        args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    return args


def redis_secure_args(settings: Settings, m: SecureMaterial) -> list[str]:
    """``redis-server`` arguments: TLS only on the stack's port, an ACL user, no default."""
    return [
        "--port", "0", "--tls-port", str(settings.redis_port),
        "--tls-cert-file", str(m.cert), "--tls-key-file", str(m.key),
        "--tls-ca-cert-file", str(m.ca), "--tls-auth-clients", "no",
        "--user", "default", "off",
        "--user", CLIENT_USER, "on", f">{m.client_password}", "~*", "&*", "+@all",
    ]  # fmt: skip


def mode_marker(paths: StackPaths) -> Path:
    """Records whether the broker's storage was formatted for the secure mode."""
    return paths.kafka / "mode"


def check_mode(paths: StackPaths, secure: bool) -> None:
    """Refuse to start a broker whose storage was formatted for the other mode."""
    marker = mode_marker(paths)
    want = "secure" if secure else "plain"
    if marker.exists() and marker.read_text().strip() != want:
        msg = (
            f"kafka failed: its storage in {paths.kafka_data} was formatted for the "
            f"{marker.read_text().strip()} mode, not {want}. Use another NOVACRON_STATE_DIR "
            "for the other mode, or `novacron stack down --purge` first."
        )
        raise StackError(msg)
