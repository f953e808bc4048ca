"""What the container and compose tests share: the engine, baking, names, HTTP to a published port.

The engine is ``$CONTAINER_ENGINE`` (default ``docker``); podman works too (it gets
``--pull=never --format docker`` at build time; everything else uses commands both accept).
Without a usable engine the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import ModuleType

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
PORT_ANSWER = "9191"  # not the default, so a hard-coded 9090 anywhere shows up
SLUG = "ctr-test-backend"
MODEL_DIR = "/data/models"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Every image, container, volume, network and compose project a run creates carries RUN_ID, so
# parallel runs (two CI jobs, two developers on one engine) never share or remove each other's.
RUN_ID = uuid.uuid4().hex[:10]


def skip_or_fail(reason: str) -> None:
    """A missing tool skips a local run; in CI it is an error, never a silent pass."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def run(
    cmd: list[str], timeout: int = 900, check: bool = True, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a command; unless check=False, fail the test with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def bake(out: Path, model_type: str, **answers: str) -> Path:
    """The template baked for ``model_type`` (slug SLUG, port PORT_ANSWER, plus ``answers``) under ``out``.

    A model type the template's pre-gen hook refuses is a skip with its reason; any other bake
    failure fails the test.
    """
    extra = [f"{key}={value}" for key, value in answers.items()]
    cmd = [sys.executable, "-m", "cookiecutter", "--no-input", str(TEMPLATE), "-o", str(out)]
    cmd += [f"model_type={model_type}", f"port={PORT_ANSWER}", f"project_slug={SLUG}", *extra]
    proc = run(cmd, timeout=120, check=False)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        refusal = [line for line in output.splitlines() if line.startswith(f"ERROR: model_type {model_type!r}")]
        if "pre_gen_project" in output and refusal:
            pytest.skip(f"the template refuses {model_type}: {refusal[0].removeprefix('ERROR: ')}")
        pytest.fail(f"baking {model_type} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return out / SLUG


def load_examples(repo: Path) -> ModuleType:
    """The baked repo's tests/runtime/examples.py: labeled (task data, result) pairs and held-out tasks for its variant."""
    name = f"examples_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, repo / "tests" / "runtime" / "examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Engine:
    """``$CONTAINER_ENGINE`` as a callable: ``engine("ps", "-a")`` runs it and fails the test on error."""

    def __init__(self, command: str) -> None:
        self.command = command
        version = run([command, "--version"], timeout=60, check=False)
        self.podman = "podman" in (version.stdout + version.stderr).lower()

    def __call__(self, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.command, *args], timeout=timeout, check=check)

    def build_flags(self) -> list[str]:
        # podman: use the local base image, and keep HEALTHCHECK (OCI images drop it).
        return ["--pull=never", "--format", "docker"] if self.podman else []

    def build(self, context: Path, tag: str, *args: str) -> None:
        self("build", *self.build_flags(), "--network", "host", "-t", tag, *args, str(context), timeout=1800)

    def remove_image(self, tag: str) -> None:
        """Remove a test's image, but not the untagged layers under it (``--no-prune``).

        The CI runs the container and compose tests at once, and their builds share cached layers:
        pruning them, with ``-f``, also removed a build container that another build was running a
        ``RUN`` step in ("layer not known"). What stays behind is cache, gone with the machine.
        """
        self("rmi", "-f", "--no-prune", tag, check=False)

    def logs(self, name: str) -> str:
        proc = self("logs", name, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    def assert_healthy(self, name: str, bound: float = 120.0) -> None:
        """The container's HEALTHCHECK passes: podman runs it once; Docker's own schedule is awaited."""
        if self.podman:
            proc = self("healthcheck", "run", name, timeout=60, check=False)
            assert proc.returncode == 0, f"healthcheck of {name}: {proc.stdout}{proc.stderr}\n{self.logs(name)}"
            return
        assert self("inspect", "--format", "{{json .Config.Healthcheck}}", name).stdout.strip() != "null"
        deadline = time.monotonic() + bound
        while (
            state := self("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        ) == "starting" and time.monotonic() < deadline:
            time.sleep(1)
        assert state == "healthy", f"{name} is {state}:\n{self.logs(name)}"


@pytest.fixture(scope="session")
def engine() -> Engine:
    command = os.environ.get("CONTAINER_ENGINE") or "docker"
    if shutil.which(command) is None:
        skip_or_fail(f"container engine {command!r} is not installed (set CONTAINER_ENGINE)")
    eng = Engine(command)
    info = eng("info", timeout=120, check=False)
    if info.returncode != 0:
        skip_or_fail(f"container engine {command!r} does not work here: {info.stderr.strip()[-500:]}")
    return eng


def http(port: int, method: str, path: str, body: object = None) -> tuple[int, dict]:
    """One JSON request to 127.0.0.1:port; any HTTP status comes back, never raises for one."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def answers_health(port: int) -> bool:
    """True once /health answers 200 on the port; connection errors mean "not yet"."""
    try:
        return http(port, "GET", "/health")[0] == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False
