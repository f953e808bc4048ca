"""A repo baked from an earlier commit of this template takes the current one with `cruft update`.

cruft reads templates from git, never from a working tree: the update goes to
this checkout's committed HEAD (uncommitted edits of the template are not part
of it; commit them to test them here). The earlier commit is OLDEST_UPDATABLE,
the first commit whose post-generation hook writes ``.cruft.json`` and renders
under cruft; a CI clone has the full history, so it is there. The bake goes
through a plain ``git clone`` checked out at that commit, as a user's clone
would be, with plain cookiecutter, as the template README tells users to bake.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE, render_hook, run
from variants import manifests

OLDEST_UPDATABLE = "ff73d55788a0d8865d7c632e3b40e72d990e7f16"
SLUG_DIR = "{{cookiecutter.project_slug}}"
GIT_ENV = {"GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.com",
           "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.com"}
# What a user adds to model.py: their own helper at the end, on lines the template never writes. (An edit of a
# line the template changes too, such as the classifier's arguments, is a conflict by design: see the README.)
USER_EDIT = '\n\ndef clean_text(text: str) -> str:\n    """Our own pre-processing, added after baking."""\n    return " ".join(text.split())\n'
# What a user adds to tests/test_model.py, the tests of their model: a test of their own.
USER_TEST = '\n\ndef test_our_cleaning_joins_whitespace():\n    from model import clean_text\n\n    assert clean_text(" a \\n b ") == "a b"\n'
# The files the user owns; the hook lists them under "skip" in .cruft.json, and the generated docs tell a repo
# baked before that (as the one from OLDEST_UPDATABLE is) to add the same line.
USERS_FILES = ["model.py", "tests/test_model.py"]


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          env={**os.environ, **GIT_ENV})
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def cruft() -> str:
    path = shutil.which("cruft", path=str(Path(sys.executable).parent)) or shutil.which("cruft")
    assert path, "cruft is not installed: pip install -r requirements.txt"
    return path


@pytest.fixture(scope="module")
def head() -> str:
    """The template's committed HEAD; the template must be a git checkout with its history."""
    if subprocess.run(["git", "-C", str(TEMPLATE), "rev-parse", "HEAD"], capture_output=True,
                      check=False).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the template is not a git checkout; the update test needs its history")
        pytest.skip("the template is not a git checkout; the update test needs its history")
    git("cat-file", "-e", f"{OLDEST_UPDATABLE}^{{commit}}", cwd=TEMPLATE)  # fails in a shallow clone: say so
    return git("rev-parse", "HEAD", cwd=TEMPLATE)


def bake_from(commit: str, tmp_path: Path) -> Path:
    """Bake with plain cookiecutter from a clone of the template checked out at ``commit``."""
    from cookiecutter.main import cookiecutter

    clone = tmp_path / "ls-ml-template"
    git("clone", "-q", str(TEMPLATE), str(clone), cwd=tmp_path)
    git("checkout", "-q", commit, cwd=clone)
    repo = Path(cookiecutter(str(clone), no_input=True, output_dir=str(tmp_path / "out"),
                             extra_context={"model_type": "text_classification"}))
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "baked", cwd=repo)
    return repo


HOOK_ANSWERS = {"project_name": "Name", "project_slug": "name", "model_type": "text_classification",
                "label_config": "", "port": "9090", "python_version": "3.12", "_output_dir": "/out"}


