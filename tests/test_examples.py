"""Every line of examples.txt runs through the installed entry point, and prints what it promises.

A command line exits 0 and prints something. An ``# expect:`` line right above a command says
what that command must print; it holds space-separated checks:

``PATH=VALUE``, ``PATH<VALUE``, ``PATH>VALUE``
    PATH walks the command's output with dots: keys of a JSON object, indices (from 0) of a
    list. A tensor (``{"data": ..., "shape": ..., "dtype": ...}``) stands for its data, and an
    index after a tensor indexes its data (``jacobian.x.1.2.1.2``); ``jacobian.x.shape`` is its
    shape. VALUE is JSON (``20``, ``[7,29]``, ``[[4,4],[0.5,27]]``) or, when it is not JSON, a
    word compared exactly (``nodes.0.kind=MulBackward0``). Numbers compare with a tolerance:
    an integer is exact and a decimal stands for everything that rounds to it (``1.4`` is
    1.35..1.45, ``1.400`` is 1.3995..1.4005), and on top of that a few units in the last place
    of the dtype that the number was computed in (the nearest ``"dtype"`` on the path, else the
    line's ``--dtype``, else float32), so float16's -0.6665 for -2/3 meets ``-0.6665``.
``stdout=VALUE``
    the numbers the command prints (``--plain``), one or a list.
``contains=WORD``
    a word the output holds, for output that is neither numbers nor a machine format (``--dot``,
    ``diff``'s formulas).
``file=NAME``
    a file the command writes: present, not empty, and of the kind its suffix says.
``exit=N``
    the command's exit status, where it is not 0 (a check that fails exits 1, and says why).

The output is read the way it is printed: a JSON document; NDJSON (``--format ndjson``, and
batch's one result per line) as a list of records; CSV as a list of rows keyed by the header. A line that prints
a table is run with ``--json`` added when it has PATH checks, and only then; every other line
runs exactly as typed. The expectation sits on its own line so that each command line still
pastes alone into any shell.

Each line runs in a temporary directory holding a copy of examples/, so relative paths in
the examples work (examples/line.csv) and files they write (plot --out) never land in the
repository.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples.txt"
EXPECT = "# expect:"

# A few units in the last place of each dtype: what two routes to the same number may differ by
# once a handful of operations have rounded (eps: 2**-10, 2**-7, 2**-23, 2**-52).
ULPS = 4
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}

# The options by which a line picks its own output; any other line prints a table, which the
# test reads through --json instead.
OWN_OUTPUT = {"--json", "--plain", "--format", "--dot", "--points"}
# Commands whose output is always NDJSON (batch: one JSON result per line).
MACHINE_COMMANDS = {"batch"}

# What a written file must start with, by suffix (an empty or truncated file fails).
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


@dataclass(frozen=True)
class Example:
    number: int  # the line number in examples.txt, for messages
    line: str
    expect: str | None  # the text after "# expect:", if an expectation sits above the line
    described: str  # the comments above it (since the previous command or blank line)


def examples() -> list[Example]:
    found: list[Example] = []
    comments: list[str] = []
    expect: str | None = None
    previous_described = ""
    for number, raw in enumerate(EXAMPLES.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            if expect is not None:
                raise AssertionError(f"examples.txt:{number - 1}: an expect line with no command below it")
            comments, previous_described = [], ""
        elif line.startswith(EXPECT):
            if expect is not None:
                raise AssertionError(f"examples.txt:{number}: two expect lines for one command")
            expect = line[len(EXPECT):].strip()
        elif line.startswith("#"):
            comments.append(line)
        else:
            # A command right after another shares its description ("... is 20; --plain prints
            # just the number" covers both lines).
            described = " ".join(comments) or previous_described
            found.append(Example(number, line, expect, described))
            comments, expect, previous_described = [], None, described
    return found


EXAMPLE_LIST = examples()


# --- reading an expectation -----------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    """A number as written in an expectation: its value and how finely it was written."""
    value: float
    half_unit: float  # 0 for an integer (exact); 0.05 for 1.4; 0.0005 for 1.400


def written(text: str) -> Written:
    mantissa = text.lower().split("e")[0]
    exponent = int(text.lower().split("e")[1]) if "e" in text.lower() else 0
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    half_unit = 0.5 * 10.0 ** (exponent - decimals) if "." in mantissa else 0.0
    return Written(float(text), half_unit)


def parse_value(text: str) -> Any:
    """JSON, with each number kept as Written; a word that is not JSON stays a string."""
    try:
        return json.loads(text, parse_int=written, parse_float=written)
    except json.JSONDecodeError:
        return text


CHECK = re.compile(r"^(?P<path>[^=<>]+)(?P<op>[=<>])(?P<value>.+)$")


def parse_checks(expect: str) -> list[tuple[str, str, Any]]:
    checks = []
    for token in expect.split():
        match = CHECK.match(token)
        assert match, f"cannot read the check {token!r}: PATH=VALUE, PATH<VALUE, PATH>VALUE (no spaces)"
        checks.append((match["path"], match["op"], parse_value(match["value"])))
    return checks


# --- reading the output -----------------------------------------------------------------------

def read_output(stdout: str, ndjson: bool) -> Any:
    """NDJSON records (a list even of one); else a JSON document; else CSV rows (numbers read as
    numbers). NDJSON is told by the line, not guessed: one record reads as a JSON document too."""
    if ndjson:
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        pass
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert rows and len(rows[0]) > 1, f"the output is neither JSON, NDJSON nor CSV:\n{stdout}"
    return [{key: as_number(cell) for key, cell in row.items()} for row in rows]


def as_number(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def is_tensor(node: Any) -> bool:
    return isinstance(node, dict) and "data" in node and "shape" in node


def resolve(document: Any, path: str, dtype: str) -> tuple[Any, str]:
    """The node at PATH (a tensor as its data) and the dtype nearest to it on the way."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and isinstance(node.get("dtype"), str):
            dtype = node["dtype"]
        if is_tensor(node) and part not in node:
            node = node["data"]  # an index after a tensor indexes its data
        if isinstance(node, list):
            assert part.isdigit(), f"{path}: {part!r} indexes a list, so it must be a number"
            assert int(part) < len(node), f"{path}: index {part} is past the end (length {len(node)})"
            node = node[int(part)]
        elif isinstance(node, dict):
            assert part in node, f"{path}: no {part!r} here; there are {sorted(node)}"
            node = node[part]
        else:
            raise AssertionError(f"{path}: {part!r} goes below a value ({node!r})")
    if isinstance(node, dict) and isinstance(node.get("dtype"), str):
        dtype = node["dtype"]
    return unwrap(node), dtype


