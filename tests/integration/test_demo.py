"""``novacron demo`` on the real stack: every message it sends is accounted for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from .conftest import isolated_env
from .test_worker_round_trip import WARM_UP

pytestmark = pytest.mark.integration

LINKS = 4


def test_demo_summary_adds_up_and_shows_an_alert_a_class_and_an_action(tmp_path: Path) -> None:
    env = {**os.environ, **isolated_env("demo")}
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "novacron", "demo", "--duration", "45", "--links", str(LINKS),
         "--drain", "60", "--summary", str(summary_path)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["adds_up"], summary
    link, host = summary["inputs"]
    received = summary["received"]
    for ledger in (link, host):
        assert ledger["in_flight"] == 0, ledger
        accounted = sum(ledger["outcomes"].values()) + ledger["dead_letters"]
        assert accounted == ledger["sent"] > 0, ledger
        assert ledger["dead_letters"] > 0, "the demo injects bad messages on both topics"
    # New links (a key prefix of this test's own): each warms up before its first prediction.
    assert link["outcomes"]["warming_up"] == LINKS * (WARM_UP - 1)
    # What the worker counted is what reached the output topics.
    assert received["predictions"] == link["outcomes"]["predictions"]
    assert received["dead_letters"] == link["dead_letters"] + host["dead_letters"]
    assert received["alert_statuses"].get("open", 0) >= 1, received
    assert received["workload_classes"] >= 1, received
    assert received["action_kinds"].get("SCALE_OUT", 0) >= 1, received
    assert "adds up" in done.stdout
