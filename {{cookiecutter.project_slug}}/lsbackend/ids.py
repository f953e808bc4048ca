"""Label Studio's identifiers, read from what it sends (no storage, no I/O).

The HTTP layer checks ids with these before anything reaches the backend, and
the store uses the same rule, so an id can never name a path outside a project.
"""

from __future__ import annotations

import math
import re

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Label Studio's ids are database integers (PostgreSQL bigint at most): anything outside is not an id.
MAX_ID = 2**63 - 1


def project_key(project: object) -> str:
    """Label Studio's project id from what it sends: ``"5.1795850610"``, ``5`` or ``{"id": 5}``."""
    if isinstance(project, dict):
        project = project.get("id")
    if project is None or project == "":
        return "default"
    if isinstance(project, bool) or (isinstance(project, float) and not math.isfinite(project)):
        # str(True) and str(float("inf")) would pass for an id
        raise ValueError(f"project {project!r} is not a Label Studio project id")
    key = str(project).split(".", 1)[0]
    if not PROJECT_ID.fullmatch(key):  # fullmatch: "5\n" is not project 5
        raise ValueError(f"project {str(project)[:40]!r} is not a Label Studio project id")
    return key


def annotation_id(value: object) -> int | None:
    """``value`` as an annotation id, or None: only a plain integer in Label Studio's id range counts.

    The id names the annotation's file, so create and delete must agree on it:
    ``true`` or ``4300.9`` are not ids (they used to delete annotations 1 and 4300).
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    return None
