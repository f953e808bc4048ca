"""Prediction benchmark of the baked text-classification backend against its raw model.

One command: ``python bench/predict_bench.py`` (``--quick`` for a tiny setting).

It bakes the template (text_classification) into a temporary directory, trains
the baked model on a seeded synthetic labeled set through the generated
runtime (``Backend.train``), starts the generated repo's production server
(``python -m lsbackend start``) and measures it against the raw floor: the same
saved model loaded in this process, ``pipeline.predict_proba`` on the same
texts, no HTTP and no JSON. Raw and server measurements alternate in rounds so
that machine noise (other processes on a shared box) falls on both alike.
Every figure is reported as server / raw (how many times slower), next to the
target. Every response is validated; errors are counted, never hidden.

Results go to ``bench/results/predict_bench.{json,md}`` (gitignored); the
Markdown table is also printed.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TEMPLATE / "tests"))
from harness import ManagedProcess, free_port  # the template's one test harness, found via the path above

PROJECT = "5"  # the captured request's project "5.1795850610"

TARGETS = {  # figure -> (max ratio or absolute, unit of the limit)
    "single_task_p50": 1.8,
    "single_task_p99": 1.8,
    "batch_1": 1.8,
    "batch_100": 1.3,
    "batch_1000": 1.15,
    "first_prediction_s": 1.5,  # absolute seconds, not a ratio
    "worker_rss": 1.2,
    "worker_pss": 1.2,
    "fit_10k": 1.3,
    "errors": 0,
    "training_p99_vs_idle": 1.5,  # one-task p99 while a training runs, vs idle p99 right around it
    "idle_worker_rss_after_training": 1.1,  # the training's memory must not stay in the serving worker
}

FULL = {"n_train": 10_000, "pool": 2000, "lat_rounds": 10, "lat_per_round": 100, "c8_rounds": 5,
        "c8_per_thread": 40, "batch_rounds": {1: 60, 100: 20, 1000: 8}, "start_reps": 3, "fit_reps": 3,
        "train_n": 10_000}
QUICK = {"n_train": 600, "pool": 200, "lat_rounds": 2, "lat_per_round": 20, "c8_rounds": 1, "c8_per_thread": 5,
         "batch_rounds": {1: 4, 100: 2, 1000: 2}, "start_reps": 1, "fit_reps": 1, "train_n": 600}


# --- helpers -----------------------------------------------------------------
def write_report(report: dict, results_dir: Path, name: str, markdown: Callable[[dict], str]) -> None:
    """Keep a run's figures as ``<name>.json`` and its table as ``<name>.md``, and print the table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (results_dir / f"{name}.md").write_text(table)
    print(table)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def memory(pid: int) -> dict:
    """RSS and PSS in MiB from /proc/<pid>/smaps_rollup."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            found[key.lower()] = int(rest.split()[0]) / 1024
    return found


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(x) for x in text)
    return found


# --- bake, data, training --------------------------------------------------
def bake(out: Path, model_type: str = "text_classification") -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out),
                             extra_context={"model_type": model_type}))


def make_dataset(labels: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """Short texts: a few words typical of the class among shared words; 10% label noise."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "de", "pa", "zu", "go", "ri", "ba"]

    def word() -> str:
        return "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))

    shared = [word() for _ in range(400)]
    own = {label: [word() for _ in range(80)] for label in labels}
    texts, ys = [], []
    for _ in range(n):
        label = rng.choice(labels)
        words = rng.choices(own[label], k=rng.randint(1, 3)) + rng.choices(shared, k=rng.randint(3, 9))
        rng.shuffle(words)
        texts.append(" ".join(words))
        ys.append(rng.choice(labels) if rng.random() < 0.1 else label)
    return texts, ys


def ls_export(texts: list[str], ys: list[str], control: str, obj: str, start_id: int = 1) -> list[dict]:
    """A Label Studio JSON export: tasks with one Choices annotation each."""
    return [
        {
            "id": start_id + i,
            "data": {"text": t},
            "annotations": [{
                "id": start_id + i,
                "result": [{"from_name": control, "to_name": obj, "type": "choices", "value": {"choices": [y]}}],
                "was_cancelled": False,
                "updated_at": "2026-11-28T07:23:30.855772Z",
            }],
        }
        for i, (t, y) in enumerate(zip(texts, ys, strict=True))
    ]


