import json
import os
import subprocess

import pytest
from typer.testing import CliRunner

from gradcli.cli.app import app

# ROOT too: tests written before tests.helpers (on other branches) import both from conftest.
from tests.helpers import ROOT, gradcli_executable  # noqa: F401


@pytest.fixture
def fresh_lowering():
    """For a test that tampers with the lowering: the parsed expressions the API keeps, each
    with its lowered f, are forgotten before (so the tampering is seen) and after (so it never
    leaks into another test)."""
    from gradcli.core import session

    session.parse_cached.cache_clear()
    yield
    session.parse_cached.cache_clear()


@pytest.fixture
def run():
    """Run gradcli in-process; returns the click Result (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)
    return invoke


@pytest.fixture
def run_json(run):
    """Run gradcli with --json in-process; returns (exit code, parsed document)."""

    def invoke(*args: str):
        result = run(*args, "--json")
        assert result.stdout.strip(), f"no JSON on stdout; stderr: {result.stderr}"
        return result.exit_code, json.loads(result.stdout)
    return invoke


@pytest.fixture
def sh():
    """Run the installed `gradcli` in a subprocess, as a shell user would."""
    exe = gradcli_executable()

    def invoke(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 120,
               cwd=None):
        full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        full_env.update(env or {})
        return subprocess.run([exe, *args], input=input, capture_output=True, text=True, env=full_env,
                              timeout=timeout, cwd=cwd)
    return invoke
