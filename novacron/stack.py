"""The local Kafka (KRaft) + Redis stack behind ``novacron stack up | down | status``.

Kafka runs from jars that Maven copies from ``deploy/kafka/pom.xml``; Redis is
Debian's ``redis-server``. Both run detached in their own session, with data,
logs and pid files under ``settings.state_dir``. A service already answering
on a configured port that this project did not start is reported as
``foreign``, reused, and never stopped.

Process handling is in :mod:`novacron.stack_processes`, what differs between
Kafka and Redis in :mod:`novacron.stack_services`; this module holds the status
of the stack, ``stack_up``, ``stack_down`` and the status table.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agents.settings import Settings

from .stack_processes import (
    StackPaths,
    failure,
    our_pid,
    process_alive,
    spawn,
    stack_paths,
    stop_process,
)
from .stack_services import (
    Progress,
    prepare_kafka,
    redis_cmd,
    service_address,
    service_ready,
    tcp_open,
)
from .stack_tls import SecureMaterial, client_settings, ensure_material

State = Literal["running", "stopped", "foreign"]


@dataclass(frozen=True)
class ComponentStatus:
    """One service of the stack as seen now."""

    name: str
    address: str
    state: State
    healthy: bool
    pid: int | None
    log_path: Path
    note: str = ""


@dataclass(frozen=True)
class StackStatus:
    """Every component of the stack, plus what ``stack_up`` did, in order."""

    components: list[ComponentStatus]
    actions: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Whether every component answers (its metadata request or PING succeeds)."""
        return all(c.healthy for c in self.components)

    def component(self, name: str) -> ComponentStatus:
        """The component called ``name`` (``kafka`` or ``redis``)."""
        for comp in self.components:
            if comp.name == name:
                return comp
        msg = f"The stack has no component {name!r}; expected one of 'kafka', 'redis'."
        raise KeyError(msg)


def _component(settings: Settings, name: str) -> ComponentStatus:
    paths = stack_paths(settings)
    host, port = service_address(settings, name)
    pid, stale = our_pid(paths, name)
    healthy, why = service_ready(settings, name)
    if pid is not None:
        state: State = "running"
    elif healthy or tcp_open(host, port):
        state = "foreign"
    else:
        state = "stopped"
    note = why + ("; removed a stale pid file" if stale else "")
    return ComponentStatus(name, f"{host}:{port}", state, healthy, pid, paths.log_file(name), note)


def stack_status(settings: Settings) -> StackStatus:
    """Report each component's state, pid, health and log, changing nothing but stale pid files."""
    settings, _ = _secured(settings)
    return StackStatus([_component(settings, n) for n in ("kafka", "redis")])


def _secured(settings: Settings) -> tuple[Settings, SecureMaterial | None]:
    """In the secure mode, the settings of a client of the stack and its material."""
    if not settings.stack_secure:
        return settings, None
    material = ensure_material(settings, stack_paths(settings))
    return client_settings(settings, material), material


def _wait_ready(
    settings: Settings, paths: StackPaths, name: str, pid: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    why = "not checked yet"
    while time.monotonic() < deadline:
        if not process_alive(pid, name):
            paths.pid_file(name).unlink(missing_ok=True)
            raise failure(paths, name, f"the process (pid {pid}) exited")
        ok, why = service_ready(settings, name)
        if ok:
            return
        time.sleep(0.5)
    raise failure(paths, name, f"not ready after {timeout_s:.0f} s ({why})")


def stack_up(
    settings: Settings, *, timeout_s: float = 90.0, progress: Progress | None = None
) -> StackStatus:
    """Start Kafka and Redis unless already running, and wait until both answer.

    Args:
        settings: where to listen and where to keep data, logs and pid files.
        timeout_s: how long each component may take to answer.
        progress: called with a line before slow steps (jar download, start-up).

    Raises:
        StackError: a component failed to start or answer; the message names it,
            says why, and ends with the last lines of its log.
    """
    say = progress or (lambda _line: None)
    paths = stack_paths(settings)
    settings, secure = _secured(settings)
    actions: list[str] = []
    started: list[tuple[str, int]] = []
    for name in ("kafka", "redis"):
        comp = _component(settings, name)
        if "stale pid file" in comp.note:
            actions.append(f"{name}: removed a stale pid file")
        if comp.state == "running" and comp.healthy:
            actions.append(f"{name}: reused the running process (pid {comp.pid}) at {comp.address}")
            continue
        if comp.state == "foreign" and comp.healthy:
            actions.append(f"{name}: reused a service this project did not start at {comp.address}")
            continue
        if comp.state == "running":  # ours, alive, not answering: let it finish starting
            actions.append(f"{name}: waiting for the process already starting (pid {comp.pid})")
            _wait_ready(settings, paths, name, comp.pid or 0, timeout_s)
            continue
        if comp.state == "foreign":
            why = f"{comp.address} is taken by a process that does not answer as {name}"
            raise failure(paths, name, f"{why} ({comp.note})")
        if name == "kafka":
            cmd = prepare_kafka(settings, paths, say, secure)
        else:
            cmd = redis_cmd(settings, paths, secure)
        say(f"Starting {name} on {comp.address} (log: {comp.log_path})...")
        started.append((name, spawn(paths, name, cmd)))
        actions.append(f"{name}: started at {comp.address}")
    for name, pid in started:
        _wait_ready(settings, paths, name, pid, timeout_s)
    if secure is not None:
        actions.append(f"secure mode: client settings in {secure.env_file}")
    return StackStatus(stack_status(settings).components, actions)


def stack_down(settings: Settings, *, purge: bool = False) -> list[str]:
    """Stop the processes this project started (never foreign ones).

    Args:
        settings: where the pid files are.
        purge: also delete Kafka's data and Redis's directory.

    Returns:
        One line per thing done, e.g. ``"kafka (pid 123)"``; empty if nothing ran.
    """
    paths = stack_paths(settings)
    stopped: list[str] = []
    for name in ("redis", "kafka"):
        pid, _stale = our_pid(paths, name)
        if pid is not None:
            stop_process(pid, name)
            stopped.append(f"{name} (pid {pid})")
        paths.pid_file(name).unlink(missing_ok=True)
    if purge:
        for d in (paths.kafka_data, paths.redis):
            if d.exists():
                shutil.rmtree(d)
                stopped.append(f"purged {d}")
    return stopped


def render(status: StackStatus) -> str:
    """A plain-text table of the stack, followed by what ``stack_up`` did."""
    cwd = Path.cwd()
    rows = [("COMPONENT", "ADDRESS", "STATE", "OK", "PID", "LOG")]
    for c in status.components:
        healthy = "yes" if c.healthy else "no"
        log = c.log_path.relative_to(cwd) if c.log_path.is_relative_to(cwd) else c.log_path
        rows.append((c.name, c.address, c.state, healthy, str(c.pid or "-"), str(log)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join([*lines, *status.actions])
