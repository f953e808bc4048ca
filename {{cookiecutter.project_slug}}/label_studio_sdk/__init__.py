"""A stand-in for the few ``label_studio_sdk`` names upstream models import, when the real SDK is absent.

Upstream examples import ``PredictionValue``, ``LabelInterface`` and tag classes from the SDK, and
``label_studio_sdk.Client`` to fetch training data. The real ``label-studio-sdk`` brings 25
dependencies and cannot be installed beside this repo's numpy pin, so this package answers
those names from ``label_studio_ml``. When the real SDK *is* installed (anywhere else on
``sys.path``), importing ``label_studio_sdk`` gives the real one and this folder steps aside.

Anything else (``LabelStudio``, ``converter.brush``, ...) fails with an ``ImportError`` naming
what is missing and how to install the real SDK (see ``MISSING``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

MISSING = (
    "{name} is not in this backend's built-in subset of label_studio_sdk (which provides Client for "
    "training data, label_interface.LabelInterface, its tag classes and objects.PredictionValue). "
    "Install the real SDK next to it: pip install label-studio-sdk. Its 2.1.x releases pin opencv<4.13, "
    "which needs numpy<2.3, so they cannot be installed beside this repo's numpy==2.4.6: pin numpy below "
    "2.3 in requirements.txt, or try an older label-studio-sdk 2.0.x. See docs/upstream.md."
)


def _real_sdk() -> importlib.machinery.ModuleSpec | None:
    """The installed ``label_studio_sdk`` outside this repo, if there is one."""
    here = Path(__file__).resolve().parent.parent
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != here]
    return importlib.machinery.PathFinder.find_spec(__name__, elsewhere)


class _Missing(importlib.abc.MetaPathFinder):
    """Turns an import of a submodule this subset lacks into an ``ImportError`` that says what to do."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.startswith(__name__ + ".") and sys.modules.get(__name__) is _THIS:
            raise ModuleNotFoundError(MISSING.format(name=fullname), name=fullname)


_THIS = sys.modules[__name__]
_SPEC = _real_sdk()
if _SPEC is not None and _SPEC.loader is not None:
    _REAL = importlib.util.module_from_spec(_SPEC)
    sys.modules[__name__] = _REAL  # `import label_studio_sdk` now gives the real package
    _SPEC.loader.exec_module(_REAL)
else:
    from label_studio_ml.sdk_client import Client, Project  # noqa: F401 (the names the examples import)

    sys.meta_path.append(_Missing())  # last: our own submodules are found first


def __getattr__(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(MISSING.format(name=f"label_studio_sdk.{name}"), name=__name__)
