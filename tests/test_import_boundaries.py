"""tests/ and bench/ do not lean on each other: bench never imports tests, and only the
tests of bench's own modules (test_bench_*.py) import bench. What both need to start a
server is in callbridge/local_server.py and local_services.py, which import nothing of
either (nor Django).
Within tests/, what several files share lives in tests/support/: no file imports a test
module or conftest."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """The modules `path` imports (absolute imports), dotted."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    """The top-level names `path` imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


def test_bench_does_not_import_tests() -> None:
    offenders = [p.name for p in (ROOT / "bench").glob("*.py") if "tests" in imported_packages(p)]
    assert not offenders


def test_only_the_tests_of_bench_import_bench() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if "bench" in imported_packages(path) and not path.name.startswith("test_bench_")
    ]
    assert not offenders


def test_the_shared_server_starter_needs_only_the_standard_library() -> None:
    for shared in ("local_server.py", "local_services.py"):
        imported = imported_modules(ROOT / "callbridge" / shared) - {"callbridge.local_server"}
        packages = {name.split(".")[0] for name in imported} - {"__future__"}
        assert packages <= sys.stdlib_module_names, shared


def test_tests_share_helpers_through_tests_support_only() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(path)
            if name.startswith(("tests.test_", "tests.conftest"))
        )
        for path in (ROOT / "tests").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
