"""Label Studio's identifiers, read from what it sends (no storage, no I/O).

The HTTP layer checks ids with these before anything reaches the backend, and
the store uses the same rule, so an id can never name a path outside a project.
"""

from __future__ import annotations

import re

PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def project_key(project: object) -> str:
    """Label Studio's project id from what it sends: ``"5.1795850610"``, ``5`` or ``{"id": 5}``."""
    if isinstance(project, dict):
        project = project.get("id")
    if project is None or project == "":
        return "default"
    if isinstance(project, bool):  # str(True) would pass for an id
        raise ValueError(f"project {project!r} is not a Label Studio project id")
    key = str(project).split(".", 1)[0]
    if not PROJECT_ID.match(key):
        raise ValueError(f"project {str(project)[:40]!r} is not a Label Studio project id")
    return key
