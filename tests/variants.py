"""The variants the template offers, read from their manifests (``_variants/<name>/variant.json``).

Tests parametrize over these instead of keeping their own list, so a new variant
folder with a manifest is baked and tested everywhere without editing a test.
"""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
VARIANTS_DIR = TEMPLATE / "{{cookiecutter.project_slug}}" / "_variants"


def manifests(variants_dir: Path = VARIANTS_DIR) -> dict[str, dict]:
    """Every variant's manifest by variant name (its folder name), in name order."""
    return {
        path.parent.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(variants_dir.glob("*/variant.json"))
    }


MANIFESTS = manifests()
MODEL_TYPES = list(MANIFESTS)


def captures(model_type: str) -> str:
    """The suffix of the captured Label Studio requests this variant answers (``setup_<captures>.json``)."""
    return MANIFESTS[model_type]["captures"]


def default_config(model_type: str) -> Path:
    """The labeling config a repo of this variant is baked with when the user gives none."""
    return VARIANTS_DIR / model_type / MANIFESTS[model_type]["default_config"]
