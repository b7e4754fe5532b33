"""The options and arguments the commands share, declared once, and the enums of their choices.

Options that always travel together are an `OptionGroup`: a command takes the group as one
parameter, and `show_groups` lays its fields out for typer as options of their own, in the
group's place (so `--help` lists them where they always stood).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.errors import GradcliError


class Method(str, Enum):
    grad = "grad"
    backward = "backward"
    jacobian = "jacobian"
    all = "all"


class JacobianMethod(str, Enum):
    auto = "auto"
    loop = "loop"
    autograd = "autograd"
    rev = "rev"
    fwd = "fwd"
    all = "all"


class CheckMode(str, Enum):
    """--check: the routes that check a result (core/check.py's CHECK_MODES)."""

    auto = "auto"
    symbolic = "symbolic"
    numeric = "numeric"
    all = "all"
    none = "none"


class Reduce(str, Enum):
    sum = "sum"
    mean = "mean"


class Format(str, Enum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"
    plain = "plain"


class DiffFormat(str, Enum):
    pretty = "pretty"
    plain = "plain"
    latex = "latex"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


class FunctionsFormat(str, Enum):
    table = "table"
    json = "json"
    ndjson = "ndjson"


class PlotFormat(str, Enum):
    auto = "auto"
    terminal = "terminal"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"


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


# --------------------------------------------------------------------------- arguments

ExprArgument = Annotated[str, typer.Argument(metavar="EXPR", help="The function, in quotes.", show_default=False)]
ValuesArgument = Annotated[list[str] | None, typer.Argument(
    metavar="[VALUE]...", help="NAME=VALUE for every variable.", show_default=False)]
FunctionNameArgument = Annotated[str | None, typer.Argument(
    metavar="[NAME]", help="One function (its name or an alias); default: every function.", show_default=False)]
VariablesArgument = Annotated[list[str] | None, typer.Argument(
    metavar="[VAR]...", help="Variables to differentiate by (default: all).", show_default=False)]
BatchSourceArgument = Annotated[str, typer.Argument(
    metavar="[FILE|-]", help="The requests; - (the default) reads standard input.")]


def expression_text(text: str) -> str:
    """EXPR as given, or read from standard input when it is '-'."""
    if text != "-":
        return text
    from gradcli.inputs import read_stdin

    lines = [line for line in read_stdin("EXPR -").splitlines() if line.strip()]
    if len(lines) != 1:
        raise GradcliError(f"EXPR - reads one expression from standard input, got {len(lines)} lines",
                           hint="for many expressions, one per line, use gradcli batch")
    return lines[0].strip()


# --------------------------------------------------------------------------- options

WrtOption = Annotated[str | None, typer.Option(
    "--wrt", help="Differentiate with respect to these (comma-separated); the others are constants. Default: all.")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="float16, bfloat16, float32 or float64.")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps. auto picks the best available and says which.")]
RtolOption = Annotated[float | None, typer.Option(
    "--rtol", help="Relative tolerance of the check. Default: by dtype.", show_default=False)]
AtolOption = Annotated[float | None, typer.Option(
    "--atol", help="Absolute tolerance of the check, times the result's largest magnitude. Default: by dtype.",
    show_default=False)]
CheckOption = Annotated[CheckMode, typer.Option(
    "--check", help="How the result is checked: symbolic (sympy's derivative), numeric (finite differences "
    "in float64), all (both), none. Default auto: symbolic where sympy's derivative can be evaluated, numeric "
    "where it cannot, and numeric to arbitrate when the two disagree.")]
NoCheckOption = Annotated[bool, typer.Option("--no-check", help="Same as --check none.")]
SeedOption = Annotated[int | None, typer.Option(
    "--seed", help="Seed for rand(...)/randn(...) values.", show_default=False)]
MaxElementsOption = Annotated[int, typer.Option(
    "--max-elements", help="Refuse a value, Jacobian or Hessian with more elements than this.")]
PlotMaxElementsOption = Annotated[int, typer.Option(
    "--max-elements", help="Refuse more points than this (for --grid, columns times rows).")]
FormatOption = Annotated[Format, typer.Option(
    "--format", "-f", help="table for people; json (one document), ndjson (one line) or csv (a row per element) "
    "for programs; plain for $(...).")]
DiffFormatOption = Annotated[DiffFormat, typer.Option(
    "--format", "-f", help="pretty (unicode), plain, latex, json, ndjson or csv.")]
FunctionsFormatOption = Annotated[FunctionsFormat, typer.Option(
    "--format", "-f", help="table for people; json (one document) or ndjson (one line) for programs.")]
PlotFormatOption = Annotated[PlotFormat, typer.Option(
    "--format", "-f", help="auto: draw in a terminal, CSV into a pipe, a summary with --out; or terminal, csv, "
    "json, ndjson.")]
DataOption = Annotated[str | None, typer.Option(
    "--data", help="A CSV file with a header: each column whose name is a variable gives its value (a vector); "
    "a value X=stack([x1, x2], dim=1) makes the columns x1, x2 one matrix X, a row per sample.",
    show_default=False)]
QuietOption = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No notes or warnings: only the result (errors still go to stderr).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
PlainOption = Annotated[bool, typer.Option("--plain", help="Same as --format plain: only the numbers.")]
PrettyOption = Annotated[bool | None, typer.Option(
    "--pretty/--compact", help="JSON indented for people, or on one line. Default: indented on a terminal, "
    "one line into a pipe or file.", show_default=False)]
EchoValuesOption = Annotated[bool, typer.Option(
    "--echo-values", help="JSON: write every input (and sympy's value beside each result) in full; by default "
    "those of more than 1000 elements are summarised as shape, dtype and elements.")]
VectorOption = Annotated[str | None, typer.Option(
    "--vector", help="The vector v, when the expression has a variable named v itself.", show_default=False)]
ReduceOption = Annotated[Reduce, typer.Option(
    help="How a tensor-valued EXPR becomes the scalar that is differentiated.")]
ExplainOption = Annotated[bool, typer.Option(
    "--explain", help="After the result, show how it was computed: the torch code, the autograd call, the check.")]
OrderOption = Annotated[int, typer.Option("--order", "-n", help="Every derivative up to this order.")]

# grad's own
MethodOption = Annotated[Method, typer.Option(
    help="grad: torch.autograd.grad; backward: f.backward() and .grad; jacobian: torch.autograd.functional.jacobian; "
    "all: each, compared.")]
GradOrderOption = Annotated[int, typer.Option(
    "--order", "-n",
    help="Every derivative up to this order (one variable); with several variables, 2 gives the Hessian.")]
AccumulateOption = Annotated[int, typer.Option(
    "--accumulate", help="Also call backward K times without zeroing, to show .grad adding up (uses backward).",
    show_default=False)]
PointsOption = Annotated[str | None, typer.Option(
    "--points", metavar="FILE|-", help="Many points at once: every row of FILE.csv (a header names the variables), "
    "of a structured FILE.npy, or of CSV on standard input (-) is a point; prints x, f, df/dx, ..., check per row "
    "(CSV, or --format ndjson). The other variables are constants, NAME=VALUE.", show_default=False)]
PointsOutputOption = Annotated[str | None, typer.Option(
    "--output", "-o", metavar="FILE", help="With --points: write the rows to FILE.csv, FILE.ndjson or FILE.npy "
    "(a structured array) instead of standard output.", show_default=False)]

# jacobian's own
JacobianMethodOption = Annotated[JacobianMethod, typer.Option(
    help="loop: one backward per output row (as the seeds teach); autograd: "
    "torch.autograd.functional.jacobian(vectorize=True); rev/fwd: torch.func.jacrev/jacfwd; auto: rev or fwd by "
    "the shapes; all: each, compared.")]

# diff's and graph's own
SimplifyOption = Annotated[bool, typer.Option(
    "--simplify/--no-simplify", help="Simplify where cheap (bounded to a second).")]
ShapeOption = Annotated[list[str] | None, typer.Option(
    "--shape", metavar="NAME=SHAPE",
    help="A variable's shape (x=3, A=3x3; repeat for each): the gradient in matrix form, (A + Aᵀ) @ x.")]
DotOption = Annotated[bool, typer.Option("--dot", help="Print Graphviz text (for | dot -Tpng).")]
LatexOption = Annotated[bool, typer.Option("--latex", help="Same as --format latex.")]

# batch's own
JobsOption = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, show_default=False,
    help="Worker processes running lines side by side (default: one per CPU, up to 8; 1 runs every "
         "line in this process). Results keep the input's order either way.")]
