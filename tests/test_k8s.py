"""The generated deployment files: Kubernetes manifests valid against Kubernetes' own schemas and
consistent with the image, the server and each other; every setting they (and the compose files)
pass one the backend documents and reads.

``kubernetes-validate`` ships the OpenAPI-derived JSON schemas of each Kubernetes release in its
wheel, so this runs offline. Manifests are checked strictly (an unknown or misspelt field is an
error) against the oldest release the README promises and the newest the package knows.
The manifests are the same for every variant but for names, so one text repo is baked.
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from containers import PORT_ANSWER, SLUG, bake
from test_readme import commands, pages, section, settings_read_by_code, settings_table

MODEL_TYPE = "text_classification"
#: The oldest Kubernetes the manifests are for (autoscaling/v2 and the probes' fields exist since).
OLDEST = "1.29.0"
VERSIONS = [OLDEST, kubernetes_validate.latest_version()]
#: Read by boto3 (the S3 store's client), not by our code: documented in the README, not in Settings.
S3_CLIENT_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
IMAGE_UID = 10001


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return bake(tmp_path_factory.mktemp("bake-k8s"), MODEL_TYPE)


def manifests(repo: Path) -> dict[str, dict]:
    """``relative/path.yaml#Kind/name`` -> each document under deploy/k8s/ (every file, every document)."""
    found = {}
    files = sorted((repo / "deploy" / "k8s").rglob("*.y*ml"))
    assert files, "no manifests under deploy/k8s/"
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found[f"{path.relative_to(repo)}#{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def one(repo: Path, where: str, kind: str) -> dict:
    """The one manifest of ``kind`` in the file ``where`` (relative to deploy/k8s/)."""
    docs = [doc for key, doc in manifests(repo).items() if key.startswith(f"deploy/k8s/{where}#{kind}/")]
    assert len(docs) == 1, f"{where}: {len(docs)} {kind}s"
    return docs[0]


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def env_names(container: dict, repo: Path) -> set[str]:
    """What a container's environment sets: ``env`` entries and every key of the ConfigMaps it loads."""
    names = {entry["name"] for entry in container.get("env", [])}
    configmaps = {doc["metadata"]["name"]: doc for doc in manifests(repo).values() if doc["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in configmaps, f"envFrom names ConfigMap {ref}, which deploy/k8s/ does not define"
        names |= set(configmaps[ref]["data"])
    return names


# --- the schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(repo, version):
    docs = manifests(repo)
    kinds = sorted(doc["kind"] for doc in docs.values())
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "Deployment", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
         "Service"]
    ), kinds
    for key, doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key} is not a valid Kubernetes {version} resource: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"].update(replica=2),  # misspelt field: strict validation refuses it
        lambda d: pod_spec(d)["containers"][0]["ports"][0].update(containerPort="http"),  # wrong type
        lambda d: pod_spec(d).pop("containers"),  # required field missing
        lambda d: pod_spec(d)["containers"][0]["livenessProbe"]["httpGet"].pop("port"),
    ],
    ids=["unknown-field", "wrong-type", "no-containers", "probe-without-port"],
)
def test_the_validation_refuses_a_broken_manifest(repo, break_it):
    broken = copy.deepcopy(one(repo, "api.yaml", "Deployment"))
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


# --- what the manifests say, against the image and the server --------------------------------------


