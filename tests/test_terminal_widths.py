"""Output that fits the terminal, checked where a user meets it: the installed gradcli in a real
pseudo-terminal (python's pty module) of 60, 80 and 120 columns.

Each case's screen is a golden file under tests/golden/terminal/ (GRADCLI_UPDATE_GOLDEN=1
rewrites them, as in tests/test_golden.py); beside the files, what must hold at every width is
asserted outright: no line is wider than the terminal, a table keeps its right border, no
number is cut, the verdict is whole, and below the width a table needs the rows become blocks.

The screen is what the terminal received, with the colour and bold codes taken out (NO_COLOR=1
leaves bold on) and "\\r\\n" read as a newline. The numbers are exact in IEEE arithmetic (no
transcendental functions), so the files are the same on every CPU; --device cpu fixes the
device line.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from tests.helpers import gradcli_executable

pytestmark = pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal (pty, termios) is POSIX only")

GOLDEN = Path(__file__).resolve().parent / "golden" / "terminal"
UPDATE = os.environ.get("GRADCLI_UPDATE_GOLDEN") == "1"
WIDTHS = (60, 80, 120)

# name -> arguments. Long float64 references (thirds), several variables, a kink, matrices.
CASES: dict[str, list[str]] = {
    "grad_vector": ["grad", "mean((t - p)**2) + p[0]**3/3", "p=[0.1,0.7,1.3]", "t=[1,2,4]", "--wrt", "p"],
    "grad_scalars": ["grad", "x**3*y**2 + 4*x*y*z - y**4/2 + abs(z) + 7*x", "x=3", "y=2", "z=0"],
    "jacobian_scalars": ["jacobian", "[r*t**2, r**2*t/3]", "r=1.5", "t=0.25"],
    "jacobian_vector": ["jacobian", "[x[0]**2 + 4*x[1], x[1]**3 - x[0]*x[1], relu(x[0] - 2)]", "x=[2,3]"],
    "hessian": ["hessian", "x*y**2 + x**3/3", "x=1", "y=2"],
    "vjp": ["vjp", "[x[0]*x[1]/3, x[0]**2]", "x=[1,2]", "v=[1,0.5]"],
    # an 8 x 8 matrix: a table at 120 columns, a block per row (column=entry pairs) at 60
    "jacobian_wide": ["jacobian", "x**2*3/8 + sum(x)/3", "x=[1,2,3,4,5,6,7,8]", "--method", "rev"],
    "grad_order": ["grad", "x**5/3", "x=2", "--order", "3"],
    # SGD on a quadratic (no transcendental function); its stderr is no terminal, which turns the
    # progress bar (and its timings) off
    "minimize": ["minimize", "sum((w - t)**2)", "w=[0.5,1.5,2.5]", "t=[1,2,3]", "--wrt", "w", "--steps", "5"],
}

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Variables that would turn colour on or give rich a width other than the terminal's.
TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "COLUMNS", "LINES",
                "COLORTERM", "PY_COLORS", "GITHUB_ACTIONS", "NO_COLOR")


def in_terminal(args: list[str], columns: int, rows: int = 60, stderr_on_terminal: bool = True) -> tuple[str, int]:
    """Run the installed gradcli with its stdin, stdout and stderr (unless stderr_on_terminal is
    False: then /dev/null) on a pseudo-terminal of this size; what the terminal showed
    (escape codes out) and the exit status."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    env.update({"NO_COLOR": "1", "TERM": "xterm", "GRADCLI_SERVER": "off"})
    process = subprocess.Popen([gradcli_executable(), *args, "--device", "cpu"], stdin=slave, stdout=slave,
                               stderr=slave if stderr_on_terminal else subprocess.DEVNULL, env=env, close_fds=True)
    os.close(slave)
    received = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        received += chunk
    status = process.wait(timeout=120)
    os.close(master)
    return ESCAPES.sub("", received.decode("utf-8").replace("\r\n", "\n")), status


