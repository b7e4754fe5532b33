"""What test modules share besides fixtures: importable as `tests.helpers` from any folder of the
suite (pyproject's pythonpath puts the repository root on sys.path), where importing conftest
would load a second copy of it under another name."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gradcli_executable() -> str:
    """The installed console script next to this interpreter (what a user runs)."""
    here = Path(sys.executable).parent / ("gradcli.exe" if os.name == "nt" else "gradcli")
    found = str(here) if here.exists() else shutil.which("gradcli")
    if not found:
        pytest.fail("the gradcli entry point is not installed: pip install -e '.[test]'")
    return found