AllowFilesOption = Annotated[bool, typer.Option(
    "--allow-files", help="Let lines read and write files (--output, --trace, --plot, --out, --data, x=@FILE, "
    "x=@-): off by default, since requests often come from someone else.")]

# plot's own
PlotOrderOption = Annotated[int, typer.Option("--order", "-n", help="Also plot the derivatives up to this order.")]
GridOption = Annotated[bool, typer.Option(
    "--grid", help="Two ranges as a grid: contours of f and the gradient as arrows.")]
PlotOutOption = Annotated[str | None, typer.Option(
    "--out", "-o", metavar="FILE", help="Write the plot to FILE.png, FILE.svg or FILE.pdf (matplotlib).",
    show_default=False)]
DpiOption = Annotated[int, typer.Option("--dpi", help="Resolution of a PNG (pixels per inch).")]

# minimize's own
ParametersOption = Annotated[str | None, typer.Option(
    "--wrt", help="The parameters to move (comma-separated); every other variable is a constant. "
                  "Default: the variables given as NAME=VALUE.")]
LrOption = Annotated[float, typer.Option("--lr", help="Learning rate.")]
StepsOption = Annotated[int, typer.Option("--steps", help="At most this many optimizer steps.")]
OptimizerOption = Annotated[Optimizer, typer.Option(
    "--optimizer", help="torch.optim's SGD, SGD with momentum (0.9 unless --momentum), Adam, AdamW, "
                        "RMSprop or LBFGS; every setting but lr (and momentum) is torch's default.")]