def git_repo(path: Path, origin: str | None = None) -> str:
    """A git repository with one commit (and an ``origin`` remote if given); returns its HEAD."""
    path.mkdir(parents=True)
    git("init", "-q", cwd=path)
    (path / "cookiecutter.json").write_text("{}")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "template", cwd=path)
    if origin:
        git("remote", "add", "origin", origin, cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


def source(tmp_path: Path, **answers: str) -> tuple[str, str]:
    """What the post-generation hook records as the template's source and commit for these answers."""
    hook = render_hook("post_gen_project", {**HOOK_ANSWERS, "_repo_dir": "", **answers}, tmp_path)
    return hook.template_source()


@pytest.mark.parametrize("given, recorded", [
    ("gh:acme/ls-ml-template", "https://github.com/acme/ls-ml-template.git"),
    ("gl:acme/ls-ml-template", "https://gitlab.com/acme/ls-ml-template.git"),
    ("https://git.example.com/acme/ls-ml-template.git", "https://git.example.com/acme/ls-ml-template.git"),
    ("git@github.com:acme/ls-ml-template.git", "git@github.com:acme/ls-ml-template.git"),
])
def test_a_git_source_is_recorded_as_a_url_git_can_clone_later(tmp_path, given, recorded):
    commit = git_repo(tmp_path / "cookiecutters" / "ls-ml-template")  # where cookiecutter cloned it
    assert source(tmp_path, _template=given, _repo_dir=str(tmp_path / "cookiecutters" / "ls-ml-template")) == (
        recorded, commit)


def test_a_local_checkout_is_recorded_as_its_origin(tmp_path):
    commit = git_repo(tmp_path / "clone", origin="https://git.example.com/acme/ls-ml-template.git")
    assert source(tmp_path, _template=".", _repo_dir=str(tmp_path / "clone")) == (
        "https://git.example.com/acme/ls-ml-template.git", commit)


def test_a_local_checkout_without_origin_is_recorded_as_its_absolute_folder(tmp_path):
    commit = git_repo(tmp_path / "tpl")
    assert source(tmp_path, _template="tpl", _repo_dir=str(tmp_path / "tpl")) == (str((tmp_path / "tpl").resolve()),
                                                                                 commit)


def test_a_folder_that_is_no_checkout_gets_the_documented_placeholder(tmp_path):
    (tmp_path / "unpacked").mkdir()
    recorded, commit = source(tmp_path, _template=str(tmp_path / "unpacked"), _repo_dir=str(tmp_path / "unpacked"))
    assert recorded.startswith("FILL-IN") and commit == ""
    docs = (TEMPLATE / SLUG_DIR / "docs" / "maintenance.md").read_text(encoding="utf-8")
    assert "`FILL-IN`" in docs, "the generated docs must say what to fill in"


def test_under_cruft_the_source_cruft_gives_is_kept(tmp_path):
    """cruft renders old and new template alike with its own source; recording anything else would conflict."""
    assert source(tmp_path, _template="/some/where", _commit="abc123", _output_dir="") == ("/some/where", "abc123")


def test_baked_repo_records_where_its_template_comes_from(head, tmp_path):
    repo = bake_from(head, tmp_path)
    state = json.loads((repo / ".cruft.json").read_text(encoding="utf-8"))
    answers = json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))
    # a clone's origin is the template it was cloned from: a source that works later, unlike the clone's path
    assert state["template"] == answers["_template"] == str(TEMPLATE)
    assert state["commit"] == answers["_commit"] == head
    assert state["context"]["cookiecutter"]["label_config"].strip() == (repo / "label_config.xml").read_text().strip()


def test_a_new_bake_keeps_cruft_off_the_users_files(head, tmp_path):
    repo = bake_from(head, tmp_path)
    assert json.loads((repo / ".cruft.json").read_text(encoding="utf-8"))["skip"] == USERS_FILES
    docs = (repo / "docs" / "maintenance.md").read_text(encoding="utf-8")
    assert '"skip": ["model.py", "tests/test_model.py"]' in docs, "the docs must give older repos the line"


