"""Seeded news-style sentences with people (PER), organisations (ORG) and places (LOC).

Not trivial on purpose: sentences start with capitalised non-entities
("Meanwhile", "Analysts"), months and weekdays are capitalised but no entity,
names are multi-word and non-ASCII, "Jordan" is a person and a place, and about
40% of the names in the held-out set never appear in training, so the model has
to use context and word shape, not just memorise names.
"""

from __future__ import annotations

import random
import re

METRIC = "f1"
SEEN_SHARE = 0.6

FIRST = ["Alice", "Bob", "Carla", "David", "Zoë", "José", "Søren", "Łukasz", "Priya", "Kenji", "Amara", "Liam",
         "Fatima", "Jordan", "Elena", "Marek", "Aiko", "Omar", "Ines", "Tomás"]
LAST = ["Smith", "Jones", "Diaz", "Müller", "Nowak", "Okafor", "Tanaka", "Rossi", "Haddad", "Novak", "Silva",
        "Berg", "Khan", "Lefèvre", "O'Neil", "García"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Northwind Traders", "Blue Harbor Bank", "Stark Industries",
        "Vandelay Imports", "Hooli", "Wayne Enterprises", "Cyberdyne Systems", "Soylent", "Tyrell Group",
        "Pied Piper", "Oceanic Airlines", "Dunder Mifflin"]
PLACES = ["Paris", "Berlin", "New York", "São Paulo", "Zürich", "Cape Town", "Kraków", "Osaka", "Lagos", "Lima",
          "Jordan", "Oslo", "Buenos Aires", "Hanoi", "Montréal", "Reykjavík"]
TIMES = ["on Monday", "last week", "in March", "on Friday", "in June", "this morning", "in October", "on Sunday"]
OPENERS = ["", "", "", "Meanwhile, ", "Yesterday ", "Analysts said ", "According to the report, ", "In a statement, "]

TEMPLATES = [
    "{PER} works at {ORG} in {LOC}.",
    "{PER} joined {ORG} {time}.",
    "{ORG} opened an office in {LOC} {time}.",
    "{PER} flew to {LOC} to meet {PER}.",
    "Shares of {ORG} fell after {PER} resigned.",
    "{PER}, the chief executive of {ORG}, visited {LOC}.",
    "The mayor of {LOC} praised {ORG}.",
    "{ORG} and {ORG} signed a deal {time}.",
    "{PER} was born in {LOC} and lives in {LOC}.",
    "Fans in {LOC} cheered for {PER}.",
    "A spokesperson for {ORG} declined to comment.",
    "{PER} told reporters that {ORG} would hire in {LOC}.",
    "Rain is expected in {LOC} {time}.",
    "The deal makes {ORG} the largest employer in {LOC}.",
    "{PER} met {PER} at the {LOC} office of {ORG}.",
    "Sales at {ORG} grew by ten percent {time}.",
]
SLOT = re.compile(r"\{(PER|ORG|LOC|time)\}")


def _pools(rng: random.Random) -> tuple[dict, dict]:
    """Training and test name pools: training sees SEEN_SHARE of the names, test sees them all."""
    people = sorted({f"{f} {last}" for f in FIRST for last in LAST} | set(FIRST))
    full = {"PER": people, "ORG": ORGS, "LOC": PLACES}
    seen = {k: rng.sample(v, max(1, int(len(v) * SEEN_SHARE))) for k, v in full.items()}
    return seen, full


def sentence(rng: random.Random, pools: dict) -> tuple[str, list[tuple[int, int, str]]]:
    """One sentence and its ``(start, end, label)`` entities."""
    opener, template = rng.choice(OPENERS), rng.choice(TEMPLATES)
    if opener and not template.startswith("{"):
        template = template[0].lower() + template[1:]
    template = opener + template
    text, spans, at = "", [], 0
    for match in SLOT.finditer(template):
        text += template[at : match.start()]
        slot = match[1]
        filler = rng.choice(TIMES) if slot == "time" else rng.choice(pools[slot])
        if slot != "time":
            spans.append((len(text), len(text) + len(filler), slot))
        text += filler
        at = match.end()
    text += template[at:]
    return text[0].upper() + text[1:], spans


def result(text: str, spans: list[tuple[int, int, str]]) -> list[dict]:
    return [
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
        for s, e, label in spans
    ]


def make(n_train: int, n_test: int, seed: int) -> tuple[list[tuple[dict, list[dict]]], list[tuple[dict, set]]]:
    """``n_train`` annotated tasks and ``n_test`` held-out ``(data, {(start, end, label)})`` pairs."""
    rng = random.Random(seed)
    seen, full = _pools(rng)
    train = [({"text": t}, result(t, s)) for t, s in (sentence(rng, seen) for _ in range(n_train))]
    test = [({"text": t}, set(s)) for t, s in (sentence(rng, full) for _ in range(n_test))]
    return train, test


def score(predictions: list[dict], truths: list[set]) -> dict[str, float]:
    """Span-level exact match (same start, end and label): micro precision, recall and F1."""
    true_positives = predicted = gold = 0
    for prediction, truth in zip(predictions, truths, strict=True):
        found = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in prediction["result"]}
        true_positives += len(found & truth)
        predicted += len(found)
        gold += len(truth)
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