# --- HTTP client -----------------------------------------------------------
class Client:
    """One keep-alive connection; reconnects once if the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        for attempt in (0, 1):
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data, time.perf_counter() - t0
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


class Validator:
    """Checks one /predict answer: one prediction per task, config labels, model_version, same label as raw."""

    def __init__(self, labels: list[str], control: str, obj: str, expected: dict[str, str]) -> None:
        self.labels, self.control, self.obj, self.expected = set(labels), control, obj, expected
        self.errors = 0
        self.checked = 0
        self.examples: list[str] = []
        self.lock = threading.Lock()

    def problem(self, status: int, data: bytes, texts: list[str], version: str | None) -> str | None:
        if status != 200:
            return f"HTTP {status}: {data[:200]!r}"
        try:
            results = json.loads(data)["results"]
        except (ValueError, KeyError, TypeError) as exc:
            return f"bad JSON: {exc}"
        if not isinstance(results, list) or len(results) != len(texts):
            return f"{len(results) if isinstance(results, list) else results!r} results for {len(texts)} tasks"
        for text, pred in zip(texts, results, strict=True):
            if not isinstance(pred, dict) or not isinstance(pred.get("result"), list) or len(pred["result"]) != 1:
                return f"not one result: {pred!r}"[:200]
            mv = pred.get("model_version")
            if not isinstance(mv, str) or not mv or (version is not None and mv != version):
                return f"model_version {mv!r}, expected {version!r}"
            item = pred["result"][0]
            choices = (item.get("value") or {}).get("choices")
            if (item.get("from_name"), item.get("to_name"), item.get("type")) != (self.control, self.obj, "choices"):
                return f"wrong names: {item!r}"[:200]
            if not isinstance(choices, list) or len(choices) != 1 or choices[0] not in self.labels:
                return f"label not in config: {choices!r}"
            if not 0.0 <= float(item.get("score", -1)) <= 1.0:
                return f"score out of range: {item.get('score')!r}"
            if version is not None and choices[0] != self.expected[text]:
                return f"label {choices[0]!r} differs from the raw model's {self.expected[text]!r}"
        return None

    def check(self, status: int, data: bytes, texts: list[str], version: str | None) -> bool:
        problem = self.problem(status, data, texts, version)
        with self.lock:
            self.checked += 1
            if problem:
                self.errors += 1
                if len(self.examples) < 5:
                    self.examples.append(problem)
        return problem is None


def make_body(template: dict, texts: list[str], first_id: int = 1000) -> bytes:
    """The captured predict_text.json body with its task shape repeated for ``texts``."""
    task0 = template["tasks"][0]
    tasks = [{**task0, "id": first_id + i, "inner_id": first_id + i, "data": {"text": t}} for i, t in enumerate(texts)]
    return json.dumps({**template, "tasks": tasks}).encode()


# --- server process ----------------------------------------------------------
#: The HTTP servers compared, each started the way a container would start it. The first one is the
#: production command the image runs (``python -m lsbackend start``); the others are the same app under
#: another server, with the same worker count, thread count and allocator setting.
SERVERS = {
    "gunicorn-gthread": ([sys.executable, "-m", "lsbackend", "start"], {}),
    # gunicorn silently picks gthread when threads > 1, so the sync worker needs --threads 1 as well
    "gunicorn-sync": ([sys.executable, "-m", "lsbackend", "start"],
                      {"GUNICORN_CMD_ARGS": "--worker-class sync --threads 1"}),
    "granian": ([sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", "{port}",
                 "--workers", "1", "--blocking-threads", "8", "--no-ws", "lsbackend.wsgi:app"],
                {"MALLOC_ARENA_MAX": "2"}),
}
DEFAULT_SERVER = "gunicorn-gthread"
SLOW_WAIT_S = 3.0  # an ordinary request still waiting this long behind stalled clients counts as blocked


class Server:
    """The baked repo's app under one of SERVERS, started and stopped through the template's test harness."""

    def __init__(self, repo: Path, model_dir: Path, logfile: Path, kind: str = DEFAULT_SERVER) -> None:
        self.repo, self.model_dir, self.logfile, self.kind = repo, model_dir, logfile, kind
        self.port = free_port()
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        argv, extra = SERVERS[self.kind]
        env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "MODEL_DIR": str(self.model_dir),
               "TRAIN_DEBOUNCE_SECONDS": "0", "PYTHONPATH": "", **extra}
        self.started = time.perf_counter()
        self.process = ManagedProcess(self.kind, [a.format(port=self.port) for a in argv], self.logfile,
                                      cwd=self.repo, env=env).start()
        self.proc = self.process.popen

    def wait_first_prediction(self, body: bytes, texts: list[str], validator: Validator, version: str) -> float:
        """Seconds from process start to the first valid prediction."""
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} exited with {self.proc.returncode}; see {self.logfile}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
            except OSError:
                time.sleep(0.005)
                continue
            if validator.check(resp.status, data, texts, version):
                return time.perf_counter() - self.started
            time.sleep(0.005)
        raise SystemExit(f"no valid prediction within 60 s; see {self.logfile}")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def worker_pid(self) -> int:
        kids = self.worker_pids()
        if len(kids) != 1:
            raise SystemExit(f"expected one {self.kind} worker, found {kids}")
        return kids[0]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=30)


RAW_START = """
import pickle, sys
with open(sys.argv[1], "rb") as fh:
    pipeline = pickle.load(fh)["pipeline"]
if sys.argv[2] == "predict":
    pipeline.predict_proba([sys.argv[3]])
print("ready", flush=True)
sys.stdin.read()
"""


def raw_process(model_file: Path, mode: str, text: str = "") -> tuple[subprocess.Popen, float]:
    """A process that loads the saved model (and predicts one text); seconds until it says ready."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RAW_START, str(model_file), mode, text],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    if line.strip() != "ready":
        raise SystemExit("raw model process failed")
    return proc, elapsed


