"""Limits that keep every input answered quickly and in bounded memory.

A real user never meets them; each one names the option that raises it.
"""

MAX_EXPRESSION_CHARS = 200_000  # a longer expression is refused before parsing (100 KB must work)
MAX_NESTING = 100  # parentheses/calls/operators deep; sympy and our walkers recurse
MAX_CONSTANT_DIGITS = 400  # a literal or folded constant beyond ~1e400 is no float anyway
DEFAULT_MAX_ELEMENTS = 50_000_000  # per tensor value; --max-elements raises it
MAX_EXACT_DIGITS = 4000  # an exact constant longer than this is refused or taken in floating point
MAX_POLYGAMMA_ORDER = 1000  # polygamma(n, x): sympy's and mpmath's work grows with n
MAX_ROOT_DEGREE = 10**6  # a constant root of higher degree (2**(1/10**400)) is taken in floating point
# An expression of more syntax nodes than this (about 120 terms like 3*sin(x/2)*y**2) is built
# and differentiated without sympy simplifying each term as it goes, which costs about a
# millisecond a term: a 100 KB sum would take a minute. See README "Long expressions".
LONG_EXPRESSION_NODES = 1000
# The work of one computation (a dense Jacobian's vectorised pass, the autograd graph of --order)
# may hold this many times --max-elements in intermediate elements: 500,000,000 by default, 2 GB
# in float32. Its estimate is made before the work, and the work refused over it.
WORK_FACTOR = 10
# A CSV line (of --points, --data or an x=@file.csv value) longer than this is refused, by its line
# number, before it is split into cells: a 1 GB line without a newline took 5-7 GB.
MAX_CSV_LINE_CHARS = 10_000_000
# The symbolic check of a tensor program (matmul, transpose, sum over a dim...) spells every tensor
# out entry by entry in sympy and differentiates each entry: it builds at most this many scalar
# entries (every node's elements, summed). Beyond it that route says "unavailable", never "agree".
SYMBOLIC_EXPANSION_LIMIT = 1000


def size_text(n: float) -> str:
    """Bytes for people: 1.5 GiB (as values.py says a value's size)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
