"""Faults the backend must survive: a process killed mid-save, a failing training, an unusable
MODEL_DIR, and several processes sharing one MODEL_DIR (real subprocesses, real gunicorn)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lsbackend.errors import StorageError
from lsbackend.server import create_app
from lsbackend.service import Backend
from lsbackend.settings import Settings

import examples
from conftest import EXAMPLES_CONFIG, MODEL_CLASS, ROOT, SHAPE, captured, training_events
from harness import ServerProcess, free_port, wait_until

TESTS = Path(__file__).resolve().parent
PROJECT = "7"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "PYTHONUNBUFFERED": "1",
       "LABEL_CONFIG": str(EXAMPLES_CONFIG)}


def annotations() -> list[dict]:
    """The variant's labeled examples as the annotation dicts ``fit`` receives."""
    return [
        {"id": e["annotation"]["id"], "result": e["annotation"]["result"], "was_cancelled": False,
         "updated_at": e["annotation"]["updated_at"], "task": {"id": e["task"]["id"], "data": e["task"]["data"]}}
        for e in training_events()
    ]


def export(path: Path) -> Path:
    """The same examples as a Label Studio JSON export (what ``python -m lsbackend train`` reads)."""
    tasks = [{"id": a["task"]["id"], "data": a["task"]["data"], "annotations": [a]} for a in annotations()]
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def make_backend(model_dir: Path) -> Backend:
    return Backend(MODEL_CLASS, Settings(model_dir=model_dir, label_config_path=EXAMPLES_CONFIG))


# --- killed while saving a model ---------------------------------------------------------------------
KILL_AT_SAVE = """
import json, os, signal, sys
from pathlib import Path
from lsbackend.service import Backend, load_model_class
from lsbackend.settings import Settings

model_dir, kill_before, annotations = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
config = Path(sys.argv[4])
real_replace = os.replace

def replace(src, dst):
    name = Path(dst).name
    if (kill_before == "model" and name.endswith(".pkl")) or (kill_before == "pointer" and name == "CURRENT"):
        os.kill(os.getpid(), signal.SIGKILL)  # as hard as a power cut, at the worst moment
    return real_replace(src, dst)

os.replace = replace
settings = Settings(model_dir=Path(model_dir), label_config_path=config)
Backend(load_model_class("model"), settings).train("PROJECT_ID", annotations)
sys.exit("the save step was never reached")
""".replace("PROJECT_ID", PROJECT)


