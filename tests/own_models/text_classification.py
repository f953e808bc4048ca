"""A user's own model: text classification by keywords learned from the annotations, no ML library."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lsbackend import LabelStudioMLBase


def words(text: str) -> set[str]:
    return {word.strip(".,!?;:\"'()").lower() for word in text.split()} - {""}


class KeywordClassifier(LabelStudioMLBase):
    """A text gets the label whose keywords it contains most; no keyword, no label."""

    model_type = "text_classification"

    def setup(self) -> None:
        self.keywords: dict[str, set[str]] = {
            label: set(found) for label, found in self.train_output.get("keywords", {}).items()
            if label in self.labels
        }

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        texts = self.task_texts(tasks, per_task_errors=True)
        return self.predictions_for(tasks, texts, lambda good: [self.classify(text) for text in good])

    def classify(self, text: str) -> dict:
        hits = {label: len(words(text) & found) for label, found in self.keywords.items()}
        best = max(hits, key=hits.get, default=None)
        if best is None or hits[best] == 0:
            return self.prediction([])
        return self.prediction([self.result_item({"choices": [best]})])  # a rule has no score

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        seen: dict[str, set[str]] = defaultdict(set)
        for annotation in annotations:
            labels = self.annotation_labels(annotation)
            text = annotation.get("task", {}).get("data", {}).get(self.object_tag.data_key)
            if len(labels) != 1 or not isinstance(text, str):
                self.skip(annotation, "needs one label and a text")
                continue
            seen[labels[0]] |= words(text)
        if len(seen) < 2:
            raise ValueError("keywords need annotations of at least two labels")
        keywords = {label: found - set().union(*(s for other, s in seen.items() if other != label))
                    for label, found in seen.items()}
        return {"keywords": {label: sorted(found) for label, found in keywords.items()}}
