"""Seeded product reviews that mention one to three aspects, for ``<Choices choice="multiple">``.

Measures the text variant baked with a multi-label config: every aspect the
review talks about is a label (Battery, Screen, Price, Delivery, Sound). Not
trivial on purpose: aspects are named by several words each, sentences share
opinion words and fillers, a few words carry typos, and 10% of the TRAINING
annotations miss one of the aspects or add a wrong one (the held-out truth
stays clean), as hurried annotators do.
"""

from __future__ import annotations

import random

METRIC = "F1 (micro)"
VARIANT = "text_classification"
ASPECTS = {
    "Battery": ["battery", "charge", "charging", "battery life", "power"],
    "Screen": ["screen", "display", "pixels", "brightness", "touchscreen"],
    "Price": ["price", "cost", "value for money", "deal", "discount"],
    "Delivery": ["delivery", "shipping", "courier", "package", "parcel"],
    "Sound": ["sound", "speaker", "audio", "volume", "bass"],
}
OPINIONS = ["great", "awful", "fine", "disappointing", "impressive", "okay", "terrible", "excellent"]
FILLERS = ["", "honestly,", "after a week,", "overall", "I think", "to be fair,"]
LABEL_NOISE = 0.10
TYPO_RATE = 0.04

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="aspects" toName="text" choice="multiple">
""" + "".join(f'    <Choice value="{label}"/>\n' for label in ASPECTS) + """  </Choices>
</View>
"""


def review(rng: random.Random) -> tuple[str, list[str]]:
    """One review and the aspects it mentions, in config order."""
    aspects = rng.sample(list(ASPECTS), rng.choice([1, 1, 2, 2, 3]))
    clauses = [f"the {rng.choice(ASPECTS[a])} is {rng.choice(OPINIONS)}" for a in aspects]
    text = " ".join(w for w in (rng.choice(FILLERS), ", and ".join(clauses)) if w) + "."
    words = [w[:c] + w[c + 1 :] if len(w) > 3 and rng.random() < TYPO_RATE else w
             for w, c in ((w, rng.randrange(len(w))) for w in text.split(" "))]
    return " ".join(words), [a for a in ASPECTS if a in aspects]


def result(labels: list[str]) -> list[dict]:
    return [{"from_name": "aspects", "to_name": "text", "type": "choices", "value": {"choices": labels}}]


def make(n_train: int, n_test: int, seed: int) -> tuple[list[tuple[dict, list[dict]]], list[tuple[dict, list[str]]]]:
    """``n_train`` annotated reviews (with label noise) and ``n_test`` held-out ``(data, true aspects)`` pairs."""
    rng = random.Random(seed)
    train = []
    for _ in range(n_train):
        text, labels = review(rng)
        if rng.random() < LABEL_NOISE:
            flipped = rng.choice(list(ASPECTS))  # a hurried annotator misses it, or adds it
            labels = [a for a in ASPECTS if (a in labels) != (a == flipped)] or labels
        train.append(({"text": text}, result(labels)))
    test = [({"text": text}, labels) for text, labels in (review(rng) for _ in range(n_test))]
    return train, test


def score(predictions: list[dict], truths: list[list[str]]) -> dict[str, float]:
    """Micro-averaged F1 over (task, label) pairs, and the share of tasks whose label set is exactly right."""
    chosen = [set(p["result"][0]["value"]["choices"]) if p["result"] else set() for p in predictions]
    true_sets = [set(t) for t in truths]
    hits = sum(len(c & t) for c, t in zip(chosen, true_sets, strict=True))
    predicted, actual = sum(map(len, chosen)), sum(map(len, true_sets))
    f1 = 2 * hits / (predicted + actual) if predicted + actual else 1.0
    exact = sum(c == t for c, t in zip(chosen, true_sets, strict=True)) / len(truths)
    return {METRIC: f1, "exact match": exact}
