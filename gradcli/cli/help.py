"""Every command's help text, in one place.

Examples are printed as written, never rewrapped: click rewraps a paragraph to the terminal,
and a command broken by the wrapper at an arbitrary space cannot be copied into a shell. One
too long for 80 columns is broken here instead, with a shell line continuation.
"""

from __future__ import annotations

# click's help formatter is at most 78 wide, and indents an example by 4 (2 for the help
# text, 2 of the example's own); a continued line ends in " \".
EXAMPLE_WIDTH = 78 - 4
CONTINUATION_INDENT = "    "


def shell_words(command: str) -> list[str]:
    """`command` cut at the spaces a shell splits words at (none inside quotes), each word
    kept as written, quotes included."""
    words, word, quote = [], "", None
    for char in command:
        if quote is None and char == " ":
            if word:
                words.append(word)
            word = ""
            continue
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
        word += char
    return words + ([word] if word else [])


def example_lines(command: str) -> list[str]:
    """One example, as lines of at most EXAMPLE_WIDTH that a shell reads as the one command."""
    lines: list[str] = []
    line = ""
    words = shell_words(command)
    for i, word in enumerate(words):
        rest = " ".join(words[i:])
        if len(f"{line} {rest}" if line else rest) <= EXAMPLE_WIDTH:  # the rest ends this line
            return lines + [f"{line} {rest}" if line else rest]
        candidate = f"{line} {word}" if line else word
        # A word too long for a line of its own (a JSON request) stays where it is: breaking
        # before it would only add a line.
        if line and len(candidate) + len(" \\") > EXAMPLE_WIDTH \
                and len(CONTINUATION_INDENT + word) + len(" \\") <= EXAMPLE_WIDTH:
            lines.append(line + " \\")
            line = CONTINUATION_INDENT + word
        else:
            line = candidate
    return lines + [line]


def examples(*commands: str) -> str:
    """An "Examples:" section: each command a paragraph of its own that click prints as is
    (the \\b line before a paragraph tells click not to rewrap it)."""
    blocks = ["\b\n" + "\n".join("  " + line for line in example_lines(command)) for command in commands]
    return "Examples:\n\n" + "\n\n".join(blocks) + "\n"


APP = """\
Type a function, get its derivatives from PyTorch's autograd, checked against sympy.

""" + examples(
    'gradcli grad "2*x**2 + 5" x=5',
    'gradcli grad "x0**2 + x1**3 + x0*x1" x0=2 x1=3 --dtype float16',
    'gradcli grad "mean((t - p)**2)" "p=[1,2,3]" "t=[2,3,4]" --wrt p --json',
    'gradcli grad "x**2" x=3 --order 2',
    'gradcli jacobian "[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]" "x=[2,3]"',
    'gradcli hessian "x**2*y + sin(x*y)" x=1 y=2',
    'gradcli vjp "(x + 1)**2" "x=eye(5)" "v=ones(5,5)"',
) + """
Exit status: 0 ok, 1 the cross-check did not confirm the result, 2 bad input,
3 an internal error (a bug), 130 interrupted.
"""


GRAD = """\
The gradient of EXPR at the given values, by autograd, checked against sympy.

EXPR is a formula in x, y, θ, ...: + - * / ** (or ^), numbers, pi, e, x[0] for elements,
functions such as sin, exp, log, sqrt, abs, sigmoid, relu, and sum(...)/mean(...) of tensors.
Each VALUE is NAME=VALUE: x=2, x=pi/4, "x=[1,2,3]", "x=[[1,2],[3,4]]", "x=ones(2,3)",
"x=zeros(3)", "x=eye(3)", "x=full((2,2), 0.5)", "x=linspace(0,1,5)", "x=arange(4)",
"x=randn(3)" (with --seed), or x=-5:5:200 (200 points from -5 to 5).

A tensor-valued EXPR is summed to a scalar first (--reduce mean to average), and says so.

""" + examples(
    'gradcli grad "2*x**2 + 5" x=5',
    'gradcli grad "(x + w)*(w + 1)" w=1 x=2',
    'gradcli grad "x[0]**2 + x[1]**3 + x[0]*x[1]" "x=[2,3]" --dtype float16',
    'gradcli grad "2*x**3 + 5*x**2 + 7*x + 10" "x=[[1,2,3],[4,5,6]]"',
    'gradcli grad "0.65*mean((t-p)**2) + 0.35*mean(abs(p-t))" "p=[1,2,3]" "t=[2,3,7]" --wrt p',
    'gradcli grad "sin(x)*exp(y)" x=1 y=2 --method all --json',
    'gradcli grad "2*x**2 + 5" x=5 --plain',
    'gradcli grad "x**3" x=2 --order 3',
)


