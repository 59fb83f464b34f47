"""The layout docs/development.md describes is the real one, and its layers hold."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_DOC = ROOT / "docs/development.md"


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools/import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_paths() -> set[str]:
    """Paths named in the first column of the layout table: a cell's `dir/` names the
    folder of the bare file names after it."""
    text = LAYOUT_DOC.read_text()
    section = text[text.index("## Layout") : text.index("\n## ", text.index("## Layout") + 1)]
    paths = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if name.endswith("/"):
                folder = name
                paths.add(name)
            else:
                paths.add(name if "/" in name else folder + name)
    return paths


def own_modules() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in ("calls", "callbridge")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and path.name != "__init__.py"
    }


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_it_names_every_module_in_the_layout_table() -> None:
    missing = own_modules() - documented_paths()
    assert not missing, f"add these to the Layout table of docs/development.md: {sorted(missing)}"


def test_it_names_only_paths_that_exist() -> None:
    stale = sorted(path for path in documented_paths() if not (ROOT / path).exists())
    assert not stale, f"docs/development.md names paths that are gone: {stale}"


def test_it_has_no_import_loops() -> None:
    graph_tools = _import_graph()
    loops = graph_tools.loops(graph_tools.module_graph(ROOT))
    assert loops == [], f"import loops (tools/import_graph.py shows them): {loops}"


def test_it_keeps_the_pure_modules_free_of_django_and_aiortc() -> None:
    pure = [
        ROOT / "calls/errors.py",
        ROOT / "calls/audit_format.py",
        ROOT / "calls/workers/protocol.py",
        ROOT / "calls/routing/strategy.py",
        *sorted((ROOT / "calls/signaling").glob("*.py")),
    ]
    for path in pure:
        frameworks = {
            name
            for name in imports_of(path)
            if name.split(".")[0] in {"django", "channels", "rest_framework", "aiortc", "av"}
        }
        assert not frameworks, f"{path.relative_to(ROOT)} imports {sorted(frameworks)}"


def test_it_keeps_the_media_layer_off_the_database() -> None:
    for path in sorted((ROOT / "calls/media").glob("*.py")):
        touched = {
            name
            for name in imports_of(path)
            if name.split(".")[0] in {"django", "channels"} or name.startswith("calls.models")
        }
        assert not touched, f"{path.relative_to(ROOT)} imports {sorted(touched)}"


def test_it_keeps_the_models_below_the_layers_that_use_them() -> None:
    later = ("calls.workers", "calls.api", "calls.consumers", "calls.calling", "calls.limits")
    for path in sorted((ROOT / "calls/models").glob("*.py")):
        upward = {name for name in imports_of(path) if name.startswith(later)}
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"
