"""Task data checked against the labeling config before any model sees it.

The config says which ``data`` field the model's object tag reads; a task without that field, or with a
number, list or object where the tag shows text or loads a URL, is the request's error (422 naming the
task and the field), whatever ``model.py`` holds. Models need no checks of their own for it.
"""

from __future__ import annotations

from .base import LabelStudioMLBase, TaskDataError

#: Object tags whose task field is a string: the text itself, or the URL of the media to load.
STRING_TAGS = {"text": "has non-text data in", "hypertext": "has non-text data in",
               "image": "has no image URL in", "audio": "has no audio URL in", "video": "has no video URL in"}


def check_task_data(model: LabelStudioMLBase, tasks: list[dict]) -> None:
    """Raise ``TaskDataError`` for the first task whose data the model's object tag cannot read."""
    tag = getattr(model, "object_tag", None)
    if tag is None:  # a model that reads the config its own way (upstream's SDK) checks its own data
        return
    problem = STRING_TAGS.get(tag.type.lower())
    for task in tasks:
        value = model.task_value(task)
        if problem is not None and not isinstance(value, str):
            raise TaskDataError(task, tag.data_key or tag.name, problem)
