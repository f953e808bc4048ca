"""Smoke test of a running backend: replay the requests captured from Label Studio 1.23 against it.

    python3 tests/runtime/smoke.py --url http://127.0.0.1:9090      # or: make smoke

Waits until ``GET /health`` answers, finds the captured ``/setup`` whose
labeling config this backend accepts (the others must be refused with 422 and
a reason saying why), then sends every capture of that kind in the order Label
Studio does: ``/setup``, ``/predict``, annotation webhooks, ``START_TRAINING``.
Each answer is checked for what Label Studio relies on. Standard library only,
so it runs on any machine with Python 3, against a process, a container or a
deployment; CI runs it against the freshly built image. Exit status 0: all good.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parent / "protocol"
# The order Label Studio sends them in; captures not named here follow, by name.
WEBHOOK_ORDER = ("annotation_created", "annotation_updated", "project_updated", "annotations_deleted",
                 "start_training")
TRAINING_STATES = {"idle", "queued", "running", "succeeded", "failed", "skipped"}


class SmokeFailure(Exception):
    """The backend answered something Label Studio could not use; the message says what."""


class Client:
    """A small JSON client with optional basic auth."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if user or password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, path: str, body: object = None) -> tuple[int, str, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return resp.status, resp.reason, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.reason, None

    def wait_healthy(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, reason, body = self.call("GET", "/health")
                if status == 200:
                    return body
                last = f"{status} {reason}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise SmokeFailure(f"GET {self.url}/health did not answer 200 within {timeout:.0f}s (last: {last}); "
                           "is the backend running and is --url right?")


def capture(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def kinds() -> list[str]:
    """The kinds of captures there are (text, image, ner ...), from the captured /setup requests."""
    return sorted(p.stem.removeprefix("setup_") for p in PROTOCOL.glob("setup_*.json"))


def captures_of(kind: str) -> list[Path]:
    """Every capture of one kind, in the order Label Studio sends them."""
    mine = [p for p in PROTOCOL.glob("*.json") if kind in p.stem.split("_") and not p.stem.startswith("setup_")]

    def rank(path: Path) -> tuple[int, str]:
        if path.stem.startswith("predict_"):
            return 0, path.stem
        for i, action in enumerate(WEBHOOK_ORDER):
            if path.stem.startswith(f"webhook_{action}_"):
                return 1 + i, path.stem
        return 1 + len(WEBHOOK_ORDER), path.stem

    return sorted(mine, key=rank)


def setup(client: Client, log) -> tuple[str, dict]:
    """Send every captured /setup; exactly the fitting kinds are accepted. Returns the first accepted."""
    accepted = []
    for kind in kinds():
        request = capture(PROTOCOL / f"setup_{kind}.json")
        status, reason, body = client.call(request["method"], request["path"], request["json"])
        log(f"{request['method']} {request['path']} (setup_{kind}.json): {status} {reason}")
        if status in (401, 403):
            raise SmokeFailure("the backend wants credentials: pass --user/--password or set BASIC_AUTH_USER/PASS")
        if status == 200:
            if not isinstance(body, dict) or not isinstance(body.get("model_version"), str):
                raise SmokeFailure(f"/setup answered {body!r}; Label Studio needs a model_version string")
            accepted.append((kind, request))
        elif status != 422 or "does not fit" not in reason:
            raise SmokeFailure(f"/setup with the {kind} config answered {status} {reason!r}; a config that "
                               "does not fit must get 422 with a reason saying so")
    if not accepted:
        raise SmokeFailure(f"no captured labeling config ({', '.join(kinds())}) fits this backend's model")
    return accepted[0]


def check_answer(name: str, path: str, request: dict, status: int, reason: str, body: object) -> None:
    if not 200 <= status < 300:
        raise SmokeFailure(f"{name}: {status} {reason}")
    if path == "/predict":
        results = body.get("results") if isinstance(body, dict) else None
        tasks = request["tasks"]
        if not isinstance(results, list) or len(results) != len(tasks):
            raise SmokeFailure(f"{name}: {len(tasks)} tasks need {len(tasks)} results, got {body!r:.300}")
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("model_version"), str) \
                    or not isinstance(result.get("result"), list):
                raise SmokeFailure(f"{name}: a prediction lacks model_version or result: {result!r:.300}")


def replay(client: Client, health: dict, log) -> int:
    """Replay everything; returns how many requests were sent."""
    kind, setup_request = setup(client, log)
    sent = len(kinds())
    project = str(setup_request["json"]["project"]).split(".")[0]
    for path in captures_of(kind):
        request = capture(path)
        status, reason, body = client.call(request["method"], request["path"], request["json"])
        log(f"{request['method']} {request['path']} ({path.name}): {status} {reason}")
        check_answer(path.name, request["path"], request["json"], status, reason, body)
        sent += 1
    status, reason, body = client.call("GET", f"/training/{project}")
    state = body.get("state") if isinstance(body, dict) else None
    log(f"GET /training/{project}: {status} {reason}, state {state}")
    if status != 200 or state not in TRAINING_STATES:
        raise SmokeFailure(f"training status of project {project}: {status} {reason} {body!r:.300}")
    log(f"ok: {health.get('model_class', 'the model')} answered all {sent + 1} requests ({kind} captures)")
    return sent + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '9090')}",
                        help="the backend's base URL (default: http://127.0.0.1:$PORT)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for /health (default 60)")
    parser.add_argument("--user", default=os.environ.get("BASIC_AUTH_USER", ""))
    parser.add_argument("--password", default=os.environ.get("BASIC_AUTH_PASS", ""))
    args = parser.parse_args(argv)
    client = Client(args.url, args.user, args.password)
    try:
        replay(client, client.wait_healthy(args.timeout), print)
    except SmokeFailure as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
