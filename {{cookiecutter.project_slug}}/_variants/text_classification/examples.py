"""Labeled examples for the tests: sentiment texts with the default config's choices.

``training_set()`` and ``holdout()`` return ``(task data, annotation result)``
pairs in Label Studio's format, so the generic server tests can train any variant.
"""

from __future__ import annotations

POSITIVE = ["I love it", "great product, love it", "wonderful and great", "really love this, excellent",
            "excellent quality, wonderful", "great value, I love the design", "happy with it, excellent"]
NEGATIVE = ["I hate it", "awful, terrible quality", "terrible and broken", "really hate this, awful",
            "broken on arrival, terrible", "awful value, I hate the design", "angry about it, broken"]
HOLDOUT = [("love it, great and wonderful", "Positive"), ("terrible, I hate it, broken", "Negative"),
           ("excellent, I love it", "Positive"), ("awful and broken", "Negative")]


def result(label: str, from_name: str = "sentiment", to_name: str = "text") -> list[dict]:
    return [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}]


def training_set() -> list[tuple[dict, list[dict]]]:
    pairs = [(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]
    pairs.sort(key=lambda p: p[0])  # interleave the labels, so any prefix has both
    return [({"text": text}, result(label)) for text, label in pairs]


def holdout() -> list[tuple[dict, str]]:
    return [({"text": text}, label) for text, label in HOLDOUT]


def predicted_label(prediction: dict) -> str | None:
    """The label a prediction chose, or None for an empty result."""
    result = prediction["result"]
    return result[0]["value"]["choices"][0] if result else None


def uploads() -> dict[str, bytes]:
    """Files the interactive captures (tests/runtime/protocol/predict_interactive_*) name on Label Studio."""
    return {}  # texts are inline


def check_interactive(name: str, interactive: dict, batch: dict) -> None:
    """A classification has one answer per task: an interactive call gets the batch call's prediction."""
    assert interactive["result"] and interactive["result"] == batch["result"], (name, interactive, batch)
