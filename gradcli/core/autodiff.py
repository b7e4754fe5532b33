"""Gradients by PyTorch's autograd, three ways, each on fresh leaves.

Every method builds its own leaf tensors, so gradients never accumulate across methods
(the seeds' warning: `.grad` adds up unless zeroed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch

from gradcli.core.limits import WORK_FACTOR, size_text
from gradcli.errors import GradcliError

METHODS = ("grad", "backward", "jacobian")
REDUCTIONS = ("sum", "mean")

Function = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
_T = TypeVar("_T")


@dataclass
class Gradient:
    """What one autograd method produced."""

    method: str
    call: str  # the torch call, as a reader would write it
    output: torch.Tensor  # f, before any reduction (detached)
    differentiated: torch.Tensor  # the scalar that was differentiated (detached)
    gradients: dict[str, torch.Tensor]


def _reduce(out: torch.Tensor, reduction: str) -> torch.Tensor:
    if out.dim() == 0:
        return out
    return out.sum() if reduction == "sum" else out.mean()


def _leaves(values: Mapping[str, torch.Tensor], wrt: list[str]) -> dict[str, torch.Tensor]:
    # detach() is already a new leaf (sharing the storage, which autograd only reads); a clone
    # copied every variable on every call: 2x the hand-written time of sum((A @ x - b)**2) at
    # n = 1000 (benchmarks/tensor_algebra.py).
    return {n: values[n].detach().requires_grad_(True) for n in wrt}


def _env(values: Mapping[str, torch.Tensor], leaves: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    env = {n: v.detach() for n, v in values.items()}
    env.update(leaves)
    return env


def _by_grad(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], reduction: str) -> Gradient:
    leaves = _leaves(values, wrt)
    out = fn(_env(values, leaves))
    scalar = _reduce(out, reduction)
    tensors = list(leaves.values())
    grads: Sequence[torch.Tensor]
    if scalar.requires_grad:
        grads = torch.autograd.grad(scalar, tensors, allow_unused=True, materialize_grads=True)
    else:  # f does not depend on any variable (x - x): every gradient is zero
        grads = [torch.zeros_like(t) for t in tensors]
    return Gradient("grad", f"torch.autograd.grad(f, [{', '.join(wrt)}])", out.detach(), scalar.detach(),
                    # strict=False: one leaf per name, so a wrt that repeats a name has more entries
                    dict(zip(wrt, (g.detach() for g in grads), strict=False)))


def _by_backward(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], reduction: str) -> Gradient:
    leaves = _leaves(values, wrt)
    out = fn(_env(values, leaves))
    scalar = _reduce(out, reduction)
    if scalar.requires_grad:
        scalar.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).detach() for n, t in leaves.items()}
    return Gradient("backward", "f.backward(); " + ", ".join(f"{n}.grad" for n in wrt), out.detach(),
                    scalar.detach(), grads)


def _by_jacobian(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], reduction: str) -> Gradient:
    leaves = _leaves(values, wrt)
    captured: dict[str, torch.Tensor] = {}

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        out = fn(_env(values, dict(zip(wrt, tensors, strict=False))))  # the leaves: one per name
        captured["out"] = out
        return _reduce(out, reduction)

    # torch leaves autograd.functional unannotated
    jac = torch.autograd.functional.jacobian(f, tuple(leaves.values()))  # type: ignore[no-untyped-call]
    out = captured["out"]
    return Gradient("jacobian", f"torch.autograd.functional.jacobian(f, ({', '.join(wrt)},))", out.detach(),
                    _reduce(out, reduction).detach(), dict(zip(wrt, (j.detach() for j in jac), strict=False)))


_BY_METHOD = {"grad": _by_grad, "backward": _by_backward, "jacobian": _by_jacobian}


def gradient(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], *, method: str,
             reduction: str = "sum") -> Gradient:
    """The gradient of fn (reduced to a scalar if it is not one) with respect to `wrt`."""
    if method not in _BY_METHOD:
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(METHODS) + " or all")
    if reduction not in REDUCTIONS:
        raise GradcliError(f"unknown reduction '{reduction}'", hint="choose sum or mean")
    try:
        return _BY_METHOD[method](fn, values, wrt, reduction)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None


def torch_error(exc: BaseException) -> GradcliError:
    """A torch failure on user input, as a one-line error with a hint where one helps."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = None
    if ("not implemented for" in message or "Low precision dtypes not supported" in message) and (
            "Half" in message or "BFloat16" in message):
        hint = "this function has no kernel for that dtype on this device: try --dtype float32"
    elif "out of memory" in message.lower():
        hint = "use smaller values, or --device cpu"
    return GradcliError(f"torch could not compute this: {message}", hint=hint)


