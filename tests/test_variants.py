"""One place per variant: its folder and manifest (``_variants/<name>/variant.json``) say everything.

The prompt's choice list must match the folders, every manifest must be complete
and agree with the files it names, and a fourth variant must need nothing but
its folder (plus the prompt line cookiecutter needs).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE, run
from variants import MANIFESTS, MODEL_TYPES, VARIANTS_DIR, captures

GENERATED = TEMPLATE / "{{cookiecutter.project_slug}}"
FIELDS = {"description", "config_check", "captures", "default_config", "install", "optional_files", "requirements"}
CAPTURED_KINDS = ("setup", "predict", "webhook_annotation_created", "webhook_start_training")


def pins(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip().lower() for line in lines if "==" in line and not line.lstrip().startswith("#")}


def cookiecutter_json(template: Path = TEMPLATE) -> dict:
    return json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))


def test_the_prompt_offers_exactly_the_variant_folders_with_their_descriptions():
    answers = cookiecutter_json()
    assert set(answers["model_type"]) == set(MODEL_TYPES), "cookiecutter.json's model_type list != _variants/"
    assert len(answers["model_type"]) == len(MODEL_TYPES)
    # Every folder in _variants/ is a variant: a folder without a manifest would be silently unusable.
    assert sorted(p.name for p in VARIANTS_DIR.iterdir() if p.is_dir()) == MODEL_TYPES
    prompts = answers["__prompts__"]["model_type"]
    assert {t: prompts[t] for t in MODEL_TYPES} == {t: MANIFESTS[t]["description"] for t in MODEL_TYPES}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_manifest_is_complete_and_agrees_with_the_files_it_names(model_type):
    manifest, folder = MANIFESTS[model_type], VARIANTS_DIR / model_type
    assert set(manifest) == FIELDS, f"{model_type}/variant.json fields"
    for source in manifest["install"]:
        assert (folder / source).is_file(), f"{model_type} installs {source}, which its folder lacks"
    # The generated tests find the variant's captures through the installed manifest.
    assert manifest["install"]["variant.json"] == "tests/runtime/variant.json"
    assert (folder / manifest["default_config"]).is_file()
    # The hook checks configs with config_check; the served model checks them with its model_type: the same.
    model_source = (folder / "model.py").read_text(encoding="utf-8")
    assert re.findall(r"^\s+model_type = \"(\w+)\"", model_source, re.MULTILINE) == [manifest["config_check"]]
    for kind in CAPTURED_KINDS:
        assert (GENERATED / "tests" / "runtime" / "protocol" / f"{kind}_{captures(model_type)}.json").is_file(), kind
    for name in manifest["optional_files"]:
        assert (GENERATED / name).is_file(), f"optional file {name} is not in the generated repo"
    for requirement in manifest["requirements"]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", requirement), f"{requirement} is not pinned"
    assert {r.lower() for r in manifest["requirements"]} <= pins(TEMPLATE / "requirements.txt"), (
        "the template's requirements.txt installs what every baked repo needs")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_baking_installs_what_the_manifest_says(cookies, model_type):
    result = cookies.bake(extra_context={"model_type": model_type})
    assert result.exit_code == 0, result.exception
    repo, manifest = Path(result.project_path), MANIFESTS[model_type]
    for source, target in manifest["install"].items():
        assert (repo / target).read_bytes() == (VARIANTS_DIR / model_type / source).read_bytes(), target
    optional = {name for m in MANIFESTS.values() for name in m["optional_files"]}
    assert {name for name in optional if (repo / name).exists()} == set(manifest["optional_files"])
    requirements = (repo / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert requirements[len(requirements) - len(manifest["requirements"]):] == manifest["requirements"]
    assert pins(repo / "requirements.txt") - {r.lower() for r in manifest["requirements"]} == pins(
        GENERATED / "requirements.txt"), "only the chosen variant's requirements are added"
    assert not (repo / "_variants").exists()


def add_variant(template: Path, name: str, like: str, **manifest_changes) -> dict:
    """Add a variant to a template copy the way the README says: copy a folder, edit its manifest, list it."""
    folder = template / "{{cookiecutter.project_slug}}" / "_variants" / name
    shutil.copytree(template / "{{cookiecutter.project_slug}}" / "_variants" / like, folder)
    model = folder / "model.py"
    model.write_text(f"# the {name} variant\n" + model.read_text(encoding="utf-8"), encoding="utf-8")
    manifest = {**json.loads((folder / "variant.json").read_text(encoding="utf-8")), **manifest_changes}
    (folder / "variant.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    answers = cookiecutter_json(template)
    answers["model_type"].append(name)
    answers["__prompts__"]["model_type"][name] = manifest["description"]
    (template / "cookiecutter.json").write_text(json.dumps(answers, indent=2) + "\n", encoding="utf-8")
    return manifest


@pytest.mark.slow
def test_a_fourth_variant_is_one_folder_with_its_manifest(tmp_path):
    from cookiecutter.main import cookiecutter

    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "results"))
    manifest = add_variant(template, "sentiment", like="text_classification",
                           description="Sentiment (a text model of its own)", requirements=["pillow==13.0.0"])
    repo = Path(cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "out"),
                             extra_context={"model_type": "sentiment"}))

    assert (repo / "model.py").read_text(encoding="utf-8").startswith("# the sentiment variant\n")
    assert json.loads((repo / "tests" / "runtime" / "variant.json").read_text(encoding="utf-8")) == manifest
    assert (repo / "requirements.txt").read_text(encoding="utf-8").endswith("\npillow==13.0.0\n")
    assert not (repo / "lsbackend" / "onnx_model.py").exists()  # optional: only the image variant keeps it
    assert not (repo / "_variants").exists()
    assert json.loads((repo / ".cookiecutter.json").read_text(encoding="utf-8"))["model_type"] == "sentiment"
    # The baked repo's own tests run against the new variant, through its captures.
    run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_model.py",
         "tests/runtime/test_server.py"], cwd=repo)
