"""Your model: named-entity recognition with a token classifier (BIO tags, logistic regression).

This is the one file meant for you to edit. The runtime (``lsbackend``) calls:

- ``predict(tasks)`` for pre-annotations: return one prediction per task;
- ``fit(annotations)`` when training runs: return a dict, which is saved and
  handed back to every later model object as ``self.train_output``.

``self.control`` / ``self.object_tag`` are the ``<Labels>`` and ``<Text>`` tags
of the project's labeling config; ``self.labels`` are its labels.

How spans become training data and back (the rules Label Studio users see):

- Text is split into tokens with exact character offsets: runs of letters,
  digits, combining marks and ``_`` are one token; every other non-space
  character (punctuation, emoji) is a token of its own; CJK ideographs and kana
  are one token each (those scripts have no spaces). Whitespace is never part
  of a token, so predicted spans never start or end with whitespace.
- Offsets are Python string indices, i.e. code points, which is what Label
  Studio stores (its frontend counts code points, not UTF-16 units). When an
  annotation's ``text`` does not match ``text[start:end]`` (old exports,
  normalised line breaks), the span is moved to the nearest exact occurrence of
  its ``text``; spans that cannot be placed are left out and counted in the
  training status's ``skipped``.
- A token belongs to an annotated span when they share at least one character,
  so a span cut inside a word covers the whole word.
- Overlapping annotated spans: the longer span wins (ties: the one starting
  first); a span sharing any token with a span already kept is dropped whole.
- Interactive pre-annotation (Label Studio's "Interactive preannotations"): when
  the annotator labels a span, the same text is proposed at every other
  whole-word occurrence in the task (case-sensitive; the ``match_case`` extra
  param set to false also finds other capitalisations), with the trained
  model's own entities of that label; nothing overlapping what is marked.
- Predictions are decoded with the BIO constraints (an ``I-X`` only after
  ``B-X`` or ``I-X``), and each predicted entity is ``text[start:end]`` of its
  first token's start and last token's end, so Label Studio highlights exactly it.
"""

from __future__ import annotations

import bisect
import unicodedata
from typing import Any

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from lsbackend import LabelStudioMLBase
from lsbackend.interaction import Interaction, find_occurrences
from lsbackend.label_config import ConfigError
from lsbackend.media import MediaError

Token = tuple[int, int]  # (start, end) character offsets into the text
Span = tuple[int, int, str]  # (start, end, label)

OUTSIDE = "O"
#: Tokens whose features exist at once while predicting: a long text is classified in pieces of this
#: size (each token's features see two neighbours each side, so pieces give the same answers).
CHUNK_TOKENS = 4096


# --- tokens ---------------------------------------------------------------
def _is_single_char_token(ch: str) -> bool:
    """CJK ideographs and kana: scripts without spaces, so each character is a token."""
    code = ord(ch)
    return 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF


