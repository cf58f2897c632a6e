"""Detached service processes of the local stack: state-dir layout, pid files, start, stop.

Each service runs in its own session, started through a shell that exits at once,
with its pid file under ``settings.state_dir/run``; a failure message ends with the
last lines (and last errors) of the service's logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from agents.settings import Settings
from streams.errors import StackError

STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 20

# A shell starts the service in the background and exits at once, so the service is
# not our child: no zombie and no Popen "still running" ResourceWarning when we exit.
_LAUNCHER = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


@dataclass(frozen=True)
class StackPaths:
    """Where a stack's data, logs, jars and pid files lie under ``settings.state_dir``."""

    root: Path
    kafka: Path
    kafka_data: Path
    kafka_logs: Path
    kafka_libs: Path
    redis: Path

    def pid_file(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.kafka_logs / "server.log" if name == "kafka" else self.root / "redis.log"

    def stdout_file(self, name: str) -> Path:
        return self.kafka_logs / "kafka.out" if name == "kafka" else self.root / "redis.out"


def stack_paths(settings: Settings) -> StackPaths:
    """The layout of the stack under ``settings.state_dir``."""
    root = Path(settings.state_dir).resolve()
    kafka = root / "kafka"
    return StackPaths(root, kafka, kafka / "data", kafka / "logs", kafka / "libs", root / "redis")


def process_alive(pid: int, name: str) -> bool:
    """Whether ``pid`` is a live (non-zombie) process that looks like our ``name``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return ("kafka.Kafka" if name == "kafka" else "redis-server") in cmdline


def our_pid(paths: StackPaths, name: str) -> tuple[int | None, bool]:
    """The live pid from our pid file, and whether a stale pid file was removed."""
    pid_file = paths.pid_file(name)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        if pid_file.exists():
            pid_file.unlink()
            return None, True
        return None, False
    if process_alive(pid, name):
        return pid, False
    pid_file.unlink(missing_ok=True)
    return None, True


def _log_tail(*files: Path) -> str:
    parts = []
    for path in files:
        with contextlib.suppress(OSError):
            every = path.read_text(errors="replace").splitlines()
            errors = [ln for ln in every if " ERROR " in ln or " FATAL " in ln or "# " in ln][-3:]
            if errors:  # a stack trace can push the cause out of the tail
                parts.append(f"--- last errors in {path} ---\n" + "\n".join(errors))
            if lines := every[-LOG_TAIL_LINES:]:
                parts.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
    return "\n".join(parts) or "(the logs are empty)"


def failure(paths: StackPaths, name: str, why: str) -> StackError:
    """The error saying why ``name`` failed, ending with the tail of its logs."""
    log = paths.log_file(name)
    tail = _log_tail(paths.stdout_file(name), log)
    return StackError(f"{name} failed: {why}. Log: {log}\n{tail}")


def spawn(paths: StackPaths, name: str, cmd: list[str]) -> int:
    """Start ``cmd`` detached in its own session, write its pid file, return the pid."""
    paths.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    launch = ["/bin/sh", "-c", _LAUNCHER, "sh", str(paths.stdout_file(name)), *cmd]
    with subprocess.Popen(  # noqa: S603
        launch,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd=paths.root,
        start_new_session=True,
    ) as launcher:
        out, _ = launcher.communicate(timeout=30)
    pid = int(out.strip())
    paths.pid_file(name).write_text(f"{pid}\n")
    return pid


def stop_process(pid: int, name: str) -> None:
    """SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``; return once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process_alive(pid, name):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while process_alive(pid, name):
        time.sleep(0.1)
