"""The layer contract, checked on the real import graph (every import, function-local ones too):
core -> data -> config -> model -> train | eval -> analysis, then the command-line tools. A
module imports only from its own layer or below; train and eval do not import each other; no
import circles; and every module imports on its own (a package's __init__ runs before its
submodules, which a graph of explicit imports does not show)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = {"contracts", "errors", "io", "locks", "redact", "rerun", "safe_paths", "yaml_comments"}
TOOLS = {"latent_traits.docs", "latent_traits.preflight", "latent_traits.data.__main__",
         "latent_traits.data.check"}  # data check reads data and parses answers as evaluation scores them
RANK = {"core": 0, "data": 1, "config": 2, "model": 3, "train": 4, "eval": 4, "analysis": 5, "tools": 6}

def modules(src: Path = SRC) -> dict[str, Path]:
    found = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(src: Path = SRC) -> set[tuple[str, str]]:
    """(importer, imported) over the project's modules; `from pkg import name` resolves to the
    submodule `pkg.name` where one exists."""
    mods = modules(src)
    edges = set()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in mods:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    edges.add((name, candidate))
    return edges


def layer(module: str) -> str:
    if module in TOOLS:
        return "tools"
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    return parts[1]


def upward(edges) -> set[tuple[str, str]]:
    bad = set()
    for importer, imported in edges:
        mine, theirs = layer(importer), layer(imported)
        if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
            bad.add((importer, imported))
    return bad


def circles(edges) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on_stack, found = {}, {}, [], set(), set()

    def visit(node):
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
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    assert {m: layer(m) for m in modules() if layer(m) not in RANK} == {}


def test_imports_only_look_down():
    assert upward(import_graph()) == set(), "an import runs up or sideways between layers"


def test_no_new_import_circles():
    assert circles(import_graph()) == set()


def test_no_import_hidden_in_a_function():
    """Project imports sit at the top of a module: one inside a function would hide a circle from
    the graph (the optional packages, wandb, vllm, spaCy, are imported where they are used)."""
    hidden = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{name}:{n.lineno}" for n in ast.walk(node)
                           if isinstance(n, ast.ImportFrom)
                           and (n.level or (n.module or "").startswith("latent_traits"))
                           or isinstance(n, ast.Import) and any(a.name.startswith("latent_traits") for a in n.names)]
    assert hidden == []


def test_every_module_imports_first():
    """Each module imported first in a fresh module table: a circle through a package's
    __init__ (which the explicit graph leaves out) fails here with 'partially initialized'."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {sorted(modules())!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'latent_traits' or m.startswith('latent_traits.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        failed.append(f'{name}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=SRC, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


def test_the_checker_catches_a_downstream_import_and_a_circle(tmp_path):
    """The checker itself: a data module that imports analysis, and two modules that import
    each other, are both reported."""
    package = tmp_path / "latent_traits"
    for folder in ("data", "analysis"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "data" / "load.py").write_text("def f():\n    from latent_traits.analysis import pca\n")
    (package / "analysis" / "pca.py").write_text("from latent_traits.analysis.report import x\n")
    (package / "analysis" / "report.py").write_text("from . import pca\n")
    edges = import_graph(tmp_path)
    assert upward(edges) == {("latent_traits.data.load", "latent_traits.analysis.pca")}
    assert circles(edges) == {frozenset({"latent_traits.analysis.pca", "latent_traits.analysis.report"})}
