"""The package's layers hold: every import points down the order below, and no modules import each other in a ring.

Every ``import`` counts, wherever it is written: at the top, inside a function (a lazy import hides a cycle,
it does not remove it) and under ``TYPE_CHECKING`` (mypy reads those, and a type that must come from above
is a dependency on what is above).  There is no exception list.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "joulescore"

#: lowest first; a module may import its own layer and those below, never one above
LAYERS: tuple[frozenset[str], ...] = (
    # the base: errors, units and number formats, text and file helpers, the machine's identity, fact tables
    frozenset({"__init__", "errors", "units", "visible", "textfile", "outputs", "hardware", "reference"}),
    frozenset({"tasks"}),  # task specs and metrics: read by the run's settings (a task's natural length)
    frozenset({"model"}),  # the run's settings, the record and the other plain types
    frozenset({"meters", "backends"}),
    frozenset({"store"}),
    frozenset({"bench"}),
    frozenset({"report", "impact", "proxy"}),
    frozenset({"cli", "pytest_plugin"}),  # the entry points: the command line and the pytest plugin
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _known(name: str) -> str | None:
    """The module an imported name lives in (``a.b.C`` -> ``a.b``), None outside the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> dict[str, int]:
    """Every package module that ``module`` imports, anywhere in its text, with the line of the first import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        for name in names:
            target = _known(name) if name.startswith("joulescore") else None
            if target is not None and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for n, members in enumerate(LAYERS):
        if top in members:
            return n
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


def test_every_import_points_down_the_layers() -> None:
    upward = [f"{m}:{line} imports {t} (layer {layer(t)} is above {layer(m)})"
              for m, targets in sorted(GRAPH.items()) for t, line in sorted(targets.items()) if layer(t) > layer(m)]
    assert not upward, "\n".join(upward)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_modules_import_each_other_in_a_ring() -> None:
    rings = cycles(GRAPH)
    assert not rings, "\n".join(
        " <-> ".join(ring) + ": " + ", ".join(f"{m}:{GRAPH[m][t]} -> {t}" for m in ring for t in GRAPH[m] if t in ring)
        for ring in rings)


def test_the_checks_see_a_ring_and_an_import_hidden_in_a_function() -> None:
    """The rules themselves: a ring is found, and so is an import written inside a function."""
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []
    assert "joulescore.report.page" in GRAPH["joulescore.cli.report"]  # imported inside a command's function
    assert layer("joulescore.cli.app") > layer("joulescore.bench.runner") > layer("joulescore.model.config")
