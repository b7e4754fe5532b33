"""The command line: arguments in, a report rendered out. No maths here.

Torch and sympy are imported inside the commands, so `--help`, `--version` and shell
completion never load them.
"""

from __future__ import annotations

import os
import re
import sys
from enum import Enum
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from gradcli import __version__
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.errors import ExitStatus, GradcliError

HELP = """\
Type a function, get its derivatives from PyTorch's autograd, checked against sympy.

Examples:

  gradcli grad "2*x**2 + 5" x=5

  gradcli grad "x0**2 + x1**3 + x0*x1" x0=2 x1=3 --dtype float16

  gradcli grad "mean((t - p)**2)" "p=[1,2,3]" "t=[2,3,4]" --wrt p --json

  gradcli grad "x**2" x=3 --order 2

  gradcli jacobian "[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]" "x=[2,3]"

  gradcli hessian "x**2*y + sin(x*y)" x=1 y=2

  gradcli vjp "(x + 1)**2" "x=eye(5)" "v=ones(5,5)"

Exit status: 0 ok, 1 the cross-check did not confirm the result, 2 bad input,
3 an internal error (a bug), 130 interrupted.
"""

GRAD_HELP = """\
The gradient of EXPR at the given values, by autograd, checked against sympy.

EXPR is a formula in x, y, θ, ...: + - * / ** (or ^), numbers, pi, e, x[0] for elements,
functions such as sin, exp, log, sqrt, abs, sigmoid, relu, and sum(...)/mean(...) of tensors.
Each VALUE is NAME=VALUE: x=2, x=pi/4, "x=[1,2,3]", "x=[[1,2],[3,4]]", "x=ones(2,3)",
"x=zeros(3)", "x=eye(3)", "x=full((2,2), 0.5)", "x=linspace(0,1,5)", "x=arange(4)",
"x=randn(3)" (with --seed), or x=-5:5:200 (200 points from -5 to 5).

A tensor-valued EXPR is summed to a scalar first (--reduce mean to average), and says so.

Examples:

  gradcli grad "2*x**2 + 5" x=5

  gradcli grad "(x + w)*(w + 1)" w=1 x=2

  gradcli grad "x[0]**2 + x[1]**3 + x[0]*x[1]" "x=[2,3]" --dtype float16

  gradcli grad "2*x**3 + 5*x**2 + 7*x + 10" "x=[[1,2,3],[4,5,6]]"

  gradcli grad "0.65*mean((t-p)**2) + 0.35*mean(abs(p-t))" "p=[1,2,3]" "t=[2,3,7]" --wrt p

  gradcli grad "sin(x)*exp(y)" x=1 y=2 --method all --json

  gradcli grad "2*x**2 + 5" x=5 --plain

  gradcli grad "x**3" x=2 --order 3
"""


class Method(str, Enum):
    grad = "grad"
    backward = "backward"
    jacobian = "jacobian"
    all = "all"


class Reduce(str, Enum):
    sum = "sum"
    mean = "mean"


