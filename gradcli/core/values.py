"""NAME=VALUE to tensors, in one place.

A value as typed (`x=2`, `x=[1,2]`, `x=ones(2,3)`, `x=pi/4`, `x=-5:5:200`, `x=@data.csv`) is
read into a `ValueSpec`: plain numbers and a shape, nothing computed yet. Constant expressions
in it are read by the parser's `Reader` in its constant-only mode, so reading a value never
evaluates the text either. `make_tensor` then makes a spec a tensor of the chosen dtype on the
chosen device, refusing one larger than --max-elements before anything is allocated.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sympy
import torch

from gradcli.core.functions import CONSTRUCTORS, FUNCTION_NAMES
from gradcli.core.parse import CONSTANTS, Reader, Source, read_list
from gradcli.errors import GradcliError
from gradcli.inputs import read_value_source

__all__ = [
    "CONSTRUCTORS", "DTYPES", "ValueSpec", "ValuesArg", "array_value", "make_tensor", "parse_assignment",
    "parse_value", "read_values", "resolve_device", "resolve_dtype", "stack_columns",
]

# What the library takes as values: NAME=VALUE strings, or a mapping of names to values.
ValuesArg = Mapping[str, Any] | Sequence[str]

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class ValueSpec:
    """A value as typed: a literal array, or a constructor call with plain-number arguments.

    kind: "literal" (data holds nested lists of floats, or one float), or a constructor name
    from CONSTRUCTORS (args holds its arguments, shape the resulting shape).
    """

    text: str
    kind: str
    shape: tuple[int, ...]
    data: object = None
    args: tuple[Any, ...] = ()  # the constructor's arguments: numbers, or a shape and a number

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_random(self) -> bool:
        return self.kind in ("rand", "randn")


# --------------------------------------------------------------------------- reading

_LEADING_ZERO = re.compile(r"[+-]?0+[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")


def _plain_number(text: str) -> float | None:
    """x=0.5 read directly: the commonest value, without the parser and sympy (a batch of
    small requests spent a twentieth of its time there). None for anything else, and for
    numbers near the ends of float64's range, which the parser checks and explains."""
    if len(text) > 40 or not _DECIMAL.fullmatch(text) or _LEADING_ZERO.fullmatch(text):
        return None  # 007 is a syntax error to Python: the parser says so
    number = float(text)
    if 1e-300 < abs(number) < 1e300 or (
            number == 0 and not any(c in "123456789" for c in text.lower().partition("e")[0])):
        return number + 0.0  # -0 is 0, as the parser (sympy) reads it
    return None


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and unicodedata.normalize("NFKC", name) == name


def parse_assignment(argument: str) -> tuple[str, ValueSpec]:
    """Read one `NAME=VALUE` argument."""
    if "=" not in argument:
        if argument.startswith("--"):
            raise GradcliError(f"no such option: {argument.split('=')[0]}", hint="see --help for the options")
        raise GradcliError(
            f"expected NAME=VALUE, got '{argument}'",
            hint="give each variable a value, like x=2 or \"x=[1,2,3]\"",
        )
    name, _, value_text = argument.partition("=")
    name = name.strip()
    if name.startswith("-"):
        raise GradcliError(f"no such option: {name}", hint="see --help for the options")
    if not _is_identifier(name) or name.startswith("_"):
        raise GradcliError(f"'{name}' is not a variable name", hint="a name is letters, digits and _, like x or θ1")
    if name in CONSTANTS or name in FUNCTION_NAMES or name in CONSTRUCTORS:
        raise GradcliError(f"'{name}' is a reserved name (a function or constant) and cannot be a variable")
    try:
        return name, parse_value(value_text)
    except GradcliError as exc:
        raise GradcliError(f"in the value of {name}: {exc.message}", hint=exc.hint, span=exc.span) from None


