"""Your model: text classification with TF-IDF features and logistic regression.

This is the one file meant for you to edit. The runtime (``lsbackend``) calls:

- ``predict(tasks)`` for pre-annotations: return one prediction per task;
- ``fit(annotations)`` when training runs: return a dict, which is saved and
  handed back to every later model object as ``self.train_output``.

``self.control`` / ``self.object_tag`` are the ``<Choices>`` and ``<Text>`` tags
of the project's labeling config; ``self.labels`` are its choices. With
``<Choices choice="multiple">`` the model learns one yes/no classifier per label
(one-vs-rest) and predicts every label whose probability reaches 0.5 (or the
project's ``score_threshold`` extra param).

With ``<Text valueType="url">`` the task field holds a link to the text, which
``self.task_texts`` fetches (see ``LabelStudioMLBase.media``); a link that cannot be
fetched gives that task an empty prediction with the reason.

Interactive pre-annotation: a classification has one answer per text, so an
interactive call (opening a task, or a ``TextArea`` prompt) gets the same
prediction as "Retrieve predictions"; a prompt's text does not change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from lsbackend import LabelStudioMLBase


class TextClassifier(LabelStudioMLBase):
    """Classifies each task's text into one of the config's choices (or several, for multi-label)."""

    model_type = "text_classification"

    def setup(self) -> None:
        self.pipeline: Pipeline | None = self.train_output.get("pipeline")
        # a multi-label pipeline answers per label index; a single-label one names its classes
        self.classes: list[str] = self.train_output.get("classes") or (
            [str(c) for c in self.pipeline.classes_] if self.pipeline is not None else []
        )

    @classmethod
    def load_pretrained(cls, path: Path) -> dict:
        """MODEL_URI: a fitted scikit-learn pipeline (texts in, ``predict_proba`` out) saved with
        ``joblib.dump``; its ``classes_`` are the config's choices. Training replaces it with a new one."""
        pipeline = joblib.load(path)  # runs code from the file: point MODEL_URI only at files you trust
        if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
            raise ValueError(f"MODEL_URI holds a {type(pipeline).__name__}, not a fitted classifier with "
                             "predict_proba")
        return {"pipeline": pipeline}

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        if self.pipeline is None or not self.known_labels(self.classes):
            self.task_texts(tasks, fetch=False)  # a missing or non-text field still fails the request, by name
            # Not trained yet: an empty result rather than a made-up label, and no downloads.
            return [self.prediction([]) for _ in tasks]
        # The text, or with <Text valueType="url"> the text it links to; a link that fails costs only its task.
        return self.predictions_for(tasks, self.task_texts(tasks), self._classify)

    def _classify(self, texts: list[str]) -> list[dict]:
        probabilities = self.pipeline.predict_proba(texts)
        return self.choice_predictions(probabilities, self.classes)  # score_threshold, multi-label, aliases

    def fit(self, annotations: list[dict], **kwargs: Any) -> dict:
        labeled = self.labeled_annotations(annotations)  # (annotation, its labels); the others skipped, saying why
        loaded = self.annotation_texts([annotation for annotation, _ in labeled])  # None: skipped, saying why
        texts = [text for text in loaded if text is not None]
        chosen = [found for (_, found), text in zip(labeled, loaded, strict=True) if text is not None]
        if self.multi_label:
            return self._fit_multi_label(texts, chosen)
        labels = [c[0] for c in chosen]
        if len(set(labels)) < 2:
            raise ValueError(
                f"training needs annotations with at least 2 different labels, got {sorted(set(labels))}"
            )
        pipeline = make_pipeline(self._features(), LogisticRegression(max_iter=1000, C=10.0))
        pipeline.fit(texts, labels)
        return {"pipeline": pipeline, "trained_on": len(texts)}

    def _fit_multi_label(self, texts: list[str], chosen: list[list[str]]) -> dict:
        """One yes/no classifier per label seen; a label on every text (or none) is learnt as constant."""
        classes = [label for label in self.labels if any(label in c for c in chosen)]
        if len(classes) < 2:
            raise ValueError(f"training needs annotations with at least 2 different labels, got {classes}")
        indicator = np.array([[label in c for label in classes] for c in chosen], dtype=int)
        pipeline = make_pipeline(self._features(), OneVsRestClassifier(LogisticRegression(max_iter=1000, C=10.0)))
        pipeline.fit(texts, indicator)
        return {"pipeline": pipeline, "classes": classes, "trained_on": len(texts)}

    @staticmethod
    def _features() -> TfidfVectorizer:
        return TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