def unwrap(node: Any) -> Any:
    if is_tensor(node):
        return node["data"]
    if isinstance(node, list):
        return [unwrap(item) for item in node]
    return node


def compare(actual: Any, op: str, expected: Any, dtype: str, where: str) -> list[str]:
    """Every difference between actual and expected, as messages (none when they agree)."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} elements, got {actual!r}"]
        return [problem for i, (a, e) in enumerate(zip(actual, expected, strict=True))
                for problem in compare(a, op, e, dtype, f"{where}[{i}]")]
    if isinstance(expected, Written):
        if not isinstance(actual, (int, float)) or isinstance(actual, bool):
            return [f"{where}: expected a number near {expected.value}, got {actual!r}"]
        slack = expected.half_unit + ULPS * EPS.get(dtype, EPS["float32"]) * max(abs(expected.value), 1.0)
        if op == "<":
            ok = actual < expected.value
        elif op == ">":
            ok = actual > expected.value
        else:
            ok = abs(actual - expected.value) <= slack
        return [] if ok else [f"{where}: {actual!r} is not {op} {expected.value} ({dtype}; slack {slack:.3g})"]
    assert op == "=", f"{where}: < and > compare numbers only"
    return [] if actual == expected or str(actual) == str(expected) else [f"{where}: {actual!r} != {expected!r}"]


def check_file(path: Path, line: str) -> None:
    assert path.is_file(), f"{line}: did not write {path.name}"
    content = path.read_bytes()
    assert content, f"{line}: wrote an empty {path.name}"
    magic = MAGIC.get(path.suffix)
    if magic:
        assert content.startswith(magic), f"{line}: {path.name} is not a {path.suffix} file"
    elif path.suffix == ".svg":
        assert b"<svg" in content and content.rstrip().endswith(b"</svg>"), f"{line}: {path.name} is not whole SVG"
    elif path.suffix in (".ndjson", ".jsonl"):
        records = [json.loads(text) for text in content.decode("utf-8").splitlines()]
        assert records, f"{line}: {path.name} holds no record"


def option_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def prints_table(argv: list[str]) -> bool:
    if argv[1] in MACHINE_COMMANDS or option_value(argv, "--trace") == "-":
        return False  # "--trace -" writes the per-step CSV on stdout
    return not any(arg.split("=", 1)[0] in OWN_OUTPUT for arg in argv)


# --- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("example", [pytest.param(e, id=f"line{e.number}") for e in EXAMPLE_LIST])
def test_example(sh, example: Example, tmp_path: Path) -> None:
    line = example.line
    argv = shlex.split(line)
    assert argv[0] == "gradcli", "every example starts with gradcli"
    checks = parse_checks(example.expect) if example.expect else []
    files = [value for path, _, value in checks if path == "file"]
    printed = [value for path, _, value in checks if path == "stdout"]
    # The word as written, even where it would read as JSON (contains=2 looks for "2").
    words = [token.split("=", 1)[1] for token in (example.expect or "").split() if token.startswith("contains=")]
    exits = [int(getattr(value, "value", value)) for path, _, value in checks if path == "exit"]
    paths = [(path, op, value) for path, op, value in checks if path not in ("file", "stdout", "contains", "exit")]

    args = argv[1:]
    if paths and prints_table(argv):
        args.append("--json")  # the same computation, in the form a test can read
    shutil.copytree(EXAMPLES.parent / "examples", tmp_path / "examples")  # paths are relative to the repository
    result = sh(*args, cwd=tmp_path)
    shown = f"{shlex.join(['gradcli', *args])}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == (exits[0] if exits else 0), shown
    assert result.stdout.strip(), f"{line} printed nothing"

    problems: list[str] = []
    dtype = option_value(argv, "--dtype") or "float32"
    for name in files:
        check_file(tmp_path / str(name), line)
    problems += [f"the output does not hold {word!r}" for word in words if word not in result.stdout]
    for expected in printed:
        numbers = [float(word) for word in result.stdout.split()]
        actual = numbers if isinstance(expected, list) else numbers[0] if len(numbers) == 1 else numbers
        problems += compare(actual, "=", expected, dtype, "stdout")
    if paths:
        ndjson = argv[1] in MACHINE_COMMANDS or option_value(argv, "--format") == "ndjson"
        document = read_output(result.stdout, ndjson)
        for path, op, expected in paths:
            actual, near = resolve(document, path, dtype)
            problems += compare(actual, op, expected, near, path)
    assert not problems, "\n".join(problems) + "\n" + shown


NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
SEED_REFERENCE = re.compile(r"\[\d+\]")


def test_every_promised_number_is_checked() -> None:
    """A command whose comment states a number carries an expectation that checks it."""
    unchecked = [f"examples.txt:{e.number}: {e.line}" for e in EXAMPLE_LIST
                 if NUMBER.search(SEED_REFERENCE.sub("", e.described)) and not e.expect]
    assert not unchecked, "these lines promise numbers but have no '# expect:' line:\n" + "\n".join(unchecked)


def test_files_written_are_checked() -> None:
    """A command that writes a file (--out, --plot, --trace FILE) checks that file."""
    for e in EXAMPLE_LIST:
        argv = shlex.split(e.line)
        for option in ("--out", "--plot", "--trace"):
            target = option_value(argv, option)
            if target and target != "-":
                assert e.expect and f"file={target}" in e.expect.split(), \
                    f"examples.txt:{e.number}: writes {target} but its expect line does not check file={target}"


def test_expectations_read() -> None:
    for e in EXAMPLE_LIST:
        if e.expect is not None:
            assert parse_checks(e.expect), f"examples.txt:{e.number}: an empty expect line"


def test_written_precision() -> None:
    assert written("20") == Written(20.0, 0.0)
    assert written("1.4") == Written(1.4, 0.05)
    assert written("-0.5498").half_unit == pytest.approx(0.00005)
    assert written("1.5e-3").half_unit == pytest.approx(0.00005)
    assert compare(1.399999976158142, "=", written("1.4"), "float32", "x") == []
    assert compare(1.46, "=", written("1.4"), "float32", "x")  # outside what rounds to 1.4
    assert compare(20.001, "=", written("20"), "float32", "x")  # an integer is exact
    assert compare(-0.66650390625, "=", written("-0.6667"), "float16", "x") == []
    assert compare(-0.66650390625, "=", written("-0.6667"), "float32", "x")  # float32 is finer than that
    assert compare(0.7, "<", written("1"), "float32", "x") == []
    assert compare([1.0, 2.0], "=", [written("1"), written("2"), written("3")], "float32", "x")


def test_there_are_examples() -> None:
    assert len(EXAMPLE_LIST) >= 10
    assert sum(1 for e in EXAMPLE_LIST if e.expect) >= 40
