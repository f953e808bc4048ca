"""Finish the generated repo: write and check the labeling config, keep only the chosen variant.

Everything about a variant comes from its manifest, ``_variants/<model_type>/variant.json``
(the template's docs/adding-a-variant.md describes the fields), so this hook names no
variant: a new one is a new folder with its manifest.

The config check is the generated runtime's own ``lsbackend/label_config.py``,
loaded from the freshly generated folder, so the hook, the server's
``/setup`` and ``python -m lsbackend check`` can never disagree. On any
failure this script exits non-zero and cookiecutter removes the whole folder.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads(r'''{{ {
    "project_name": cookiecutter.project_name,
    "project_slug": cookiecutter.project_slug,
    "model_type": cookiecutter.model_type,
    "label_config": cookiecutter.label_config,
    "port": cookiecutter.port,
    "python_version": cookiecutter.python_version,
    "_template": cookiecutter._template,
    "_commit": cookiecutter.get("_commit", ""),
    "_repo_dir": cookiecutter.get("_repo_dir", ""),
    "_output_dir": cookiecutter.get("_output_dir", ""),
} | tojson }}''')
# cruft (create, update) renders the template itself: it gives _commit, and no _output_dir.
UNDER_CRUFT = bool(ANSWERS["_commit"]) and not ANSWERS["_output_dir"]
# The files the user rewrites: `cruft update` leaves them alone (.cruft.json "skip"); the rest is the template's.
USERS_FILES = ("model.py", "tests/test_model.py")
# What `cookiecutter gh:...` and friends expand to; cruft (git) needs the expanded URL.
ABBREVIATIONS = {"gh:": "https://github.com/{}.git", "gl:": "https://gitlab.com/{}.git", "bb:": "https://bitbucket.org/{}"}
# Written when the template came from a folder that is not a git checkout; the README says what to fill in.
TEMPLATE_PLACEHOLDER = "FILL-IN: git URL of ls-ml-template (baked from a folder that is not a git checkout)"

VARIANTS = Path("_variants")


class HookError(Exception):
    """Generation cannot go on; the message says why and what to do."""


def load_checker():
    """The generated runtime's config checker, loaded by path (it is standard-library only)."""
    path = Path("lsbackend") / "label_config.py"
    spec = importlib.util.spec_from_file_location("generated_label_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_label_config(answer: str, default: Path) -> tuple[str, str]:
    """The config text and where it came from: inline XML, a file path, or the default."""
    answer = answer.strip()
    if not answer:
        return default.read_text(encoding="utf-8"), "the default config"
    if answer.startswith("<"):
        return answer, "the inline config"
    path = Path(os.path.expanduser(answer))
    candidates = [path] if path.is_absolute() else [Path(ANSWERS["_output_dir"]) / path, Path(os.environ.get("PWD", ".")) / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8"), str(candidate)
    raise HookError(
        f"label_config {answer!r} is neither XML nor an existing file; give a path to an XML file, "
        "inline XML starting with '<', or leave it empty for the default"
    )


def load_manifest(model_type: str) -> dict:
    """The chosen variant's manifest; an unknown model_type names the ones there are."""
    known = sorted(path.parent.name for path in VARIANTS.glob("*/variant.json"))
    if model_type not in known:
        raise HookError(f"model_type {model_type!r} is unknown; choose one of: {', '.join(known)}")
    return json.loads((VARIANTS / model_type / "variant.json").read_text(encoding="utf-8"))


def write_label_config(variant: Path, manifest: dict) -> str:
    """Check the user's config (or the variant's default) with the runtime's checker and write it."""
    text, source = read_label_config(ANSWERS["label_config"], variant / manifest["default_config"])
    checker = load_checker()
    try:
        checker.check_fit(text, manifest["config_check"])
    except checker.ConfigError as exc:
        raise HookError(f"{source} does not fit model_type {ANSWERS['model_type']}: {exc.explain()}") from None
    Path("label_config.xml").write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return text


def install_variant(variant: Path, manifest: dict) -> None:
    """Move the chosen model, its tests and its manifest to where the manifest says."""
    for source, target in manifest["install"].items():
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(variant / source), target)


def remove_unused_optional_files(manifest: dict) -> None:
    """Drop runtime files only other variants need (e.g. the image resolver for a text model)."""
    optional = {name for path in VARIANTS.glob("*/variant.json")
                for name in json.loads(path.read_text(encoding="utf-8"))["optional_files"]}
    for name in sorted(optional - set(manifest["optional_files"])):
        Path(name).unlink()


def add_requirements(manifest: dict) -> None:
    """Append the variant's own pinned libraries to the shared requirements.txt."""
    if manifest["requirements"]:
        with Path("requirements.txt").open("a", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in manifest["requirements"]))


