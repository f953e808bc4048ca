"""Recorded annotations as a log of operations over ``blobs.Blobs``, compacted, never one object per read.

Each webhook writes one small *pending* object holding one operation: "annotation
N is now this" or "annotation N is gone". Its key is unique and orders
operations in time (``<time_ns>-<random>``); for every annotation the
operation with the highest key wins. Compaction reads pending objects (and,
when merging, the *segment* objects), writes what they say as one new
segment, then deletes exactly the objects it read. Every step may be repeated
or interrupted:

- a crash after the segment is written but before the merged objects are
  deleted leaves some operations twice: harmless, the same key says the same;
- two processes compacting at once both write segments and both delete what
  they read: still each operation at least once, nothing lost;
- a deletion is itself an operation (a tombstone kept in segments), so an
  older copy of the annotation left in another object cannot resurrect it.

Training reads a handful of segments plus the few pending objects, in
parallel, and folds them into one segment afterwards, in a thread, while it
fits; ``bench/store_bench.py`` (the template's) times 100,000 annotations.
Counting (``TRAIN_EVERY_N``, ``GET /training``) keeps per-object summaries in
memory: segments never change once written, so each is read once per process.

The same log serves the local disk and S3 (on disk, 100,000 files took 5 s to
collect; a few segments take about 1 s). Files of the former local layout
(``annotations/<id>.json``, one per annotation) are read as the oldest operations
and folded into a segment by the first compaction, so an upgrade loses nothing.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from .blobs import Blobs
from .errors import StorageError

log = logging.getLogger(__name__)

SEGMENTS_PER_SIZE = 4  # segments of about one size that a compaction merges into one

LEGACY_KEY = "0" * 20  # older than every operation key: an annotation file of the former local layout
T = TypeVar("T")
#: annotation number -> (operation key, the annotation or None when deleted)
Ops = dict[int, tuple[str, dict | None]]


def op_key() -> str:
    """Unique, and ordered by time across processes (to the clocks' agreement)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"


def _merge(into: Ops, ops: Ops) -> None:
    """Keep, per annotation, the operation with the highest key."""
    for number, (key, annotation) in ops.items():
        mine = into.get(number)
        if mine is None or key > mine[0]:
            into[number] = (key, annotation)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsing segments makes millions of objects that all stay alive; meanwhile Python's cycle collector
    would walk them again and again, finding nothing (70% of a 100,000-annotation collect).

    The pause is process-wide but lasts only the parse, and the collector comes back on only if it was
    on. Reference counting goes on freeing everything meanwhile; only garbage in cycles waits."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _loads(data: bytes) -> Any:
    """orjson (faster on a 100,000-annotation segment), or json for what orjson refuses (a lone surrogate,
    which json.dumps writes as an escape for a text Label Studio sent)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _dumps(value: Any) -> bytes:
    """orjson: a 100,000-annotation segment in a fraction of json's time, during which json's encoder would
    hold the GIL and stall the training that just collected; json for a lone surrogate, which orjson refuses."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value).encode()


def _parse(key: str, data: bytes | None) -> Ops:
    """A pending object (one operation, JSON) or a segment (many, gzipped JSON) as ``Ops``."""
    if data is None:  # deleted by a concurrent compaction after we listed it: its segment holds it
        return {}
    if key.endswith(".json.gz"):
        return {int(n): (k, a) for n, (k, a) in _loads(gzip.decompress(data)).items()}
    op = _loads(data)
    if "key" not in op:  # annotations/<id>.json of the former local layout: the annotation itself
        return {int(key.rsplit("/", 1)[1][:-5]): (LEGACY_KEY, op)}
    return {int(op["id"]): (op["key"], op["annotation"])}


class Summaries:
    """Per log object, what counting needs (annotation -> newest key, alive), shared by a process's stores."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict[int, tuple[str, bool]]] = {}
        self.lock = threading.Lock()


class AnnotationLog:
    """One project's recorded annotations under ``prefix`` (``pending/`` and ``segments/``)."""

    def __init__(self, blobs: Blobs, prefix: str, summaries: Summaries) -> None:
        self.s = blobs
        self.summaries = summaries
        self.prefix = prefix
        self.pending = prefix + "pending/"
        self.segments = prefix + "segments/"

    def _keys(self, prefix: str) -> list[str]:
        return sorted(self.s.list(prefix, "the recorded annotations"))

    def _pending_keys(self) -> list[str]:
        """Pending objects, and the files of the former local layout (``<prefix><id>.json``; only a disk had it,
        so S3 saves the listing)."""
        if self.s.medium != "file":
            return self._keys(self.pending)
        legacy = [k for k in self._keys(self.prefix) if k[len(self.prefix):-5].isdigit() and k.endswith(".json")]
        return self._keys(self.pending) + legacy

    def record(self, number: int, annotation: dict | None) -> None:
        """Write one operation (``None``: the annotation is deleted) as a pending object."""
        key = op_key()
        body = json.dumps({"key": key, "id": number, "annotation": annotation}).encode()  # ASCII escapes: any str
        what = f"annotation {number}" + (" (deleting it)" if annotation is None else "")
        self.s.put(f"{self.pending}{key}.json", body, what)

    def forget(self, number: int) -> bool:
        """Record the deletion of ``number``; False (nothing written) when it is not recorded."""
        entry = self._summary().get(number)
        if entry is None or not entry[1]:
            return False
        self.record(number, None)
        return True

    def count(self) -> int:
        return sum(1 for _, alive in self._summary().values() if alive)

    def _summary(self) -> dict[int, tuple[str, bool]]:
        """Per annotation: its newest operation's key and whether it is alive, from cached per-object summaries."""
        with self.summaries.lock:
            cached = dict(self.summaries.by_key)
        found = self._gather(lambda key, data: {n: (k, a is not None) for n, (k, a) in _parse(key, data).items()},
                             cached)
        with self.summaries.lock:
            mine = [k for k in self.summaries.by_key if k.startswith(self.prefix) and k not in found]
            for gone in mine:
                del self.summaries.by_key[gone]
            self.summaries.by_key.update(found)
        merged: dict[int, tuple[str, bool]] = {}
        for summary in found.values():
            for number, (k, alive) in summary.items():
                known = merged.get(number)
                if known is None or k > known[0]:
                    merged[number] = (k, alive)
        return merged

    def _gather(self, parse: Callable[[str, bytes], T], cached: dict[str, T] | None = None) -> dict[str, T]:
        """Every object of the log, parsed, by key.

        Pending objects are listed before segments: a compaction between the two listings moves
        operations from a pending object we saw into a segment we then see, never the other way.
        An object deleted between listing and reading was compacted into a segment: the segments are
        listed again until that segment is read too.
        """
        keys = self._pending_keys() + self._keys(self.segments)
        found: dict[str, T] = {}
        gone: set[str] = set()
        for _ in range(20):
            todo = [k for k in keys if k not in found and k not in gone]
            found.update({k: cached[k] for k in todo if cached and k in cached})
            fetch = [k for k in todo if k not in found]
            for key, data in zip(fetch, self.s.get_many(fetch, "the recorded annotations"), strict=True):
                if data is None:
                    gone.add(key)
                else:
                    with _collector_paused():
                        found[key] = parse(key, data)
            if not gone.intersection(fetch):
                return found
            keys = self._keys(self.segments)  # where their operations went
        raise StorageError(f"{self.s.name}: the recorded annotations kept being compacted while they "
                           "were read; try again")

    def _read(self, keys: list[str]) -> Ops:
        ops: Ops = {}
        for key, data in zip(keys, self.s.get_many(keys, "the recorded annotations"), strict=True):
            with _collector_paused():
                _merge(ops, _parse(key, data))
        return ops

    def collect(self) -> Iterator[dict]:
        """Every recorded annotation (what training reads).

        What was read is then folded into one segment by a thread of this process, while the
        training goes on (a process that exits first leaves it to the next collect: nothing lost).
        """
        found = self._gather(_parse)
        ops: Ops = {}
        with _collector_paused():
            for parsed in found.values():
                _merge(ops, parsed)
        if len(found) > 1 or any(k.startswith(self.pending) for k in found):
            threading.Thread(target=self._fold, args=(ops, sorted(found)), name="fold-annotations").start()
        for number in sorted(ops):
            annotation = ops[number][1]
            if annotation is not None:
                yield annotation

    def _fold(self, ops: Ops, merged: list[str]) -> None:
        try:
            self._write_segment(ops, merged)
        except StorageError as exc:  # a later collect or compaction folds them
            log.warning("recorded annotations stay unfolded for now: %s", exc)

    def compact(self, merge_all: bool = False) -> None:
        """Fold pending objects into a new segment (what a replica does in the background every so often).

        Segments of about the same size (a power of 4 in bytes) are merged once ``SEGMENTS_PER_SIZE`` of
        them pile up, so each annotation is rewritten a few times over its life, not at every merge
        (``merge_all``: every segment); training folds everything into one.
        """
        pending = self._pending_keys()  # first: see _gather
        segments = self.s.list(self.segments, "the recorded annotations")
        by_size: dict[int, list[str]] = {}
        for key, size in segments.items():
            by_size.setdefault(int(math.log(max(size, 1), 4)), []).append(key)
        full = [keys for keys in by_size.values() if len(keys) >= SEGMENTS_PER_SIZE]
        merging = sorted(segments) if merge_all else sorted(k for keys in full for k in keys)
        read = pending + merging
        if read and (pending or len(read) > 1):
            self._write_segment(self._read(read), read)

    def _write_segment(self, ops: Ops, merged: list[str]) -> None:
        """Write ``ops`` as one segment, then delete the objects they came from (in that order: see above)."""
        body = gzip.compress(_dumps({str(n): [k, a] for n, (k, a) in ops.items()}), compresslevel=1)
        self.s.put(f"{self.segments}{op_key()}.json.gz", body, "the recorded annotations (compacting them)")
        self.s.delete(merged, "compacted annotation objects")
        log.info("compacted %d annotation objects into one segment of %d operations", len(merged), len(ops))
