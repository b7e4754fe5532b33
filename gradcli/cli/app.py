"""The command line: typer's app and one thin wrapper per command. No maths here.

A wrapper takes its options (declared once, in cli/options.py), calls one function of
gradcli.commands and renders the report it returns (gradcli.render); whatever it raises
becomes its exit status in cli/exits.py. The batch protocol is cli/batch.py; minimize and
grad --points, whose output streams while they run, are cli/streaming.py; the help texts are
cli/help.py.

Torch and sympy are imported inside the commands, so `--help`, `--version` and shell
completion never load them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoSuchOption, UsageError
from typer.core import TyperCommand, TyperGroup

from gradcli.cli import exits, streaming
from gradcli.cli import help as texts
from gradcli.cli.options import (
    CHECKS,
    COMPUTE,
    EXPRESSION_COMMAND,
    OUTPUT,
    VALUE_OPTIONS,
    AccumulateOption,
    AllowFilesOption,
    BatchSourceArgument,
    Checks,
    Compute,
    DataOption,
    DiffFormat,
    DiffFormatOption,
    DotOption,
    DpiOption,
    ExplainOption,
    ExprArgument,
    ExpressionCommand,
    FunctionNameArgument,
    FunctionsFormat,
    FunctionsFormatOption,
    GradOrderOption,
    GridOption,
    IdleOption,
    JacobianMethod,
    JacobianMethodOption,
    JobsOption,
    JsonOption,
    LatexOption,
    LossPlotOption,
    LossReduceOption,
    LrOption,
    Method,
    MethodOption,
    MomentumOption,
    Optimizer,
    OptimizerOption,
    OptionGroup,
    OrderOption,
    Output,
    ParametersOption,
    PlainOption,
    PlotFormat,
    PlotFormatOption,
    PlotMaxElementsOption,
    PlotOrderOption,
    PlotOutOption,
    PointsOption,
    PointsOutputOption,
    QuietOption,
    Reduce,
    ReduceOption,
    SeedOption,
    ShapeOption,
    SimplifyOption,
    StepsOption,
    TolOption,
    TraceFormatOption,
    TraceOption,
    ValueOptions,
    ValuesArgument,
    VariablesArgument,
    VectorOption,
    WrtOption,
    expression_text,
    show_groups,
)
from gradcli.errors import GradcliError
from gradcli.version import __version__

# --------------------------------------------------------------------------- usage errors, in gradcli's words

# An option a user mistyped: an expression command lets unknown options through to its values
# (so that "-x**2" can be an expression), where no NAME=VALUE starts with a dash.
_STRAY_OPTION = re.compile(r"--?[A-Za-z][\w-]*(=.*)?")


def refuse_stray_options(command: Any, ctx: Any) -> None:
    """A mistyped option among a command's arguments, refused as the unknown option it is:
    any in the values (`x=1 --dtpye float64`), and an EXPR that is close to an option's name
    (`grad --dtpye float64 "x**2"`; "--x" alone stays the expression -(-x))."""
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        value = ctx.params.get(param.name)
        for item in value if isinstance(value, (list, tuple)) else ():
            if isinstance(item, str) and _STRAY_OPTION.fullmatch(item):
                raise NoSuchOption(item.partition("=")[0], ctx=ctx)
        if isinstance(value, str) and _STRAY_OPTION.fullmatch(value) and value.startswith("--") \
                and exits.closest(value.partition("=")[0], exits.option_names(command)):
            raise NoSuchOption(value.partition("=")[0], ctx=ctx)


def parse_in_gradcli_words(command: Any, parse: Callable[[Any, list[str]], list[str]], ctx: Any,
                           args: list[str]) -> list[str]:
    """click's parse of `args` for `command`, its usage errors raised in gradcli's words
    (cli/exits.py: usage_problem)."""
    try:
        rest = parse(ctx, args)
        refuse_stray_options(command, ctx)
    except UsageError as exc:
        if exc.ctx is None:  # click's parser raises some ("--dtype needs a value") without one
            exc.ctx, exc.cmd = ctx, command
        raise exits.in_gradcli_words(exc) from None
    return rest


class GradcliExpressionCommand(ExpressionCommand):
    """A command that takes an EXPR (see options.ExpressionCommand), its usage errors gradcli's."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return parse_in_gradcli_words(self, super().parse_args, ctx, args)


