"""The baked repo type-checks its runtime with its pinned mypy and its own settings (pyproject.toml), as its
``make test-all`` and CI run it, and the check is live: a type error makes it fail. That every variant's
runtime checks clean is part of ``test_generation.py::test_baked_repo_passes_its_own_tests_and_lint``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE, run
from test_generated_ci import pins


def bake(out: Path, model_type: str) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out),
                             extra_context={"model_type": model_type}))


def mypy(repo: Path) -> subprocess.CompletedProcess:
    """``python -m mypy`` as the Makefile runs it: no arguments, so the repo's pyproject.toml decides."""
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], check=False, cwd=repo,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("typecheck"), "text_classification")


def test_the_template_runs_the_mypy_the_baked_repo_pins(repo):
    dev = pins(repo / "requirements-dev.txt")
    assert dev["mypy"] == pins(TEMPLATE / "requirements.txt")["mypy"]
    assert "$(PY) -m mypy" in (repo / "Makefile").read_text(encoding="utf-8").split("test-all:")[1].split("\n\n")[0]


@pytest.mark.slow
def test_the_runtime_checks_clean_and_a_type_error_fails_the_check(repo):
    clean = mypy(repo)
    assert clean.returncode == 0, f"mypy found type errors in the baked runtime:\n{clean.stdout[-6000:]}{clean.stderr}"
    versions = repo / "lsbackend" / "versions.py"
    versions.write_text(versions.read_text(encoding="utf-8") + "\n\nBROKEN: int = version_number('v1') or 'none'\n",
                        encoding="utf-8")
    proc = mypy(repo)
    assert proc.returncode == 1
    assert "lsbackend/versions.py" in proc.stdout and "[assignment]" in proc.stdout


def test_mypy_is_installed_for_the_template_tests():
    """Missing means the environment is broken: pip install -r requirements.txt."""
    run([sys.executable, "-m", "mypy", "--version"], cwd=TEMPLATE)