# --------------------------------------------------------------------------- Jacobians and beyond

JACOBIAN_METHODS = ("loop", "autograd", "rev", "fwd")


@dataclass
class Derivative:
    """A derivative other than a plain gradient: what was computed and by which call."""

    method: str
    call: str
    output: torch.Tensor  # f (detached)
    results: dict[str, torch.Tensor]


def _guard(run: Callable[[], _T]) -> _T:
    try:
        return run()
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None


def pick_jacobian_method(out_numel: int, in_numel: int) -> str:
    """Reverse mode costs one pass per output, forward mode one per input: take the fewer."""
    return "fwd" if in_numel < out_numel else "rev"


def jacobian(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], *, method: str) -> Derivative:
    """d f / d each wrt variable, each of shape f.shape + variable.shape."""
    if method not in JACOBIAN_METHODS:
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(JACOBIAN_METHODS))

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        return fn(_env(values, dict(zip(wrt, tensors, strict=True))))

    inputs = tuple(values[n].detach() for n in wrt)
    names = ", ".join(wrt)

    def run() -> Derivative:
        if method == "loop":
            # The seeds' way: one backward per output element, retain_graph between them.
            leaves = _leaves(values, wrt)
            out = fn(_env(values, leaves))
            flat = out.reshape(-1)
            rows: dict[str, list[torch.Tensor]] = {n: [] for n in wrt}
            for i in range(flat.numel()):
                for t in leaves.values():
                    t.grad = None  # gradients accumulate unless zeroed
                if flat[i].requires_grad:
                    flat[i].backward(retain_graph=True)  # type: ignore[no-untyped-call]  # unannotated in torch
                for n, t in leaves.items():
                    rows[n].append(t.grad.clone() if t.grad is not None else torch.zeros_like(t))
            results = {n: torch.stack(r).reshape(out.shape + leaves[n].shape) for n, r in rows.items()}
            return Derivative("loop", "for i: y[i].backward(retain_graph=True); J[i] = x.grad; x.grad.zero_()",
                              out.detach(), results)
        out = f(*inputs).detach()
        if method == "autograd":
            jac = torch.autograd.functional.jacobian(f, inputs, vectorize=True)  # type: ignore[no-untyped-call]
            call = f"torch.autograd.functional.jacobian(f, ({names},), vectorize=True)"
        else:
            from torch import func

            transform = func.jacrev if method == "rev" else func.jacfwd
            jac = transform(f, argnums=tuple(range(len(inputs))))(*inputs)
            call = f"torch.func.{transform.__name__}(f, argnums={tuple(range(len(inputs)))})({names})"
        return Derivative(method, call, out, {n: j.detach() for n, j in zip(wrt, jac, strict=True)})
    return _guard(run)


def forward_nodes(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str]) -> int:
    """The number of autograd nodes in f's graph: a dense Jacobian's vectorised pass keeps about
    one Jacobian-sized tensor for each (measured: x*2 at x=ones(7000), 49 million entries, 8.9 GB)."""
    with torch.enable_grad():
        return graph_nodes(fn(_env(values, _leaves(values, wrt))))