def end_raw(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(10)


# --- the benchmark -----------------------------------------------------------
def run(cfg: dict, results_dir: Path, seed: int, servers: list[str]) -> dict:
    t_begin = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="predict-bench-"))
    log(f"baking into {work}")
    repo = bake(work)
    sys.path.insert(0, str(repo))
    os.chdir(repo)  # the baked model imports `lsbackend` and reads label_config.xml from its repo
    from lsbackend.label_studio_api import annotations_from_tasks
    from lsbackend.service import Backend, load_model_class
    from lsbackend.settings import Settings
    from sklearn.base import clone

    template = json.loads((repo / "tests" / "runtime" / "protocol" / "predict_text.json").read_text())["json"]
    model_dir = work / "models"
    settings = Settings(model_dir=model_dir, label_config_path=repo / "label_config.xml")
    backend = Backend(load_model_class("model"), settings)
    probe = backend.model(PROJECT, template["label_config"])
    labels, control, obj = probe.labels, probe.control.name, probe.object_tag.name

    # --- fit: runtime (export -> annotations -> Backend.train, saved) vs bare sklearn, interleaved
    texts, ys = make_dataset(labels, cfg["n_train"], seed)
    export = ls_export(texts, ys, control, obj)
    fit_runtime, fit_bare = [], []
    log(f"fitting on {len(texts)} annotations ({cfg['fit_reps']} rounds, runtime and bare alternating)")
    bare_template = None
    for _ in range(cfg["fit_reps"]):
        t0 = time.perf_counter()
        status = backend.train(PROJECT, annotations_from_tasks(export))
        fit_runtime.append(time.perf_counter() - t0)
        if status["state"] != "succeeded":
            raise SystemExit(f"training failed: {status}")
        if bare_template is None:
            bare_template = clone(backend.store(PROJECT).load_model()[1]["pipeline"])  # same hyperparameters
        gc.collect()
        t0 = time.perf_counter()
        clone(bare_template).fit(texts, ys)
        fit_bare.append(time.perf_counter() - t0)
        gc.collect()
    version, train_output = backend.store(PROJECT).load_model()
    model_file = model_dir / "projects" / PROJECT / "models" / f"{version}.pkl"
    pipeline = train_output["pipeline"]

    # --- inputs: texts the model has not seen, same for raw and server
    pool, _ = make_dataset(labels, cfg["pool"], seed + 1)
    classes = pipeline.classes_
    expected = dict(zip(pool, (str(classes[i]) for i in pipeline.predict_proba(pool).argmax(axis=1)), strict=True))
    validator = Validator(labels, control, obj, expected)
    single_bodies = [(make_body(template, [t]), [t]) for t in pool]

    def raw_predict(batch: list[str]) -> float:
        t0 = time.perf_counter()
        pipeline.predict_proba(batch)
        return time.perf_counter() - t0

    # --- start to first valid prediction, alternating with a raw process; the last servers stay up
    kinds = list(servers)
    live: dict[str, Server] = {}
    start_server: dict[str, list[float]] = {k: [] for k in kinds}
    start_raw: list[float] = []
    log(f"start-up ({cfg['start_reps']} rounds) of {', '.join(kinds)}")
    for rep in range(cfg["start_reps"]):
        proc, elapsed = raw_process(model_file, "predict", pool[rep])
        start_raw.append(elapsed)
        end_raw(proc)
        for kind in kinds:
            if kind in live:
                live[kind].stop()
            live[kind] = Server(repo, model_dir, work / f"server-{kind}.log", kind)
            live[kind].start()
            body, batch = single_bodies[rep]
            start_server[kind].append(live[kind].wait_first_prediction(body, batch, validator, version))
    mem_first = {k: memory(live[k].worker_pid()) for k in kinds}
    clients = {k: Client(live[k].port) for k in kinds}

    def rotated(r: int) -> list[str]:
        """The servers in a different order each round, so no server always runs right after raw."""
        return kinds[r % len(kinds):] + kinds[:r % len(kinds)]

    # --- single-task latency, concurrency 1
    log("single-task latency, concurrency 1")
    lat_raw: list[float] = []
    lat_srv: dict[str, list[float]] = {k: [] for k in kinds}
    lat_health: dict[str, list[float]] = {k: [] for k in kinds}
    i = 0
    for r in range(cfg["lat_rounds"]):
        for _ in range(cfg["lat_per_round"]):
            lat_raw.append(raw_predict([pool[i % len(pool)]]))
            i += 1
        for kind in rotated(r):
            client = clients[kind]
            for _ in range(cfg["lat_per_round"]):
                body, batch = single_bodies[i % len(pool)]
                status, data, elapsed = client.post("/predict", body)
                validator.check(status, data, batch, version)
                lat_srv[kind].append(elapsed)
                i += 1
            for _ in range(cfg["lat_per_round"]):  # the same HTTP path with no model and no body: the floor
                t0 = time.perf_counter()
                status, data = client.get("/health")
                lat_health[kind].append(time.perf_counter() - t0)
                if status != 200:
                    validator.errors += 1

    # --- requests/s at concurrency 8
    log("requests/s, concurrency 8")
    rps_raw: list[float] = []
    rps_srv: dict[str, list[float]] = {k: [] for k in kinds}
    n_per = cfg["c8_per_thread"]

    def threaded(work_fn) -> float:
        threads = [threading.Thread(target=work_fn, args=(k,)) for k in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return 8 * n_per / (time.perf_counter() - t0)

    def raw_worker(k: int) -> None:
        for j in range(n_per):
            pipeline.predict_proba([pool[(k * n_per + j) % len(pool)]])

    def srv_worker(port: int, k: int) -> None:
        c = Client(port)
        try:
            for j in range(n_per):
                body, batch = single_bodies[(k * n_per + j) % len(pool)]
                status, data, _ = c.post("/predict", body)
                validator.check(status, data, batch, version)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            with validator.lock:
                validator.errors += 1
                validator.examples.append(f"client: {exc!r}")
        finally:
            c.close()

    for r in range(cfg["c8_rounds"]):
        rps_raw.append(threaded(raw_worker))
        for kind in rotated(r):
            port = live[kind].port
            rps_srv[kind].append(threaded(lambda k, port=port: srv_worker(port, k)))

    # --- batches of 1, 100, 1000 tasks
    batches: dict[int, tuple[list[float], dict[str, list[float]]]] = {}
    rng = random.Random(seed + 2)
    for size, rounds in cfg["batch_rounds"].items():
        log(f"batches of {size} ({rounds} rounds)")
        raw_t: list[float] = []
        srv_t: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(rounds):
            batch = rng.choices(pool, k=size)
            body = make_body(template, batch)
            raw_t.append(raw_predict(batch))
            for kind in rotated(r):
                status, data, elapsed = clients[kind].post("/predict", body)
                validator.check(status, data, batch, version)
                srv_t[kind].append(elapsed)
        batches[size] = (raw_t, srv_t)

    # --- memory: each worker (and its master) after all of the above vs a process that just loads the model
    mem_worker = {k: memory(live[k].worker_pid()) for k in kinds}
    mem_master = {k: memory(live[k].proc.pid) for k in kinds}
    proc, _ = raw_process(model_file, "load")
    mem_raw = memory(proc.pid)
    end_raw(proc)
    proc, _ = raw_process(model_file, "predict", pool[0])
    mem_raw_pred = memory(proc.pid)
    end_raw(proc)

    # --- slow clients: do half-sent requests hold up everybody else?
    log("slow clients")
    slow = {k: {n: slow_clients(live[k].port, n, single_bodies[0], validator, version) for n in (1, 8)}
            for k in kinds}

    # --- /predict latency while the production server trains
    during = isolation = None
    if DEFAULT_SERVER in live:  # training runs in a child process: p99 during it vs idle right around it
        log(f"latency while training on {cfg['train_n']} annotations ({DEFAULT_SERVER}), and idle before/after")
        isolation = serving_while_training(live[DEFAULT_SERVER], clients[DEFAULT_SERVER], model_dir, labels,
                                           control, obj, cfg, seed, single_bodies, validator)
        during = isolation["during"]
    for client in clients.values():
        client.close()

    # --- graceful restart (SIGHUP) and stop (SIGTERM) with requests in flight; the second one ends each server
    log("SIGHUP and SIGTERM under load")
    restarts = {k: {"SIGHUP": under_load_signal(live[k], signal.SIGHUP, single_bodies),
                    "SIGTERM": under_load_signal(live[k], signal.SIGTERM, single_bodies)} for k in kinds}
    for server in live.values():
        server.stop()

    axis = {}
    for kind in kinds:
        figures = {}
        single_p50 = (pct(lat_srv[kind], 0.5), pct(lat_raw, 0.5))
        single_p99 = (pct(lat_srv[kind], 0.99), pct(lat_raw, 0.99))
        health = pct(lat_health[kind], 0.5)
        figures["single_task_p50"] = fig(single_p50[0] * 1e3, single_p50[1] * 1e3, "ms")
        figures["single_task_p99"] = fig(single_p99[0] * 1e3, single_p99[1] * 1e3, "ms")
        figures["health_p50"] = fig(health * 1e3, single_p50[1] * 1e3, "ms", extra={
            "lower_bound_single_task_ratio": (health + single_p50[1]) / single_p50[1]})
        figures["rps_c1"] = fig(len(lat_srv[kind]) / sum(lat_srv[kind]), len(lat_raw) / sum(lat_raw), "req/s",
                                higher_better=True)
        figures["rps_c8"] = fig(statistics.median(rps_srv[kind]), statistics.median(rps_raw), "req/s",
                                higher_better=True)
        for size, (raw_t, srv_t) in batches.items():
            s, r = statistics.median(srv_t[kind]), statistics.median(raw_t)
            figures[f"batch_{size}"] = fig(s * 1e3, r * 1e3, "ms", extra={
                "server_tasks_per_s": size / s, "raw_tasks_per_s": size / r,
                "server_max_ms": max(srv_t[kind]) * 1e3, "raw_max_ms": max(raw_t) * 1e3})
        figures["first_prediction_s"] = fig(statistics.median(start_server[kind]), statistics.median(start_raw),
                                            "s", extra={"server_all": start_server[kind], "raw_all": start_raw})
        figures["worker_rss"] = fig(mem_worker[kind]["rss"], mem_raw["rss"], "MiB", extra={
            "worker_after_first_prediction": mem_first[kind]["rss"], "raw_after_one_predict": mem_raw_pred["rss"],
            "master": mem_master[kind]["rss"]})
        figures["worker_pss"] = fig(mem_worker[kind]["pss"], mem_raw["pss"], "MiB", extra={
            "worker_after_first_prediction": mem_first[kind]["pss"], "raw_after_one_predict": mem_raw_pred["pss"],
            "master": mem_master[kind]["pss"]})
        for name, f in figures.items():
            judge(name, f)
        axis[kind] = {"figures": figures, "slow_clients": slow[kind], "signals": restarts[kind]}

    main_kind = DEFAULT_SERVER if DEFAULT_SERVER in axis else kinds[0]
    figures = dict(axis[main_kind]["figures"])
    fit_r, fit_b = min(fit_runtime), min(fit_bare)  # fixed work: noise only adds, so the minimum
    figures["fit_10k"] = fig(fit_r, fit_b, "s", extra={"n": len(texts), "runtime_all": fit_runtime,
                                                       "bare_all": fit_bare})
    if during is not None:
        idle = axis[main_kind]["figures"]
        figures["during_training_p50"] = fig(during["p50_ms"], idle["single_task_p50"]["server"], "ms", extra=during)
        figures["during_training_p99"] = fig(during["p99_ms"], idle["single_task_p99"]["server"], "ms")
    if isolation is not None:
        figures.update(isolation_figures(isolation))
    figures["errors"] = {"server": validator.errors, "checked": validator.checked, "examples": validator.examples,
                         "unit": "responses"}
    for name, f in figures.items():
        judge(name, f)
    report = {
        "quick": cfg is QUICK,
        "settings": cfg | {"batch_rounds": {str(k): v for k, v in cfg["batch_rounds"].items()}},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg(),
                    "note": "2 cores shared with other test runs: expect noise; raw and servers alternate"},
        "server": {"command": "python -m lsbackend start", "kind": main_kind,
                   "workers": os.environ.get("WORKERS", "1"), "threads": os.environ.get("THREADS", "8")},
        "servers": {k: {"argv": SERVERS[k][0][1:], "env": SERVERS[k][1]} for k in kinds},
        "model_version": version,
        "figures": figures,
        "axis": axis,
        "seconds": time.perf_counter() - t_begin,
    }
    write_report(report, results_dir, "predict_bench", markdown)
    return report


