"""The template's own code (hooks, tests, benchmarks) passes ruff, like the repos it bakes."""

from __future__ import annotations

import sys

from conftest import TEMPLATE, run


def test_template_code_passes_ruff():
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "hooks", "tests", "bench"], cwd=TEMPLATE)
