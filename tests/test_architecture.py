"""The architecture of vpnhub/, checked from the source (docs/ARCHITECTURE.md).

The import graph is built with `ast`, not by importing: every `import` and
`from ... import` anywhere in a module counts (module level, inside
functions, under `if TYPE_CHECKING:`), because a function-level or
type-only import that closes a circle is still a circle, only a hidden one.
`importlib.import_module("literal")` and `__import__("literal")` count too.

Checked: no import circle inside vpnhub/; no `importlib` in the IKE engine;
the layer table `RULES` (the same table as docs/ARCHITECTURE.md).

Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` first, but that
is not counted as an import of those packages: a package whose `__init__`
re-exports its own modules would otherwise always be a circle.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "vpnhub"
ROOT = "__init__"  # the area name of the package's own __init__.py


# ------------------------------------------------------------------------------ the graph
@dataclass
class Module:
    """One module of the package and what it imports, with the first line of each."""

    name: str
    path: Path
    file: str  # the path from the package's parent, for messages
    is_package: bool
    inner: dict[str, int] = field(default_factory=dict)  # modules of the package
    outer: dict[str, int] = field(default_factory=dict)  # stdlib and third-party names

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(package_dir: Path) -> dict[str, Module]:
    """Every .py file under `package_dir`, by dotted module name, and every C
    accelerator, known by its type stub (`esp/_espfast.pyi` beside `_espfast.c`)."""
    modules = {}
    stubs = [p for p in package_dir.rglob("*.pyi") if not p.with_suffix(".py").exists()]
    for path in sorted([*package_dir.rglob("*.py"), *stubs]):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        file = path.relative_to(package_dir.parent).as_posix()
        modules[name] = Module(name, path, file, is_package)
    return modules


def _longest_module(name: str, modules: dict[str, Module]) -> str | None:
    """`name` itself, or the nearest enclosing module (`a.b.attr` -> `a.b`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(node: ast.ImportFrom, mod: Module) -> str:
    """The absolute module a `from X import ...` names (PEP 328 relative levels)."""
    if not node.level:
        return node.module or ""
    base = mod.package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _literal_import(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` or `__import__("x")`, if a literal."""
    f = node.func
    called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    if called not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _imported(node: ast.AST, mod: Module, modules: dict[str, Module]) -> list[str]:
    """The dotted names one AST node imports (none for other nodes)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(node, mod)
        attrs = [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        if _longest_module(base, modules) is None:
            return [base, *attrs]  # `from time import monotonic`: time and time.monotonic
        # `from pkg import x`: the submodule pkg.x if there is one, else a name of pkg
        submodules = [a for a in attrs if a in modules]
        return submodules + ([base] if len(submodules) < len(node.names) else [])
    if isinstance(node, ast.Call) and (literal := _literal_import(node)):
        return [literal]
    return []


def scan(mod: Module, modules: dict[str, Module]) -> None:
    """Fill `mod.inner` and `mod.outer` from its source, with the first line of each."""
    for node in ast.walk(ast.parse(mod.path.read_text(), str(mod.path))):
        for name in _imported(node, mod, modules):
            line = getattr(node, "lineno", 0)
            target = _longest_module(name, modules)
            if target is None:
                mod.outer[name] = min(line, mod.outer.get(name, line))
            elif target != mod.name:
                mod.inner[target] = min(line, mod.inner.get(target, line))


def import_graph(package_dir: Path) -> dict[str, Module]:
    """The package's modules with their imports inside and outside the package."""
    modules = find_modules(package_dir)
    for mod in modules.values():
        scan(mod, modules)
    return modules


# ------------------------------------------------------------------------------ circles
def circles(graph: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v].inner:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def one_loop(component: list[str], graph: dict[str, Module]) -> str:
    """One concrete loop through a circle, each import with its file and line."""
    members, start = set(component), component[0]
    came_from: dict[str, str] = {}
    frontier = deque([start])
    while frontier and start not in came_from:  # breadth first: a shortest way back
        v = frontier.popleft()
        for w in sorted(graph[v].inner):
            if w in members and w not in came_from:
                came_from[w] = v
                frontier.append(w)
    loop, v = [start], came_from[start]
    while v != start:
        loop.append(v)
        v = came_from[v]
    loop = [start, *reversed(loop)]  # came_from runs backwards: start <- p1 <- ... <- start
    return "; ".join(f"{a} imports {b} ({graph[a].file}:{graph[a].inner[b]})"
                     for a, b in itertools.pairwise(loop))


# ------------------------------------------------------------------------------ layers
@dataclass(frozen=True)
class Rule:
    """What the modules of some areas may import.

    An area is a module or package of vpnhub named without the `vpnhub.`
    prefix (`ike`, `concentrator.core`, `ROOT` for vpnhub/__init__.py); it
    holds the module and everything below it. A module may always import
    from its own area.
    """

    areas: tuple[str, ...]
    may_import: tuple[str, ...] | None = None  # only these areas; None: any but must_not
    must_not: tuple[str, ...] = ()  # never these areas
    no_outside: tuple[str, ...] = ()  # never these modules from outside vpnhub


def in_area(module: str, area: str, root: str = "vpnhub") -> bool:
    if area == ROOT:
        return module == root
    full = f"{root}.{area}"
    return module == full or module.startswith(full + ".")


# Leaf modules: small, shared by every layer, importing nothing of vpnhub.
LEAVES = (ROOT, "secret", "text")
# Sans-I/O: no sockets, no event loop, no threads or processes, no clock
# (the caller passes `now`), no files by descriptor, no database.
SANS_IO = ("asyncio", "socket", "select", "selectors", "ssl", "subprocess", "threading",
           "multiprocessing", "signal", "fcntl", "sqlite3", "aiohttp", "time", "datetime")
CORE = ("wire", "crypto", "esp", "ike")
SHELL = ("concentrator", "manager", "client", "lab", "tools", "cli", "__main__")

# The table of docs/ARCHITECTURE.md, "What each layer may import"; keep both the same.
RULES = (
    Rule(LEAVES, may_import=()),
    # A leaf package: the one primitive `secret` and nothing else (docs/ARCHITECTURE.md).
    Rule(("config",), may_import=("secret",)),
    Rule(("wire",), may_import=LEAVES, no_outside=SANS_IO),
    Rule(("crypto",), may_import=("wire", *LEAVES), no_outside=SANS_IO),
    Rule(("esp",), may_import=("wire", "crypto", *LEAVES), no_outside=SANS_IO),
    Rule(("ike",), may_import=("wire", "crypto", *LEAVES), no_outside=SANS_IO),
    Rule(("net",), may_import=(*CORE, *LEAVES)),
    Rule(("admin", "admintext"), may_import=("net", *LEAVES)),
    Rule(("auth",), may_import=("config", *LEAVES)),
    Rule(("pki",), may_import=("config", "wire", "crypto", *LEAVES)),
    Rule(("session",), may_import=("config", *CORE, "net", *LEAVES)),
    # issue 17: the cluster member (PostgreSQL directory, leases) and its pure balance rule
    Rule(("cluster",), may_import=("config", *CORE, "net", "session", *LEAVES)),
    Rule(("cluster.balance",), may_import=LEAVES, no_outside=SANS_IO),
    Rule(("eventlimit", "eventlog"), may_import=("config", "eventlimit", *LEAVES)),
    Rule(("concentrator.core",),
         must_not=("concentrator.service", "manager", "net.dataplane", "net.tun"),
         no_outside=("socket", "select", "selectors", "subprocess", "fcntl")),
    Rule(("concentrator", "manager"), must_not=("client", "lab", "tools", "cli", "__main__")),
    Rule(("client",),
         must_not=("concentrator", "manager", "auth", "session", "lab", "tools", "cli",
                   "__main__")),
    Rule(("tools",), must_not=("concentrator", "manager", "client", "lab", "cli", "__main__")),
    Rule(("lab",), must_not=("concentrator", "manager", "client", "tools", "cli", "__main__")),
    Rule(("cli", "__main__")),  # the command line: anything
)


def violations(graph: dict[str, Module], rule: Rule, root: str = "vpnhub") -> list[str]:
    """Every import in `graph` that breaks `rule`, as `module imports target (file:line)`."""
    found = []
    for area in rule.areas:
        for mod in (m for m in graph.values() if in_area(m.name, area, root)):
            for target, line in sorted(mod.inner.items()):
                if in_area(target, area, root):
                    continue
                allowed = rule.may_import is None or any(
                    in_area(target, a, root) for a in rule.may_import)
                if not allowed or any(in_area(target, a, root) for a in rule.must_not):
                    found.append(f"{mod.name} imports {target} ({mod.file}:{line})")
            for name, line in sorted(mod.outer.items()):
                if any(name == b or name.startswith(b + ".") for b in rule.no_outside):
                    found.append(f"{mod.name} imports {name} ({mod.file}:{line})")
    return found


# ------------------------------------------------------------------------------ vpnhub
@pytest.fixture(scope="module")
def graph() -> dict[str, Module]:
    return import_graph(PACKAGE_DIR)


def test_no_import_circle_in_vpnhub(graph: dict[str, Module]) -> None:
    found = circles(graph)
    assert not found, "import circles in vpnhub/:\n" + "\n".join(
        f"- {', '.join(c)}\n  e.g. {one_loop(c, graph)}" for c in found)


def test_no_importlib_in_the_ike_engine(graph: dict[str, Module]) -> None:
    # the transition table holds real callables: mypy sees it, no circle hides behind strings
    ike = [m for m in graph.values() if in_area(m.name, "ike")]
    found = [f"{m.name}: {name} ({m.file}:{line})" for m in ike
             for name, line in m.outer.items()
             if name == "importlib" or name.startswith("importlib.")]
    found += [f"{m.name}: __import__ ({m.file}:{n.lineno})" for m in ike
              for n in ast.walk(ast.parse(m.path.read_text()))
              if isinstance(n, ast.Name) and n.id == "__import__"]
    assert not found, "importlib in vpnhub/ike/:\n" + "\n".join(found)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: "+".join(r.areas))
def test_layer_rule(graph: dict[str, Module], rule: Rule) -> None:
    found = violations(graph, rule)
    assert not found, (f"{', '.join(rule.areas)} break the layer table of"
                       " docs/ARCHITECTURE.md:\n" + "\n".join(found))


def test_the_layer_table_places_every_top_level_module(graph: dict[str, Module]) -> None:
    # a new package or root module must be given its place in the table (and the doc)
    placed = {a for r in RULES for a in r.areas}
    tops = {ROOT if m == "vpnhub" else m.split(".")[1] for m in graph}
    assert tops - placed == set()


def test_the_doc_shows_the_table() -> None:
    doc = (PACKAGE_DIR.parent / "docs" / "ARCHITECTURE.md").read_text()
    missing = [a for r in RULES for a in r.areas
               if a != ROOT and f"`{a}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"


# ------------------------------------------------------------------------------ the checker
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A throw-away package `pkg` made of `files` (relative path -> source)."""
    for rel, source in {"pkg/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return tmp_path / "pkg"


def test_a_planted_circle_is_found_through_function_and_type_only_imports(
        tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from . import a\n",
        "pkg/c.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from pkg.sub.d import D\n"),
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "import pkg.c as c\nD = 1\n",
        "pkg/e.py": "import pkg.a\n",  # imports into a circle without being in one
    })
    graph = import_graph(pkg)
    assert circles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]
    assert one_loop(["pkg.a", "pkg.b"], graph) == (
        "pkg.a imports pkg.b (pkg/a.py:1); pkg.b imports pkg.a (pkg/b.py:2)")


def test_relative_and_literal_imports_are_resolved(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/sub/__init__.py": "from .m import X\n",  # a package re-exporting: no circle
        "pkg/sub/m.py": ("from .. import top\nfrom ..sub import n\nfrom pkg import sub, lazy\n"
                         "import importlib\nimportlib.import_module('pkg.other')\nX = 1\n"),
        "pkg/sub/n.py": "",
        "pkg/top.py": "from time import monotonic\n",
        "pkg/lazy.py": "",
        "pkg/other.py": "def f():\n    from pkg import sub, VERSION\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.sub.m"].inner == {"pkg.top": 1, "pkg.sub.n": 2, "pkg.sub": 3,
                                        "pkg.lazy": 3, "pkg.other": 5}
    assert graph["pkg.sub.m"].outer == {"importlib": 4}
    assert graph["pkg.top"].outer == {"time": 1, "time.monotonic": 1}
    # a submodule and a name of the package's __init__ in one `from` line: both count
    assert graph["pkg.other"].inner == {"pkg.sub": 2, "pkg": 2}
    # m imports its own package (`from pkg import sub`) whose __init__ imports m back
    assert circles(graph) == [["pkg.other", "pkg.sub", "pkg.sub.m"]]


def test_a_package_re_exporting_its_modules_is_no_circle(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/sub/__init__.py": "from pkg.sub.m import X\nfrom .n import Y\n",
        "pkg/sub/m.py": "from pkg.sub.n import Y\nX = Y\n",
        "pkg/sub/n.py": "Y = 1\n",
        "pkg/user.py": "from pkg.sub import X\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.user"].inner == {"pkg.sub": 1}
    assert circles(graph) == []


def test_a_layer_rule_catches_an_upward_import_and_a_banned_module(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "pkg/core/__init__.py": "",
        "pkg/core/engine.py": "def f():\n    from pkg.shell import serve\n    import socket\n",
        "pkg/core/codec.py": "from pkg.core import engine\nfrom pkg import leaf\n",
        "pkg/shell.py": "from pkg.core.engine import f\ndef serve(): ...\n",
        "pkg/leaf.py": "",
    })
    graph = import_graph(pkg)
    rule = Rule(("core",), may_import=("leaf",), no_outside=("socket",))
    assert violations(graph, rule, root="pkg") == [
        "pkg.core.engine imports pkg.shell (pkg/core/engine.py:2)",
        "pkg.core.engine imports socket (pkg/core/engine.py:3)",
    ]
    assert violations(graph, Rule(("shell",), must_not=("core.engine",)), root="pkg") == [
        "pkg.shell imports pkg.core.engine (pkg/shell.py:1)"]