def template_file(head: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{head}:{path}"], cwd=TEMPLATE, capture_output=True, check=True).stdout


@pytest.mark.slow
def test_update_from_an_earlier_commit_keeps_the_users_files_and_brings_the_new_runtime(head, tmp_path):
    runtime = f"{SLUG_DIR}/lsbackend"
    if head == OLDEST_UPDATABLE or not git("diff", "--stat", OLDEST_UPDATABLE, head, "--", runtime, cwd=TEMPLATE):
        pytest.fail("the runtime did not change since the earlier commit: this test would prove nothing")
    repo = bake_from(OLDEST_UPDATABLE, tmp_path)
    state_file = repo / ".cruft.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text(encoding="utf-8")), "skip": USERS_FILES}),
                          encoding="utf-8")  # as docs/maintenance.md tells a repo baked before the hook wrote it
    model, tests = repo / "model.py", repo / "tests" / "test_model.py"
    model.write_text(model.read_text(encoding="utf-8") + USER_EDIT, encoding="utf-8")
    tests.write_text(tests.read_text(encoding="utf-8") + USER_TEST, encoding="utf-8")
    mine = {path: path.read_bytes() for path in (model, tests)}
    git("commit", "-q", "-am", "Tune the model and test it", cwd=repo)

    # the command the README shows, pinned to the commit under test
    run([cruft(), "update", "-y", "--checkout", head], cwd=repo)

    for path, content in mine.items():
        assert path.read_bytes() == content, f"the update touched {path.relative_to(repo)}, the user's file"
    status = git("status", "--porcelain", cwd=repo)
    assert not re.findall(r"^(?:UU|AA|DU|UD) (.+)$", status, re.MULTILINE), f"conflicts:\n{status}"
    assert not list(repo.rglob("*.rej")), "rejected hunks"
    shipped = git("ls-tree", "--name-only", f"{head}:{runtime}", cwd=TEMPLATE).split()
    here = sorted(p.name for p in (repo / "lsbackend").iterdir() if p.is_file())
    others_only = {Path(name).name for kind, manifest in manifests().items() if kind != "text_classification"
                   for name in manifest["optional_files"] if name.startswith("lsbackend/")}
    others_only -= {Path(name).name for name in manifests()["text_classification"]["optional_files"]}
    expected = sorted(n for n in shipped if n not in others_only)  # the hook drops other variants' runtime files
    assert here == expected, "lsbackend/ differs from the template's file list"
    for name in here:
        assert (repo / "lsbackend" / name).read_bytes() == template_file(head, f"{runtime}/{name}"), name
    assert_the_template_tests_are_the_new_ones(head, repo)
    state = json.loads((repo / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == head and state["skip"] == USERS_FILES
    assert json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))["_commit"] == head

    # the fast tier (make test): the user's old model and tests on the new runtime and its tests
    run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"], cwd=repo,
        timeout=1500)
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=repo)


def assert_the_template_tests_are_the_new_ones(head: str, repo: Path) -> None:
    """tests/runtime/ and tests/conftest.py are the template's, file for file; the old runtime tests are gone."""
    installed = {target: source for source, target in manifests()["text_classification"]["install"].items()}
    folder = f"{SLUG_DIR}/tests/runtime"
    listed = git("ls-tree", "-r", "--name-only", f"{head}:{folder}", cwd=TEMPLATE).split()
    expected = {f"tests/runtime/{name}" for name in listed} | {t for t in installed if t.startswith("tests/runtime/")}
    here = {str(p.relative_to(repo)) for p in (repo / "tests" / "runtime").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert here == expected, f"tests/runtime/ differs: extra {here - expected}, missing {expected - here}"
    for path in sorted(expected):
        source = (f"{SLUG_DIR}/_variants/text_classification/{installed[path]}" if path in installed
                  else f"{SLUG_DIR}/{path}")
        assert (repo / path).read_bytes() == template_file(head, source), f"{path} is not the new one"
    assert (repo / "tests" / "conftest.py").read_bytes() == template_file(head, f"{SLUG_DIR}/tests/conftest.py")
    top = sorted(p.name for p in (repo / "tests").iterdir() if p.name != "__pycache__")
    assert top == ["conftest.py", "runtime", "test_model.py"], f"old template files left in tests/: {top}"