def test_api_probes_the_servers_health_and_readiness_and_runs_as_the_images_user(repo):
    server = (repo / "lsbackend" / "server.py").read_text(encoding="utf-8")
    dockerfile = (repo / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in dockerfile
    for where in ("api.yaml", "single/api.yaml"):
        spec = pod_spec(one(repo, where, "Deployment"))
        (api,) = spec["containers"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == IMAGE_UID
        assert api["ports"] == [{"name": "http", "containerPort": int(PORT_ANSWER)}]
        probes = {name: api[name]["httpGet"] for name in ("livenessProbe", "readinessProbe", "startupProbe")}
        assert probes["livenessProbe"]["path"] == "/health" and probes["readinessProbe"]["path"] == "/ready"
        for probe in probes.values():
            assert probe["port"] == "http"
            # a probe must reach a route the server has and that basic auth leaves open
            assert f'@protocol.get("{probe["path"]}")' in server, probe
            assert re.search(rf'OPEN_PATHS = {{[^}}]*"{probe["path"]}"', server), probe
        assert api["resources"]["requests"]["cpu"] and api["resources"]["limits"]["memory"]
        assert api["securityContext"]["allowPrivilegeEscalation"] is False
        assert api["image"].startswith(f"{SLUG}:")
        mounts = {m["mountPath"] for m in api["volumeMounts"]}
        assert {"/tmp", "/data/models"} <= mounts  # the root filesystem is read-only


def test_service_and_autoscaler_point_at_the_api_and_the_worker_runs_the_worker_command(repo):
    api = one(repo, "api.yaml", "Deployment")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = one(repo, "service.yaml", "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    single = one(repo, "single/api.yaml", "Deployment")
    assert service["spec"]["selector"].items() <= single["spec"]["template"]["metadata"]["labels"].items()
    hpa = one(repo, "hpa.yaml", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": api["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    (worker,) = pod_spec(one(repo, "worker.yaml", "Deployment"))["containers"]
    assert worker["command"] == ["python", "-m", "lsbackend", "worker"]
    assert worker["image"] == pod_spec(api)["containers"][0]["image"]
    assert pod_spec(one(repo, "worker.yaml", "Deployment"))["securityContext"]["runAsNonRoot"] is True


def test_secrets_are_referenced_never_shipped(repo):
    docs = manifests(repo)
    assert not [key for key, doc in docs.items() if doc["kind"] == "Secret"], "a Secret with values is shipped"
    for key, doc in docs.items():
        if doc["kind"] != "Deployment":
            continue
        for container in pod_spec(doc)["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            for name in ("LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "AWS_SECRET_ACCESS_KEY"):
                if name in env:
                    assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"], (key, name)
    assert "LABEL_STUDIO_API_KEY" in {e["name"] for e in pod_spec(one(repo, "api.yaml", "Deployment"))
                                      ["containers"][0]["env"]}
    for doc in docs.values():
        if doc["kind"] == "ConfigMap":
            assert not set(doc["data"]) & {"LABEL_STUDIO_API_KEY", "BASIC_AUTH_PASS", "AWS_SECRET_ACCESS_KEY"}


def test_single_replica_mode_keeps_models_on_its_claim(repo):
    deployment = one(repo, "single/api.yaml", "Deployment")
    claim = one(repo, "single/pvc.yaml", "PersistentVolumeClaim")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    (api,) = pod_spec(deployment)["containers"]
    models = next(m for m in api["volumeMounts"] if m["mountPath"] == "/data/models")
    assert volumes[models["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    note = (repo / "deploy" / "k8s" / "single" / "pvc.yaml").read_text(encoding="utf-8")
    assert "MODEL_STORE" in note and "ReadWriteMany" in note, "the claim must say what more replicas need"
    assert not {"REDIS_URL", "MODEL_STORE"} & env_names(api, repo), "single mode runs without Redis and S3"


# --- every variable a deployment file sets is a setting -------------------------------------------


def deployment_env(repo: Path) -> dict[str, set[str]]:
    """File -> the variables it hands the backend: Kubernetes containers, and the compose services built
    from this repo's Dockerfile (Label Studio's and the stand-ins' own variables are theirs)."""
    found: dict[str, set[str]] = {}
    for key, doc in manifests(repo).items():
        if doc["kind"] == "Deployment":
            for container in pod_spec(doc)["containers"]:
                found.setdefault(key, set()).update(env_names(container, repo))
    for path in sorted(repo.glob("docker-compose*.yml")):
        compose = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name, service in compose["services"].items():
            build = service.get("build")
            context = build if isinstance(build, str) else (build or {}).get("context")
            if context in (".", "./"):
                found[f"{path.name}#{name}"] = set(service.get("environment") or {})
    return found


def test_every_variable_the_deployment_files_set_is_a_documented_setting(repo):
    readme = "\n".join(pages(repo).values())
    documented = settings_table(repo)
    read = settings_read_by_code(repo)
    found = deployment_env(repo)
    assert any("docker-compose.scale.yml" in key for key in found) and any("worker.yaml" in key for key in found)
    scale_out = section(readme, "Scale out")
    for where, names in found.items():
        for name in sorted(names):
            if name in S3_CLIENT_VARS:  # boto3's: the README's Scale out section must explain them
                assert f"`{name}`" in scale_out, f"{where} sets {name}; the Scale out section does not explain it"
                continue
            assert name in documented, f"{where} sets {name}, which docs/settings.md does not list"
            assert name in read, f"{where} sets {name}, which no code of the backend reads"


def test_scale_out_section_shows_commands_files_and_services_that_exist(repo):
    """The README's Scale out section: compose commands against the scaled file, its services and
    profiles; kubectl commands against deploy/k8s/ and the Secret names the manifests reference."""
    text = section(pages(repo)["docs/scale-out.md"], "Scale out")
    compose = yaml.safe_load((repo / "docker-compose.scale.yml").read_text(encoding="utf-8"))
    services = set(compose["services"])
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    shown = commands(text, "docker compose")
    assert any("up" in argv for argv in shown), shown
    for argv in shown:
        assert argv[:2] == ["-f", "docker-compose.scale.yml"], argv
        if "--profile" in argv:
            assert argv[argv.index("--profile") + 1] in profiles, argv
        for option in ("--scale",):
            if option in argv:
                assert argv[argv.index(option) + 1].split("=")[0] in services, argv
        if argv[2:3] == ["logs"]:
            assert argv[-1] in services, argv
    for name in re.findall(r"`(api-\d|worker|redis|s3)`", text):
        assert name in services, f"the section names service {name}, which docker-compose.scale.yml lacks"
    referenced = {
        (ref["name"], ref["key"])
        for doc in manifests(repo).values() if doc["kind"] == "Deployment"
        for container in pod_spec(doc)["containers"]
        for env in container.get("env", []) if "valueFrom" in env
        for ref in [env["valueFrom"]["secretKeyRef"]]
    }
    created = set()
    for argv in commands(text, "kubectl"):
        if argv[:3] == ["create", "secret", "generic"]:
            keys = {a.split("=", 1)[1].split("=")[0] for a in argv if a.startswith("--from-literal=")}
            created |= {(argv[3], key) for key in keys}
        for flag, value in itertools.pairwise(argv):
            if flag == "-f":
                assert (repo / value).exists(), f"kubectl -f {value}: no such file or folder"
    assert created == referenced, f"README creates {sorted(created)}; the manifests read {sorted(referenced)}"
    for path in re.findall(r"`(deploy/[\w/.-]+|docker-compose[\w.]*\.yml)`", text):
        assert (repo / path).exists(), f"the section names {path}, which this repo does not have"
