"""Finish the generated repo: write and check the labeling config, keep only the chosen variant.

The config check is the generated runtime's own ``lsbackend/label_config.py``,
loaded from the freshly generated folder, so the hook, the server's
``/setup`` and ``python -m lsbackend check`` can never disagree. On any
failure this script exits non-zero and cookiecutter removes the whole folder.
"""

import importlib.util
import json
import os
import shutil
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
    "_output_dir": cookiecutter._output_dir,
} | tojson }}''')

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


def write_label_config(variant: Path) -> str:
    text, source = read_label_config(ANSWERS["label_config"], variant / "label_config.xml")
    checker = load_checker()
    try:
        checker.check_fit(text, ANSWERS["model_type"])
    except checker.ConfigError as exc:
        raise HookError(f"{source} does not fit model_type {ANSWERS['model_type']}: {exc.explain()}") from None
    Path("label_config.xml").write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return text


def install_variant(variant: Path) -> None:
    """Move the chosen model and its tests into place."""
    shutil.move(str(variant / "model.py"), "model.py")
    for name in ("test_model.py", "examples.py"):
        shutil.move(str(variant / name), str(Path("tests") / name))


def remove_media_resolver() -> None:
    """Only the image model downloads task data or runs ONNX networks; the others need neither."""
    if ANSWERS["model_type"] != "image_classification":
        Path("lsbackend", "media.py").unlink()
        Path("lsbackend", "onnx_model.py").unlink()
        Path("tests", "test_media.py").unlink()
        Path("requirements-onnx.txt").unlink()


def remove_variants() -> None:
    shutil.rmtree(VARIANTS)


def record_answers(config_text: str) -> None:
    """Keep the answers so the repo can be updated from a newer template (cruft, cookiecutter replay)."""
    answers = {k: v for k, v in ANSWERS.items() if k != "_output_dir"}
    answers["label_config"] = config_text
    Path(".cookiecutter.json").write_text(json.dumps(answers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> int:
    variant = VARIANTS / ANSWERS["model_type"]
    try:
        config_text = write_label_config(variant)
    except HookError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    install_variant(variant)
    remove_media_resolver()
    remove_variants()
    record_answers(config_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
