"""Imports go downward: no cycle among the runtime's modules, imports inside functions included.

Only the composition root and the entry modules wire the parts together, so only they may sit
on a cycle. Imports under ``if TYPE_CHECKING:`` never run and are not counted.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "lsbackend"
#: The composition root and the entry modules: CLI, WSGI, ``python -m``, RQ worker, training child.
WIRING = {"app", "cli", "wsgi", "__main__", "worker", "train_job"}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions, classes, try blocks), but not TYPE_CHECKING ones."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(child for child in ast.iter_child_nodes(node) if not _is_type_checking(child))
    return found


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``.x``, ``lsbackend.x``, ``from . import x``)."""
    found = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
            found.update(parts[1] for parts in names if parts[0] == PACKAGE.name and len(parts) > 1)
            continue
        if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == PACKAGE.name):
            parts = (node.module or "").split(".")
            inner = parts[0] if node.level == 1 else (parts[1] if len(parts) > 1 else "")
            if inner:
                found.add(inner)
            else:  # from . import x / from lsbackend import x: x is a module, or a name of __init__
                found.update(a.name if a.name in modules else "__init__" for a in node.names)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: imported_modules(p, modules) - {p.stem} for p in PACKAGE.glob("*.py")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_runtime_has_no_import_cycle_outside_the_wiring_modules():
    graph = {mod: deps - WIRING for mod, deps in import_graph().items() if mod not in WIRING}
    assert cycles(graph) == [], f"import cycles (lazy imports count too): {cycles(graph)}"


def test_imports_inside_functions_are_seen():
    """``app.open_store`` imports the S3 store only when MODEL_STORE asks for it: the graph must see that."""
    graph = import_graph()
    assert "storage_s3" in graph["app"] and "redis_queue" in graph["app"]
    assert "worker" in graph["cli"]  # cmd_worker imports it: redis and rq are an extra


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import z\n")
    modules = {"a", "b", "c"}
    graph = {name: imported_modules(tmp_path / f"{name}.py", modules) for name in modules}
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cycles(graph) == [["a", "b"]]


# --- what a start imports: only what the configured features need ------------------------------------------
#: Imported only when a setting asks for them: MODEL_STORE (S3), REDIS_URL (Redis + RQ), an ONNX model.
OPTIONAL = ["boto3", "botocore", "redis", "rq", "onnxruntime"]
LOADED = "import json, sys; print(json.dumps(sorted(m for m in {names} if m in sys.modules)))"


def loaded_after(statement: str, names: list[str], env: dict[str, str]) -> list[str]:
    """Which of ``names`` a fresh interpreter has imported after running ``statement`` in the repo."""
    code = f"{statement}\n{LOADED.format(names=names)}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)  # bounded; imports are slow on a busy box
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
def test_a_default_start_imports_no_s3_redis_or_onnx(tmp_path):
    """The gunicorn worker's import (``lsbackend.wsgi`` builds the app) with default settings."""
    env = {"MODEL_DIR": str(tmp_path), "MODEL_STORE": "", "REDIS_URL": "", "MODEL_URI": ""}
    assert loaded_after("import lsbackend.wsgi", OPTIONAL, env) == []


@pytest.mark.slow
def test_the_start_command_imports_only_the_settings_before_gunicorn_replaces_it():
    """``python -m lsbackend start`` execs gunicorn: what it imported first would be imported twice."""
    heavy = ["flask", "numpy", "lsbackend.base", "lsbackend.app", "lsbackend.cli", "prometheus_client"]
    assert loaded_after("import lsbackend.start", heavy, {}) == []
    assert loaded_after("from lsbackend import LabelStudioMLBase", ["lsbackend.base"], {}) == ["lsbackend.base"]