MomentumOption = Annotated[float | None, typer.Option(
    "--momentum", help="Momentum, for sgd, momentum and rmsprop.", show_default=False)]
TolOption = Annotated[float | None, typer.Option(
    "--tol", help="Stop when the gradient norm falls below this.", show_default=False)]
TraceOption = Annotated[str | None, typer.Option(
    "--trace", metavar="FILE|-", help="Write one record per step (step, loss, gradient norm, parameters) "
                                      "to FILE (.csv or .ndjson) or - (standard output), as the run goes.",
    show_default=False)]
TraceFormatOption = Annotated[TraceFormat | None, typer.Option(
    "--trace-format", help="csv or ndjson. Default: by the file name; csv for -.", show_default=False)]
LossPlotOption = Annotated[str | None, typer.Option(
    "--plot", metavar="FILE", help="Draw the loss curve into FILE.png, .svg or .pdf (needs the plot extra).",
    show_default=False)]
LossReduceOption = Annotated[Reduce, typer.Option(help="How a tensor-valued loss becomes the scalar minimised.")]

# server start's own
IdleOption = Annotated[float | None, typer.Option(
    "--idle", metavar="SECONDS", help="Exit after this many seconds without a call. Default: GRADCLI_SERVER_IDLE, "
    "else 900.", show_default=False)]


# --------------------------------------------------------------------------- option groups

