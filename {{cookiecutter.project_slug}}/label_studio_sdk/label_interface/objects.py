"""``label_studio_sdk.label_interface.objects.PredictionValue``."""

from label_studio_ml.label_interface import PredictionValue

__all__ = ["PredictionValue"]
