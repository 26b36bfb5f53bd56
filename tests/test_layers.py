"""The layer contract, checked on the real import graph (every import, function-local ones too):
core -> data -> config -> model -> train | eval -> analysis, then the command-line tools. A
module imports only from its own layer or below; train and eval do not import each other; no
import circles. Violations that predate this test are listed and may only disappear."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = {"contracts", "errors", "io", "locks", "redact", "rerun", "safe_paths", "yaml_comments"}
TOOLS = {"latent_traits.docs", "latent_traits.preflight", "latent_traits.data.__main__"}
RANK = {"core": 0, "data": 1, "config": 2, "model": 3, "train": 4, "eval": 4, "analysis": 5, "tools": 6}

# known, to be removed (each is an arrow that runs up or sideways, or a circle's members)
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CIRCLES = {
    frozenset({"latent_traits.analysis.options", "latent_traits.analysis.report", "latent_traits.analysis.run",
               "latent_traits.analysis.sections", "latent_traits.analysis.side",
               "latent_traits.analysis.side._texts", "latent_traits.analysis.side.registry"}),
    frozenset({"latent_traits.data.offline", "latent_traits.data.offline.maths", "latent_traits.data.offline.pairs",
               "latent_traits.data.offline.programs", "latent_traits.data.offline.sentiment"}),
}


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
    edges = import_graph()
    assert upward(edges) - KNOWN_UPWARD == set(), "a new import runs up or sideways between layers"
    assert KNOWN_UPWARD - upward(edges) == set(), "a known violation is gone: remove it from KNOWN_UPWARD"


def test_no_new_import_circles():
    found = circles(import_graph())
    assert found - KNOWN_CIRCLES == set(), "a new import circle"
    assert KNOWN_CIRCLES - found == set(), "a known circle is gone or changed: update KNOWN_CIRCLES"


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
