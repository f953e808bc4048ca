"""How long training takes to collect recorded annotations from the S3 and local stores: ``python bench/store_bench.py``.

Bakes the text variant and starts moto's standalone S3 server (a real process on a
free loopback port, as the baked repo's tests do), then brings the store to the
state a training meets after ``--annotations`` (100,000 by default) webhooks:

- the last ``--tail`` (2,000) are recorded exactly as webhooks record them, one
  ``save_annotation`` each from 16 threads (16 webhooks at once): one pending
  object each, folded in the background every 100 per process;
- the ones before are seeded as what that background compaction leaves behind:
  segments of 100 operations, merged by the store's own ``compact`` as it
  merges them (four of about one size into one). (Recording all 100,000 one by one is ``--tail 100000``: moto
  answers about 100 PUTs a second on this machine, so that takes 15 minutes and
  measures moto more than the store.)

Then it times what a training does first: ``annotations()`` in a fresh store (reading
the segments and pending objects in parallel, and folding them into one segment),
a second collect (one segment), and ``count_annotations`` (what ``TRAIN_EVERY_N``
and ``GET /training`` ask).

The local store (``MODEL_DIR``) keeps the same annotation log over the local disk:
all ``--annotations`` are recorded into it one by one from the same threads, and
collected by a fresh store. The baseline is the former local layout (one file per
annotation, read one by one as that store did), holding the same annotations and
collected in the same run; and the first collect after an upgrade (that layout read
through the log, which folds it into a segment).
Targets: the S3 collect under 10 s; the local collect no slower than the S3 one, within
``NOISE`` (both run the same code over the same segments, so they tie to within this
machine's run-to-run noise; a local store slower beyond it means the disk path regressed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cookiecutter.main import cookiecutter

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
NOISE = 0.10  # run-to-run spread of one collect on a quiet 2-core machine
TEXTS = ["a warm, funny film with a great cast", "dull plot, wooden acting and far too long",
         "the soundtrack alone is worth the ticket", "I walked out halfway through"]


def annotation(i: int) -> dict:
    """One annotation as the webhook records it (``normalize_annotation``'s shape), about 400 bytes."""
    label = "Positive" if i % 2 == 0 else "Negative"
    return {"id": 100_000 + i, "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                           "value": {"choices": [label]}, "origin": "manual"}],
            "was_cancelled": False, "updated_at": f"2026-12-02T10:{i // 3600 % 60:02d}:{i % 60:02d}Z",
            "task": {"id": 200_000 + i, "data": {"text": f"{TEXTS[i % len(TEXTS)]} (review {i})"}}}


def record(store, numbers: range, threads: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda i: store.save_annotation(annotation(i)), numbers, chunksize=64):
            pass
    return time.monotonic() - started


def seed(store, numbers: range, per_segment: int) -> None:
    """Write what background compaction leaves after these webhooks: segments, merged 8 at a time."""
    from lsbackend.annotations import op_key

    log = store.annotation_log()
    for start in range(numbers.start, numbers.stop, per_segment):
        batch = range(start, min(start + per_segment, numbers.stop))
        log._write_segment({annotation(i)["id"]: (op_key(), annotation(i)) for i in batch}, [])
        log.compact()  # merges segments as a background compaction does


def former_collect(folder: Path) -> list[dict]:
    """The former local store's collect: every ``<id>.json`` file, in name order, read and parsed one by one."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".json") and not e.name.startswith("."))
    return [json.loads((folder / name).read_text(encoding="utf-8")) for name in names]


def write_former_layout(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{annotation(i)['id']}.json").write_text(json.dumps(annotation(i)), encoding="utf-8")


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotations", type=int, default=100_000)
    parser.add_argument("--tail", type=int, default=2_000, help="annotations recorded one by one, as webhooks do")
    parser.add_argument("--threads", type=int, default=16, help="webhooks recording at once")
    parser.add_argument("--quick", action="store_true", help="2,000 annotations (a smoke run, no figure)")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    n = 2_000 if args.quick else args.annotations
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp_name:
        tmp = Path(tmp_name)
        repo = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp / "baked"),
                                 extra_context={"model_type": "text_classification"}))
        sys.path[:0] = [str(repo), str(repo / "tests" / "runtime")]
        from harness import S3_CREDENTIALS, MotoServer, wait_until
        from lsbackend import blob_store
        from lsbackend.app import open_store
        from lsbackend.settings import Settings
        from lsbackend.storage import LocalModelStore

        os.environ.update(S3_CREDENTIALS)
        moto = MotoServer(tmp / "moto.log")
        try:
            settings = Settings(model_dir=tmp / "models", model_store=moto.bucket("bench"), s3_endpoint_url=moto.url)
            stores = open_store(settings)
            s3 = stores.project("1")
            tail = min(args.tail, n)
            print(f"seeding {n - tail:,} annotations as compacted segments ...", flush=True)
            seed_time, _ = timed(lambda: seed(s3, range(n - tail), blob_store.PENDING_BEFORE_COMPACT))
            print(f"recording {tail:,} annotations into S3 (moto) from {args.threads} threads ...", flush=True)
            s3_record = record(s3, range(n - tail, n), args.threads)
            wait_until(lambda: not stores._compacting, "background compactions", timeout=600, interval=0.1)
            keys = sorted(stores.blobs.list(s3.key("annotations/"), "bench"))
            pending = sum("/pending/" in k for k in keys)
            fresh = open_store(settings).project("1")  # a training process: nothing cached
            collect, got = timed(lambda: list(fresh.annotations()))
            assert len(got) == n and {a["id"] for a in got} == {annotation(i)["id"] for i in range(n)}
            again_store = open_store(settings).project("1")
            again, got = timed(lambda: list(again_store.annotations()))
            assert len(got) == n
            count, counted = timed(fresh.count_annotations)
            assert counted == n
            count_cached, _ = timed(fresh.count_annotations)
        finally:
            moto.stop()
        # a training process holds only its own store: the S3 phase's millions of objects (collected lists,
        # cached summaries) would otherwise be walked by every cycle collection of the local collect
        got = fresh = again_store = stores = s3 = None
        gc.collect()
        local_stores = LocalModelStore(tmp / "local")
        print(f"recording {n:,} annotations into the local store from {args.threads} threads ...", flush=True)
        local_record = record(local_stores.project("1"), range(n), args.threads)
        wait_until(lambda: not local_stores._compacting, "background compactions", timeout=600, interval=0.1)
        local_keys = local_stores.blobs.list(local_stores.project("1").key("annotations/"), "bench")
        local_pending = sum("/pending/" in k for k in local_keys)
        local = LocalModelStore(tmp / "local").project("1")  # a training process: nothing cached
        local_collect, got = timed(lambda: list(local.annotations()))
        assert len(got) == n and {a["id"] for a in got} == {annotation(i)["id"] for i in range(n)}
        local_count, counted = timed(local.count_annotations)
        assert counted == n
        former = tmp / "former" / "projects" / "1" / "annotations"
        print(f"writing {n:,} annotations in the former local layout ...", flush=True)
        write_former_layout(former, n)
        former_time, got = timed(lambda: former_collect(former))
        assert len(got) == n
        upgraded, got = timed(lambda: list(LocalModelStore(tmp / "former").project("1").annotations()))
        assert len(got) == n
        for thread in threading.enumerate():  # the collects' folds write into the folder about to go
            if thread.name == "fold-annotations":
                thread.join()
    load = os.getloadavg()[0]
    rows = [
        ("record (webhooks, 16 at once)", (f"{tail / s3_record:.0f}/s ({tail:,} recorded, {n - tail:,} seeded "
         f"in {seed_time:.0f} s)"), f"{n / local_record:.0f}/s", ""),
        ("collect for training", f"{collect:.2f} s ({len(keys) - pending} segments + {pending} pending)",
         f"{local_collect:.2f} s ({len(local_keys) - local_pending} segments + {local_pending} pending)",
         f"{former_time:.2f} s ({n:,} files)"),
        ("collect again (one segment) / first collect after an upgrade", f"{again:.2f} s", "",
         f"{upgraded:.2f} s"),
        ("count, first / cached", f"{count:.2f} s / {count_cached:.3f} s", f"{local_count:.2f} s", ""),
    ]
    table = "\n".join([f"| {n:,} annotations | S3 (moto server) | local MODEL_DIR | local, former layout |",
                       "|---|---|---|---|", *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)])
    verdict = "met" if collect < 10 else "NOT met"
    local_ok = local_collect <= collect * (1 + NOISE)
    local_verdict = "met" if local_ok else "NOT met"
    report = (f"{table}\n\nS3 collect {collect:.2f} s: target < 10 s {verdict}. Local collect {local_collect:.2f} s: "
              f"{former_time / local_collect:.1f}x faster than the former layout's {former_time:.2f} s, "
              f"the S3 collect takes {collect / local_collect:.2f}x as long (target: local no slower than S3 "
              f"beyond {NOISE:.0%} noise, {local_verdict}). "
              f"Load average {load:.1f} on {os.cpu_count()} cores.\n")
    print(report)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store_bench.md").write_text(report, encoding="utf-8")
        (args.out / "store_bench.json").write_text(json.dumps({
            "annotations": n, "recorded": tail, "s3_record_per_s": tail / s3_record, "s3_collect_s": collect, "s3_collect_again_s": again,
            "s3_count_s": count, "local_record_per_s": n / local_record, "local_collect_s": local_collect,
            "pending_at_collect": pending, "segments_at_collect": len(keys) - pending, "load": load,
            "local_count_s": local_count, "former_local_collect_s": former_time, "upgrade_collect_s": upgraded,
        }, indent=2), encoding="utf-8")
    return 0 if args.quick or (collect < 10 and local_ok) else 1


if __name__ == "__main__":
    threading.excepthook = lambda hook: print(f"thread {hook.thread}: {hook.exc_value!r}", file=sys.stderr)
    sys.exit(main())
