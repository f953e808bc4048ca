"""Side by side with the upstream SDK: our text backend and label-studio-ml's, each against the raw model.

One command: ``python bench/upstream_bench.py`` (``--quick`` for a tiny setting).

Steps, all done by this script:

1. a virtual environment for upstream, in ``~/.cache/ls-ml-template/upstream-label-studio-ml-<version>``:
   ``pip install label-studio-ml==<version>`` (the SDK as published on PyPI, with the Flask it pins),
   the redis and rq it imports without declaring them, gunicorn, and the scikit-learn stack pinned as
   in our generated requirements, so both load the same pickled model;
2. our text variant is baked and trained (as in ``predict_bench.py``);
3. ``upstream_model.py``: a text classifier on the SDK's ``LabelStudioMLBase`` that loads the same
   pickled pipeline in ``__init__`` and answers in Label Studio's format (the shape of the SDK's
   documented example); ``label-studio-ml init`` makes the SDK's project around it, which is started
   the way the SDK's Dockerfile starts it (``gunicorn --preload --workers 1 --threads 8 --timeout 0
   _wsgi:app``);
4. raw model, our production command and upstream answer the same requests in alternating rounds.

Every answer is checked against the raw model's label. Results: ``bench/results/upstream_bench.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_bench import (
    PROJECT,
    TEMPLATE,
    Client,
    Server,
    bake,
    children,
    free_port,
    log,
    ls_export,
    make_body,
    make_dataset,
    memory,
    pct,
)

UPSTREAM = "label-studio-ml==1.0.9"
# label-studio-ml 1.0.9 imports redis and rq without declaring them; the rest match our generated pins
UPSTREAM_PINS = ["redis==4.3.4", "rq==1.10.1", "gunicorn==27.0.1", "scikit-learn==1.9.1", "numpy==2.4.6",
                 "scipy==1.17.1", "joblib==1.6.0", "threadpoolctl==3.8.0"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ls-ml-template"
FULL = {"n_train": 10_000, "pool": 1000, "lat_rounds": 10, "lat_per_round": 50, "batch_rounds": {1: 40, 100: 15,
                                                                                                1000: 6}}
QUICK = {"n_train": 600, "pool": 100, "lat_rounds": 2, "lat_per_round": 10, "batch_rounds": {1: 3, 100: 2, 1000: 1}}

UPSTREAM_MODEL = '''"""A text classifier on the upstream SDK: loads the benchmark's pickled pipeline, predicts choices."""
import os
import pickle

from label_studio_ml.model import LabelStudioMLBase


class UpstreamTextClassifier(LabelStudioMLBase):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.from_name, info = list(self.parsed_label_config.items())[0]
        self.to_name = info["to_name"][0]
        self.value = info["inputs"][0]["value"]
        with open(os.environ["BENCH_MODEL_FILE"], "rb") as fh:
            self.pipeline = pickle.load(fh)["pipeline"]

    def predict(self, tasks, **kwargs):
        texts = [task["data"][self.value] for task in tasks]
        probabilities = self.pipeline.predict_proba(texts)
        best = probabilities.argmax(axis=1)
        classes = [str(c) for c in self.pipeline.classes_]
        out = []
        for i, row in zip(best.tolist(), probabilities.tolist()):
            score = row[i]
            out.append({"result": [{"from_name": self.from_name, "to_name": self.to_name, "type": "choices",
                                    "value": {"choices": [classes[i]]}, "score": score}], "score": score})
        return out

    def fit(self, *args, **kwargs):
        return {}
