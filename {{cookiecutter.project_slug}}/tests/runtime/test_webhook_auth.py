"""With basic auth on, the backend adds its credentials to Label Studio's webhook itself."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest
from fake_label_studio import LEGACY_TOKEN, FakeLabelStudio

from lsbackend.server import create_app
from lsbackend.service import Backend

from conftest import MODEL_CLASS, SHAPE, captured

HOST = "backend.internal:9090"
HEADER = "Basic " + base64.b64encode(b"ml:s3cret").decode()
SETUP = captured(f"setup_{SHAPE}")
PROJECT = SETUP["project"].split(".")[0]


def ml_backend(url: str, user: str = "ml") -> dict:
    return {"id": 1, "url": url, "project": int(PROJECT), "auth_method": "BASIC_AUTH", "basic_auth_user": user}


def webhook(hook_id: int, url: str, headers: dict | None = None) -> dict:
    return {"id": hook_id, "project": int(PROJECT), "url": url, "send_payload": True, "send_for_all_actions": True,
            "headers": headers or {}, "is_active": True, "actions": []}


@pytest.fixture
def label_studio():
    fake = FakeLabelStudio()
    yield fake
    fake.close()


def backend_for(settings, label_studio, **changes) -> Backend:
    values = dict(label_studio_url=label_studio.url, label_studio_api_key=LEGACY_TOKEN,
                  basic_auth_user="ml", basic_auth_pass="s3cret")
    backend = Backend(MODEL_CLASS, dataclasses.replace(settings, **{**values, **changes}))
    backend.webhook_auth.delays = (0.0, 0.1, 0.2, 0.4)
    return backend


def setup_call(backend: Backend) -> None:
    client = create_app(backend).test_client()
    reply = client.post("/setup", json=SETUP, headers={"Authorization": HEADER, "Host": HOST})
    assert reply.status_code == 200, reply.status


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_setup_adds_the_header_to_this_backends_webhook_only(settings, label_studio):
    label_studio.ml_backends = [ml_backend(f"http://{HOST}"), ml_backend("http://other:9090", user="ml")]
    label_studio.webhooks = [
        webhook(7, f"http://{HOST}/webhook", {"X-Keep": "1"}),
        webhook(8, "http://other:9090/webhook"),
        webhook(9, "https://hooks.example.com/notify"),
    ]
    setup_call(backend_for(settings, label_studio))
    wait_for(lambda: label_studio.patches)
    time.sleep(0.3)  # let any wrong extra patch arrive before checking there is none
    assert label_studio.patches == [("/api/webhooks/7/", {"headers": {"X-Keep": "1", "Authorization": HEADER}})]


def test_a_backend_with_another_basic_auth_user_on_the_same_host_is_not_ours(settings, label_studio):
    label_studio.ml_backends = [ml_backend(f"http://{HOST}", user="someone-else")]
    label_studio.webhooks = [webhook(7, f"http://{HOST}/webhook")]
    backend = backend_for(settings, label_studio)
    backend.webhook_auth.delays = (0.0,)
    thread = backend.webhook_auth.ensure(PROJECT, HOST)
    thread.join(10)
    assert label_studio.patches == []


def test_a_webhook_created_after_the_first_setup_is_found_on_a_retry(settings, label_studio):
    """Label Studio saves the backend and its webhook only after the Connect dialog's /setup answered."""
    backend = backend_for(settings, label_studio)
    setup_call(backend)
    time.sleep(0.05)
    label_studio.ml_backends = [ml_backend(f"http://{HOST}/")]
    label_studio.webhooks = [webhook(7, f"http://{HOST}/webhook")]
    wait_for(lambda: label_studio.patches)
    assert label_studio.webhooks[0]["headers"] == {"Authorization": HEADER}


def test_a_webhook_that_already_sends_the_header_is_left_alone(settings, label_studio):
    label_studio.ml_backends = [ml_backend(f"http://{HOST}")]
    label_studio.webhooks = [webhook(7, f"http://{HOST}/webhook", {"Authorization": HEADER})]
    backend = backend_for(settings, label_studio)
    backend.webhook_auth.ensure(PROJECT, HOST).join(10)
    assert label_studio.patches == []
    assert backend.webhook_auth.ensure(PROJECT, HOST) is None, "a second /setup must not start another job"


@pytest.mark.parametrize("changes", [{"basic_auth_user": "", "basic_auth_pass": ""}, {"label_studio_api_key": ""}])
def test_nothing_is_asked_of_label_studio_without_auth_or_a_key(settings, label_studio, changes):
    label_studio.ml_backends = [ml_backend(f"http://{HOST}")]
    label_studio.webhooks = [webhook(7, f"http://{HOST}/webhook")]
    backend = backend_for(settings, label_studio, **changes)
    assert backend.webhook_auth.ensure(PROJECT, HOST) is None
    assert label_studio.auth_seen == []
