"""Keep the worker process from importing what it never runs.

River's ``river.drift`` imports its example datasets, which import ``river.stream``,
which imports its scikit-learn adapter: every process that uses River's drift detectors
or Half-Space Trees loads scikit-learn (about 20 MB resident in the worker; the
``scipy.stats`` it also needs stays, as ``river.proba`` imports it) for a function it
never calls. The worker fits its anomaly detectors in a child process
(:mod:`models.anomaly_fitter`) and serves every model with onnxruntime, so it needs
scikit-learn only when that child dies and a fit is redone in the worker, which imports
it then. ``river.stream`` already treats its adapter as optional (it skips it when the
import fails), so declining that one import is all it takes.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

DECLINED = ("river.stream.iter_sklearn",)
"""Modules the worker process does not import."""


class _Decline(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in DECLINED:
            msg = f"{fullname} is not imported in the worker process (agents.lean_imports)"
            raise ImportError(msg, name=fullname)
        return None


def decline_unused_imports() -> bool:
    """Install the finder (once) before River is first imported.

    Returns ``False`` when a declined module is already imported: then it is too late and
    nothing is changed. (No doctest: installing it would change the importing process.)
    """
    if any(name in sys.modules for name in DECLINED):
        return False
    if not any(isinstance(finder, _Decline) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Decline())
    return True