class Format(str, Enum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"
    plain = "plain"


app = typer.Typer(
    name="gradcli",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Type a function, get its derivatives from PyTorch's autograd, checked against sympy."""


def fail(exc: GradcliError) -> typer.Exit:
    for line in exc.lines():
        sys.stderr.write(line + "\n")
    return typer.Exit(int(exc.status))


def reader_left() -> typer.Exit:
    """The reader of our output left (| head -1): stop quietly, as shell tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so nothing complains about the pipe at exit
    return typer.Exit(0)


def internal_error(exc: BaseException) -> typer.Exit:
    if os.environ.get("GRADCLI_DEBUG"):
        raise exc
    sys.stderr.write(
        f"internal error: {type(exc).__name__}: {exc}\n"
        "hint: this is a bug in gradcli; GRADCLI_DEBUG=1 shows the traceback\n"
    )
    return typer.Exit(int(ExitStatus.INTERNAL))


def exit_for(exc: Exception) -> BaseException:
    """What a command raises for an exception out of its work: bad input is one error line and
    exit 2, a reader that left (| head) a quiet exit, typer's own exits themselves, and anything
    else an internal error (a bug must not look like bad input). Ctrl-C is no Exception: it
    goes up to main()."""
    if isinstance(exc, GradcliError):
        return fail(exc)
    if isinstance(exc, BrokenPipeError):
        return reader_left()
    if isinstance(exc, typer.Exit):
        return exc
    return internal_error(exc)


def _format(fmt: Format, json_flag: bool, plain_flag: bool) -> str:
    if json_flag and plain_flag:
        raise GradcliError("--json and --plain cannot be used together")
    if json_flag:
        return "json"
    if plain_flag:
        return "plain"
    return fmt.value


# Options every command shares, spelled once.
WrtOption = Annotated[Optional[str], typer.Option(
    "--wrt", help="Differentiate with respect to these (comma-separated); the others are constants. Default: all.")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="float16, bfloat16, float32 or float64.")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps. auto picks the best available and says which.")]
RtolOption = Annotated[Optional[float], typer.Option(
    "--rtol", help="Relative tolerance of the check. Default: by dtype.", show_default=False)]
AtolOption = Annotated[Optional[float], typer.Option(
    "--atol", help="Absolute tolerance of the check, times the result's largest magnitude. Default: by dtype.",
    show_default=False)]
CheckOption = Annotated[bool, typer.Option("--check/--no-check", help="Cross-check against sympy's symbolic derivative.")]
SeedOption = Annotated[Optional[int], typer.Option("--seed", help="Seed for rand(...)/randn(...) values.", show_default=False)]
MaxElementsOption = Annotated[int, typer.Option(
    "--max-elements", help="Refuse a value, Jacobian or Hessian with more elements than this.")]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="table for people; json (one document), ndjson (one line) or csv (a row per element) for programs; plain for $(...).")]
DataOption = Annotated[Optional[str], typer.Option("--data", help="A CSV file with a header: each column whose name is a variable gives its value (a vector).", show_default=False)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No notes or warnings: only the result (errors still go to stderr).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
PlainOption = Annotated[bool, typer.Option("--plain", help="Same as --format plain: only the numbers.")]
ExprArgument = Annotated[str, typer.Argument(metavar="EXPR", help="The function, in quotes.", show_default=False)]
ValuesArgument = Annotated[Optional[list[str]], typer.Argument(
    metavar="[VALUE]...", help="NAME=VALUE for every variable.", show_default=False)]
VectorOption = Annotated[Optional[str], typer.Option(
    "--vector", help="The vector v, when the expression has a variable named v itself.", show_default=False)]
ReduceOption = Annotated[Reduce, typer.Option(help="How a tensor-valued EXPR becomes the scalar that is differentiated.")]
ExplainOption = Annotated[bool, typer.Option("--explain", help="After the result, show how it was computed: the torch code, the autograd call, the check.")]

_OPTION_LIKE = re.compile(r"--?[A-Za-z][\w-]*(=.*)?|-[0-9.]+(e[-+]?[0-9]+)?")  # options, and negative numbers


class ExpressionCommand(TyperCommand):
    """A command whose arguments may start with '-' and still be expressions.

    Click reads any argument that starts with '-' as options, and a cluster of short ones at
    that: "-sum(y * log_softmax(z))" would hide a -f inside it. An argument that cannot be
    an option (it has brackets, operators, spaces...) is set aside before click parses and
    put back afterwards.
    """

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        protected: dict[str, str] = {}
        shielded = []
        for arg in args:
            if arg.startswith("-") and arg != "-" and arg != "--" and not _OPTION_LIKE.fullmatch(arg):
                key = f"\0gradcli-argument-{len(protected)}"
                protected[key] = arg
                shielded.append(key)
            else:
                shielded.append(arg)
        rest = super().parse_args(ctx, shielded)
        if protected:
            for name, value in ctx.params.items():
                if isinstance(value, str):
                    ctx.params[name] = protected.get(value, value)
                elif isinstance(value, (list, tuple)):
                    ctx.params[name] = type(value)(protected.get(v, v) if isinstance(v, str) else v for v in value)
        return rest


# "-x**2" is an expression, not an option; a mistyped option reaches the value parser, which
# names it ("no such option: --dtyp").
_COMMAND = {"context_settings": {"ignore_unknown_options": True}, "no_args_is_help": True, "cls": ExpressionCommand}


def _expression(text: str) -> str:
    """EXPR as given, or read from standard input when it is '-'."""
    if text != "-":
        return text
    from gradcli.inputs import read_stdin

    lines = [line for line in read_stdin("EXPR -").splitlines() if line.strip()]
    if len(lines) != 1:
        raise GradcliError(f"EXPR - reads one expression from standard input, got {len(lines)} lines",
                           hint="for many expressions, one per line, use gradcli batch")
    return lines[0].strip()


def _run(compute, fmt: Format, json_flag: bool, plain_flag: bool, quiet: bool = False) -> None:
    """Compute a report, render it, and leave with the promised exit status."""
    try:
        output = _format(fmt, json_flag, plain_flag)
        from gradcli.render import render

        report = compute()
        render(report, output, sys.stdout, sys.stderr, quiet=quiet)
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None
    if report.status != "ok":
        raise typer.Exit(int(ExitStatus.CHECK_FAILED))


PointsOption = Annotated[Optional[str], typer.Option(
    "--points", metavar="FILE|-", help="Many points at once: every row of FILE.csv (a header names the variables), "
    "of a structured FILE.npy, or of CSV on standard input (-) is a point; prints x, f, df/dx, ..., check per row "
    "(CSV, or --format ndjson). The other variables are constants, NAME=VALUE.", show_default=False)]
OutputOption = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="FILE", help="With --points: write the rows to FILE.csv, FILE.ndjson or FILE.npy "
    "(a structured array) instead of standard output.", show_default=False)]


@app.command(help=GRAD_HELP, **_COMMAND)
def grad(
    expression: ExprArgument,
    values: ValuesArgument = None,
    wrt: WrtOption = None,
    method: Annotated[Method, typer.Option(help="grad: torch.autograd.grad; backward: f.backward() and .grad; jacobian: torch.autograd.functional.jacobian; all: each, compared.")] = Method.grad,
    order: Annotated[int, typer.Option("--order", "-n", help="Every derivative up to this order (one variable); with several variables, 2 gives the Hessian.")] = 1,
    accumulate: Annotated[int, typer.Option("--accumulate", help="Also call backward K times without zeroing, to show .grad adding up (uses backward).", show_default=False)] = 0,
    explain: ExplainOption = False,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    reduce: ReduceOption = Reduce.sum,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
    points: PointsOption = None,
    output: OutputOption = None,
) -> None:
    if points is not None or output is not None:
        _grad_points(expression, values or [], points=points, output=output, wrt=wrt, method=method, order=order,
                     accumulate=accumulate, explain=explain, dtype=dtype, device=device, reduce=reduce, rtol=rtol,
                     atol=atol, check=check, seed=seed, max_elements=max_elements, fmt=fmt, json_flag=json_flag,
                     plain_flag=plain_flag, data=data, quiet=quiet)
        return

    def compute():
        from gradcli import api

        return api.grad(_expression(expression), values or [], data=data, wrt=wrt, method=method.value, order=order, dtype=dtype,
                        device=device, reduce=reduce.value, check=check, rtol=rtol, atol=atol, seed=seed,
                        max_elements=max_elements, explain=explain, accumulate=accumulate)
    _run(compute, fmt, json_flag, plain_flag, quiet)


JACOBIAN_HELP = """\
The Jacobian of EXPR by autograd, checked entry by entry against sympy.

A bracketed list "[f1, f2, ...]" gives the m x n Jacobian over the inputs; an elementwise
expression of tensors gives the full Jacobian, of shape output shape + input shape, one
per variable. The default method picks forward or reverse mode by the shapes and says which.

Examples:

  gradcli jacobian "[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]" "x=[2,3]"

  gradcli jacobian "2*x**3 + 5*x**2 + 7*x + 10" "x=[[1,2,3],[4,5,6]]" --json

  gradcli jacobian "2*x**2 + 5*y**2" "x=[[1,2,3],[4,5,6]]" "y=[[5,6,7],[8,9,10]]"

  gradcli jacobian "[x*y, x + y]" x=1 y=2 --method all
"""


class JacobianMethod(str, Enum):
    auto = "auto"
    loop = "loop"
    autograd = "autograd"
    rev = "rev"
    fwd = "fwd"
    all = "all"


@app.command(help=JACOBIAN_HELP, **_COMMAND)
def jacobian(
    expression: ExprArgument,
    values: ValuesArgument = None,
    wrt: WrtOption = None,
    method: Annotated[JacobianMethod, typer.Option(help="loop: one backward per output row (as the seeds teach); autograd: torch.autograd.functional.jacobian(vectorize=True); rev/fwd: torch.func.jacrev/jacfwd; auto: rev or fwd by the shapes; all: each, compared.")] = JacobianMethod.auto,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    explain: ExplainOption = False,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    def compute():
        from gradcli import api

        return api.jacobian(_expression(expression), values or [], data=data, wrt=wrt, method=method.value, dtype=dtype, device=device,
                            check=check, rtol=rtol, atol=atol, seed=seed, max_elements=max_elements, explain=explain)
    _run(compute, fmt, json_flag, plain_flag, quiet)


HESSIAN_HELP = """\
The Hessian of a scalar EXPR by autograd (torch.autograd.functional.hessian), checked
against sympy.hessian, with its symmetry reported. Tensor variables are flattened: the
Hessian is over every element of every --wrt variable.

Examples:

  gradcli hessian "x**2*y + sin(x*y)" x=1 y=2

  gradcli hessian "x[0]**2 * x[1] + exp(x[1])" "x=[1,2]"

  gradcli hessian "sum(x**3)" "x=[1,2,3]" --json
"""


@app.command(help=HESSIAN_HELP, **_COMMAND)
def hessian(
    expression: ExprArgument,
    values: ValuesArgument = None,
    wrt: WrtOption = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    reduce: ReduceOption = Reduce.sum,
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    explain: ExplainOption = False,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    def compute():
        from gradcli import api

        return api.hessian(_expression(expression), values or [], data=data, wrt=wrt, dtype=dtype, device=device, reduce=reduce.value,
                           check=check, rtol=rtol, atol=atol, seed=seed, max_elements=max_elements, explain=explain)
    _run(compute, fmt, json_flag, plain_flag, quiet)


VJP_HELP = """\
The vector-Jacobian product vᵀ·J, by f.backward(v), checked against sympy.

v has the shape of EXPR's value; give it as v=VALUE (or --vector VALUE when the expression
has a variable named v). This is how backward works on a non-scalar output.

Examples:

  gradcli vjp "(x + 1)**2" "x=eye(5)" "v=ones(5,5)"

  gradcli vjp "[x*y, x + y]" x=1 y=2 "v=[1, -1]"
"""


@app.command(help=VJP_HELP, **_COMMAND)
def vjp(
    expression: ExprArgument,
    values: ValuesArgument = None,
    vector: VectorOption = None,
    wrt: WrtOption = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    explain: ExplainOption = False,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    def compute():
        from gradcli import api

        return api.vjp(_expression(expression), values or [], data=data, vector=vector, wrt=wrt, dtype=dtype, device=device, check=check,
                       rtol=rtol, atol=atol, seed=seed, max_elements=max_elements, explain=explain)
    _run(compute, fmt, json_flag, plain_flag, quiet)


JVP_HELP = """\
The Jacobian-vector product J·v (forward mode, torch.func.jvp), checked against sympy.

v has the shape of the input variable (choose it with --wrt when there are several); give
it as v=VALUE (or --vector VALUE when the expression has a variable named v).

Examples:

  gradcli jvp "(x + 1)**2" "x=eye(3)" "v=ones(3,3)"

  gradcli jvp "[x[0]*x[1], sin(x[0])]" "x=[1,2]" "v=[1,0]"
"""


@app.command(help=JVP_HELP, **_COMMAND)
def jvp(
    expression: ExprArgument,
    values: ValuesArgument = None,
    vector: VectorOption = None,
    wrt: WrtOption = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    explain: ExplainOption = False,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    def compute():
        from gradcli import api

        return api.jvp(_expression(expression), values or [], data=data, vector=vector, wrt=wrt, dtype=dtype, device=device, check=check,
                       rtol=rtol, atol=atol, seed=seed, max_elements=max_elements, explain=explain)
    _run(compute, fmt, json_flag, plain_flag, quiet)


DIFF_HELP = """\
The symbolic derivative alone: no values, no torch (it starts as fast as sympy allows).

Every variable is read as a scalar. The result is simplified where that is cheap (at most
a second). VARS chooses the variables (default: all); --order N gives every order up to N.

Examples:

  gradcli diff "sin(x)*exp(x**2)" x

  gradcli diff "x**2*y + y**3" --order 2

  gradcli diff "sigmoid(w*x + b)" w --format latex
"""


class DiffFormat(str, Enum):
    pretty = "pretty"
    plain = "plain"
    latex = "latex"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


@app.command(help=DIFF_HELP, **_COMMAND)
def diff(
    expression: ExprArgument,
    variables: Annotated[Optional[list[str]], typer.Argument(metavar="[VAR]...", help="Variables to differentiate by (default: all).", show_default=False)] = None,
    order: Annotated[int, typer.Option("--order", "-n", help="Every derivative up to this order.")] = 1,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Simplify where cheap (bounded to a second).")] = True,
    fmt: Annotated[DiffFormat, typer.Option("--format", "-f", help="pretty (unicode), plain, latex, json, ndjson or csv.")] = DiffFormat.pretty,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    quiet: QuietOption = False,
) -> None:
    try:
        output = "json" if json_flag else "plain" if plain_flag else fmt.value
        from gradcli.commands.diff import diff as symbolic_diff
        from gradcli.render.text import render_diff

        report = symbolic_diff(_expression(expression), variables or [], order=order, simplify=simplify)
        if quiet:
            report.notes = []
        render_diff(report, output, sys.stdout)
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None


EVAL_HELP = """\
The value of EXPR alone, computed under torch.no_grad(): no graph is recorded.

Values, dtypes, devices and formats are those of grad.

Examples:

  gradcli eval "3 + 2*x + x**2" x=2

  gradcli eval "sin(x)" x=-pi:pi:5 --plain
"""


@app.command(name="eval", help=EVAL_HELP, **_COMMAND)
def eval_command(
    expression: ExprArgument,
    values: ValuesArgument = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    def compute():
        from gradcli import api

        return api.evaluate(_expression(expression), values or [], data=data, dtype=dtype, device=device, seed=seed, max_elements=max_elements)
    _run(compute, fmt, json_flag, plain_flag, quiet)


GRAPH_HELP = """\
The autograd graph of EXPR: from f.grad_fn down through next_functions to the leaves,
after f.backward(). Each node shows its class (MulBackward0, AddBackward0, AccumulateGrad)
and the subexpression it computed; each leaf its name, shape, is_leaf, requires_grad and
grad. --dot prints Graphviz text; --json gives the nodes and edges.

Examples:

  gradcli graph "(x + w)*(w + 1)" w=1 x=2

  gradcli graph "(x + w)*(w + 1)" w=1 x=2 --dot | dot -Tpng > graph.png
"""


@app.command(help=GRAPH_HELP, **_COMMAND)
def graph(
    expression: ExprArgument,
    values: ValuesArgument = None,
    wrt: WrtOption = None,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz text (for | dot -Tpng).")] = False,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    try:
        output = "dot" if dot else _format(fmt, json_flag, plain_flag)
        from gradcli import api
        from gradcli.render import render

        render(api.graph(_expression(expression), values or [], data=data, wrt=wrt, dtype=dtype, device=device,
                         seed=seed, max_elements=max_elements), output, sys.stdout, sys.stderr, quiet=quiet)
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None


BATCH_HELP = """\
Many requests, one start-up: one per input line, one JSON result per output line (NDJSON).

A line is either a command as you would type it after `gradcli` (split as a shell splits
words) or a JSON object {"command": "grad", "expr": "...", "values": {...}, "options": {...}}.
Results come in the input's order; a bad line gives an error object for that line and the
rest go on. Blank lines and lines starting with # are skipped. Exit status: 2 if any line was
in error, else 1 if any check disagreed, else 0. Repeated expressions reuse their parsed and
lowered form and their symbolic derivatives.

Lines run side by side in worker processes, one per CPU (--jobs N to choose, --jobs 1 for
none); each result is written as soon as it and those before it are done, so a script may
write a line and wait for its answer.

Examples:

  printf '%s\\n' 'grad "x**2" x=3' 'jacobian "[x*y, x+y]" x=1 y=2' | gradcli batch

  gradcli batch requests.txt > results.ndjson

  gradcli batch --jobs 1 requests.txt

  echo '{"command": "grad", "expr": "sin(x)", "values": {"x": 0.5}, "options": {"dtype": "float64"}}' | gradcli batch
"""

_NOT_IN_BATCH = {"batch", "server"}  # a batch in a batch; the server is managed from the shell
_FORMAT_FLAGS = {"--json", "--plain"}
_FORMAT_OPTIONS = {"--format", "-f"}


def _request_args(line: str) -> list[str]:
    """A batch line as the argument list gradcli's commands take."""
    import json
    import shlex

    text = line.strip()
    if text.startswith("{"):
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GradcliError(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(request, dict) or "command" not in request:
            raise GradcliError('a JSON request needs "command" (and "expr", "values", "options")')
        unknown = set(request) - {"command", "expr", "values", "options"}
        if unknown:
            raise GradcliError(f"unknown key(s) in the request: {', '.join(sorted(unknown))}")
        args = [str(request["command"])]
        if "expr" in request:
            args.append(str(request["expr"]))
        values = request.get("values") or {}
        if not isinstance(values, dict):
            raise GradcliError('"values" must be an object of NAME: VALUE')
        for name, value in values.items():
            args.append(f"{name}={value if isinstance(value, str) else json.dumps(value)}")
        options = request.get("options") or {}
        if not isinstance(options, dict):
            raise GradcliError('"options" must be an object of OPTION: VALUE')
        for name, value in options.items():
            flag = "--" + str(name).lstrip("-").replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + flag[2:])
            else:
                args += [flag, value if isinstance(value, str) else json.dumps(value)]
        return args
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise GradcliError(f"could not split this line into words: {exc}") from None
    return args[1:] if args and args[0] == "gradcli" else args


def _machine_output(args: list[str]) -> list[str]:
    """The request's arguments with its own output format replaced by one JSON line."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in _FORMAT_FLAGS or a == "--dot":
            continue
        if a in _FORMAT_OPTIONS:
            skip = True
            continue
        if a.startswith("--format="):
            continue
        out.append(a)
    return out + ["--format", "ndjson"]


def _batch_line(command, item: tuple[int, str]) -> tuple[int, str]:
    """One batch line run as its command would run: (exit status, its result as one JSON line)."""
    import io
    import json
    from contextlib import redirect_stderr, redirect_stdout

    number, line = item
    status, out, err = 2, "", ""
    try:
        if line is None:
            raise GradcliError("this line is not UTF-8 text", hint="save the requests as UTF-8")
        args = _request_args(line)
        commands = sorted(set(command.commands) - _NOT_IN_BATCH)
        if not args or args[0] in _NOT_IN_BATCH:
            raise GradcliError(f"a line must name a command ({', '.join(commands)})")
        if "--points" in args or any(a.startswith("--points=") for a in args):
            # --points streams a row per point: one JSON line per request cannot hold them
            raise GradcliError("--points cannot be a batch line: it writes a row per point",
                               hint="run gradcli grad EXPR --points FILE as a command of its own")
        # The command itself, not the group around it: one click context a line, not two.
        subcommand = command.commands.get(args[0])
        if subcommand is None:
            raise GradcliError(f"no such command '{args[0]}'", hint="a line starts with one of: " + ", ".join(commands))
        captured_out, captured_err = io.StringIO(), io.StringIO()
        with redirect_stdout(captured_out), redirect_stderr(captured_err):
            try:
                code = subcommand.main(args=_machine_output(args)[1:], prog_name=f"gradcli {args[0]}",
                                       standalone_mode=False)
                status = int(code or 0)
            except Exception as exc:  # noqa: BLE001 - click's usage errors, for this line only
                message = getattr(exc, "format_message", lambda: str(exc))()
                captured_err.write(f"error: {message}\n")
                status = 2
        out, err = captured_out.getvalue(), captured_err.getvalue()
    except GradcliError as exc:
        err = "\n".join(exc.lines())
    result: dict | None = None
    if out.strip() and status in (0, 1):
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except json.JSONDecodeError:  # --help, say: text, not a result
            status, err = 2, "error: this line printed no result (was it --help?)"
    if result is None:
        lines = [x for x in err.strip().splitlines() if x]
        message = lines[0].removeprefix("error: ") if lines else "failed"
        hint = next((x.removeprefix("hint: ") for x in lines if x.startswith("hint: ")), None)
        result = _batch_error(message, hint, status)
    return _batch_result(result, number, status)


def _batch_error(message: str, hint: str | None, status: int) -> dict:
    from gradcli.report import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "error": {"message": message, "hint": hint, "exit_status": status}}


def _batch_result(doc: dict, number: int, status: int) -> tuple[int, str]:
    """A line's result as batch writes it: the document, its line number and exit status."""
    import json

    doc["line"] = number
    doc["exit_status"] = status
    return status, json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _batch_key(item: tuple[int, str]) -> str:
    """What decides which worker runs a line: its expression, whose caches that worker holds."""
    try:
        args = _request_args(item[1]) if item[1] is not None else []
    except GradcliError:
        return item[1]
    return args[1] if len(args) > 1 else item[1]


def _batch_lost(item: tuple[int, str], why: str) -> tuple[int, str]:
    doc = _batch_error(f"this line was not run: {why}", "run it again, as a command of its own or in "
                       "gradcli batch --jobs 1", 3)
    return _batch_result(doc, item[0], 3)


def _requests(stream):
    """(line number, text) of each request; text None for a line that is not UTF-8 text.

    Read as bytes and decoded line by line: one undecodable line is that line's error, not
    the end of the batch (a text stream fails on the whole chunk it was reading).
    """
    lines, number = iter(getattr(stream, "buffer", stream)), 0
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except OSError as exc:  # the requests could not be read on (a device gone, a directory)
            raise GradcliError(f"cannot read the requests after line {number}: {exc.strerror or exc}") from None
        number += 1
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
        if raw.strip() and not raw.lstrip().startswith("#"):
            yield number, raw


@app.command(help=BATCH_HELP, no_args_is_help=False)
def batch(
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="The requests; - (the default) reads standard input.")] = "-",
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", min=1, show_default=False,
        help="Worker processes running lines side by side (default: one per CPU, up to 8; 1 runs every "
             "line in this process). Results keep the input's order either way.")] = None,
) -> None:
    import functools
    import gc

    from typer.main import get_command

    from gradcli.warm import fanout

    if source == "-":
        from gradcli.inputs import claim_stdin

        stream = sys.stdin
        if stream is None:  # started with standard input closed (<&-)
            raise fail(GradcliError("cannot read the requests: standard input is closed",
                                    hint="give a file, gradcli batch FILE"))
        claim_stdin("gradcli batch (its requests)")  # a line's x=@- must not eat the requests
    else:
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below; decoded line by line
        except OSError as exc:
            raise fail(GradcliError(f"cannot read {source}: {exc.strerror}")) from None
    command = get_command(app)
    jobs = jobs or fanout.default_jobs()
    import gradcli.api  # noqa: F401 - before the freeze below, and before any worker is forked
    # What the imports made lives as long as the batch: no collection need walk it again (unless
    # the host froze its own objects already, as the warm server does: its freeze is not ours).
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    worst = 0
    try:
        results = fanout.ordered_map(functools.partial(_batch_line, command), _requests(stream), jobs=jobs,
                                     key=_batch_key, lost=_batch_lost)
        for status, text in results:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # | head -1: the reader has what it wanted (click would exit 1)
                results.close()
                raise reader_left() from None
            # 2 (any error, internal ones included) over 1 (a check disagreed) over 0
            worst = max(worst, 2 if status not in (0, 1) else status)
    except Exception as exc:  # noqa: BLE001 - sorted out as every command's are
        raise exit_for(exc) from None
    finally:
        if freeze:
            gc.unfreeze()  # a library host (or a test) calling batch in process collects as before
        if stream is not sys.stdin:
            stream.close()
        else:
            from gradcli.inputs import reset_stdin

            reset_stdin()  # the requests are read: a later call in this process may claim it
    if worst:
        raise typer.Exit(worst)


