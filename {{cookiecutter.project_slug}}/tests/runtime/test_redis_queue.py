"""Training workers on Redis + RQ (REDIS_URL), run for real.

A real ``redis-server`` on a free loopback port, two gunicorn replicas sharing one
MODEL_DIR (``python -m lsbackend start``), and RQ workers as real subprocesses
(``python -m lsbackend worker``). The model is the repo's, steered from outside its
process through ``controlled_model`` (hold a fit, count the fits by process id).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq import Queue

from conftest import EXAMPLES_CONFIG, ROOT, SHAPE, captured, holdout_request, training_events
from controlled_model import control_dir, fit_pids, started_from
from harness import MotoServer, RedisServer, ServerProcess, WorkerProcess, free_port, wait_for_training, wait_until

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
PROJECT = captured(f"setup_{SHAPE}")["project"].split(".")[0]
START = captured(f"webhook_start_training_{SHAPE}")
WAIT = 300.0  # generous: a loaded machine (2 cores, several suites) starts Python processes slowly


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


class Cluster:
    """Replicas and workers on one Redis and one MODEL_DIR, stopped (with their logs kept) at the end."""

    def __init__(self, tmp_path: Path, redis_server: RedisServer, debounce: float, **extra_env: str) -> None:
        self.tmp, self.redis_server = tmp_path, redis_server
        self.model_dir = tmp_path / "models"
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), "PYTHONUNBUFFERED": "1",
                    "LABEL_CONFIG": str(EXAMPLES_CONFIG), "MODEL_DIR": str(self.model_dir),
                    "MODEL_CLASS": "controlled_model:ControlledModel", "REDIS_URL": redis_server.url,
                    "REDIS_QUEUE": "test", "TRAIN_DEBOUNCE_SECONDS": str(debounce), "WORKERS": "1", **extra_env}
        self.replicas: list[ServerProcess] = []
        self.workers: list[WorkerProcess] = []
        self.control = control_dir(self.model_dir)

    def replica(self, model_dir: Path | None = None) -> ServerProcess:
        """A gunicorn replica; on the shared MODEL_DIR unless given its own (with an S3 model store)."""
        n = len(self.replicas)
        env = {**self.env, "MODEL_DIR": str(model_dir or self.model_dir)}
        server = ServerProcess([sys.executable, "-m", "lsbackend", "start"], self.tmp / f"replica{n}.log", env,
                               startup_timeout=WAIT)
        self.replicas.append(server)
        return server

    def worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.tmp / f"worker{len(self.workers)}.log", self.env, startup_timeout=WAIT)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.tmp.glob("*.log")))

    def status(self, server: ServerProcess) -> dict:
        code, body = server.request("GET", f"/training/{PROJECT}")
        assert code == 200, body
        return body

    def trained(self, server: ServerProcess) -> dict:
        """Wait (through ``server``) for the training to finish; return its status."""
        return wait_for_training(lambda: self.status(server), timeout=WAIT, context=self.logs)

    def served_versions(self, server: ServerProcess) -> set[str]:
        code, body = server.request("POST", "/predict", holdout_request())
        assert code == 200, body
        return {r["model_version"] for r in body["results"]}

    def record(self, server: ServerProcess, events: list[dict]) -> None:
        for event in events:
            assert server.request("POST", "/webhook", event)[0] == 200

    def start_training(self, server: ServerProcess) -> None:
        code, body = server.request("POST", "/webhook", START)
        assert code == 201 and body["status"] == "queued", body

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def queue_drained(self) -> bool:
        """No job waiting, none running and no request pending for the project (nothing more will train)."""
        r = self.client()
        queue = Queue("test", connection=r)
        return (queue.count == 0 and queue.started_job_registry.count == 0
                and not r.exists(f"test:training:{PROJECT}:pending"))

    def stop(self) -> None:
        for proc in [*self.workers, *self.replicas]:
            proc.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer):
    made = Cluster(tmp_path, redis_server, debounce=0.5)
    yield made
    made.stop()


def test_replica_a_queues_a_worker_trains_and_replica_b_serves_it_and_reports_the_same(cluster):
    a, b = cluster.replica(), cluster.replica()
    worker = cluster.worker()
    assert a.request("GET", "/ready") == (200, {"status": "READY", "checks": {"model_store": "ok", "redis": "ok"}})
    cluster.record(a, training_events())
    cluster.start_training(a)
    status = cluster.trained(b)
    assert status["state"] == "succeeded", status
    version = status["model_version"]
    assert cluster.served_versions(b) == {version}  # B was never asked to train, yet serves the new model
    assert cluster.served_versions(a) == {version}
    assert cluster.status(a) == cluster.status(b)
    pids = fit_pids(cluster.model_dir)
    server_pids = {a.proc.pid, b.proc.pid, worker.proc.pid}
    assert len(pids) == 1 and pids[0] not in server_pids, pids  # fit ran in the worker's work horse
    assert "Job OK" in worker.output()
    assert "trained on" not in a.log.read_text() + b.log.read_text()  # no replica trained


def test_the_first_training_on_a_worker_fine_tunes_from_the_model_uri_model(tmp_path, redis_server):
    """Each job built a whole Backend, whose MODEL_URI loader had just begun: fit started from nothing."""
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    cluster = Cluster(tmp_path, redis_server, debounce=0.5, MODEL_CLASS="controlled_model:PretrainedStart",
                      MODEL_URI=str(weights))
    try:
        a = cluster.replica()
        worker = cluster.worker()
        cluster.record(a, training_events())
        cluster.start_training(a)
        status = cluster.trained(a)
        assert status["state"] == "succeeded", status
        pretrained = "pretrained-" + hashlib.sha256(b"weights").hexdigest()[:12]
        assert started_from(cluster.model_dir) == [f"{pretrained} weights"], cluster.logs()
        assert fit_pids(cluster.model_dir)[0] not in {a.proc.pid, worker.proc.pid}  # in the work horse
    finally:
        cluster.stop()


def test_debounce_waits_for_the_last_request_across_replicas(tmp_path, redis_server):
    """Label Studio sends START_TRAINING before the annotation's webhook: the job must wait for it."""
    cluster = Cluster(tmp_path, redis_server, debounce=3.0)
    try:
        a, b = cluster.replica(), cluster.replica()
        cluster.worker()
        events = training_events()
        cluster.record(a, events[:-1])
        cluster.start_training(a)  # the last annotation's START_TRAINING comes first...
        cluster.start_training(b)  # ...Label Studio repeats it, to another replica...
        cluster.record(b, events[-1:])  # ...and then the annotation itself arrives
        status = cluster.trained(a)
        assert status["state"] == "succeeded", status
        assert status["annotations"] == len(events), status  # the late annotation was trained on
        wait_until(cluster.queue_drained, "the queue to drain", timeout=WAIT)
        assert len(fit_pids(cluster.model_dir)) == 1  # two requests within the debounce: one training
    finally:
        cluster.stop()