@pytest.mark.parametrize("kill_before", ["model", "pointer"])
@pytest.mark.slow
def test_killed_while_saving_the_last_good_model_loads_on_restart(tmp_path, kill_before):
    model_dir = tmp_path / "models"
    good = make_backend(model_dir).train(PROJECT, annotations())["model_version"]
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps(annotations()), encoding="utf-8")
    args = [str(model_dir), kill_before, str(data), str(EXAMPLES_CONFIG)]
    child = subprocess.run([sys.executable, "-c", KILL_AT_SAVE, *args],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr

    project_dir = model_dir / "projects" / PROJECT
    leftovers = sorted(p.name for p in project_dir.rglob(".*.tmp"))
    if kill_before == "model":
        assert leftovers, "the kill should have left the half-saved model's temporary file"
    restarted = make_backend(model_dir)  # a restart: a new process would build exactly this
    assert restarted.store(PROJECT).current_version() == good
    assert not any(name.startswith(".") for name in os.listdir(project_dir / "models") if name.endswith(".pkl"))
    status = restarted.status(PROJECT)
    assert status["state"] == "interrupted" and status["model_version"] == good  # not "running" forever
    body = captured(f"predict_{SHAPE}")
    body["tasks"] = [{"id": i, "data": d} for i, (d, _) in enumerate(examples.holdout())]
    client = create_app(restarted).test_client()
    results = client.post("/predict", json={**body, "project": PROJECT}).get_json()["results"]
    assert {r["model_version"] for r in results} == {good}
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
    again = restarted.train(PROJECT, annotations())  # and training works again after the crash
    # v2, or v3 when the killed save left a complete v2 file that never became current
    expected = "v3" if kill_before == "pointer" else "v2"
    assert again["state"] == "succeeded" and again["model_version"].split("-")[0] == expected


# --- model versions: ordered by number, and a broken one never served --------------------------------
def holdout_predict_body() -> dict:
    body = captured(f"predict_{SHAPE}")
    body["tasks"] = [{"id": i, "data": d} for i, (d, _) in enumerate(examples.holdout())]
    return {**body, "project": PROJECT}


def test_versions_are_pruned_by_number_even_when_older_files_look_newer(tmp_path):
    """A clock stepped back, or MODEL_DIR restored from a backup: file times say nothing about age."""
    model_dir = tmp_path / "models"
    backend = make_backend(model_dir)
    first = backend.train(PROJECT, annotations())["model_version"]
    models = backend.store(PROJECT).dir / "models"
    future = time.time() + 86_400
    for number in (2, 3):  # older versions, dated a day ahead
        (models / f"v{number}-20200101T000000.pkl").write_bytes((models / f"{first}.pkl").read_bytes())
    (backend.store(PROJECT).dir / "CURRENT").write_text("v3-20200101T000000")
    for path in models.iterdir():
        os.utime(path, (future, future))
    trained = make_backend(model_dir).train(PROJECT, annotations())
    assert trained["state"] == "succeeded" and trained["model_version"].startswith("v4-")
    kept = sorted(p.stem.split("-")[0] for p in models.glob("v*.pkl"))
    assert kept == ["v2", "v3", "v4"]  # v1 pruned; by mtime, the new v4 was deleted and every predict failed
    client = create_app(make_backend(model_dir)).test_client()
    response = client.post("/predict", json=holdout_predict_body())
    assert response.status_code == 200, response.status
    assert {r["model_version"] for r in response.get_json()["results"]} == {trained["model_version"]}


def test_the_next_version_is_above_every_kept_file(tmp_path):
    backend = make_backend(tmp_path / "models")
    first = backend.train(PROJECT, annotations())["model_version"]
    models = backend.store(PROJECT).dir / "models"
    (models / "v7-20200101T000000.pkl").write_bytes((models / f"{first}.pkl").read_bytes())  # from a backup
    again = backend.train(PROJECT, annotations())["model_version"]
    assert again.startswith("v8-")  # was v2: a second "v2" ranked below v7 and the wrong model was kept
    assert backend.store(PROJECT).current_version() == again


def _break(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00not a pickle" * 100)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink()
    elif how == "corrupt-middle":  # ends like a pickle, so only loading it tells
        middle = len(data) // 2
        path.write_bytes(data[:middle] + b"\xff\xfe\xfd" * 20 + data[middle + 60 :])


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A MODEL_DIR with two trained versions, the second current: trained once, copied by each test."""
    model_dir = tmp_path_factory.mktemp("two-versions") / "models"
    backend = make_backend(model_dir)
    good = backend.train(PROJECT, annotations())["model_version"]
    return model_dir, good, backend.train(PROJECT, annotations())["model_version"]


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "missing", "corrupt-middle"])
def test_a_broken_current_model_falls_back_to_the_newest_loadable_version(tmp_path, caplog, how, two_versions):
    trained, good, broken = two_versions
    model_dir = shutil.copytree(trained, tmp_path / "models")
    _break(make_backend(model_dir).store(PROJECT).dir / "models" / f"{broken}.pkl", how)

    restarted = make_backend(model_dir)  # a new worker process
    client = create_app(restarted).test_client()
    setup = {**captured(f"setup_{SHAPE}"), "project": PROJECT}
    # before any /predict: Label Studio must see the version /predict will serve, even when the damaged
    # file kept its size (corrupt-middle: /setup named the broken version, /predict served the good one)
    assert client.post("/setup", json=setup).get_json()["model_version"] == good
    with caplog.at_level("WARNING"):
        response = client.post("/predict", json=holdout_predict_body())
    assert response.status_code == 200, response.status  # was a 500 on every /predict
    results = response.get_json()["results"]
    assert {r["model_version"] for r in results} == {good}
    assert [examples.predicted_label(r) for r in results] == [label for _, label in examples.holdout()]
    phrase = response.status.split(" ", 1)[1]
    assert phrase.startswith(f"OK; serving {good}: model {broken} cannot be loaded"), phrase
    assert response.get_json()["warning"].startswith(f"serving {good}: model {broken} cannot be loaded")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"model {broken} cannot be loaded" in logged and f"serving {good} because {broken}" in logged
    status = client.get(f"/training/{PROJECT}").get_json()
    assert status["model_version"] == good and f"model {broken} cannot be loaded" in status["warning"]
    assert client.post("/setup", json=setup).get_json()["model_version"] == good
    other_worker = create_app(make_backend(model_dir)).test_client()  # has loaded nothing yet
    assert other_worker.post("/setup", json=setup).get_json()["model_version"] == good

    retrained = restarted.train(PROJECT, annotations())  # training never needs the broken file
    assert retrained["state"] == "succeeded", retrained
    response = client.post("/predict", json=holdout_predict_body())
    assert response.status == "200 OK" and "warning" not in response.get_json()
    assert {r["model_version"] for r in response.get_json()["results"]} == {retrained["model_version"]}
    assert "warning" not in client.get(f"/training/{PROJECT}").get_json()


def test_when_no_version_loads_predictions_are_empty_and_say_why(tmp_path):
    backend = make_backend(tmp_path / "models")
    only = backend.train(PROJECT, annotations())["model_version"]
    _break(backend.store(PROJECT).dir / "models" / f"{only}.pkl", "truncated")
    client = create_app(make_backend(tmp_path / "models")).test_client()
    response = client.post("/predict", json=holdout_predict_body())
    assert response.status_code == 200
    assert all(r["result"] == [] for r in response.get_json()["results"])
    assert "serving no model" in response.status
    assert make_backend(tmp_path / "models").train(PROJECT, annotations())["state"] == "succeeded"


# --- an unusable MODEL_DIR ---------------------------------------------------------------------------
UNUSABLE = {
    "missing and uncreatable": "/dev/null/models",  # a path under a file: mkdir fails even for root
    "not writable": "/proc/self",  # exists, but nobody (root included) can create a file there
}


@pytest.mark.parametrize("model_dir", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_model_dir_stops_the_backend_at_once(model_dir):
    with pytest.raises(StorageError, match=re.escape(f"MODEL_DIR {model_dir!r} is not writable")) as exc:
        make_backend(Path(model_dir))
    assert "Set MODEL_DIR to a writable directory" in str(exc.value)


@pytest.mark.parametrize("command", ["serve", "start"])
@pytest.mark.slow
def test_the_server_commands_refuse_an_unusable_model_dir_with_the_fix(command):
    env = {**ENV, "MODEL_DIR": "/dev/null/models", "PORT": str(free_port())}
    proc = subprocess.run([sys.executable, "-m", "lsbackend", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "MODEL_DIR '/dev/null/models' is not writable" in proc.stderr
    assert "Set MODEL_DIR to a writable directory" in proc.stderr


# --- a full or read-only MODEL_DIR (a real tmpfs, mounted in a private mount namespace) ------------------
FULL_DISK = """
import json, os, subprocess, sys, time
from pathlib import Path
from lsbackend.server import create_app
from lsbackend.service import Backend, load_model_class
from lsbackend.settings import Settings

mount, events = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
start, config = json.loads(sys.argv[3]), sys.argv[4]
project = str(start["project"]["id"])
backend = Backend(load_model_class("model"), Settings(model_dir=mount / "models", label_config_path=Path(config),
                                                      train_debounce_seconds=0.05))
client = create_app(backend).test_client()
out = {}

def call(key, body):
    response = client.post("/webhook", json=body)
    out[key] = [response.status_code, response.status.split(" ", 1)[1]]

def wait_for_training():
    deadline = time.monotonic() + 300  # bounded; the training child imports the model's libraries first
    while client.get(f"/training/{project}").get_json()["state"] in ("queued", "running", "idle"):
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.05)
    return client.get(f"/training/{project}").get_json()

for event in events[:-2]:
    assert client.post("/webhook", json=event).status_code == 200
fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
for block in (1 << 16, 1 << 12, 1):  # fill the filesystem to the last byte
    try:
        while True:
            os.write(fd, b"x" * block)
    except OSError as exc:
        out.setdefault("filled_with", exc.strerror)
os.close(fd)
call("full_annotation", events[-2])
call("full_start_training", start)
out["full_train"] = backend.train(project)
out["full_status"] = client.get(f"/training/{project}").get_json()
os.unlink(mount / "filler")  # space returns
call("after_annotation", events[-2])
call("after_start_training", start)
out["after_status"] = wait_for_training()
subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
call("ro_annotation", events[-1])
call("ro_start_training", start)
print(json.dumps(out))
"""


def run_with_tmpfs(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run FULL_DISK with a 16 MB tmpfs mounted at tmp_path/mnt in a mount namespace of its own.

    As root (CI), ``unshare --mount``; otherwise a user namespace maps the user to root inside it.
    """
    mount = tmp_path / "mnt"
    mount.mkdir()
    namespace = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    shell = 'mount -t tmpfs -o size=16m tmpfs "$0" || exit 99; exec "$@"'
    cmd = [*namespace, "sh", "-c", shell, str(mount), sys.executable, "-c", FULL_DISK, str(mount), *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        proc = subprocess.CompletedProcess(cmd, 99, "", "unshare is not installed")
    if proc.returncode == 99 or "unshare failed" in proc.stderr:
        message = f"cannot mount a small tmpfs here: {proc.stderr.strip()[-300:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return proc


@pytest.mark.slow


def test_a_full_then_read_only_model_dir_answers_with_what_happened_and_recovers(tmp_path):
    events = training_events()
    data = tmp_path / "events.json"
    data.write_text(json.dumps(events), encoding="utf-8")
    start = captured(f"webhook_start_training_{SHAPE}")
    proc = run_with_tmpfs(tmp_path, [str(data), json.dumps(start), str(EXAMPLES_CONFIG)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["filled_with"] == "No space left on device"
    annotation_id = events[-2]["annotation"]["id"]
    # each was "500 Internal error: OSError"
    assert out["full_annotation"] == [
        507, f"MODEL_DIR is full: cannot write annotation {annotation_id} (No space left on device)"]
    assert out["full_start_training"] == [
        507, "MODEL_DIR is full: cannot write the training status (No space left on device)"]
    assert out["full_train"]["state"] == "failed"
    assert out["full_train"]["error"].startswith("MODEL_DIR is full: cannot write ")
    assert out["full_status"]["state"] == "failed" and out["full_status"]["error"] == out["full_train"]["error"]
    assert out["after_annotation"][0] == 200 and out["after_start_training"][0] == 201  # recovered by itself
    assert out["after_status"]["state"] == "succeeded", out["after_status"]
    read_only = out["ro_annotation"]
    assert read_only[0] == 503
    assert read_only[1] == f"MODEL_DIR is read-only: cannot write annotation {events[-1]['annotation']['id']} " \
                           "(Read-only file system)"
    assert out["ro_start_training"] == [503, "MODEL_DIR is read-only: cannot write the training status "
                                             "(Read-only file system)"]


# --- one project, several processes ------------------------------------------------------------------
BLOCKING_FIT = """
import json, os, sys, time
from pathlib import Path
from lsbackend.service import load_model_class

Base = load_model_class("model")


class BlockingModel(Base):
    def fit(self, annotations, **kwargs):
        log = Path(os.environ["FIT_LOG"])
        with log.open("a") as fh:
            fh.write(f"enter {os.getpid()}\\n")
        release = Path(os.environ["FIT_RELEASE"])
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with log.open("a") as fh:
            fh.write(f"exit {os.getpid()}\\n")
        return super().fit(annotations, **kwargs)
"""


def blocked_flock_waiters() -> int:
    """How many flock() calls wait right now, system-wide (Linux /proc/locks marks them '->')."""
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "-> FLOCK" in line)


@pytest.mark.slow


def test_two_processes_never_train_one_project_at_once(tmp_path):
    (tmp_path / "blocking_model.py").write_text(BLOCKING_FIT, encoding="utf-8")
    fit_log, release = tmp_path / "fit.log", tmp_path / "release"
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV["PYTHONPATH"]]),
           "MODEL_CLASS": "blocking_model:BlockingModel", "MODEL_DIR": str(tmp_path / "models"),
           "FIT_LOG": str(fit_log), "FIT_RELEASE": str(release)}
    data = export(tmp_path / "export.json")
    cmd = [sys.executable, "-m", "lsbackend", "train", str(data), "--project", PROJECT]
    waiting_before = blocked_flock_waiters()
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: fit_log.exists() and "enter" in fit_log.read_text(), "the first training to start fitting")
        second = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # either the second process waits on the project's lock (right) or enters fit too (wrong)
            wait_until(lambda: blocked_flock_waiters() > waiting_before or fit_log.read_text().count("enter") > 1,
                       "the second training to block on the lock or to start fitting")
            assert fit_log.read_text().count("enter") == 1, "two processes were fitting the same project at once"
            release.touch()
            outputs = [p.communicate(timeout=120) for p in (first, second)]
        finally:
            second.kill()
    finally:
        release.touch()
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, outputs
    versions = [json.loads(out)["model_version"] for out, _ in outputs]
    assert sorted(v.split("-")[0] for v in versions) == ["v1", "v2"], versions  # the second built on the first
    lines = fit_log.read_text().split()
    assert [lines[i] for i in range(0, 8, 2)] == ["enter", "exit", "enter", "exit"], lines