JACOBIAN = """\
The Jacobian of EXPR by autograd, checked entry by entry against sympy.

A bracketed list "[f1, f2, ...]" gives the m x n Jacobian over the inputs; an elementwise
expression of tensors gives the full Jacobian, of shape output shape + input shape, one
per variable. The default method picks forward or reverse mode by the shapes and says which.

""" + examples(
    'gradcli jacobian "[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]" "x=[2,3]"',
    'gradcli jacobian "2*x**3 + 5*x**2 + 7*x + 10" "x=[[1,2,3],[4,5,6]]" --json',
    'gradcli jacobian "2*x**2 + 5*y**2" "x=[[1,2,3],[4,5,6]]" "y=[[5,6,7],[8,9,10]]"',
    'gradcli jacobian "[x*y, x + y]" x=1 y=2 --method all',
)


HESSIAN = """\
The Hessian of a scalar EXPR by autograd (torch.autograd.functional.hessian), checked
against sympy.hessian, with its symmetry reported. Tensor variables are flattened: the
Hessian is over every element of every --wrt variable.

""" + examples(
    'gradcli hessian "x**2*y + sin(x*y)" x=1 y=2',
    'gradcli hessian "x[0]**2 * x[1] + exp(x[1])" "x=[1,2]"',
    'gradcli hessian "sum(x**3)" "x=[1,2,3]" --json',
)


VJP = """\
The vector-Jacobian product vᵀ·J, by f.backward(v), checked against sympy.

v has the shape of EXPR's value; give it as v=VALUE (or --vector VALUE when the expression
has a variable named v). This is how backward works on a non-scalar output.

""" + examples(
    'gradcli vjp "(x + 1)**2" "x=eye(5)" "v=ones(5,5)"',
    'gradcli vjp "[x*y, x + y]" x=1 y=2 "v=[1, -1]"',
)


JVP = """\
The Jacobian-vector product J·v (forward mode, torch.func.jvp), checked against sympy.

v has the shape of the input variable (choose it with --wrt when there are several); give
it as v=VALUE (or --vector VALUE when the expression has a variable named v).

""" + examples(
    'gradcli jvp "(x + 1)**2" "x=eye(3)" "v=ones(3,3)"',
    'gradcli jvp "[x[0]*x[1], sin(x[0])]" "x=[1,2]" "v=[1,0]"',
)


FUNCTIONS = """\
Every function an expression can use: its signature, what it computes, its other names.

Grouped by shape rule: elementwise, reductions, functions over a whole vector, and losses of
two tensors. With NAME (or one of its aliases, or a numpy/torch spelling), that function only.

""" + examples(
    "gradcli functions",
    "gradcli functions huber",
    "gradcli functions arctan",
    "gradcli functions --json | jq -r '.functions[].name'",
)


DIFF = """\
The symbolic derivative alone: no values, no torch (it starts as fast as sympy allows).

Every variable is read as a scalar. The result is simplified where that is cheap (at most
a second). VARS chooses the variables (default: all); --order N gives every order up to N.

""" + examples(
    'gradcli diff "sin(x)*exp(x**2)" x',
    'gradcli diff "x**2*y + y**3" --order 2',
    'gradcli diff "sigmoid(w*x + b)" w --format latex',
)


EVAL = """\
The value of EXPR alone, computed under torch.no_grad(): no graph is recorded.

Values, dtypes, devices and formats are those of grad.

""" + examples(
    'gradcli eval "3 + 2*x + x**2" x=2',
    'gradcli eval "sin(x)" x=-pi:pi:5 --plain',
)


GRAPH = """\
The autograd graph of EXPR: from f.grad_fn down through next_functions to the leaves,
after f.backward(). Each node shows its class (MulBackward0, AddBackward0, AccumulateGrad)
and the subexpression it computed; each leaf its name, shape, is_leaf, requires_grad and
grad. --dot prints Graphviz text; --json gives the nodes and edges.

""" + examples(
    'gradcli graph "(x + w)*(w + 1)" w=1 x=2',
    'gradcli graph "(x + w)*(w + 1)" w=1 x=2 --dot | dot -Tpng > graph.png',
)