PLOT_HELP = """\
Plot f and its derivatives over a range: autograd's curves, sympy's overlaid (dashed), and
the largest difference between them in the legend.

Give each variable to plot over a range, x=-5:5:200 (200 points from -5 to 5), and the
others one value (a constant). Several ranges of the same length are paired point by
point, (x_i, y_i), and each partial derivative is drawn along its own variable. --grid takes
two ranges as a grid: f as filled contours, the gradient as arrows pointing uphill.

In a terminal the plot is drawn there; --out FILE.png|svg|pdf writes an image instead. When
standard output is a pipe or a file, the numbers are printed as CSV (x, f, df/dx, df/dx
symbolic, ...); --format forces one of terminal, csv, json. Drawing needs the plot extra:
pip install "gradcli[plot]" (CSV and JSON do not).

Examples:

  gradcli plot "sin(x)" x=-5:5:200

  gradcli plot "sin(x)" x=-5:5:200 --out sin.png

  gradcli plot "x**3 + 5*x + y**2" x=-5:5:200 y=-5:5:200

  gradcli plot "exp(-x**2/2)" x=-4:4:300 --order 3 --out gauss.svg

  gradcli plot "x**2 - y**2" x=-2:2:41 y=-2:2:41 --grid --out saddle.pdf

  gradcli plot "a*tanh(x)" x=-3:3:50 a=2 --format csv > tanh.csv
"""