class OptionGroup:
    """Options that travel together, given to a command as one (frozen dataclass) parameter."""

    def settings(self) -> dict[str, Any]:
        """The options by name: the keyword arguments of gradcli.commands' functions."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Compute(OptionGroup):
    """Where and in what precision torch computes."""

    dtype: DtypeOption = "float32"
    device: DeviceOption = "auto"


@dataclasses.dataclass(frozen=True)
class Checks(OptionGroup):
    """Whether and how tightly the result is checked against sympy."""

    rtol: RtolOption = None
    atol: AtolOption = None
    check: CheckOption = CheckMode.auto
    no_check: NoCheckOption = False

    def settings(self) -> dict[str, Any]:
        check = CheckMode(self.check).value
        if self.no_check and check not in ("auto", "none"):
            raise GradcliError(f"--no-check and --check {check} contradict each other")
        return {"rtol": self.rtol, "atol": self.atol, "check": "none" if self.no_check else check}


@dataclasses.dataclass(frozen=True)
class ValueOptions(OptionGroup):
    """How values are made: the seed of rand()/randn(), and the largest one allowed."""

    seed: SeedOption = None
    max_elements: MaxElementsOption = DEFAULT_MAX_ELEMENTS


@dataclasses.dataclass(frozen=True)
class Output(OptionGroup):
    """The output format: --format, or its --json/--plain shorthands."""

    fmt: FormatOption = Format.table
    json_flag: JsonOption = False
    plain_flag: PlainOption = False
    pretty: PrettyOption = None
    echo_values: EchoValuesOption = False

    def chosen(self) -> str:
        """The format's name, carrying --pretty and --echo-values to the renderer (an OutputChoice)."""
        from gradcli.render.common import OutputChoice

        if self.json_flag and self.plain_flag:
            raise GradcliError("--json and --plain cannot be used together")
        fmt = "json" if self.json_flag else "plain" if self.plain_flag else self.fmt.value
        return OutputChoice(fmt, pretty=self.pretty, echo_values=self.echo_values)


COMPUTE, CHECKS, VALUE_OPTIONS, OUTPUT = Compute(), Checks(), ValueOptions(), Output()


def show_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with each OptionGroup parameter laid out as the group's own options, in its
    place: typer reads the signature this gives, and the command receives the group built."""
    hints = typing.get_type_hints(command, include_extras=True)
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[OptionGroup], list[str]]] = {}
    for parameter in inspect.signature(command).parameters.values():
        hint = hints.get(parameter.name, parameter.annotation)
        if isinstance(hint, type) and issubclass(hint, OptionGroup):
            field_hints = typing.get_type_hints(hint, include_extras=True)
            fields = dataclasses.fields(hint)  # type: ignore[arg-type]
            groups[parameter.name] = (hint, [field.name for field in fields])
            parameters += [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                             annotation=field_hints[field.name]) for field in fields]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hint))
    names = [parameter.name for parameter in parameters]
    if len(set(names)) != len(names):
        raise TypeError(f"{command.__name__}: an option group repeats a parameter name ({names})")

    @functools.wraps(command)
    def laid_out(**options: Any) -> Any:
        for name, (group, fields) in groups.items():
            options[name] = group(**{field: options.pop(field) for field in fields})
        return command(**options)

    laid_out.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    laid_out.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return laid_out


# --------------------------------------------------------------------------- expressions as arguments

_OPTION_LIKE = re.compile(r"--?[A-Za-z][\w-]*(=.*)?|-[0-9.]+(e[-+]?[0-9]+)?")  # options, and negative numbers


class ExpressionCommand(TyperCommand):
    """A command whose arguments may start with '-' and still be expressions.

    Click reads any argument that starts with '-' as options, and a cluster of short ones at
    that: "-sum(y * log_softmax(z))" would hide a -f inside it. An argument that cannot be
    an option (it has brackets, operators, spaces...) is set aside before click parses and
    put back afterwards.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        protected: dict[str, str] = {}
        shielded = []
        for arg in args:
            if arg.startswith("-") and arg != "-" and arg != "--" and not _OPTION_LIKE.fullmatch(arg):
                key = f"\0gradcli-argument-{len(protected)}"
                protected[key] = arg
                shielded.append(key)
            else:
                shielded.append(arg)
        rest: list[str] = super().parse_args(ctx, shielded)
        if protected:
            for name, value in ctx.params.items():
                if isinstance(value, str):
                    ctx.params[name] = protected.get(value, value)
                elif isinstance(value, (list, tuple)):
                    ctx.params[name] = type(value)(protected.get(v, v) if isinstance(v, str) else v for v in value)
        return rest


# "-x**2" is an expression, not an option; a mistyped option reaches the value parser, which
# names it ("no such option: --dtyp").
EXPRESSION_COMMAND: dict[str, Any] = {
    "context_settings": {"ignore_unknown_options": True}, "no_args_is_help": True, "cls": ExpressionCommand}
