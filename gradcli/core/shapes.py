"""The shape of every node of an expression, from its variables' shapes: checked before torch runs.

Elementwise nodes (arithmetic, functions of one element, where's pieces and conditions)
broadcast their arguments as torch does; whole-tensor reductions (sum(x), x[0, 1] of an
expression) are scalars; a tensor operation (sympy_functions.TensorOp: matmul, transpose,
sum(x, dim=0)...) has its own rule, its class's `shape`. A mismatch is a GradcliError that
names both shapes and points at the operation as typed (the parser's spans); an intermediate
tensor larger than --max-elements is refused the same way, before anything is computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import sympy

from gradcli.core import sympy_functions as sf
from gradcli.errors import GradcliError, Span

Shape = tuple[int, ...]


class ShapeInference:
    """Shapes of the nodes of expressions, memoised; `leaf` gives a variable symbol's shape."""

    def __init__(self, leaf: Callable[[sympy.Symbol], Shape], spans: Mapping[sympy.Basic, Span] | None = None,
                 max_elements: int | None = None):
        self.leaf = leaf
        self.spans = spans or {}
        self.max_elements = max_elements
        self.known: dict[sympy.Basic, Shape] = {}

    def shape(self, node: sympy.Basic, span: Span | None = None) -> Shape:
        known = self.known.get(node)
        if known is None:
            span = self.spans.get(node, span)
            known = self._shape(node, span)
            if self.max_elements is not None and math.prod(known) > self.max_elements:
                raise GradcliError(f"{_text(node)} has shape {sf.shown_shape(known)}: {math.prod(known):,} elements; "
                                   f"the limit is {self.max_elements:,}", span=span,
                                   hint="--max-elements raises the limit")
            self.known[node] = known
        return known

    def _shape(self, node: sympy.Basic, span: Span | None) -> Shape:
        if isinstance(node, sympy.Symbol):
            return self.leaf(node)
        if node.is_Atom or sf.is_plain_constant(node):
            return ()
        if isinstance(node, sf.TensorOp):
            shapes = [self.shape(a, span) for a in node.operands]
            try:
                return node.shape(shapes, *node.static)
            except sf.ShapeError as exc:
                raise GradcliError(str(exc), span=span) from None
        if isinstance(node, sf.Defined):
            return self.shape(node.definition(), span)
        if isinstance(node, sf.tindex):
            inner = self.shape(node.args[0], span)
            where = node.index
            if len(where) != len(inner):
                raise GradcliError(f"{_text(node)} has {len(where)} ind{'ex' if len(where) == 1 else 'ices'}, but "
                                   f"{_text(node.args[0])} has shape {sf.shown_shape(inner)}", span=span,
                                   hint="index every dimension for one element, or slice: f(x)[0, :]")
            if any(not -n <= i < n for i, n in zip(where, inner, strict=True)):
                raise GradcliError(f"{_text(node)} is out of range: {_text(node.args[0])} has shape "
                                   f"{sf.shown_shape(inner)}", span=span)
            return ()
        if isinstance(node, sf.Reduction):
            self.shape(node.args[0], span)
            return ()
        if isinstance(node, sympy.Piecewise):
            return self.broadcast(node, [part for pair in node.args for part in pair.args], span)
        return self.broadcast(node, list(node.args), span)

    def broadcast(self, node: sympy.Basic, parts: list[sympy.Basic], span: Span | None) -> Shape:
        import numpy as np

        shapes = [self.shape(p, span) for p in parts]
        try:
            return tuple(int(n) for n in np.broadcast_shapes(*shapes))
        except ValueError:
            pass
        shown = " and ".join(dict.fromkeys(sf.shown_shape(s) for s in shapes))
        raise GradcliError(f"the shapes {shown} do not fit together in {_text(node)}", span=span,
                           hint="elementwise operations need, dimension by dimension from the right, equal sizes "
                                "or 1 (as in torch)")


def _text(node: sympy.Basic, limit: int = 60) -> str:
    text: str = sympy.sstr(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."