class PlotFormat(str, Enum):
    auto = "auto"
    terminal = "terminal"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"


@app.command(help=PLOT_HELP, **_COMMAND)
def plot(
    expression: ExprArgument,
    values: ValuesArgument = None,
    order: Annotated[int, typer.Option("--order", "-n", help="Also plot the derivatives up to this order.")] = 1,
    grid: Annotated[bool, typer.Option("--grid", help="Two ranges as a grid: contours of f and the gradient as arrows.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", metavar="FILE", help="Write the plot to FILE.png, FILE.svg or FILE.pdf (matplotlib).", show_default=False)] = None,
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of a PNG (pixels per inch).")] = 150,
    fmt: Annotated[PlotFormat, typer.Option("--format", "-f", help="auto: draw in a terminal, CSV into a pipe, a summary with --out; or terminal, csv, json, ndjson.")] = PlotFormat.auto,
    json_flag: JsonOption = False,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: Annotated[int, typer.Option("--max-elements", help="Refuse more points than this (for --grid, columns times rows).")] = 1_000_000,
    quiet: QuietOption = False,
) -> None:
    try:
        from gradcli.render import plot as draw

        if not 1 <= dpi <= 1200:
            raise GradcliError(f"--dpi must be between 1 and 1200, not {dpi}")
        output = draw.choose_output("json" if json_flag else fmt.value, out, sys.stdout)
        draw.require(output, out)  # a missing plotting library is said before anything is computed
        from gradcli.commands.plot import plot_data

        data = plot_data(_expression(expression), values or [], order=order, grid=grid, dtype=dtype, device=device,
                         check=check, rtol=rtol, atol=atol, seed=seed, max_elements=max_elements)
        draw.show(data, output, out, sys.stdout, sys.stderr, dpi=dpi, quiet=quiet)
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None
    if data.status != "ok":
        raise typer.Exit(int(ExitStatus.CHECK_FAILED))


