"""Every line of examples.txt runs through the installed entry point and exits 0.

Each line runs in a temporary directory holding a copy of examples/, so relative paths in
the examples work (examples/line.csv) and files they write (plot --out) never land in the
repository.
"""

import shlex
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples.txt"


def example_lines():
    for number, line in enumerate(EXAMPLES.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield pytest.param(line, id=f"line{number}")


@pytest.mark.parametrize("line", list(example_lines()))
def test_example_runs(sh, line, tmp_path):
    argv = shlex.split(line)
    assert argv[0] == "gradcli", "every example starts with gradcli"
    shutil.copytree(EXAMPLES.parent / "examples", tmp_path / "examples")  # paths are relative to the repository
    result = sh(*argv[1:], cwd=tmp_path)
    assert result.returncode == 0, f"{line}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.strip(), f"{line} printed nothing"


def test_there_are_examples():
    assert len(list(example_lines())) >= 10
