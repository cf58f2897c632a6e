"""The worker process leaves out the modules it never runs (agents.lean_imports)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
{setup}
import agents.worker
from agents.settings import Settings
from agents.wiring import model_source
from models.serving import ModelHolder
ModelHolder(model_source(Settings(), "baseline")).refresh()
import river.stream
print(json.dumps({{"sklearn": "sklearn" in sys.modules,
                  "adapter": hasattr(river.stream, "iter_sklearn_dataset")}}))
"""


def _probe(setup: str) -> dict[str, bool]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_worker_process_does_not_import_scikit_learn() -> None:
    lean = _probe("from agents.lean_imports import decline_unused_imports\n"
                  "assert decline_unused_imports()")  # fmt: skip
    assert lean == {"sklearn": False, "adapter": False}
    # Without it, River's drift detectors pull scikit-learn in (the test can fail).
    assert _probe("") == {"sklearn": True, "adapter": True}


def test_scikit_learn_still_imports_when_a_fit_is_redone_in_the_worker() -> None:
    out = subprocess.run(
        [sys.executable, "-c",
         "from agents.lean_imports import decline_unused_imports\n"
         "decline_unused_imports()\n"
         "import agents.worker\n"
         "from sklearn.ensemble import IsolationForest\n"
         "print(IsolationForest(n_estimators=3, random_state=0).fit([[0.0], [1.0]]).n_estimators)"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "3"
