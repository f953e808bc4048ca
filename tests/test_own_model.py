"""A user's own model passes the baked repo's tests: the runtime's tests hold any model.py to the runtime's rules.

For each variant, a small model of another kind than the sample (keyword rules for text, a gazetteer for
NER, colours for images, blobs for detection: ``tests/own_models/``) replaces ``model.py``, its own tests
replace ``tests/test_model.py``, and the fast tier (``make test``: ``pytest -m "not slow"`` and ruff) passes
unchanged. Run with this venv's python, as tests/test_generation.py runs the baked suites.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import MODEL_TYPES, run

OWN_MODELS = Path(__file__).resolve().parent / "own_models"


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_users_own_model_and_tests_pass_the_fast_tier(cookies, model_type):
    result = cookies.bake(extra_context={"model_type": model_type})
    assert result.exit_code == 0, result.exception
    repo = Path(result.project_path)
    shutil.copyfile(OWN_MODELS / f"{model_type}.py", repo / "model.py")
    shutil.copyfile(OWN_MODELS / f"{model_type}_tests.py", repo / "tests" / "test_model.py")
    proc = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow"],
               cwd=repo, timeout=1800)
    summary = proc.stdout.split("short test summary info")[-1] if "short test summary info" in proc.stdout else ""
    assert "tests/test_model.py" not in summary, f"the user's own tests must run, not skip:\n{summary}"
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=repo)
