"""The prediction benchmark runs end to end on its tiny setting and reports every figure.

No timing is asserted: figures depend on the machine. The test checks that the
benchmark bakes, trains, serves, measures and writes a complete report with no
invalid responses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    "single_task_p50", "single_task_p99", "health_p50", "rps_c1", "rps_c8", "batch_1", "batch_100", "batch_1000",
    "first_prediction_s", "worker_rss", "worker_pss", "fit_10k", "during_training_p50", "during_training_p99",
]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc for memory figures")
def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "predict_bench.py"), "--quick", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads((tmp_path / "predict_bench.json").read_text())
    figures = report["figures"]
    for name in FIGURES:
        figure = figures[name]
        for key in ("server", "raw", "ratio"):
            assert isinstance(figure[key], float) and figure[key] > 0, (name, key, figure)
    assert figures["errors"]["server"] == 0, figures["errors"]["examples"]
    assert figures["errors"]["checked"] > 0
    assert figures["during_training_p50"]["state"] == "succeeded"
    assert (tmp_path / "predict_bench.md").read_text().startswith("| figure |")
    assert "| figure |" in run.stdout
