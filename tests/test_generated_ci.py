"""The generated repo's own CI: workflow, Dependabot and pre-commit configs pass real linters, the
commands they run exist, pre-commit's hooks really catch problems, and the smoke script the image
job calls really replays the captured requests against a running server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MODEL_TYPES, TEMPLATE, run
from harness import ManagedProcess, free_port
from test_readme import makefile_targets
from variants import captures

BIN = Path(sys.executable).parent
PRE_COMMIT_HOME = Path.home() / ".cache" / "ls-ml-template" / "pre-commit"


def bake(cookies, **answers) -> Path:
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)


def tool(name: str) -> str:
    """A linter from the template's requirements.txt; missing means the environment is broken."""
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: pip install -r requirements.txt"
    return path


def pins(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.strip().lower().split("==") for line in lines if "==" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repo baked with answers other than the defaults, so hard-coded values show."""
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp("ci")
    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out),
                             extra_context={"port": "9321", "python_version": "3.13", "project_slug": "ci-check"}))


def workflow(repo: Path) -> dict:
    return yaml.safe_load((repo / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))


def test_workflow_dependabot_and_pre_commit_configs_pass_their_schemas(repo):
    checker = tool("check-jsonschema")
    run([checker, "--builtin-schema", "vendor.github-workflows", ".github/workflows/ci.yml"], cwd=repo)
    run([checker, "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml"], cwd=repo)
    run([tool("pre-commit"), "validate-config", ".pre-commit-config.yaml"], cwd=repo)


def test_the_linters_refuse_a_broken_workflow(repo, tmp_path):
    """The schema check is not a formality: a misspelt key or a job without steps fails it."""
    broken = tmp_path / "ci.yml"
    broken.write_text((repo / ".github/workflows/ci.yml").read_text().replace("runs-on:", "run-on:", 1))
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "run-on" in proc.stdout + proc.stderr


def test_github_expressions_survive_rendering(repo):
    text = (repo / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    assert "${{ github.ref }}" in text
    assert "'{{.State.Health.Status}}'" in text
    assert "{%" not in text and "{#" not in text and "cookiecutter" not in text


def test_workflow_runs_tests_lint_and_the_image_smoke_test(repo):
    jobs = workflow(repo)["jobs"]
    scripts = {name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    everything = "\n".join(scripts.values())
    assert re.search(r"^make test-all$", scripts["test"], re.MULTILINE), "CI runs every test, not the fast tier"
    assert "pre-commit run --all-files" in scripts["lint"]
    image = scripts["image"]
    assert 'docker build -t "$IMAGE" .' in image and 'docker run -d --name backend -p "$PORT:$PORT"' in image
    assert "make smoke" in image and "State.Health.Status" in image and "healthy" in image
    env = jobs["image"]["env"]
    assert env == {"IMAGE": "ci-check:ci", "PORT": "9321"}
    for job in jobs.values():
        python = [s["with"]["python-version"] for s in job["steps"] if "setup-python" in s.get("uses", "")]
        assert python in ([], ["3.13"]), "CI must test the Python the image uses"
    targets = makefile_targets(repo)
    for target in re.findall(r"\bmake (\w[\w-]*)", everything):
        assert target in targets, f"the workflow runs make {target}; the Makefile has no such target"
    assert "tests/runtime/smoke.py" in targets["smoke"] and (repo / "tests" / "runtime" / "smoke.py").is_file()
    pinned = re.search(r"pre-commit==([\d.]+)", scripts["lint"]).group(1)
    assert pins(TEMPLATE / "requirements.txt")["pre-commit"] == pinned


def test_every_workflow_script_is_valid_bash(repo):
    for name, job in workflow(repo)["jobs"].items():
        for step in job["steps"]:
            if "run" in step:
                proc = subprocess.run(["bash", "-n", "-e", "-o", "pipefail"], input=step["run"], text=True,
                                      capture_output=True, check=False)
                assert proc.returncode == 0, f"job {name}, step {step.get('name')}: {proc.stderr}"


def test_dependabot_updates_pip_docker_and_actions(repo):
    config = yaml.safe_load((repo / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"pip", "docker", "docker-compose", "github-actions"}
    assert all(u["directory"] == "/" for u in ecosystems.values())
    assert (repo / "requirements.txt").is_file() and (repo / "Dockerfile").is_file()
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text(encoding="utf-8"))
    assert any(":" in s.get("image", "") and "build" not in s for s in compose["services"].values()), \
        "the docker-compose entry needs a pinned image to watch"


def test_pre_commit_hooks_pin_what_requirements_pin(repo):
    config = yaml.safe_load((repo / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {h["id"]: h for r in config["repos"] for h in r["hooks"]}
    assert {"ruff", "hadolint"} <= set(hooks)
    dev, template = pins(repo / "requirements-dev.txt"), pins(TEMPLATE / "requirements.txt")
    for hook in hooks.values():
        for dep in hook.get("additional_dependencies", []):
            name, version = dep.lower().split("==")
            assert (dev.get(name) or template.get(name)) == version, f"{dep} differs from the pinned {name}"


@pytest.mark.slow
def test_pre_commit_passes_a_fresh_repo_and_catches_what_it_should(repo, tmp_path):
    """Runs the hooks for real (they install from the package index into a cached environment)."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work)
    env = {**os.environ, "PRE_COMMIT_HOME": str(PRE_COMMIT_HOME), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    git = ["git", "-C", str(work)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    pre_commit = [tool("pre-commit"), "run", "--all-files"]
    first = subprocess.run(pre_commit, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    with (work / "Dockerfile").open("a") as fh:
        fh.write("RUN cd /tmp && echo broken\n")  # DL3003: use WORKDIR
    with (work / "model.py").open("a") as fh:
        fh.write("\nimport os\n")  # F401 and E402
    subprocess.run([*git, "add", "-A"], check=True)
    second = subprocess.run(pre_commit, cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert second.returncode != 0
    assert "DL3003" in second.stdout and "F401" in second.stdout, second.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_smoke_script_replays_the_captures_against_a_running_server(cookies, tmp_path, model_type):
    """`make smoke`, as the workflow's image job calls it, against the production server started locally."""
    repo = bake(cookies, model_type=model_type)
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODEL_DIR": str(tmp_path / "models")}
    server = ManagedProcess("backend", [sys.executable, "-m", "lsbackend", "start"], log, cwd=repo, env=env).start()
    try:
        proc = subprocess.run(["make", "smoke", f"URL=http://127.0.0.1:{port}"], cwd=repo, capture_output=True,
                              text=True, timeout=180, check=False)
    finally:
        server.stop()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output}\nserver log:\n{log.read_text()}"
    kind = captures(model_type)
    replayed = set(re.findall(r"\((\w+\.json)\): 2\d\d", output))
    expected = {p.name for p in (repo / "tests" / "runtime" / "protocol").glob("*.json") if kind in p.stem.split("_")}
    assert replayed == expected, f"replayed {sorted(replayed)}, captures of {kind}: {sorted(expected)}"
    others = len(list((repo / "tests" / "runtime" / "protocol").glob("setup_*.json"))) - 1  # every other kind's config
    assert len(re.findall(r"\(setup_\w+\.json\): 422 Labeling config does not fit", output)) == others


def test_smoke_script_fails_clearly_when_nothing_answers(cookies):
    repo = bake(cookies)
    proc = subprocess.run([sys.executable, "tests/runtime/smoke.py", "--url", f"http://127.0.0.1:{free_port()}",
                           "--timeout", "1"], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "did not answer 200" in proc.stderr and "is the backend running" in proc.stderr
