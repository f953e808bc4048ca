"""The template's one home for test plumbing: free ports, server subprocesses, bounded waits.

The integration tests (Label Studio, baked backend, file server), the container
test and ``bench/predict_bench.py`` all use these, so each exists once. Every
server is a real subprocess on loopback. Everything here exists so that a
failing run says *why*: every wait is bounded and its error message carries the
tail of the server logs, and every process is always terminated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and shows the logs."""


def free_port() -> int:
    """Ask the kernel for a currently free TCP port on 127.0.0.1.

    There is a small race between closing this socket and the server binding the
    port; on a test machine that is acceptable, and readiness checks catch a loss.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    """Last ``lines`` lines of a log file, or a note that there is none yet."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """A server subprocess whose stdout and stderr go to one log file.

    The process is started in its own session so that ``stop`` can signal the
    whole group: ``label-studio`` and gunicorn both fork children that would
    otherwise outlive the test and keep ports busy.
    """

    name: str
    args: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(self.args),
                cwd=self.cwd,
                env=dict(self.env) if self.env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        return self

    @property
    def exited(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def log_tail(self, lines: int = 60) -> str:
        return f"--- last lines of {self.name} log ({self.log_path}) ---\n{log_tail(self.log_path, lines)}"

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not gone after ``grace`` s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        pgid = self.popen.pid  # == the group id, thanks to start_new_session
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.popen.wait(timeout=grace)


@dataclass
class FileServer:
    """A plain HTTP server on loopback serving ``root``: where tasks' ``http://`` image URLs point."""

    url: str
    root: Path
    process: ManagedProcess


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    logs: Sequence[ManagedProcess] = (),
) -> T:
    """Call ``probe`` until it returns something truthy, for at most ``timeout`` s.

    ``probe`` may raise; the last exception is reported. If one of ``logs`` exits
    while we wait, we stop at once instead of waiting out the timeout, because a
    dead server will never become ready.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last_value = value
        except Exception as exc:  # noqa: BLE001 - reported below
            last_error = exc
        dead = [proc for proc in logs if proc.exited]
        if dead or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    reason = (
        f"{', '.join(p.name for p in dead)} exited (code {dead[0].popen.returncode})"  # type: ignore[union-attr]
        if dead
        else f"not within {timeout:.0f} s"
    )
    detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
    tails = "\n".join(proc.log_tail() for proc in logs)
    raise WaitTimeout(f"Waiting for {what}: {reason}; {detail}\n{tails}")


FINISHED_TRAINING_STATES = ("succeeded", "failed", "skipped")  # "skipped": nothing usable to train on


def wait_for_training(
    status: Callable[[], dict],
    *,
    timeout: float,
    what: str = "training to finish",
    interval: float = 1.0,
    logs: Sequence[ManagedProcess] = (),
) -> dict:
    """Poll a backend's ``GET /training/<project>`` answer (``status()``) until the job finished; return it.

    Training runs in the background after a debounce, so right after ``START_TRAINING``
    the state is ``queued`` or ``running``; a finished state is one of
    ``FINISHED_TRAINING_STATES``, and the caller asserts which one it expected.
    """

    def finished() -> dict | None:
        answer = status()
        return answer if answer.get("state") in FINISHED_TRAINING_STATES else None

    return wait_until(finished, timeout=timeout, interval=interval, what=what, logs=logs)
