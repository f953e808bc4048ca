"""``label_studio_sdk.label_interface`` from ``label_studio_ml.label_interface`` (see the package doc)."""

from label_studio_ml.label_interface import ControlTag, LabelInterface, ObjectTag, PredictionValue

__all__ = ["ControlTag", "LabelInterface", "ObjectTag", "PredictionValue"]