def judge(name: str, f: dict) -> None:
    """Attach the target of a figure and whether it is met."""
    target = TARGETS.get(name)
    f["target"] = target
    if target is not None:
        value = f["server"] if name in ("first_prediction_s", "errors") else f["ratio"]
        f["pass"] = value <= target


def slow_clients(port: int, n: int, single: tuple[bytes, list[str]], validator: Validator, version: str) -> dict:
    """``n`` clients send headers and half a body, then stall: how long does an ordinary request take now?

    The stalled clients then finish; their answers are validated too (a server may also drop them).
    """
    body, batch = single
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    stalled = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head + body[: len(body) // 2])
        stalled.append(sock)
    time.sleep(0.3)  # let the server take them in
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SLOW_WAIT_S)
    t0 = time.perf_counter()
    try:
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        ok = validator.check(resp.status, resp.read(), batch, version)
        waited = time.perf_counter() - t0
    except (TimeoutError, OSError):
        ok, waited = False, None  # still blocked after SLOW_WAIT_S
    finally:
        conn.close()
    answered = 0
    for sock in stalled:
        try:
            sock.sendall(body[len(body) // 2:])
            answered += sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            pass
        finally:
            sock.close()
    return {"other_request_ms": None if waited is None else waited * 1e3, "other_request_ok": ok,
            "stalled_answered": answered, "stalled": n}


def wait_answering(server: Server, body: bytes, deadline: float) -> float:
    """The moment the server answers a prediction again (so a later signal never lands mid-start-up)."""
    while time.perf_counter() < deadline and server.proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                return time.perf_counter()
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)
        finally:
            conn.close()
    return time.perf_counter()


def under_load_signal(server: Server, sig: signal.Signals, single_bodies: list) -> dict:
    """Eight clients post one-task requests, one new connection each; the signal goes to the master mid-run.

    Counts requests answered, refused (nothing was sent: the client can retry) and dropped (sent, then
    the connection died without an answer: lost work). SIGHUP should replace the workers with none
    dropped; SIGTERM should finish what is in flight, then exit.
    """
    counts = {"answered": 0, "refused": 0, "dropped": 0, "bad_status": 0}
    lock = threading.Lock()
    stop = threading.Event()
    old_workers = server.worker_pids()

    def client(k: int) -> None:
        n = 0
        while not stop.is_set():
            body, _ = single_bodies[(k * 997 + n) % len(single_bodies)]
            n += 1
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.connect()
            except OSError:
                with lock:
                    counts["refused"] += 1
                time.sleep(0.01)
                continue
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    counts["answered" if resp.status == 200 else "bad_status"] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["dropped"] += 1
            finally:
                conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    server.proc.send_signal(sig)
    outcome = {}
    deadline = t0 + 30
    if sig == signal.SIGTERM:
        try:
            server.proc.wait(30)
            outcome["exit_s"] = time.perf_counter() - t0
            outcome["exit_code"] = server.proc.returncode
        except subprocess.TimeoutExpired:
            outcome["exit_s"] = None
    else:
        new = []
        while time.perf_counter() < deadline:
            alive = server.proc.poll() is None
            new = server.worker_pids() if alive else []
            if not alive or (new and not set(new) & set(old_workers)):
                break
            time.sleep(0.02)
        outcome["workers_replaced"] = bool(new) and not set(new) & set(old_workers)
        outcome["replaced_after_s"] = time.perf_counter() - t0
        outcome["still_running"] = server.proc.poll() is None
        outcome["answering_after_s"] = wait_answering(server, single_bodies[0][0], deadline) - t0
        time.sleep(1.0)  # keep the load on the new workers for a moment
    stop.set()
    for t in threads:
        t.join()
    return {**counts, **outcome}


def fig(server: float, raw: float, unit: str, higher_better: bool = False, extra: dict | None = None) -> dict:
    ratio = raw / server if higher_better else server / raw
    return {"server": server, "raw": raw, "ratio": ratio, "unit": unit, **(extra or {})}


def training_under_load(server, client, model_dir, labels, control, obj, n, seed, single_bodies, validator) -> dict:
    """Record annotations, send START_TRAINING, time single-task /predict until the training finishes."""
    texts, ys = make_dataset(labels, n, seed + 3)
    ann_dir = model_dir / "projects" / PROJECT / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    # ProjectStore.save_annotation's file layout, written without its per-file fsync to keep set-up short.
    from lsbackend.label_studio_api import annotations_from_tasks

    for ann in annotations_from_tasks(ls_export(texts, ys, control, obj, start_id=100_000)):
        (ann_dir / f"{ann['id']}.json").write_text(json.dumps(ann))
    body = json.dumps({"action": "START_TRAINING", "project": {"id": int(PROJECT)}}).encode()
    status, data, _ = client.post("/webhook", body)
    if status != 201:
        raise SystemExit(f"START_TRAINING answered {status}: {data[:200]!r}")
    lat, i, state, t0 = [], 0, "queued", time.perf_counter()
    while state in ("queued", "running") and time.perf_counter() - t0 < 120:
        for _ in range(10):
            b, batch = single_bodies[i % len(single_bodies)]
            st, data, elapsed = client.post("/predict", b)
            validator.check(st, data, batch, None)  # the version changes when the new model lands
            lat.append(elapsed)
            i += 1
        st, data = client.get(f"/training/{PROJECT}")
        state = json.loads(data).get("state")
    train_s = time.perf_counter() - t0
    b, batch = single_bodies[0]
    st, data, reload_s = client.post("/predict", b)  # first request after the new model: reload cost
    validator.check(st, data, batch, None)
    return {"state": state, "requests": len(lat), "training_s": train_s, "p50_ms": pct(lat, 0.5) * 1e3,
            "p99_ms": pct(lat, 0.99) * 1e3, "max_ms": max(lat) * 1e3, "first_after_training_ms": reload_s * 1e3}


# --- training isolation: serving while a training runs ------------------------
def one_task_latencies(client: Client, single_bodies: list, validator: Validator, count: int, first: int) -> list:
    """``count`` sequential one-task /predict calls; their latencies in seconds."""
    lat = []
    for i in range(first, first + count):
        body, batch = single_bodies[i % len(single_bodies)]
        status, data, elapsed = client.post("/predict", body)
        validator.check(status, data, batch, None)
        lat.append(elapsed)
    return lat


def serving_while_training(server, client, model_dir, labels, control, obj, cfg, seed, single_bodies,
                           validator) -> dict:
    """One-task /predict p99 while a ``train_n``-annotation training runs vs idle, and the worker's memory.

    Idle latency is measured just before and just after the training with as
    many requests as the latency section, so machine noise of the moment
    falls on both sides. Memory is the serving worker's RSS/PSS while idle
    before and after the training; during it, the worker and the training
    child (the worker's child process) are sampled every 0.2 s.
    """
    worker = server.worker_pid()
    count = cfg["lat_rounds"] * cfg["lat_per_round"]
    mem_before = memory(worker)
    idle = one_task_latencies(client, single_bodies, validator, count, 0)
    peaks = {"worker_rss": 0.0, "child_rss": 0.0, "children_seen": 0}
    stop = threading.Event()

    def sample() -> None:
        seen = set()
        while not stop.wait(0.2):
            try:
                peaks["worker_rss"] = max(peaks["worker_rss"], memory(worker)["rss"])
                for kid in children(worker):
                    seen.add(kid)
                    peaks["child_rss"] = max(peaks["child_rss"], memory(kid)["rss"])
            except (FileNotFoundError, ProcessLookupError, KeyError):
                continue  # the child ended between listing and reading
            peaks["children_seen"] = len(seen)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        during = training_under_load(server, client, model_dir, labels, control, obj, cfg["train_n"], seed,
                                     single_bodies, validator)
    finally:
        stop.set()
        sampler.join()
    if during["state"] != "succeeded":
        raise SystemExit(f"the training under load ended {during['state']!r}; see {server.logfile}")
    idle += one_task_latencies(client, single_bodies, validator, count, count)
    beside_busy = latencies_beside_a_busy_process(client, single_bodies, validator, during["requests"])
    gc.collect()
    time.sleep(1)  # let the worker settle (the new model is loaded by now)
    return {"during": during, "idle_p99_ms": pct(idle, 0.99) * 1e3, "idle_p50_ms": pct(idle, 0.5) * 1e3,
            "idle_requests": len(idle), "busy_p99_ms": pct(beside_busy, 0.99) * 1e3,
            "mem_before": mem_before, "mem_after": memory(worker), **peaks}


#: A process that only burns one core, at the niceness given as its argument.
BUSY_LOOP = "import os, sys\nos.nice(int(sys.argv[1]))\nwhile True:\n    pass\n"


def latencies_beside_a_busy_process(client: Client, single_bodies: list, validator: Validator, count: int) -> list:
    """The floor for "while training": the same calls while a bare busy loop holds a core at the training's priority.

    It does no I/O, allocates nothing and shares nothing with the server, so
    what it adds to the p99 is the machine's (scheduling, a shared core), not
    the backend's; the training's p99 is judged against idle, and this says
    how much of the gap any CPU-bound neighbour would open on this machine.
    """
    from lsbackend.settings import Settings  # the baked repo's: the server runs with its TRAINING_NICE default

    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(Settings.training_nice)])
    try:
        time.sleep(0.5)
        return one_task_latencies(client, single_bodies, validator, count, 0)
    finally:
        busy.kill()
        busy.wait()


