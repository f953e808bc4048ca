"""Run the baked repo's docker-compose.yml for real, with ``$CONTAINER_COMPOSE``, as a user would.

``$CONTAINER_COMPOSE`` is the compose command (``docker compose`` for users; ``podman-compose``
in CI, see ../shared/container/README.md); ``$CONTAINER_ENGINE`` the engine beside it. One run
of the text_classification repo (the compose file differs between variants only in names; every
variant's image is built and driven by test_container.py):

1. The default service alone: it starts, answers /health on its published port, its HEALTHCHECK
   passes, it predicts, and the ``label-studio`` profile's service stays down.
2. ``--profile label-studio``: Label Studio 1.23.2 in the same project, with SSRF protection on as
   the file configures it, connects to the backend by its service name (``http://backend:PORT``);
   annotations reach the backend by webhook; the backend fetches the one made before it was
   connected from ``http://label-studio:8080`` with ``LABEL_STUDIO_API_KEY``; Train trains and
   Retrieve Predictions stores the new version's (correct) predictions. A webhook to a
   cloud-metadata address is still refused.
3. ``down`` without ``-v``, then ``up``: the backend serves the trained model from its volume.
4. ``docker-compose.scale.yml`` with ``--profile label-studio``: redis, the dev S3 stand-in, api-1,
   api-2 and a worker, one image built with ``EXTRAS="redis s3"``. Label Studio connects to api-1
   only; its annotations and its Train request reach the worker through Redis; api-2, never called
   by Label Studio, reports the finished training and predicts with the new version from the store.

What the test changes, in an override file beside the repo's compose file (the repo's file stays
as users get it): unique image names and published ports (parallel runs), a random subnet and the
banned list recomputed for it (parallel runs cannot share the file's pinned subnet; that the
file's list fits the file's subnet is checked statically against Label Studio's own source), the
stand-in Label Studio's admin user and token, and, on podman 4.3 only, no ``extra_hosts``:
podman refuses ``host-gateway``, which Docker needs and accepts.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import random
import re
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from containers import (
    PORT_ANSWER,
    RUN_ID,
    SLUG,
    Engine,
    answers_health,
    bake,
    engine,
    http,
    load_examples,
    run,
    skip_or_fail,
)
from harness import free_port, wait_for_training
from integration.label_studio import LabelStudioClient, ensure_label_studio

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.compose]
__all__ = ["engine"]  # the fixture, imported so pytest finds it here

MODEL_TYPE = "text_classification"
SCALED = "docker-compose.scale.yml"
LS_ADMIN = "compose-admin@example.com"
UNTRAINED = "untrained"
# The backend's alias on the compose network: Label Studio creates its webhook only for a host with a dot.
BACKEND_URL = f"http://backend.internal:{PORT_ANSWER}"
# Label Studio connects to one replica of the scaled topology, by its alias (with a dot, as above).
SCALED_API_URL = f"http://api-1.internal:{PORT_ANSWER}"
TRAINING_BOUND = 300.0  # bounded waits only keep a hung run from hanging the suite
LS_START_BOUND = 900.0  # first start runs every migration: 1-2 min idle, far more on a loaded machine


# --- the banned-subnet list: Label Studio's default minus the compose network ------------------


def label_studio_default_banned_subnets() -> list[str]:
    """Label Studio 1.23's ``default_banned_subnets``, read from its source (core/utils/io.py, validate_ip)."""
    site = ensure_label_studio().parent.parent / "lib"
    sources = sorted(site.glob("python3*/site-packages/label_studio/core/utils/io.py"))
    assert sources, f"no label_studio/core/utils/io.py under {site}"
    tree = ast.parse(sources[0].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "default_banned_subnets"
        ]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{sources[0]} no longer assigns default_banned_subnets")


def banned_except(defaults: list[str], own: str) -> list[str]:
    """``defaults`` with the ``own`` subnet cut out of whichever entry holds it (order kept)."""
    own_net = ipaddress.ip_network(own)
    narrowed: list[str] = []
    for entry in defaults:
        net = ipaddress.ip_network(entry)
        if net.version == own_net.version and own_net.subnet_of(net):
            narrowed += [str(part) for part in sorted(net.address_exclude(own_net))]
        else:
            narrowed.append(entry)
    return narrowed


