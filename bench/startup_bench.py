"""Start-up benchmark: process start to first valid prediction, this template against a baseline commit.

One command: ``python bench/startup_bench.py`` (``--rounds 3`` for a short run).

Issue #20 asks that start-up be no slower than the 12-02 code (commit ``28a352b``)
in a paired run. So this script bakes the text-classification variant twice with
the same answers: from this checkout (``current``) and from the baseline commit
(``git archive`` of it into a temporary directory). Each baked repo trains the same
seeded export through its own CLI (``python -m lsbackend train``), so both serve a
real model from their own ``MODEL_DIR``.

Then, in paired rounds whose order alternates (current first, then baseline
first, ...), it starts each repo's production command (``python -m lsbackend start``,
as the image runs it) with this Python (one venv for both) and times, from just
before the process is spawned, the first ``/health`` answering 200 and the first
``/predict`` answer that is valid (one prediction with a label of the config, a
score in [0, 1] and a model version). One unmeasured start of each comes first,
so both repos have their bytecode written, as the image has. The figures are
medians, and the ratio current / baseline (below 1.0: current starts faster),
with how many rounds each side won. Nothing is asserted on time.

Results go to ``bench/results/startup_bench.{json,md}`` (gitignored); the
Markdown table is also printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
sys.path.insert(0, str(TEMPLATE / "tests"))
from harness import ManagedProcess, free_port  # the template's one test harness, found via the path above

BASELINE = "28a352b"  # the last commit of 2026-12-02: the start-up figure issue #20 asks to keep
PROJECT = "5"  # the captured request's project "5.1795850610"
ANSWERS = {"model_type": "text_classification"}  # the same answers for both bakes
WORDS = {"Positive": ["great", "love", "wonderful", "superb"], "Negative": ["awful", "hate", "boring", "dull"],
         "Neutral": ["fine", "okay", "average", "plain"]}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the two repos -----------------------------------------------------------
def template_at(commit: str, into: Path) -> Path:
    """The template as it was at ``commit``: ``git archive`` unpacked into ``into``."""
    archive = into.with_suffix(".tar")
    subprocess.run(["git", "-C", str(TEMPLATE), "archive", "--format=tar", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def bake(template: Path, out: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(template), no_input=True, output_dir=str(out), extra_context=ANSWERS))


def export(n: int, seed: int) -> list[dict]:
    """A Label Studio JSON export of ``n`` short texts, one sentiment annotation each."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        label = rng.choice(sorted(WORDS))
        text = " ".join(rng.choices(WORDS[label], k=2) + rng.choices(["the", "film", "was", "plot", "cast"], k=3))
        tasks.append({"id": 1 + i, "data": {"text": text}, "annotations": [{
            "id": 1 + i, "was_cancelled": False, "updated_at": "2026-12-01T10:00:00Z",
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                        "value": {"choices": [label]}}]}]})
    return tasks


