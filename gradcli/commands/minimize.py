"""`gradcli minimize`: gradient descent on a typed loss, with torch.optim, checked against sympy.

The loss goes through the same pipeline as `gradcli grad` (gradcli/core/session.py's prepare: the
whitelist parser, NAME=VALUE and --data values, the lowering to torch); the variables named
by `wrt` become leaf tensors that a torch.optim optimizer moves, and every other variable
(a NAME=VALUE or a --data column) is a constant. The loop is the one seeds 001 and 002 write
by hand:

    optimizer.zero_grad(); loss = f(params); loss.backward(); optimizer.step()

and nothing more per step than reading the loss (to stop at once when it is no longer
finite) and keeping a copy of the last parameters where it was. The symbolic check (sympy's
derivative in float64, as `grad` does it) runs at the first and the last point only; the
gradient norm is computed each step only when --tol or a trace needs it.

Step k of the run means the point after k optimizer steps: step 0 is the start, and a run of
N steps evaluates the loss N + 1 times (the last one at the parameters it ends with).

No typer, no rich: the CLI passes a `progress` callback for its progress bar.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TextIO

import torch

from gradcli.commands.assemble import route_verdict, tensor_data
from gradcli.core.autodiff import torch_error
from gradcli.core.check import check_mode, uses_symbolic
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.core.numeric import gradient_probe
from gradcli.core.parse import index_text
from gradcli.core.reference import symbolic_gradients
from gradcli.core.session import (
    Session,
    float64_function,
    gc_paused,
    parse_cached,
    prepare,
)
from gradcli.core.values import ValuesArg, read_values
from gradcli.errors import GradcliError
from gradcli.outputs import atomic_output, refuse_same_file, value_files
from gradcli.report import MinimizeReport, Point, VariableResult, json_numbers
from gradcli.version import __version__

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop", "lbfgs")
DEFAULT_MOMENTUM = 0.9  # --optimizer momentum, as seed 002's logistic regression uses
MAX_STEPS = 10_000_000
TRACE_FORMATS = ("csv", "ndjson")
_TRACE_SUFFIXES = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}
_TORCH_NAMES = {"sgd": "SGD", "momentum": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                "lbfgs": "LBFGS"}
_TAKES_MOMENTUM = ("sgd", "momentum", "rmsprop")

Progress = Callable[[int, float], None]  # (step, loss), after each evaluation


def optimizer_settings(name: str, lr: float, momentum: float | None) -> dict[str, Any]:
    """The keyword arguments gradcli gives torch.optim's constructor for `name`.

    Only lr (and momentum where it applies) are set: everything else is torch's default, so
    `torch.optim.X(params, **optimizer_settings(...))` by hand is exactly what gradcli runs.
    """
    if name not in OPTIMIZERS:
        raise GradcliError(f"unknown optimizer '{name}'", hint="choose " + ", ".join(OPTIMIZERS))
    if not (math.isfinite(lr) and lr > 0):
        raise GradcliError(f"--lr must be a finite number > 0, not {lr}")
    if momentum is not None:
        if name not in _TAKES_MOMENTUM:
            raise GradcliError(f"--momentum does not apply to --optimizer {name}",
                               hint="momentum is for sgd, momentum and rmsprop")
        if not (math.isfinite(momentum) and 0 <= momentum < 1):
            raise GradcliError(f"--momentum must be at least 0 and below 1, not {momentum}")
    settings: dict[str, Any] = {"lr": lr}
    if name == "momentum":
        settings["momentum"] = DEFAULT_MOMENTUM if momentum is None else momentum
    elif momentum is not None:
        settings["momentum"] = momentum
    return settings


def make_optimizer(name: str, params: Sequence[torch.Tensor], settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    optimizer: torch.optim.Optimizer = getattr(torch.optim, _TORCH_NAMES[name])(list(params), **settings)
    return optimizer


def _call_text(name: str, wrt: Sequence[str], settings: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"torch.optim.{_TORCH_NAMES[name]}([{', '.join(wrt)}], {args})"


# --------------------------------------------------------------------------- the trace

def trace_format(path: str, fmt: str | None) -> str:
    """--trace-format, or the format the file name says (.csv, .ndjson/.jsonl); csv for '-'."""
    if fmt is not None:
        if fmt not in TRACE_FORMATS:
            raise GradcliError(f"unknown trace format '{fmt}'", hint="choose csv or ndjson")
        return fmt
    if path == "-":
        return "csv"
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _TRACE_SUFFIXES:
        raise GradcliError(f"--trace {path}: cannot tell the format from the file name",
                           hint="name it .csv or .ndjson, or give --trace-format csv|ndjson")
    return _TRACE_SUFFIXES[suffix]


class TraceWriter:
    """One record per step, written and flushed as the run goes, so `tail -f` shows it live.

    CSV: step, loss, gradient_norm, then one column per parameter element (θ, w[0], w[1]...);
    NDJSON: {"step", "loss", "gradient_norm", "parameters": {name: number or nested list}}.
    Numbers are float64 repr, exact for every dtype; JSON spells NaN and infinities as strings.
    """

    def __init__(self, out: TextIO, fmt: str, params: Mapping[str, torch.Tensor]):
        self.out, self.fmt = out, fmt
        if fmt == "csv":
            columns = ["step", "loss", "gradient_norm"]
            for name, p in params.items():
                if p.dim() == 0:
                    columns.append(name)
                else:
                    import itertools

                    columns += [f"{name}[{index_text(i)}]" for i in itertools.product(*(range(n) for n in p.shape))]
            import csv

            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(columns)
            out.flush()

    def write(self, step: int, loss: float, norm: float, params: Mapping[str, torch.Tensor]) -> None:
        values = {n: p.detach().to(device="cpu", dtype=torch.float64) for n, p in params.items()}
        if self.fmt == "csv":
            row: list[Any] = [step, repr(loss), repr(norm)]
            for v in values.values():
                row += [repr(x) for x in v.reshape(-1).tolist()]
            self._csv.writerow(row)
        else:
            record = {"step": step, "loss": json_numbers(loss), "gradient_norm": json_numbers(norm),
                      "parameters": {n: json_numbers(v.tolist()) for n, v in values.items()}}
            self.out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        self.out.flush()


# --------------------------------------------------------------------------- the loop

@dataclass
class Descent:
    """What the loop did; the parameters are left at the end point (see `end_*`)."""

    losses: list[float]
    steps_taken: int
    evaluations: int
    stopped: str  # steps | tol | diverged
    start_gradient: dict[str, torch.Tensor]
    start_norm: float
    end_loss: float
    end_norm: float
    end_gradient: dict[str, torch.Tensor]
    diverged_at: int | None = None


def _norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    norm: torch.Tensor  # torch.linalg's functions are untyped
    if len(grads) == 1:
        norm = torch.linalg.vector_norm(grads[0])
    else:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return norm


def descend(fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor], env: dict[str, torch.Tensor],
            params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, steps: int, *,
            tol: float | None = None, reduction: str = "sum", trace: TraceWriter | None = None,
            progress: Progress | None = None, lbfgs: bool = False) -> Descent:
    """Run up to `steps` optimizer steps on fn(env), whose `params` entries are leaf tensors.

    Stops early when the gradient norm falls below `tol` (before stepping), or at once when
    the loss is not finite; then the parameters are put back to the last point where it was.
    """
    leaves = list(params.values())
    reduce = torch.sum if reduction == "sum" else torch.mean
    last_finite = [p.detach().clone() for p in leaves]
    need_norm = tol is not None or trace is not None
    losses: list[float] = []
    evaluations = 0

    def evaluate() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        out = fn(env)
        loss = out if out.dim() == 0 else reduce(out)
        if loss.requires_grad:  # a loss that does not depend on the parameters leaves .grad None
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
        return loss

    def gradients() -> list[torch.Tensor]:
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in leaves]

    cached: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        # L-BFGS calls this first for the loss and gradient at the current point: the loop has
        # just computed them (and left them in .grad), so the first call returns that loss.
        if cached:
            return cached.pop()
        return evaluate()

    start_gradient: dict[str, torch.Tensor] = {}
    start_norm = math.nan
    stopped, diverged_at = "steps", None
    step = 0
    norm = math.nan
    while True:
        loss_tensor = evaluate()
        loss = loss_tensor.item()
        losses.append(loss)
        finite = math.isfinite(loss)
        if need_norm or step == 0:
            norm = _norm(gradients()).item()
        if step == 0:
            start_gradient = {n: g.detach().clone() for n, g in zip(params, gradients(), strict=True)}
            start_norm = norm
        if trace is not None:
            trace.write(step, loss, norm, params)
        if progress is not None:
            progress(step, loss)
        if not finite:
            stopped, diverged_at = "diverged", step
            break
        if tol is not None and norm < tol:
            stopped = "tol"
            break
        if step == steps:
            break
        for saved, p in zip(last_finite, leaves, strict=True):
            saved.copy_(p.detach())
        if lbfgs:
            cached.append(loss_tensor)
            # L-BFGS's closure returns the loss tensor (torch's docs); the stub says float
            optimizer.step(closure)  # type: ignore[arg-type]
            cached.clear()
        else:
            optimizer.step()
        step += 1
    steps_taken = step
    if stopped == "diverged":
        if step == 0:  # the start itself: nothing finite to go back to
            grads = gradients()
            return Descent(losses, 0, evaluations, stopped, start_gradient, start_norm, loss,
                           _norm(grads).item(), {n: g.detach().clone() for n, g in zip(params, grads, strict=True)}, 0)
        with torch.no_grad():
            for saved, p in zip(last_finite, leaves, strict=True):
                p.copy_(saved)
        end_loss = evaluate().item()  # the point before, again: its loss and gradient
        evaluations -= 1  # a look back, not part of the run
    else:
        end_loss = loss
    grads = gradients()
    end_norm = _norm(grads).item() if (stopped == "diverged" or not need_norm) else norm
    return Descent(losses, steps_taken, evaluations, stopped, start_gradient, start_norm, end_loss, end_norm,
                   {n: g.detach().clone() for n, g in zip(params, grads, strict=True)}, diverged_at)


# --------------------------------------------------------------------------- the command

def _data_columns(data: str | None) -> list[str] | None:
    """The column names of a --data file, from its header line; None for standard input (it can
    be read only once: prepare reads it) or a file that cannot be read (prepare says why)."""
    if data is None or data == "-":
        return None
    import csv

    try:
        with open(data, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return None
    return [h.strip() for h in header]


def _default_wrt(values: ValuesArg, named: Mapping[str, Any]) -> list[str]:
    """The variables given as NAME=VALUE (not --data columns, nor a matrix of them stacked by
    X=stack([x1, x2], dim=1)): the parameters, by default."""
    return [n for n, spec in read_values(values, named).items() if spec.kind != "stack"]


@gc_paused
def minimize(expression: str, values: ValuesArg = (), *, wrt: str | Sequence[str] | None = None,
             optimizer: str = "sgd", lr: float = 0.1, steps: int = 100, momentum: float | None = None,
             tol: float | None = None, reduce: str = "sum", data: str | None = None, dtype: str = "float32",
             device: str = "auto", check: bool | str = True, rtol: float | None = None, atol: float | None = None,
             seed: int | None = None, max_elements: int = DEFAULT_MAX_ELEMENTS, trace: str | TextIO | None = None,
             trace_format_name: str | None = None, progress: Progress | None = None,
             trace_note: Callable[[str], None] | None = None, **named: Any) -> MinimizeReport:
    """Minimise the loss `expression` over the `wrt` variables with a torch.optim optimizer.

    `trace` is a path or an open text file: one record per step is written there (CSV or
    NDJSON, `trace_format_name` or by the file name) and flushed as the run goes. A path is
    written whole or not at all: the records stream into a temporary file beside it (its name
    is given to `trace_note`, for `tail -f`), renamed to `trace` when the run ends.
    """
    if not 0 <= steps <= MAX_STEPS:
        raise GradcliError(f"--steps must be between 0 and {MAX_STEPS:,}, not {steps}")
    if tol is not None and not (math.isfinite(tol) and tol >= 0):
        raise GradcliError(f"--tol must be a finite number >= 0, not {tol}")
    if reduce not in ("sum", "mean"):
        raise GradcliError(f"unknown reduction '{reduce}'", hint="choose sum or mean")
    settings = optimizer_settings(optimizer, lr, momentum)
    # An output is never an input: said before --data or an @file is read.
    if isinstance(trace, str):
        refuse_same_file([("--trace", trace)],
                         [*([(f"--data {data}", data)] if data is not None else []), *value_files(values, named)])
    given = _default_wrt(values, named)
    named = dict(named)
    started_at_zero: list[str] = []
    if wrt is None:
        wrt = given
        if not wrt:
            raise GradcliError("no parameter to move: every variable is a --data column" if data is not None
                               else "no parameter to move: give each parameter a start value",
                               hint="name the parameters with --wrt and give each a start, like w=0")
    else:
        # seed-cases.md spells the line fit without start values (--wrt w,b): a parameter
        # given no value starts at 0, as seed 002's b = torch.zeros(1) does, and the output says so.
        columns = _data_columns(data)
        stacked = {n for n, spec in read_values(values, named).items() if spec.kind == "stack"}
        variables = parse_cached(expression).variables
        for name in (w.strip() for w in (wrt.split(",") if isinstance(wrt, str) else wrt)):
            if name in given or name not in variables:
                continue  # prepare names a --wrt that is not a variable
            if name in stacked:
                raise GradcliError(f"--wrt {name}: {name} is stacked from --data columns, and data are constants",
                                   hint="a parameter needs a start value of its own, like w=0")
            if columns is not None and name in columns:
                raise GradcliError(f"--wrt {name}: {name} is a column of {data}, and data are constants",
                                   hint="a parameter needs a start value of its own, like w=0, and a name "
                                        "that is not a column")
            if columns is not None or data is None:
                named[name] = "0"
                started_at_zero.append(name)
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    # An open stream (the CLI's standard output for --trace -) is named "-".
    trace_path = None if trace is None else trace if isinstance(trace, str) else "-"
    trace_fmt = trace_format(trace_path, trace_format_name) if trace_path is not None else None

    params = {n: st.tensors[n].detach().clone().requires_grad_(True) for n in st.wrt}
    env = {n: t.detach() for n, t in st.tensors.items()}
    env.update(params)
    opt = make_optimizer(optimizer, list(params.values()), settings)
    warnings = list(st.notes)
    if started_at_zero:
        warnings.append(f"{', '.join(started_at_zero)} {'starts' if len(started_at_zero) == 1 else 'start'} "
                        "at 0 (no value given)")
    out_shape = _output_shape(st)
    reduction = None
    if out_shape:
        reduction = reduce
        warnings.append(f"the loss has shape {list(out_shape)}: its {reduce} is minimised")

    with ExitStack() as files:
        writer = None
        if trace is not None:
            if isinstance(trace, str):
                # Streamed (flushed each step) into a temporary file beside the destination, which
                # becomes `trace` only when the run ends without an error: a failed or interrupted
                # run leaves the old file as it was.
                stream: TextIO = files.enter_context(atomic_output(trace, "w", announce=trace_note))
            else:
                stream = trace
            assert trace_fmt is not None  # set whenever trace is
            writer = TraceWriter(stream, trace_fmt, params)
        try:
            run = descend(st.fn, env, params, opt, steps, tol=tol, reduction=reduce, trace=writer,
                          progress=progress, lbfgs=optimizer == "lbfgs")
        except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
            raise torch_error(exc) from None

    end_values = {n: p.detach() for n, p in params.items()}
    checks: dict[str, list[VariableResult]] = {}
    mode = check_mode(check)
    if mode != "none":
        checks["start"] = _checks(st, {n: st.tensors[n] for n in st.wrt}, run.start_gradient, run.losses[0], reduce,
                                  mode)
        checks["end"] = _checks(st, end_values, run.end_gradient, run.end_loss, reduce, mode)

    hint = None
    if run.stopped == "diverged":
        assert run.diverged_at is not None  # descend sets it when it stops for divergence
        what = "NaN" if math.isnan(run.losses[-1]) else "infinite"
        if run.diverged_at == 0:
            text = f"the loss is {what} at the start: outside its domain, or beyond what {st.dtype} can hold"
            hint = "start somewhere else"
        elif not math.isfinite(run.start_norm):
            # sqrt(x) at 0: the first step itself went to infinity, whatever the learning rate
            text = (f"the loss became {what} at step {run.diverged_at}: the gradient at the start is not finite; "
                    f"the parameters are the last finite ones, from step {run.diverged_at - 1}")
            hint = "start where the gradient is finite (the edge of the domain?)"
        else:
            text = (f"the loss became {what} at step {run.diverged_at}; the parameters are the last finite ones, "
                    f"from step {run.diverged_at - 1}")
            hint = (f"is the learning rate too large? try --lr {lr / 10:g}" if optimizer != "lbfgs"
                    else "is the learning rate too large? try a smaller --lr, or --optimizer adam")
    elif run.stopped == "tol":
        text = f"the gradient norm fell below --tol {tol:g} at step {run.steps_taken}"
    else:
        text = f"--steps {steps} reached"
    if run.stopped != "diverged" and run.end_loss > 10 * abs(run.losses[0]) + 1:
        # Still finite, but far from a minimum: the run is diverging, slowly enough to go unnoticed.
        warnings.append(f"the loss grew from {run.losses[0]:.6g} to {run.end_loss:.6g}: the run is moving away from "
                        f"a minimum (is the learning rate too large? try --lr {lr / 10:g})")
    end_step = run.steps_taken - 1 if run.stopped == "diverged" and run.steps_taken else run.steps_taken
    names = list(params)
    start = Point(0, run.losses[0], run.start_norm, {n: tensor_data(st.tensors[n]) for n in names},
                  {n: tensor_data(run.start_gradient[n]) for n in names})
    end = Point(end_step, run.end_loss, run.end_norm, {n: tensor_data(end_values[n]) for n in names},
                {n: tensor_data(run.end_gradient[n]) for n in names})
    return MinimizeReport(
        expression=st.expression, parsed=st.parsed.pretty(), dtype=st.dtype, device=str(st.device),
        device_note=st.device_note, optimizer=optimizer, call=_call_text(optimizer, names, settings),
        hyperparameters=dict(settings), wrt=names,
        constants={n: tensor_data(t) for n, t in st.tensors.items() if n not in params}, reduction=reduction,
        start=start, end=end, steps_requested=steps, steps_taken=run.steps_taken, evaluations=run.evaluations,
        stopped=run.stopped, stop_text=text, losses=run.losses, checks=checks, checked=mode != "none", rtol=st.rtol,
        atol=st.atol, tol=tol, diverged_at=run.diverged_at, hint=hint,
        trace={"path": trace_path, "format": trace_fmt} if trace_path is not None and trace_fmt is not None else None,
        seed=st.seed, warnings=warnings, version=__version__,
    )


def _output_shape(st: Session) -> tuple[int, ...]:
    """The loss's shape, from one evaluation without a graph."""
    with torch.no_grad():
        try:
            return tuple(st.fn(st.tensors).shape)
        except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
            raise torch_error(exc) from None


def _checks(st: Session, point: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], loss: float,
            reduce: str, mode: str = "auto") -> list[VariableResult]:
    """Autograd's gradient at one point of the descent, checked by the routes --check asks for
    (core/check.py's arbitrate: the same rule as `gradcli grad`)."""
    values = dict(st.tensors)
    values.update(point)
    try:
        refs = (symbolic_gradients(st.parsed.components, st.parsed.shape, st.table, values, st.wrt, reduce)
                if uses_symbolic(mode) else {})
    except RuntimeError as exc:
        raise torch_error(exc) from None
    results = []
    for n in st.wrt:
        ref = refs.get(n)
        probe = functools.partial(gradient_probe, float64_function(st), values, n, reduction=reduce)
        verdict = route_verdict(st, values, grads[n], ref, f_finite=math.isfinite(loss), mode=mode, probe=probe)
        results.append(VariableResult(n, tensor_data(point[n]), tensor_data(grads[n]),
                                      ref.formula if ref is not None else None,
                                      tensor_data(ref.value) if ref is not None and ref.value is not None else None,
                                      verdict.status, verdict.max_abs_error, verdict.max_rel_error, verdict.note,
                                      routes=verdict.routes, erred=verdict.erred))
    return results
