"""Install, start and stop a real Label Studio, and talk to its REST API.

The integration test drives Label Studio the way a user would (create a
project, import tasks, connect the backend, retrieve predictions, annotate,
train) so that we learn about protocol changes from Label Studio itself rather
than from our own idea of it. Everything below was checked against
label-studio 1.23.2.

Label Studio lives in its own virtualenv (about 1 GB, about 45 s to install)
that is cached between runs, because its pinned dependencies (Django, numpy,
...) must not mix with the backend's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from harness import ManagedProcess, free_port, log_tail, wait_until

LABEL_STUDIO_VERSION = "1.23.2"

# ``ensure_label_studio`` writes the first marker into the empty directory before
# installing and the second one last: "started" without "complete" is a broken
# install of ours, safe to delete; a directory with neither is not ours.
STARTED_MARKER = ".ls-ml-template-install-started"
INSTALL_MARKER = ".ls-ml-template-install-complete"

# Label Studio 1.23's own list of banned subnets (core/utils/io.py, ``validate_ip``), which it checks
# webhook URLs against when they are saved and again on every delivery (``SSRF_PROTECTION_ENABLED``).
DEFAULT_BANNED_SUBNETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "233.252.0.0/24", "240.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128",
    "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001:0000::/32",
    "2001:20::/28", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)
#: The backend's own subnets here: loopback, both families (``localhost`` resolves to both, and Label
#: Studio refuses a webhook if any of its host's addresses is banned).
BACKEND_SUBNETS = ("127.0.0.0/8", "::1/128")


def ssrf_settings(backend_subnets: Sequence[str] = BACKEND_SUBNETS) -> dict[str, str]:
    """Label Studio's SSRF protection on, narrowed to let it reach a backend in ``backend_subnets``.

    In Label Studio 1.23, ``ML_BLOCK_LOCAL_IP=false`` lets the ML connection
    (health, setup, predict, train) reach a local backend; it does not cover the
    webhook it auto-creates for the backend, which ``SSRF_PROTECTION_ENABLED``
    (on by default, left on) checks against the banned subnets.
    ``USE_DEFAULT_BANNED_SUBNETS=false`` drops the built-in list and
    ``USER_ADDITIONAL_BANNED_SUBNETS`` puts it back minus the backend's subnets,
    so everything else (other private networks, link-local, cloud metadata)
    stays blocked for webhooks, exports and storages.
    """
    banned = [net for net in DEFAULT_BANNED_SUBNETS if net not in backend_subnets]
    return {
        "ML_BLOCK_LOCAL_IP": "false",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": ",".join(banned),
    }


STARTUP_TIMEOUT = 600.0  # first start runs all migrations: ~20 s idle, minutes beside CI's parallel image builds
INSTALL_TIMEOUT = 1200.0
HTTP_TIMEOUT = 120.0  # retrieve-predictions and train wait for the backend inside the request

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "integration-test-password"


def default_venv_dir() -> Path:
    """``$LS_VENV``, else a per-user cache directory named for the version."""
    configured = os.environ.get("LS_VENV")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "ls-ml-template" / f"label-studio-{LABEL_STUDIO_VERSION}"


def ensure_label_studio(venv_dir: Path | None = None) -> Path:
    """Return the ``label-studio`` executable, installing it into ``venv_dir`` first if needed.

    An existing venv is reused only if it has ``bin/label-studio`` and our marker
    file naming this version. A leftover of our own interrupted install is
    rebuilt; a non-empty directory we did not create is refused rather than
    deleted, since ``LS_VENV`` may point anywhere. A lock file keeps two
    concurrent test sessions from installing into the same directory.
    """
    venv_dir = venv_dir or default_venv_dir()
    executable = venv_dir / "bin" / "label-studio"
    marker = venv_dir / INSTALL_MARKER
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(venv_dir.parent / f".{venv_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if executable.exists() and marker.exists() and marker.read_text().strip() == LABEL_STUDIO_VERSION:
            return executable
        if venv_dir.exists() and any(venv_dir.iterdir()) and not (venv_dir / STARTED_MARKER).exists():
            raise RuntimeError(
                f"{venv_dir} exists but was not created by this test harness (no {STARTED_MARKER}); "
                "point LS_VENV at a new directory or delete this one"
            )
        shutil.rmtree(venv_dir, ignore_errors=True)
        venv_dir.mkdir(parents=True)
        (venv_dir / STARTED_MARKER).write_text(LABEL_STUDIO_VERSION + "\n")
        log_path = venv_dir.parent / f"{venv_dir.name}-install.log"
        steps = [
            [sys.executable, "-m", "venv", str(venv_dir)],
            [
                str(venv_dir / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                f"label-studio=={LABEL_STUDIO_VERSION}",
            ],
        ]
        with log_path.open("w") as log:
            for step in steps:
                log.write(f"$ {' '.join(step)}\n")
                log.flush()
                result = subprocess.run(
                    step, check=False, stdout=log, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT, env=_clean_env()
                )
                if result.returncode != 0:
                    raise RuntimeError(
                        f"Installing label-studio=={LABEL_STUDIO_VERSION} into {venv_dir} failed "
                        f"(exit {result.returncode}):\n{log_tail(log_path)}"
                    )
        if not executable.exists():
            raise RuntimeError(f"pip succeeded but {executable} is missing:\n{log_tail(log_path)}")
        marker.write_text(LABEL_STUDIO_VERSION + "\n")
        return executable


def _clean_env() -> dict[str, str]:
    """Our environment minus anything that would make a child use the test's Python."""
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(key, None)
    return env


