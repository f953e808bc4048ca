"""The legacy ``label_studio_sdk.Client`` call five upstream examples train with, answered by the runtime.

Those examples ignore the annotations ``fit`` is given and fetch the project's labeled tasks
themselves (``Client(url, key).get_project(id).get_labeled_tasks()``). During a training this
returns the very tasks the runtime is training on (the annotations its webhooks recorded, plus
the ones it fetched from Label Studio when ``LABEL_STUDIO_URL`` and the key are set), so the
model learns from what the training status counts; outside a training it asks Label Studio.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lsbackend.label_studio_api import LabelStudioClient

__all__ = ["Client", "Project", "training_tasks"]

_TRAINING: dict[str, list[dict]] = {}


@contextlib.contextmanager
def training_tasks(project: str, tasks: list[dict]) -> Iterator[None]:
    """While a training of ``project`` runs, ``get_labeled_tasks`` answers with ``tasks``."""
    _TRAINING[str(project)] = tasks
    try:
        yield
    finally:
        _TRAINING.pop(str(project), None)


class Project:
    """A Label Studio project, as far as the examples use one."""

    def __init__(self, client: Client, project_id: object) -> None:
        self.client = client
        self.id = project_id

    def get_labeled_tasks(self) -> list[dict]:
        """The project's labeled tasks with their annotations (Label Studio's export shape)."""
        if str(self.id) in _TRAINING:
            return [dict(task) for task in _TRAINING[str(self.id)]]
        if not self.client.url or not self.client.api_key:
            raise RuntimeError(f"cannot fetch the tasks of project {self.id}: set LABEL_STUDIO_URL (or "
                               "LABEL_STUDIO_HOST) and LABEL_STUDIO_API_KEY")
        return LabelStudioClient(self.client.url, self.client.api_key).labeled_tasks(str(self.id))


class Client:
    """``label_studio_sdk.Client(url, api_key)``: only ``get_project(id).get_labeled_tasks()``."""

    def __init__(self, url: str | None = None, api_key: str | None = None, **_ignored: object) -> None:
        self.url = (url or "").rstrip("/")
        self.api_key = api_key or ""

    def get_project(self, id: object) -> Project:  # noqa: A002 (the SDK's keyword)
        return Project(self, id)