def diagonal_jacobian(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str]) -> Derivative:
    """The Jacobian of an f of each wrt variable's shape and elementwise in it: diagonal, so one
    backward of f.sum() gives the diagonal, laid out as the f.shape + variable.shape matrix. The
    dense passes (jacrev and jacfwd vectorise one pass per row or column) would take n times the
    memory and time: minutes and 9 GB for x*2 at x=ones(7000)."""

    def run() -> Derivative:
        leaves = _leaves(values, wrt)
        out = fn(_env(values, leaves))
        tensors = list(leaves.values())
        grads: Sequence[torch.Tensor]
        if out.requires_grad:
            grads = torch.autograd.grad(out.sum(), tensors, allow_unused=True, materialize_grads=True)
        else:
            grads = [torch.zeros_like(t) for t in tensors]
        results = {}
        for n, g in zip(wrt, grads, strict=True):
            k = g.numel()
            dense = torch.zeros(k * k, dtype=g.dtype, device=g.device)
            dense[:: k + 1] = g.detach().reshape(-1)
            results[n] = dense.reshape(tuple(out.shape) + tuple(g.shape))
        return Derivative("diagonal", f"torch.autograd.grad(f.sum(), [{', '.join(wrt)}]) is the diagonal "
                          "(f is elementwise): J = diag(it)", out.detach(), results)
    return _guard(run)


def hessian(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], *, reduction: str) -> Derivative:
    """The Hessian of f (reduced to a scalar) over every element of the wrt variables, flattened."""
    shapes = [tuple(values[n].shape) for n in wrt]
    sizes = [values[n].numel() for n in wrt]

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        return _reduce(fn(_env(values, {n: p.reshape(s) for n, p, s in zip(wrt, parts, shapes, strict=True)})),
                       reduction)

    def run() -> Derivative:
        flat = torch.cat([values[n].detach().reshape(-1) for n in wrt])
        out = fn(_env(values, {})).detach()
        hess = torch.autograd.functional.hessian(f, flat)  # type: ignore[no-untyped-call]  # unannotated in torch
        return Derivative("hessian", "torch.autograd.functional.hessian(f, x)", out, {"hessian": hess.detach()})
    return _guard(run)


# An --order run's autograd graph node holds about two tensors of x's size and its own objects,
# about 800 bytes (measured: 3.8 GB for 4.8 million nodes), counted as 200 float32 elements.
NODE_BYTES = 800
NODE_OVERHEAD_ELEMENTS = NODE_BYTES // 4
NODE_SECONDS = 9e-6  # building one node of the next order's graph (measured: exp(sin(x)), order 13)
# Below this many nodes a graph costs nothing worth refusing, and its growth factor is no guide
# yet (x*exp(x) adds 3 nodes an order: a factor of 1.5 at first, 1.03 by 1,000 nodes).
ESTIMATE_FROM_NODES = 1000