def compose_file(repo: Path, name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((repo / name).read_text(encoding="utf-8"))


def built_services(compose: dict) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Service -> (build context, build args) of every service the file builds from this repo."""
    built = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        built[name] = (build.get("context", "."), tuple(sorted((build.get("args") or {}).items())))
    return built


def pinned_subnet(compose: dict) -> str:
    (config,) = compose["networks"]["default"]["ipam"]["config"]
    return config["subnet"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("bake-compose"), MODEL_TYPE)


def test_label_studio_in_compose_keeps_ssrf_protection_on_except_for_its_own_network(repo):
    """The file's banned list is Label Studio's default list minus exactly the pinned compose subnet."""
    compose = compose_file(repo)
    env = compose["services"]["label-studio"]["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == "false"  # the ML connection may go to http://backend:PORT
    assert env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert "SSRF_PROTECTION_ENABLED" not in env  # on, as by default
    subnet = pinned_subnet(compose)
    assert ipaddress.ip_network(subnet).is_private, subnet
    assert env["USER_ADDITIONAL_BANNED_SUBNETS"].split(",") == banned_except(
        label_studio_default_banned_subnets(), subnet
    )
    # Both services are on the default network only, so every address they have is in the pinned subnet.
    assert compose["services"]["backend"]["networks"] == {"default": {"aliases": ["backend.internal"]}}
    assert "networks" not in compose["services"]["label-studio"]


def test_scaled_compose_builds_one_image_with_the_extras_and_keeps_ssrf_protection_on(repo):
    """docker-compose.scale.yml: the replicas and the worker are this repo's image with EXTRAS="redis s3";
    Label Studio is optional and banned from every private network but the file's own, another
    subnet than docker-compose.yml's so both run side by side."""
    compose = compose_file(repo, SCALED)
    services = compose["services"]
    builds = built_services(compose)
    assert {name for name, (context, _) in builds.items() if context == "."} == {"api-1", "api-2", "worker"}
    assert {builds[name][1] for name in ("api-1", "api-2", "worker")} == {(("EXTRAS", "redis s3"),)}
    assert (repo / builds["s3"][0] / "Dockerfile").is_file()
    assert services["redis"]["image"].startswith("redis:7")
    assert services["worker"]["command"] == ["python", "-m", "lsbackend", "worker"]
    assert "command" not in services["api-1"] and "command" not in services["api-2"]  # the image's: the server
    for name in ("api-1", "api-2", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"].endswith("redis://redis:6379/0}") and "s3://" in env["MODEL_STORE"], env
        assert "http://s3:5000" in env["S3_ENDPOINT_URL"]
        assert services[name]["read_only"] is True and services[name]["tmpfs"] == ["/tmp"]  # as in deploy/k8s/
    assert services["label-studio"]["profiles"] == ["label-studio"]
    assert services["label-studio"]["depends_on"] == ["api-1"]
    env = services["label-studio"]["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    subnet = pinned_subnet(compose)
    assert not ipaddress.ip_network(subnet).overlaps(ipaddress.ip_network(pinned_subnet(compose_file(repo))))
    assert env["USER_ADDITIONAL_BANNED_SUBNETS"].split(",") == banned_except(
        label_studio_default_banned_subnets(), subnet
    )
    assert all(set(s.get("networks") or {"default": None}) == {"default"} for s in services.values())


def test_banned_except_cuts_out_only_the_given_subnet():
    narrowed = [
        ipaddress.ip_network(n) for n in banned_except(["10.0.0.0/8", "172.16.0.0/12", "::1/128"], "172.16.197.0/24")
    ]
    for address, banned in [("172.16.197.5", False), ("172.16.196.255", True), ("172.16.198.0", True),
                            ("172.31.255.1", True), ("10.1.2.3", True)]:  # fmt: skip
        assert any(ipaddress.ip_address(address) in net for net in narrowed) == banned, address
    assert ipaddress.ip_network("::1/128") in narrowed


# --- the real run -------------------------------------------------------------------------------


def used_subnets(engine: Engine) -> set[ipaddress.IPv4Network]:
    """Subnets of the engine's existing networks (read from ``network inspect``, whichever engine)."""
    names = engine("network", "ls", "--format", "{{.Name}}").stdout.split()
    inspected = engine("network", "inspect", *names).stdout if names else ""
    return {ipaddress.ip_network(s, strict=False) for s in re.findall(r"\b\d+\.\d+\.\d+\.\d+/\d+\b", inspected)}


def unused_subnet(engine: Engine) -> str:
    """A random /24 in 172.16.0.0/12 that no network of the engine overlaps."""
    used = used_subnets(engine)
    for _ in range(100):
        candidate = ipaddress.ip_network(f"172.{random.randint(16, 31)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return str(candidate)
    raise AssertionError(f"no free /24 in 172.16.0.0/12; networks use {sorted(map(str, used))}")


class ComposeProject:
    """One compose project (``-p``) of one of the baked repo's compose files plus the test's override file."""

    def __init__(self, engine: Engine, repo: Path, workdir: Path, file: str = "docker-compose.yml") -> None:
        self.command = shlex.split(os.environ.get("CONTAINER_COMPOSE") or "docker compose")
        self.engine, self.repo, self.file = engine, repo, file
        self.name = f"ctr-test-{RUN_ID}-{workdir.name[-12:].lower().replace('_', '-')}"
        spec = compose_file(repo, file)
        # One image per distinct build (context and args), unique to this run.
        self.builds = built_services(spec)
        tags = {build: f"localhost/{SLUG}-compose-{RUN_ID}-{i}:test" for i, build in
                enumerate(sorted(set(self.builds.values())))}
        self.images = {service: tags[build] for service, build in self.builds.items()}
        self.ports = {name: free_port() for name, service in spec["services"].items() if service.get("ports")}
        self.token = secrets.token_hex(20)  # the stand-in Label Studio's admin token, and the backend's API key
        self.override = workdir / "override.yml"
        write_override(self.override, engine, spec, self.images, self.ports, unused_subnet(engine), self.token)
        # What a user puts in .env for the label-studio profile.
        self.env = {"LABEL_STUDIO_URL": "http://label-studio:8080", "LABEL_STUDIO_API_KEY": self.token}

    @property
    def image(self) -> str:
        """The backend's image (docker-compose.yml builds one)."""
        return self.images["backend"]

    def __call__(self, *args: str, profile: bool = False, timeout: int = 900, check: bool = True):
        files = [str(self.repo / self.file), str(self.override), str(subnet_file(self.override))]
        files = [arg for path in files for arg in ("-f", path)]
        profiles = ["--profile", "label-studio"] if profile else []
        cmd = [*self.command, "-p", self.name, *files, *profiles, *args]
        return run(cmd, timeout=timeout, check=check, env={**os.environ, **self.env}, cwd=self.repo)

    def container(self, service: str) -> str | None:
        """The name of the service's running container, by the labels Docker Compose and podman-compose set."""
        labels = [f"label=com.docker.compose.project={self.name}", f"label=com.docker.compose.service={service}"]
        filters = [arg for label in labels for arg in ("--filter", label)]
        names = self.engine("ps", *filters, "--format", "{{.Names}}").stdout.split()
        assert len(names) <= 1, names
        return names[0] if names else None

    def logs(self) -> str:
        proc = self("logs", "--tail", "60", profile=True, check=False)
        return (proc.stdout + proc.stderr)[-6000:]


def write_override(
    path: Path, engine: Engine, spec: dict, images: dict[str, str], ports: dict[str, int], subnet: str, token: str
) -> None:
    """The test's compose override (YAML's flow style is JSON, so values are dumped with json)."""
    banned = ",".join(banned_except(label_studio_default_banned_subnets(), subnet))
    studio_env = {
        "LABEL_STUDIO_USERNAME": LS_ADMIN,
        "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
        "LABEL_STUDIO_USER_TOKEN": token,
        "USER_ADDITIONAL_BANNED_SUBNETS": banned,
        "LATEST_VERSION_CHECK": "false",  # no calls to pypi.org or analytics from a test
        "COLLECT_ANALYTICS": "false",
    }
    lines = ["services:"]
    for name, service in spec["services"].items():
        lines.append(f"  {name}:")
        if name in images:
            lines.append(f"    image: {json.dumps(images[name])}")
        if name in ports:  # the file's container port, published on a free loopback port
            container_port = str(service["ports"][0]).split(":")[-1]
            lines.append(f"    ports: !override {json.dumps([f'127.0.0.1:{ports[name]}:{container_port}'])}")
        if engine.podman and service.get("extra_hosts"):
            lines.append("    extra_hosts: !reset []")  # podman 4.3 refuses host-gateway; it adds host.containers.internal
        if name == "label-studio":
            lines.append(f"    environment: {json.dumps(studio_env)}")
        if lines[-1] == f"  {name}:":
            lines.pop()
    lines += [
        "networks:",
        "  default:",
        "    ipam:",
        "      config: !reset null",  # podman-compose's !override takes scalars only: reset, then set
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    subnet_config = json.dumps([{"subnet": subnet}])
    subnet_file(path).write_text(f"networks:\n  default:\n    ipam:\n      config: {subnet_config}\n", encoding="utf-8")


def subnet_file(override: Path) -> Path:
    """The second override, which sets the subnet the first one reset."""
    return override.with_name("override-subnet.yml")


def wait_for(check: Callable[[], object], bound: float, what: str, logs: Callable[[], str]) -> object:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (requests.RequestException, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"{what} within {bound:.0f}s:\n{logs()}")


def open_project(request, engine: Engine, repo: Path, workdir: Path, file: str) -> Iterator[ComposeProject]:
    """A compose project of ``file``, torn down with its volumes and images at the end whatever happened."""
    if os.environ.get("CONTAINER_COMPOSE") is None and engine.podman:
        skip_or_fail("CONTAINER_COMPOSE is not set (podman needs podman-compose; see ../shared/container)")
    compose = ComposeProject(engine, repo, workdir, file)
    version = run([*compose.command, "version"], timeout=60, check=False)
    if version.returncode != 0:
        skip_or_fail(f"{' '.join(compose.command)} does not run: {version.stderr.strip()[-300:]}")
    for image in set(compose.images.values()):
        request.addfinalizer(lambda image=image: engine.remove_image(image))
    try:
        yield compose
    finally:
        compose("down", "-v", profile=True, timeout=300, check=False)


@pytest.fixture
def project(request, engine, repo, tmp_path) -> Iterator[ComposeProject]:
    yield from open_project(request, engine, repo, tmp_path, "docker-compose.yml")


def up(compose: ComposeProject, profile: bool = False) -> None:
    """``up -d``: Docker builds from the file's build: sections; podman-compose cannot pass
    ``--network host`` to its builds (pip needs it here), so the images are built beforehand."""
    if compose.engine.podman:
        for service, (context, args) in compose.builds.items():
            image = compose.images[service]
            if compose.engine("image", "exists", image, check=False).returncode != 0:
                build_args = [arg for key, value in args for arg in ("--build-arg", f"{key}={value}")]
                compose.engine.build(compose.repo / context, image, *build_args)
        compose("up", "-d", profile=profile)
    else:
        compose("up", "-d", "--build", profile=profile)
    for service in compose.builds:
        if service in compose.ports:
            port = compose.ports[service]
            wait_for(lambda port=port: answers_health(port), 120, f"{service} did not answer /health on {port}",
                     compose.logs)


def connect_label_studio(compose: ComposeProject) -> LabelStudioClient:
    """A client of the profile's Label Studio, once it accepts the admin's token."""
    ls_url = f"http://127.0.0.1:{compose.ports['label-studio']}"
    client = LabelStudioClient(ls_url, compose.token)
    wait_for(
        lambda: client.session.get(f"{ls_url}/api/current-user/whoami", timeout=10).ok,
        LS_START_BOUND,
        "Label Studio did not accept its admin's token",
        compose.logs,
    )
    return client


def setup_body(repo: Path, project_id: int) -> dict:
    body = json.loads((repo / "tests" / "runtime" / "protocol" / "setup_text.json").read_text(encoding="utf-8"))["json"]
    body["project"] = f"{project_id}.{int(time.time())}"
    body["schema"] = (repo / "label_config.xml").read_text(encoding="utf-8")
    return body


def test_compose_runs_the_backend_then_label_studio_beside_it(project: ComposeProject, repo: Path):
    backend_port = project.ports["backend"]
    examples = load_examples(repo)
    started = time.monotonic()

    def lap(what: str) -> None:  # reported with -s, never asserted
        print(f"{what}: {time.monotonic() - started:.0f}s")

    # 1. The default service alone.
    up(project)
    backend = project.container("backend")
    assert backend, project.logs()
    assert project.container("label-studio") is None, "the label-studio profile started without --profile"
    project.engine.assert_healthy(backend)
    status, answer = http(backend_port, "POST", "/setup", setup_body(repo, 1))
    assert status == 200 and answer["model_version"] == UNTRAINED, answer
    lap("backend built, up and healthy")

    # 2. Label Studio beside it, reaching it by service name.
    up(project, profile=True)
    client = connect_label_studio(project)
    lap("Label Studio up")
    ls_project = client.create_project("Compose run", (repo / "label_config.xml").read_text(encoding="utf-8"))
    pid = ls_project["id"]
    training = examples.training_set()
    holdout = examples.holdout()
    tasks = client.import_tasks(pid, [data for data, _ in training] + [data for data, _ in holdout])
    train_tasks, held_tasks = tasks[: len(training)], tasks[len(training) :]
    # Made before the backend is connected: only the backend's own call to label-studio:8080 finds it.
    client.create_annotation(train_tasks[0]["id"], training[0][1])

    ml = client.connect_ml_backend(pid, BACKEND_URL, "compose backend")
    assert ml["state"] == "CO", f"{ml}\n{project.logs()}"
    hooks = client.list_webhooks(pid)
    assert any(h["url"] == f"{BACKEND_URL}/webhook" and h["is_active"] for h in hooks), f"{hooks}\n{project.logs()}"
    for task, (_, result) in zip(train_tasks[1:], training[1:], strict=True):
        client.create_annotation(task["id"], result)  # each fires ANNOTATION_CREATED at the backend
    status, recorded = http(backend_port, "GET", f"/training/{pid}")
    assert recorded.get("recorded_annotations") == len(training) - 1, f"{recorded}\n{project.logs()}"

    client.start_training(ml["id"])
    trained = wait_for_training(lambda: http(backend_port, "GET", f"/training/{pid}")[1], timeout=TRAINING_BOUND)
    assert trained["state"] == "succeeded", f"{trained}\n{project.logs()}"
    assert trained["annotations"] == len(training), trained  # the early one came from label-studio:8080
    version = trained["model_version"]

    client.retrieve_predictions(pid, [task["id"] for task in held_tasks])
    stored = {p["task"]: p for p in client.list_predictions(pid) if p["model_version"] == version}
    for task, (_, label) in zip(held_tasks, holdout, strict=True):
        assert task["id"] in stored, f"no {version} prediction for task {task['id']}: {client.list_predictions(pid)}"
        assert examples.predicted_label(stored[task["id"]]) == label, stored[task["id"]]

    lap("trained and predicted through Label Studio")
    # SSRF protection is still on for everything but the project's own network.
    refused = client.session.post(
        f"{client.url}/api/webhooks",
        json={"project": pid, "url": "http://169.254.169.254/latest/meta-data/"},
        timeout=30,
    )
    assert refused.status_code == 403 and "reserved network address" in refused.text, (
        refused.status_code,
        refused.text,
    )

    # 3. The trained model survives down (without -v) and up.
    project("down", profile=True, timeout=300)
    assert project.container("backend") is None
    up(project)
    status, answer = http(backend_port, "POST", "/setup", setup_body(repo, pid))
    assert status == 200 and answer["model_version"] == version, answer
    lap("down and up again")


# --- the scaled topology, for real ---------------------------------------------------------------


@pytest.fixture
def scaled(request, engine, repo, tmp_path) -> Iterator[ComposeProject]:
    yield from open_project(request, engine, repo, tmp_path, SCALED)


def test_scaled_topology_trains_on_the_worker_and_every_replica_serves_the_new_model(scaled: ComposeProject,
                                                                                     repo: Path):
    """docker-compose.scale.yml with Label Studio: Label Studio knows api-1 only; its annotations and its
    Train request reach the worker through Redis; api-2, which Label Studio never calls, reports the
    training and predicts with the new version from the shared store."""
    examples = load_examples(repo)
    started = time.monotonic()
    up(scaled, profile=True)
    api1, api2 = scaled.ports["api-1"], scaled.ports["api-2"]
    for service in ("redis", "s3", "api-1", "api-2", "worker", "label-studio"):
        assert scaled.container(service), f"{service} is not running:\n{scaled.logs()}"
    print(f"scaled topology up: {time.monotonic() - started:.0f}s")

    client = connect_label_studio(scaled)
    ls_project = client.create_project("Scaled run", (repo / "label_config.xml").read_text(encoding="utf-8"))
    pid = ls_project["id"]
    training, holdout = examples.training_set(), examples.holdout()
    tasks = client.import_tasks(pid, [data for data, _ in training])
    ml = client.connect_ml_backend(pid, SCALED_API_URL, "scaled backend")
    assert ml["state"] == "CO", f"{ml}\n{scaled.logs()}"
    hooks = client.list_webhooks(pid)
    assert any(h["url"] == f"{SCALED_API_URL}/webhook" and h["is_active"] for h in hooks), hooks
    for task, (_, result) in zip(tasks, training, strict=True):
        client.create_annotation(task["id"], result)  # each fires ANNOTATION_CREATED at api-1 only
    # api-1 recorded them in the shared store: api-2 counts them too.
    status, recorded = http(api2, "GET", f"/training/{pid}")
    assert status == 200 and recorded.get("recorded_annotations") == len(training), f"{recorded}\n{scaled.logs()}"

    client.start_training(ml["id"])  # Label Studio's Train button: START_TRAINING to api-1
    trained = wait_for_training(lambda: http(api2, "GET", f"/training/{pid}")[1], timeout=TRAINING_BOUND)
    assert trained["state"] == "succeeded", f"{trained}\n{scaled.logs()}"
    assert trained["annotations"] == len(training), trained
    version = trained["model_version"]
    assert version != UNTRAINED
    assert http(api1, "GET", f"/training/{pid}")[1]["model_version"] == version  # the same answer on every replica
    # The worker trained (service.py logs each finished fit where it ran); no replica did.
    worker_log = scaled.engine.logs(scaled.container("worker"))
    assert f"trained on {len(training)} annotations: {version}" in worker_log, worker_log
    for api in ("api-1", "api-2"):
        log = scaled.engine.logs(scaled.container(api))
        assert "trained on" not in log, f"{api} trained itself:\n{log}"

    # api-2 predicts with the new version, from the shared store (no call from Label Studio ever reached it).
    body = setup_body(repo, pid)
    status, answer = http(api2, "POST", "/setup", body)
    assert status == 200 and answer["model_version"] == version, answer
    predict = {"project": body["project"], "label_config": body["schema"],
               "tasks": [{"id": 900 + i, "data": data} for i, (data, _) in enumerate(holdout)]}
    status, answer = http(api2, "POST", "/predict", predict)
    assert status == 200, answer
    results = answer["results"]
    assert {r["model_version"] for r in results} == {version}, answer
    for result, (_, label) in zip(results, holdout, strict=True):
        assert examples.predicted_label(result) == label, result
    print(f"trained on the worker, served by api-2: {time.monotonic() - started:.0f}s")
