"""The benchmarks run end to end on their tiny settings and report every figure.

No timing is asserted: figures depend on the machine. The tests check that each
benchmark bakes, trains, serves, measures and writes a complete report with no
invalid responses.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    "single_task_p50", "single_task_p99", "health_p50", "rps_c1", "rps_c8", "batch_1", "batch_100", "batch_1000",
    "first_prediction_s", "worker_rss", "worker_pss", "fit_10k", "during_training_p50", "during_training_p99",
    "training_p99_vs_idle", "idle_worker_rss_after_training",
]
SERVERS = ["gunicorn-gthread", "gunicorn-sync", "granian"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc for memory figures"),
]


def _run(script: str, results: Path) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--results-dir", str(results)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run


def test_quick_benchmark_reports_every_figure_for_every_server(tmp_path: Path) -> None:
    run = _run("predict_bench.py", tmp_path)
    report = json.loads((tmp_path / "predict_bench.json").read_text())
    figures = report["figures"]
    for name in FIGURES:
        figure = figures[name]
        for key in ("server", "raw", "ratio"):
            assert isinstance(figure[key], float) and figure[key] > 0, (name, key, figure)
    assert figures["errors"]["server"] == 0, figures["errors"]["examples"]
    assert figures["errors"]["checked"] > 0
    assert figures["during_training_p50"]["state"] == "succeeded"
    memory = figures["idle_worker_rss_after_training"]
    assert memory["training_children_seen"] >= 1 and memory["training_child_peak_rss"] > 0, memory  # not in-worker
    assert list(report["axis"]) == SERVERS
    for kind, axis in report["axis"].items():
        assert axis["figures"]["single_task_p50"]["server"] > 0, kind
        assert set(axis["slow_clients"]) == {"1", "8"}, kind
        assert axis["signals"]["SIGHUP"]["answered"] > 0, kind
        assert axis["signals"]["SIGTERM"]["exit_code"] == 0, (kind, axis["signals"])
    # the production command replaces its worker on SIGHUP and keeps running
    hup = report["axis"]["gunicorn-gthread"]["signals"]["SIGHUP"]
    assert hup["workers_replaced"] and hup["still_running"], hup
    assert (tmp_path / "predict_bench.md").read_text().startswith("Production command")
    assert "| figure | gunicorn-gthread | gunicorn-sync | granian |" in run.stdout


def test_quick_image_benchmark_reports_every_batch(tmp_path: Path) -> None:
    run = _run("image_bench.py", tmp_path)
    report = json.loads((tmp_path / "image_bench.json").read_text())
    assert report["errors"]["count"] == 0, report["errors"]["examples"]
    assert report["errors"]["checked"] > 0
    assert set(report["figures"]) == {"1", "50", "200"}
    threads = [str(n) for n in report["settings"]["threads"]]
    for size, figure in report["figures"].items():
        assert figure["sequential_s"] > 0, size
        assert sorted(figure["by_threads"]) == sorted(threads), size
        for n in threads:
            assert figure["by_threads"][n]["speedup"] > 0, (size, n)
    for n in threads:
        assert report["peak_memory_mib"][n]["peak"] > 0, n
    assert "MEDIA_FETCH_THREADS=" in run.stdout


def test_quick_detection_benchmark_validates_every_answer(tmp_path: Path) -> None:
    run = _run("detection_bench.py", tmp_path)
    report = json.loads((tmp_path / "detection_bench.json").read_text())
    assert report["errors"]["count"] == 0, report["errors"]["examples"]
    assert report["errors"]["checked"] == report["settings"]["rounds"] + 1  # the warm-up batch is checked too
    assert report["boxes_per_picture"] > 0  # the trained detector finds boxes, so the box checks had work to do
    for name, value in report["figures"].items():
        assert value > 0, name
    assert report["worker_memory_mib"]["peak"] > 0
    assert "images/s" in run.stdout


def _detection_bench():
    spec = importlib.util.spec_from_file_location("detection_bench", ROOT / "bench" / "detection_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("change", "reason"), [
    ({"x": 90.0}, "outside 0..100"), ({"y": -1.0}, "outside 0..100"), ({"rectanglelabels": ["Cat"]}, "labels"),
    ({"width": 10.5}, "differ from the in-process"),
])
def test_detection_benchmark_refuses_a_wrong_box(change: dict, reason: str) -> None:
    bench = _detection_bench()
    box = {"type": "rectanglelabels",
           "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rectanglelabels": ["Square"]}}
    answer = {"results": [{"model_version": "v1", "result": [box]}]}
    expected = [bench.boxes_of(answer["results"][0])]
    labels = {"Square", "Circle"}
    assert bench.problem(200, json.dumps(answer).encode(), expected, labels, "v1") is None
    box["value"].update(change)
    assert reason in bench.problem(200, json.dumps(answer).encode(), expected, labels, "v1")
    assert "1 predictions for 2 tasks" in bench.problem(200, json.dumps(answer).encode(), expected * 2, labels, "v1")
