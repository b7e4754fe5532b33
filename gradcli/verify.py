"""The second route: sympy's symbolic derivative, evaluated in float64, compared with autograd.

Sympy knows scalars, not tensors. A variable is a scalar symbol used elementwise, `x[0]` is a
symbol of its own, and `sum(...)`/`mean(...)` are opaque functions. The gradient of sum(G)
with respect to a variable x is then assembled by the chain rule around the reductions:

    d sum(G)/dx = sum_to_shape_of_x( dG/dx )                      (x used elementwise)
                + sum(dG/dx[i]) at position i                      (x used as x[i])
                + sum(dG/dR) * d sum(H)/dx  [/ numel(H) for mean]  (each reduction R = sum(H))

where every dG/d... is `sympy.diff` with the reductions replaced by placeholder symbols, and
the last line recurses into H. Each derivative is lowered through the same table as f and
evaluated in float64 on the CPU, at the user's values rounded to the user's dtype, so the only
difference left to compare is arithmetic, never the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import sympy
import torch

from gradcli import mathfuncs
from gradcli.errors import GradcliError
from gradcli.lower import LoweringError, SymbolTable, compile_expression

F64 = torch.float64
CPU = torch.device("cpu")

# (rtol, atol) by the user's dtype. atol is scaled by the largest magnitude in the gradient:
# rounding errors are relative to the size of the numbers the computation went through.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (4e-2, 1e-2),
}


@dataclass
class SymbolicGradient:
    formula: str
    value: torch.Tensor | None  # float64 on the CPU; None when it could not be evaluated
    unavailable: str | None = None  # why not, when value is None


@dataclass
class Comparison:
    status: str  # ok | mismatch | domain | undefined | unavailable | skipped
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("mismatch", "domain")


def reference_env(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The user's values, as rounded to their dtype, in float64 on the CPU."""
    return {n: v.detach().to(device=CPU, dtype=F64) for n, v in values.items()}


def _sum_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Undo broadcasting, as autograd does: sum the dimensions that were expanded."""
    extra = t.dim() - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t.reshape(shape)


def _top_reductions(expr: sympy.Basic) -> list[sympy.Basic]:
    """Reductions in expr that are not inside another reduction, in a stable order."""
    found: list[sympy.Basic] = []

    def walk(node):
        if isinstance(node, mathfuncs.Reduction):
            if node not in found:
                found.append(node)
            return
        for a in node.args:
            walk(a)
    walk(expr)
    return found


@dataclass
class _Part:
    """A symbolic gradient under assembly: value, and a formula for people to read."""

    value: torch.Tensor
    whole: sympy.Expr = sympy.S.Zero  # the elementwise part
    elements: dict[tuple[int, ...], sympy.Expr] = field(default_factory=dict)  # x[i] parts


class SymbolicDifferentiator:
    """Symbolic gradients of sum(expression) with respect to each variable."""

    def __init__(self, table: SymbolTable, env: Mapping[str, torch.Tensor]):
        self.table = dict(table)
        self.env = dict(env)
        self._values: dict[sympy.Basic, torch.Tensor] = {}

    def evaluate(self, expr: sympy.Basic) -> torch.Tensor:
        if expr not in self._values:
            fn = compile_expression(expr, self.table, dtype=F64, device=CPU)
            self._values[expr] = fn(self.env)
        return self._values[expr]

    def gradient_of_sum(self, expr: sympy.Basic, var: str, shape: tuple[int, ...],
                        out_shape: tuple[int, ...] = ()) -> _Part:
        """d sum(expr broadcast to out_shape) / d var, a tensor of the var's shape."""
        whole_sym = next(s for s, (n, i) in self.table.items() if n == var and i is None)
        element_syms = {s: i for s, (n, i) in self.table.items() if n == var and i is not None}
        mine = {whole_sym, *element_syms}

        reductions = _top_reductions(expr)
        placeholders: dict[sympy.Basic, sympy.Symbol] = {}
        for k, r in enumerate(reductions):
            ph = sympy.Dummy(f"r{k}", real=True)
            key = f"\0{ph.dummy_index}"
            placeholders[r] = ph
            self.table[ph] = (key, None)
            self.env[key] = self.evaluate(r)
        flat = expr.xreplace(placeholders)
        back = {ph: r for r, ph in placeholders.items()}
        g_shape = torch.broadcast_shapes(tuple(self.evaluate(flat).shape), out_shape)
        scalar_g = g_shape == ()

        total = torch.zeros(shape, dtype=F64)
        part = _Part(total)
        free = flat.free_symbols
        if whole_sym in free:
            d = sympy.diff(flat, whole_sym)
            dv = self.evaluate(d)
            full = torch.broadcast_shapes(tuple(dv.shape), g_shape, shape)
            total += _sum_to(dv.expand(full), shape)
            part.whole += d.xreplace(back)
        for sym, index in element_syms.items():
            if sym in free:
                d = sympy.diff(flat, sym)
                dv = self.evaluate(d)
                total[_normalise(index, shape)] += dv.expand(torch.broadcast_shapes(tuple(dv.shape), g_shape)).sum()
                key = _normalise(index, shape)
                shown = d.xreplace(back) if scalar_g else mathfuncs.tsum(d.xreplace(back))
                part.elements[key] = part.elements.get(key, sympy.S.Zero) + shown
        for r, ph in placeholders.items():
            if not (r.free_symbols & mine) or ph not in free:
                continue
            d = sympy.diff(flat, ph)
            dv = self.evaluate(d)
            weight = dv.expand(torch.broadcast_shapes(tuple(dv.shape), g_shape)).sum()
            inner = self.gradient_of_sum(r.args[0], var, shape)
            scale = weight
            shown = d.xreplace(back) if scalar_g else mathfuncs.tsum(d.xreplace(back))
            if isinstance(r, mathfuncs.tmean):
                n = self.evaluate(r.args[0]).numel()
                scale = weight / n
                shown = shown / n
            total += scale * inner.value
            part.whole += shown * inner.whole
            for key, e in inner.elements.items():
                part.elements[key] = part.elements.get(key, sympy.S.Zero) + shown * e
        return part


