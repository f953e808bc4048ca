"""Give Label Studio's auto-created webhook the backend's Basic auth header, so annotations arrive.

With basic auth on, Label Studio sends the Connect dialog's credentials on
/setup, /predict and training, but not on the webhook it creates for the
backend. When LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are set, the backend
adds the header to that webhook itself, through Label Studio's API, in the
background after /setup (the webhook is saved only after Label Studio's first
/setup, and /setup must answer within 3 seconds).
"""

from __future__ import annotations

import base64
import logging
import threading
import time

from .label_studio_api import LabelStudioClient, LabelStudioError, authorize_webhook
from .settings import Settings

log = logging.getLogger(__name__)

#: Seconds to wait before each look for the webhook (about 30 s in all).
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)


class WebhookAuthorizer:
    """Once per process and project, finds the project's webhook to this backend and adds the header."""

    def __init__(self, settings: Settings, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.enabled = settings.auth_enabled and bool(settings.label_studio_url and settings.label_studio_api_key)
        self.user = settings.basic_auth_user
        token = base64.b64encode(f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()).decode()
        self.header = f"Basic {token}"
        self.delays = delays
        self._client = (
            LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key) if self.enabled else None
        )
        self._started: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, project: str, backend_host: str) -> threading.Thread | None:
        """Start the background job for ``project`` unless it ran in this process already; the thread, if any."""
        if not self.enabled or project == "default" or not backend_host:
            return None
        with self._lock:
            if project in self._started:
                return None
            self._started.add(project)
        thread = threading.Thread(target=self._run, args=(project, backend_host), daemon=True,
                                  name=f"webhook-auth-{project}")
        thread.start()
        return thread

    def _run(self, project: str, backend_host: str) -> None:
        assert self._client is not None
        problem = "Label Studio lists no webhook to this backend with its Basic auth user"
        for delay in self.delays:
            time.sleep(delay)
            try:
                hooks = authorize_webhook(self._client, project, backend_host, self.user, self.header)
            except LabelStudioError as exc:
                problem = str(exc)
                continue
            except (KeyError, TypeError, ValueError) as exc:  # an answer of another shape than 1.23's
                problem = f"unexpected answer from Label Studio's API ({type(exc).__name__}: {exc})"
                continue
            if hooks:
                log.info("project %s: webhook %s now sends the backend's Basic auth header", project, hooks)
                return
        log.warning(
            "project %s: could not add the Basic auth header to Label Studio's webhook (%s); annotations will "
            "not arrive until you add 'Authorization: Basic <base64 of user:password>' to the webhook to "
            "<backend>/webhook in Label Studio (Settings > Webhooks)", project, problem,
        )
