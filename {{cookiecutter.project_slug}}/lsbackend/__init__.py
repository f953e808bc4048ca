"""The backend's small runtime: base class, server, storage, training, CLI.

``model.py`` is yours; this package is the template's and needs no edits.

``from lsbackend import LabelStudioMLBase`` loads the base class on first use, not when the package
is imported: ``python -m lsbackend start`` and gunicorn's configuration import only the settings
before the server's worker loads the model (see ``start.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import LabelStudioMLBase, TaskDataError

__all__ = ["LabelStudioMLBase", "TaskDataError"]


def __getattr__(name: str) -> object:
    """The names of ``__all__``, from ``base`` (PEP 562), imported when first asked for."""
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
