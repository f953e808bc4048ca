"""A lock on S3 that a killed holder cannot keep: a lease object, created only if absent, renewed by its holder.

Age is the store's clock (the object's Last-Modified against the answer's
Date header), so replicas with skewed clocks agree on when it expired.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING

from .s3_client import is_conflict, is_missing

if TYPE_CHECKING:
    from .s3_blobs import S3Blobs

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # a lock whose holder stopped renewing is free after this


class Lease:
    """One holder's attempt at the lock object ``key``; ``lost`` turns true when another process took it over."""

    def __init__(self, blobs: S3Blobs, key: str, what: str, seconds: float | None = None) -> None:
        self.s, self.key, self.what = blobs, blobs.prefix + key, what
        self.seconds = seconds or LEASE_SECONDS
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex}).encode()

    def _put(self, **condition: str) -> str:
        return self.s.client.put_object(Bucket=self.s.bucket, Key=self.key, Body=self.body, **condition)["ETag"]

    def acquire(self) -> None:
        while not self._try_once():
            time.sleep(0.25)
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.key}", daemon=True)
        self._renewer.start()

    def _try_once(self) -> bool:
        with self.s.io(f"take {self.what}"):
            try:
                self.etag = self._put(IfNoneMatch="*")
                return True
            except Exception as exc:
                if not is_conflict(exc):
                    raise
            head = self.s.head(self.key[len(self.s.prefix):])
            if head is None or not self._expired(head):
                return False
            try:  # the holder died: take the lease over, unless someone else just did
                self.etag = self._put(IfMatch=head["ETag"])
            except Exception as exc:
                if is_conflict(exc) or is_missing(exc):
                    return False
                raise
            log.warning("%s: took over %s, whose holder stopped renewing it", self.key, self.what)
            return True

    def _expired(self, head: dict) -> bool:
        date = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
        return now - head["LastModified"].timestamp() > self.seconds

    def held_by_anyone(self) -> bool:
        head = self.s.head(self.key[len(self.s.prefix):])
        return head is not None and not self._expired(head)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                assert self.etag is not None
                self.etag = self._put(IfMatch=self.etag)
            except Exception as exc:  # noqa: BLE001
                if is_conflict(exc) or is_missing(exc):
                    self.lost = True
                    log.error("%s: lost %s (it expired and another process took it)", self.key, self.what)
                    return
                log.warning("%s: cannot renew %s yet (%s)", self.key, self.what, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost:
            return
        try:  # only our own lease: another holder's (after ours expired) has another ETag
            self.s.client.delete_object(Bucket=self.s.bucket, Key=self.key, IfMatch=self.etag)
        except Exception as exc:  # noqa: BLE001 (unreachable: the lease expires by itself)
            if not (is_conflict(exc) or is_missing(exc)):
                log.warning("%s: cannot release %s (%s); it expires in %.0f s", self.key, self.what, exc,
                            self.seconds)
