"""Golden files: a handful of outputs exactly as printed, so that a rendering change shows in review.

Each case runs the CLI in process (typer's CliRunner) at a fixed terminal width and compares
what it printed (stdout, then stderr under a ``--- stderr ---`` line, then the exit status if it
is not 0) with tests/golden/NAME.

Regenerate every golden file after an intended change, then read the diff before committing:

    GRADCLI_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

(the cases then rewrite their files and report as skipped, so nothing passes unread).

What is fixed rather than normalised:
- the width: rich reads COLUMNS (the CLI uses 120 columns for a pipe only when COLUMNS is unset);
- colour: NO_COLOR=1, and the variables that would force it on or claim a terminal are unset;
- the device: every case passes ``--device cpu``, so the "float32 on cpu (...)" note and the JSON
  "device" are the same on a machine with a GPU;
- the numbers: the expressions are polynomials, abs and relu at small binary fractions, which
  IEEE arithmetic computes exactly on every CPU; transcendental functions (sin, exp, log) may
  round their last bit differently from one CPU's vector unit to another's.
What is normalised: the version, in JSON's "gradcli_version" (it changes on every release).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradcli.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("GRADCLI_UPDATE_GOLDEN") == "1"

# Three variables, one formula long enough to wrap at 80 columns, and a kink (abs at 0) so the
# table shows more than one verdict.
GRAD = ["grad", "x**3*y**2 + 4*x*y*z - y**4/2 + abs(z) + 7*x", "x=3", "y=2", "z=0", "--device", "cpu"]

# name -> (arguments, terminal width)
CASES: dict[str, tuple[list[str], int]] = {
    "grad_80.txt": (GRAD, 80),
    "grad_120.txt": (GRAD, 120),
    # --pretty: indented as on a terminal (into a pipe, JSON is one line), so that a diff reads
    "grad.json": (["grad", "mean((t - p)**2) + relu(p[0] - 1)", "p=[1,2,3]", "t=[2,3,5]", "--wrt", "p",
                   "--device", "cpu", "--json", "--pretty"], 80),
    "jacobian_scalars.json": (["jacobian", "[r*t**2, r**2*t/3]", "r=1.5", "t=0.25", "--device", "cpu", "--json",
                               "--pretty"], 80),
    # x crosses 0 at row 4 of the file, where abs has its kink.
    "points.csv": (["grad", "x**2*y + y**3/4 - 3*x + abs(x)", "--points", "examples/points.csv",
                    "--device", "cpu"], 80),
    "jacobian_80.txt": (["jacobian", "[x[0]**2 + 4*x[1], x[1]**3 - x[0]*x[1], relu(x[0] - 2)]", "x=[2,3]",
                         "--device", "cpu"], 80),
}

# Variables through which rich (or a CI service) would turn colour on or take the width from
# elsewhere; None unsets them for the run.
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "LINES",
                "COLORTERM", "TERM", "PY_COLORS", "GITHUB_ACTIONS")

VERSION = re.compile(r'("gradcli_version":\s*)"[^"]*"')


def render(args: list[str], columns: int) -> str:
    env: dict[str, str | None] = dict.fromkeys(TERMINAL_ENV)
    env.update({"COLUMNS": str(columns), "NO_COLOR": "1"})
    result = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    text = result.stdout
    if result.stderr:
        text += "--- stderr ---\n" + result.stderr
    # Recorded, not asserted: a change of exit status shows in the diff like any other, and
    # regenerating never stops at one.
    if result.exit_code:
        text += f"--- exit status {result.exit_code} ---\n"
    return VERSION.sub(r'\1"<version>"', text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args, columns = CASES[name]
    monkeypatch.chdir(ROOT)  # examples/points.csv, as the README's examples name it
    actual = render(args, columns)
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        pytest.skip(f"rewrote {path.relative_to(ROOT)}")
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: GRADCLI_UPDATE_GOLDEN=1 .venv/bin/python -m pytest "
                    "tests/test_golden.py writes it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            f"golden/{name}", "printed now"))
        pytest.fail(f"the output differs from tests/golden/{name}; if the change is meant, regenerate with "
                    f"GRADCLI_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py\n{diff}")


def test_the_width_is_the_one_asked() -> None:
    """The 80- and 120-column files differ and fit their width: COLUMNS reached rich."""
    narrow, wide = render(GRAD, 80), render(GRAD, 120)
    assert narrow != wide
    assert max(map(len, narrow.splitlines())) <= 80
    assert max(map(len, wide.splitlines())) > 80
    assert max(map(len, wide.splitlines())) <= 120
    assert "\x1b[" not in narrow + wide  # no colour codes under NO_COLOR


def test_every_golden_file_has_a_case() -> None:
    # (golden/terminal/ is tests/test_terminal_widths.py's: screens through a pseudo-terminal)
    orphans = sorted(p.name for p in GOLDEN.iterdir() if p.is_file() and p.name not in CASES)
    assert not orphans, f"tests/golden/ holds files no case writes (delete them): {orphans}"
