"""Interactive pre-annotation benchmark: what the annotator waits for after a click, cold and warm.

One command: ``python bench/interactive_bench.py`` (``--quick`` for a tiny setting).

It bakes two variants, trains each on its own examples through the generated runtime, starts
the generated production server (``python -m lsbackend start``) and sends the interactive
requests Label Studio sends (``params.context``, one task), shaped like the baked repo's
``tests/runtime/protocol/predict_interactive_*`` files:

- ner: the annotator labels "Acme Corp" in a long text (~3,000 tokens); the backend proposes its
  other occurrences and the model's ORG entities (the model's pass over the text is what the
  per-task cache keeps);
- image_classification: a task is opened on a 1024x1024 JPEG served over HTTP (fetch and
  decode are what the cache keeps).

"Cold" calls each name a new task (nothing cached); "warm" calls repeat one task, as an
annotator's next clicks do. The baseline is the same work in-process: the same saved model and
``Backend.predict`` with the same context in a plain process, no HTTP, no JSON, no gunicorn;
cold and warm alike. Figures: p50 and p99 in milliseconds, and server / in-process ratios.
Results go to ``bench/results/interactive_bench.{json,md}`` (gitignored); the table is printed.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TEMPLATE / "tests"))
from harness import ManagedProcess, free_port  # the template's one test harness, found via the path above

BUDGET_S = 1.0  # the budget for an interactive call: well under a second
FULL = {"calls": 200, "sentences": 300}
QUICK = {"calls": 30, "sentences": 60}

# Runs in the baked repo: train on its examples, or time Backend.predict on the requests given on stdin.
IN_REPO = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, "tests/runtime")
import examples
from lsbackend.label_studio_api import normalize_annotation
from lsbackend.service import Backend, load_model_class
from lsbackend.settings import Settings

job = json.load(sys.stdin)
settings = Settings(model_dir=Path(job["model_dir"]), media_allowed_hosts=("127.0.0.1",))
backend = Backend(load_model_class("model"), settings)
if job["action"] == "train":
    pairs = examples.training_set()
    annotations = [normalize_annotation({"id": i + 1, "result": r}, {"id": i + 1, "data": d})
                   for i, (d, r) in enumerate(pairs)]
    backend.store(job["project"]).save_label_config(job["config"])
    status = backend.train(job["project"], annotations)
    assert status["state"] == "succeeded", status
    print(json.dumps(status["model_version"]))
else:
    times = []
    for body in job["bodies"]:
        started = time.perf_counter()
        [answer] = backend.predict(job["project"], body["label_config"], body["tasks"], body["params"]["context"])
        times.append(time.perf_counter() - started)
        assert answer["result"], answer
    print(json.dumps(times))
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bake(out: Path, model_type: str) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out),
                             extra_context={"model_type": model_type, "project_slug": model_type.replace("_", "-")}))


def in_repo(repo: Path, job: dict) -> object:
    proc = subprocess.run([sys.executable, "-c", IN_REPO], cwd=repo, input=json.dumps(job), capture_output=True,
                          text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process job failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capture(repo: Path, name: str) -> dict:
    return json.loads((repo / "tests" / "runtime" / "protocol" / f"{name}.json").read_text(encoding="utf-8"))["json"]


# --- the requests -----------------------------------------------------------------------------------------
def ner_bodies(repo: Path, calls: int, sentences: int, warm: bool) -> list[dict]:
    """The captured span request on a long text: a new task per call (cold) or one task (warm)."""
    sys.path.insert(0, str(repo / "tests" / "runtime"))
    import examples  # the baked NER examples: sentences with inline entity marks

    plain = [examples.parse(marked)[0] for marked in examples.TRAINING]
    text = " ".join(plain[i % len(plain)] for i in range(sentences))
    text = "Acme Corp opened. " + text
    base = capture(repo, "predict_interactive_span_ner")
    bodies = []
    for i in range(calls):
        task = {**base["tasks"][0], "id": 50_000 if warm else 10_000 + i, "data": {"text": text}}
        bodies.append({**base, "tasks": [task]})
    return bodies


def jpeg(seed: int, side: int = 1024) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (side, side), ((seed * 37) % 256, 40, 200 - seed % 100))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def serve_images(count: int) -> tuple[ThreadingHTTPServer, str]:
    """Distinct 1024x1024 JPEGs at /img/<i>.jpg, like an image server or bucket."""
    images = {f"/img/{i}.jpg": jpeg(i) for i in range(count)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = images.get(self.path, b"")
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def image_bodies(repo: Path, calls: int, url: str, warm: bool, offset: int) -> list[dict]:
    """Opening a task (``context: {"result": []}``) on a new image per call (cold) or one image (warm)."""
    base = capture(repo, "predict_interactive_rectangle_image")
    bodies = []
    for i in range(calls):
        n = 0 if warm else offset + i
        task = {**base["tasks"][0], "id": 10_000 + n, "data": {"image": f"{url}/img/{n}.jpg"}}
        bodies.append({**base, "tasks": [task], "params": {**base["params"], "context": {"result": []}}})
    return bodies


def warm_up(body: dict) -> dict:
    """The same request for a task no measured call names."""
    return {**body, "tasks": [{**body["tasks"][0], "id": 99_999}]}


# --- measuring --------------------------------------------------------------------------------------------
def through_server(port: int, bodies: list[dict]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for body in bodies:
            payload = json.dumps(body)
            started = time.perf_counter()
            conn.request("POST", "/predict", payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            times.append(time.perf_counter() - started)
            if resp.status != 200 or not answer["results"][0]["result"]:
                raise RuntimeError(f"interactive call answered {resp.status}: {answer!r:.300}")
    finally:
        conn.close()
    return times


def figures(server: list[float], raw: list[float]) -> dict:
    out = {}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        s, r = pct(server, q), pct(raw, q)
        out[name] = {"server_ms": round(s * 1000, 2), "in_process_ms": round(r * 1000, 2), "ratio": round(s / r, 2)}
    return out


def bench_variant(model_type: str, work: Path, cfg: dict, images_url: str) -> dict:
    log(f"{model_type}: baking and training")
    repo = bake(work, model_type)
    model_dir = work / f"{model_type}-models"
    first = (capture(repo, "predict_interactive_span_ner") if model_type == "ner"
             else capture(repo, "predict_interactive_rectangle_image"))
    project = str(first["project"]).split(".")[0]
    in_repo(repo, {"action": "train", "model_dir": str(model_dir), "project": project, "config": first["label_config"]})
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1",
           "MEDIA_ALLOWED_HOSTS": "127.0.0.1", "WORKERS": "1"}
    server = ManagedProcess(model_type, [sys.executable, "-m", "lsbackend", "start"], work / f"{model_type}.log",
                            cwd=repo, env=env).start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/health")
                break
            except OSError:
                if time.monotonic() > deadline or server.exited:
                    raise RuntimeError(f"server did not start:\n{server.log_tail()}") from None
                time.sleep(0.2)
        result = {}
        for label, warm, offset in (("cold", False, 1), ("warm", True, 1)):
            if model_type == "ner":
                server_bodies = ner_bodies(repo, cfg["calls"], cfg["sentences"], warm)
                raw_bodies = server_bodies  # the in-process run is its own process: its cache starts empty too
            else:
                server_bodies = image_bodies(repo, cfg["calls"], images_url, warm, offset)
                raw_bodies = image_bodies(repo, cfg["calls"], images_url, warm, offset + cfg["calls"])
            # Not measured: a first call on another task (loading the model after start-up is not an
            # interactive cost), and for "warm" the call that fills the cache.
            first = warm_up(server_bodies[0])
            through_server(port, [first] + (server_bodies[:1] if warm else []))
            server_times = through_server(port, server_bodies)
            skipped = [first] + ([raw_bodies[0]] if warm else [])
            raw_times = in_repo(repo, {"action": "time", "model_dir": str(model_dir), "project": project,
                                       "bodies": skipped + raw_bodies})[len(skipped):]
            result[label] = figures(server_times, raw_times)
            log(f"{model_type} {label}: {result[label]}")
        return result
    finally:
        server.stop()


def markdown(report: dict) -> str:
    header = ("| variant | cache | p50 server ms | p50 in-process ms | ratio | p99 server ms | p99 in-process ms "
              "| ratio | under 1 s |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for variant, by_cache in report["variants"].items():
        for cache, f in by_cache.items():
            p50, p99 = f["p50"], f["p99"]
            ok = "yes" if p99["server_ms"] < BUDGET_S * 1000 else "NO"
            lines.append(f"| {variant} | {cache} | {p50['server_ms']} | {p50['in_process_ms']} | {p50['ratio']} | "
                         f"{p99['server_ms']} | {p99['in_process_ms']} | {p99['ratio']} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few calls, short text: a check that it runs")
    parser.add_argument("--results", type=Path, default=TEMPLATE / "bench" / "results")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    images, url = serve_images(2 * cfg["calls"] + 2)
    try:
        with tempfile.TemporaryDirectory(prefix="interactive-bench-") as tmp:
            report = {"config": cfg, "cpus": os.cpu_count(), "variants": {
                model_type: bench_variant(model_type, Path(tmp), cfg, url)
                for model_type in ("ner", "image_classification")}}
    finally:
        images.shutdown()
    args.results.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (args.results / "interactive_bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.results / "interactive_bench.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
