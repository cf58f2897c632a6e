"""The core packages never import Faust (directly or through another module)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

CORE = ("streams", "models", "online", "schemas")


def core_modules() -> list[str]:
    names = []
    for package in CORE:
        module = __import__(package)
        names.append(package)
        names.extend(m.name for m in pkgutil.walk_packages(module.__path__, prefix=f"{package}."))
    return names


@pytest.mark.parametrize("module", core_modules())
def test_core_module_does_not_import_faust(module: str) -> None:
    forbidden = ("faust", "mode", "tensorflow")
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}); "
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"
