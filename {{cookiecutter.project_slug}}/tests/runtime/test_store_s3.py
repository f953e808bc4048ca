"""The model store's promises (``storage.ProjectStore``), kept by both implementations of its blobs: the
local MODEL_DIR and S3 (``MODEL_STORE=s3://...``, against moto's real S3 server process), the annotation
log and its compaction included; plus what only a shared store has to get right: the pointer cache, the
lease lock, replicas on one bucket, and the store going away for a while."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from lsbackend import blob_store, s3_blobs, s3_lease, storage_s3
from lsbackend.app import build_backend, open_store
from lsbackend.errors import StorageError
from lsbackend.server import create_app
from lsbackend.settings import Settings
from lsbackend.storage import LocalModelStore, UnknownVersion

from conftest import EXAMPLES_CONFIG, MODEL_CLASS, ROOT, holdout_request, training_events
from harness import S3_CREDENTIALS, MotoServer, wait_for_training, wait_until
from test_faults import ENV, Gunicorn, annotations

pytestmark = pytest.mark.slow  # an S3 server (moto) in its own process, and gunicorn replicas
PROJECT = "7"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_settings(moto, tmp_path, monkeypatch) -> Settings:
    """Settings for a fresh bucket on the moto server (boto3 reads the credentials from the environment)."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    store = moto.bucket(f"t-{uuid.uuid4().hex[:12]}")
    return Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG, train_debounce_seconds=0.2,
                    keep_versions=2, model_store=store, s3_endpoint_url=moto.url)


@pytest.fixture(params=["local", "s3"])
def opener(request, tmp_path):
    """Opens the store again over the same disk or bucket (another process would); each contract test
    runs against both implementations."""
    if request.param == "local":
        return lambda: LocalModelStore(tmp_path / "local", keep_versions=2)
    settings = request.getfixturevalue("s3_settings")
    return lambda: open_store(settings)


@pytest.fixture
def stores(opener):
    return opener()


