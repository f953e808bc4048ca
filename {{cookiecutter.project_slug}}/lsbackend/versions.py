"""Model versions: their names (``v12-20261128T101500``), their order, and which kept one a project serves.

A model that was saved whole can still fail to load later: a disk or object
flipped a byte (its checksum says so), a file was cut short, or a pickle
needs a class that was renamed since. Serving must go on, so a project serves
its current version when it loads, else the newest older kept version that
does, else a newer one; the broken version is noted, with what was wrong,
for ``problem`` (``GET /training`` and ``/ready`` show it) until its file or
object changes (restored), when it is tried again.

The store (``blob_store.BlobProjectStore``, over the local disk or S3) keeps
the bytes and notes; this base class holds the policy. A store supplies
``project`` and the abstract methods below (a store that misses one cannot be
created); it names what a model is kept in (``MEDIUM``) and which errors mean
"the store is unreachable", not "this version is broken" (``UNREACHABLE``).
"""

from __future__ import annotations

import abc
import logging
import pickle
import re
import time

log = logging.getLogger(__name__)

VERSION = re.compile(r"v(\d+)(?:-[^/]*)?")


def version_number(version: str | None) -> int | None:
    """``v12-20261128T...`` -> 12; None for a name that is not a version."""
    match = VERSION.fullmatch(version or "")
    return int(match.group(1)) if match else None


class UnknownVersion(LookupError):
    """A model version that is not (or no longer) kept; the message lists the kept ones."""


class VersionFallback(abc.ABC):
    MEDIUM = "file"  # what the messages tell the user to restore
    UNREACHABLE: tuple[type[Exception], ...] = ()
    project: str

    # --- what a store supplies ----------------------------------------------------
    @abc.abstractmethod
    def current_version(self) -> str | None:
        """The version the pointer names (None before the first training)."""

    @abc.abstractmethod
    def versions(self) -> list[str]:
        """The kept versions, newest first by their number."""

    @abc.abstractmethod
    def _verified_bytes(self, version: str) -> bytes:
        """A version's pickled train_output, checked against its checksum (raises when it does not match)."""

    @abc.abstractmethod
    def _may_load(self, version: str, kept: list[str]) -> bool:
        """Whether a version looks loadable (complete, not changed since it failed), without loading it."""

    @abc.abstractmethod
    def _read_broken(self) -> dict:
        """The saved notes on broken versions, by version."""

    @abc.abstractmethod
    def _note(self, version: str, error: object) -> dict:
        """The note for a broken version: the error and what identifies its bytes (restored = changed)."""

    @abc.abstractmethod
    def _save_broken(self, broken: dict[str, dict]) -> None:
        """Keep the notes on broken versions (replacing the saved ones)."""

    @abc.abstractmethod
    def _point_at(self, version: str) -> None:
        """Move the pointer: every process serves ``version`` from now on."""

    # --- the policy ---------------------------------------------------------------

    def load_model(self) -> tuple[str, dict] | None:
        """The (version, train_output) to serve, or None when no kept version loads (or none was saved)."""
        current = self.current_version()
        broken = self._broken()
        for version in self._candidates(current, self.versions()):
            try:
                output = pickle.loads(self._verified_bytes(version))
                if not isinstance(output, dict):
                    raise TypeError(f"holds a {type(output).__name__}, not the dict fit returned")
            except self.UNREACHABLE:
                raise  # the store is unreachable: no version is known to be broken
            except Exception as exc:  # noqa: BLE001 (any unpickling failure means: try an older version)
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                error = f"{type(exc).__name__}: {why}"[:300]
                log.error("project %s: model %s cannot be loaded (%s)", self.project, version, error)
                broken[version] = self._note(version, error)
                continue
            if version != current:
                log.warning("project %s: serving %s because %s cannot be loaded", self.project, version, current)
            if broken != self._broken():
                self._save_broken({v: n for v, n in broken.items() if v != version})
            return version, output
        if broken != self._broken():
            self._save_broken(broken)
        return None

    def load_version(self, version: str) -> dict:
        """One kept version's train_output (to score it), whichever version is current; ``UnknownVersion``
        when it is not kept or does not load."""
        if version not in self.versions():
            listed = ", ".join(self.versions()) or "none yet"
            raise UnknownVersion(f"version {version!r} is not kept for this project (kept: {listed})")
        try:
            output = pickle.loads(self._verified_bytes(version))
        except self.UNREACHABLE:
            raise
        except Exception as exc:  # noqa: BLE001 (any unpickling failure: this version cannot be used)
            raise UnknownVersion(f"version {version!r} cannot be loaded ({type(exc).__name__}: {exc})") from None
        if not isinstance(output, dict):
            raise UnknownVersion(f"version {version!r} holds a {type(output).__name__}, not the dict fit returned")
        return output

    def served_version(self) -> str | None:
        """The version ``load_model`` would serve, judged without loading a model (``/setup`` must be quick)."""
        broken, kept = self._broken(), self.versions()
        for version in self._candidates(self.current_version(), kept):
            if version not in broken and self._may_load(version, kept):
                return version
        return None

    def problem(self, served: str | None) -> str | None:
        """Why ``served`` is not the current version, in one line; None when it is."""
        current = self.current_version()
        if current is None or served == current:
            return None
        why = self._broken().get(current, {}).get("error") or f"its {self.MEDIUM} is missing or incomplete"
        instead = f"serving {served}" if served else "serving no model (no kept version loads)"
        return f"{instead}: model {current} cannot be loaded ({why}); train again or restore its {self.MEDIUM}"

    @staticmethod
    def _candidates(current: str | None, kept: list[str]) -> list[str]:
        """Versions to try, in order: the current one, then older kept ones, newest first, then newer ones."""
        number = version_number(current) if current else None
        older = [v for v in kept if v != current and (number is None or (version_number(v) or 0) < number)]
        newer = [v for v in kept if v != current and v not in older]
        return ([current] if current else []) + older + newer

    def _broken(self) -> dict[str, dict]:
        """The noted broken versions whose file or object is still the one that failed."""
        noted = self._read_broken()
        return {v: n for v, n in noted.items() if isinstance(n, dict) and n == self._note(v, n.get("error"))}

    def use_version(self, version: str) -> None:
        """Make a kept version current again; every process picks it up through the pointer."""
        kept = self.versions()
        if version not in kept:
            listed = ", ".join(kept) or "none yet"
            raise UnknownVersion(f"version {version!r} is not kept for this project (kept: {listed})")
        broken = self._broken().get(version)
        if broken:
            raise UnknownVersion(f"version {version!r} cannot be loaded ({broken.get('error')}); pick another")
        self._point_at(version)

    def _next_version(self) -> str:
        """One more than the highest version number seen, so an existing model is never overwritten."""
        numbers = [version_number(v) or 0 for v in [*self.versions(), self.current_version() or "v0"]]
        return f"v{max(numbers) + 1}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
