"""Cold-start predictions from keyword and regex patterns (``PATTERNS_FILE``), for text classification and NER.

Until a project's first training the model has nothing to say; patterns give
the first tasks pre-annotations anyway. ``PATTERNS_FILE`` is a JSONL file, one
pattern per line::

    {"label": "Positive", "keyword": "love it"}
    {"label": "PER", "regex": "\\b(?:Dr|Ms|Mr)\\. [A-Z][a-z]+"}

- ``keyword`` (or Prodigy's phrase form ``"pattern": "love it"``) matches the
  words case-insensitively, as whole words;
- ``regex`` is a Python regular expression, case-sensitive unless it starts
  with ``(?i)``.

With ``<Choices>`` the label with the most matches is predicted (every label
matched, with ``choice="multiple"``), scored ``matches / (all matches + 1)``:
one match scores 0.5, three of one label 0.75. With ``<Labels>`` every match
is a span (overlaps: the longest wins), scored 0.5. Those scores are rules of
thumb, not probabilities: they sit at or below a trained model's confident answers.

Before the first training every prediction carries the patterns' own model
version, ``patterns-<hash of the file>`` (``/setup`` reports it too, so Label
Studio and ``predict --push`` skip tasks already predicted), so Label Studio's
users can tell them apart. Once a trained version
exists the model alone answers, unless ``PATTERNS_MERGE`` is on: then pattern
matches fill what the model left out (a task it chose nothing for; spans that
overlap none of its spans), and such a prediction's version is
``<model version>+patterns-<hash>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .base import INITIAL_VERSION, LabelStudioMLBase
from .label_config import ConfigError, ControlTag, ObjectTag
from .settings import SettingsError

#: The score of a pattern's span (NER): a rule of thumb, below a trained model's confident spans.
SPAN_SCORE = 0.5
EXAMPLE = ('{"label": "Positive", "keyword": "love it"} or {"label": "PER", "regex": "\\\\bDr\\\\. [A-Z][a-z]+"}')
SUPPORTED = ("choices", "labels")


@dataclass(frozen=True)
class Pattern:
    label: str
    regex: re.Pattern
    line: int


def _compile(entry: object, where: str) -> tuple[str, re.Pattern]:
    if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) or not entry["label"]:
        raise SettingsError(f"{where}: each line must be a JSON object with a \"label\", e.g. {EXAMPLE}")
    keyword = entry.get("keyword", entry.get("pattern"))
    if isinstance(keyword, str) and keyword.strip() and "regex" not in entry:
        words = r"\s+".join(re.escape(w) for w in keyword.split())
        return entry["label"], re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)
    if isinstance(entry.get("regex"), str) and entry["regex"] and keyword is None:
        try:
            return entry["label"], re.compile(entry["regex"])
        except re.error as exc:
            raise SettingsError(f"{where}: the regex {entry['regex']!r} does not compile ({exc})") from None
    raise SettingsError(f"{where}: give one non-empty \"keyword\" or \"regex\" (token lists are not supported), "
                        f"e.g. {EXAMPLE}")


class Patterns:
    """The patterns of one file, and the predictions they make for a model's control."""

    def __init__(self, patterns: list[Pattern], version: str) -> None:
        self.patterns = patterns
        self.version = version

    @classmethod
    def load(cls, path: str) -> Patterns:
        """Read ``PATTERNS_FILE``; ``SettingsError`` naming the line and the fix for anything unusable."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise SettingsError(f"PATTERNS_FILE={path!r} cannot be read ({exc.strerror}); point it at a JSONL "
                                "file of patterns, or leave it empty") from None
        patterns = []
        for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            where = f"PATTERNS_FILE={path!r} line {number}"
            try:
                entry = json.loads(line)
            except ValueError:
                raise SettingsError(f"{where} is not JSON; each line is one pattern, e.g. {EXAMPLE}") from None
            label, regex = _compile(entry, where)
            patterns.append(Pattern(label, regex, number))
        if not patterns:
            raise SettingsError(f"PATTERNS_FILE={path!r} holds no patterns; add lines like {EXAMPLE}")
        return cls(patterns, f"patterns-{hashlib.sha256(raw).hexdigest()[:8]}")

    def check(self, control: ControlTag, obj: ObjectTag) -> None:
        """At ``/setup``: refuse a config the patterns cannot fill, or labels it does not have."""
        if control.type.lower() not in SUPPORTED or obj.type.lower() != "text":
            raise ConfigError(f"PATTERNS_FILE needs <Choices> or <Labels> over <Text>, not <{control.type}> "
                              f"over <{obj.type}>", "Patterns match text; unset PATTERNS_FILE for this model.")
        labels = set(control.labels) | {alias for _, alias in control.aliases}
        for pattern in self.patterns:
            if pattern.label not in labels:
                raise ConfigError(f"PATTERNS_FILE line {pattern.line}: label {pattern.label!r} is not in the "
                                  "labeling config", f"Its labels: {', '.join(control.labels)}; fix the pattern "
                                  "or the config.")

    def apply(self, model: LabelStudioMLBase, tasks: list[dict], predictions: list[dict], merge: bool) -> list[dict]:
        """The model's predictions with pattern matches filled in: always before the first training,
        afterwards only with ``merge`` (``PATTERNS_MERGE``)."""
        control, obj = model.control, model.object_tag
        if control.type.lower() not in SUPPORTED or obj.type.lower() != "text":
            return predictions
        untrained = model.model_version == INITIAL_VERSION
        if not untrained and not merge:
            return predictions
        merged = [self._merged(model, task, prediction) for task, prediction in zip(tasks, predictions, strict=True)]
        # before the first training every answer is the patterns' (an empty one too): one version to filter on
        return [{**p, "model_version": self.version} for p in merged] if untrained else merged

    def _merged(self, model: LabelStudioMLBase, task: dict, prediction: dict) -> dict:
        text = model.task_value(task)
        if not isinstance(text, str):
            return prediction
        matches = [(m.start(), m.end(), p.label) for p in self.patterns if p.label in model.labels
                   for m in p.regex.finditer(text) if m.end() > m.start()]
        if not matches:
            return prediction
        if model.control.type.lower() == "choices":
            return prediction if prediction["result"] else self._choices(model, matches)
        return self._spans(model, text, matches, prediction)

    def _choices(self, model: LabelStudioMLBase, matches: list[tuple[int, int, str]]) -> dict:
        counts = Counter(label for _, _, label in matches)
        chosen = sorted(counts, key=counts.__getitem__, reverse=True)
        if not model.multi_label:
            chosen = chosen[:1]
        score = counts[chosen[0]] / (len(matches) + 1)
        stored = [model.choice_result(label, score)["value"]["choices"][0] for label in chosen]
        return {"result": [model.result_item({"choices": stored}, score)], "score": score,
                "model_version": self.version}

    def _spans(self, model: LabelStudioMLBase, text: str, matches: list[tuple[int, int, str]],
               prediction: dict) -> dict:
        taken = [(r["value"]["start"], r["value"]["end"]) for r in prediction["result"]
                 if isinstance(r.get("value", {}).get("start"), int) and isinstance(r["value"].get("end"), int)]
        added = []
        for start, end, label in sorted(matches, key=lambda m: (m[0] - m[1], m[0])):  # longest first
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
                added.append(model.span_result(start, end, text[start:end], label, SPAN_SCORE))
        if not added:
            return prediction
        added.sort(key=lambda r: r["value"]["start"])
        if not prediction["result"]:
            return {"result": added, "score": SPAN_SCORE, "model_version": self.version}
        version = f"{prediction.get('model_version', model.model_version)}+{self.version}"
        return {**prediction, "result": prediction["result"] + added, "model_version": version}
