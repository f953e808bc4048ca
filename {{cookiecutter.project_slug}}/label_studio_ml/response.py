"""``ModelResponse``: what upstream ``predict`` methods return (one prediction, or several, per task)."""

from __future__ import annotations

from typing import Any

from .label_interface import PredictionValue

__all__ = ["ModelResponse"]


class ModelResponse:
    """``predictions`` (a dict, a ``PredictionValue`` or a list of them per task) and a ``model_version``.

    The runtime serves the version it trained; ``model_version`` here only fills predictions that
    name none (the compatibility base class then puts the served version on every one).
    """

    def __init__(self, predictions: list | None = None, model_version: str | None = None, **_ignored: Any) -> None:
        self.predictions = list(predictions or [])
        self.model_version = model_version

    def has_model_version(self) -> bool:
        return bool(self.model_version)

    def set_version(self, version: str) -> None:
        self.model_version = version
        self.update_predictions_version()

    def update_predictions_version(self) -> None:
        """Give every prediction without a version this response's one."""
        for entry in self.predictions:
            for prediction in entry if isinstance(entry, list) else [entry]:
                if isinstance(prediction, dict):
                    prediction.setdefault("model_version", self.model_version)
                elif isinstance(prediction, PredictionValue) and not prediction.model_version:
                    prediction.model_version = self.model_version

    def model_dump(self, **_ignored: Any) -> dict:
        return {"model_version": self.model_version, "predictions": self.predictions}

    def __repr__(self) -> str:
        return f"ModelResponse({len(self.predictions)} predictions, model_version={self.model_version!r})"