def graph_nodes(t: torch.Tensor) -> int:
    """The number of autograd nodes t's graph holds (each counted once)."""
    seen: set[int] = set()
    stack = [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(child for child, _ in node.next_functions)
    return len(seen)


def nth_derivatives(fn: Function, values: Mapping[str, torch.Tensor], var: str, order: int, *,
                    reduction: str, max_work: int | None = None) -> Derivative:
    """d^k f / d var^k for k = 1..order, by repeated torch.autograd.grad(..., create_graph=True).

    Each order differentiates the graph of the one before, so the graph grows by a factor per
    order (about 2.8 for exp(sin(x)): 620,000 nodes at order 13); with max_work (elements), the
    last order's graph is estimated from that factor before it is built, and refused over it.
    """

    def run() -> Derivative:
        leaves = _leaves(values, [var])
        x = leaves[var]
        out = fn(_env(values, leaves))
        current = _reduce(out, reduction)
        nodes = graph_nodes(current)
        results = {}
        for k in range(1, order + 1):
            if current.requires_grad:
                (current,) = torch.autograd.grad(current.sum(), x, create_graph=True, allow_unused=True,
                                                 materialize_grads=True)
            else:  # an earlier derivative was constant: every later one is zero
                current = torch.zeros_like(x)
            results[str(k)] = current.detach()
            if max_work is not None and k < order and current.requires_grad:
                grown = graph_nodes(current)
                factor, nodes = max(1.0, grown / max(nodes, 1)), grown
                if nodes >= ESTIMATE_FROM_NODES:
                    _refuse_order(order, k, nodes, factor, x, max_work)
        return Derivative("grad", f"d_k = torch.autograd.grad(d_(k-1).sum(), {var}, create_graph=True), k = 1..{order}",
                          out.detach(), results)
    return _guard(run)


def _refuse_order(order: int, k: int, nodes: int, factor: float, x: torch.Tensor, max_work: int) -> None:
    """Refuse --order when the graph of its last order, grown by `factor` an order from order k's
    `nodes`, would hold more than max_work elements' worth."""
    per_node = 2 * x.numel() + NODE_OVERHEAD_ELEMENTS

    def predicted(j: int) -> float:
        return nodes * factor ** (j - k)
    if predicted(order) * per_node <= max_work:
        return
    fits = k
    while fits < order and predicted(fits + 1) * per_node <= max_work:
        fits += 1
    final = predicted(order)
    size = final * (2 * x.numel() * x.element_size() + NODE_BYTES)
    seconds = sum(predicted(j) for j in range(k + 1, order + 1)) * NODE_SECONDS * max(1, x.numel() // 1000)
    def count(n: float) -> str:
        return f"{n:,.0f}" if n < 1e12 else f"{n:.1e}"
    raise GradcliError(
        f"--order {order}: its autograd graph grows {factor:.1f} times an order ({nodes:,} nodes at order {k}); "
        f"order {order}'s would have about {count(final)} nodes, about {count(final * per_node)} elements' worth "
        f"({size_text(size)}, {count(seconds)} s or more); the limit is {max_work:,} "
        f"({WORK_FACTOR} x --max-elements)",
        hint=f"orders up to {fits} fit; --max-elements raises the limit")


def vjp(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], v: torch.Tensor) -> Derivative:
    """vᵀ·J for each wrt variable: f.backward(v), as the seeds do."""

    def run() -> Derivative:
        leaves = _leaves(values, wrt)
        out = fn(_env(values, leaves))
        if tuple(v.shape) != tuple(out.shape):
            raise GradcliError(
                f"v has shape {list(v.shape)} but f has shape {list(out.shape)}: they must match",
                hint=f"give v the shape of f, e.g. v=ones({', '.join(map(str, out.shape)) or ''})",
            )
        if out.requires_grad:
            out.backward(v)  # type: ignore[no-untyped-call]  # unannotated in torch
        results = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).detach() for n, t in leaves.items()}
        return Derivative("backward", "f.backward(v); " + ", ".join(f"{n}.grad" for n in wrt), out.detach(), results)
    return _guard(run)


def jvp(fn: Function, values: Mapping[str, torch.Tensor], var: str, u: torch.Tensor) -> Derivative:
    """J·u along the variable var: forward mode, torch.func.jvp."""
    from torch import func

    x = values[var].detach()
    if tuple(u.shape) != tuple(x.shape):
        raise GradcliError(
            f"v has shape {list(u.shape)} but {var} has shape {list(x.shape)}: they must match",
            hint=f"a jvp direction has the shape of the input {var}",
        )

    def f(t: torch.Tensor) -> torch.Tensor:
        return fn(_env(values, {var: t}))

    def run() -> Derivative:
        # without has_aux, jvp returns (output, tangent); torch annotates the has_aux form too
        out, tangent = cast("tuple[torch.Tensor, torch.Tensor]", func.jvp(f, (x,), (u.to(x.dtype),)))
        return Derivative("fwd", f"torch.func.jvp(f, ({var},), (v,))", out.detach(), {var: tangent.detach()})
    return _guard(run)


# --------------------------------------------------------------------------- showing the working

@dataclass
class GraphNode:
    """One node of the autograd graph, as plain data."""

    id: int
    kind: str  # the grad_fn class name (MulBackward0, AccumulateGrad, ...)
    label: str | None  # the subexpression whose result this node produced, or the leaf's name
    leaf: dict[str, Any] | None = None  # for AccumulateGrad: name, shape, is_leaf, requires_grad, grad
    children: list[int] | None = None


