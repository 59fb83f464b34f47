"""The import graph of callbridge's own modules: levels, loops and deferred imports.

    .venv/bin/python tools/import_graph.py            # levels and loops of calls/ + callbridge/
    .venv/bin/python tools/import_graph.py --root DIR # another checkout (e.g. a worktree)

An edge A → B is an `import` of B (or of a name from B) anywhere in A's source, except
under `if TYPE_CHECKING:` (never run). Imports inside a function ("deferred") are edges
too: they only hide a loop from Python, they do not remove it. Level 0 imports none of
our modules; level n imports only levels < n. Modules in a loop share one level and are
listed together. `tests/test_layout.py` uses
`module_graph` and `loops` to keep the loops out.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGES = ("calls", "callbridge")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def own_modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found[module_name(root, path)] = path
    return found


def _imported(node: ast.AST, here: str, is_package: bool) -> Iterable[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = here.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)


def module_graph(root: Path) -> dict[str, dict[str, bool]]:
    """{module: {imported module: deferred?}} over our own modules (packages resolve to
    their __init__; a name imported from a package counts as its submodule if one exists)."""
    modules = own_modules(root)
    graph: dict[str, dict[str, bool]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: dict[str, bool] = {}
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if _in_type_checking(tree, node):
                continue  # for the type checker only: never imported at run time
            deferred = id(node) not in top_level
            for target in _imported(node, name, path.name == "__init__.py"):
                if target in modules and target != name and not _is_parent(target, name):
                    edges[target] = edges.get(target, True) and deferred
        graph[name] = edges
    return graph


def _is_parent(target: str, name: str) -> bool:
    """`from calls.models import X` inside calls/models/… is the package, not a loop."""
    return name.startswith(target + ".")


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for block in tree.body:
        if (
            isinstance(block, ast.If)
            and isinstance(block.test, ast.Name)
            and block.test.id == "TYPE_CHECKING"
            and any(node is child for child in ast.walk(block))
        ):
            return True
    return False


def loops(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
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
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def levels(graph: dict[str, dict[str, bool]]) -> dict[str, int]:
    component_of = {member: tuple(c) for c in loops(graph) for member in c}
    level: dict[str, int] = {}

    def level_of(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node in level:
            return level[node]
        group = component_of.get(node, (node,))
        deps = {t for member in group for t in graph[member] if t not in group}
        value = 1 + max((level_of(t, seen | set(group)) for t in deps), default=-1)
        for member in group:
            level[member] = value
        return value

    for node in graph:
        level_of(node)
    return level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    root = parser.parse_args().root.resolve()
    graph = module_graph(root)
    by_level: dict[int, list[str]] = {}
    for name, value in levels(graph).items():
        by_level.setdefault(value, []).append(name)
    print(f"{len(graph)} modules, {max(by_level) + 1} levels")
    for value in sorted(by_level):
        print(f"  level {value}: {', '.join(sorted(by_level[value]))}")
    found = loops(graph)
    print(f"loops: {len(found)}")
    for component in found:
        print("  " + " ⇄ ".join(component))
    deferred = [(a, b) for a, edges in graph.items() for b, lazy in edges.items() if lazy]
    print(f"deferred imports (inside functions): {len(deferred)}")
    for a, b in sorted(deferred):
        print(f"  {a} → {b}")


if __name__ == "__main__":
    main()