MINIMIZE_HELP = """\
Minimise a loss by gradient descent with torch.optim, and show what happened on the way.

The --wrt variables are the parameters, moved from the values given (θ=1) by the optimizer;
every other variable is a constant: a NAME=VALUE, or a column of --data FILE.csv (a vector,
so mean(...) over the rows is the loss). Each step is optimizer.zero_grad(), loss.backward(),
optimizer.step(); the gradient at the first and the last point is checked against sympy's.

The run stops after --steps steps, when the gradient norm falls below --tol, or at once when
the loss is NaN or infinite (exit status 1, with the last finite parameters and a hint).
--trace FILE.csv|FILE.ndjson|- writes one record per step as it runs (| tail -f works).

Examples:

  gradcli minimize "(θ*x - y)**2" θ=1 x=2 y=3 --wrt θ --lr 0.1 --steps 1

  gradcli minimize "mse(θ*x, y)" θ=1 x=2 y=3 --wrt θ --optimizer sgd --steps 1

  gradcli minimize "mean(0.5*(y - (w*x + b))**2)" w=0 b=0 --data examples/data/line.csv --wrt w,b --lr 0.05 --steps 100

  gradcli minimize "bce(sigmoid(w1*x1 + w2*x2 + b), y)" w1=0 w2=0 b=0 --data examples/data/clusters.csv --wrt w1,w2,b --optimizer momentum --lr 0.01 --steps 1000

  gradcli minimize "(x - 3)**2 + (y + 1)**2" x=0 y=0 --optimizer adam --steps 5000 --tol 1e-6 --trace run.csv

  gradcli minimize "(x - 3)**2" x=0 --steps 50 --plot loss.png
"""