SECRETS = {"BASIC_AUTH_PASS": "pw-Gu9nPASS", "LABEL_STUDIO_API_KEY": "key-Gu9nAPIKEY"}
MARKER = "BODY-MARKER-gunicorn"


class Gunicorn(ServerProcess):
    """The production server (gunicorn, several workers) with basic auth and a PID-stamped access log."""

    def __init__(self, tmp_path: Path, workers: int = 2, **extra_env: str) -> None:
        self.model_dir = tmp_path / "models"
        env = {**ENV, "WORKERS": str(workers), "THREADS": "4",
               "MODEL_DIR": str(self.model_dir), "TRAIN_DEBOUNCE_SECONDS": "0.2", "ACCESS_LOG": "1",
               "LOG_LEVEL": "debug", "BASIC_AUTH_USER": "ls", "LABEL_STUDIO_URL": "http://127.0.0.1:9", **SECRETS,
               **extra_env}
        cmd = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "lsbackend" / "gunicorn_conf.py"),
               "--access-logformat", "PID=%(p)s %(m)s %(U)s %(s)s", "lsbackend.wsgi:app"]
        token = base64.b64encode(f"ls:{SECRETS['BASIC_AUTH_PASS']}".encode()).decode()
        super().__init__(cmd, tmp_path / "server.log", env, headers={"Authorization": f"Basic {token}"})

    def pids_for(self, path: str, status: int = 200, since: int = 0) -> set[str]:
        """The worker processes that answered ``path`` with ``status`` (from the access log)."""
        return set(re.findall(rf"PID=<?(\d+)>? \w+ {re.escape(path)} {status}\b", self.log.read_text()[since:]))

    def until_both_workers_answer(self, path: str, ask: Callable[[], object], bound: float = 180.0) -> int:
        """Call ``ask`` (a request to ``path``) in bursts until both workers have answered one; return the count.

        The kernel picks the worker, and on a loaded machine one can win every accept for a while, so
        the bursts pause for the other to get the CPU. Fails after ``bound`` seconds.
        """
        since, sent, deadline = len(self.log.read_text()), 0, time.monotonic() + bound
        while len(self.pids_for(path, since=since)) < 2:
            assert time.monotonic() < deadline, f"{sent} {path} requests in {bound:.0f} s never reached both workers"
            burst = [threading.Thread(target=ask) for _ in range(6)]
            for t in burst:
                t.start()
            for t in burst:
                t.join()
            sent += len(burst)
            time.sleep(0.05)
        return sent


