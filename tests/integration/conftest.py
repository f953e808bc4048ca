"""Fixtures for the Label Studio integration test.

Label Studio is expensive (install ~45 s once, start ~20 s), so one instance
serves the whole session; every test gets its own project and its own backend
process with a fresh model directory, so tests cannot see each other's models.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from harness import FileServer, ManagedProcess, free_port, wait_until

from .baked_backend import BakedBackend, bake_backend, start_backend
from .label_studio import LabelStudio, LabelStudioClient, ensure_label_studio, running_label_studio


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
def baked_variants(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``bake(model_type)``: the template baked for that model type, as a user would bake it (once per session)."""
    baked: dict[str, Path] = {}

    def bake(model_type: str) -> Path:
        if model_type not in baked:
            baked[model_type] = bake_backend(
                tmp_path_factory.mktemp(f"baked-{model_type}"), model_type=model_type, project_name="LS Integration"
            )
        return baked[model_type]

    return bake


@pytest.fixture
def model_type(request: pytest.FixtureRequest) -> str:
    """Which variant to bake; tests set it with ``parametrize(..., indirect=True)``."""
    return request.param


@pytest.fixture
def baked_dir(baked_variants: Callable[[str], Path], model_type: str) -> Path:
    return baked_variants(model_type)


@pytest.fixture(scope="session")
def personal_access_token(label_studio: LabelStudio) -> str:
    """The admin's personal access token, created once: Label Studio 1.23 answers a second
    ``POST /api/token/`` with 409 "You already have a valid token" until the first is revoked."""
    return label_studio.client().create_personal_access_token()


@pytest.fixture
def backend_api_key(request: pytest.FixtureRequest, label_studio: LabelStudio, personal_access_token: str) -> str:
    """What the user pastes into LABEL_STUDIO_API_KEY: either kind of token Label Studio 1.23 hands out.

    ``personal_access_token`` is what the 1.23 UI offers by default; ``legacy_token``
    is what older setups and ``--user-token`` give. Tests choose with
    ``parametrize(..., indirect=True)``.
    """
    if request.param == "personal_access_token":
        return personal_access_token
    assert request.param == "legacy_token", request.param
    return label_studio.token


@pytest.fixture
def basic_auth(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """The backend's BASIC_AUTH_USER/PASS, also entered in Label Studio's Connect dialog; None: auth off.

    Tests choose with ``parametrize(..., indirect=True)``; without it, auth is off.
    """
    return ("ml-user", "ml-pass-123") if getattr(request, "param", None) == "basic_auth" else None


@pytest.fixture
def backend(
    baked_dir: Path, label_studio: LabelStudio, backend_api_key: str, basic_auth: tuple[str, str] | None, tmp_path: Path
) -> Iterator[BakedBackend]:
    server = start_backend(baked_dir, tmp_path, label_studio.url, backend_api_key, basic_auth)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    """``python -m http.server`` on 127.0.0.1 in its own process, with its access log for failures."""
    workdir = tmp_path_factory.mktemp("file-server")
    root = workdir / "files"
    root.mkdir()
    (root / "ready.txt").write_text("ok")
    port = free_port()
    args = [sys.executable, "-u", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    process = ManagedProcess("file-server", args, workdir / "file-server.log", cwd=workdir).start()
    server = FileServer(url=f"http://127.0.0.1:{port}", root=root, process=process)
    try:
        wait_until(
            lambda: requests.get(f"{server.url}/ready.txt", timeout=5).ok,
            timeout=30,
            what=f"file server on {server.url}",
            logs=[process],
        )
        yield server
    finally:
        process.stop()


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