def isolation_figures(iso: dict) -> dict:
    during = iso["during"]
    return {
        "training_p99_vs_idle": fig(during["p99_ms"], iso["idle_p99_ms"], "ms", extra={
            "during_p50_ms": during["p50_ms"], "idle_p50_ms": iso["idle_p50_ms"], "during_max_ms": during["max_ms"],
            "during_requests": during["requests"], "idle_requests": iso["idle_requests"],
            "training_s": during["training_s"], "busy_loop_p99_ms": iso["busy_p99_ms"]}),
        "idle_worker_rss_after_training": fig(iso["mem_after"]["rss"], iso["mem_before"]["rss"], "MiB", extra={
            "pss_before": iso["mem_before"]["pss"], "pss_after": iso["mem_after"]["pss"],
            "worker_peak_rss_during": iso["worker_rss"], "training_child_peak_rss": iso["child_rss"],
            "training_children_seen": iso["children_seen"]}),
    }


LABELS = {
    "single_task_p50": "one task /predict, p50 (c=1)",
    "single_task_p99": "one task /predict, p99 (c=1)",
    "health_p50": "GET /health p50: HTTP+Flask floor, no model (vs raw one-task)",
    "rps_c1": "requests/s, concurrency 1",
    "rps_c8": "requests/s, concurrency 8",
    "batch_1": "batch of 1 task",
    "batch_100": "batch of 100 tasks",
    "batch_1000": "batch of 1000 tasks",
    "first_prediction_s": "process start to first valid prediction",
    "worker_rss": "worker memory RSS (vs process that loads the model)",
    "worker_pss": "worker memory PSS (vs process that loads the model)",
    "fit_10k": "fit (runtime vs bare sklearn)",
    "during_training_p50": "one task p50 while training (vs idle server)",
    "during_training_p99": "one task p99 while training (vs idle server)",
    "training_p99_vs_idle": "one task p99 while training vs idle just before/after",
    "idle_worker_rss_after_training": "idle worker RSS after training vs before",
}


