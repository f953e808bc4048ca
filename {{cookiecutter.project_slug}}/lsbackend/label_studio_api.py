"""A small client for the Label Studio API: fetch a project's annotations.

Training uses it so that annotations made before the backend was connected,
or whose webhook has not arrived yet, still count. Two kinds of API key work:
the legacy token (``Authorization: Token ...``) and a personal access token,
which is a JWT refresh token exchanged at ``/api/token/refresh/`` for a
short-lived access token (``Authorization: Bearer ...``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_SECONDS = 30
# Label Studio 1.23 recounts every task of the project on each prediction import (unless its
# ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short`` is on), so one import
# into a large project can take minutes on a busy server.
IMPORT_TIMEOUT_SECONDS = 900


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused; the message says what to check."""


def is_personal_access_token(key: str) -> bool:
    """Personal access tokens are JWTs: three dot-separated base64url parts."""
    return key.count(".") == 2 and key.startswith("ey")


class LabelStudioClient:
    """Authenticated GET/POST against one Label Studio instance."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._access: tuple[str, float] | None = None

    def auth_header(self) -> str:
        """The Authorization header value; a personal access token is exchanged (and cached) first."""
        if not is_personal_access_token(self.api_key):
            return f"Token {self.api_key}"
        if self._access is None or self._access[1] < time.monotonic():
            body = self._request("POST", "/api/token/refresh/", {"refresh": self.api_key}, auth=False)
            # access tokens live about 5 minutes; refresh a little early
            self._access = (body["access"], time.monotonic() + 240)
        return f"Bearer {self._access[0]}"

    def _request(self, method: str, path: str, payload: Any = None, auth: bool = True,
                 timeout: float = TIMEOUT_SECONDS) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", self.auth_header())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            hint = ""
            if exc.code in (401, 403):
                hint = " check LABEL_STUDIO_API_KEY: legacy token or personal access token?"
            raise LabelStudioError(f"Label Studio answered {exc.code} for {method} {path};{hint}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({getattr(exc, 'reason', exc)}); "
                "check LABEL_STUDIO_URL (inside Docker, localhost is the container itself)"
            ) from None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def patch(self, path: str, payload: Any) -> Any:
        return self._request("PATCH", path, payload)

    def project(self, project: str) -> dict:
        """The project, with its ``label_config``."""
        return self.get(f"/api/projects/{project}")

    def tasks_without_prediction(self, project: str, version: str, after: int, limit: int) -> tuple[list[dict], int]:
        """Up to ``limit`` tasks (``id`` and ``data`` only) with an id above ``after`` and no prediction of
        ``version``, in id order; and how many such tasks there are in all.

        Label Studio does the filtering (its Data Manager filters, sent as ``query``), so a resumed run
        never downloads what is already done, and ``include`` keeps it from serializing annotations and
        predictions, which ``fields=all`` would. Paging by id rather than by page number stays correct
        while predictions are being added. Note the model-version filter matches substrings: a
        prediction whose version merely contains ``version`` also counts as one of ``version``.
        """
        query = {
            "filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
                 "value": [version]},
                {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after},
            ]},
            "ordering": ["tasks:id"],
        }
        params = urllib.parse.urlencode({"project": project, "page": 1, "page_size": limit, "include": "id,data",
                                         "query": json.dumps(query, separators=(",", ":"))})
        body = self.get(f"/api/tasks?{params}")
        return list(body.get("tasks") or []), int(body.get("total") or 0)

    def task_count(self, project: str) -> int:
        """How many tasks the project has."""
        return int(self.get(f"/api/tasks?project={project}&page=1&page_size=1&include=id").get("total") or 0)

    def import_predictions(self, project: str, predictions: list[dict]) -> int:
        """Store predictions (``task``, ``result``, ``score``, ``model_version``) in one call; how many it created.

        Label Studio may create fewer than it was sent: without its validation feature flag it drops a
        prediction that does not fit the labeling config, logs why and still answers 201.
        """
        body = self._request("POST", f"/api/projects/{project}/import/predictions", predictions,
                             timeout=IMPORT_TIMEOUT_SECONDS)
        return int((body or {}).get("created", 0))

    def labeled_tasks(self, project: str) -> list[dict]:
        """The project's labeled tasks with their annotations (Label Studio's JSON export)."""
        return self.get(f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=false")


def authorize_webhook(client: LabelStudioClient, project: str, backend_host: str, user: str, header: str) -> list[int]:
    """Add this backend's ``Authorization`` header to the project's webhook that points at it; the hook ids.

    Label Studio creates a webhook to ``<backend URL>/webhook`` when a backend is
    connected, but sends it without the Basic auth of the Connect dialog, so a
    backend demanding auth would never see annotations. The backend is told
    apart from others connected to the project by its host (``backend_host``:
    the ``Host`` Label Studio sent to /setup) and its Basic auth user, so our
    credentials never go to another backend's webhook. An empty list means
    Label Studio has no such webhook yet (it is saved after the first /setup).
    """
    backends = client.get(f"/api/ml?project={project}") or []
    webhook_urls = {
        ml["url"].rstrip("/") + "/webhook"
        for ml in backends
        if isinstance(ml, dict) and isinstance(ml.get("url"), str)
        and urllib.parse.urlsplit(ml["url"]).netloc.lower() == backend_host.lower()
        and ml.get("basic_auth_user") == user
    }
    if not webhook_urls:
        return []
    done = []
    for hook in client.get(f"/api/webhooks/?project={project}") or []:
        if not isinstance(hook, dict) or hook.get("url") not in webhook_urls:
            continue
        headers = hook["headers"] if isinstance(hook.get("headers"), dict) else {}
        if headers.get("Authorization") != header:
            client.patch(f"/api/webhooks/{hook['id']}/", {"headers": {**headers, "Authorization": header}})
        done.append(hook["id"])
    return done


def annotations_from_tasks(tasks: list[dict]) -> list[dict]:
    """Flatten Label Studio export tasks into the annotation dicts ``fit`` receives."""
    found = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        for ann in task.get("annotations") or []:
            if isinstance(ann, dict) and "id" in ann:
                found.append(normalize_annotation(ann, task))
    return found


def normalize_annotation(annotation: dict, task: dict) -> dict:
    """The annotation shape ``fit`` receives, whatever Label Studio sent it in."""
    return {
        "id": annotation["id"],
        "result": annotation.get("result") or [],
        "was_cancelled": bool(annotation.get("was_cancelled")),
        "updated_at": annotation.get("updated_at") or "",
        "task": {"id": task.get("id"), "data": task.get("data") or {}},
    }
