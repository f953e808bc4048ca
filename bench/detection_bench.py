"""Detection speed benchmark: a batch of 50 image URLs through ``/predict`` against the model in-process.

One command: ``python bench/detection_bench.py`` (``--quick`` for a tiny setting).

It bakes the object_detection variant, trains it through its own ``fit`` (``Backend.train``) on
annotated pictures of ``bench/datasets/object_detection.py``, writes 50 held-out pictures of the
same generator as PNG files and serves them from a local image server on loopback (its own
process, image_bench's server without its latency). Each round sends the 50 URLs as one
``/predict`` batch (Label Studio's captured detection request; new URLs and task ids every round,
so no cache answers) to the production server (``python -m lsbackend start``), and, alternating
with it, the floor: the same trained model's detector called in-process on the same pictures
already decoded (no HTTP, no JSON, no download, no decoding). The figure is images per second
for each and their ratio. Every answer is validated: one prediction per task, no media error,
the trained version, boxes of the config's labels inside the image (percent within 0..100), and
the same boxes as the model's own ``predict`` gives in-process on the same pictures. The worker's
peak memory (VmHWM) is read at the end.

Results go to ``bench/results/detection_bench.{json,md}`` (gitignored).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import load_dataset
from image_bench import image_cli, vm, wait_port
from predict_bench import Client, Server, bake, children, free_port, log, write_report

FULL = {"train": 50, "batch": 50, "rounds": 8}
QUICK = {"train": 10, "batch": 8, "rounds": 1}
EDGE = 1e-6  # percent: float rounding at the image's border


def decoded_png(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split(",", 1)[1])


def train(repo: Path, model_dir: Path, config: str, project: str, pool: list) -> tuple[object, str]:
    """The baked runtime's Backend, trained on ``pool`` through the model's own fit; and its version."""
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    from lsbackend.label_studio_api import normalize_annotation
    from lsbackend.service import Backend, load_model_class
    from lsbackend.settings import Settings

    settings = Settings(model_dir=model_dir, label_config_path=repo / "label_config.xml")
    backend = Backend(load_model_class("model"), settings)
    backend.setup(project, config)
    annotations = [normalize_annotation({"id": i + 1, "result": r}, {"id": i + 1, "data": d})
                   for i, (d, r) in enumerate(pool)]
    status = backend.train(project, annotations)
    if status["state"] != "succeeded":
        raise SystemExit(f"training failed: {status}")
    return backend, status["model_version"]


def boxes_of(prediction: dict) -> list[tuple]:
    """What two answers must agree on: each box's label and corners, rounded past float noise."""
    return sorted((item["value"]["rectanglelabels"][0], *(round(item["value"][k], 3) for k in
                                                            ("x", "y", "width", "height")))
                  for item in prediction.get("result") or [])


def problem(status: int, data: bytes, expected: list[list[tuple]], labels: set[str], version: str) -> str | None:
    """Why one ``/predict`` answer is wrong, or None."""
    if status != 200:
        return f"HTTP {status}: {data[:200]!r}"
    results = json.loads(data)["results"]
    if len(results) != len(expected):
        return f"{len(results)} predictions for {len(expected)} tasks"
    for k, (pred, want) in enumerate(zip(results, expected, strict=True)):
        if pred.get("error") or pred.get("model_version") != version:
            return f"task {k}: media error or wrong version: {str(pred)[:200]}"
        for item in pred["result"]:
            v = item["value"]
            if item["type"] != "rectanglelabels" or v["rectanglelabels"][0] not in labels:
                return f"task {k}: not a box of the config's labels: {item}"
            if not (-EDGE <= v["x"] and -EDGE <= v["y"] and v["width"] > 0 and v["height"] > 0
                    and v["x"] + v["width"] <= 100 + EDGE and v["y"] + v["height"] <= 100 + EDGE):
                return f"task {k}: box outside 0..100 percent: {v}"
        if boxes_of(pred) != want:
            return f"task {k}: boxes {boxes_of(pred)} differ from the in-process model's {want}"
    return None


@dataclass
class Trained:
    """The trained model and what both sides of the comparison use: the pictures, encoded and decoded."""

    repo: Path
    template: dict  # Label Studio's captured detection /predict body
    model: object  # the baked model object, loaded from the saved version
    version: str
    annotated: int
    pngs: list[bytes]
    pictures: list  # decoded as the model decodes them (``UprightImage``)
    expected: list[list[tuple]]  # each picture's boxes from the model's own predict, in-process


