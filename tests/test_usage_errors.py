"""Usage errors as users meet them: gradcli's own words, the option or command meant, the usage, exit 2.

Also the hints for unknown functions (by meaning before spelling), `diff --latex`, range typos,
and every help page at 80 columns.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.main import get_command

from gradcli.cli.app import app
from gradcli.core import functions
from gradcli.core.parse import parse_expression
from gradcli.errors import GradcliError
from tests.helpers import gradcli_executable

GRAD_USAGE = "usage: gradcli grad [OPTIONS] EXPR [VALUE]...  (gradcli grad --help for more)"


@pytest.mark.parametrize("args, error, usage", [
    (["grad", "x**2", "x=1", "--dtpye", "float64"], "error: no such option: --dtpye (did you mean --dtype?)",
     GRAD_USAGE),
    (["grad", "--dtpye", "float64", "x**2", "x=1"], "error: no such option: --dtpye (did you mean --dtype?)",
     GRAD_USAGE),
    (["grad", "x**2", "x=1", "-z"], "error: no such option: -z", GRAD_USAGE),
    (["gard", "x**2", "x=1"], "error: no such command: gard (did you mean grad?)",
     "usage: gradcli [OPTIONS] COMMAND [ARGS]...  (gradcli --help for more)"),
    (["grad", "x**2", "x=1", "--method", "grd"],
     "error: --method grd: choose one of grad, backward, jacobian, all (did you mean grad?)", GRAD_USAGE),
    (["grad", "x**2", "x=1", "--dtype"], "error: --dtype needs a value", GRAD_USAGE),
    (["grad", "--wrt", "x"], "error: missing EXPR", GRAD_USAGE),
    (["grad", "x", "x=1", "--json=maybe"], "error: option '--json' does not take a value", GRAD_USAGE),
    (["jacobian", "[x, x]", "x=1", "--method"],
     "error: --method needs a value: one of auto, loop, autograd, rev, fwd, all",
     "usage: gradcli jacobian [OPTIONS] EXPR [VALUE]...  (gradcli jacobian --help for more)"),
    (["minimize", "x**2", "x=1", "--steps", "abc"], "error: --steps abc: not a whole number",
     "usage: gradcli minimize [OPTIONS] EXPR [VALUE]...  (gradcli minimize --help for more)"),
    (["minimize", "x**2", "x=1", "--lr", "fast"], "error: --lr fast: not a number",
     "usage: gradcli minimize [OPTIONS] EXPR [VALUE]...  (gradcli minimize --help for more)"),
    (["plot", "sin(x)", "x=-1:1:5", "--ordr", "2"], "error: no such option: --ordr (did you mean --order?)",
     "usage: gradcli plot [OPTIONS] EXPR [VALUE]...  (gradcli plot --help for more)"),
    (["functions", "--jsn"], "error: no such option: --jsn (did you mean --json?)",
     "usage: gradcli functions [OPTIONS] [NAME]  (gradcli functions --help for more)"),
    (["functions", "sin", "cos"], "error: got unexpected extra argument(s) (cos)",
     "usage: gradcli functions [OPTIONS] [NAME]  (gradcli functions --help for more)"),
    (["server", "strat"], "error: no such command: strat (did you mean start?)",
     "usage: gradcli server [OPTIONS] COMMAND [ARGS]...  (gradcli server --help for more)"),
    (["batch", "--jobs", "0"], "error: --jobs: 0 is not in the range x>=1",
     "usage: gradcli batch [OPTIONS] [FILE|-]  (gradcli batch --help for more)"),
])
def test_a_usage_error_is_one_error_line_naming_what_was_meant_then_the_usage(run, args, error, usage):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [error, usage]


def every_command() -> list[list[str]]:
    """Each command's words, nested groups' commands included (gradcli server start...)."""
    found = []
    for name, command in get_command(app).commands.items():
        subcommands = getattr(command, "commands", None)
        found += [[name, sub] for sub in subcommands] if subcommands else [[name]]
    return found


def test_every_command_is_found():
    words = {" ".join(c) for c in every_command()}
    assert {"grad", "diff", "functions", "batch", "minimize", "server start", "server status"} <= words
    assert len(words) >= 15  # with gradcli itself, 16 help pages


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_an_unknown_option_is_gradcli_s_error_in_every_command(run, command):
    # An expression command takes EXPR first: the option comes after it, among the values.
    takes_expression = command[0] not in ("functions", "batch", "server")
    args = [*command, *(["x"] if takes_expression else []), "--zzqq"]
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "error: no such option: --zzqq", lines
    assert lines[1].startswith(f"usage: gradcli {' '.join(command)} [OPTIONS]")
    assert len(lines) == 2 and result.stdout == ""


def test_a_mistyped_option_as_the_installed_script_reports_it():
    """The console script a user runs: exit status 2, two lines on stderr, nothing on stdout."""
    env = {**os.environ, "GRADCLI_SERVER": "off"}
    done = subprocess.run([gradcli_executable(), "grad", "x**2", "x=1", "--dtpye", "float64"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error: no such option: --dtpye (did you mean --dtype?)", GRAD_USAGE]
    done = subprocess.run([gradcli_executable(), "hesian", "x*y", "x=1", "y=2"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "error: no such command: hesian (did you mean hessian?)"


def test_an_expression_that_looks_like_an_option_is_still_an_expression(run_json):
    # -x**2 and --x are expressions (click would read options); only a value list's --name is an option
    code, doc = run_json("grad", "-x**2", "x=3")
    assert code == 0 and doc["gradient"]["x"]["data"] == -6.0
    code, doc = run_json("grad", "--x", "x=3")
    assert code == 0 and doc["gradient"]["x"]["data"] == 1.0


# ------------------------------------------------------------------ diff --latex

def test_diff_latex_is_format_latex(run):
    latex = run("diff", "sin(x)*exp(y)", "--latex")
    assert latex.exit_code == 0, latex.stderr
    assert latex.stdout == run("diff", "sin(x)*exp(y)", "--format", "latex").stdout
    assert r"\cos{\left(x \right)}" in latex.stdout
    both = run("diff", "sin(x)", "--latex", "--json")
    assert both.exit_code == 2
    assert both.stderr.startswith("error: --json and --latex cannot be used together")


# ------------------------------------------------------------------ unknown functions, by meaning

LIST_THEM = "gradcli functions lists every function"


@pytest.mark.parametrize("name, meaning", [
    ("tensordot", 'einsum("ij,jk->ik", a, b)'),
    ("select", "where(cond, a, b)"),
    ("hardtanh", "clamp(x, -1, 1)"),
    ("silu", "x*sigmoid(x)"),
    ("log1p", "log(1 + x)"),
])
def test_names_other_libraries_use_are_hinted_by_meaning(name, meaning):
    """Before spelling: by spelling alone hardtanh would be taken for tanh, select for sech."""
    hint = functions.suggestion(name)
    assert hint == f"{name}: {functions.WRITTEN_AS[name]}; {LIST_THEM}" and meaning in hint
    with pytest.raises(GradcliError) as info:
        parse_expression(f"{name}(x)")
    assert info.value.message == f"unknown function '{name}'" and info.value.hint == hint


@pytest.mark.parametrize("name", ["matmul", "where", "det", "var", "cross_entropy", "transpose", "clamp"])
def test_the_names_once_only_hinted_are_functions_now(name):
    """Their spelling-based guesses were wrong (matmul -> maximum, where -> huber, det -> dot):
    gradcli has them now, so `gradcli functions NAME` finds them and no hint is left for them."""
    assert functions.find(name).name == name
    assert name not in functions.WRITTEN_AS


@pytest.mark.parametrize("text, hint", [
    ("mse_loss(x, y)", f"gradcli calls it mse: mse(input, target); {LIST_THEM}"),
    ("F.mse_loss(x, y)", f"gradcli calls it mse: mse(input, target); {LIST_THEM}"),
    ("torch.nn.functional.mse_loss(x, y)", f"gradcli calls it mse: mse(input, target); {LIST_THEM}"),
    ("absolute(x)", f"gradcli calls it abs: abs(x); {LIST_THEM}"),
    ("np.dot(x, y)", "write dot(...) without the prefix"),
    ("reduce_sum(x)", f"gradcli calls it sum: sum(x, dim=None, keepdim=False); {LIST_THEM}"),
    ("relu6(x)", f"relu6: clamp(x, 0, 6); {LIST_THEM}"),
    ("sigmod(x)", f"did you mean sigmoid? {LIST_THEM}"),
    ("mse_los(x, y)", f"did you mean mse_loss (gradcli calls it mse)? {LIST_THEM}"),
    ("qwzzy(x)", LIST_THEM),
])
def test_unknown_function_hints(text, hint):
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    assert info.value.hint == hint


def test_a_library_prefix_gets_the_meaning_too():
    """torch.log1p(...): the attribute is refused, and the hint says how to write it here."""
    with pytest.raises(GradcliError) as info:
        parse_expression("torch.log1p(x)")
    assert info.value.message == "attribute access ('.') is not allowed"
    assert info.value.hint is not None and "log(1 + x)" in info.value.hint
    with pytest.raises(GradcliError) as info:
        parse_expression("torch.sni(x)")
    assert info.value.hint is None  # a guess at a misspelt attribute would mislead


def test_every_meaning_points_at_a_function_gradcli_has():
    for foreign, name in functions.ALSO_CALLED.items():
        assert functions.lookup(name) is not None, foreign
    # ...and a hint written out parses (where gradcli has no function of that name)
    assert parse_expression("sqrt(mean((x - mean(x))**2))") is not None
    assert parse_expression("-sum(y * log_softmax(z))") is not None
    for written in ("clamp(x, 0, 6)", "clamp(x, -1, 1)", "x*sigmoid(x)", "log(1 + x)", "-softplus(-x)",
                    'einsum("ij,jk->ik", a, b)', "where(x > 0, a, b)"):
        assert parse_expression(written) is not None, written


# ------------------------------------------------------------------ values: ranges, the argument named

@pytest.mark.parametrize("command", [["grad", "x**2"], ["plot", "sin(x)"]])
def test_a_dotted_range_points_to_start_stop_count(run, command):
    result = run(*command, "x=1..2")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: in the value of x: 1..2 is not a value: a range is START:STOP:COUNT (column 2)"
    assert lines[-1] == "hint: for example 1:2:50 (50 points from 1 to 2)"


def test_the_suggested_range_works(run):
    result = run("plot", "sin(x)", "x=1:2:50", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 51  # a header and 50 points


@pytest.mark.parametrize("args, error", [
    (["grad", "x**2", "x=1", "--dtype", "float61"], "error: --dtype float61: unknown dtype"),
    (["grad", "x**2", "x=1", "--dtype", "int32"], "error: --dtype int32: autograd needs floating-point tensors"),
    (["grad", "x**2", "x=1", "--device", "tpu"], "error: --device tpu: unknown device"),
    (["grad", "x**2", "x=[1,2"], "error: in the value of x:"),
])
def test_every_error_names_its_argument(run, args, error):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(error), result.stderr


# ------------------------------------------------------------------ help pages at 80 columns

@pytest.mark.parametrize("command", [[], *every_command()], ids=lambda c: " ".join(c) or "gradcli")
def test_every_help_page_fits_80_columns(run, monkeypatch, command):
    """No line wider than the terminal: an example is broken only where a shell splits words,
    with a continuation (tests/test_cli.py checks the examples join back into one command)."""
    monkeypatch.setenv("COLUMNS", "80")
    result = run(*command, "--help")
    assert result.exit_code == 0
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


# ------------------------------------------------------------------ the README's messages

def readme_messages() -> list[tuple[str, list[str]]]:
    """The README's "Some messages" block: each `$ gradcli ...` command and the lines under it."""
    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("Some messages:\n\n```console\n", 1)[1].split("```", 1)[0]
    found: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        else:
            found[-1][1].append(line)
    return found


@pytest.mark.parametrize("command, lines", readme_messages(), ids=lambda c: c if isinstance(c, str) else "")
def test_the_readme_messages_are_what_gradcli_says(run, command, lines):
    import shlex

    words = shlex.split(command)
    assert words[0] == "gradcli"
    result = run(*words[1:])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == lines


def test_control_characters_typed_are_shown_escaped(run):
    """No escape sequence typed on a command line reaches the terminal through a usage error."""
    result = run("functions", "--a\x1b[31m")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: no such option: --a\\x1b[31m"
    result = run("gr\x1bad", "x")
    assert result.stderr.splitlines()[0] == "error: no such command: gr\\x1bad (did you mean grad?)"
    assert "\x1b" not in result.stderr


def test_the_check_modes_of_the_cli_are_the_core_s():
    from gradcli.cli.options import CheckMode
    from gradcli.core.check import CHECK_MODES

    assert tuple(m.value for m in CheckMode) == CHECK_MODES
