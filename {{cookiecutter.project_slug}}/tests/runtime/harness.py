"""The one home of this repo's test plumbing: free ports, bounded waits, server, worker and Redis subprocesses.

The unit tests wait for background trainings; the server tests start the production
server (gunicorn) as a real subprocess and talk HTTP to it. Every wait is bounded and
says what it waited for, and a server that dies shows its log in the failure.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FINISHED_TRAINING_STATES = ("succeeded", "failed", "skipped")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (a server started next will almost surely get it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_in_thread(server: socketserver.TCPServer) -> str:
    """Serve a test's stand-in HTTP server (Label Studio, a file host) from a daemon thread; its base URL.

    It looks for a shutdown every 10 ms: with the default 0.5 s, each test's teardown would wait that long."""
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def stop_serving(server: socketserver.TCPServer) -> None:
    server.shutdown()
    server.server_close()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0, interval: float = 0.02) -> None:
    """Call ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_for_training(
    status: Callable[[], dict], timeout: float = 60.0, interval: float = 0.05, context: Callable[[], str] = str
) -> dict:
    """Poll ``status()`` (a ``GET /training/<project>`` answer) until the job finished; return that answer.

    ``context`` adds e.g. a server log to the failure. The caller asserts which finished state it expected.
    """
    deadline = time.monotonic() + timeout
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = status()
        if answer["state"] in FINISHED_TRAINING_STATES:
            return answer
        time.sleep(interval)
    raise AssertionError(f"training did not finish in {timeout}s: {answer}\n{context()}")


class ServerProcess:
    """A server command run from the repo root on a free loopback port, its output in ``log``.

    ``PORT`` and ``HOST`` are set here; the constructor returns once ``/health`` answers 200
    and fails at once, with the log, if the process exits first. ``address`` is where requests
    go (the loopback address a ``--host`` flag names, when the command has one).
    """

    def __init__(
        self,
        cmd: Sequence[str],
        log: Path,
        env: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        address: str = "127.0.0.1",
    ) -> None:
        self.port = free_port()
        self.address = address
        self.log = log
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._out = log.open("ab")
        self.proc = subprocess.Popen(list(cmd), cwd=ROOT, env={**env, "PORT": str(self.port), "HOST": "127.0.0.1"},
                                     stdout=self._out, stderr=subprocess.STDOUT)
        try:
            wait_until(self._up, f"{cmd[-1]} to answer /health on port {self.port}", timeout=startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return self.call("GET", "/health")[0] == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: object = None) -> tuple[int, str, object]:
        """One request on a new connection: status, reason phrase (what Label Studio shows) and JSON body."""
        conn = http.client.HTTPConnection(self.address, self.port, timeout=60)
        try:
            conn.request(method, path, None if body is None else json.dumps(body), self.headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def call_text(self, method: str, path: str) -> str:
        """The body of a non-JSON answer (``/metrics``), which must be a 200."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, None, self.headers)
            resp = conn.getresponse()
            assert resp.status == 200, f"{method} {path}: {resp.status} {resp.reason}"
            return resp.read().decode()
        finally:
            conn.close()

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """Like ``call`` without the reason phrase: status and JSON body."""
        status, _, answer = self.call(method, path, body)
        return status, answer

    def stop(self) -> str:
        """SIGTERM (a graceful gunicorn shutdown), SIGKILL if it hangs; return the whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        finally:
            self.proc.kill()
            self.proc.wait()
            self._out.close()
        return self.log.read_text()


REDIS_MISSING = ("redis-server is not installed; the Redis + RQ tests need a real one: "
                 "apt-get install redis-server (Debian/Ubuntu), brew install redis (macOS)")


class RedisServer:
    """A real ``redis-server`` on a free loopback port, without persistence, its log in ``dir``.

    ``stop`` and ``start`` restart it on the same port (what a Redis restart looks like to
    the backend: connections drop and everything it held is gone). A missing ``redis-server``
    fails the test with how to install it: these tests never skip.
    """

    def __init__(self, dir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise AssertionError(REDIS_MISSING)
        self.exe, self.dir, self.port = exe, dir, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = dir / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.dir), "--logfile", str(self.log)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._up, f"redis-server to answer PING on port {self.port}", timeout=30)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n{log}")
        return self.ping()

    def ping(self) -> bool:
        """Whether Redis answers PING (spoken by hand: the harness needs no Redis client)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WorkerProcess:
    """``python -m lsbackend worker`` (an RQ worker) from the repo root; its output goes to ``log``.

    Returns once RQ says it listens; fails at once, with the log, if it exits first.
    """

    def __init__(self, log: Path, env: Mapping[str, str], startup_timeout: float = 120.0) -> None:
        self.log = log
        self._out = log.open("ab")
        self._start = log.stat().st_size
        self.proc = subprocess.Popen([sys.executable, "-m", "lsbackend", "worker"], cwd=ROOT, env=dict(env),
                                     stdout=self._out, stderr=subprocess.STDOUT)
        try:
            wait_until(self._listening, f"the worker to listen (log {log})", timeout=startup_timeout)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")[self._start:]

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
        return "Listening on" in self.output()

    def stop(self) -> str:
        """SIGTERM (RQ's warm shutdown), SIGKILL if it hangs; return its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        return self.output()


#: Credentials for the test S3 server (moto accepts any); boto3 reads them from the environment.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoServer:
    """moto's standalone S3 server (``moto[server]``) as a real process on a free loopback port.

    ``pause``/``resume`` stop and continue the process (SIGSTOP/SIGCONT): the store is unreachable for a
    while and keeps its objects, as a real store does across a network outage (moto keeps them in memory,
    so killing it would also lose them).
    """

    def __init__(self, log: Path, port: int | None = None) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise AssertionError("moto's S3 server is not installed: pip install -r requirements-dev.txt "
                                 "(it pins moto[server])") from None
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self._out, stderr=subprocess.STDOUT)
        wait_until(self._up, f"moto's S3 server to answer on port {self.port}", timeout=60)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"moto server exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def client(self):
        """A boto3 client on this server (for tests to look at or break objects directly)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def bucket(self, name: str) -> str:
        """Create a bucket and return ``MODEL_STORE`` for it (a prefix too, as users often set one)."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}/ls-models"

    def env(self, model_store: str) -> dict[str, str]:
        """What a backend process needs to use this server."""
        return {**S3_CREDENTIALS, "MODEL_STORE": model_store, "S3_ENDPOINT_URL": self.url}

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            self.proc.kill()
            self.proc.wait()
            self._out.close()
