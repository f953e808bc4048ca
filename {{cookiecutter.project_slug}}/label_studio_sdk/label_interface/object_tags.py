"""``label_studio_sdk.label_interface.object_tags``: one ``ObjectTag`` class stands for every object tag."""

from label_studio_ml.label_interface import ObjectTag

ImageTag = ParagraphsTag = TextTag = ObjectTag

__all__ = ["ImageTag", "ObjectTag", "ParagraphsTag", "TextTag"]
