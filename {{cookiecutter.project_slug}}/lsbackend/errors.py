"""The errors the backend's parts raise to each other, in one module that imports nothing of ours.

Stores, queues and the server all name these, and none of them has to import another part to
catch what it raises: every module may import this one, and it imports none of them.
"""

from __future__ import annotations

import errno


class StorageError(RuntimeError):
    """MODEL_DIR (or MODEL_STORE) cannot be used; the message names the place and the fix."""


FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class StorageWriteError(StorageError):
    """A write under MODEL_DIR failed. ``kind`` is "full", "read-only" or "failed"; the message
    says which, what could not be written and why, in one line (it becomes a reason phrase).
    ``fix``, when set, is what the user should do (the object store's errors set it)."""

    fix: str | None = None

    def __init__(self, what: str, exc: OSError) -> None:
        self.kind = "full" if exc.errno in FULL else "read-only" if exc.errno in READ_ONLY else "failed"
        why = exc.strerror or type(exc).__name__
        if self.kind == "failed":
            message = f"MODEL_DIR: cannot write {what} ({why})"
        else:
            message = f"MODEL_DIR is {self.kind}: cannot write {what} ({why})"
        super().__init__(message)
        self.what = what


class Unavailable(RuntimeError):
    """A part cannot answer now; the server answers 503 with the message, and ``Retry-After`` when set."""

    retry_after: int | None = None


class QueueUnavailable(Unavailable):
    """The training queue cannot take a request now (Redis unreachable); the message names the setting."""

    retry_after = 10
