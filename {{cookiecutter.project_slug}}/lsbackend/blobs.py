"""The few things a model store needs from where it keeps bytes, and the local-disk implementation.

``store.BlobStore`` (versions, pointer, fallback, annotation log, leases) is
written once over this interface; ``LocalBlobs`` (a directory) and
``s3_blobs.S3Blobs`` (a bucket prefix) are its two implementations. Keys are
``/``-separated names relative to the root, the same on both, so a project's
layout reads alike on disk and in a bucket.

Every ``put`` replaces an object whole: readers see the old bytes or the new,
never half (locally: temporary file, fsync, rename; on S3 a PUT is atomic).
That is also how the ``CURRENT`` pointer moves. A process that dies holding a
``lock`` frees it: the kernel drops a ``flock``; an S3 lease expires.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, TypeVar

from .errors import StorageError, StorageWriteError

T = TypeVar("T")


class Held(Protocol):
    """A held lock; ``lost`` turns true when another process took it over (an S3 lease that expired)."""

    lost: bool


class Blobs(Protocol):
    """Bytes under keys. ``what`` names the thing for the error a failed write raises."""

    name: str  # "MODEL_DIR /data" or "MODEL_STORE s3://bucket/prefix": how messages name the store
    medium: str  # "file" or "object": what a message tells the user to restore
    unreachable: tuple[type[Exception], ...]  # errors meaning "the store cannot answer now", not "this is broken"

    def get(self, key: str, what: str) -> bytes | None: ...
    def get_many(self, keys: list[str], what: str) -> list[bytes | None]: ...
    def put(self, key: str, data: bytes, what: str) -> object: ...  # what it returns is the medium's own
    def delete(self, keys: list[str], what: str) -> None: ...
    def list(self, prefix: str, what: str) -> dict[str, int]: ...  # key -> size, for every key under prefix
    def tag(self, key: str) -> str | None: ...  # changes whenever the object is written; None: no object
    def stamp(self, keys: tuple[str, ...]) -> tuple[int, ...]: ...  # tags as numbers, cheap (every /predict)
    def lock(self, key: str, what: str) -> AbstractContextManager[Held]: ...
    def locked(self, key: str) -> bool: ...
    def check(self) -> None: ...  # readiness: StorageError when the store cannot serve now
    def patiently(self, call: Callable[[], T]) -> T: ...  # call, retried while the store is briefly away


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn an OSError of the block into a ``StorageWriteError`` naming ``what`` was being written."""
    try:
        yield
    except OSError as exc:
        raise StorageWriteError(what, exc) from exc


def atomic_write(path: Path, data: bytes, what: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    with writing(what or path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(root: Path) -> None:
    """Fail at start-up, not at the first training, when MODEL_DIR is unusable."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StorageError(
            f"MODEL_DIR {str(root)!r} is not writable ({exc.strerror}). "
            "Set MODEL_DIR to a writable directory, or give the backend's user write access "
            "(in Docker: mount a volume there owned by the container user)."
        ) from None


def tag_number(tag: str | None) -> int:
    """A tag as a number for a stamp (the same in every process); 0 when there is no object."""
    return int(hashlib.blake2b(tag.encode(), digest_size=7).hexdigest(), 16) if tag else 0


class _Flock:
    lost = False  # the kernel never hands a held flock to another process


class LocalBlobs:
    """Files under ``root`` (a local disk or a shared filesystem mount); names starting with "." are writes
    under way (temporary files) or lock files, never listed."""

    medium = "file"
    unreachable: tuple[type[Exception], ...] = ()

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"MODEL_DIR {self.root}"
        check_writable(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str, what: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get_many(self, keys: list[str], what: str) -> list[bytes | None]:
        return [self.get(key, what) for key in keys]

    def put(self, key: str, data: bytes, what: str) -> None:
        atomic_write(self.path(key), data, what)

    def delete(self, keys: list[str], what: str) -> None:
        with writing(what):
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    self.path(key).unlink()

    def list(self, prefix: str, what: str) -> dict[str, int]:
        """Every file under the folder ``prefix`` names (``os.scandir``: ``GET /training`` counts often)."""
        found: dict[str, int] = {}
        folders = [prefix.rstrip("/")]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(self.root / folder) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        if entry.is_dir():
                            folders.append(f"{folder}/{entry.name}")
                        else:
                            with contextlib.suppress(FileNotFoundError):
                                found[f"{folder}/{entry.name}"] = entry.stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def tag(self, key: str) -> str | None:
        """Size, modification time and inode: a rename over the file (every ``put``) changes the inode."""
        try:
            stat = self.path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}"

    def stamp(self, keys: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(tag_number(self.tag(key)) for key in keys)

    @contextlib.contextmanager
    def lock(self, key: str, what: str) -> Iterator[Held]:
        """An exclusive ``flock`` (waits for another holder); the kernel drops it if we die."""
        path = self.path(key)
        with writing(what):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "w")  # noqa: SIM115 (closed below, after the holder is done)
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield _Flock()

    def locked(self, key: str) -> bool:
        try:
            with open(self.path(key), "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False  # closing the file releases the probe
        except FileNotFoundError:
            return False
        except BlockingIOError:
            return True

    def check(self) -> None:
        """Readiness: the directory is still there and writable (a probe file is written and removed)."""
        check_writable(self.root)

    def patiently(self, call: Callable[[], T]) -> T:
        return call()  # a local disk is there or it is not: nothing to wait for