class Optimizer(str, Enum):
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"
    lbfgs = "lbfgs"


class TraceFormat(str, Enum):
    csv = "csv"
    ndjson = "ndjson"


@app.command(help=MINIMIZE_HELP, **_COMMAND)
def minimize(
    expression: ExprArgument,
    values: ValuesArgument = None,
    wrt: Annotated[Optional[str], typer.Option(
        "--wrt", help="The parameters to move (comma-separated); every other variable is a constant. "
                      "Default: the variables given as NAME=VALUE.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 0.1,
    steps: Annotated[int, typer.Option("--steps", help="At most this many optimizer steps.")] = 100,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", help="torch.optim's SGD, SGD with momentum (0.9 unless --momentum), Adam, AdamW, "
                            "RMSprop or LBFGS; every setting but lr (and momentum) is torch's default.")] = Optimizer.sgd,
    momentum: Annotated[Optional[float], typer.Option(
        "--momentum", help="Momentum, for sgd, momentum and rmsprop.", show_default=False)] = None,
    tol: Annotated[Optional[float], typer.Option(
        "--tol", help="Stop when the gradient norm falls below this.", show_default=False)] = None,
    trace: Annotated[Optional[str], typer.Option(
        "--trace", metavar="FILE|-", help="Write one record per step (step, loss, gradient norm, parameters) "
                                          "to FILE (.csv or .ndjson) or - (standard output), as the run goes.",
        show_default=False)] = None,
    trace_format: Annotated[Optional[TraceFormat], typer.Option(
        "--trace-format", help="csv or ndjson. Default: by the file name; csv for -.", show_default=False)] = None,
    plot_file: Annotated[Optional[str], typer.Option(
        "--plot", metavar="FILE", help="Draw the loss curve into FILE.png, .svg or .pdf (needs the plot extra).",
        show_default=False)] = None,
    reduce: Annotated[Reduce, typer.Option(help="How a tensor-valued loss becomes the scalar minimised.")] = Reduce.sum,
    dtype: DtypeOption = "float32",
    device: DeviceOption = "auto",
    rtol: RtolOption = None,
    atol: AtolOption = None,
    check: CheckOption = True,
    seed: SeedOption = None,
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS,
    fmt: FormatOption = Format.table,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    data: DataOption = None,
    quiet: QuietOption = False,
) -> None:
    progress = None
    try:
        output = _format(fmt, json_flag, plain_flag)
        to_stdout = trace == "-"
        if to_stdout and output != "table":
            raise GradcliError(f"--trace - writes the trace to standard output: the {output} result cannot go "
                               "there too", hint="write the trace to a file (--trace run.csv, then tail -f run.csv)")
        if plot_file is not None:
            from gradcli.render.plot import loss_curve_format

            loss_curve_format(plot_file)  # a missing matplotlib is said before the run
        from gradcli import render
        from gradcli.commands.minimize import minimize as run_minimize

        if render.wants_progress(output, to_stdout, sys.stderr):
            progress = render.LossProgress(steps, sys.stderr, dtype)
        report = run_minimize(
            _expression(expression), values or [], wrt=wrt, optimizer=optimizer.value, lr=lr, steps=steps,
            momentum=momentum, tol=tol, reduce=reduce.value, data=data, dtype=dtype, device=device, check=check,
            rtol=rtol, atol=atol, seed=seed, max_elements=max_elements,
            trace=sys.stdout if to_stdout else trace, trace_format_name=trace_format.value if trace_format else None,
            progress=progress)
        if progress is not None:
            progress.close()
        if plot_file is not None:
            from gradcli.render.plot import write_loss_curve

            write_loss_curve(report, plot_file)
        # With the trace on standard output, the result table is for the person: on stderr.
        render.render(report, output, sys.stderr if to_stdout else sys.stdout, sys.stderr, quiet=quiet)
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None
    finally:
        if progress is not None:
            progress.close()
    if report.status != "ok":
        raise typer.Exit(int(ExitStatus.CHECK_FAILED))


