"""Fixtures for baking the template and running what it bakes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from jinja2 import Environment
from variants import MODEL_TYPES, default_config

TEMPLATE = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = {t: default_config(t) for t in MODEL_TYPES}


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in a baked repo; fail with its output when it fails."""
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}"
    return proc


def render_hook(name: str, answers: dict, tmp_path: Path) -> ModuleType:
    """Render a hook with ``answers`` as cookiecutter would, and import it as a module."""
    source = (TEMPLATE / "hooks" / f"{name}.py").read_text(encoding="utf-8")
    rendered = Environment().from_string(source).render(cookiecutter=answers)
    path = tmp_path / f"{name}.py"
    path.write_text(rendered, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"hook_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