def test_one_training_at_a_time_and_requests_during_it_run_it_exactly_once_more(cluster):
    a, b = cluster.replica(), cluster.replica()
    first, second = cluster.worker(), cluster.worker()
    cluster.record(a, training_events())
    (cluster.control / "hold").touch()
    cluster.start_training(a)
    wait_until(lambda: len(fit_pids(cluster.model_dir)) == 1, "the first fit to start", timeout=WAIT)
    for server in (a, b, a):  # three requests, from both replicas, while it trains
        cluster.start_training(server)
    r = cluster.client()
    # the once-more job is taken by the other worker, which must wait for the training lock, not fit
    wait_until(lambda: started_jobs(r) == 2, "the second worker to take the once-more job", timeout=WAIT)
    wait_until(lambda: not r.exists(f"test:training:{PROJECT}:debounce"), "the debounce to end", timeout=WAIT)
    assert len(fit_pids(cluster.model_dir)) == 1, "a second fit started while the first held the project"
    (cluster.control / "hold").unlink()
    wait_until(cluster.queue_drained, "both trainings to finish", timeout=WAIT)
    status = cluster.trained(b)
    assert status["state"] == "succeeded" and status["model_version"].startswith("v2-"), status
    assert len(fit_pids(cluster.model_dir)) == 2  # three requests made one more training, not three
    assert "Job OK" in first.output() and "Job OK" in second.output()