@dataclass
class LabelStudio:
    """A running Label Studio: its URL, the admin's legacy token, and its process."""

    url: str
    token: str
    process: ManagedProcess

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.token, [self.process])

    def stop(self) -> None:
        self.process.stop()


def start_label_studio(executable: Path, workdir: Path, port: int | None = None) -> LabelStudio:
    """Start Label Studio on 127.0.0.1 with a fresh data dir in ``workdir`` and wait until it serves.

    Why each setting:

    * ``--username/--password/--user-token`` create the admin without prompting;
      the user token becomes the admin's *legacy* API token, which only works with
      ``--enable-legacy-api-token`` (new organisations in 1.23 disable legacy tokens).
    * ``ssrf_settings()``: SSRF protection stays on, narrowed so that Label Studio
      reaches the backend on 127.0.0.1 and delivers its webhook there, and
      nothing else on a private or local network.
    * ``LATEST_VERSION_CHECK=false``, ``COLLECT_ANALYTICS=false``, empty ``SENTRY_DSN``:
      no calls to pypi.org or sentry.io from a test.
    * ``LABEL_STUDIO_BASE_DATA_DIR`` and ``--data-dir``: SQLite database, media and
      the generated ``.env`` go to ``workdir`` and never to ``~/.local/share``.

    Label Studio silently moves to the next port if ``port`` is taken; the
    readiness check on the port we chose then fails with the log tail.
    """
    port = port or free_port()
    data_dir = workdir / "label-studio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(20)  # same shape as Label Studio's own legacy tokens
    env = _clean_env()
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        **ssrf_settings(),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    args = [
        str(executable),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--username",
        ADMIN_EMAIL,
        "--password",
        ADMIN_PASSWORD,
        "--user-token",
        token,
        "--enable-legacy-api-token",
    ]
    process = ManagedProcess("label-studio", args, workdir / "label-studio.log", cwd=workdir, env=env).start()
    server = LabelStudio(url=f"http://127.0.0.1:{port}", token=token, process=process)
    try:
        wait_until(
            lambda: requests.get(f"{server.url}/health", timeout=5).ok,
            timeout=STARTUP_TIMEOUT,
            what=f"Label Studio /health on {server.url}",
            interval=1.0,
            logs=[process],
        )
        # /health answers before the admin exists on a first start; the token is what we need.
        wait_until(
            lambda: server.client().whoami().get("email") == ADMIN_EMAIL,
            timeout=60,
            what="Label Studio to accept the admin's legacy token",
            logs=[process],
        )
    except BaseException:
        process.stop()
        raise
    return server


