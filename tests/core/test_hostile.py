"""Hostile and malformed input: nothing executes, nothing hangs, every error is clear.

Every line of tests/hostile_corpus.txt is given to gradcli as the EXPR of `gradcli grad EXPR x=1`
and as a value, `gradcli grad x x=PAYLOAD`. Each must be refused: exit status 2, an stderr whose
first line starts with "error: " and holds no traceback, nothing on stdout, and the marker file
that the payloads try to create never appears.

All of it runs in-process (typer's CliRunner, about 10 ms a call); a sample across the families
also runs through the installed `gradcli` entry point, as a shell user would (about 2.5 s a call,
for the torch import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradcli.core.parse import parse_expression
from gradcli.core.values import parse_assignment
from gradcli.errors import GradcliError

CORPUS = Path(__file__).resolve().parent.parent / "hostile_corpus.txt"  # stays in tests/: the README names it there
MARKER = "MARKER"

_ESCAPE = re.compile(r"\\(n|r|t|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def decode(line: str) -> str:
    r"""The corpus's escapes (\n \r \t \\ \xHH \uHHHH) as the characters they stand for."""
    return _ESCAPE.sub(lambda m: _SIMPLE.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), line)


@dataclass(frozen=True)
class Hostile:
    family: str
    number: int  # within its family, from 1
    raw: str  # the line as written in the corpus

    @property
    def id(self) -> str:
        return f"{self.family}-{self.number}"

    def text(self, marker: Path | str) -> str:
        """The input itself: escapes decoded, MARKER replaced by the marker file's path."""
        return decode(self.raw).replace(MARKER, str(marker))


def load_corpus(path: Path = CORPUS) -> list[Hostile]:
    entries: list[Hostile] = []
    family = None
    counts: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("# family:"):
            family = line.split(":", 1)[1].strip()
            counts.setdefault(family, 0)
            continue
        if not line.strip() or line.startswith("#"):
            continue
        assert family is not None, f"corpus line before any '# family:' header: {line!r}"
        counts[family] += 1
        entries.append(Hostile(family, counts[family], line))
    return entries


ENTRIES = load_corpus()
FAMILIES = sorted({e.family for e in ENTRIES})

# Through the real entry point: a few from every family, including each kind of line break.
SAMPLE_IDS = [
    "builtins-1",  # __import__('os').system('touch MARKER')
    "builtins-14",  # globals()['__builtins__']['open']('MARKER','w')
    "attributes-2",  # ().__class__.__base__.__subclasses__()[0].__init__.__globals__...
    "lambda-comprehension-format-2",  # (lambda: open('MARKER','w'))()
    "lambda-comprehension-format-13",  # f"{open('MARKER','w')}"
    "statements-10",  # x\n__import__(...)
    "statements-16",  # x + \\\r\n__import__(...) (CRLF continuation)
    "unicode-lookalikes-2",  # ｅｖａｌ("open('MARKER','w')")
    "string-arguments-3",  # sin("__import__('os').system('touch MARKER')")
    "sympy-names-13",  # sympify("__import__('os').system('touch MARKER')")
]
SAMPLE = [e for e in ENTRIES if e.id in SAMPLE_IDS]


def test_corpus_is_large_and_covers_every_family():
    assert len(ENTRIES) >= 100
    assert set(FAMILIES) >= {"builtins", "attributes", "lambda-comprehension-format", "statements",
                             "unicode-lookalikes", "string-arguments", "sympy-names"}
    for family in FAMILIES:
        assert sum(e.family == family for e in ENTRIES) >= 10, family
    assert len({e.raw for e in ENTRIES}) == len(ENTRIES), "duplicate lines in the corpus"
    assert [e.id for e in SAMPLE] == SAMPLE_IDS, "a sample id no longer names a corpus line"
    # The line-break family really holds LF, CR and CRLF, and backslash continuations of each.
    texts = [e.text("m") for e in ENTRIES if e.family == "statements"]
    for needle in ("\n", "\r", "\r\n", "\\\n", "\\\r", "\\\r\n"):
        assert any(needle in t for t in texts), repr(needle)


def test_decode():
    assert decode(r"a\nb\rc\\d\x00\u2028") == "a\nb\rc\\d\x00\u2028"
    assert decode(r"x + \\\r\n1") == "x + \\\r\n1"
    assert decode("ｅｖａｌ(1)") == "ｅｖａｌ(1)"  # non-ASCII text is left alone


def assert_refused(result, marker: Path, what: str) -> None:
    __tracebackhide__ = True
    stderr, stdout = result.stderr, result.stdout
    assert not marker.exists(), f"{what}: the payload ran and created the marker file"
    assert result.exit_code == 2, f"{what}: exit {result.exit_code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == "", f"{what}: something on stdout: {stdout!r}"
    assert stderr.startswith("error: "), f"{what}: stderr does not start with 'error: ': {stderr!r}"
    assert "Traceback" not in stderr, f"{what}: a traceback: {stderr}"
    first = stderr.split("\n", 1)[0]
    assert len(first) > len("error: "), f"{what}: an empty message"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_parser_refuses(entry: Hostile, tmp_path):
    marker = tmp_path / "marker"
    text = entry.text(marker)
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    assert info.value.message
    assert not marker.exists()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_parser_refuses_as_a_value(entry: Hostile, tmp_path):
    marker = tmp_path / "marker"
    with pytest.raises(GradcliError):
        parse_assignment("x=" + entry.text(marker))
    assert not marker.exists()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_cli_refuses_expression(entry: Hostile, run, tmp_path):
    marker = tmp_path / "marker"
    result = run("grad", entry.text(marker), "x=1")
    assert_refused(result, marker, entry.id)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_cli_refuses_value(entry: Hostile, run, tmp_path):
    marker = tmp_path / "marker"
    result = run("grad", "x", "x=" + entry.text(marker))
    assert_refused(result, marker, entry.id)


@pytest.mark.parametrize("entry", SAMPLE, ids=[e.id for e in SAMPLE])
def test_entry_point_refuses(entry: Hostile, sh, tmp_path):
    marker = tmp_path / "marker"
    proc = sh("grad", entry.text(marker), "x=1", timeout=60)
    proc.exit_code = proc.returncode  # read like a CliRunner result
    assert_refused(proc, marker, entry.id)


def test_entry_point_refuses_a_value(sh, tmp_path):
    marker = tmp_path / "marker"
    payload = ENTRIES[0].text(marker)
    proc = sh("grad", "x", f"x={payload}", timeout=60)
    proc.exit_code = proc.returncode
    assert_refused(proc, marker, "value")


# Values read from files (x=@path): hostile files must be refused like hostile text.

def _npy_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    """A .npy file whose header claims `shape` but holds 64 bytes."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(117) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)
    return path


def test_a_pickled_npy_is_refused(run, tmp_path):
    import numpy as np

    marker = tmp_path / "marker"
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_refused(run("grad", "sum(x)", f"x=@{pickled}"), marker, "pickled .npy")


def test_a_npy_claiming_a_huge_shape_is_refused(run, tmp_path):
    huge = _npy_claiming(tmp_path / "huge.npy", (10**15,))
    assert_refused(run("grad", "sum(x)", f"x=@{huge}"), tmp_path / "marker", "huge .npy")


def test_a_binary_file_is_refused(run, tmp_path):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    assert_refused(run("grad", "sum(x)", f"x=@{binary}"), tmp_path / "marker", "binary file")
