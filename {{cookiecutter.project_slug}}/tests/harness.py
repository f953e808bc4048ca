"""The one home of this repo's test plumbing: free ports, bounded waits, a server subprocess.

The unit tests wait for background trainings; the server tests start the production
server (gunicorn) as a real subprocess and talk HTTP to it. Every wait is bounded and
says what it waited for, and a server that dies shows its log in the failure.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINISHED_TRAINING_STATES = ("succeeded", "failed", "skipped")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (a server started next will almost surely get it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    and fails at once, with the log, if the process exits first.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        log: Path,
        env: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
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
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, None if body is None else json.dumps(body), self.headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, json.loads(resp.read() or b"null")
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
