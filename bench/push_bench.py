"""Throughput of bulk pre-annotation against a real Label Studio: ``python bench/push_bench.py``.

Bakes the text variant, starts Label Studio 1.23.2 (the integration tests' cached
venv), imports ``--tasks`` texts (20,000 by default) into a project and runs
``python -m lsbackend predict --project N --push`` from a joblib pipeline
(MODEL_URI), so no training is involved. It reports the command's own summary
(tasks per second, stored/skipped, and the seconds spent waiting for Label
Studio to list tasks and to import predictions, and predicting), the wall time,
and the machine's load average sampled during the push (the machine may be
shared). ``--efficient-import`` starts Label Studio with its
``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short``
feature flag on, under which an import recounts only the imported tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from integration import label_studio as harness
from integration.baked_backend import bake_backend
from integration.label_studio import ensure_label_studio, running_label_studio
from integration.test_label_studio import NEGATIVE, POSITIVE
from integration.test_pretrained import sentiment_pipeline

EFFICIENT_IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


class LoadSampler:
    """The 1-minute load average every few seconds while a block runs (a shared machine skews timings)."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 1), "mean": round(sum(s) / len(s), 1), "max": round(max(s), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--import-size", type=int, default=2000)
    parser.add_argument("--efficient-import", action="store_true",
                        help=f"start Label Studio with {EFFICIENT_IMPORT_FLAG}=true")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--startup-timeout", type=float, default=harness.STARTUP_TIMEOUT,
                        help="seconds Label Studio may take to start (its migrations are slow on a busy machine)")
    args = parser.parse_args(argv)
    harness.STARTUP_TIMEOUT = args.startup_timeout
    if args.efficient_import:
        os.environ[EFFICIENT_IMPORT_FLAG] = "true"  # Label Studio inherits our environment
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp_name:
        tmp = Path(tmp_name)
        baked = bake_backend(tmp / "baked", model_type="text_classification", project_name="Push Bench")
        model = tmp / "sentiment.joblib"
        sentiment_pipeline(model)
        with running_label_studio(ensure_label_studio(), tmp / "label-studio") as label_studio:
            client = label_studio.client()
            project = client.create_project("Push bench", (baked / "label_config.xml").read_text())["id"]
            texts = [{"text": t} for t in POSITIVE + NEGATIVE]
            started = time.monotonic()
            for start in range(0, args.tasks, 5000):
                chunk = [texts[i % len(texts)] for i in range(start, min(start + 5000, args.tasks))]
                client._call("POST", f"/api/projects/{project}/import", json=chunk)
            imported = time.monotonic() - started
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env.update(LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token,
                       MODEL_URI=str(model), MODEL_DIR=str(tmp / "models"))
            command = [sys.executable, "-m", "lsbackend", "predict", "--push", "--project", str(project),
                       "--batch-size", str(args.batch_size), "--page-size", str(args.page_size),
                       "--import-size", str(args.import_size)]
            started = time.monotonic()
            with LoadSampler() as load:
                proc = subprocess.run(command, cwd=baked, env=env, capture_output=True, text=True, check=False)
            wall = time.monotonic() - started
    print(proc.stdout.strip())
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    report = {"tasks": args.tasks, "batch_size": args.batch_size, "page_size": args.page_size,
              "import_size": args.import_size, "efficient_import": args.efficient_import,
              "import_seconds": round(imported, 1), "push_wall_seconds": round(wall, 1),
              "tasks_per_second_wall": round(args.tasks / wall, 1), "summary": proc.stdout.strip(),
              "cpus": os.cpu_count(), "load_average_during_push": load.summary()}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "push-efficient-import.json" if args.efficient_import else "push.json"
    (args.out / name).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