@pytest.fixture(scope="module")
def screens() -> dict[tuple[str, int], str]:
    found = {}
    for name, args in CASES.items():
        for columns in WIDTHS:
            text, status = in_terminal(args, columns, stderr_on_terminal=name != "minimize")
            assert status == 0, text
            found[(name, columns)] = text
    return found


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_screen(name: str, columns: int, screens: dict[tuple[str, int], str]) -> None:
    actual = screens[(name, columns)]
    path = GOLDEN / f"{name}_{columns}.txt"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        pytest.skip(f"rewrote {path.name}")
    assert path.exists(), f"{path} is missing: GRADCLI_UPDATE_GOLDEN=1 pytest tests/test_terminal_widths.py"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            f"golden/terminal/{path.name}", "shown now"))
        pytest.fail(f"the screen differs from {path.name}; if meant, regenerate (GRADCLI_UPDATE_GOLDEN=1)\n{diff}")


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_is_cut(name: str, columns: int, screens: dict[tuple[str, int], str]) -> None:
    text = screens[(name, columns)]
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines), [line for line in lines if len(line) > columns]
    for line in lines:
        if line.startswith(("│", "╭", "├", "╰")):  # a table's row keeps its right border
            assert line.rstrip().endswith(("│", "╮", "┤", "╯")), line
    # every verdict is whole: one "agree" or "kink" per result, never "agre"
    assert not re.search(r"\bagre\b|\bkin\b", text)
    assert len(re.findall(r"[✓~] (agree|kink)\b", text)) >= 1 or "agrees with sympy's" in text


def numbers_in(text: str) -> list[str]:
    return re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numbers_are_never_split(name: str, screens: dict[tuple[str, int], str]) -> None:
    """Every decimal the widest screen shows is shown whole at the narrower widths too."""
    wide = set(numbers_in(screens[(name, 120)]))
    for columns in (60, 80):
        narrow = set(numbers_in(screens[(name, columns)]))
        assert wide <= narrow, f"at {columns} columns these are cut: {sorted(wide - narrow)}"


def test_narrow_terminals_get_blocks() -> None:
    """At 60 columns the grad report is a block per variable of `label: value` lines, no table."""
    text, _ = in_terminal(CASES["grad_vector"], 60)
    assert "╭" not in text
    assert re.search(r"^p$", text, re.M)
    assert re.search(r"^  check: +✓ agree$", text, re.M)
    assert re.search(r"^  autograd: +\[", text, re.M)


def test_jacobian_of_scalar_variables_is_the_matrix() -> None:
    """rows: outputs, columns: variables; the formulas in a matrix of their own; nothing twice."""
    text, _ = in_terminal(["jacobian", "[r*cos(t), r*sin(t)]", "r=1", "t=0.5"], 120)
    assert "Jacobian of f with respect to r, t" in text
    assert re.search(r"^\s+r\s+t\s*$", text, re.M)  # the column labels: the variables
    assert re.search(r"f\[0\]\s+cos\(t\)\s+-r\*sin\(t\)", text)
    assert re.search(r"f\[1\]\s+sin\(t\)\s+r\*cos\(t\)", text)
    assert "sympy.diff of each part" not in text
    assert text.count("0.87758255") == 3  # f[0], and the matrix's two entries: never again in the table


def test_json_is_indented_on_a_terminal_and_compact_in_a_pipe() -> None:
    args = ["grad", "x**2", "x=3"]
    on_terminal, _ = in_terminal([*args, "--json"], 80)
    assert on_terminal.startswith("{\n  \"schema_version\"")
    piped = subprocess.run([gradcli_executable(), *args, "--json", "--device", "cpu"], capture_output=True,
                           text=True, check=True, env={**os.environ, "GRADCLI_SERVER": "off"}).stdout
    assert piped.count("\n") == 1 and json.loads(piped) == json.loads(on_terminal)
    pretty = subprocess.run([gradcli_executable(), *args, "--json", "--pretty", "--device", "cpu"],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "GRADCLI_SERVER": "off"}).stdout
    assert pretty == on_terminal
    compact, _ = in_terminal([*args, "--json", "--compact"], 80)
    assert compact == piped


def test_the_readme_shows_the_narrow_screen_as_it_is() -> None:
    """README's narrow-terminal example is the 60-column golden screen (lines compared without
    their trailing spaces, which editors strip)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    screen = (GOLDEN / "grad_vector_60.txt").read_text(encoding="utf-8")
    shown = [line.rstrip() for line in readme.splitlines()]
    wanted = [line.rstrip() for line in screen.splitlines()]
    starts = [i for i, line in enumerate(shown) if line == wanted[0]]
    assert any(shown[i:i + len(wanted)] == wanted for i in starts), "README's 60-column example is out of date"
    command = 'gradcli grad "' + CASES["grad_vector"][1] + '" ' + " ".join(f'"{a}"' if "[" in a else a
                                                                            for a in CASES["grad_vector"][2:])
    assert f"$ {command} --device cpu" in readme