'''


def upstream_env() -> Path:
    """The upstream SDK's own virtual environment (created once, then reused)."""
    home = CACHE / f"upstream-{UPSTREAM.replace('==', '-')}"
    python = home / "bin" / "python"
    marker = home / ".complete"
    if not marker.exists() or marker.read_text() != " ".join([UPSTREAM, *UPSTREAM_PINS]):
        log(f"creating {home} with {UPSTREAM}")
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", UPSTREAM, *UPSTREAM_PINS], check=True)
        marker.write_text(" ".join([UPSTREAM, *UPSTREAM_PINS]))
    return home


class UpstreamServer:
    """The SDK's project around ``upstream_model.py``, started as the SDK's Dockerfile starts it."""

    def __init__(self, home: Path, work: Path, model_file: Path) -> None:
        self.port = free_port()
        script = work / "upstream_model.py"
        script.write_text(UPSTREAM_MODEL)
        self.project = work / "upstream_backend"
        subprocess.run([str(home / "bin" / "label-studio-ml"), "init", str(self.project), "--script", str(script),
                        "--force"], check=True, cwd=work, capture_output=True)
        env = {**os.environ, "BENCH_MODEL_FILE": str(model_file), "PYTHONPATH": ""}
        self.log = open(work / "upstream.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(home / "bin" / "gunicorn"), "--preload", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
             "--threads", "8", "--timeout", "0", "_wsgi:app"], cwd=self.project, env=env, stdout=self.log,
            stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def run(cfg: dict, results_dir: Path, seed: int) -> dict:
    t_begin = time.perf_counter()
    home = upstream_env()
    work = Path(tempfile.mkdtemp(prefix="upstream-bench-"))
    log(f"baking into {work}")
    repo = bake(work)
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    from lsbackend.label_studio_api import annotations_from_tasks
    from lsbackend.service import Backend, load_model_class
    from lsbackend.settings import Settings

    template = json.loads((repo / "tests" / "runtime" / "protocol" / "predict_text.json").read_text())["json"]
    model_dir = work / "models"
    backend = Backend(load_model_class("model"), Settings(model_dir=model_dir,
                                                          label_config_path=repo / "label_config.xml"))
    probe = backend.model(PROJECT, template["label_config"])
    texts, ys = make_dataset(probe.labels, cfg["n_train"], seed)
    status = backend.train(PROJECT, annotations_from_tasks(ls_export(texts, ys, probe.control.name,
                                                                      probe.object_tag.name)))
    if status["state"] != "succeeded":
        raise SystemExit(f"training failed: {status}")
    version, output = backend.store(PROJECT).load_model()
    model_file = model_dir / "projects" / PROJECT / "models" / f"{version}.pkl"
    pipeline = output["pipeline"]
    pool, _ = make_dataset(probe.labels, cfg["pool"], seed + 1)
    expected = dict(zip(pool, (str(pipeline.classes_[i]) for i in pipeline.predict_proba(pool).argmax(axis=1)),
                        strict=True))

    ours = Server(repo, model_dir, work / "ours.log")
    ours.start()
    upstream = UpstreamServer(home, work, model_file)
    clients = {"ours": None, "upstream": None}
    errors: list[str] = []
    checked = 0

    def check(status: int, data: bytes, batch: list[str]) -> None:
        nonlocal checked
        checked += 1
        try:
            results = json.loads(data)["results"] if status == 200 else None
            labels = [r["result"][0]["value"]["choices"][0] for r in results]
            problem = None if labels == [expected[t] for t in batch] else f"labels differ: {labels[:3]}"
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            problem = f"HTTP {status}: {exc!r} {data[:200]!r}"
        if problem:
            errors.append(problem)

    single = [(make_body(template, [t]), [t]) for t in pool]
    setup = (repo / "tests" / "runtime" / "protocol" / "setup_text.json").read_bytes()
    setup = json.dumps(json.loads(setup)["json"]).encode()  # Label Studio's /setup, which upstream needs first
    for name, port in (("ours", ours.port), ("upstream", upstream.port)):
        deadline = time.perf_counter() + 120
        while True:
            try:
                client = Client(port)
                client.post("/setup", setup)
                status, data, _ = client.post("/predict", single[0][0])
                if status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name} never answered; see {work}")
            time.sleep(0.2)
        clients[name] = client

    def raw(batch: list[str]) -> float:
        t0 = time.perf_counter()
        pipeline.predict_proba(batch)
        return time.perf_counter() - t0

    log("one task, concurrency 1")
    lat = {"raw": [], "ours": [], "upstream": []}
    i = 0
    for r in range(cfg["lat_rounds"]):
        order = ["ours", "upstream"] if r % 2 == 0 else ["upstream", "ours"]
        for _ in range(cfg["lat_per_round"]):
            lat["raw"].append(raw([pool[i % len(pool)]]))
            i += 1
        for name in order:
            for _ in range(cfg["lat_per_round"]):
                body, batch = single[i % len(pool)]
                status, data, elapsed = clients[name].post("/predict", body)
                check(status, data, batch)
                lat[name].append(elapsed)
                i += 1
    batches = {}
    rng = random.Random(seed + 2)
    for size, rounds in cfg["batch_rounds"].items():
        log(f"batches of {size}")
        t = {"raw": [], "ours": [], "upstream": []}
        for r in range(rounds):
            batch = rng.choices(pool, k=size)
            body = make_body(template, batch)
            t["raw"].append(raw(batch))
            for name in (["ours", "upstream"] if r % 2 == 0 else ["upstream", "ours"]):
                status, data, elapsed = clients[name].post("/predict", body)
                check(status, data, batch)
                t[name].append(elapsed)
        batches[size] = t
    mem = {}
    for name, proc in (("ours", ours.proc), ("upstream", upstream.proc)):
        parts = [memory(proc.pid)] + [memory(k) for k in children(proc.pid)]
        mem[name] = {"pss_total": sum(p["pss"] for p in parts), "rss_total": sum(p["rss"] for p in parts)}
    for client in clients.values():
        client.close()
    ours.stop()
    upstream.stop()

    figures = {"one_task_p50": {n: pct(v, 0.5) * 1e3 for n, v in lat.items()}}
    for size, t in batches.items():
        figures[f"batch_{size}"] = {n: statistics.median(v) * 1e3 for n, v in t.items()}
    for f in figures.values():
        f["ours_ratio"], f["upstream_ratio"] = f["ours"] / f["raw"], f["upstream"] / f["raw"]
    figures["memory_pss_mib"] = {**{n: m["pss_total"] for n, m in mem.items()}}
    figures["memory_pss_mib"]["ours_vs_upstream"] = mem["ours"]["pss_total"] / mem["upstream"]["pss_total"]
    report = {"quick": cfg is QUICK, "upstream": UPSTREAM, "date": time.strftime("%Y-%m-%d"), "figures": figures,
              "errors": {"count": len(errors), "checked": checked, "examples": errors[:5]},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
              "seconds": time.perf_counter() - t_begin}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "upstream_bench.json").write_text(json.dumps(report, indent=2))
    rows = ["| figure | raw | ours | upstream | ours ÷ raw | upstream ÷ raw |", "|---|---|---|---|---|---|"]
    for name, f in figures.items():
        if name == "memory_pss_mib":
            rows.append(f"| master + worker PSS | | {f['ours']:.0f} MiB | {f['upstream']:.0f} MiB | "
                        f"{f['ours_vs_upstream']:.2f}x of upstream's | |")
        else:
            rows.append(f"| {name.replace('_', ' ')} | {f['raw']:.2f} ms | {f['ours']:.2f} ms | {f['upstream']:.2f} ms"
                        f" | {f['ours_ratio']:.2f}x | {f['upstream_ratio']:.2f}x |")
    rows += ["", (f"{UPSTREAM} vs ours, {report['date']}; invalid answers {len(errors)} of {checked}; load average "
             f"{report['machine']['loadavg'][0]:.2f}.")]
    table = "\n".join(rows) + "\n"
    (results_dir / "upstream_bench.md").write_text(table)
    print(table)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting")
    parser.add_argument("--results-dir", type=Path, default=TEMPLATE / "bench" / "results")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report = run(QUICK if args.quick else FULL, args.results_dir.resolve(), args.seed)
    return 0 if report["errors"]["count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
