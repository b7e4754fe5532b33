"""The command line as users meet it: in-process with CliRunner, and the installed entry point."""

import json
import subprocess
import sys

import pytest

from gradcli import __version__

# ------------------------------------------------------------------ in-process (CliRunner)

@pytest.mark.parametrize(
    "args, message",
    [
        (["grad", "x.__class__", "x=1"], "attribute access"),
        (["grad", "x**2", "x=1", "--dtype", "int32"], "autograd needs floating-point tensors"),
        (["grad", "x**2", "x=1", "--dtype", "float8"], "unknown dtype"),
        (["grad", "x*y", "x=1"], "no value for y"),
        (["grad", "x**2", "x=1", "z=2"], "z is not in the expression"),
        (["grad", "x**2", "x=1", "--wrt", "y"], "y is not a variable"),
        (["grad", "x**2", "x=1", "--json", "--plain"], "cannot be used together"),
        (["grad", "x[2]", "x=[1,2]"], "out of range"),
        (["grad", "x[0]", "x=1"], "x is a scalar"),
        (["grad", "x**2", "x=1", "x=2"], "twice"),
        (["grad", "x**2", "x=ones(10**10)"], "the limit is"),
        (["grad", "x**2", "x=1", "--dtyp", "float16"], "no such option: --dtyp"),
        (["grad", "x**2", "2"], "expected NAME=VALUE"),
        (["grad", "x + y", "x=[1,2]", "y=[1,2,3]"], "the shapes do not fit together: x [2], y [3]"),
        (["grad", "x²", "x=1"], "superscripts are not powers"),
    ],
)
def test_bad_input_is_one_clear_error_and_exit_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_hostile_input_points_at_the_column(run):
    result = run("grad", "x + __import__('os').system('echo hi')", "x=1")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: attribute access ('.') is not allowed (column 5)"
    assert lines[1] == "  x + __import__('os').system('echo hi')"
    assert lines[2] == "      " + "^" * len("__import__('os').system")


def test_refusing_a_huge_tensor_says_how_much_memory_it_needs(run):
    result = run("grad", "sum(x)", "x=ones(10**10)")
    assert result.exit_code == 2
    assert "10,000,000,000 elements" in result.stderr and "GiB" in result.stderr
    assert "--max-elements" in result.stderr


def test_an_expression_that_starts_with_minus_is_not_an_option(run_json):
    code, doc = run_json("grad", "-x**2", "x=3")
    assert code == 0 and doc["gradient"]["x"]["data"] == -6.0
    # click would read this as a cluster of short options, with a -f (format) inside it
    code, doc = run_json("grad", "-sum(y * log_softmax(z))", "z=[1,2,0.5]", "y=[0,1,0]", "--wrt", "z")
    assert code == 0 and doc["expression"] == "-sum(y * log_softmax(z))"


