"""The template's own README is a newcomer's page: short, and every link it gives leads somewhere.

Reference material and benchmark narratives live in ``docs/``; this test follows the README's
links (and the docs' links to each other) so a moved or renamed page breaks here, not for a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def local_links(page: Path) -> list[Path]:
    """Every relative link of a Markdown page, resolved against its folder (web links left out)."""
    return [(page.parent / target).resolve() for target in LINK.findall(page.read_text(encoding="utf-8"))
            if not re.match(r"[a-z]+:", target)]


def test_readme_stays_a_short_front_page():
    lines = (TEMPLATE / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move reference and benchmark text to docs/"


def test_every_local_link_of_the_readme_and_docs_exists():
    pages = [TEMPLATE / "README.md", *sorted((TEMPLATE / "docs").glob("*.md"))]
    missing = [f"{page.name} -> {link}" for page in pages for link in local_links(page) if not link.exists()]
    assert missing == [], f"links to files that do not exist: {missing}"


def test_every_docs_page_is_reachable_from_the_readme():
    linked = set(local_links(TEMPLATE / "README.md"))
    orphans = [p.name for p in sorted((TEMPLATE / "docs").glob("*.md")) if p.resolve() not in linked]
    assert orphans == [], f"docs pages the README never links: {orphans}"
