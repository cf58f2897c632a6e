"""`pip install .` (no train extra) imports the worker and replays with the shipped models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-serve-install.sh"


def test_serve_only_install_replays_with_the_shipped_models() -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "serve install ok" in done.stdout
    assert "worker imports ok" in done.stdout