def autograd_graph(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str],
                   trace: list[tuple[Any, torch.Tensor | float | int]], describe: Callable[[Any], str],
                   ) -> tuple[list[GraphNode], int | None, torch.Tensor, list[dict[str, Any]]]:
    """Build f on fresh leaves, call backward, and walk f.grad_fn down next_functions.

    `trace` is filled by the lowering with (sympy node, tensor) for every intermediate result;
    `describe` turns a sympy node into text. Returns the nodes, the root's id, f, and the
    intermediate tensors as the seed prints them (is_leaf, requires_grad, grad, grad_fn).
    """
    leaves = _leaves(values, wrt)
    trace.clear()
    out = fn(_env(values, leaves))
    labels: dict[int, str] = {}
    intermediates: list[dict[str, Any]] = []
    for node, tensor in trace:
        if isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
            labels.setdefault(id(tensor.grad_fn), describe(node))
            intermediates.append({"expression": describe(node), "shape": list(tensor.shape), "is_leaf": tensor.is_leaf,
                                  "requires_grad": tensor.requires_grad, "grad_fn": type(tensor.grad_fn).__name__,
                                  "grad": None})
    if out.requires_grad:
        _reduce(out, "sum").backward()  # type: ignore[no-untyped-call]  # unannotated in torch
    names = {id(t): n for n, t in leaves.items()}
    nodes: list[GraphNode] = []
    ids: dict[int, int] = {}

    def node_for(fnode: Any) -> tuple[int, bool]:  # a grad_fn: torch has no public type for it
        """The id of fnode's GraphNode, and whether it is new."""
        key = id(fnode)
        if key in ids:
            return ids[key], False
        ids[key] = len(nodes)
        node = GraphNode(ids[key], type(fnode).__name__, labels.get(key), children=[])
        variable = getattr(fnode, "variable", None)  # AccumulateGrad holds its leaf
        if variable is not None:
            node.label = names.get(id(variable), "?")
            node.leaf = {"name": node.label, "shape": list(variable.shape), "is_leaf": variable.is_leaf,
                         "requires_grad": variable.requires_grad,
                         "grad": variable.grad.detach().double().cpu().tolist() if variable.grad is not None else None}
        nodes.append(node)
        return ids[key], True

    def visit(fnode: Any) -> int:
        root, _ = node_for(fnode)
        stack = [fnode]
        # Iterative, so a long chain of operations cannot exhaust the recursion limit.
        while stack:
            current = stack.pop()
            parent = nodes[ids[id(current)]]
            assert parent.children is not None  # node_for gives every node a list
            for child, _ in getattr(current, "next_functions", ()):
                if child is None:
                    continue
                child_id, new = node_for(child)
                parent.children.append(child_id)
                if new:
                    stack.append(child)
        return root

    root = visit(out.grad_fn) if out.grad_fn is not None else None
    return nodes, root, out.detach(), intermediates


def accumulate(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], times: int, *,
               reduction: str) -> list[dict[str, torch.Tensor]]:
    """Call backward `times` times on the same leaves without zeroing: .grad after each call."""
    leaves = _leaves(values, wrt)
    history = []
    for _ in range(times):
        out = _reduce(fn(_env(values, leaves)), reduction)
        if out.requires_grad:
            out.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        history.append({n: (t.grad.clone() if t.grad is not None else torch.zeros_like(t)) for n, t in leaves.items()})
    return history


# --------------------------------------------------------------------------- why f is not finite

# Where the typed computation has a numerically stable form torch offers: (pattern, advice).
_DTYPE_TEXT = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
               torch.float64: "float64"}


def _stable_forms(expr: Any) -> list[str]:
    """Stable rewrites for the patterns in the typed tree (log(1 + exp(x)) -> softplus(x), ...)."""
    import sympy

    from gradcli.core import sympy_functions as sf

    found: list[str] = []

    def add(text: str) -> None:
        if text not in found:
            found.append(text)
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.log):
            (arg,) = node.args[:1]
            if isinstance(arg, sympy.exp):
                add(f"log(exp({arg.args[0]})) is {arg.args[0]}: write it without log and exp")
            elif isinstance(arg, sympy.Add) and any(isinstance(a, sympy.exp) for a in arg.args) and any(
                    a == 1 for a in arg.args) and len(arg.args) == 2:
                inner = next(a for a in arg.args if isinstance(a, sympy.exp)).args[0]
                add(f"log(1 + exp({inner})) -> softplus({inner})")
            elif isinstance(arg, sf.tsum) and isinstance(arg.args[0], sympy.exp):
                inner = arg.args[0].args[0]
                add(f"log(sum(exp({inner}))) -> logsumexp({inner})")
            elif isinstance(arg, sf.sigmoid):
                inner = arg.args[0]
                add(f"log(sigmoid({inner})) -> -softplus(-{inner})")
        if isinstance(node, sympy.Mul):
            exps = [a for a in node.args if isinstance(a, sympy.exp)]
            sums = [a.args[0] for a in node.args if isinstance(a, sympy.Pow) and a.args[1] == -1
                    and isinstance(a.args[0], sf.tsum) and isinstance(a.args[0].args[0], sympy.exp)]
            for e in exps:
                if any(s.args[0] == e for s in sums):
                    add(f"exp({e.args[0]})/sum(exp({e.args[0]})) -> softmax({e.args[0]})")
    return found


