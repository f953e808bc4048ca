"""Seeded product-review sentences for text classification (Positive / Negative / Neutral).

The task is made not trivial on purpose: all classes share subjects and filler
words, negation flips a clause ("not reliable" is Negative), contrast sentences
are decided by the clause after "but", a few words carry typos, and 10% of the
TRAINING labels are flipped at random (the held-out truth stays clean).
"""

from __future__ import annotations

import random

METRIC = "accuracy"
LABEL_NOISE = 0.10
TYPO_RATE = 0.05

SUBJECTS = ["the battery", "the screen", "delivery", "customer service", "the price", "this phone", "the app",
            "the fabric", "the manual", "the charger", "setup", "the sound", "the camera", "the strap"]
WORDS = {
    "Positive": ["great", "excellent", "wonderful", "reliable", "impressive", "fast", "comfortable", "sturdy",
                 "brilliant", "helpful"],
    "Negative": ["awful", "broken", "slow", "disappointing", "flimsy", "useless", "terrible", "noisy",
                 "confusing", "overpriced"],
    "Neutral": ["okay", "average", "fine", "standard", "acceptable", "ordinary", "adequate", "typical"],
}
NEGATED = {"Positive": "Negative", "Negative": "Positive", "Neutral": "Neutral"}
FILLERS = ["", "", "honestly,", "to be fair,", "after two weeks,", "I think", "overall,", "so far,"]
ENDINGS = [".", ".", "!", " for the money.", " if you ask me.", ", as expected."]


def _clause(rng: random.Random, label: str) -> tuple[str, str]:
    """A clause about one subject and the label it expresses (negation may flip it)."""
    if rng.random() < 0.25:
        said = rng.choice(list(WORDS))
        return f"{rng.choice(SUBJECTS)} is not {rng.choice(WORDS[said])}", NEGATED[said]
    return f"{rng.choice(SUBJECTS)} is {rng.choice(WORDS[label])}", label


def _typos(rng: random.Random, sentence: str) -> str:
    words = sentence.split(" ")
    for i, word in enumerate(words):
        if len(word) > 3 and rng.random() < TYPO_RATE:
            cut = rng.randrange(len(word))
            words[i] = word[:cut] + word[cut + 1 :]
    return " ".join(words)


def sentence(rng: random.Random) -> tuple[str, str]:
    """One review sentence and its true label."""
    clause, label = _clause(rng, rng.choice(list(WORDS)))
    if rng.random() < 0.3:  # contrast: the clause after "but" decides
        other, _ = _clause(rng, rng.choice(list(WORDS)))
        clause = f"{other} but {clause}"
    text = " ".join(w for w in (rng.choice(FILLERS), clause) if w) + rng.choice(ENDINGS)
    return _typos(rng, text[0].upper() + text[1:]), label


def result(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def make(n_train: int, n_test: int, seed: int) -> tuple[list[tuple[dict, list[dict]]], list[tuple[dict, str]]]:
    """``n_train`` annotated tasks (with label noise) and ``n_test`` held-out ``(data, true label)`` pairs."""
    rng = random.Random(seed)
    train = []
    for _ in range(n_train):
        text, label = sentence(rng)
        if rng.random() < LABEL_NOISE:
            label = rng.choice(list(WORDS))
        train.append(({"text": text}, result(label)))
    test = [({"text": text}, label) for text, label in (sentence(rng) for _ in range(n_test))]
    return train, test


def score(predictions: list[dict], truths: list[str]) -> dict[str, float]:
    """Accuracy; an empty prediction (untrained model) counts as wrong."""
    chosen = [p["result"][0]["value"]["choices"][0] if p["result"] else None for p in predictions]
    correct = sum(c == t for c, t in zip(chosen, truths, strict=True))
    return {"accuracy": correct / len(truths)}