BATCH = """\
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

Lines do not read or write files unless the batch is started with --allow-files: by default
a line with --output, --trace, --plot, --out, --data or a value x=@FILE (x=@-, too) gets an
error object naming the option, and the other lines go on. Requests often come from someone
else's file; allow files only for requests you trust.

""" + examples(
    'printf \'%s\\n\' \'grad "x**2" x=3\' \'jacobian "[x*y, x+y]" x=1 y=2\' | gradcli batch',
    'gradcli batch requests.txt > results.ndjson',
    'gradcli batch --jobs 1 requests.txt',
    'gradcli batch --allow-files my-own-requests.txt',
    # a JSON request is one shell word: kept short enough for a line of its own at 80 columns
    'echo \'{"command":"grad","expr":"x**2","values":{"x":3}}\' | gradcli batch',
)


PLOT = """\
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

""" + examples(
    'gradcli plot "sin(x)" x=-5:5:200',
    'gradcli plot "sin(x)" x=-5:5:200 --out sin.png',
    'gradcli plot "x**3 + 5*x + y**2" x=-5:5:200 y=-5:5:200',
    'gradcli plot "exp(-x**2/2)" x=-4:4:300 --order 3 --out gauss.svg',
    'gradcli plot "x**2 - y**2" x=-2:2:41 y=-2:2:41 --grid --out saddle.pdf',
    'gradcli plot "a*tanh(x)" x=-3:3:50 a=2 --format csv > tanh.csv',
)


MINIMIZE = """\
Minimise a loss by gradient descent with torch.optim, and show what happened on the way.

The --wrt variables are the parameters, moved from the values given (θ=1) by the optimizer;
every other variable is a constant: a NAME=VALUE, or a column of --data FILE.csv (a vector,
so mean(...) over the rows is the loss). Each step is optimizer.zero_grad(), loss.backward(),
optimizer.step(); the gradient at the first and the last point is checked against sympy's.

The run stops after --steps steps, when the gradient norm falls below --tol, or at once when
the loss is NaN or infinite (exit status 1, with the last finite parameters and a hint).
--trace FILE.csv|FILE.ndjson|- writes one record per step as it runs (| tail -f works).

""" + examples(
    'gradcli minimize "(θ*x - y)**2" θ=1 x=2 y=3 --wrt θ --lr 0.1 --steps 1',
    'gradcli minimize "mse(θ*x, y)" θ=1 x=2 y=3 --wrt θ --optimizer sgd --steps 1',
    'gradcli minimize "mean(0.5*(y - (w*x + b))**2)" w=0 b=0 --data examples/data/line.csv'
    ' --wrt w,b --lr 0.05 --steps 100',
    'gradcli minimize "bce(sigmoid(w1*x1 + w2*x2 + b), y)" w1=0 w2=0 b=0 --data examples/data/clusters.csv'
    ' --wrt w1,w2,b --optimizer momentum --lr 0.01 --steps 1000',
    'gradcli minimize "(x - 3)**2 + (y + 1)**2" x=0 y=0 --optimizer adam --steps 5000 --tol 1e-6 --trace run.csv',
    'gradcli minimize "(x - 3)**2" x=0 --steps 50 --plot loss.png',
)


SERVER = """\
Warm mode: a background server that keeps torch and sympy imported, so that each gradcli
call answers in milliseconds instead of a second.

While it runs, every gradcli call of yours is handed to it over a Unix socket in a directory
only you can enter, and behaves exactly as before (output, exit status, standard input, files
relative to where you are); without it, calls run in their own process as always.
GRADCLI_SERVER=off runs every call in its own process; GRADCLI_SERVER=require fails (exit
status 2) when no server runs. It exits after 15 minutes without a call (--idle SECONDS, or
GRADCLI_SERVER_IDLE).

""" + examples(
    'gradcli server start',
    'gradcli server status',
    'gradcli server stop',
)


SERVER_START = "Start the server in the background; return once it answers."
SERVER_STOP = "Stop the server (calls running finish first)."
SERVER_STATUS = "Say whether a server runs (exit status 0) or not (1)."