def parse_value(text: str) -> ValueSpec:
    """Read a value: a number, a constant expression, a nested list, a constructor, or a:b:n."""
    text = text.strip()
    if not text:
        raise GradcliError("the value is empty", hint="write a number, like x=2")
    if text.startswith("@"):
        return array_value(read_value_source(text[1:]), text)
    if ":" in text and "[" not in text:
        return _parse_range(text)
    plain = _plain_number(text)
    if plain is not None:
        return ValueSpec(text, "literal", (), data=plain)
    src = Source(text, "value")
    tree = src.parse()
    reader = Reader(src, constant_only=True)
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id in CONSTRUCTORS:
        return _constructor(reader, tree, text)
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "stack":
        return _stacked_columns(reader, tree, text)
    if isinstance(tree, (ast.List, ast.Tuple)):
        entries, shape = read_list(reader, tree)
        numbers = [_to_float(reader, e, tree) for e in entries]
        return ValueSpec(text, "literal", shape, data=_nest(numbers, shape))
    return ValueSpec(text, "literal", (), data=_to_float(reader, reader.read(tree), tree))


def array_value(array: npt.NDArray[Any], text: str) -> ValueSpec:
    """A value read from a file: a numpy array, possibly mapped rather than read (.npy).

    Its size is checked against --max-elements, and its numbers for finiteness, when it is
    made a tensor: nothing large is touched before that.
    """
    return ValueSpec(text, "literal", tuple(int(n) for n in array.shape), data=array)


def _parse_range(text: str) -> ValueSpec:
    parts = text.split(":")
    if len(parts) != 3:
        raise GradcliError(
            f"a range is START:STOP:COUNT, got '{text}'", hint="for example x=-5:5:200 (200 points from -5 to 5)"
        )
    numbers = []
    for part in parts:
        src = Source(part.strip(), "range")
        reader = Reader(src, constant_only=True)
        numbers.append(_to_float(reader, reader.read(src.parse()), None))
    start, stop, count = numbers
    if count != int(count) or count < 1:
        raise GradcliError(f"the COUNT of a range must be a whole number >= 1, got {count:g}")
    return ValueSpec(text, "linspace", (int(count),), args=(start, stop, int(count)))


def _stacked_columns(reader: Reader, node: ast.Call, text: str) -> ValueSpec:
    """X=stack([x1, x2], dim=1): the --data columns x1 and x2 as the columns of one matrix.

    Read here as names only; `stack_columns` makes it a matrix once --data is read (session).
    """
    if len(node.args) != 1 or not isinstance(node.args[0], (ast.List, ast.Tuple)) or not node.args[0].elts:
        raise reader.error("a stacked value is stack([COLUMN, COLUMN, ...], dim=1)", node,
                           hint="name --data columns: X=stack([x1, x2], dim=1)")
    names = []
    for elt in node.args[0].elts:
        if not isinstance(elt, ast.Name):
            raise reader.error("stack in a value takes the names of --data columns", elt,
                               hint="X=stack([x1, x2], dim=1) makes the columns x1 and x2 one matrix")
        names.append(elt.id)
    if len(set(names)) != len(names):
        raise reader.error("stack names a column twice", node)
    dim = 0
    for keyword in node.keywords:
        if keyword.arg not in ("dim", "axis"):
            raise reader.error(f"stack takes dim= (or axis=), not {keyword.arg}=", keyword.value)
        value = _to_float(reader, reader.read(keyword.value), keyword.value)
        if value not in (0, 1, -1, -2):
            raise reader.error(f"columns stacked into a matrix have dim 0 or 1 (or -1, -2), not {value:g}",
                               keyword.value)
        dim = int(value) % 2
    return ValueSpec(text, "stack", (), args=(tuple(names), dim))


