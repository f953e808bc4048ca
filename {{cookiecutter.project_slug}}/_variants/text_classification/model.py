"""Your model: text classification with TF-IDF features and logistic regression.

This is the one file meant for you to edit. The runtime (``lsbackend``) calls:

- ``predict(tasks)`` for pre-annotations: return one prediction per task;
- ``fit(annotations)`` when training runs: return a dict, which is saved and
  handed back to every later model object as ``self.train_output``.

``self.control`` / ``self.object_tag`` are the ``<Choices>`` and ``<Text>`` tags
of the project's labeling config; ``self.labels`` are its choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from lsbackend import LabelStudioMLBase, TaskDataError


class TextClassifier(LabelStudioMLBase):
    """Classifies each task's text into one of the config's choices."""

    model_type = "text_classification"

    def setup(self) -> None:
        self.pipeline: Pipeline | None = self.train_output.get("pipeline")
        classes = self.pipeline.classes_ if self.pipeline is not None else []
        # Only labels still in the config may be predicted (the config can change).
        self.allowed = np.array([label in self.labels for label in classes], dtype=bool)

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        texts = [self._text(task) for task in tasks]
        if self.pipeline is None or not self.allowed.any():
            # Not trained yet: an empty result rather than a made-up label.
            return [self.prediction([]) for _ in tasks]
        probabilities = self.pipeline.predict_proba(texts)
        probabilities[:, ~self.allowed] = -1.0
        best = probabilities.argmax(axis=1)
        scores = probabilities[np.arange(len(texts)), best]
        classes = [str(label) for label in self.pipeline.classes_]  # plain lists: no numpy scalar per task
        return [
            self.prediction([self.choice_result(classes[i], score)], score)
            for i, score in zip(best.tolist(), scores.tolist(), strict=True)
        ]

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        texts, labels = [], []
        for annotation in annotations:
            chosen = self.annotation_labels(annotation)  # only this config's labels, aliases mapped back
            if not chosen:
                self.skip(annotation, f"chooses nothing of <Choices name={self.control.name!r}>")
                continue
            try:
                texts.append(self._text(annotation["task"]))
            except TaskDataError as exc:  # one odd task costs its own annotation, never the training
                self.skip(annotation, exc.reason)
                continue
            labels.append(chosen[0])
        if len(set(labels)) < 2:
            raise ValueError(
                f"training needs annotations with at least 2 different labels, got {sorted(set(labels))}"
            )
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
            LogisticRegression(max_iter=1000, C=10.0),
        )
        pipeline.fit(texts, labels)
        return {"pipeline": pipeline, "trained_on": len(texts)}

    def _text(self, task: dict) -> str:
        text = self.task_value(task)
        if not isinstance(text, str):
            raise TaskDataError(task, self.object_tag.data_key or "", "has non-text data in")
        return text
