"""Validate the answers before anything is generated; fail with one actionable line.

Answers arrive as JSON data (``tojson``), never pasted into code, so quotes,
backslashes and unicode in them cannot break this script. ``model_type`` is checked
by the post-gen hook, which has the variant folders (``_variants/``) at hand.
"""

import json
import re
import sys

ANSWERS = json.loads(r'''{{ {
    "project_name": cookiecutter.project_name,
    "project_slug": cookiecutter.project_slug,
    "port": cookiecutter.port,
    "python_version": cookiecutter.python_version,
} | tojson }}''')

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RESERVED_SLUGS = {"lsbackend", "model", "tests"}


def check_slug(slug: str) -> str | None:
    if not SLUG.match(slug) or len(slug) > 64:
        return (
            f"project_slug {slug!r} is not usable as a folder and image name: use lowercase "
            "letters, digits and single hyphens, starting with a letter (e.g. my-ml-backend)"
        )
    if slug in RESERVED_SLUGS:
        return f"project_slug {slug!r} clashes with a module of the generated repo; pick another"
    return None


def check_port(port: str) -> str | None:
    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
        return f"port {port!r} is not a TCP port: give a number from 1 to 65535 (default 9090)"
    return None


def check_python_version(version: str) -> str | None:
    if version not in PYTHON_VERSIONS:
        return f"python_version {version!r} is not supported; choose one of: {', '.join(PYTHON_VERSIONS)}"
    return None


def problems(answers: dict) -> list[str]:
    found = [
        check_slug(answers["project_slug"]),
        check_port(answers["port"]),
        check_python_version(answers["python_version"]),
    ]
    if not answers["project_name"].strip():
        found.append("project_name is empty: give the backend a name, e.g. 'Sentiment Backend'")
    return [p for p in found if p]


def main() -> int:
    found = problems(ANSWERS)
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