def corrupt(store, project: str, version: str) -> None:
    """Flip bytes of a saved model, as a disk or a bad restore would."""
    if isinstance(store, LocalModelStore):  # in place: same file, same size
        path = store.project(project).dir / "models" / f"{version}.pkl"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    key = store.project(project).key(f"models/{version}.pkl")
    data = bytearray(store.blobs.get(key, "test"))
    data[len(data) // 2] ^= 0xFF
    store.blobs.put(key, bytes(data), "test")


# --- the ProjectStore promises, for both stores ------------------------------------------------------
def test_a_version_saved_but_not_promoted_is_kept_loadable_and_not_served(stores):
    """What the promotion rule needs: a worse version is kept (to use by hand) while the pointer stays."""
    store = stores.project(PROJECT)
    served = store.save_model({"weights": [1]})
    stamp = store.stamp()
    kept = store.save_model({"weights": [2]}, current=False)
    assert store.current_version() == served and store.stamp() == stamp and store.load_model()[0] == served
    assert store.versions() == [kept, served] and store.load_version(kept) == {"weights": [2]}
    with pytest.raises(UnknownVersion, match="not kept"):
        store.load_version("v99")
    assert store.evaluations() == {}
    store.save_evaluations({kept: {"held_out": 0.2, "evaluation": {"score": 0.5}}})
    assert stores.project(PROJECT).evaluations() == {kept: {"held_out": 0.2, "evaluation": {"score": 0.5}}}


def test_a_saved_model_becomes_current_and_older_versions_stay_until_pruned(stores):
    store = stores.project(PROJECT)
    assert store.current_version() is None and store.load_model() is None and store.versions() == []
    before = store.stamp()
    first = store.save_model({"weights": [1]})
    assert store.current_version() == first and store.stamp() != before
    second = store.save_model({"weights": [2]})
    third = store.save_model({"weights": [3]})
    assert store.versions() == [third, second]  # keep_versions=2, newest first
    assert store.load_model() == (third, {"weights": [3]}) and store.served_version() == third
    store.use_version(second)
    assert stores.project(PROJECT).load_model() == (second, {"weights": [2]})
    with pytest.raises(UnknownVersion, match="kept: "):
        store.use_version(first)


def test_a_corrupt_current_model_falls_back_to_the_newest_that_loads_and_says_why(stores):
    store = stores.project(PROJECT)
    good = store.save_model({"weights": [1]})
    bad = store.save_model({"weights": [2] * 1000})
    corrupt(stores, PROJECT, bad)
    assert store.load_model() == (good, {"weights": [1]})
    assert store.served_version() == good
    problem = store.problem(good)
    assert f"model {bad} cannot be loaded" in problem and "checksum" in problem


def damage(store, project: str, version: str, how: str) -> None:
    """Damage a saved model through the store's own blobs, as a disk, a bad restore or a hand would."""
    key = store.project(project).key(f"models/{version}.pkl")
    data = store.blobs.get(key, "test")
    if how == "missing":
        store.blobs.delete([key], "test")
        return
    broken = {"truncated": data[: len(data) // 2], "garbage": b"\x00not a pickle" * 100, "empty": b"",
              "corrupt-middle": data[: len(data) // 2] + b"\xff\xfe\xfd" * 20 + data[len(data) // 2 + 60:]}[how]
    store.blobs.put(key, broken, "test")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "missing", "corrupt-middle"])
def test_a_broken_current_model_is_never_named_or_served_by_a_fresh_process(opener, how):
    """/setup (``served_version``, no model loaded) and /predict (``load_model``) agree on the fallback, in a
    process that never saw the model whole; a restored model is served again."""
    store = opener().project(PROJECT)
    good = store.save_model({"weights": [1]})
    bad = store.save_model({"weights": [2] * 1000})
    saved = opener().blobs.get(store.key(f"models/{bad}.pkl"), "test")
    damage(opener(), PROJECT, bad, how)
    fresh = opener().project(PROJECT)
    assert fresh.served_version() == good and fresh.current_version() == bad
    assert fresh.load_model() == (good, {"weights": [1]})
    assert f"serving {good}: model {bad} cannot be loaded" in fresh.problem(good)
    assert opener().project(PROJECT).served_version() == good
    opener().blobs.put(store.key(f"models/{bad}.pkl"), saved, "test")  # restored from a backup
    again = opener().project(PROJECT)
    assert again.load_model() == (bad, {"weights": [2] * 1000}) and again.problem(bad) is None


def test_the_former_local_layout_of_annotations_is_read_and_folded(tmp_path):
    """Before the annotation log, MODEL_DIR held one ``annotations/<id>.json`` per annotation: an upgrade
    must train on them, let newer operations win over them, and fold them into a segment."""
    folder = tmp_path / "projects" / PROJECT / "annotations"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"{i}.json").write_text(json.dumps({"id": i, "result": [i]}), encoding="utf-8")
    store = LocalModelStore(tmp_path).project(PROJECT)
    assert store.count_annotations() == 5
    store.save_annotation({"id": 1, "result": ["edited"]})
    assert store.delete_annotation(2) and store.count_annotations() == 4
    expected = {0: [0], 1: ["edited"], 3: [3], 4: [4]}
    assert {a["id"]: a["result"] for a in store.annotations()} == expected
    wait_until(lambda: not list(folder.glob("*.json")), "the collect to fold the former files", timeout=60)
    assert {a["id"]: a["result"] for a in LocalModelStore(tmp_path).project(PROJECT).annotations()} == expected


def test_annotations_are_recorded_updated_deleted_and_counted(stores):
    store = stores.project(PROJECT)
    for i in range(5):
        store.save_annotation({"id": i, "result": [i], "updated_at": "a"})
    store.save_annotation({"id": 2, "result": ["new"], "updated_at": "b"})
    assert store.delete_annotation(3) is True
    assert store.delete_annotation(3) is False and store.delete_annotation(99) is False
    assert store.delete_annotation("not-an-id") is False
    assert store.count_annotations() == 4
    by_id = {a["id"]: a for a in store.annotations()}
    assert sorted(by_id) == [0, 1, 2, 4] and by_id[2]["result"] == ["new"]
    store.save_annotation({"id": 3, "result": ["again"], "updated_at": "c"})  # recorded again after deletion
    assert {a["id"]: a["result"] for a in store.annotations()}[3] == ["again"]
    assert store.count_annotations() == 5
    with pytest.raises(ValueError, match="not an integer"):
        store.save_annotation({"id": "../x", "result": []})


def test_reading_annotations_leaves_the_cycle_collector_as_it_found_it(stores):
    """The log pauses Python's cycle collector while it parses segments; the process gets it back."""
    store = stores.project(PROJECT)
    for i in range(3):
        store.save_annotation({"id": i, "result": [i]})
    store.annotation_log().compact(merge_all=True)
    assert len(list(store.annotations())) == 3 and store.count_annotations() == 3
    assert gc.isenabled()
    gc.disable()  # a process that runs without it (some servers do) keeps running without it
    try:
        assert len(list(stores.project(PROJECT).annotations())) == 3
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_annotation_with_a_lone_surrogate_survives_compaction(stores):
    """Label Studio can send text JSON escapes as a lone surrogate; segments are written by orjson, which
    refuses it, so that segment falls back to json."""
    store = stores.project(PROJECT)
    store.save_annotation({"id": 1, "result": ["\ud800 odd"]})
    store.save_annotation({"id": 2, "result": ["plain"]})
    store.annotation_log().compact(merge_all=True)
    assert _ops(stores, PROJECT)["pending"] == []
    assert {a["id"]: a["result"] for a in store.annotations()} == {1: ["\ud800 odd"], 2: ["plain"]}


def test_config_extra_params_and_status_round_trip(stores):
    store = stores.project(PROJECT)
    assert store.label_config() is None and store.extra_params() == {} and store.status() == {"state": "idle"}
    stamp = store.stamp()
    store.save_label_config("<View>\u00e9</View>")
    store.save_extra_params({"threshold": 0.5})
    store.save_status({"state": "running", "started_at": 1.0})
    again = stores.project(PROJECT)
    assert again.label_config() == "<View>\u00e9</View>" and again.extra_params() == {"threshold": 0.5}
    assert again.status() == {"state": "running", "started_at": 1.0}
    assert again.stamp() != stamp  # new extra params rebuild the model
    with pytest.raises(ValueError, match="not a Label Studio project id"):
        stores.project("../etc")


def test_the_project_set_up_last_is_shared(stores):
    assert stores.last_setup() is None
    stores.note_setup("3")
    stores.note_setup("12")
    assert stores.last_setup() == "12"


def test_the_training_lock_is_held_by_one_holder_at_a_time(stores):
    store = stores.project(PROJECT)
    order: list[str] = []
    assert not store.training_running()
    with store.training_lock():
        assert stores.project(PROJECT).training_running()
        waiter = threading.Thread(target=lambda: _hold(stores.project(PROJECT), order))
        waiter.start()
        time.sleep(1.0)  # the waiter must still be waiting (it appends only once it holds the lock)
        order.append("first released")
    waiter.join(timeout=60)
    assert order == ["first released", "second held"]
    assert not store.training_running()


def _hold(store, order: list[str]) -> None:
    with store.training_lock():
        order.append("second held")


# --- S3 only -----------------------------------------------------------------------------------------
HOLD_LEASE = """
import sys, time
from lsbackend import storage_s3
from lsbackend.settings import Settings
settings = Settings(model_store=sys.argv[1], s3_endpoint_url=sys.argv[2])
store = storage_s3.S3ModelStore(settings, lease_seconds=float(sys.argv[3])).project("7")
with store.training_lock():
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_frees_the_s3_lock_when_its_lease_expires(s3_settings, moto):
    """The holder renews its lease while it lives; SIGKILL stops that, and the lease runs out by itself."""
    lease = 3.0
    child = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, s3_settings.model_store, moto.url, str(lease)],
                             cwd=ROOT, env={**ENV, **S3_CREDENTIALS}, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        store = storage_s3.S3ModelStore(s3_settings, lease_seconds=lease).project(PROJECT)
        time.sleep(lease * 2)  # longer than the lease: only renewals keep it
        assert store.training_running(), "a living holder lost its lease"
    finally:
        child.kill()
        child.wait()
    taken = threading.Event()

    def take() -> None:
        with store.training_lock():
            taken.set()

    threading.Thread(target=take, daemon=True).start()
    assert taken.wait(timeout=120), "the lease of a killed holder never expired"
    wait_until(lambda: not store.training_running(), "the lock to be released after use", timeout=30)


def test_a_new_version_is_seen_within_two_seconds_without_a_store_request_per_call(s3_settings):
    serving = open_store(s3_settings)  # a replica that serves
    trainer = open_store(s3_settings).project(PROJECT)  # another process that trains
    heads: list[str] = []
    serving.blobs.quick.meta.events.register("provide-client-params.s3.HeadObject",
                                       lambda params, **kw: heads.append(params["Key"]))
    store = serving.project(PROJECT)
    first = store.stamp()
    calls = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        assert store.stamp() == first
        calls += 1
    # at most one look per second: two HEADs (pointer, extra params) per look, over ~1.5 s at most 2 looks
    assert calls > 100 and len(heads) <= 4, (calls, heads)
    trainer.save_model({"weights": [1]})
    moved = time.monotonic()
    wait_until(lambda: serving.project(PROJECT).stamp() != first, "the serving store to see the new pointer",
               timeout=30)
    # bounded for the test (a loaded machine), the 2 s figure is the design: STAMP_SECONDS plus one request
    assert time.monotonic() - moved < 30
    assert s3_blobs.STAMP_SECONDS <= 1.0


def _ops(store, project: str) -> dict[str, list[str]]:
    keys = sorted(store.blobs.list(store.project(project).key("annotations/"), "test"))
    return {"pending": [k for k in keys if "/pending/" in k], "segments": [k for k in keys if "/segments/" in k]}


def test_compaction_folds_pending_objects_and_survives_a_crash_between_its_steps(opener, monkeypatch):
    stores = opener()
    store = stores.project(PROJECT)
    for i in range(30):
        store.save_annotation({"id": i, "result": [i]})
    for i in range(0, 30, 3):
        assert store.delete_annotation(i)
    store.save_annotation({"id": 3, "result": ["re-recorded"]})
    expected = {i: [i] for i in range(30) if i % 3} | {3: ["re-recorded"]}
    assert len(_ops(stores, PROJECT)["pending"]) == 41

    # a crash after the segment is written, before the merged objects are deleted
    log = store.annotation_log()
    real_delete = stores.blobs.delete

    def crash(keys, what):
        raise KeyboardInterrupt("killed between writing the segment and deleting what it merged")

    monkeypatch.setattr(stores.blobs, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        log.compact()
    monkeypatch.setattr(stores.blobs, "delete", real_delete)
    after_crash = _ops(stores, PROJECT)
    assert len(after_crash["segments"]) == 1 and len(after_crash["pending"]) == 41  # every operation twice
    assert {a["id"]: a["result"] for a in store.annotations()} == expected  # a training now: nothing doubled
    assert store.count_annotations() == len(expected)

    # the training's collect folds everything into one segment (in a thread); changes after it still win
    wait_until(lambda: _ops(stores, PROJECT) == {"pending": [], "segments": _ops(stores, PROJECT)["segments"][:1]},
               "the collect to fold everything into one segment", timeout=60)
    assert store.delete_annotation(1) and not store.delete_annotation(3 * 1000)
    store.save_annotation({"id": 2, "result": ["edited"]})
    log.compact()
    expected.pop(1)
    expected[2] = ["edited"]
    assert {a["id"]: a["result"] for a in opener().project(PROJECT).annotations()} == expected
    assert opener().project(PROJECT).count_annotations() == len(expected)


def test_two_compactions_at_once_lose_nothing(opener):
    stores = [opener() for _ in range(2)]
    writer = stores[0].project(PROJECT)
    for i in range(60):
        writer.save_annotation({"id": i, "result": [i]})
    threads = [threading.Thread(target=s.project(PROJECT).annotation_log().compact, args=(True,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["id"] for a in stores[1].project(PROJECT).annotations()) == list(range(60))


def test_reading_while_others_compact_never_misses_an_annotation(opener):
    """Counting and collecting list pending objects before segments and follow objects that a compaction
    deleted under them into its segment: a reader never sees fewer annotations than were recorded."""
    writer, reader = (opener().project(PROJECT) for _ in range(2))
    for i in range(40):
        writer.save_annotation({"id": i, "result": [i]})
    stop, seen, errors = threading.Event(), [], []

    def compact() -> None:
        for round_ in range(8):
            for i in range(40 + round_ * 5, 45 + round_ * 5):
                writer.save_annotation({"id": i, "result": [i]})
            writer.annotation_log().compact(merge_all=round_ % 2 == 0)
        stop.set()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append((reader.count_annotations(), len(list(reader.annotations()))))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=compact), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and seen, errors[:3]
    assert all(count >= 40 and collected >= 40 for count, collected in seen), seen
    assert reader.count_annotations() == 80 and sorted(a["id"] for a in reader.annotations()) == list(range(80))


def test_recording_compacts_in_the_background_every_so_many_annotations(opener, monkeypatch):
    monkeypatch.setattr(blob_store, "PENDING_BEFORE_COMPACT", 25)
    stores = opener()
    store = stores.project(PROJECT)
    for i in range(60):
        store.save_annotation({"id": i, "result": [i]})
    wait_until(lambda: len(_ops(stores, PROJECT)["pending"]) < 60 and not stores._compacting,
               "a background compaction", timeout=60)
    assert _ops(stores, PROJECT)["segments"] and store.count_annotations() == 60


def test_a_model_object_is_checked_against_its_sha256(s3_settings):
    stores = open_store(s3_settings)
    store = stores.project(PROJECT)
    version = store.save_model({"weights": [1]})
    key = stores.prefix + store.key(f"models/{version}")
    digest = stores.blobs.client.get_object(Bucket=stores.bucket, Key=f"{key}.sha256")["Body"].read()
    data = stores.blobs.client.get_object(Bucket=stores.bucket, Key=f"{key}.pkl")["Body"].read()
    assert digest.decode() == hashlib.sha256(data).hexdigest() and pickle.loads(data) == {"weights": [1]}


def test_a_missing_bucket_or_store_stops_the_backend_at_start_up_naming_the_fix(s3_settings, moto):
    missing = Settings(model_store="s3://no-such-bucket-here/x", s3_endpoint_url=moto.url)
    with pytest.raises(StorageError, match="Create the bucket|is missing") as raised:
        open_store(missing)
    assert "MODEL_STORE s3://no-such-bucket-here/x" in str(raised.value)
    nowhere = Settings(model_store=s3_settings.model_store, s3_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageError, match="S3_ENDPOINT_URL=http://127.0.0.1:9.* is unreachable"):
        open_store(nowhere)


def test_an_unreachable_store_keeps_predictions_serving_and_answers_writes_with_503(s3_settings, moto):
    """The store goes away for a while: the loaded model keeps serving, readiness and writes say why,
    nothing trained is lost, and everything recovers without a restart."""
    backend = build_backend(s3_settings, MODEL_CLASS)
    client = create_app(backend).test_client()
    trained = backend.train(PROJECT, annotations())
    assert trained["state"] == "succeeded", trained
    body = {**holdout_request(), "project": PROJECT}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200
    version = answer.get_json()["results"][0]["model_version"]
    assert version == trained["model_version"]
    event = training_events(1)[0]
    event["project"] = {"id": int(PROJECT)}

    moto.pause()
    try:
        time.sleep(s3_blobs.STAMP_SECONDS * 1.5)  # the pointer cache is stale: the next call looks
        for _ in range(3):
            answer = client.post("/predict", json=body)
            assert answer.status_code == 200, answer.get_json()
            assert {r["model_version"] for r in answer.get_json()["results"]} == {version}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "MODEL_STORE s3://" in ready.get_json()["checks"]["model_store"]
        assert f"S3_ENDPOINT_URL={moto.url}" in ready.get_json()["checks"]["model_store"]
        refused = client.post("/webhook", json=event)
        assert refused.status_code == 503, refused.get_json()
        assert "MODEL_STORE" in refused.status and "unreachable" in refused.status
        assert "S3_ENDPOINT_URL" in refused.get_json()["detail"]
    finally:
        moto.resume()
    wait_until(lambda: client.get("/ready").status_code == 200, "readiness after the store came back", timeout=60)
    assert client.post("/webhook", json=event).status_code in (200, 201)
    again = build_backend(s3_settings, MODEL_CLASS)  # a fresh process finds the trained model in the store
    assert again.store(PROJECT).current_version() == version
    assert again.store(PROJECT).count_annotations() == 1


def test_a_stopped_store_restarted_on_the_same_port_is_picked_up_without_a_restart(tmp_path, monkeypatch):
    """moto stopped (connections refused at once), then started again on its port. moto keeps objects
    in memory, so the restarted one is empty: the backend says the bucket is missing until it exists."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    moto = MotoServer(tmp_path / "moto.log")
    try:
        settings = Settings(model_dir=tmp_path / "models", label_config_path=EXAMPLES_CONFIG,
                            model_store=moto.bucket("restarted"), s3_endpoint_url=moto.url)
        backend = build_backend(settings, MODEL_CLASS)
        client = create_app(backend).test_client()
        version = backend.train(PROJECT, annotations())["model_version"]
        body = {**holdout_request(), "project": PROJECT}
        assert {r["model_version"] for r in client.post("/predict", json=body).get_json()["results"]} == {version}
        event = training_events(1)[0]
        event["project"] = {"id": int(PROJECT)}

        moto.stop()
        time.sleep(s3_blobs.STAMP_SECONDS * 1.5)
        for _ in range(3):
            answer = client.post("/predict", json=body)
            assert answer.status_code == 200 and answer.get_json()["results"][0]["model_version"] == version
        assert "is unreachable" in client.get("/ready").get_json()["checks"]["model_store"]
        refused = client.post("/webhook", json=event)
        assert refused.status_code == 503 and "MODEL_STORE" in refused.status, refused.get_json()

        moto = MotoServer(tmp_path / "moto.log", port=moto.port)
        missing = client.get("/ready")
        assert missing.status_code == 503 and "is missing" in missing.get_json()["checks"]["model_store"]
        moto.bucket("restarted")
        assert client.get("/ready").status_code == 200
        assert client.post("/webhook", json=event).status_code == 200
    finally:
        moto.stop()


def test_model_uri_on_s3_is_fetched_through_the_same_client(s3_settings, moto, tmp_path):
    """A pretrained artifact in a bucket (``MODEL_URI=s3://...``): fetched once, checked, and served."""
    from lsbackend.pretrained import PretrainedError, PretrainedModel, fetch
    from lsbackend.storage import PretrainedStore

    moto.client().put_object(Bucket=s3_settings.s3_location[0], Key="weights/w.bin", Body=b"weights")
    uri = f"s3://{s3_settings.s3_location[0]}/weights/w.bin"
    record = fetch(uri, PretrainedStore(tmp_path / "cache"), 1024, s3_endpoint_url=moto.url)
    assert record["size"] == 7 and (tmp_path / "cache" / "pretrained" / record["file"]).read_bytes() == b"weights"
    with pytest.raises(PretrainedError, match="NoSuchKey.*check the bucket and key"):
        fetch(f"{uri}.missing", PretrainedStore(tmp_path / "other"), 1024, s3_endpoint_url=moto.url)
    with pytest.raises(PretrainedError, match="larger than"):
        fetch(uri, PretrainedStore(tmp_path / "small"), 3, s3_endpoint_url=moto.url)
    loaded = PretrainedModel(uri, PretrainedStore(tmp_path / "model"), lambda path: {"bytes": path.read_bytes()},
                             1024, s3_endpoint_url=moto.url)
    assert loaded.wait(60) and loaded.get()[1] == {"bytes": b"weights"}


KILL_AT_SAVE = """
import json, os, signal, sys
from pathlib import Path
from lsbackend import s3_blobs, s3_lease
from lsbackend.app import build_backend
from lsbackend.service import load_model_class
from lsbackend.settings import Settings

store, endpoint, kill_before, annotations, config = sys.argv[1:6]
s3_lease.LEASE_SECONDS = 2.0
real_put = s3_blobs.S3Blobs.put

def put(self, key, data, what, **extra):
    if (kill_before == "model" and key.endswith(".pkl")) or (kill_before == "pointer" and key.endswith("/CURRENT")):
        os.kill(os.getpid(), signal.SIGKILL)  # as hard as a power cut, at the worst moment
    return real_put(self, key, data, what, **extra)

s3_blobs.S3Blobs.put = put
settings = Settings(model_store=store, s3_endpoint_url=endpoint, label_config_path=Path(config))
build_backend(settings, load_model_class("model")).train("7", json.loads(Path(annotations).read_text()))
sys.exit("the save step was never reached")
"""


@pytest.mark.parametrize("kill_before", ["model", "pointer"])
def test_killed_while_saving_to_s3_the_pointer_never_moves_to_a_partial_model(s3_settings, moto, tmp_path,
                                                                              kill_before, monkeypatch):
    monkeypatch.setattr(s3_lease, "LEASE_SECONDS", 2.0)
    good = build_backend(s3_settings, MODEL_CLASS).train(PROJECT, annotations())["model_version"]
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps(annotations()), encoding="utf-8")
    args = [s3_settings.model_store, moto.url, kill_before, str(data), str(EXAMPLES_CONFIG)]
    child = subprocess.run([sys.executable, "-c", KILL_AT_SAVE, *args], cwd=ROOT, env={**ENV, **S3_CREDENTIALS},
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr

    restarted = build_backend(s3_settings, MODEL_CLASS)
    store = restarted.store(PROJECT)
    assert store.current_version() == good
    wait_until(lambda: restarted.status(PROJECT)["state"] == "interrupted", "the killed training's lease to expire",
               timeout=60)  # not "running" forever
    assert restarted.status(PROJECT)["model_version"] == good
    results = create_app(restarted).test_client().post("/predict", json={**holdout_request(), "project": PROJECT})
    assert {r["model_version"] for r in results.get_json()["results"]} == {good}
    again = restarted.train(PROJECT, annotations())
    # v2, or v3 when the killed save left a complete v2 object that never became current
    expected = "v3" if kill_before == "pointer" else "v2"
    assert again["state"] == "succeeded" and again["model_version"].split("-")[0] == expected, again


def test_a_model_saved_while_the_store_is_away_is_saved_once_it_is_back(s3_settings, moto):
    """A training that finishes during an outage waits for the store (``SAVE_RETRY_SECONDS``) instead of being lost."""
    store = open_store(s3_settings).project(PROJECT)
    saved: list[str] = []
    moto.pause()
    try:
        saver = threading.Thread(target=lambda: saved.append(store.save_model({"weights": [7]})))
        saver.start()
        time.sleep(2.0)
        assert saved == [] and saver.is_alive()
    finally:
        moto.resume()
    saver.join(timeout=300)
    assert saved and open_store(s3_settings).project(PROJECT).load_model() == (saved[0], {"weights": [7]})


@pytest.mark.slow
def test_two_gunicorn_replicas_on_one_bucket_serve_what_either_trained(s3_settings, moto, tmp_path):
    env = {"MODEL_STORE": s3_settings.model_store, "S3_ENDPOINT_URL": moto.url, **S3_CREDENTIALS}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    replicas = [Gunicorn(tmp_path / name, workers=1, **env) for name in ("a", "b")]
    try:
        a, b = replicas
        body = {**holdout_request(), "project": PROJECT}

        def version(replica) -> str:
            status, answer = replica.request("POST", "/predict", body)
            assert status == 200, answer
            return answer["results"][0]["model_version"]

        assert version(a) == version(b) == "untrained"
        for event in training_events():
            event["project"] = {"id": int(PROJECT)}
            assert a.request("POST", "/webhook", event)[0] == 200
        assert b.request("GET", f"/training/{PROJECT}")[1]["recorded_annotations"] == len(training_events())
        assert a.request("POST", "/webhook", {"action": "START_TRAINING", "project": {"id": int(PROJECT)}})[0] == 201
        done = wait_for_training(lambda: b.request("GET", f"/training/{PROJECT}")[1], timeout=300,
                                 context=lambda: a.log.read_text())
        assert done["state"] == "succeeded", done
        trained = open_store(s3_settings).project(PROJECT).current_version()
        assert trained.startswith("v1-"), trained
        wait_until(lambda: version(b) == trained, "replica b to serve the version a trained", timeout=30)
        assert version(a) == trained
    finally:
        for replica in replicas:
            replica.stop()
    assert not any(Path(tmp_path / n / "models" / "projects").exists() for n in ("a", "b")), \
        "with MODEL_STORE set, no project data goes to MODEL_DIR"
    assert os.environ.get("MODEL_STORE") is None
