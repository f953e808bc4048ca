"""``label_studio_sdk.label_interface.control_tags``: the tag classes upstream models annotate with."""

from label_studio_ml.label_interface import ControlTag, ObjectTag

__all__ = ["ControlTag", "ObjectTag"]
