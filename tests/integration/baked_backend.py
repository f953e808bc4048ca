"""Bake the template with cookiecutter and run the result the way its README says.

The backend is started exactly as a user would start it in production
(``python -m lsbackend start``: gunicorn), configured only through environment
variables, so the test covers the generated project and not a test double.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import requests
from cookiecutter.main import cookiecutter
from harness import ManagedProcess, free_port, wait_for_training, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT = 90.0
TRAINING_TIMEOUT = 300.0


def bake_backend(out_dir: Path, **context: str) -> Path:
    """Run this repository's template non-interactively and return the generated project folder."""
    return Path(cookiecutter(str(REPO_ROOT), no_input=True, output_dir=str(out_dir), extra_context=context))


@dataclass
class BakedBackend:
    """A running baked backend: its URL on loopback and its process (for logs)."""

    url: str
    process: ManagedProcess
    basic_auth: tuple[str, str] | None = None

    def training_status(self, project_id: int) -> dict:
        """``GET /training/<project>``: ``{"state", "model_version", "error", ...}``.

        The baked runtime also reports ``recorded_annotations`` (annotations that
        arrived by webhook) and, after a training, ``annotations`` (how many it
        trained on); the test uses both to tell the two annotation paths apart.
        """
        response = requests.get(f"{self.url}/training/{project_id}", timeout=10, auth=self.basic_auth)
        response.raise_for_status()
        return response.json()

    def wait_for_training(self, project_id: int, logs: list[ManagedProcess], timeout: float = TRAINING_TIMEOUT) -> dict:
        """Poll the training status until it is finished (``succeeded``, ``failed``, ``skipped``); return it.

        Training runs in the background after a debounce (``TRAIN_DEBOUNCE_SECONDS``,
        2 s by default), so right after ``START_TRAINING`` the state is ``queued``.
        """

        return wait_for_training(
            lambda: self.training_status(project_id),
            timeout=timeout,
            what=f"training of project {project_id} to finish",
            logs=logs,
        )

    def stop(self) -> None:
        self.process.stop()


def start_backend(
    project_dir: Path,
    workdir: Path,
    label_studio_url: str,
    api_key: str,
    basic_auth: tuple[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> BakedBackend:
    """Start ``python -m lsbackend start`` in ``project_dir`` and wait for ``/health``.

    ``sys.executable`` runs it: the test environment already has the backend's
    requirements (flask, gunicorn, scikit-learn), and installing them per run
    would only measure pip. ``MODEL_DIR`` is a fresh directory so no model
    survives from an earlier run.
    """
    port = free_port()
    model_dir = workdir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the baked project must import its own ``lsbackend``
    env.update(
        PORT=str(port),
        MODEL_DIR=str(model_dir),
        LABEL_STUDIO_URL=label_studio_url,
        LABEL_STUDIO_API_KEY=api_key,
        HOST="127.0.0.1",  # loopback only; the runtime defaults to 0.0.0.0 for Docker
        PYTHONUNBUFFERED="1",
        BASIC_AUTH_USER=basic_auth[0] if basic_auth else "",
        BASIC_AUTH_PASS=basic_auth[1] if basic_auth else "",
    )
    env.update(extra_env or {})  # e.g. MODEL_URI
    process = ManagedProcess(
        "backend", [sys.executable, "-m", "lsbackend", "start"], workdir / "backend.log", cwd=project_dir, env=env
    ).start()
    backend = BakedBackend(url=f"http://127.0.0.1:{port}", process=process, basic_auth=basic_auth)
    try:
        wait_until(
            lambda: requests.get(f"{backend.url}/health", timeout=5).ok,
            timeout=STARTUP_TIMEOUT,
            what=f"backend /health on {backend.url}",
            logs=[process],
        )
    except BaseException:
        process.stop()
        raise
    return backend