def isolation_note(f: dict) -> str:
    t, m = f["training_p99_vs_idle"], f["idle_worker_rss_after_training"]
    return (f"Training in its child process: p99 {t['server']:.1f} ms during vs {t['raw']:.1f} ms idle "
            f"(p50 {t['during_p50_ms']:.1f} vs {t['idle_p50_ms']:.1f} ms, max {t['during_max_ms']:.0f} ms); "
            f"beside a bare busy loop at the training's niceness instead: p99 {t['busy_loop_p99_ms']:.1f} ms "
            f"({t['busy_loop_p99_ms'] / t['raw']:.2f}x idle; the machine's share of the gap); "
            f"worker RSS idle {m['raw']:.0f} -> {m['server']:.0f} MiB, peak {m['worker_peak_rss_during']:.0f} MiB "
            f"during; the training child peaked at {m['training_child_peak_rss']:.0f} MiB. ")


def markdown(report: dict) -> str:
    f = report["figures"]
    rows = [f"Production command (`{report['server']['command']}`, {report['server']['kind']}):", "",
            "| figure | server | raw floor | ratio | target | ok |", "|---|---|---|---|---|---|"]
    for name, label in LABELS.items():
        x = f.get(name)
        if x is None:
            continue
        unit = x["unit"]
        if name.startswith("batch_"):
            srv = f"{x['server']:.2f} ms ({x['server_tasks_per_s']:.0f} tasks/s)"
            raw = f"{x['raw']:.2f} ms ({x['raw_tasks_per_s']:.0f} tasks/s)"
        elif name == "fit_10k":
            label = f"fit on {x['n']} annotations (runtime vs bare sklearn)"
            srv, raw = f"{x['server']:.2f} s", f"{x['raw']:.2f} s"
        else:
            srv, raw = f"{x['server']:.2f} {unit}", f"{x['raw']:.2f} {unit}"
        tgt, ok = target_cells(name, x)
        rows.append(f"| {label} | {srv} | {raw} | {x['ratio']:.2f}x | {tgt} | {ok} |")
    e = f["errors"]
    rows.append(f"| malformed/invalid responses | {e['server']} of {e['checked']} | | | 0 | "
                f"{'yes' if e['pass'] else 'NO'} |")
    h = f["health_p50"]
    notes = [
        "",
        (
            f"Ratios are server / raw (times slower); for requests/s raw / server. Raw floor: the same saved "
            f"model, `pipeline.predict_proba` in-process. Model {report['model_version']}; "
            f"{report['machine']['cpus']} CPUs, load average {report['machine']['loadavg'][0]:.2f} at the end "
            f"(shared machine: noise; raw and servers measured alternately). "
            f"An empty GET /health round trip alone puts the one-task ratio at ≥ "
            f"{h['lower_bound_single_task_ratio']:.2f}x. "
        ),
    ]
    if "during_training_p50" in f:
        d = f["during_training_p50"]
        notes[-1] += (f"While training ({d['training_s']:.1f} s, {d['requests']} requests): max {d['max_ms']:.0f} ms; "
                      f"first request after the new model: {d['first_after_training_ms']:.0f} ms. ")
    if "training_p99_vs_idle" in f:
        notes[-1] += isolation_note(f)
    notes[-1] += f"Run took {report['seconds']:.0f} s{' (--quick)' if report['quick'] else ''}."
    return "\n".join(rows + notes + ["", axis_markdown(report)]) + "\n"


