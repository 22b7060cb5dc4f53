"""The import graph of the product: one-way layers, no circles, no imports tucked into functions.

Every `import` counts, wherever it stands (module level, inside a function, under TYPE_CHECKING):
an import hidden in a function still ties the two files together.

    fieldrelay_cli    the command line and process entry points: may use everything below
    receiver          webhooks in, the console          workers   Celery tasks, pipeline, connectors
    rules             the rule language
    fieldrelay        the ground floor: imports nothing of the project
    sandbox           the API simulators: import nothing of the product
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fieldrelay", "rules", "receiver", "workers", "sandbox", "fieldrelay_cli")
# What each package may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "fieldrelay": set(),
    "rules": {"fieldrelay"},
    "receiver": {"fieldrelay", "rules"},
    "workers": {"fieldrelay", "rules"},
    "sandbox": set(),
    "fieldrelay_cli": {"fieldrelay", "rules", "receiver", "workers", "sandbox"},
}
# Imports of project modules inside a function, each with the reason it cannot be at the top.
LATE_IMPORTS = {
    (
        "fieldrelay_cli/processes.py",
        "workers.celery_app",
    ): "the Celery app reads the settings when imported, after the command has resolved the Redis URL",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports(path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from workers import pipeline` imports workers.pipeline; `from x.y import name` imports x.y.
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            ]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                yield name, node.lineno, id(node) in in_function


def graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = project_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    late: list[str] = []
    for name, path in modules.items():
        for target, line, inside in imports(path, modules):
            if target == name:
                continue
            edges[name].add(target)
            where = str(path.relative_to(ROOT))
            if inside and (where, target) not in LATE_IMPORTS:
                late.append(f"{where}:{line} imports {target} inside a function")
    return edges, late


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    edges, _ = graph()
    assert cycles(edges) == []


def test_packages_import_only_the_floors_below_them():
    edges, _ = graph()
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in edges.items()
        for target in targets
        if target.split(".")[0] != source.split(".")[0] and target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    )
    assert wrong == []


def test_no_project_import_is_hidden_in_a_function():
    _, late = graph()
    assert late == []


def test_the_walk_sees_the_imports_it_checks():
    """Guard the test itself: it must find the arrows it claims are one-way."""
    edges, _ = graph()
    assert "fieldrelay.state" in edges["workers.pipeline"] or "fieldrelay.state" in edges["workers.runtime"]
    assert "rules" in edges["workers.pipeline"] and "fieldrelay.events" in edges["rules.engine"]
    assert "workers.actions.registry" in edges["fieldrelay_cli.asgi"]