@pytest.fixture
def server(tmp_path):
    srv = Gunicorn(tmp_path)
    yield srv
    srv.stop()


def predict_body(n: int = 5) -> dict:
    body = captured(f"predict_{SHAPE}")
    data = [d for d, _ in examples.holdout()]
    body["tasks"] = [{"id": i, "data": {**data[i % len(data)], "note": MARKER}} for i in range(n)]
    body["project"] = PROJECT
    return body


@pytest.mark.slow
def test_two_gunicorn_workers_train_serially_and_serve_the_newest_model(server):
    def one_version(status: int, body: dict) -> str:
        assert status == 200, body
        versions = {r["model_version"] for r in body["results"]}
        assert len(body["results"]) == 5 and len(versions) == 1, body  # one model answered the whole request
        return versions.pop()

    for _ in range(16):  # both workers load the untrained model first
        assert one_version(*server.request("POST", "/predict", predict_body())) == "untrained"
    for event in training_events():
        event["project"] = {"id": int(PROJECT)}
        assert server.request("POST", "/webhook", event)[0] == 200

    seen, errors, stop = [], [], threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                seen.append(one_version(*server.request("POST", "/predict", predict_body())))
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        start = {"action": "START_TRAINING", "project": {"id": int(PROJECT)}}
        starters = [threading.Thread(target=lambda: server.request("POST", "/webhook", start)) for _ in range(2)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        # every worker that got a START_TRAINING trains at least once
        wait_until(lambda: server.log.read_text().count(" trained on ") >= len(server.pids_for("/webhook", 201))
                   and server.request("GET", f"/training/{PROJECT}")[1]["state"] in ("succeeded", "failed"),
                   "the trainings to finish", timeout=300)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and seen, errors[:3]
    trained = re.findall(rf"project {PROJECT} trained on \d+ annotations: (v\d+-\S+)", server.log.read_text())
    assert trained and len({v.split("-")[0] for v in trained}) == len(trained), trained  # never two from one base
    assert set(seen) <= {"untrained", *trained}, set(seen)

    # after training, every worker serves the newest model (retried if a late training lands in between)
    for _ in range(5):
        current = (server.model_dir / "projects" / PROJECT / "CURRENT").read_text().strip()
        served: set[str] = set()

        def ask(into: set[str] = served) -> None:
            into.add(one_version(*server.request("POST", "/predict", predict_body())))

        server.until_both_workers_answer("/predict", ask)
        if (server.model_dir / "projects" / PROJECT / "CURRENT").read_text().strip() == current:
            break
    assert served == {current}, (served, current)

    log = server.stop()
    assert "Label Studio" in log  # the training's API attempt was logged: the log is the real one
    for name, secret in SECRETS.items():
        assert secret not in log, f"{name} appeared in the server log"
    assert MARKER not in log, "a request body appeared in the server log"


@pytest.mark.slow
def test_metrics_are_merged_across_both_workers_and_logs_are_json(tmp_path):
    """Whichever worker answers /metrics, it counts the requests both answered (prometheus_client multiprocess)."""
    server = Gunicorn(tmp_path, LOG_FORMAT="json")
    try:
        sent = server.until_both_workers_answer("/openapi.json", lambda: server.request("GET", "/openapi.json"))
        for _ in range(4):  # and ask /metrics of both workers too
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("GET", "/metrics", headers=server.headers)
            text = conn.getresponse().read().decode()
            conn.close()
            counted = re.search(r'^lsbackend_requests_total\{endpoint="openapi",status="200"\} (\S+)$', text, re.M)
            assert counted and float(counted.group(1)) == sent, (sent, text)
    finally:
        log = server.stop()
    lines = [line for line in log.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, gunicorn's own included, is JSON
    assert any("Booting worker" in r["message"] for r in records)
    assert any("GET /openapi.json" in r["message"] for r in records), "the access log is missing"
