"""Model versions: Label Studio's list (GET /versions), the CLI's list, and rolling back with ``use``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lsbackend.service import Backend
from lsbackend.settings import Settings
from lsbackend.storage import UnknownVersion

from conftest import EXAMPLES_CONFIG, MODEL_CLASS, ROOT, SHAPE, captured, holdout_request
from test_faults import ENV, Gunicorn, annotations, predict_body

SETUP = captured(f"setup_{SHAPE}")
PROJECT = SETUP["project"].split(".")[0]


def train_times(backend: Backend, project: str, n: int) -> list[str]:
    """Train ``n`` times on the variant's examples; the versions made, oldest first."""
    made = []
    for _ in range(n):
        status = backend.train(project, annotations())
        assert status["state"] == "succeeded", status
        made.append(status["model_version"])
    return made


def served_version(client, project: str) -> str:
    body = {**holdout_request(), "project": project}  # inline data: no downloads
    versions = {r["model_version"] for r in client.post("/predict", json=body).get_json()["results"]}
    assert len(versions) == 1, versions
    return versions.pop()


def test_versions_lists_the_project_label_studio_set_up_last(client, backend):
    assert client.get("/versions").get_json() == {"versions": [], "current": None, "project": None}
    made = train_times(backend, PROJECT, 2)
    other = train_times(backend, "99", 1)
    assert client.post("/setup", json=SETUP).status_code == 200
    answer = client.get("/versions").get_json()  # Label Studio sends it exactly so, without a project
    unscored = {"not_scored": "trained on every annotation (nothing held out)"}  # too few examples to hold out
    assert answer == {"versions": made[::-1], "current": made[-1], "project": PROJECT,
                      "evaluations": dict.fromkeys(made, unscored)}
    assert client.get("/versions?project=99").get_json()["versions"] == other
    assert client.post("/setup", json={**SETUP, "project": "99.1795850610"}).status_code == 200
    assert client.get("/versions").get_json()["versions"] == other


def test_versions_refuses_a_project_that_is_not_an_id(client):
    response = client.get("/versions?project=../etc")
    assert response.status_code == 400 and "not a Label Studio project id" in response.status


def test_rolling_back_serves_the_old_version_and_the_next_training_gets_a_new_number(client, backend):
    first, second = train_times(backend, PROJECT, 2)
    assert served_version(client, PROJECT) == second
    backend.use_version(PROJECT, first)
    assert client.post("/setup", json=SETUP).get_json() == {"model_version": first}
    assert served_version(client, PROJECT) == first  # the cached model object was replaced
    (third,) = train_times(backend, PROJECT, 1)
    assert third.startswith("v3-"), third  # never a second "v2" next to the kept one
    assert backend.versions(PROJECT)["versions"] == [third, second, first]


def test_an_unknown_version_is_refused_naming_the_kept_ones(backend):
    (kept,) = train_times(backend, PROJECT, 1)
    with pytest.raises(UnknownVersion, match=kept):
        backend.use_version(PROJECT, "v7-20200101T000000")
    assert backend.versions(PROJECT)["current"] == kept


def test_only_keep_versions_trained_models_are_kept(tmp_path):
    backend = Backend(MODEL_CLASS, Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG, keep_versions=2))
    made = train_times(backend, PROJECT, 3)
    assert backend.versions(PROJECT)["versions"] == made[:0:-1]


def cli(model_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**ENV, "MODEL_DIR": str(model_dir)}
    return subprocess.run([sys.executable, "-m", "lsbackend", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow


def test_the_cli_lists_versions_and_rolls_back(tmp_path):
    backend = Backend(MODEL_CLASS, Settings(model_dir=tmp_path, label_config_path=EXAMPLES_CONFIG))
    first, second = train_times(backend, PROJECT, 2)
    listed = cli(tmp_path, "versions", "--project", PROJECT)
    assert listed.returncode == 0 and listed.stdout.split("\n")[:2] == [f"* {second}", f"  {first}"], listed
    used = cli(tmp_path, "use", first, "--project", PROJECT)
    assert used.returncode == 0, used.stderr
    assert backend.versions(PROJECT)["current"] == first
    missing = cli(tmp_path, "use", "v9-x", "--project", PROJECT)
    assert missing.returncode == 1 and first in missing.stderr and "versions --project" in missing.stderr
    junk = cli(tmp_path, "versions", "--project", "../x")
    assert junk.returncode == 2 and "not a Label Studio project id" in junk.stderr


@pytest.mark.slow
def test_a_rollback_reaches_both_gunicorn_workers(tmp_path):
    server = Gunicorn(tmp_path)
    try:
        backend = Backend(MODEL_CLASS, Settings(model_dir=server.model_dir, label_config_path=EXAMPLES_CONFIG))
        first, second = train_times(backend, "7", 2)

        def versions_from_both_workers() -> set[str]:
            """The versions served by both workers (asked until each has answered)."""
            seen: set[str] = set()

            def ask() -> None:
                status, body = server.request("POST", "/predict", predict_body())
                assert status == 200, body
                seen.update(r["model_version"] for r in body["results"])

            server.until_both_workers_answer("/predict", ask)
            return seen

        assert versions_from_both_workers() == {second}
        assert cli(server.model_dir, "use", first, "--project", "7").returncode == 0
        assert versions_from_both_workers() == {first}
        assert server.request("GET", "/versions?project=7")[1]["current"] == first
    finally:
        server.stop()
    assert os.path.exists(server.model_dir / "projects" / "7" / "models" / f"{second}.pkl")