@contextlib.contextmanager
def running_label_studio(executable: Path, workdir: Path) -> Iterator[LabelStudio]:
    """``start_label_studio`` that always stops the server, whatever the test did."""
    server = start_label_studio(executable, workdir)
    try:
        yield server
    finally:
        server.stop()


class LabelStudioApiError(AssertionError):
    """A Label Studio API call failed; the message has the response body and the server log."""


class LabelStudioClient:
    """The few Label Studio API calls the integration test needs, each named for what it does.

    Calls that make Label Studio talk to the ML backend (connect, retrieve
    predictions, train) are synchronous in Label Studio without Redis: the HTTP
    response comes only after the backend answered, so no polling is needed
    for them.
    """

    def __init__(self, url: str, token: str, logs: Sequence[ManagedProcess] = ()) -> None:
        self.url = url.rstrip("/")
        self.logs = list(logs)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}{path}", timeout=HTTP_TIMEOUT, **kwargs)
        if not response.ok:
            tails = "\n".join(proc.log_tail(40) for proc in self.logs)
            raise LabelStudioApiError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}\n{tails}")
        return response.json() if response.content else None

    # -- users and tokens -------------------------------------------------

    def whoami(self) -> dict:
        return self._call("GET", "/api/current-user/whoami")

    def create_personal_access_token(self) -> str:
        """A new personal access token (a JWT *refresh* token) for the admin.

        This is what Label Studio 1.23 shows users under Account & Settings; a
        client exchanges it at ``POST /api/token/refresh/`` for a short-lived
        access token sent as ``Authorization: Bearer ...``.
        """
        return self._call("POST", "/api/token/", json={})["token"]

    # -- projects and tasks -----------------------------------------------

    def create_project(self, title: str, label_config: str) -> dict:
        """Create a project; the title must have at least 3 characters."""
        return self._call("POST", "/api/projects", json={"title": title, "label_config": label_config})

    def import_tasks(self, project_id: int, data: Sequence[dict]) -> list[dict]:
        """Import one task per ``data`` dict and return the created tasks in import order.

        The import answer only has counts, so the tasks are listed afterwards;
        without Redis the import is synchronous and they exist by then.
        """
        before = {task["id"] for task in self.list_tasks(project_id)}
        answer = self._call("POST", f"/api/projects/{project_id}/import", json=[dict(d) for d in data])
        assert answer["task_count"] == len(data), answer
        created = [task for task in self.list_tasks(project_id) if task["id"] not in before]
        return sorted(created, key=lambda task: task["id"])

    def upload_files(self, project_id: int, files: Sequence[tuple[str, bytes, str]]) -> list[dict]:
        """Upload files (``(name, content, mime type)``) the way the Import dialog does; return the new tasks.

        Label Studio stores each file under its media root and creates one task per
        file whose data field (the labeling config's only ``$key``) is
        ``/data/upload/<project>/<random prefix>-<name>``: a path on Label Studio that
        needs an API key to download.
        """
        before = {task["id"] for task in self.list_tasks(project_id)}
        # One form field per file: Label Studio reads ``request.FILES`` one value per field name, so
        # several files under one name (as ``requests`` sends a list) import only the last one.
        multipart = [(f"file{index}", (name, content, mime)) for index, (name, content, mime) in enumerate(files)]
        answer = self._call("POST", f"/api/projects/{project_id}/import", files=multipart)
        assert answer["task_count"] == len(files), answer
        created = [task for task in self.list_tasks(project_id) if task["id"] not in before]
        return sorted(created, key=lambda task: task["id"])

    def list_tasks(self, project_id: int) -> list[dict]:
        tasks: list[dict] = []
        page = 1
        while True:
            answer = self._call("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 100})
            tasks.extend(answer["tasks"])
            if len(tasks) >= answer["total"] or not answer["tasks"]:
                return tasks
            page += 1

    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        """Submit an annotation as the admin; Label Studio then fires ANNOTATION_CREATED webhooks."""
        return self._call("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result})

    # -- ML backends --------------------------------------------------------

    def connect_ml_backend(
        self, project_id: int, url: str, title: str, basic_auth: tuple[str, str] | None = None,
        interactive: bool = False,
    ) -> dict:
        """Connect a backend (Label Studio calls its /health and /setup before answering).

        Connecting also creates a project webhook to ``<url>/webhook`` that sends
        every action. ``basic_auth`` is the Connect dialog's Basic Authentication;
        ``interactive`` its "Interactive preannotations" switch.
        """
        body: dict[str, Any] = {"url": url, "project": project_id, "title": title, "is_interactive": interactive}
        if basic_auth:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
        return self._call("POST", "/api/ml", json=body)

    def interactive_annotating(self, ml_backend_id: int, task_id: int, context: dict) -> dict:
        """What the labeling editor calls when the annotator makes a region with interactive pre-annotation
        on: Label Studio sends the task and ``context`` to the backend's /predict and answers
        ``{"data": <the first prediction>}``, or ``{"errors": [...]}``."""
        return self._call("POST", f"/api/ml/{ml_backend_id}/interactive-annotating",
                          json={"task": task_id, "context": context})

    def get_ml_backend(self, ml_backend_id: int) -> dict:
        """The backend as Label Studio sees it: ``state`` (CO/ER/TR...), ``model_version``, ``error_message``."""
        return self._call("GET", f"/api/ml/{ml_backend_id}")

    def ml_backend_versions(self, ml_backend_id: int) -> dict:
        """The model-version list Label Studio reads from the backend's ``GET /versions`` (no project in it).

        If the backend answers 404, Label Studio shows its last known version with
        "Upgrade your ML backend version to latest." instead.
        """
        return self._call("GET", f"/api/ml/{ml_backend_id}/versions")

    def start_training(self, ml_backend_id: int) -> None:
        """The Train button: Label Studio POSTs ``START_TRAINING`` to the backend's /webhook and waits for it."""
        self._call("POST", f"/api/ml/{ml_backend_id}/train", json={})

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int]) -> dict:
        """The Data Manager's "Retrieve Predictions" action on ``task_ids``.

        Label Studio calls /setup for the current model version, skips tasks that
        already have a prediction with that version, and sends the rest to
        /predict in one request.
        """
        return self._call(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": False, "included": list(task_ids)}},
        )

    def list_predictions(self, project_id: int) -> list[dict]:
        """Every prediction Label Studio stored for the project (this endpoint is not paginated)."""
        return self._call("GET", "/api/predictions/", params={"project": project_id})

    def delete_prediction(self, prediction_id: int) -> None:
        self._call("DELETE", f"/api/predictions/{prediction_id}/")

    def list_webhooks(self, project_id: int) -> list[dict]:
        return self._call("GET", "/api/webhooks", params={"project": project_id})


def choices_result(from_name: str, to_name: str, choice: str) -> list[dict]:
    """An annotation result picking one ``choice`` in a Choices control, as the labeling UI saves it."""
    return [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [choice]}}]


def chosen_labels(prediction: dict) -> list[str]:
    """All choices a prediction (or annotation) selects, whatever control they belong to."""
    return [choice for item in prediction.get("result") or [] for choice in item.get("value", {}).get("choices", [])]


def labels_result(from_name: str, to_name: str, text: str, spans: Sequence[tuple[int, int, str]]) -> list[dict]:
    """An annotation marking ``(start, end, label)`` spans of ``text`` in a Labels control, as the UI saves it."""
    return [
        {
            "id": f"span{index}",
            "from_name": from_name,
            "to_name": to_name,
            "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
        }
        for index, (start, end, label) in enumerate(spans)
    ]


def labelled_spans(prediction: dict) -> list[tuple[int, int, str, str]]:
    """``(start, end, text, label)`` of every span a prediction (or annotation) marks, in text order."""
    return sorted(
        (item["value"]["start"], item["value"]["end"], item["value"].get("text"), label)
        for item in prediction.get("result") or []
        for label in item.get("value", {}).get("labels", [])
    )