def remove_variants() -> None:
    shutil.rmtree(VARIANTS)


def _git(folder: Path, *args: str) -> str:
    """A git answer about ``folder``, or "" when git or the repository is not there."""
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], check=False, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _template_folder() -> Path:
    """The template folder cookiecutter rendered, made absolute against the user's shell directory."""
    folder = Path(os.path.expanduser(ANSWERS["_repo_dir"] or ANSWERS["_template"]))
    return folder if folder.is_absolute() else Path(os.environ.get("PWD", ".")) / folder


def template_source() -> tuple[str, str]:
    """Where the template can be fetched again later, and the commit it was at.

    A git URL (or gh:/gl:/bb: shorthand) is kept; a local git checkout is
    replaced by its ``origin`` remote (or its absolute path when it has none),
    since the path the user typed (often ``.``) means nothing later. Anything
    else gets a placeholder the README tells the user to fill in.
    """
    given = ANSWERS["_template"]
    if UNDER_CRUFT:  # cruft already resolved it, and must see the same value on every re-render
        return given, ANSWERS["_commit"]
    for prefix, url in ABBREVIATIONS.items():
        if given.startswith(prefix):
            given = url.format(given[len(prefix):])
    folder = _template_folder()
    commit = _git(folder, "rev-parse", "HEAD")
    if "://" in given or given.startswith("git@"):
        return given, commit
    if _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return TEMPLATE_PLACEHOLDER, ""
    origin = _git(folder, "remote", "get-url", "origin")
    return origin or str(Path(_git(folder, "rev-parse", "--show-toplevel")).resolve()), commit


def record_answers(config_text: str) -> None:
    """Keep the answers, and where the template came from, so the repo can take template updates.

    ``.cookiecutter.json`` holds them for people; ``.cruft.json`` (cruft's own
    format) lets ``cruft update`` run with no linking step. Under cruft, cruft
    writes ``.cruft.json`` itself, so it is left alone.
    """
    template, commit = template_source()
    answers = {k: v for k, v in ANSWERS.items() if not k.startswith("_")}
    answers["label_config"] = config_text  # the text, not a path that will not exist later
    recorded = {**answers, "_template": template, "_commit": commit}
    Path(".cookiecutter.json").write_text(json.dumps(recorded, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if UNDER_CRUFT:
        return
    cruft_state = {"template": template, "commit": commit, "checkout": None,
                   "context": {"cookiecutter": recorded}, "directory": None, "skip": list(USERS_FILES)}
    Path(".cruft.json").write_text(json.dumps(cruft_state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def next_steps() -> str:
    """What a user does next, printed when generation succeeded: where the repo is, how to run it, what to edit."""
    where = Path.cwd()
    return (
        f"\nCreated {where}\n"
        "Next steps (they need python3 3.11+ and make):\n"
        f"  cd {where}\n"
        f"  make run      # installs into .venv and serves on port {ANSWERS['port']}\n"
        "  make test     # the fast tests and ruff; make test-all runs everything\n"
        "Edit model.py (your model); README.md says how to connect Label Studio.\n"
    )


def main() -> int:
    variant = VARIANTS / ANSWERS["model_type"]
    try:
        manifest = load_manifest(ANSWERS["model_type"])
        config_text = write_label_config(variant, manifest)
    except HookError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    install_variant(variant, manifest)
    remove_unused_optional_files(manifest)
    add_requirements(manifest)
    remove_variants()
    record_answers(config_text)
    if not UNDER_CRUFT:  # cruft renders into a temporary folder: no next steps to show there
        print(next_steps())
    return 0


if __name__ == "__main__":
    sys.exit(main())
