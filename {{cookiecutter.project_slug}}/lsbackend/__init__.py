"""The backend's small runtime: base class, server, storage, training, CLI.

``model.py`` is yours; this package is the template's and needs no edits.
"""

from .base import LabelStudioMLBase, TaskDataError

__all__ = ["LabelStudioMLBase", "TaskDataError"]