def prepare(cfg: dict, seed: int, work: Path) -> Trained:
    """Bake, train on annotated pictures, decode the held-out ones and note the model's own answers."""
    log(f"baking into {work}")
    repo = bake(work, "object_detection")
    template = json.loads((repo / "tests" / "runtime" / "protocol" / "predict_detection.json").read_text())["json"]
    project, config = str(template["project"]).split(".")[0], template["label_config"]
    pool, test = load_dataset("object_detection").make(cfg["train"], cfg["batch"], seed)
    log(f"training on {len(pool)} annotated pictures")
    backend, version = train(repo, work / "models", config, project, pool)
    from lsbackend.images import decode_upright  # the baked runtime, importable once train() put it on the path
    from model import WORK_SIDE

    model = backend.model(project, config)
    pngs = [decoded_png(data["image"]) for data, _ in test]
    pictures = [decode_upright(png, model.media_resolver.max_pixels, WORK_SIDE) for png in pngs]
    answers = backend.predict(project, config, [{"id": k, "data": data} for k, (data, _) in enumerate(test)])
    return Trained(repo, template, model, version, len(pool), pngs, pictures, [boxes_of(a) for a in answers])


def measure(trained: Trained, rounds: int, work: Path) -> dict:
    """Alternate, round by round, one /predict batch of the pictures' URLs and the detector in-process."""
    folder = work / "images"
    folder.mkdir()
    for k, png in enumerate(trained.pngs):
        (folder / f"{k}.png").write_bytes(png)
    image_port = free_port()
    images = subprocess.Popen([sys.executable, __file__, "--serve-images", str(image_port), str(folder)])
    os.environ["MEDIA_ALLOWED_HOSTS"] = "127.0.0.1"  # downloads refuse loopback unless allowed
    server = Server(trained.repo, work / "models", work / "server.log")
    server.start()
    errors: list[str] = []
    try:
        wait_port(image_port)
        wait_port(server.port)
        client = Client(server.port)

        def post(tag: int) -> float:
            tasks = [{**trained.template["tasks"][0], "id": tag * 1000 + k,
                      "data": {"image": f"http://127.0.0.1:{image_port}/r{tag}/{k}.png"}}  # new URL: no cache
                     for k in range(len(trained.pngs))]
            status, data, elapsed = client.post("/predict", json.dumps({**trained.template, "tasks": tasks}).encode())
            found = problem(status, data, trained.expected, set(trained.model.labels), trained.version)
            errors.extend([found] if found else [])
            return elapsed

        post(0)  # warm-up: the worker loads the model
        served, in_process = [], []
        for r in range(1, rounds + 1):
            log(f"round {r}/{rounds}")
            served.append(post(r))
            t0 = time.perf_counter()
            trained.model.detector.detect(trained.pictures)  # the model's own batch, as /predict runs it
            in_process.append(time.perf_counter() - t0)
        (worker,) = children(server.proc.pid)
        peak = vm(worker)
        client.close()
    finally:
        server.stop()
        images.terminate()
        images.wait(10)
    return {"served_s": served, "in_process_s": in_process, "worker_memory_mib": peak,
            "errors": {"count": len(errors), "checked": rounds + 1, "examples": errors[:5]}}


def run(cfg: dict, results_dir: Path, seed: int) -> dict:
    t_begin = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="detection-bench-"))
    trained = prepare(cfg, seed, work)
    timed = measure(trained, cfg["rounds"], work)
    batch = len(trained.pngs)
    s, raw = statistics.median(timed["served_s"]), statistics.median(timed["in_process_s"])
    report = {
        "quick": cfg is QUICK, "settings": cfg, "seed": seed, "annotated_pictures": trained.annotated,
        "picture_sizes": [[p.width, p.height] for p in trained.pictures][:5],
        "boxes_per_picture": statistics.fmean(len(e) for e in trained.expected),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "server": {"command": "python -m lsbackend start", "workers": 1, "threads": 8}, **timed,
        "figures": {"served_images_per_s": batch / s, "in_process_images_per_s": batch / raw, "ratio": s / raw},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.perf_counter() - t_begin,
    }
    write_report(report, results_dir, "detection_bench", markdown)
    return report


def markdown(report: dict) -> str:
    f, e, m = report["figures"], report["errors"], report["machine"]
    batch = report["settings"]["batch"]
    lines = [
        f"| {batch} pictures, median of {report['settings']['rounds']} rounds | images/s | time vs in-process |",
        "|---|---|---|",
        (f"| `/predict`, {batch} URLs in one batch (production server) | {f['served_images_per_s']:.0f} "
         f"| {f['ratio']:.2f}x |"),
        f"| in-process: the detector on the decoded pictures | {f['in_process_images_per_s']:.0f} | 1x |",
        f"| worker peak RSS (VmHWM) | {report['worker_memory_mib']['peak']:.0f} MiB | |",
        "",
        (f"Trained on {report['annotated_pictures']} annotated pictures; {report['boxes_per_picture']:.1f} boxes "
         f"per picture. Invalid answers: {e['count']} of {e['checked']}. {m['cpus']} CPUs, load average "
         f"{m['loadavg'][0]:.2f}, {report['date']}. Run took {report['seconds']:.0f} s"
         f"{' (--quick)' if report['quick'] else ''}."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return image_cli(argv, __doc__, run, (QUICK, FULL), latency=0.0)  # no latency: the model is what is timed


if __name__ == "__main__":
    sys.exit(main())