def test_disagreement_beyond_the_tolerance_exits_1(run):
    # float16's -0.6665 is right for float16; with zero tolerance it is a reported disagreement.
    result = run("grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16",
                 "--rtol", "0", "--atol", "0", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["check"]["status"] == "failed"
    assert doc["check"]["variables"]["p"]["status"] == "disagree"


def test_a_point_outside_the_domain_is_not_agreement(run_json):
    code, doc = run_json("grad", "log(x)", "x=-1")
    assert code == 1
    assert doc["check"]["variables"]["x"]["status"] == "not finite"
    assert doc["f"]["data"] == "nan"  # JSON has no NaN: it is spelled as a string
    code, doc = run_json("grad", "1/x", "x=0")
    assert code == 1 and doc["check"]["variables"]["x"]["status"] == "not finite"


def test_floor_is_checked_between_the_integers_and_said_at_a_jump(run_json):
    code, doc = run_json("grad", "floor(x)*x", "x=2.5")
    assert code == 0
    v = doc["check"]["variables"]["x"]
    assert v["status"] == "agree" and doc["symbolic"]["x"]["value"]["data"] == 2.0
    assert doc["gradient"]["x"]["data"] == 2.0
    code, doc = run_json("grad", "floor(x)*x", "x=3")  # f jumps from 6 to 9... no derivative
    v = doc["check"]["variables"]["x"]
    assert code == 0 and v["status"] == "kink"
    assert "floor' = 0" in v["note"]


def test_a_kink_is_reported_as_such(run_json):
    code, doc = run_json("grad", "relu(x)", "x=0")
    assert code == 0
    assert doc["check"]["variables"]["x"]["status"] == "kink"
    assert doc["gradient"]["x"]["data"] == 0.0


def test_cancelled_variables_still_take_values_and_have_zero_gradient(run_json):
    code, doc = run_json("grad", "x - x + y", "x=1", "y=2")
    assert code == 0
    assert doc["gradient"]["x"]["data"] == 0.0 and doc["gradient"]["y"]["data"] == 1.0


def test_no_check_skips_the_symbolic_route(run_json):
    code, doc = run_json("grad", "x**3", "x=2", "--no-check")
    assert code == 0
    assert doc["check"]["performed"] is False
    assert doc["check"]["variables"]["x"]["status"] == "skipped"
    assert doc["gradient"]["x"]["data"] == 12.0


def test_reduce_mean(run_json):
    code, doc = run_json("grad", "x**2", "x=[1,2,3,4]", "--reduce", "mean")
    assert code == 0
    assert doc["reduction"] == "mean"
    assert doc["gradient"]["x"]["data"] == [0.5, 1.0, 1.5, 2.0]


def test_seeded_random_values_are_reproducible(run_json):
    _, a = run_json("grad", "sum(x**2)", "x=randn(3)", "--seed", "3")
    _, b = run_json("grad", "sum(x**2)", "x=randn(3)", "--seed", "3")
    assert a["values"]["x"] == b["values"]["x"] and a["seed"] == 3
    _, c = run_json("grad", "sum(x**2)", "x=randn(3)")
    assert isinstance(c["seed"], int)  # an unseeded draw says which seed repeats it


def test_json_document_has_the_documented_keys(run_json):
    code, doc = run_json("grad", "x*y", "x=2", "y=3", "--wrt", "x")
    assert code == 0
    for key in ("schema_version", "gradcli_version", "command", "expression", "parsed", "dtype", "device",
                "method", "call", "values", "wrt", "f", "reduction", "differentiated", "gradient", "symbolic",
                "check", "seed", "warnings"):
        assert key in doc
    assert doc["schema_version"] == 3
    assert doc["values"]["y"] == {"data": 3.0, "shape": [], "dtype": "float32"}
    assert doc["symbolic"]["x"]["formula"] == "y"
    assert list(doc["gradient"]) == ["x"]


def test_table_shows_autograd_symbolic_formula_and_agreement(run):
    result = run("grad", "2*x**2+5", "x=5")
    assert result.exit_code == 0
    out = result.stdout
    for piece in ("f = 55", "autograd", "symbolic derivative", "4*x", "20", "✓ agree", "autograd agrees with sympy"):
        assert piece in out
    assert "\x1b[" not in out  # not a terminal: no colour codes


def test_cuda_request_without_cuda_is_a_clear_error(run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the request is valid here")
    result = run("grad", "x**2", "x=1", "--device", "cuda")
    assert result.exit_code == 2
    assert "CUDA is not available" in result.stderr


def test_every_command_has_help_with_examples(run):
    top = run("--help")
    assert top.exit_code == 0 and "Examples" in top.stdout and "grad" in top.stdout
    sub = run("grad", "--help")
    assert sub.exit_code == 0 and "Examples" in sub.stdout and "--wrt" in sub.stdout


def test_version(run):
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"gradcli {__version__}"


# ------------------------------------------------------------------ the installed entry point

def test_entry_point_exit_codes_and_streams(sh):
    ok = sh("grad", "2*x**2+5", "x=5", "--plain")
    assert ok.returncode == 0 and ok.stdout == "20\n" and ok.stderr == ""
    bad = sh("grad", "x.y", "x=1")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.startswith("error: ")
    failed = sh("grad", "log(x)", "x=-1", "--plain")
    # log(-1) is NaN; autograd still says 1/x = -1, so the numbers are printed and flagged
    assert failed.returncode == 1 and failed.stdout == "-1\n" and "outside the function's domain" in failed.stderr


def test_entry_point_json_parses_and_is_alone_on_stdout(sh):
    result = sh("grad", "2*x**3 + 5*x**2 + 7*x + 10", "x=[[1,2,3],[4,5,6]]", "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)  # exactly one document, nothing else
    assert doc["gradient"]["x"]["data"] == [[23.0, 51.0, 91.0], [143.0, 207.0, 283.0]]


def test_entry_point_no_colour_when_piped_or_no_color(sh):
    piped = sh("grad", "x**2", "x=3")
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout
    forced = sh("grad", "x**2", "x=3", env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "\x1b[3" not in forced.stdout  # NO_COLOR wins over FORCE_COLOR: no colours


def test_python_dash_m_gradcli(sh):
    result = subprocess.run([sys.executable, "-m", "gradcli", "grad", "x**2", "x=3", "--plain"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "6\n"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["grad", "--help"]])
def test_help_and_version_do_not_import_torch_or_sympy(argv):
    probe = (
        "import sys\n"
        f"sys.argv = ['gradcli', *{argv!r}]\n"
        "from gradcli.cli.app import app\n"
        "try:\n    app(prog_name='gradcli')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'sympy', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------ help texts

HELP_PAGES = [[], ["grad"], ["jacobian"], ["hessian"], ["vjp"], ["jvp"], ["diff"], ["functions"], ["eval"], ["graph"],
              ["batch"], ["plot"], ["minimize"], ["server"]]


def example_paragraphs(page: str) -> list[list[str]]:
    """The examples of a help page as printed: each a list of its lines (a continued one has several)."""
    lines = page.split("Examples:\n", 1)[1].splitlines()
    examples: list[list[str]] = []
    for line in lines:
        if line and not line.startswith("    "):
            break  # the next section ("Exit status: ...", "Options:")
        if line.startswith("        ") and examples and examples[-1][-1].endswith(" \\"):
            examples[-1].append(line)
        elif line.strip():
            examples.append([line])
    return examples


@pytest.mark.parametrize("command", HELP_PAGES, ids=lambda c: " ".join(c) or "gradcli")
def test_help_examples_are_never_broken_inside_a_command_at_80_columns(run, monkeypatch, command):
    import shlex

    from gradcli.cli import help as texts

    monkeypatch.setenv("COLUMNS", "80")
    result = run(*command, "--help")
    assert result.exit_code == 0
    examples = example_paragraphs(result.stdout)
    assert examples, result.stdout
    for lines in examples:
        for line in lines:
            # A line longer than 80 columns is only one that holds a word no line could (a JSON request).
            assert len(line) <= 78 or any(len(w) > texts.EXAMPLE_WIDTH - 6 for w in texts.shell_words(line)), line
        # Each example is one shell command: its continued lines join back into it.
        joined = " ".join(line.strip().removesuffix("\\").strip() for line in lines)
        words = shlex.split(joined)
        assert words[0] in ("gradcli", "printf", "echo"), joined
        assert "gradcli" in words or "| gradcli batch" in joined, joined


def test_a_long_example_is_continued_where_a_shell_splits_words():
    from gradcli.cli import help as texts

    command = ('gradcli minimize "bce(sigmoid(w1*x1 + w2*x2 + b), y)" w1=0 w2=0 b=0 --data '
               'examples/data/clusters.csv --wrt w1,w2,b --optimizer momentum --lr 0.01 --steps 1000')
    lines = texts.example_lines(command)
    assert len(lines) == 3 and all(len(line) <= texts.EXAMPLE_WIDTH for line in lines)
    assert all(line.endswith(" \\") for line in lines[:-1])
    assert " ".join(line.strip().removesuffix(" \\") for line in lines) == command
    assert texts.example_lines('gradcli grad "x**2" x=3') == ['gradcli grad "x**2" x=3']


def test_shared_options_are_listed_where_they_always_stood(run):
    """Option groups (cli/options.py) are laid out in the group's place, not appended."""
    import re

    page = run("grad", "--help").stdout
    listed = re.findall(r"^  (?:-[a-zA-Z], )?(--[a-z-]+)", page.split("Options:", 1)[1], flags=re.M)
    assert listed == ["--wrt", "--method", "--order", "--accumulate", "--explain", "--dtype", "--device", "--reduce",
                      "--rtol", "--atol", "--check", "--no-check", "--seed", "--max-elements", "--format", "--json",
                      "--plain", "--pretty", "--echo-values", "--data", "--quiet", "--points", "--output", "--help"]


def test_an_option_group_may_not_hide_a_parameter_of_the_same_name():
    from gradcli.cli.options import COMPUTE, Compute, show_groups

    def command(dtype: str = "float32", compute: Compute = COMPUTE) -> None:
        """--dtype twice: typer would take one and silently drop the other."""

    with pytest.raises(TypeError, match="repeats a parameter name"):
        show_groups(command)


# ------------------------------------------------------------------ exit statuses (cli/exits.py)

def test_a_bug_in_a_command_is_an_internal_error_not_bad_input(run, monkeypatch):
    import gradcli.commands.jacobian

    def broken(*args, **kwargs):
        raise ValueError("bad luck")

    monkeypatch.setattr(gradcli.commands.jacobian, "jacobian", broken)
    monkeypatch.delenv("GRADCLI_DEBUG", raising=False)
    result = run("jacobian", "[x*y, x + y]", "x=1", "y=2")
    assert result.exit_code == 3
    assert result.stderr.startswith("internal error: ValueError: bad luck\nhint: this is a bug in gradcli")
    assert "Traceback" not in result.stderr


def test_a_server_command_error_is_one_line_and_exit_2(run, monkeypatch):
    monkeypatch.setenv("GRADCLI_SERVER_IDLE", "soon")
    result = run("server", "start")
    assert result.exit_code == 2
    assert result.stderr == "error: GRADCLI_SERVER_IDLE must be a number of seconds, not 'soon'\n"