class GradcliCommand(TyperCommand):
    """Any other command, its usage errors gradcli's."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return parse_in_gradcli_words(self, super().parse_args, ctx, args)


class GradcliGroup(TyperGroup):
    """gradcli and gradcli server: an unknown command named with the one meant, and the
    group's own usage errors in gradcli's words."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            rest: list[str] = super().parse_args(ctx, args)
        except UsageError as exc:
            raise exits.in_gradcli_words(exc) from None
        return rest

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0]
        if self.get_command(ctx, name) is None and not ctx.resilient_parsing and not name.startswith("-"):
            near = exits.closest(name, self.list_commands(ctx))
            raise exits.UsageProblem(f"no such command: {exits.printable(name)}{exits.did_you_mean(near)}", ctx)
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            raise exits.in_gradcli_words(exc) from None


app = typer.Typer(
    name="gradcli",
    cls=GradcliGroup,
    help=texts.APP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
server_app = typer.Typer(cls=GradcliGroup, help=texts.SERVER, no_args_is_help=True, rich_markup_mode=None)


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


def command(help_text: str, *, name: str | None = None, group: typer.Typer = app, expression: bool = True,
            **click_settings: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a wrapper as a command of `group`: its option groups laid out as options, and
    whatever it raises turned into its exit status. An expression command takes an EXPR that
    may start with '-' (options.ExpressionCommand)."""

    def register(wrapper: Callable[..., None]) -> Callable[..., None]:
        registered = show_groups(exits.statuses(wrapper))
        kind = {**EXPRESSION_COMMAND, "cls": GradcliExpressionCommand} if expression else {"cls": GradcliCommand}
        group.command(name, help=help_text, **kind, **click_settings)(registered)
        return registered

    return register


def settings(*groups: OptionGroup) -> dict[str, Any]:
    """The options of `groups` as the keyword arguments gradcli.commands' functions take."""
    return {name: value for group in groups for name, value in group.settings().items()}


def show(report: Any, fmt: str, quiet: bool) -> None:
    """Render `report` on standard output (its notes on stderr), and leave with status 1 when
    its check did not confirm it."""
    from gradcli import render

    render.render(report, fmt, sys.stdout, sys.stderr, quiet=quiet)
    exits.verdict(report.status)


@command(texts.GRAD)
def grad(
    expression: ExprArgument, values: ValuesArgument = None,
    wrt: WrtOption = None,
    method: MethodOption = Method.grad,
    order: GradOrderOption = 1,
    accumulate: AccumulateOption = 0,
    explain: ExplainOption = False,
    compute: Compute = COMPUTE,
    reduce: ReduceOption = Reduce.sum,
    checks: Checks = CHECKS, value_options: ValueOptions = VALUE_OPTIONS,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
    points: PointsOption = None,
    points_output: PointsOutputOption = None,
) -> None:
    if points is not None or points_output is not None:
        streaming.grad_points(expression, values or [], points=points, rows_file=points_output, wrt=wrt, method=method,
                              order=order, accumulate=accumulate, explain=explain, reduce=reduce, data=data,
                              compute=compute, checks=checks, value_options=value_options,
                              output=output, quiet=quiet)
        return
    fmt = output.chosen()
    from gradcli.commands.grad import grad as run

    show(run(expression_text(expression), values or [], data=data, wrt=wrt, method=method.value, order=order,
             reduce=reduce.value, explain=explain, accumulate=accumulate,
             **settings(compute, checks, value_options)), fmt, quiet)


@command(texts.JACOBIAN)
def jacobian(
    expression: ExprArgument, values: ValuesArgument = None,
    wrt: WrtOption = None,
    method: JacobianMethodOption = JacobianMethod.auto,
    compute: Compute = COMPUTE, checks: Checks = CHECKS, value_options: ValueOptions = VALUE_OPTIONS,
    explain: ExplainOption = False,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
) -> None:
    fmt = output.chosen()
    from gradcli.commands.jacobian import jacobian as run

    show(run(expression_text(expression), values or [], data=data, wrt=wrt, method=method.value, explain=explain,
             **settings(compute, checks, value_options)), fmt, quiet)


@command(texts.HESSIAN)
def hessian(
    expression: ExprArgument, values: ValuesArgument = None,
    wrt: WrtOption = None,
    compute: Compute = COMPUTE,
    reduce: ReduceOption = Reduce.sum,
    checks: Checks = CHECKS, value_options: ValueOptions = VALUE_OPTIONS,
    explain: ExplainOption = False,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
) -> None:
    fmt = output.chosen()
    from gradcli.commands.hessian import hessian as run

    show(run(expression_text(expression), values or [], data=data, wrt=wrt, reduce=reduce.value, explain=explain,
             **settings(compute, checks, value_options)), fmt, quiet)


def vector_product(name: str, help_text: str) -> None:
    """Register `gradcli vjp` or `gradcli jvp`: the same options, one function of
    gradcli.commands.vectors each."""

    @command(help_text, name=name)
    def product(
        expression: ExprArgument, values: ValuesArgument = None,
        vector: VectorOption = None,
        wrt: WrtOption = None,
        compute: Compute = COMPUTE, checks: Checks = CHECKS, value_options: ValueOptions = VALUE_OPTIONS,
        explain: ExplainOption = False,
        output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
    ) -> None:
        fmt = output.chosen()
        from gradcli.commands import vectors

        run = getattr(vectors, name)
        show(run(expression_text(expression), values or [], data=data, vector=vector, wrt=wrt, explain=explain,
                 **settings(compute, checks, value_options)), fmt, quiet)


vector_product("vjp", texts.VJP)
vector_product("jvp", texts.JVP)


@command(texts.DIFF)
def diff(
    expression: ExprArgument,
    variables: VariablesArgument = None,
    order: OrderOption = 1,
    simplify: SimplifyOption = True,
    shape: ShapeOption = None,
    fmt: DiffFormatOption = DiffFormat.pretty,
    json_flag: JsonOption = False,
    plain_flag: PlainOption = False,
    latex_flag: LatexOption = False,
    quiet: QuietOption = False,
) -> None:
    shorthands = [name for name, given in (("--json", json_flag), ("--plain", plain_flag), ("--latex", latex_flag))
                  if given]
    if len(shorthands) > 1:
        raise GradcliError(f"{' and '.join(shorthands)} cannot be used together", hint="choose one output format")
    output = "json" if json_flag else "plain" if plain_flag else "latex" if latex_flag else fmt.value
    from gradcli import render
    from gradcli.commands.diff import diff as run

    report = run(expression_text(expression), variables or [], order=order, simplify=simplify, shapes=shape or [])
    render.render_diff(report, output, sys.stdout, quiet=quiet)


@command(texts.EVAL, name="eval")
def eval_command(
    expression: ExprArgument, values: ValuesArgument = None,
    compute: Compute = COMPUTE, value_options: ValueOptions = VALUE_OPTIONS,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
) -> None:
    fmt = output.chosen()
    from gradcli.commands.evaluate import evaluate as run

    show(run(expression_text(expression), values or [], data=data, **settings(compute, value_options)), fmt, quiet)


@command(texts.GRAPH)
def graph(
    expression: ExprArgument, values: ValuesArgument = None,
    wrt: WrtOption = None,
    compute: Compute = COMPUTE, value_options: ValueOptions = VALUE_OPTIONS,
    dot: DotOption = False,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
) -> None:
    fmt = "dot" if dot else output.chosen()
    from gradcli.commands.evaluate import graph as run

    show(run(expression_text(expression), values or [], data=data, wrt=wrt, **settings(compute, value_options)),
         fmt, quiet)


@command(texts.FUNCTIONS, expression=False, no_args_is_help=False)
def functions(name: FunctionNameArgument = None, fmt: FunctionsFormatOption = FunctionsFormat.table,
              json_flag: JsonOption = False) -> None:
    from gradcli.commands.functions import list_functions
    from gradcli.render.functions import render_functions

    render_functions(list_functions(name), "json" if json_flag else fmt.value, sys.stdout)


@command(texts.BATCH, expression=False, no_args_is_help=False)
def batch(source: BatchSourceArgument = "-", jobs: JobsOption = None, allow_files: AllowFilesOption = False) -> None:
    from typer.main import get_command

    from gradcli.cli.batch import run_batch

    run_batch(get_command(app), source, jobs, allow_files)


@command(texts.PLOT)
def plot(
    expression: ExprArgument, values: ValuesArgument = None,
    order: PlotOrderOption = 1,
    grid: GridOption = False,
    out: PlotOutOption = None,
    dpi: DpiOption = 150,
    fmt: PlotFormatOption = PlotFormat.auto,
    json_flag: JsonOption = False,
    compute: Compute = COMPUTE, checks: Checks = CHECKS,
    seed: SeedOption = None,
    max_elements: PlotMaxElementsOption = 1_000_000,
    quiet: QuietOption = False,
) -> None:
    from gradcli.render import plot as draw

    if not 1 <= dpi <= 1200:
        raise GradcliError(f"--dpi must be between 1 and 1200, not {dpi}")
    output = draw.choose_output("json" if json_flag else fmt.value, out, sys.stdout)
    draw.require(output, out, values)  # a missing plotting library is said before anything is computed
    from gradcli.commands.plot import plot_data

    data = plot_data(expression_text(expression), values or [], order=order, grid=grid, seed=seed,
                     max_elements=max_elements, **settings(compute, checks))
    draw.show(data, output, out, sys.stdout, sys.stderr, dpi=dpi, quiet=quiet)
    exits.verdict(data.status)


@command(texts.MINIMIZE)
def minimize(
    expression: ExprArgument, values: ValuesArgument = None,
    wrt: ParametersOption = None,
    lr: LrOption = 0.1,
    steps: StepsOption = 100,
    optimizer: OptimizerOption = Optimizer.sgd,
    momentum: MomentumOption = None,
    tol: TolOption = None,
    trace: TraceOption = None,
    trace_format: TraceFormatOption = None,
    plot_file: LossPlotOption = None,
    reduce: LossReduceOption = Reduce.sum,
    compute: Compute = COMPUTE, checks: Checks = CHECKS, value_options: ValueOptions = VALUE_OPTIONS,
    output: Output = OUTPUT, data: DataOption = None, quiet: QuietOption = False,
) -> None:
    streaming.minimize(expression, values or [], fmt=output.chosen(), trace=trace,
                       trace_format=trace_format.value if trace_format else None, plot_file=plot_file, quiet=quiet,
                       wrt=wrt, optimizer=optimizer.value, lr=lr, steps=steps, momentum=momentum, tol=tol,
                       reduce=reduce.value, data=data, **settings(compute, checks, value_options))


# --------------------------------------------------------------------------- gradcli server (warm mode)

app.add_typer(server_app, name="server")


@command(texts.SERVER_START, name="start", group=server_app, expression=False)
def server_start(idle: IdleOption = None) -> None:
    from gradcli.warm import control

    raise typer.Exit(control.start(idle))


@command(texts.SERVER_STOP, name="stop", group=server_app, expression=False)
def server_stop() -> None:
    from gradcli.warm import control

    raise typer.Exit(control.stop())


@command(texts.SERVER_STATUS, name="status", group=server_app, expression=False)
def server_status() -> None:
    from gradcli.warm import control

    raise typer.Exit(control.status())


def main() -> None:
    """The console script (and the warm server's child): run the app, leave with its status."""
    exits.console(app)
