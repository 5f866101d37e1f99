"""The model and pretrained packages import each other in one direction only.

``checkpoint.py`` and ``imd_model.py`` used to import each other inside functions, so
which module loaded first decided whether an import worked. Imports inside functions
count here too: they are the ones that hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import imd_core

PACKAGES = ("model", "pretrained")


def _import_graph() -> dict[str, set[str]]:
    root = Path(imd_core.__file__).parent
    files = {f"imd_core.{pkg}.{p.stem}": p for pkg in PACKAGES for p in (root / pkg).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (empty when there is none)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for nxt in sorted(graph[node]):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return []


def test_model_and_pretrained_modules_have_no_import_cycle():
    graph = _import_graph()
    assert "imd_core.model.imd_model" in graph["imd_core.model.checkpoint"]  # the graph is read
    assert _cycle(graph) == []


def test_checkpoint_imports_first_in_a_fresh_interpreter():
    code = "import imd_core.model.checkpoint as c; print(c.load_model.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "load_model"
