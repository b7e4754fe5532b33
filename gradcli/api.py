"""The library API: each function runs the whole pipeline and returns a report.

    >>> import gradcli
    >>> report = gradcli.grad("2*x**2 + 5", {"x": 5})
    >>> report.variables[0].gradient.data
    20.0

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

import torch

from gradcli import __version__
from gradcli.autodiff import METHODS, gradient, torch_error
from gradcli.errors import GradcliError
from gradcli.limits import DEFAULT_MAX_ELEMENTS
from gradcli.lower import compile_components, make_tensor, resolve_device, resolve_dtype
from gradcli.parse import ParsedExpression, ValueSpec, parse_assignment, parse_expression, parse_value
from gradcli.report import GradReport, MethodResult, TensorData, VariableResult
from gradcli.verify import TOLERANCES, compare, symbolic_gradients

ValuesArg = Mapping[str, Any] | Sequence[str]


def tensor_data(t: torch.Tensor) -> TensorData:
    t = t.detach()
    return TensorData(t.to(device="cpu", dtype=torch.float64).tolist(), list(t.shape),
                      str(t.dtype).removeprefix("torch."))


def read_values(values: ValuesArg) -> dict[str, ValueSpec]:
    """{name: spec} from NAME=VALUE strings or from a mapping of names to values."""
    specs: dict[str, ValueSpec] = {}
    if isinstance(values, Mapping):
        items = []
        for name, v in values.items():
            items.append((name, v if isinstance(v, ValueSpec) else parse_value(v if isinstance(v, str) else repr(v))))
    else:
        items = [parse_assignment(a) for a in values]
    for name, spec in items:
        if name in specs:
            raise GradcliError(f"{name} is given a value twice")
        specs[name] = spec
    return specs


def _bind(parsed: ParsedExpression, specs: Mapping[str, ValueSpec]) -> None:
    """Every variable has a value, every value a variable, and every index fits its variable."""
    missing = [n for n in parsed.variables if n not in specs]
    if missing:
        example = " ".join(f"{n}=1" for n in missing)
        raise GradcliError(
            f"no value for {', '.join(missing)}", hint=f"give every variable a value, like: {example}"
        )
    extra = [n for n in specs if n not in parsed.variables]
    if extra:
        raise GradcliError(
            f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in the expression "
            f"(its variables: {', '.join(parsed.variables) or 'none'})",
            hint="remove the value, or check the spelling",
        )
    for var in parsed.variables.values():
        shape = specs[var.name].shape
        for index in var.indices:
            label = f"{var.name}[{','.join(map(str, index))}]"
            if len(index) > len(shape):
                what = "a scalar" if not shape else f"of shape {list(shape)}"
                raise GradcliError(f"{label} has {len(index)} indices, but {var.name} is {what}",
                                   span=var.span)
            for i, n in zip(index, shape):
                if not -n <= i < n:
                    raise GradcliError(f"{label} is out of range: {var.name} has shape {list(shape)}",
                                       span=var.span)


def _wrt(parsed: ParsedExpression, specs: Mapping[str, ValueSpec], wrt: str | Sequence[str] | None) -> list[str]:
    if wrt is None or wrt == "" or wrt == []:
        return list(specs)  # in the order the values were given: the order a script expects
    names = [w.strip() for w in (wrt.split(",") if isinstance(wrt, str) else wrt) if w.strip()]
    for n in names:
        if n not in parsed.variables:
            raise GradcliError(
                f"--wrt {n}: {n} is not a variable of the expression (its variables: {', '.join(parsed.variables)})"
            )
    if len(set(names)) != len(names):
        raise GradcliError("--wrt names a variable twice")
    return names


def grad(
    expression: str,
    values: ValuesArg,
    *,
    wrt: str | Sequence[str] | None = None,
    method: str = "grad",
    dtype: str = "float32",
    device: str = "auto",
    reduce: str = "sum",
    check: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> GradReport:
    """The gradient of `expression` at `values` by autograd, checked against sympy."""
    parsed = parse_expression(expression)
    specs = read_values(values)
    _bind(parsed, specs)
    names = _wrt(parsed, specs, wrt)
    if method not in METHODS + ("all",):
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(METHODS) + " or all")
    torch_dtype = resolve_dtype(dtype)
    torch_device, device_note = resolve_device(device)
    default_rtol, default_atol = TOLERANCES[dtype]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol

    used_seed = None
    generator = None
    if any(s.is_random for s in specs.values()):
        used_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        generator = torch.Generator().manual_seed(used_seed)
    tensors = {
        n: make_tensor(specs[n], dtype=torch_dtype, device=torch_device, generator=generator,
                       max_elements=max_elements, name=n)
        for n in parsed.variables
    }

    table = parsed.symbol_table()
    fn = compile_components(parsed.components, parsed.shape, table, dtype=torch_dtype, device=torch_device)
    methods = list(METHODS) if method == "all" else [method]
    results = [gradient(fn, tensors, names, method=m, reduction=reduce) for m in methods]
    main = results[0]

    warnings: list[str] = []
    reduction = None
    if main.output.dim() > 0:
        reduction = reduce
        warnings.append(
            f"f has shape {list(main.output.shape)}: its {reduce} was differentiated "
            f"(backward needs a scalar; --reduce chooses sum or mean)"
        )
    f_finite = bool(torch.isfinite(main.output).all())
    if not f_finite:
        warnings.append("f is not finite at this point: the point is outside the function's domain")

    try:
        symbolic = symbolic_gradients(parsed.components, parsed.shape, table, tensors, names, reduce) if check else {}
    except RuntimeError as exc:  # torch failing on the float64 reference: report, don't crash
        raise torch_error(exc) from None

    variables = []
    for n in names:
        g = main.gradients[n]
        if check:
            ref = symbolic[n]
            cmp = compare(g, ref, f_finite=f_finite, rtol=rtol, atol=atol)
            variables.append(VariableResult(
                n, tensor_data(tensors[n]), tensor_data(g), ref.formula,
                tensor_data(ref.value) if ref.value is not None else None,
                cmp.status, cmp.max_abs_error, cmp.max_rel_error, cmp.note,
            ))
        else:
            variables.append(VariableResult(n, tensor_data(tensors[n]), tensor_data(g), None, None, "skipped"))

    method_results = []
    if len(results) > 1:
        for r in results:
            agrees = all(
                torch.allclose(r.gradients[n].double().cpu(), main.gradients[n].double().cpu(),
                               rtol=rtol, atol=atol, equal_nan=True)
                for n in names
            )
            method_results.append(MethodResult(r.method, r.call, {n: tensor_data(r.gradients[n]) for n in names},
                                               agrees))

    return GradReport(
        expression=expression,
        parsed=parsed.pretty(),
        dtype=dtype,
        device=str(torch_device),
        device_note=device_note,
        method=method,
        call=" | ".join(r.call for r in results),
        f=tensor_data(main.output),
        reduction=reduction,
        differentiated=tensor_data(main.differentiated),
        variables=variables,
        constants={n: tensor_data(t) for n, t in tensors.items() if n not in names},
        checked=check,
        rtol=rtol,
        atol=atol,
        methods=method_results,
        seed=used_seed,
        warnings=warnings,
        version=__version__,
    )