def _is_word_char(ch: str) -> bool:
    return ch == "_" or (unicodedata.category(ch)[0] in "LNM" and not _is_single_char_token(ch))


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, returned as exact ``(start, end)`` offsets."""
    tokens: list[Token] = []
    start = None
    for i, ch in enumerate(text):
        if _is_word_char(ch):
            start = i if start is None else start
            continue
        if start is not None:
            tokens.append((start, i))
            start = None
        if not ch.isspace():
            tokens.append((i, i + 1))
    if start is not None:
        tokens.append((start, len(text)))
    return tokens


# --- spans <-> BIO tags ----------------------------------------------------
def covered_tokens(starts: list[int], ends: list[int], start: int, end: int) -> range:
    """Indices of the tokens (given by their sorted starts and ends) sharing a character with ``[start, end)``."""
    first = bisect.bisect_right(ends, start)
    last = bisect.bisect_left(starts, end)
    return range(first, max(first, last))


def bio_tags(tokens: list[Token], spans: list[Span]) -> list[str]:
    """BIO tags for ``tokens``; overlaps resolved longest-first, then earliest-first."""
    tags = [OUTSIDE] * len(tokens)
    starts, ends = [s for s, _ in tokens], [e for _, e in tokens]
    for start, end, label in sorted(spans, key=lambda s: (s[0] - s[1], s[0])):
        covered = covered_tokens(starts, ends, start, end)
        if not covered or any(tags[i] != OUTSIDE for i in covered):
            continue
        tags[covered[0]] = f"B-{label}"
        for i in covered[1:]:
            tags[i] = f"I-{label}"
    return tags


def tag_spans(tokens: list[Token], tags: list[str]) -> list[tuple[int, int, str]]:
    """Entities of a tag sequence as ``(first token, last token, label)``; a stray ``I-X`` starts one."""
    entities: list[list] = []
    for i, tag in enumerate(tags):
        if tag == OUTSIDE:
            continue
        prefix, label = tag.split("-", 1)
        if prefix == "I" and entities and entities[-1][1] == i - 1 and entities[-1][2] == label:
            entities[-1][1] = i
        else:
            entities.append([i, i, label])
    return [tuple(e) for e in entities]


# --- features ----------------------------------------------------------------
def _shape(word: str) -> str:
    """``Alice`` -> ``Xx``, ``R2-D2`` -> ``Xd-Xd``: capitalisation and digits, repeats collapsed."""
    out = []
    for ch in word:
        kind = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != kind:
            out.append(kind)
    return "".join(out)[:8]


def _word_features(word: str, prefix: str) -> dict[str, Any]:
    return {f"{prefix}w": word.lower(), f"{prefix}shape": _shape(word), f"{prefix}title": word[:1].isupper()}


def token_features(words: list[str]) -> list[dict[str, Any]]:
    """One feature dict per token: the word, its affixes and shape, and a window of two tokens each side."""
    padded = ["<s>", "<s>", *words, "</s>", "</s>"]
    features = []
    for i, word in enumerate(words):
        lower = word.lower()
        f = _word_features(word, "")
        f.update(pre3=lower[:3], suf3=lower[-3:], suf2=lower[-2:], upper=word.isupper(), first=i == 0)
        for offset in (-2, -1, 1, 2):
            f.update(_word_features(padded[i + 2 + offset], f"{offset:+d}:"))
        features.append(f)
    return features


# --- decoding ------------------------------------------------------------------
def allowed_transitions(tags: list[str]) -> np.ndarray:
    """``allowed[prev, cur]``: ``I-X`` may only follow ``B-X`` or ``I-X``."""
    allowed = np.ones((len(tags), len(tags)), dtype=bool)
    for j, cur in enumerate(tags):
        if cur.startswith("I-"):
            label = cur[2:]
            allowed[:, j] = [prev in (f"B-{label}", f"I-{label}") for prev in tags]
    return allowed


def viterbi(log_probs: np.ndarray, allowed: np.ndarray, can_start: np.ndarray) -> list[int]:
    """The most probable tag path that respects the BIO constraints."""
    transition = np.where(allowed, 0.0, -np.inf)
    score = log_probs[0] + np.where(can_start, 0.0, -np.inf)
    back = np.zeros(log_probs.shape, dtype=int)
    for i in range(1, len(log_probs)):
        candidates = score[:, None] + transition
        back[i] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[i]
    path = [int(score.argmax())]
    for i in range(len(log_probs) - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    return path[::-1]


def _overlaps(start: int, end: int, taken: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in taken)


class NamedEntityRecognizer(LabelStudioMLBase):
    """Marks the entities of each task's text with the config's labels."""

    model_type = "ner"

    def setup(self) -> None:
        self.pipeline: Pipeline | None = self.train_output.get("pipeline")
        tags = [str(t) for t in self.pipeline.classes_] if self.pipeline is not None else []
        # Only labels still in the config may be predicted (the config can change).
        self.tag_allowed = np.array([t == OUTSIDE or t[2:] in self.labels for t in tags], dtype=bool)
        self.can_start = self.tag_allowed & np.array([not t.startswith("I-") for t in tags], dtype=bool)
        self.transitions = allowed_transitions(tags) if tags else None

    @classmethod
    def check_extra_params(cls, params: dict) -> None:
        super().check_extra_params(params)
        if "match_case" in params and not isinstance(params["match_case"], bool):
            raise ConfigError("Extra params: match_case must be true or false",
                              f"got {params['match_case']!r}; e.g. {{\"match_case\": false}} also proposes "
                              "ACME CORP where the annotator labeled Acme Corp")

    @property
    def trained(self) -> bool:
        return self.pipeline is not None and bool((self.tag_allowed & (self.pipeline.classes_ != OUTSIDE)).any())

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        interaction = self.interaction(context)
        if interaction is not None and interaction.spans:  # the annotator just labeled a span (one task)
            return [self.propose_spans(task, interaction) for task in tasks]
        if not self.trained:
            self.task_texts(tasks, fetch=False)  # a missing or non-text field still fails the request, by name
            # Not trained yet: an empty result rather than made-up entities.
            return [self.prediction([]) for _ in tasks]
        texts = self.task_texts(tasks)  # with <Text valueType="url">, the text the link points to
        limit = self.settings.max_text_chars
        texts = [ValueError(f"task {task.get('id')}: text is {len(text)} characters, over the {limit} limit; "
                            "split the task or raise MAX_TEXT_CHARS") if isinstance(text, str) and len(text) > limit
                 else text for task, text in zip(tasks, texts, strict=True)]
        return self.predictions_for(tasks, texts, self._predict_texts)  # a failed task gets its reason

    # --- interactive: "label every other occurrence" ---------------------------------------------------
    def propose_spans(self, task: dict, interaction: Interaction) -> dict:
        """Suggestions after the annotator labeled spans: each span's text at every other whole-word
        occurrence (case-sensitive unless the ``match_case`` extra param is false), then the model's
        own entities with those labels; nothing overlapping a span already marked or proposed."""
        text = self.task_texts([task])[0]
        if isinstance(text, MediaError):
            return self.failed_task(task, text)
        marked = [(r.start, r.end) for r in interaction.spans]
        labeled = [(r, self.label_of(r.label)) for r in interaction.spans if r.from_name in ("", self.control.name)]
        labels = {label for _, label in labeled if label is not None}
        match_case = self.extra_params.get("match_case", True)
        results = []
        for region, label in labeled:
            if label is None:  # a label this config does not have
                continue
            phrase = region.text if region.text is not None else text[region.start : region.end]
            for start, end in find_occurrences(text, phrase, match_case):
                if not _overlaps(start, end, marked):
                    marked.append((start, end))
                    results.append(self.span_result(start, end, text[start:end], label, 1.0))
        for item in self._entities(task, text):
            value = item["value"]
            if self.label_of(value["labels"][0]) in labels and not _overlaps(value["start"], value["end"], marked):
                marked.append((value["start"], value["end"]))
                results.append(item)
        return self.prediction(results, float(np.mean([r["score"] for r in results])) if results else 0.0)

    def _entities(self, task: dict, text: str) -> list[dict]:
        """The model's entities in ``text``, computed once per task while the annotator clicks on it."""
        if not self.trained or len(text) > self.settings.max_text_chars:
            return []
        key = ("entities", task.get("id"), hash(text))
        return self.task_cache.get_or_compute(key, lambda: self._predict_texts([text])[0]["result"])

    def _predict_texts(self, texts: list[str]) -> list[dict]:
        """One prediction per text. Tokens are classified in batches of about CHUNK_TOKENS (a long text in
        pieces, short texts together), so memory stays bounded however long or many the texts are."""
        tokens = [tokenize(text) for text in texts]
        pieces = [(i, start, min(start + CHUNK_TOKENS, len(tokens[i])))
                  for i in range(len(texts)) for start in range(0, len(tokens[i]), CHUNK_TOKENS)]
        probabilities: list[list[np.ndarray]] = [[] for _ in texts]  # per text, its pieces' rows
        batch, size = [], 0
        for n, (i, start, end) in enumerate(pieces):
            batch.append((i, start, end))
            size += end - start
            if size >= CHUNK_TOKENS or n == len(pieces) - 1:
                features = [f for i, start, end in batch for f in self._features(texts[i], tokens[i], start, end)]
                rows = self.pipeline.predict_proba(features)
                for i, start, end in batch:
                    probabilities[i].append(rows[: end - start])
                    rows = rows[end - start :]
                batch, size = [], 0
        return [self._prediction(text, text_tokens, np.concatenate(rows) if rows else None)
                for text, text_tokens, rows in zip(texts, tokens, probabilities, strict=True)]

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        features, tags, trained_on = [], [], 0
        texts = self.annotation_texts(annotations, self.settings.max_text_chars)  # None: skipped, saying why
        for annotation, text in zip(annotations, texts, strict=True):
            if text is None:
                continue
            spans = self.annotation_spans(annotation, text)  # bad spans skipped, saying why
            if not spans:  # its result has only unusable spans: training it as "no entities" would teach wrong
                self.skip(annotation, f"no usable span of <Labels name={self.control.name!r}>")
                continue
            tokens = tokenize(text)
            features.extend(self._features(text, tokens))
            tags.extend(bio_tags(tokens, spans))
            trained_on += 1
        if set(tags) <= {OUTSIDE} or OUTSIDE not in tags:
            raise ValueError(
                "training needs annotations that mark at least one entity with a label of the config "
                f"({', '.join(self.labels)}) and leave some words unmarked; got {len(annotations)} annotations "
                "without such spans"
            )
        pipeline = make_pipeline(DictVectorizer(), LogisticRegression(max_iter=2000, C=10.0))
        pipeline.fit(features, tags)
        return {"pipeline": pipeline, "trained_on": trained_on}

    def _prediction(self, text: str, tokens: list[Token], probabilities: np.ndarray | None) -> dict:
        if not tokens:
            return self.prediction([], 1.0)
        log_probs = np.log(np.clip(probabilities, 1e-12, 1.0))
        log_probs[:, ~self.tag_allowed] = -np.inf
        path = viterbi(log_probs, self.transitions, self.can_start)
        tags = [str(self.pipeline.classes_[j]) for j in path]
        chosen = probabilities[np.arange(len(path)), path]
        results = []
        for first, last, label in tag_spans(tokens, tags):
            start, end = tokens[first][0], tokens[last][1]
            score = float(chosen[first : last + 1].mean())
            if score >= self.score_threshold:  # extra_params from Label Studio's Connect dialog
                results.append(self.span_result(start, end, text[start:end], label, score))
        scores = [r["score"] for r in results] or chosen.tolist()
        return self.prediction(results, float(np.mean(scores)))

    def _features(self, text: str, tokens: list[Token], start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        """Features of ``tokens[start:end]``; their two neighbours each side are read, so pieces match the whole."""
        end = len(tokens) if end is None else end
        low, high = max(0, start - 2), min(len(tokens), end + 2)
        features = token_features([text[s:e] for s, e in tokens[low:high]])
        return features[start - low : start - low + (end - start)]
