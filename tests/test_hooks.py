"""The hooks as units: answers arrive as data, and each check names the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import render_hook

ANSWERS = {
    "project_name": "Name",
    "project_slug": "name",
    "model_type": "text_classification",
    "label_config": "",
    "port": "9090",
    "python_version": "3.12",
    "_template": ".",
    "_output_dir": "/nonexistent",
}


@pytest.mark.parametrize("name", ["''' + __import__('os').system('false') + '''", '"""', "\\", "{{ 7*7 }}"])
def test_answers_reach_the_hooks_as_data_never_as_code(tmp_path, name):
    hook = render_hook("pre_gen_project", {**ANSWERS, "project_name": name}, tmp_path)
    assert hook.ANSWERS["project_name"] == name


def test_pre_gen_accepts_the_defaults(tmp_path):
    assert render_hook("pre_gen_project", ANSWERS, tmp_path).problems(ANSWERS) == []


def test_pre_gen_reports_every_problem_at_once(tmp_path):
    hook = render_hook("pre_gen_project", ANSWERS, tmp_path)
    found = hook.problems({**ANSWERS, "project_slug": "Bad Slug", "port": "0", "python_version": "2.7"})
    assert len(found) == 3
    assert any("python_version '2.7' is not supported" in p for p in found)


def test_post_gen_refuses_a_model_type_without_a_variant_folder_and_names_those_there_are(tmp_path, monkeypatch):
    for name in ("beta", "alpha"):
        (tmp_path / "_variants" / name).mkdir(parents=True)
        (tmp_path / "_variants" / name / "variant.json").write_text('{"captures": "text"}')
    (tmp_path / "_variants" / "half-done").mkdir()  # a folder without a manifest is no variant
    hook = render_hook("post_gen_project", ANSWERS, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert hook.load_manifest("alpha") == {"captures": "text"}
    for unknown in ("speech", "half-done", "../_variants/alpha"):
        with pytest.raises(hook.HookError, match=rf"model_type '{re.escape(unknown)}' is unknown; choose one of: alpha, beta$"):
            hook.load_manifest(unknown)


def test_post_gen_resolves_a_relative_config_path_from_where_cookiecutter_ran(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "c.xml").write_text("<View/>")
    hook = render_hook("post_gen_project", {**ANSWERS, "_output_dir": str(tmp_path)}, tmp_path)
    monkeypatch.chdir(tmp_path / "configs")  # the hook runs inside the new project, not where the user is
    text, source = hook.read_label_config("configs/c.xml", Path("unused"))
    assert text == "<View/>" and source == str(tmp_path / "configs" / "c.xml")


def test_post_gen_takes_inline_xml_as_is(tmp_path):
    hook = render_hook("post_gen_project", ANSWERS, tmp_path)
    assert hook.read_label_config("  <View/> ", Path("unused")) == ("<View/>", "the inline config")