class Repo:
    """One baked repo with its trained model, started as the image starts it."""

    def __init__(self, name: str, path: Path, work: Path) -> None:
        self.name, self.path, self.work = name, path, work
        self.model_dir = work / f"{name}-models"
        self.env = {**os.environ, "MODEL_DIR": str(self.model_dir), "HOST": "127.0.0.1", "PYTHONPATH": "",
                    "TRAIN_DEBOUNCE_SECONDS": "0"}
        for key in ("MODEL_STORE", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "MODEL_URI"):
            self.env.pop(key, None)  # the default settings: local store, no Redis
        body = json.loads((path / "tests" / "protocol" / "predict_text.json").read_text())["json"]
        self.labels = set(WORDS)
        self.body = json.dumps({**body, "tasks": body["tasks"][:1]}).encode()  # Label Studio's request, one task

    def train(self, tasks: list[dict]) -> None:
        exported = self.work / "export.json"
        exported.write_text(json.dumps(tasks))
        done = subprocess.run([sys.executable, "-m", "lsbackend", "train", str(exported), "--project", PROJECT],
                              check=False, cwd=self.path, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: training failed:\n{done.stdout}\n{done.stderr}")

    def problem(self, status: int, data: bytes) -> str | None:
        """Why a /predict answer is not a valid prediction (None when it is)."""
        if status != 200:
            return f"HTTP {status}"
        try:
            results = json.loads(data)["results"]
            item = results[0]["result"][0]
            label, score, version = item["value"]["choices"][0], item.get("score", -1), results[0]["model_version"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return f"unexpected answer ({exc!r}): {data[:200]!r}"
        if len(results) != 1 or label not in self.labels or not 0.0 <= float(score) <= 1.0:
            return f"not one valid prediction: {data[:200]!r}"
        return None if isinstance(version, str) and version else f"no model version: {data[:200]!r}"

    def start_once(self, round_no: int) -> dict[str, float]:
        """Seconds from spawning ``python -m lsbackend start`` to /health 200 and to the first valid /predict."""
        port = free_port()
        env = {**self.env, "PORT": str(port)}
        proc = ManagedProcess(self.name, [sys.executable, "-m", "lsbackend", "start"],
                              self.work / f"{self.name}-{round_no}.log", cwd=self.path, env=env)
        started = time.perf_counter()
        proc.start()
        try:
            health = self._wait(proc, port, "GET", "/health", started)
            first = self._wait(proc, port, "POST", "/predict", started)
        finally:
            proc.stop(grace=30)
        return {"health_s": health, "first_prediction_s": first}

    def _wait(self, proc: ManagedProcess, port: int, method: str, path: str, started: float) -> float:
        deadline, last = started + 120, "no answer"
        while time.perf_counter() < deadline:
            if proc.exited:
                raise SystemExit(f"{self.name} exited before answering {path}\n{proc.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request(method, path, self.body if method == "POST" else None,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                status, data = resp.status, resp.read()
                conn.close()
            except OSError:
                time.sleep(0.005)
                continue
            last = None if path == "/health" and status == 200 else (
                f"HTTP {status}" if path == "/health" else self.problem(status, data))
            if last is None:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise SystemExit(f"{self.name}: {path} not valid within 120 s (last: {last})\n{proc.log_tail()}")


# --- the benchmark -----------------------------------------------------------
def run(rounds: int, baseline: str, seed: int, results_dir: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    log(f"baking this checkout and {baseline} into {work}")
    repos = [Repo("current", bake(TEMPLATE, work / "current"), work),
             Repo("baseline", bake(template_at(baseline, work / "baseline-template"), work / "baseline"), work)]
    tasks = export(300, seed)
    for repo in repos:
        log(f"training {repo.name}")
        repo.train(tasks)
        repo.start_once(0)  # unmeasured: writes each repo's bytecode, as the image's compileall does
    times: dict[str, list[dict[str, float]]] = {repo.name: [] for repo in repos}
    for n in range(1, rounds + 1):
        order = repos if n % 2 else repos[::-1]
        for repo in order:
            times[repo.name].append(repo.start_once(n))
        log(f"round {n}/{rounds}: " + ", ".join(
            f"{name} {t[-1]['first_prediction_s']:.2f} s" for name, t in times.items()))
    report = summarize(times, baseline, rounds)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "startup_bench.json").write_text(json.dumps({**report, "times": times}, indent=2))
    (results_dir / "startup_bench.md").write_text(report["table"] + "\n")
    print(report["table"])
    return report


def summarize(times: dict[str, list[dict[str, float]]], baseline: str, rounds: int) -> dict:
    figures = {}
    for key in ("health_s", "first_prediction_s"):
        cur = [t[key] for t in times["current"]]
        base = [t[key] for t in times["baseline"]]
        figures[key] = {"current": statistics.median(cur), "baseline": statistics.median(base),
                        "ratio": statistics.median(cur) / statistics.median(base),
                        "current_faster_rounds": sum(c < b for c, b in zip(cur, base, strict=True))}
    names = {"health_s": "start → /health 200", "first_prediction_s": "start → first valid /predict"}
    title = (f"Start-up, `python -m lsbackend start`, text variant, {rounds} paired rounds, same venv "
             f"(python {sys.version.split()[0]}):")
    rows = [title, "",
            f"| figure | current | baseline {baseline} | current / baseline | rounds current faster |",
            "|---|---|---|---|---|"]
    for key, f in figures.items():
        rows.append(f"| {names[key]} | {f['current']:.2f} s | {f['baseline']:.2f} s | {f['ratio']:.2f}x | "
                    f"{f['current_faster_rounds']}/{rounds} |")
    return {"baseline": baseline, "rounds": rounds, "figures": figures, "table": "\n".join(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds (order alternates)")
    parser.add_argument("--baseline", default=BASELINE, help="the template commit to compare with")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    run(args.rounds, args.baseline, args.seed, args.results_dir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
