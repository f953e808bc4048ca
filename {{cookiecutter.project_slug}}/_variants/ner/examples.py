"""Labeled examples for the tests: sentences with people, organisations and places.

Sentences are written with inline marks, ``[Alice Smith|PER] works at [Acme Corp|ORG]``,
and turned into Label Studio's format: ``training_set()`` gives ``(task data,
annotation result)`` pairs with character offsets, so the generic server tests
can train any variant; ``holdout()`` gives ``(task data, expected spans)``.
"""

from __future__ import annotations

import re

MARK = re.compile(r"\[([^\]|]+)\|([A-Z]+)\]")

TRAINING = [
    "[Alice Smith|PER] works at [Acme Corp|ORG] in [Paris|LOC].",
    "[Bob Jones|PER] lives in [Berlin|LOC].",
    "[Carla Diaz|PER] joined [Globex|ORG] last year.",
    "Yesterday [David Brown|PER] flew to [Madrid|LOC] for [Initech|ORG].",
    "The office of [Acme Corp|ORG] in [London|LOC] is closed.",
    "[Eva Müller|PER] met [Frank Lee|PER] in [Zürich|LOC] on Monday.",
    "Shares of [Globex|ORG] rose after the report.",
    "We visited [Rome|LOC] and [Vienna|LOC] in May.",
    "[Hannah Kim|PER] is the new head of [Initech|ORG].",
    "[Umbrella Labs|ORG] opened a branch in [Oslo|LOC].",
    "According to [Bob Jones|PER], the meeting moved to [Paris|LOC].",
    "[Ivan Petrov|PER] said that [Acme Corp|ORG] will hire.",
    "Rain is expected in [Berlin|LOC] tomorrow.",
    "The team from [Umbrella Labs|ORG] arrived late.",
    "Later, [Alice Smith|PER] called [Carla Diaz|PER].",
    "[Madrid|LOC] hosted the conference of [Globex|ORG].",
    "[Frank Lee|PER] works at [Umbrella Labs|ORG] in [Oslo|LOC].",
    "[Hannah Kim|PER] lives in [London|LOC] with her cat.",
    "The contract between [Initech|ORG] and [Acme Corp|ORG] expired.",
    "Tomorrow [Eva Müller|PER] flies to [Rome|LOC].",
    "[David Brown|PER] joined [Umbrella Labs|ORG] in [Vienna|LOC].",
    "[Ivan Petrov|PER] moved to [Zürich|LOC] last week.",
]

HOLDOUT = [
    "[Carla Diaz|PER] works at [Initech|ORG] in [Vienna|LOC].",
    "[Frank Lee|PER] lives in [Madrid|LOC].",
    "Yesterday [Hannah Kim|PER] flew to [Oslo|LOC] for [Globex|ORG].",
    "The weather was nice all week.",
]


def parse(marked: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Plain text and its ``(start, end, label)`` spans from a sentence with inline marks."""
    text, spans, at = "", [], 0
    for match in MARK.finditer(marked):
        text += marked[at : match.start()]
        spans.append((len(text), len(text) + len(match[1]), match[2]))
        text += match[1]
        at = match.end()
    return text + marked[at:], spans


def result(text: str, spans: list[tuple[int, int, str]], from_name: str = "label", to_name: str = "text") -> list[dict]:
    """An annotation result marking ``spans`` of ``text``, as Label Studio sends it."""
    return [
        {
            "from_name": from_name,
            "to_name": to_name,
            "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
        }
        for start, end, label in spans
    ]


def training_set() -> list[tuple[dict, list[dict]]]:
    pairs = []
    for marked in TRAINING:
        text, spans = parse(marked)
        pairs.append(({"text": text}, result(text, spans)))
    return pairs


def holdout() -> list[tuple[dict, tuple[tuple[str, str], ...]]]:
    pairs = []
    for marked in HOLDOUT:
        text, spans = parse(marked)
        pairs.append(({"text": text}, tuple((text[s:e], label) for s, e, label in spans)))
    return pairs


def predicted_label(prediction: dict) -> tuple[tuple[str, str], ...]:
    """The ``(text, label)`` entities a prediction marked, in text order (empty for no entities)."""
    items = sorted(prediction["result"], key=lambda item: item["value"]["start"])
    return tuple((item["value"]["text"], item["value"]["labels"][0]) for item in items)


def uploads() -> dict[str, bytes]:
    """Files the interactive captures (tests/runtime/protocol/predict_interactive_*) name on Label Studio."""
    return {}  # texts are inline


def check_interactive(name: str, interactive: dict, batch: dict) -> None:
    """After the annotator labeled "Acme Corp" as ORG: its other whole-word occurrence is proposed (not
    the differently cased "ACME CORP"), with the model's other ORG entities, and no other label."""
    found = predicted_label(interactive)
    assert [entity for entity in found if entity[0] == "Acme Corp"] == [("Acme Corp", "ORG")], (name, found)
    assert ("Globex", "ORG") in found and {label for _, label in found} == {"ORG"}, (name, found)
    assert ("Alice Smith", "PER") in predicted_label(batch), batch  # the batch call marks every label