def started_jobs(r: redis.Redis) -> int:
    """How many jobs RQ's workers hold right now (running, or waiting for the training lock)."""
    return Queue("test", connection=r).started_job_registry.count


def test_a_worker_killed_mid_training_leaves_the_last_good_model_and_says_so(cluster):
    a, b = cluster.replica(), cluster.replica()
    worker = cluster.worker()
    cluster.record(a, training_events())
    cluster.start_training(a)
    good = cluster.trained(a)["model_version"]

    (cluster.control / "hold").touch()
    cluster.start_training(b)
    wait_until(lambda: len(fit_pids(cluster.model_dir)) == 2, "the second fit to start", timeout=WAIT)
    horse = fit_pids(cluster.model_dir)[1]
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker and its work horse, as an OOM kill or a lost node
    os.kill(horse, signal.SIGKILL)
    worker.proc.wait()
    wait_until(lambda: cluster.status(a)["state"] == "interrupted", "the lost training to show", timeout=WAIT)
    for server in (a, b):  # every replica says the same
        status = cluster.status(server)
        assert status["state"] == "interrupted", status
        assert "previous model keeps serving" in status["error"], status
        assert status["model_version"] == good, status
        assert cluster.served_versions(server) == {good}

    (cluster.control / "hold").unlink()
    cluster.worker()  # a supervisor's restart
    cluster.start_training(a)
    again = cluster.trained(b)
    assert again["state"] == "succeeded" and again["model_version"].startswith("v2-"), again
    assert cluster.served_versions(a) == {again["model_version"]}


def kill_replica(server: ServerProcess) -> None:
    """SIGKILL a replica's gunicorn master and its workers at once, as an OOM kill or a lost node does."""
    master = server.proc.pid
    workers = [int(pid) for task in Path(f"/proc/{master}/task").iterdir()
               for pid in (task / "children").read_text().split()]
    for pid in [master, *workers]:
        os.kill(pid, signal.SIGKILL)
    server.proc.wait()


