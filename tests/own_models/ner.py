"""A user's own model: named entities by a gazetteer, the entity texts seen in annotations, no ML library."""

from __future__ import annotations

import re
from typing import Any

from lsbackend import LabelStudioMLBase


class GazetteerTagger(LabelStudioMLBase):
    """Marks every whole-word occurrence of an entity text annotated before, with its label."""

    model_type = "ner"

    def setup(self) -> None:
        names = {name: label for name, label in self.train_output.get("names", {}).items() if label in self.labels}
        longest_first = sorted(names, key=len, reverse=True)
        self.names = names
        self.pattern = re.compile(r"\b(" + "|".join(map(re.escape, longest_first)) + r")\b") if names else None

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        texts = self.task_texts(tasks, per_task_errors=True)
        return self.predictions_for(tasks, texts, lambda good: [self.tag(text) for text in good])

    def tag(self, text: str) -> dict:
        found = self.pattern.finditer(text) if self.pattern else ()
        spans = [self.span_result(m.start(), m.end(), m.group(), self.names[m.group()]) for m in found]
        return self.prediction(spans)  # a lookup has no score

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        names: dict[str, str] = {}
        for annotation in annotations:
            text = annotation.get("task", {}).get("data", {}).get(self.object_tag.data_key)
            for value in self.annotation_values(annotation):
                label = self.label_of((value.get("labels") or [None])[0])
                start, end = value.get("start"), value.get("end")
                if (not isinstance(text, str) or label is None or not isinstance(start, int)
                        or not isinstance(end, int) or not 0 <= start < end <= len(text)):
                    self.skip(annotation, "a span needs a label of the config and offsets inside the text")
                    continue
                names[text[start:end].strip()] = label
        if not names:
            raise ValueError("no entity to learn: annotate at least one span")
        return {"names": names}
