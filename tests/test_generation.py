"""Bake the template with every supported option and with hostile or wrong answers."""

from __future__ import annotations

import json
import re
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import DEFAULT_CONFIGS, MODEL_TYPES, run

LEFTOVER = re.compile(r"{{\s*cookiecutter\.|{%\s*(if|for|endif|endfor)\b")


def bake(cookies, **answers):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)


def assert_nothing_left(tmpdir) -> None:
    """A refused bake leaves no half-made project in its output folder."""
    leftovers = [p for out in Path(tmpdir).glob("bake*") for p in out.iterdir()]
    assert leftovers == [], f"left on disk: {leftovers}"


def text_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_bakes_a_complete_repo_with_nothing_left_over(cookies, model_type):
    repo = bake(cookies, model_type=model_type)
    for name in ("model.py", "label_config.xml", "requirements.txt", "pyproject.toml", "README.md",
                 "Makefile", ".gitattributes", "lsbackend/label_config.py", "tests/test_model.py",
                 "tests/runtime/examples.py",
                 "requirements-redis.txt", "lsbackend/redis_queue.py"):
        assert (repo / name).is_file(), name
    assert not (repo / "_variants").exists()
    assert (repo / "lsbackend" / "media.py").exists()  # every variant: label_studio_ml's get_local_path uses it
    assert (repo / "label_studio_ml" / "model.py").exists() and (repo / "requirements-upstream.txt").exists()
    images = model_type in ("image_classification", "object_detection")
    assert (repo / "lsbackend" / "onnx_model.py").exists() == (model_type == "image_classification")
    assert (repo / "lsbackend" / "yolo_onnx.py").exists() == (model_type == "object_detection")
    assert (repo / "requirements-onnx.txt").exists() == images
    for path, text in text_files(repo):
        assert not LEFTOVER.search(text), f"unrendered Jinja left in {path.relative_to(repo)}"


def test_answers_are_recorded_for_template_updates(cookies):
    repo = bake(cookies, project_name="Recorded", port="9191")
    answers = json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert answers["project_name"] == "Recorded" and answers["port"] == "9191"
    assert answers["label_config"].strip() == (repo / "label_config.xml").read_text(encoding="utf-8").strip()
    assert "_output_dir" not in answers and answers["_template"]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_baked_repo_passes_its_own_tests_and_lint(cookies, model_type):
    repo = bake(cookies, model_type=model_type)
    # make test-all's whole suite; the detection suite alone took 15 min on CI's 2 loaded cores
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=repo, timeout=2700)
    run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=repo)
    run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=repo)  # the runtime as this variant ships it


@pytest.mark.slow
def test_a_repo_baked_with_its_own_config_passes_its_own_tests(cookies):
    """The generated tests must not depend on the default config: users bring their own."""
    config = ('<View><Text name="review" value="$body"/><Choices name="verdict" toName="review">'
              '<Choice value="Keep"/><Choice value="Drop"/></Choices></View>')
    repo = bake(cookies, label_config=config)
    # the fast tier (make test): the whole suite already ran on this variant in the test above
    run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"], cwd=repo, timeout=1800)


@pytest.mark.parametrize(
    "name",
    ['He said "hi" \\ back', "Ünïcødé Prøject ✓", "it's <b>&amp;</b>", "tab\there"],
)
def test_hostile_project_names_survive_into_toml_and_readme(cookies, name):
    repo = bake(cookies, project_name=name, project_slug="hostile")
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["description"].startswith(name + ":")
    assert name in (repo / "README.md").read_text(encoding="utf-8")
    ET.fromstring((repo / "label_config.xml").read_text(encoding="utf-8"))


def test_label_config_from_a_file_path(cookies, tmp_path):
    config = tmp_path / "mine.xml"
    config.write_text(DEFAULT_CONFIGS["text_classification"].read_text().replace("Neutral", "Mixed"))
    repo = bake(cookies, label_config=str(config))
    assert 'value="Mixed"' in (repo / "label_config.xml").read_text()


def test_label_config_inline(cookies):
    inline = ('<View><Text name="review" value="$review"/><Choices name="stars" toName="review">'
              '<Choice value="Good"/><Choice value="Bad"/></Choices></View>')
    repo = bake(cookies, label_config=inline)
    assert (repo / "label_config.xml").read_text().strip() == inline