def _normalise(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i + n if i < 0 else i for i, n in zip(index, shape))


def _show(expr: sympy.Expr) -> str:
    """A formula for people: floats to 6 digits (the value is computed from the exact one)."""
    floats = expr.atoms(sympy.Float)
    if floats:
        expr = expr.xreplace({f: sympy.Float(f, 6) for f in floats})
    return sympy.sstr(expr)


def _formula(part: _Part, var: str, shape: tuple[int, ...]) -> str:
    whole = _show(part.whole) if part.whole != 0 or not part.elements else None
    if not part.elements:
        return whole or "0"
    if whole is None and len(shape) == 1 and len(part.elements) == shape[0]:
        return "[" + ", ".join(_show(part.elements[(i,)]) for i in range(shape[0])) + "]"
    pieces = [f"{var}[{','.join(map(str, k))}]: {_show(e)}" for k, e in sorted(part.elements.items())]
    text = "; ".join(pieces)
    if len(part.elements) < (shape[0] if len(shape) == 1 else 0) or len(shape) != 1:
        text += "; other elements: 0" if whole is None else ""
    return (whole + " (elementwise); " + text) if whole else text


def symbolic_gradients(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       values: Mapping[str, torch.Tensor], wrt: list[str], reduction: str,
                       ) -> dict[str, SymbolicGradient]:
    """The symbolic gradient of the reduced output with respect to each variable in `wrt`."""
    env = reference_env(values)
    results: dict[str, SymbolicGradient] = {}
    for var in wrt:
        differ = SymbolicDifferentiator(table, env)
        var_shape = tuple(env[var].shape)
        try:
            parts_shapes = [tuple(differ.evaluate(c).shape) for c in components]
            common = torch.broadcast_shapes(*parts_shapes)
            total: _Part | None = None
            for c in components:
                p = differ.gradient_of_sum(c, var, var_shape, common)
                if total is None:
                    total = p
                else:
                    total.value = total.value + p.value
                    total.whole += p.whole
                    for k, e in p.elements.items():
                        total.elements[k] = total.elements.get(k, sympy.S.Zero) + e
            assert total is not None
            out_numel = (len(components) if shape is not None else 1) * _numel(common)
            if reduction == "mean" and out_numel > 1:
                total.value = total.value / out_numel
                total.whole = total.whole / out_numel
                total.elements = {k: e / out_numel for k, e in total.elements.items()}
            formula = _formula(total, var, var_shape)
            results[var] = SymbolicGradient(formula, total.value)
        except LoweringError as exc:
            results[var] = SymbolicGradient("?", None, f"sympy's derivative cannot be evaluated: {exc.message}")
        except GradcliError:
            raise
        except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
            results[var] = SymbolicGradient("?", None, f"the symbolic derivative failed: {exc}")
    return results


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def compare(autograd: torch.Tensor, reference: SymbolicGradient, *, f_finite: bool, rtol: float,
            atol: float) -> Comparison:
    """Does autograd's answer agree with the symbolic one, to the user dtype's tolerance?"""
    if reference.value is None:
        return Comparison("unavailable", note=reference.unavailable)
    a = autograd.detach().to(device=CPU, dtype=F64)
    r = reference.value.to(F64)
    if a.shape != r.shape:
        return Comparison("mismatch", note=f"shapes differ: autograd {list(a.shape)}, symbolic {list(r.shape)}")
    if not f_finite:
        return Comparison("domain", note="f is not finite here: the point is outside the function's domain")
    finite = torch.isfinite(a) & torch.isfinite(r)
    diff = (a - r).abs()
    scale = max(1.0, float(r[finite].abs().max()) if finite.any() else 1.0)
    tol = atol * scale + rtol * r.abs()
    close = finite & (diff <= tol)
    abs_err = float(diff[finite].max()) if finite.any() else None
    rel = diff[finite] / r[finite].abs().clamp_min(1e-300)
    rel_err = float(rel[r[finite] != 0].max()) if (finite & (r != 0)).any() else (0.0 if finite.any() else None)
    kink = torch.isnan(r) & torch.isfinite(a)
    if bool((close | kink).all()) and bool(kink.any()):
        return Comparison("undefined", abs_err, rel_err,
                          "the derivative does not exist at this point; autograd's value is a subgradient")
    if not bool((torch.isfinite(a) & torch.isfinite(r)).all()):
        return Comparison("domain", abs_err, rel_err, "the derivative is not finite at this point")
    if bool(close.all()):
        return Comparison("ok", abs_err, rel_err)
    return Comparison("mismatch", abs_err, rel_err, f"autograd and sympy differ by up to {abs_err:.3g}")