def test_a_replica_killed_mid_request_loses_nothing_and_the_others_carry_on(cluster):
    a, b = cluster.replica(), cluster.replica()
    cluster.worker()
    events = training_events()
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    cluster.record(a, first)
    cluster.start_training(a)
    good = cluster.trained(b)
    assert good["state"] == "succeeded", good

    # A webhook half sent to A (its worker is reading the body) when A dies: never acknowledged, so
    # Label Studio (or a load balancer) sees a dropped connection, not a success.
    body = json.dumps(rest[0]).encode()
    conn = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    conn.sendall(b"POST /webhook HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    time.sleep(0.5)
    kill_replica(a)
    try:
        answer = conn.recv(1024)
    except ConnectionResetError:  # what the kernel sends instead when unread bytes die with the process
        answer = b""
    assert answer == b"", f"a killed replica sent an answer: {answer!r}"
    conn.close()

    status = cluster.status(b)  # B answers alone: nothing A had acknowledged is lost
    assert status["recorded_annotations"] == len(first) and status["model_version"] == good["model_version"], status
    assert cluster.served_versions(b) == {good["model_version"]}
    cluster.record(b, rest)  # Label Studio's next webhooks reach the replica that is left
    cluster.start_training(b)
    again = cluster.trained(b)
    assert again["state"] == "succeeded" and again["model_version"].startswith("v2-"), again
    assert len(fit_pids(cluster.model_dir)) == 2  # the worker trained both times; it never noticed A go

    a2 = cluster.replica()  # A's replacement, as an orchestrator starts it: the same state as B
    assert cluster.status(a2) == cluster.status(b)
    assert cluster.served_versions(a2) == {again["model_version"]}


def test_redis_down_gives_a_clear_error_serving_goes_on_and_everything_recovers(cluster):
    a, b = cluster.replica(), cluster.replica()
    worker = cluster.worker()
    events = training_events()
    cluster.record(a, events)
    cluster.start_training(a)
    good = cluster.trained(b)["model_version"]

    cluster.redis_server.stop()
    for server in (a, b):
        code, reason, body = server.call("POST", "/webhook", START)
        assert code == 503 and "REDIS_URL=redis://127.0.0.1" in reason and "start Redis" in reason, (code, reason)
        code, reason, _ = server.call("POST", "/train", {"project": PROJECT})
        assert code == 503 and "REDIS_URL" in reason, (code, reason)
        code, reason, body = server.call("GET", "/ready")
        assert code == 503 and "redis: " in reason and body["checks"]["model_store"] == "ok", (reason, body)
        assert cluster.served_versions(server) == {good}  # predictions go on
        assert server.request("POST", "/webhook", events[0])[0] == 200  # annotations are still recorded
        status = cluster.status(server)
        assert status["state"] == "succeeded" and status["model_version"] == good, status  # not left "queued"

    cluster.redis_server.start()  # same port, empty: what a restart without persistence leaves
    for server in (a, b):  # no replica restarted: redis-py reconnects by itself
        wait_until(lambda s=server: s.request("GET", "/ready")[0] == 200, "the replica to see Redis", timeout=WAIT)
    cluster.start_training(b)
    again = cluster.trained(a)
    assert again["state"] == "succeeded" and again["model_version"].startswith("v2-"), (again, cluster.logs())
    assert worker.proc.poll() is None, "an idle worker rides out a Redis restart"
    assert cluster.served_versions(a) == cluster.served_versions(b) == {again["model_version"]}


def test_a_worker_that_loses_redis_mid_training_finishes_it_waits_and_goes_on(cluster):
    a = cluster.replica()
    worker = cluster.worker()
    cluster.record(a, training_events())
    (cluster.control / "hold").touch()
    cluster.start_training(a)
    wait_until(lambda: len(fit_pids(cluster.model_dir)) == 1, "the fit to start", timeout=WAIT)
    cluster.redis_server.stop()
    wait_until(lambda: "waiting for it to come back" in worker.output(), "the worker to notice", timeout=WAIT)
    (cluster.control / "hold").unlink()
    status = cluster.trained(a)  # the work horse finishes the training it had begun: nothing lost
    assert status["state"] == "succeeded" and status["model_version"].startswith("v1-"), status
    assert cluster.served_versions(a) == {status["model_version"]}

    cluster.redis_server.start()
    wait_until(lambda: "Redis is back; taking jobs again" in worker.output(), "the worker to resume", timeout=WAIT)
    wait_until(lambda: a.request("GET", "/ready")[0] == 200, "the replica to see Redis", timeout=WAIT)
    cluster.start_training(a)
    again = cluster.trained(a)
    assert again["state"] == "succeeded" and again["model_version"].startswith("v2-"), again
    assert worker.proc.poll() is None, "the same worker, never restarted"
    assert worker.stop() and worker.proc.returncode == 0  # SIGTERM: a clean stop


def test_the_worker_refuses_to_start_without_redis_url_or_reachable_redis(tmp_path):
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "models"), "LABEL_CONFIG": str(EXAMPLES_CONFIG)}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-m", "lsbackend", "worker"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 2 and "the worker needs REDIS_URL" in done.stderr, done.stderr
    env["REDIS_URL"] = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # a port nothing listens on
    done = subprocess.run([sys.executable, "-m", "lsbackend", "worker"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=WAIT)
    assert done.returncode == 1, done.stderr
    assert "Redis unreachable at REDIS_URL=redis://***@127.0.0.1" in done.stderr, done.stderr
    assert "s3cret" not in done.stderr + done.stdout  # the password never reaches a log


def test_with_an_s3_model_store_replicas_and_workers_share_no_disk(tmp_path, redis_server):
    """REDIS_URL and MODEL_STORE together: nothing shared but Redis and the object store."""
    moto = MotoServer(tmp_path / "moto.log")
    cluster = Cluster(tmp_path, redis_server, debounce=0.5, **moto.env(moto.bucket("redisq-and-s3")))
    try:
        disks = [tmp_path / "disk-a", tmp_path / "disk-b"]
        a, b = cluster.replica(disks[0]), cluster.replica(disks[1])
        worker = cluster.worker()  # its own MODEL_DIR: the shared one only steers the test model's fit
        cluster.record(a, training_events())
        cluster.start_training(a)
        status = cluster.trained(b)
        assert status["state"] == "succeeded", status
        version = status["model_version"]
        wait_until(lambda: cluster.served_versions(b) == {version}, "replica B to serve the new model", timeout=WAIT)
        assert cluster.status(a)["model_version"] == version == cluster.status(b)["model_version"]
        assert "Job OK" in worker.output()
        assert not [p for disk in disks for p in disk.rglob("*.pkl")], "models went to a replica's disk"
    finally:
        cluster.stop()
        moto.stop()


# --- in process: the server's side of the queue, on a real Redis, without workers ----------------------
@pytest.fixture
def redis_settings(settings, redis_server):
    from dataclasses import replace

    return replace(settings, redis_url=redis_server.url, redis_queue="unit", train_every_n=2)


def test_every_nth_annotation_queues_one_job_and_redis_down_answers_503_naming_redis_url(redis_settings,
                                                                                        redis_server):
    from lsbackend.app import build_backend
    from lsbackend.server import create_app

    from conftest import MODEL_CLASS

    client = create_app(build_backend(redis_settings, MODEL_CLASS)).test_client()
    events = training_events(4)
    for event in events[:2]:
        assert client.post("/webhook", json=event).status_code == 200
    queue = Queue("unit", connection=redis.Redis.from_url(redis_server.url))
    assert queue.count == 1 and queue.jobs[0].args == (PROJECT,)  # the job's payload: the project id
    assert client.get(f"/training/{PROJECT}").get_json()["state"] == "queued"
    assert client.post("/train", json={"project": PROJECT}).status_code == 201
    assert queue.count == 1  # still pending: the same job serves this request too

    redis_server.stop()
    client.post("/webhook", json=events[2])
    reply = client.post("/webhook", json=events[3])  # the 4th: a training is due, and cannot be queued
    assert reply.status_code == 503 and "REDIS_URL=redis://127.0.0.1" in reply.status, reply.status
    assert client.get(f"/training/{PROJECT}").get_json()["recorded_annotations"] == 4  # nothing lost


def test_the_default_install_needs_neither_redis_nor_rq(tmp_path):
    """Without REDIS_URL nothing imports redis or rq: the default image does not ship them."""
    probe = ("import sys; from lsbackend.app import build_app; build_app(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'rq')))")
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "models"), "LABEL_CONFIG": str(EXAMPLES_CONFIG)}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=WAIT)
    assert done.returncode == 0 and done.stdout.split()[-1] == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis:6379", "redis"])
def test_a_redis_url_that_is_not_one_is_refused_with_the_fix(monkeypatch, url):
    from lsbackend.settings import Settings, SettingsError

    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(SettingsError, match="REDIS_URL is not a Redis URL; set it like REDIS_URL=redis://"):
        Settings.from_env()
