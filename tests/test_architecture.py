"""The package's shape: dependencies point downwards only, modules stay small, the public surface stays small."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import flowlearn

ROOT = Path(flowlearn.__file__).resolve().parent
#: the bottom floors: they never import an application package
FLOORS = {"_checks", "status", "io", "progress", "geometry", "graphs", "solvers", "engine", "linearized"}
APPLICATIONS = {"labeling", "learning", "pgm", "randomized", "encoding", "evaluation", "experiments", "data", "cli",
                "plotting", "reporting"}


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path) -> set:
    """The top-level flowlearn packages imported by the module at ``path``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level] if path.name == "__init__.py" else parts[:-node.level]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "flowlearn":
                target = node.module.split(".")[1:]
            else:
                continue
            out.add(target[0] if target else "")
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("flowlearn.")}
    return out - {""}


def _graph() -> dict:
    graph = defaultdict(set)
    for f in ROOT.rglob("*.py"):
        src = _package(f)
        graph[src] |= {t for t in _imports(f) if t != src and (ROOT / t).exists() or (ROOT / f"{t}.py").exists()}
        graph[src].discard(src)
    return graph


def test_package_dependencies_have_no_cycle():
    graph, state = _graph(), {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                pytest.fail(f"import cycle: {' -> '.join(stack + [node, nxt])}")
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_floors_never_import_the_applications():
    graph = _graph()
    for floor in FLOORS:
        assert not graph.get(floor, set()) & APPLICATIONS, (floor, graph[floor] & APPLICATIONS)


def test_no_module_over_400_lines():
    big = {str(f.relative_to(ROOT)): n for f in ROOT.rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert not big


def test_public_surface_is_small():
    assert 8 <= len(flowlearn.__all__) <= 20
    for name in flowlearn.__all__:
        assert getattr(flowlearn, name) is not None
    names = set()
    for info in pkgutil.walk_packages(flowlearn.__path__, "flowlearn."):
        if info.ispkg:
            names |= set(getattr(importlib.import_module(info.name), "__all__", ()))
    assert len(names) <= 120, len(names)
