"""The package's shape, checked by reading its source with `ast` (nothing under gradcli/ is imported).

What is checked, and how:

- No import circle between gradcli modules. Every import counts, at module level and inside
  functions (a lazy import is still a dependency), ``importlib.import_module("gradcli...")``
  with a literal name too. Imports under ``if TYPE_CHECKING:`` never run, so they do not count
  here (the layer rules below still see them). ``from gradcli import x`` depends on the module
  gradcli.x when there is one, else on the package gradcli itself (its ``__init__``); that a
  package's ``__init__`` runs before its modules is Python's mechanics, not an edge.
- No module uses another module's private name: ``from gradcli.x import _y``, ``m._y`` or
  ``getattr(m, "_y")`` where ``m`` is a gradcli module (however it was bound: ``import
  gradcli.x as m``, ``from gradcli import x``, ``import gradcli.x`` then ``gradcli.x._y``,
  ``importlib.import_module``). Dunder names (``__version__``) are public.
- Layers: core/ is sympy and torch only; report.py and render/ never import typer; arrows
  point down core <- commands <- cli <- warm.daemon; render is imported by cli and only by the
  commands that render files.
- entry.py, the console script, loads only the standard library and gradcli.warm.protocol at
  import time, and so do the modules that loads (a warm call never pays for torch or typer).

A failure lists every offending import with its file and line.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gradcli"

# A layer may not import these (a prefix matches the module and everything under it).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # sympy and torch only: no interface, no output formats, nothing above it.
    "gradcli.core": ("typer", "click", "rich", "gradcli.cli", "gradcli.render", "gradcli.commands",
                     "gradcli.warm", "gradcli.api", "gradcli.entry"),
    # Options in, report out: the commands know neither the interface nor the server.
    "gradcli.commands": ("typer", "click", "gradcli.cli", "gradcli.warm", "gradcli.api", "gradcli.entry"),
    # Plain data that every layer may read.
    "gradcli.report": ("typer", "click", "rich", "gradcli.cli", "gradcli.commands", "gradcli.render",
                       "gradcli.warm", "gradcli.api", "gradcli.entry"),
    # Renderers draw reports; they do not run commands or know the interface.
    "gradcli.render": ("typer", "click", "gradcli.cli", "gradcli.commands", "gradcli.warm", "gradcli.api",
                       "gradcli.entry"),
    # The interface may use the client side of warm mode (protocol, control, fan-out), never
    # the daemon that hosts the interface itself.
    "gradcli.cli": ("gradcli.warm.daemon",),
}
# The commands that write rendered files (images), and so may import gradcli.render.
RENDERING_COMMANDS = ("gradcli.commands.plot", "gradcli.commands.minimize")
# Who may import the CLI: the daemon hosts it; entry and __main__ run it in process.
CLI_IMPORTERS = ("gradcli.warm.daemon", "gradcli.entry", "gradcli.__main__", "gradcli.cli")
# What the console script may load at import time.
ENTRY = "gradcli.entry"
ENTRY_MAY_LOAD = {"gradcli", "gradcli.entry", "gradcli.warm", "gradcli.warm.protocol", "gradcli.version"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a gradcli module, or the dotted name of an outside module
    name: str | None  # for `from X import name` where name is not a module
    line: int
    at_import_time: bool  # runs when the module is imported (not in a function, not TYPE_CHECKING)
    type_checking: bool

    @property
    def where(self) -> str:
        return f"{path_of(self.source)}:{self.line}"


@dataclass
class Module:
    name: str
    path: Path
    imports: list[Import] = field(default_factory=list)
    private_uses: list[str] = field(default_factory=list)  # "file:line: what" for each borrowing


# --- reading the package ----------------------------------------------------------------------

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def module_paths() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def path_of(module: str) -> str:
    path = module_paths().get(module)
    return path.relative_to(ROOT).as_posix() if path else module


def is_package(module: str) -> bool:
    path = module_paths().get(module)
    return path is not None and path.name == "__init__.py"


def resolve_from(module: str, level: int, target: str | None) -> str:
    """The absolute name in `from <dots><target> import ...` written in `module`."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class Reader(ast.NodeVisitor):
    """Collects one module's imports and its uses of other gradcli modules' private names."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.in_function = 0
        self.in_type_checking = 0
        # Local names bound to gradcli modules: `m` in `import gradcli.x as m`; `gradcli` in
        # `import gradcli.x` (the dotted chain is resolved where it is used).
        self.bound: dict[str, str] = {}

    # -- imports
    def add(self, target: str, name: str | None, line: int) -> None:
        self.module.imports.append(Import(self.module.name, target, name, line,
                                          at_import_time=not self.in_function and not self.in_type_checking,
                                          type_checking=bool(self.in_type_checking)))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name, None, node.lineno)
            if alias.name.split(".")[0] == PACKAGE:
                if alias.asname:
                    self.bound[alias.asname] = alias.name
                else:
                    self.bound[PACKAGE] = PACKAGE

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve_from(self.module.name, node.level, node.module)
        modules = module_paths()
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in modules:
                self.add(submodule, None, node.lineno)
                self.bound[alias.asname or alias.name] = submodule
            else:
                self.add(base, alias.name, node.lineno)
            if base.split(".")[0] == PACKAGE and is_private(alias.name):
                self.module.private_uses.append(
                    f"{path_of(self.module.name)}:{node.lineno}: from {base} import {alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        literal = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name == "import_module" and isinstance(literal, str):
            self.add(literal, None, node.lineno)
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            attr = node.args[1].value
            owner = self.module_of(node.args[0])
            if owner and isinstance(attr, str) and is_private(attr) and owner != self.module.name:
                self.module.private_uses.append(
                    f"{path_of(self.module.name)}:{node.lineno}: getattr({owner}, {attr!r})")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # m = importlib.import_module("gradcli.x")
        value = node.value
        if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Constant):
            func = value.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            literal = value.args[0].value
            if name == "import_module" and isinstance(literal, str) and literal in module_paths():
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.bound[target.id] = literal
        self.generic_visit(node)

    # -- private attributes of gradcli modules
    def module_of(self, node: ast.expr) -> str | None:
        """The gradcli module an expression names (`m`, `gradcli.core.session`), if any."""
        if isinstance(node, ast.Name):
            return self.bound.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.module_of(node.value)
            if owner and f"{owner}.{node.attr}" in module_paths():
                return f"{owner}.{node.attr}"
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = self.module_of(node.value)
        if owner and is_private(node.attr) and owner != self.module.name:
            self.module.private_uses.append(f"{path_of(self.module.name)}:{node.lineno}: {owner}.{node.attr}")
        self.generic_visit(node)

    # -- where an import runs
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):
            self.visit(node.test)
            self.in_type_checking += 1
            for statement in node.body:
                self.visit(statement)
            self.in_type_checking -= 1
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)


@cache
def package() -> dict[str, Module]:
    modules = {}
    for name, path in module_paths().items():
        module = Module(name, path)
        Reader(module).visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        modules[name] = module
    return modules


def gradcli_target(target: str) -> str | None:
    """The gradcli module an import loads (the nearest existing one: gradcli.x.y.z -> gradcli.x.y)."""
    modules = module_paths()
    parts = target.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def all_imports() -> Iterator[Import]:
    for module in package().values():
        yield from module.imports


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def listing(lines: Iterable[str]) -> str:
    return "\n".join(sorted(set(lines)))


# --- import circles ---------------------------------------------------------------------------

def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first such import}, TYPE_CHECKING imports left out."""
    graph: dict[str, dict[str, Import]] = {name: {} for name in module_paths()}
    for imp in all_imports():
        target = gradcli_target(imp.target) if under(imp.target, PACKAGE) else None
        if target and not imp.type_checking and target != imp.source:
            graph[imp.source].setdefault(target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's components with more than one module: each holds at least one circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_circle(graph: dict[str, dict[str, Import]], component: list[str]) -> list[Import]:
    """One shortest circle through the component's first module, as the imports that close it."""
    start, members = component[0], set(component)
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt, imp in sorted(graph[node].items()):
                if nxt == start:
                    return paths[node] + [imp]
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [imp]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no circle through {start}")


def test_no_import_circle() -> None:
    graph = import_graph()
    problems = []
    for component in strongly_connected(graph):
        circle = a_circle(graph, component)
        steps = "\n".join(f"    {imp.source} -> {gradcli_target(imp.target)}  ({imp.where}"
                          f"{', in a function' if not imp.at_import_time else ''})" for imp in circle)
        problems.append(f"circle among {', '.join(component)}; for example:\n{steps}")
    assert not problems, "import circles between gradcli modules:\n" + "\n".join(problems)


# --- private names ----------------------------------------------------------------------------

def test_no_private_borrowing() -> None:
    borrowed = [use for module in package().values() for use in module.private_uses]
    assert not borrowed, "private names used outside their module:\n" + listing(borrowed)


def test_no_private_module_imported_from_outside_its_package() -> None:
    problems = []
    for imp in all_imports():
        target = gradcli_target(imp.target) if under(imp.target, PACKAGE) else None
        if not target:
            continue
        for i, part in enumerate(target.split(".")):
            owner = ".".join(target.split(".")[:i])
            if is_private(part) and not under(imp.source, owner or PACKAGE):
                problems.append(f"{imp.where}: imports {target}")
    assert not problems, listing(problems)


# --- layers -----------------------------------------------------------------------------------

def violations(source_prefix: str, forbidden: Iterable[str], allowed_sources: Iterable[str] = ()) -> list[str]:
    found = []
    for imp in all_imports():
        if not under(imp.source, source_prefix) or any(under(imp.source, a) for a in allowed_sources):
            continue
        for bad in forbidden:
            if under(imp.target, bad):
                how = "under TYPE_CHECKING" if imp.type_checking else \
                    "at import time" if imp.at_import_time else "in a function"
                found.append(f"{imp.where}: {imp.source} imports {imp.target} ({how})")
    return found


def test_core_is_sympy_and_torch_only() -> None:
    found = violations("gradcli.core", FORBIDDEN["gradcli.core"])
    assert not found, "gradcli/core/ reaches above itself:\n" + listing(found)


def test_report_and_render_import_neither_typer_nor_the_layers_above() -> None:
    found = violations("gradcli.report", FORBIDDEN["gradcli.report"]) + \
        violations("gradcli.render", FORBIDDEN["gradcli.render"])
    assert not found, "report.py and render/ reach up (the data they draw belongs in report.py):\n" + listing(found)


def test_commands_never_reach_up() -> None:
    found = violations("gradcli.commands", FORBIDDEN["gradcli.commands"])
    # Render is for the CLI; a command imports it only to write a rendered file.
    found += violations("gradcli.commands", ["gradcli.render"], allowed_sources=RENDERING_COMMANDS)
    assert not found, listing(found)


def test_only_the_daemon_and_the_entry_points_import_the_cli() -> None:
    found = violations(PACKAGE, ["gradcli.cli"], allowed_sources=CLI_IMPORTERS)
    found += violations("gradcli.cli", FORBIDDEN["gradcli.cli"])
    assert not found, "the layering is core <- commands <- cli <- warm.daemon:\n" + listing(found)


def test_the_console_script_loads_only_the_standard_library_and_the_protocol() -> None:
    stdlib = sys.stdlib_module_names
    loaded: dict[str, str] = {}  # module -> why it is loaded
    outside = []

    def load(module: str, why: str) -> None:
        # A module's packages run first: gradcli/__init__.py, gradcli/warm/__init__.py.
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in loaded:
                loaded[name] = why
                for imp in package()[name].imports:
                    if not imp.at_import_time:
                        continue
                    target = gradcli_target(imp.target) if under(imp.target, PACKAGE) else None
                    if target:
                        load(target, f"{imp.where}")
                    elif imp.target.split(".")[0] not in stdlib:
                        outside.append(f"{imp.where}: {imp.source} imports {imp.target} at import time")

    load(ENTRY, "the console script")
    extra = [f"{name} (loaded by {why})" for name, why in loaded.items() if name not in ENTRY_MAY_LOAD]
    assert not outside and not extra, listing(outside + extra)


# --- the reader itself ------------------------------------------------------------------------

def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above are only as good as the reader; a module with each form, read."""
    source = '''
import importlib
import gradcli.core.session
import gradcli.render.text as text
from gradcli.core import parse
from gradcli.report import _json_numbers
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from gradcli.cli import app
def f():
    from gradcli.warm import daemon
    api = importlib.import_module("gradcli.api")
    return parse._private, text._console, gradcli.core.session._setup, getattr(daemon, "_x"), api._y, \
        parse.__name__
'''
    module = Module("gradcli.commands.example", tmp_path / "example.py")
    Reader(module).visit(ast.parse(source))
    seen = {(imp.target, imp.name, imp.at_import_time, imp.type_checking) for imp in module.imports}
    assert ("gradcli.core.session", None, True, False) in seen
    assert ("gradcli.core.parse", None, True, False) in seen
    assert ("gradcli.report", "_json_numbers", True, False) in seen
    assert ("gradcli.cli.app", None, False, True) in seen
    assert ("gradcli.warm.daemon", None, False, False) in seen
    assert ("gradcli.api", None, False, False) in seen
    uses = " | ".join(module.private_uses)
    for borrowed in ("import _json_numbers", "gradcli.core.parse._private", "gradcli.render.text._console",
                     "gradcli.core.session._setup", "getattr(gradcli.warm.daemon, '_x')", "gradcli.api._y"):
        assert borrowed in uses, borrowed
    assert "__name__" not in uses
    assert len(module.private_uses) == 6


def test_the_circle_finder_finds_a_circle() -> None:
    imp = Import("a", "b", None, 1, True, False)
    graph = {"a": {"b": imp}, "b": {"c": Import("b", "c", None, 2, False, False)},
             "c": {"a": Import("c", "a", None, 3, True, False)}, "d": {"a": imp}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert [i.line for i in a_circle(graph, ["a", "b", "c"])] == [1, 2, 3]


def test_the_package_is_read() -> None:
    modules = package()
    assert {"gradcli", "gradcli.entry", "gradcli.errors"} <= set(modules)
    assert any(under(name, "gradcli.core") for name in modules)
    assert sum(len(m.imports) for m in modules.values()) > 100
