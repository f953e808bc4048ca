"""Fixtures for the Label Studio integration test.

Label Studio is expensive (install ~45 s once, start ~20 s), so one instance
serves the whole session; every test gets its own project and its own backend
process with a fresh model directory, so tests cannot see each other's models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .baked_backend import BakedBackend, bake_backend, start_backend
from .label_studio import LabelStudio, LabelStudioClient, ensure_label_studio, running_label_studio
from .processes import ManagedProcess


@pytest.fixture(scope="session")
def label_studio_executable() -> Path:
    """``label-studio`` from the cached venv (installed on first use)."""
    return ensure_label_studio()


@pytest.fixture(scope="session")
def label_studio(label_studio_executable: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    with running_label_studio(label_studio_executable, tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture
def ls_client(label_studio: LabelStudio) -> LabelStudioClient:
    return label_studio.client()


@pytest.fixture(scope="session")
def baked_text_backend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template baked for text classification, as a user would bake it."""
    return bake_backend(
        tmp_path_factory.mktemp("baked"), model_type="text_classification", project_name="LS Integration"
    )


@pytest.fixture(params=["personal_access_token", "legacy_token"])
def backend_api_key(request: pytest.FixtureRequest, label_studio: LabelStudio, ls_client: LabelStudioClient) -> str:
    """What the user pastes into LABEL_STUDIO_API_KEY: both kinds of token Label Studio 1.23 hands out.

    A personal access token is what the 1.23 UI offers by default; the legacy
    token is what older setups and ``--user-token`` give.
    """
    if request.param == "personal_access_token":
        return ls_client.create_personal_access_token()
    return label_studio.token


@pytest.fixture
def backend(
    baked_text_backend: Path, label_studio: LabelStudio, backend_api_key: str, tmp_path: Path
) -> Iterator[BakedBackend]:
    server = start_backend(baked_text_backend, tmp_path, label_studio.url, backend_api_key)
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the tail of every server log the test used to the report.

    Bounded waits and API errors already include the tails in their messages;
    this covers plain ``assert`` failures, where the logs are usually the answer.
    """
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        process = getattr(value, "process", None)
        if isinstance(process, ManagedProcess):
            report.sections.append((f"{process.name} log", process.log_tail(80)))