def target_cells(name: str, x: dict) -> tuple[str, str]:
    target = x.get("target")
    if target is None:
        return "", ""
    ok = "yes" if x["pass"] else "NO"
    return (f"≤ {target} s", ok) if name == "first_prediction_s" else (f"≤ {target}x", ok)


AXIS_ROWS = ["single_task_p50", "single_task_p99", "health_p50", "rps_c1", "rps_c8", "batch_1", "batch_100",
             "batch_1000", "first_prediction_s", "worker_pss"]


def axis_markdown(report: dict) -> str:
    """One column per server: each figure with its ratio to the raw model of the same run."""
    axis = report["axis"]
    kinds = list(axis)
    rows = ["Server axis (same app, same run; ratio to the raw model in brackets):", "",
            "| figure | " + " | ".join(kinds) + " | target |", "|---|" + "---|" * (len(kinds) + 1)]
    for name in AXIS_ROWS:
        cells = []
        for kind in kinds:
            x = axis[kind]["figures"][name]
            value = x["server_tasks_per_s"] if name.startswith("batch_") else x["server"]
            unit = "tasks/s" if name.startswith("batch_") else x["unit"]
            mark = "" if x.get("pass", True) else " ✗"
            cells.append(f"{value:.2f} {unit} ({x['ratio']:.2f}x){mark}")
        tgt, _ = target_cells(name, axis[kinds[0]]["figures"][name])
        rows.append(f"| {LABELS[name]} | " + " | ".join(cells) + f" | {tgt} |")
    cells = []
    for kind in kinds:
        pss = axis[kind]["figures"]["worker_pss"]
        cells.append(f"{pss['server'] + pss['master']:.0f} MiB")
    rows.append("| memory PSS, master + worker | " + " | ".join(cells) + " | |")
    for n in (1, 8):
        cells = []
        for kind in kinds:
            s = axis[kind]["slow_clients"][n]
            waited = f"{s['other_request_ms']:.1f} ms" if s["other_request_ms"] is not None else "blocked"
            cells.append(f"{waited}; {s['stalled_answered']}/{s['stalled']} stalled answered")
        rows.append(f"| one request while {n} client(s) stall mid-body | " + " | ".join(cells) + " | |")
    for sig in ("SIGHUP", "SIGTERM"):
        cells = []
        for kind in kinds:
            x = axis[kind]["signals"][sig]
            text = f"{x['answered']} answered, {x['dropped']} dropped, {x['refused']} refused"
            if sig == "SIGHUP":
                text += "; workers replaced" if x["workers_replaced"] else "; workers NOT replaced"
                text += "" if x["still_running"] else "; server EXITED"
            else:
                text += f"; exit {x.get('exit_code')} after {x['exit_s']:.2f} s" if x.get("exit_s") else "; no exit"
            cells.append(text)
        rows.append(f"| {sig} under 8 clients | " + " | ".join(cells) + " | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting (for the template's test)")
    parser.add_argument("--results-dir", type=Path, default=TEMPLATE / "bench" / "results")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated, from {', '.join(SERVERS)}; the first is the production command")
    args = parser.parse_args(argv)
    report = run(QUICK if args.quick else FULL, args.results_dir.resolve(), args.seed, args.servers.split(","))
    return 0 if report["figures"]["errors"]["server"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
