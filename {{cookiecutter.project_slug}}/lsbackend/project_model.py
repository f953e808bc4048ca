"""A project's model object, built by one recipe for serving (``Backend``) and for training (``Trainer``).

A model object is the ``MODEL_CLASS`` built from the project's labeling config, its kept extra
params, the backend's settings and a ``train_output`` (saved, pretrained or none).
"""

from __future__ import annotations

from .base import INITIAL_VERSION, LabelStudioMLBase
from .label_config import ConfigError
from .settings import Settings
from .storage import ProjectStore


def project_config(store: ProjectStore, default: str | None, given: str | None = None) -> str:
    """The config to use: the one sent, else the project's last, else the repo's default."""
    config = given or store.label_config() or default
    if not config:
        raise ConfigError(
            "No labeling config for this project",
            "Connect the project in Label Studio (its /setup sends the config), send label_config "
            "with /predict, or create label_config.xml next to model.py.",
        )
    return config


def build_model(model_class: type[LabelStudioMLBase], settings: Settings, project: str, store: ProjectStore,
                config: str, train_output: dict | None = None, version: str = INITIAL_VERSION) -> LabelStudioMLBase:
    """A model object for ``project`` (whose data ``store`` holds), handed the backend's settings."""
    return model_class(config, project, train_output=train_output, model_version=version,
                       settings=settings, extra_params=store.extra_params())
