"""Image-path benchmark: the baked image backend fetching task images from a slow server.

One command: ``python bench/image_bench.py`` (``--quick`` for a tiny setting).

It bakes the image_classification variant, trains it on generated red and blue
pictures, starts a local image server (its own process) that waits 20 ms before
each image, and starts the production server (``python -m lsbackend start``)
once per ``MEDIA_FETCH_THREADS`` value compared. Batches of 1, 50 and 200 tasks
(Label Studio's captured /predict shape, one image URL each, never the same URL
twice so the resolver's cache never answers) go to every server in turn,
alternating with the floor: a sequential loop that downloads the same number
of images one after the other. The figure is the speed-up over that loop.
Every answer is validated (one prediction per task, a label, no media error).
Each server worker's peak memory (VmHWM) is read at the end.

Results go to ``bench/results/image_bench.{json,md}`` (gitignored).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_bench import TEMPLATE, Client, Server, bake, children, free_port, log, write_report

PROJECT = "7"  # the captured request's project "7.1795850639"
LATENCY_S = 0.020
TARGET_200 = 8.0  # speed-up over the sequential loop, batch of 200
FULL = {"threads": [4, 8, 16, 32], "rounds": {1: 20, 50: 6, 200: 4}, "images": 64, "side": 320}
QUICK = {"threads": [4, 16], "rounds": {1: 2, 50: 1, 200: 1}, "images": 8, "side": 64}


# --- the slow image server (a separate process, so it never competes with the client for the GIL) ---------
def serve_images(port: int, folder: Path, latency: float) -> None:
    """Serve ``<folder>/<name>`` for any path ending in ``/<name>``, each after ``latency`` seconds.

    ``bench/detection_bench.py`` reuses it, with PNGs and no latency.
    """
    images = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix in (".jpg", ".png")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(latency)
            name = self.path.rsplit("/", 1)[-1]
            body = images.get(name)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png" if name.endswith(".png") else "image/jpeg")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512  # read by listen() in __init__: setting it on the instance is too late

    Server(("127.0.0.1", port), Handler).serve_forever()


def draw(colour: tuple[int, int, int], seed: int, side: int) -> bytes:
    """A JPEG dominated by ``colour`` with a random rectangle of another shade (camera-photo sized)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    shade = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in colour)
    image = Image.new("RGB", (side, side * 3 // 4), shade)
    x, y = rng.randint(0, side // 2), rng.randint(0, side // 3)
    ImageDraw.Draw(image).rectangle([x, y, x + side // 3, y + side // 4],
                                    fill=tuple(max(0, c - 60) for c in colour))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


RED, BLUE = (200, 40, 40), (40, 60, 210)


# --- the benchmark -------------------------------------------------------------------------------------
def run(cfg: dict, results_dir: Path, seed: int) -> dict:
    t_begin = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="image-bench-"))
    log(f"baking into {work}")
    repo = bake(work, "image_classification")
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    import base64

    from lsbackend.service import Backend, load_model_class
    from lsbackend.settings import Settings

    template = json.loads((repo / "tests" / "runtime" / "protocol" / "predict_image.json").read_text())["json"]
    config = template["label_config"]
    model_dir = work / "models"
    settings = Settings(model_dir=model_dir, label_config_path=repo / "label_config.xml")
    backend = Backend(load_model_class("model"), settings)
    backend.setup(PROJECT, config)
    labels = backend.model(PROJECT, config).labels  # Red, Blue

    # --- images: half red, half blue; served over HTTP for prediction, inline for training
    folder = work / "images"
    folder.mkdir()
    truth = {}
    for i in range(cfg["images"]):
        label = labels[i % 2]
        (folder / f"{i}.jpg").write_bytes(draw(RED if label == labels[0] else BLUE, seed + i, cfg["side"]))
        truth[i] = label
    annotations = []
    for i in range(40):
        label = labels[i % 2]
        uri = "data:image/jpeg;base64," + base64.b64encode(draw(RED if i % 2 == 0 else BLUE, 10_000 + i,
                                                                 cfg["side"])).decode()
        annotations.append({"id": i + 1, "task": {"id": i + 1, "data": {"image": uri}}, "was_cancelled": False,
                            "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                        "value": {"choices": [label]}}]})
    status = backend.train(PROJECT, annotations)
    if status["state"] != "succeeded":
        raise SystemExit(f"training failed: {status}")
    version = status["model_version"]

    image_port = free_port()
    image_server = subprocess.Popen([sys.executable, __file__, "--serve-images", str(image_port), str(folder)])
    wait_port(image_port)

    # --- one production server per MEDIA_FETCH_THREADS value, all up at once
    servers: dict[int, Server] = {}
    os.environ["MEDIA_ALLOWED_HOSTS"] = "127.0.0.1"  # the image server is on loopback, which downloads refuse by default
    for n in cfg["threads"]:
        os.environ["MEDIA_FETCH_THREADS"] = str(n)
        servers[n] = Server(repo, model_dir, work / f"server-{n}.log")
        servers[n].start()
    os.environ.pop("MEDIA_FETCH_THREADS")
    for server in servers.values():
        wait_port(server.port)
    clients = {n: Client(s.port) for n, s in servers.items()}

    nonce = iter(range(10**9))
    errors: list[str] = []
    checked = 0

    def urls(size: int) -> tuple[list[str], list[int]]:
        tag = next(nonce)
        picks = [random.randrange(cfg["images"]) for _ in range(size)]
        return [f"http://127.0.0.1:{image_port}/r{tag}/{k}.jpg" for k in picks], picks

    def check(status: int, data: bytes, picks: list[int]) -> None:
        nonlocal checked
        checked += 1
        problem = None
        if status != 200:
            problem = f"HTTP {status}: {data[:200]!r}"
        else:
            results = json.loads(data)["results"]
            if len(results) != len(picks):
                problem = f"{len(results)} results for {len(picks)} tasks"
            for pred, k in zip(results, picks, strict=False):
                if pred.get("error") or pred.get("model_version") != version:
                    problem = f"media error or wrong version: {str(pred)[:200]}"
                elif pred["result"][0]["value"]["choices"] != [truth[k]]:
                    problem = f"image {k} labelled {pred['result'][0]['value']['choices']}, is {truth[k]}"
        if problem and len(errors) < 5:
            errors.append(problem)
        elif problem:
            errors.append("...")

    # warm-up: load the model in every worker
    for n, client in clients.items():
        batch, picks = urls(2)
        check(*client.post("/predict", body(template, batch))[:2], picks)

    timings: dict[int, dict] = {}
    rng = random.Random(seed)
    for size, rounds in cfg["rounds"].items():
        log(f"batches of {size} ({rounds} rounds)")
        seq, srv = [], {n: [] for n in servers}
        for r in range(rounds):
            batch, _ = urls(size)
            t0 = time.perf_counter()
            for url in batch:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    resp.read()
            seq.append(time.perf_counter() - t0)
            order = list(servers)
            rng.shuffle(order)
            for n in order:
                batch, picks = urls(size)
                status, data, elapsed = clients[n].post("/predict", body(template, batch))
                check(status, data, picks)
                srv[n].append(elapsed)
            del r
        timings[size] = {"sequential": seq, "servers": srv}

    peak = {}
    for n, server in servers.items():
        (worker,) = children(server.proc.pid)
        peak[n] = vm(worker)
    for client in clients.values():
        client.close()
    for server in servers.values():
        server.stop()
    image_server.terminate()
    image_server.wait(10)

    figures = {}
    for size, t in timings.items():
        s = statistics.median(t["sequential"])
        figures[str(size)] = {
            "sequential_s": s, "sequential_tasks_per_s": size / s,
            "by_threads": {str(n): {"server_s": statistics.median(v), "tasks_per_s": size / statistics.median(v),
                                    "speedup": s / statistics.median(v), "all_s": v}
                           for n, v in t["servers"].items()},
        }
    report = {
        "quick": cfg is QUICK, "settings": {**cfg, "rounds": {str(k): v for k, v in cfg["rounds"].items()}},
        "latency_per_image_ms": LATENCY_S * 1e3, "image_bytes": statistics.median(
            p.stat().st_size for p in folder.glob("*.jpg")),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "server": {"command": "python -m lsbackend start", "workers": 1, "threads": 8},
        "figures": figures, "peak_memory_mib": {str(n): v for n, v in peak.items()},
        "target_200": TARGET_200, "errors": {"count": len(errors), "checked": checked, "examples": errors[:5]},
        "seconds": time.perf_counter() - t_begin,
    }
    write_report(report, results_dir, "image_bench", markdown)
    return report


def body(template: dict, urls: list[str]) -> bytes:
    task0 = template["tasks"][0]
    tasks = [{**task0, "id": 1000 + i, "data": {"image": u}} for i, u in enumerate(urls)]
    return json.dumps({**template, "tasks": tasks}).encode()


def wait_port(port: int) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers on port {port}")


def vm(pid: int) -> dict:
    """Peak (VmHWM) and current (VmRSS) resident memory of a process, MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found["peak" if key == "VmHWM" else "now"] = int(rest.split()[0]) / 1024
    return found


def markdown(report: dict) -> str:
    threads = list(report["peak_memory_mib"])
    rows = ["| batch | sequential loop | " + " | ".join(f"MEDIA_FETCH_THREADS={n}" for n in threads) + " | target |",
            "|---|---|" + "---|" * (len(threads) + 1)]
    for size, f in report["figures"].items():
        cells = [f"{f['by_threads'][n]['tasks_per_s']:.0f} tasks/s ({f['by_threads'][n]['speedup']:.1f}x)"
                 for n in threads]
        target = f"≥ {report['target_200']:g}x" if size == "200" else ""
        rows.append(f"| {size} images | {f['sequential_tasks_per_s']:.0f} tasks/s | " + " | ".join(cells)
                    + f" | {target} |")
    rows.append("| worker peak RSS (VmHWM) | | " + " | ".join(
        f"{report['peak_memory_mib'][n]['peak']:.0f} MiB" for n in threads) + " | |")
    e = report["errors"]
    rows += ["", (f"Speed-up over a sequential download loop of the same number of images (median of rounds). "
                  f"Each image waits {report['latency_per_image_ms']:.0f} ms at the image server, "
                  f"{report['image_bytes'] / 1024:.0f} KiB JPEG; one gunicorn worker, 8 threads. "
                  f"Invalid answers: {e['count']} of {e['checked']}. {report['machine']['cpus']} CPUs, load "
                  f"average {report['machine']['loadavg'][0]:.2f}. Run took {report['seconds']:.0f} s"
                  f"{' (--quick)' if report['quick'] else ''}.")]
    return "\n".join(rows) + "\n"


def image_cli(argv: list[str] | None, doc: str, run: Callable[[Any, Path, int], dict], settings: tuple[Any, Any],
              latency: float) -> int:
    """The command line of both image benchmarks: ``--quick`` (``settings[0]``, else ``settings[1]``),
    ``--results-dir``, ``--seed``, and ``--serve-images``, how a run starts its image server as a child."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting (for the template's test)")
    parser.add_argument("--results-dir", type=Path, default=TEMPLATE / "bench" / "results")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve-images", nargs=2, metavar=("PORT", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_images:
        serve_images(int(args.serve_images[0]), Path(args.serve_images[1]), latency)
        return 0
    report = run(settings[0] if args.quick else settings[1], args.results_dir.resolve(), args.seed)
    return 0 if report["errors"]["count"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    return image_cli(argv, __doc__, run, (QUICK, FULL), LATENCY_S)


if __name__ == "__main__":
    sys.exit(main())
