"""Text spans as annotations store them, placed back in the task's text.

Label Studio stores a span's ``start``/``end`` as Python string indices (code points) and its
``text``. Old exports and normalised line breaks can make the two disagree; the quoted text is
then the better witness, so the span moves to its nearest exact occurrence.
"""

from __future__ import annotations


def align_span(text: str, start: int, end: int, quoted: str | None) -> tuple[int, int] | None:
    """The span's offsets in ``text``, moved to the nearest occurrence of ``quoted`` if they disagree."""
    in_range = 0 <= start < end <= len(text)
    if not quoted or (in_range and text[start:end] == quoted):
        return (start, end) if in_range else None
    found, at = [], text.find(quoted)
    while at != -1:
        found.append(at)
        at = text.find(quoted, at + 1)
    if not found:
        return None
    best = min(found, key=lambda pos: abs(pos - start))
    return best, best + len(quoted)