BAD_CONFIGS = {
    "malformed XML": ("<View><Text name='t' value='$t'>", "Labeling config is not valid XML"),
    "no object tag": ("<View><Choices name='c' toName='t'><Choice value='a'/><Choice value='b'/></Choices></View>",
                      "Labeling config has no object tag to label"),
    "toName pointing nowhere": (
        ("<View><Text name='t' value='$t'/><Choices name='c' toName='x'><Choice value='a'/><Choice value='b'/>"
         "</Choices></View>"), "Choices 'c' has toName='x' but no object tag has that name"),
    "one label": ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='a'/></Choices></View>",
                  "Choices 'c' needs at least 2 Choice values, has 1"),
    "wrong control": (
        "<View><Text name='t' value='$t'/><Labels name='l' toName='t'><Label value='PER'/></Labels></View>",
        "needs Choices over Text, found Labels over Text"),
    "entities": ("<!DOCTYPE v [<!ENTITY a 'aaaa'>]><View>&a;</View>", "must not contain a DOCTYPE or entities"),
    "missing file": ("no/such/config.xml", "is neither XML nor an existing file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_config_that_does_not_fit_stops_generation_and_leaves_nothing(cookies, capfd, tmpdir, case):
    config, message = BAD_CONFIGS[case]
    result = cookies.bake(extra_context={"label_config": config})
    assert result.exit_code != 0
    err = capfd.readouterr().err
    assert message in err
    assert "A config that works" in err or case in ("malformed XML", "entities", "missing file")
    assert_nothing_left(tmpdir)


@pytest.mark.parametrize(
    "answers, message",
    [
        ({"project_slug": "My Slug"}, "project_slug 'My Slug' is not usable"),
        ({"project_slug": "1backend"}, "project_slug '1backend' is not usable"),
        ({"project_slug": "lsbackend"}, "clashes with a module"),
        ({"port": "99999"}, "port '99999' is not a TCP port"),
        ({"port": "http"}, "port 'http' is not a TCP port"),
        ({"python_version": "2.7"}, "python_version '2.7' is not supported"),
        ({"project_name": " ", "project_slug": "x"}, "project_name is empty"),
    ],
)
def test_bad_answers_are_refused_before_generation(cookies, capfd, tmpdir, answers, message):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert message in capfd.readouterr().err
    assert_nothing_left(tmpdir)


def test_the_template_test_environment_pins_what_baked_repos_pin(cookies):
    """Baked repos are tested with the template's Python: its requirements must match theirs."""
    def pins(path: Path) -> set[str]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return {line.strip().lower() for line in lines if "==" in line and not line.lstrip().startswith("#")}

    repo = bake(cookies, model_type="image_classification")
    template_pins = pins(Path(__file__).resolve().parent.parent / "requirements.txt")
    baked = pins(repo / "requirements.txt") | pins(repo / "requirements-dev.txt") | pins(repo / "requirements-onnx.txt")
    baked |= pins(repo / "requirements-redis.txt")
    baked |= pins(repo / "requirements-s3.txt")
    assert baked <= template_pins


MISMATCH_MESSAGES = {
    ("text_classification", "image_classification"): "needs Choices over Text, found Choices over Image",
    ("text_classification", "ner"): "needs Choices over Text, found Labels over Text",
    ("image_classification", "text_classification"): "needs Choices over Image, found Choices over Text",
    ("image_classification", "ner"): "needs Choices over Image, found Labels over Text",
    ("ner", "text_classification"): "needs Labels over Text, found Choices over Text",
    ("ner", "image_classification"): "needs Labels over Text, found Choices over Image",
    ("object_detection", "image_classification"): "needs RectangleLabels over Image, found Choices over Image",
    ("object_detection", "ner"): "needs RectangleLabels over Image, found Labels over Text",
    ("image_classification", "object_detection"): "needs Choices over Image, found RectangleLabels over Image",
    ("ner", "object_detection"): "needs Labels over Text, found RectangleLabels over Image",
}


@pytest.mark.parametrize("model_type, other", sorted(MISMATCH_MESSAGES))
def test_each_variants_config_is_refused_by_every_other_variant(cookies, capfd, tmpdir, tmp_path, model_type, other):
    config = tmp_path / f"{other}.xml"  # cookiecutter renders answers, so not the template's own path
    config.write_text(DEFAULT_CONFIGS[other].read_text(encoding="utf-8"), encoding="utf-8")
    result = cookies.bake(extra_context={"model_type": model_type, "label_config": str(config)})
    assert result.exit_code != 0
    err = capfd.readouterr().err
    assert f"Labeling config does not fit: {MISMATCH_MESSAGES[model_type, other]}" in err
    assert "A config that works" in err
    assert_nothing_left(tmpdir)


def test_generation_ends_by_printing_the_next_steps(tmp_path):
    """Where the repo is, the command that serves it and the one file to edit, as a newcomer reads them."""
    template = Path(__file__).resolve().parent.parent
    proc = run([sys.executable, "-m", "cookiecutter", str(template), "--no-input", "-o", str(tmp_path),
                "port=9333"], cwd=tmp_path)
    repo = tmp_path / "my-ml-backend"
    assert f"Created {repo}" in proc.stdout and f"cd {repo}" in proc.stdout, proc.stdout
    assert "make run" in proc.stdout and "port 9333" in proc.stdout and "Edit model.py" in proc.stdout
