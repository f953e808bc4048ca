"""The held-out slice each version is scored on, and the rule that decides whether a new version is served.

The held-out slice: a task is held out when a hash of its id falls below the
fraction (``held_out_position``). The hash never changes, so a task held out
from one training is held out from every training with that fraction or a
larger one: two versions are compared on tasks neither was trained on, and
a version is never scored on what it was trained on. Scores come from
``scoring.py``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .base import LabelStudioMLBase
from .scoring import SCORERS, score_model, summary
from .settings import Settings
from .storage import ProjectStore, StorageError

log = logging.getLogger(__name__)


def held_out_position(annotation: dict, salt: str = "") -> float:
    """Where an annotation's task falls in [0, 1): held out when below the held-out fraction.

    By task, not annotation: two annotations of one task must never end on both sides.
    """
    task = annotation["task"] if isinstance(annotation.get("task"), dict) else {}
    key = f"{salt}task:{task.get('id')}" if task.get("id") is not None else f"{salt}annotation:{annotation.get('id')}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def split(annotations: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(trained on, held out): the tasks whose position is below ``fraction`` are held out."""
    held = [a for a in annotations if held_out_position(a) < fraction]
    kept = [a for a in annotations if held_out_position(a) >= fraction]
    return kept, held


def held_out_share(model: LabelStudioMLBase, annotations: int, settings: Settings) -> float:
    """The share of tasks a training holds out: ``EVAL_HOLDOUT`` from ``EVAL_MIN_ANNOTATIONS`` usable
    annotations on, when the model's control can be scored; else 0 (every annotation is trained on)."""
    scorable = model.control.type.lower() in SCORERS
    return settings.eval_holdout if scorable and annotations >= settings.eval_min_annotations else 0.0


def usable(annotations: list[dict]) -> list[dict]:
    """What training and evaluation read: neither cancelled nor empty."""
    return [a for a in annotations if a.get("result") and not a.get("was_cancelled")]


# --- promotion ----------------------------------------------------------------
PROMOTE_RULES = ("not-worse", "always")


@dataclass(frozen=True)
class Review:
    """Whether a new version replaces the served one, why, and the scores that decided it."""

    promote: bool
    reason: str
    candidate: dict | None = None
    previous: dict | None = None
    previous_version: str | None = None

    def status(self, version: str) -> dict:
        """What the training status says about the new ``version`` (``GET /training/<project>``)."""
        found = {"version": version, "promoted": self.promote, "reason": self.reason}
        if self.candidate is not None:
            found["score"] = summary(self.candidate)
        if self.previous is not None:
            found["previous"] = {"version": self.previous_version, **summary(self.previous)}
        return {"promotion": found}


def review(build: Callable[[dict, str], LabelStudioMLBase], output: dict, held_out: list[dict],
           previous: tuple[str, dict, float] | None, rule: str, margin: float) -> Review:
    """Score a new model (``output``) on the held-out slice and decide whether it replaces ``previous``.

    ``previous`` is (version, train_output, the held-out fraction it was trained with); both are
    scored on the tasks neither was trained on. Rule ``always`` promotes whatever the scores say.
    """
    if not held_out:
        return Review(True, "nothing held out to score it on (see EVAL_HOLDOUT, EVAL_MIN_ANNOTATIONS)")
    candidate = stamp(score_model(build(output, "candidate"), held_out), len(held_out))
    if rule == "always":
        return Review(True, "PROMOTE_RULE=always", candidate)
    if previous is None:
        return Review(True, "no trained version served before", candidate)
    version, previous_output, fraction = previous
    common = [a for a in held_out if held_out_position(a) < fraction]
    if not common:
        return Review(True, f"{version} was trained on every annotation: it has no held-out score to beat",
                      candidate)
    mine = candidate if len(common) == len(held_out) else score_model(build(output, "candidate"), common)
    theirs = stamp(score_model(build(previous_output, version), common), len(common))
    gap = theirs["score"] - mine["score"]
    figures = (f"{mine['metric']} {mine['score']:.3f} vs {theirs['score']:.3f} of {version} on {len(common)} "
               f"held-out annotations")
    if gap > margin:
        return Review(False, f"worse than the served version by more than PROMOTE_MARGIN={margin:g}: {figures}; "
                      f"still serving {version}", candidate, theirs, version)
    return Review(True, f"not worse than {version} by more than PROMOTE_MARGIN={margin:g}: {figures}",
                  candidate, theirs, version)


def stamp(report: dict, held_out: int) -> dict:
    """A report with when it was made and on how many held-out annotations."""
    return {**report, "evaluated_at": time.time(), "held_out": held_out}


def record_training(store: ProjectStore, version: str, fraction: float, trained_on: int, verdict: Review) -> None:
    """Remember what a new version was trained with (its held-out share) and its score, for ``evaluate``.

    Only advice: a store that refuses it costs the record, never the training.
    """
    try:
        records = {v: r for v, r in store.evaluations().items() if v in store.versions()}
        record: dict[str, object] = {"held_out": fraction, "trained_on": trained_on, "trained_at": time.time()}
        if verdict.candidate is not None:
            record["evaluation"] = verdict.candidate
        records[version] = record
        store.save_evaluations(records)
    except StorageError as exc:
        log.error("the evaluation of %s was not recorded: %s", version, exc)


def version_scores(store: ProjectStore) -> dict[str, dict]:
    """Each kept version's last evaluation (``GET /versions``, ``/training``): its figures, or why it has none."""
    records = store.evaluations()
    found = {}
    for version in store.versions():
        record = records[version] if isinstance(records.get(version), dict) else {}
        if record.get("evaluation"):
            found[version] = summary(record["evaluation"])
        elif record.get("held_out") == 0:
            found[version] = {"not_scored": "trained on every annotation (nothing held out)"}
    return found