def _grad_points(expression: str, values: list[str], *, points, output, wrt, method, order, accumulate, explain,
                 dtype, device, reduce, rtol, atol, check, seed, max_elements, fmt, json_flag, plain_flag, data,
                 quiet) -> None:
    """gradcli grad EXPR --points FILE: the rows stream out as they are computed (gradcli/points.py)."""
    try:
        if points is None:
            raise GradcliError("--output writes the rows of --points", hint="gradcli grad EXPR --points FILE.csv --output FILE.npy")
        for flag, used in (("--method", method.value != "grad"), ("--order", order != 1), ("--accumulate", accumulate),
                           ("--explain", explain), ("--data", data is not None), ("--reduce", reduce.value != "sum"),
                           ("--plain", plain_flag), ("--json", json_flag)):
            if used:
                raise GradcliError(f"{flag} cannot be used with --points",
                                   hint="--points computes f and its gradient at every row, written as csv or ndjson rows")
        row_format = "csv" if fmt.value == "table" else fmt.value
        from gradcli.commands.points import grad_points

        summary = grad_points(_expression(expression), points, values, output=output, fmt=row_format, wrt=wrt,
                              dtype=dtype, device=device, check=check, rtol=rtol, atol=atol, seed=seed,
                              max_elements=max_elements)
        sys.stdout.flush()
        if not quiet:
            for line in summary.warnings:
                sys.stderr.write(f"note: {line}\n")
            for line in summary.lines():
                sys.stderr.write(f"note: {line}\n")
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None
    if summary.status != "ok":
        raise typer.Exit(int(ExitStatus.CHECK_FAILED))