def stack_columns(spec: ValueSpec, columns: Mapping[str, npt.NDArray[Any]] | None, name: str,
                  where: str | None) -> ValueSpec:
    """A stack([...], dim=) value with the --data columns it names: a matrix, as torch.stack makes it.

    dim=1 puts each column of the file in a column of the matrix (a row per sample, as
    nn.Linear takes it); dim=0 puts each in a row.
    """
    names, dim = spec.args
    if columns is None:
        raise GradcliError(f"{name}={spec.text} stacks --data columns, and there is no --data file",
                           hint="give --data FILE.csv, whose header names the columns")
    missing = [n for n in names if n not in columns]
    if missing:
        raise GradcliError(f"{name}={spec.text}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                           f"not a column of {where} (its columns: {', '.join(columns)})")
    return array_value(np.stack([np.asarray(columns[n]) for n in names], axis=dim), spec.text)


def _to_float(reader: Reader, expr: sympy.Expr, node: ast.AST | None) -> float:
    span = reader.src.span(node) if node is not None else None
    if expr.free_symbols:
        raise GradcliError("a value must be a number", span=span)
    value = complex(sympy.N(expr, 20)) if not expr.is_real else None
    if value is not None and value.imag != 0:
        raise GradcliError(f"the value {sympy.sstr(expr)} is not a real number", span=span)
    number = float(sympy.N(expr, 20)) if value is None else value.real
    if not math.isfinite(number):
        raise GradcliError(f"the value {sympy.sstr(expr)} is not a finite number", span=span)
    return number


def _nest(flat: Sequence[float], shape: tuple[int, ...]) -> float | list[Any]:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _constructor(reader: Reader, node: ast.Call, text: str) -> ValueSpec:
    assert isinstance(node.func, ast.Name)  # parse_value calls it for constructor names only
    name = node.func.id
    lo, hi = CONSTRUCTORS[name]
    if node.keywords:
        raise reader.error("keyword arguments are not allowed", node.keywords[0].value)
    args_nodes = list(node.args)
    # ones((2,3)) and ones([2,3]) mean ones(2,3), as in numpy and torch.
    if name in ("ones", "zeros", "rand", "randn") and len(args_nodes) == 1 and isinstance(
        args_nodes[0], (ast.List, ast.Tuple)
    ):
        args_nodes = list(args_nodes[0].elts)
    if not lo <= len(args_nodes) <= hi:
        wanted = str(lo) if lo == hi else f"{lo} to {hi}"
        raise reader.error(f"{name} takes {wanted} arguments, not {len(args_nodes)}", node)

    def whole(n: ast.AST, what: str, minimum: int = 0) -> int:
        v = _to_float(reader, reader.read(n), n)
        if v != int(v) or v < minimum:
            raise reader.error(f"{what} must be a whole number >= {minimum}, got {v:g}", n)
        if v > 10**15:
            raise reader.error(f"{what} is far too large ({v:g})", n)
        return int(v)

    if name in ("ones", "zeros", "rand", "randn"):
        shape = tuple(whole(a, "a size") for a in args_nodes)
        return ValueSpec(text, name, shape, args=shape)
    if name == "eye":
        n = whole(args_nodes[0], "the size", 1)
        m = whole(args_nodes[1], "the size", 1) if len(args_nodes) > 1 else n
        return ValueSpec(text, name, (n, m), args=(n, m))
    if name == "full":
        shape_node = args_nodes[0]
        dims = shape_node.elts if isinstance(shape_node, (ast.List, ast.Tuple)) else [shape_node]
        shape = tuple(whole(d, "a size") for d in dims)
        fill = _to_float(reader, reader.read(args_nodes[1]), args_nodes[1])
        return ValueSpec(text, name, shape, args=(shape, fill))
    if name == "linspace":
        start = _to_float(reader, reader.read(args_nodes[0]), args_nodes[0])
        stop = _to_float(reader, reader.read(args_nodes[1]), args_nodes[1])
        count = whole(args_nodes[2], "the count", 1)
        return ValueSpec(text, name, (count,), args=(start, stop, count))
    # arange(stop) | arange(start, stop) | arange(start, stop, step)
    nums = [_to_float(reader, reader.read(a), a) for a in args_nodes]
    start, stop, step = (0.0, nums[0], 1.0) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2 else 1.0)
    if step == 0:
        raise reader.error("the step of arange cannot be 0", node)
    count = max(0, math.ceil((stop - start) / step))
    if count == 0:
        raise reader.error("this arange is empty", node)
    return ValueSpec(text, name, (count,), args=(start, stop, step))