def not_finite_cause(components: Sequence[Any], shape: tuple[int, ...] | None, table: Any,
                     values: Mapping[str, torch.Tensor]) -> str | None:
    """In words, why f as typed is not finite here: the first operation whose result was not,
    the dtype's limit when it overflowed or underflowed, and the stable form where one is known.

    None when no single operation explains it (f is not finite in float64 either: outside the
    domain, where the generic words say enough).
    """
    import sympy

    from gradcli.core.lower import compile_components

    if not values:
        return None
    dtype = next(iter(values.values())).dtype
    name = _DTYPE_TEXT.get(dtype, str(dtype))
    traces: list[list[tuple[Any, torch.Tensor | float | int]]] = []
    try:
        for run_dtype in (dtype, torch.float64):
            trace: list[tuple[Any, torch.Tensor | float | int]] = []
            fn = compile_components(list(components), shape, table, dtype=run_dtype, device=torch.device("cpu"),
                                    trace=trace)
            with torch.no_grad():
                fn({n: v.detach().to(device="cpu", dtype=run_dtype) for n, v in values.items()})
            traces.append(trace)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return None
    typed, wide = traces
    if len(typed) != len(wide):
        return None
    info = torch.finfo(dtype)
    for (node, value), (_node, value64) in zip(typed, wide, strict=True):
        if not isinstance(value, torch.Tensor) or bool(torch.isfinite(value).all()):
            continue
        text = sympy.sstr(node)
        bad = ~torch.isfinite(value)
        v64 = torch.broadcast_to(value64, value.shape)[bad] if isinstance(value64, torch.Tensor) else None
        advice = _stable_forms(sympy.Tuple(*components))
        tail = ("; the stable form: " + "; ".join(advice)) if advice else ""
        if v64 is not None and bool(torch.isfinite(v64).all()):
            size = float(v64.abs().max())
            if size > info.max:
                return (f"{text} overflows {name}: it is {size:.3g} here, beyond {name}'s largest number "
                        f"{info.max:.5g}, so torch gets {float(value[bad].reshape(-1)[0])}{tail}")
            small = [(sympy.sstr(n), float(t.abs().max())) for (n, t), (_m, t64) in zip(typed, wide, strict=True)
                     if isinstance(t, torch.Tensor) and isinstance(t64, torch.Tensor) and t.numel() == t64.numel()
                     and bool((t == 0).any()) and bool((t64 != 0).all()) and not n.is_Atom]
            if small:
                under = small[0][0]
                return (f"{under} underflows {name} to 0 (its smallest normal number is {info.tiny:.3g}), and "
                        f"{text} is then {float(value[bad].reshape(-1)[0])}{tail}")
            return (f"{text} is {float(value[bad].reshape(-1)[0])} in {name} here, though it is {size:.6g} in "
                    f"float64{tail}")
        try:
            evaluated = sympy.sstr(node.func(*node.args))
        except (TypeError, ValueError, ArithmeticError):
            evaluated = text
        if evaluated == text:
            return None  # not finite as sympy writes it too: outside the domain, a pole (the generic words)
        shown = float(value[bad].reshape(-1)[0])
        what = "0/0, inf - inf or 0*inf" if math.isnan(shown) else "a division by zero or an overflow"
        return (f"{text} is {shown} here ({what}); sympy simplifies {text} to {evaluated}, but torch computes it "
                f"as typed{tail}")
    return None
