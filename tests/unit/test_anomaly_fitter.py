"""The anomaly fits in a child process: the same detectors as in a thread, a child that
dies is replaced, and the child never outlives a worker killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models import anomaly_fitter
from models.anomaly_fitted import fit_detectors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_process() -> Iterator[None]:
    anomaly_fitter.fit_in_process(True)
    try:
        yield
    finally:
        anomaly_fitter.fit_in_process(False)


def _rows(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(256, 4))


def _child_pid() -> int:
    return int(anomaly_fitter._pool().submit(os.getpid).result(timeout=60))


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_fit_in_the_child_is_the_fit_in_a_thread(in_process: None) -> None:
    assert anomaly_fitter.fitting_in_process()
    futures = [anomaly_fitter.submit_fit(_rows(seed), seed) for seed in range(3)]
    fitted = [anomaly_fitter.fit_result(f) for f in futures]
    assert _child_pid() != os.getpid()
    for seed, got in enumerate(fitted):
        assert got is not None
        assert got.to_bytes() == fit_detectors(_rows(seed), seed).to_bytes()


def test_a_dead_child_gives_none_and_the_next_fit_starts_another(in_process: None) -> None:
    first = _child_pid()
    pending = [anomaly_fitter.submit_fit(_rows(seed), seed) for seed in range(20)]
    os.kill(first, signal.SIGKILL)
    results = [anomaly_fitter.fit_result(f) for f in pending]
    assert None in results  # what the child held is lost: the caller refits
    again = anomaly_fitter.fit_result(anomaly_fitter.submit_fit(_rows(5), 5))
    assert again is not None
    assert again.to_bytes() == fit_detectors(_rows(5), 5).to_bytes()
    assert _child_pid() != first


def test_the_child_ends_when_its_worker_is_killed() -> None:
    script = textwrap.dedent(
        """
        import os, time
        import numpy as np
        from models import anomaly_fitter
        anomaly_fitter.fit_in_process(True)
        print(anomaly_fitter._pool().submit(os.getpid).result(), flush=True)
        rows = np.random.default_rng(0).normal(size=(256, 4))
        pending = [anomaly_fitter.submit_fit(rows, seed) for seed in range(200)]
        print("fitting", flush=True)
        time.sleep(120)
        """
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        assert worker.stdout.readline().strip() == "fitting"
        assert not _gone(child, 0.5)  # busy with the 200 fits
        worker.kill()  # SIGKILL: no handler, no atexit
        worker.wait(10)
        assert _gone(child, 10.0), f"the fitting process {child} outlived its worker"
    finally:
        worker.kill()
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