def read_values(values: ValuesArg, named: Mapping[str, Any] | None = None) -> dict[str, ValueSpec]:
    """{name: spec} from NAME=VALUE strings or a mapping of names to values, and from the
    library's keyword values (gradcli.grad("x*y", x=1, y=2)); a name given twice is an error."""
    specs: dict[str, ValueSpec] = {}
    if named:
        specs = read_values(values)
        for name, spec in read_values(dict(named)).items():
            if name in specs:
                raise GradcliError(f"{name} is given a value twice")
            specs[name] = spec
        return specs
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


# --------------------------------------------------------------------------- tensors and devices

def resolve_dtype(name: str) -> torch.dtype:
    if name in DTYPES:
        return DTYPES[name]
    if name in ("int8", "int16", "int32", "int64", "uint8", "bool", "int", "long"):
        raise GradcliError(
            f"autograd needs floating-point tensors: {name} cannot carry gradients",
            hint="use --dtype float32 (the default) or float64",
        )
    raise GradcliError(f"unknown dtype '{name}'", hint="choose one of " + ", ".join(DTYPES))


def resolve_device(name: str) -> tuple[torch.device, str]:
    """The device to compute on, and a note saying how it was chosen."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), "auto: CUDA is available"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps"), "auto: MPS is available"
        return torch.device("cpu"), "auto: no GPU found"
    if name == "cpu":
        return torch.device("cpu"), "requested"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GradcliError(
                f"--device {name}: CUDA is not available (torch {torch.__version__})",
                hint="use --device cpu, or --device auto to pick what is there",
            )
        if name.startswith("cuda:"):
            suffix = name[5:]
            if not suffix.isdigit() or int(suffix) >= torch.cuda.device_count():
                raise GradcliError(
                    f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s), numbered from 0"
                )
        return torch.device(name), "requested"
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise GradcliError("--device mps: MPS (Apple GPU) is not available here", hint="use --device cpu")
        return torch.device("mps"), "requested"
    raise GradcliError(f"unknown device '{name}'", hint="choose auto, cpu, cuda, cuda:N or mps")


def make_tensor(spec: ValueSpec, *, dtype: torch.dtype, device: torch.device,
                generator: torch.Generator | None, max_elements: int, name: str) -> torch.Tensor:
    """A value as a tensor, refused before allocation when it is larger than max_elements."""
    if spec.numel > max_elements:
        size = spec.numel * torch.tensor([], dtype=dtype).element_size()
        raise GradcliError(
            f"{name}={spec.text} has {spec.numel:,} elements ({_bytes(size)} as {str(dtype)[6:]}); "
            f"the limit is {max_elements:,}",
            hint="--max-elements raises the limit",
        )
    # Built in float64 on the CPU, then converted: the same numbers on every device and dtype.
    f64 = torch.float64
    if spec.kind == "literal" and hasattr(spec.data, "dtype"):  # read from a file
        t = torch.from_numpy(np.asarray(spec.data, dtype=np.float64).copy())
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise GradcliError(f"{name}={spec.text}: {bad} value(s) are not finite numbers")
    elif spec.kind == "literal":
        t = torch.tensor(spec.data, dtype=f64)
    elif spec.kind == "ones":
        t = torch.ones(spec.shape, dtype=f64)
    elif spec.kind == "zeros":
        t = torch.zeros(spec.shape, dtype=f64)
    elif spec.kind == "eye":
        t = torch.eye(*spec.args, dtype=f64)
    elif spec.kind == "full":
        t = torch.full(spec.args[0], spec.args[1], dtype=f64)
    elif spec.kind == "linspace":
        t = torch.linspace(*spec.args, dtype=f64)
    elif spec.kind == "arange":
        t = torch.arange(*spec.args, dtype=f64)
    elif spec.kind == "rand":
        t = torch.rand(spec.shape, dtype=f64, generator=generator)
    elif spec.kind == "randn":
        t = torch.randn(spec.shape, dtype=f64, generator=generator)
    else:  # pragma: no cover - parse.py only makes the kinds above
        raise GradcliError(f"unknown value kind {spec.kind}")
    return t.to(dtype=dtype, device=device)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