# --------------------------------------------------------------------------- gradcli server (warm mode)

SERVER_HELP = """\
Warm mode: a background server that keeps torch and sympy imported, so that each gradcli
call answers in milliseconds instead of a second.

While it runs, every gradcli call of yours is handed to it over a Unix socket in a directory
only you can enter, and behaves exactly as before (output, exit status, standard input, files
relative to where you are); without it, calls run in their own process as always.
GRADCLI_SERVER=off runs every call in its own process; GRADCLI_SERVER=require fails (exit
status 2) when no server runs. It exits after 15 minutes without a call (--idle SECONDS, or
GRADCLI_SERVER_IDLE).

Examples:

  gradcli server start

  gradcli server status

  gradcli server stop
"""

server_app = typer.Typer(help=SERVER_HELP, no_args_is_help=True, rich_markup_mode=None)
app.add_typer(server_app, name="server")


def _server_command(action) -> None:
    try:
        code = action()
    except GradcliError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@server_app.command("start", help="Start the server in the background; return once it answers.")
def server_start(
    idle: Annotated[Optional[float], typer.Option("--idle", metavar="SECONDS", help="Exit after this many seconds without a call. Default: GRADCLI_SERVER_IDLE, else 900.", show_default=False)] = None,
) -> None:
    from gradcli.warm import daemon as server

    _server_command(lambda: server.start(idle))


@server_app.command("stop", help="Stop the server (calls running finish first).")
def server_stop() -> None:
    from gradcli.warm import daemon as server

    _server_command(server.stop)


@server_app.command("status", help="Say whether a server runs (exit status 0) or not (1).")
def server_status() -> None:
    from gradcli.warm import daemon as server

    _server_command(server.status)


def main() -> None:
    """The console script: run the app, then leave without tearing torch down.

    Interpreter teardown with torch loaded costs about 0.3 s and changes nothing the user sees,
    so once the output is flushed the process ends at once.
    """
    try:
        app(prog_name="gradcli")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except KeyboardInterrupt:
        # Ctrl-C: the shell convention, 128 + SIGINT, and no traceback.
        sys.stderr.write("\ninterrupted\n")
        code = 130
    except BrokenPipeError:
        code = 0  # the reader left (| head): nothing more to say, and nowhere to say it
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        # Python would complain about the closed pipe when it flushes at exit: point stdout
        # at /dev/null first, so `gradcli ... | head -1` ends quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if "torch" in sys.modules:
        os._exit(code)
    sys.exit(code)
