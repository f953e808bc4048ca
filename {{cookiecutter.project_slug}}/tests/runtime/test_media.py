"""The media resolver, against local HTTP servers standing in for Label Studio and a cloud bucket."""

from __future__ import annotations

import base64
import logging
import os
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lsbackend.media import MediaError, MediaResolver, failed_prediction
from lsbackend.settings import Settings

from harness import serve_in_thread, stop_serving

LEGACY = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.YWNjZXNz"
IMAGE = b"\x89PNG fake image bytes"


class QuietServer(ThreadingHTTPServer):
    """Clients that give up (size limit, timeout) break the pipe: expected here, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """A loopback HTTP server answering from a route table; records each request's path and auth header."""

    def __init__(self, routes: dict) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str]] = []
        self.release = threading.Event()  # lets a deliberately slow handler finish at teardown
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                fake.seen.append((self.path, self.headers.get("Authorization", "")))
                route = fake.routes.get(urllib.parse.urlsplit(self.path).path)
                if route is None:
                    return self.answer(404, b"not found")
                route(self)

            do_GET = do_POST = handle_any

            def answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {"Content-Length": str(len(body))}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = serve_in_thread(self.server)

    def close(self) -> None:
        self.release.set()
        stop_serving(self.server)


def authorized(handler) -> bool:
    return handler.headers.get("Authorization") in (f"Token {LEGACY}", f"Bearer {ACCESS}")


def needs_auth(body: bytes):
    def route(handler) -> None:
        if authorized(handler):
            handler.answer(200, body)
        else:
            handler.answer(401, b'{"detail": "Authentication credentials were not provided."}')

    return route


def refresh(handler) -> None:
    body = handler.rfile.read(int(handler.headers["Content-Length"]))
    if PAT.encode() in body:
        handler.answer(200, f'{{"access": "{ACCESS}"}}'.encode())
    else:
        handler.answer(401, b'{"detail": "Token is invalid"}')


@pytest.fixture
def bucket():
    """Another origin, like a presigned S3 URL: it must never see Label Studio's key."""
    server = FakeServer({"/bucket/x.png": lambda h: h.answer(200, IMAGE)})
    yield server
    server.close()


@pytest.fixture
def label_studio(bucket):
    def resolve(handler) -> None:
        if not authorized(handler):
            return handler.answer(401)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(handler.path).query)
        uri = base64.urlsafe_b64decode(query["fileuri"][0]).decode()
        if uri != "s3://bucket/x.png":
            return handler.answer(404)
        presigned = f"{bucket.url}/bucket/x.png?X-Amz-Signature=abc"
        handler.answer(303, headers={"Location": presigned, "Content-Length": "0"})

    def slow(handler) -> None:
        server.release.wait(10)
        handler.answer(200, IMAGE)

    def chunked_big(handler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()  # no Content-Length: the size is only known while reading
        for _ in range(40):
            handler.wfile.write(b"x" * 65536)

    def drip_body(handler) -> None:
        """Headers at once, then one byte every 50 ms: each read is quick, the whole is not."""
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            if server.release.wait(0.05):
                return
            handler.wfile.write(b"x")
            handler.wfile.flush()

    def drip_headers(handler) -> None:
        for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"y" * 100:
            if server.release.wait(0.05):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    def redirect_to(location: str):
        return lambda h: h.answer(302, headers={"Location": location, "Content-Length": "0"})

    server = FakeServer({
        "/api/token/refresh/": refresh,
        "/data/upload/1/red.png": needs_auth(IMAGE),
        "/data/local-files/": needs_auth(IMAGE),
        "/tasks/30/resolve/": resolve,
        "/public/red.png": lambda h: h.answer(200, IMAGE),
        "/to-file": lambda h: h.answer(302, headers={"Location": "file:///etc/passwd", "Content-Length": "0"}),
        "/to-ftp": lambda h: h.answer(302, headers={"Location": "ftp://example.com/x.png", "Content-Length": "0"}),
        "/big": lambda h: h.answer(200, b"x" * (3 * 1024 * 1024)),
        "/big-chunked": chunked_big,
        "/slow": slow,
        "/drip-body": drip_body,
        "/drip-headers": drip_headers,
        "/to-metadata": redirect_to("http://169.254.169.254/latest/meta-data/"),
        "/to-other-loopback": redirect_to("http://127.0.0.2:9/x.png"),
        "/to-bad-ipv6": redirect_to("http://[::1/x.png"),
        "/to-bad-port": redirect_to("http://127.0.0.1:port/x.png"),
        "/to-surrogate": redirect_to("http://127.0.0.1/%ED%A0%80"),
    })
    yield server
    server.close()


def resolver(url: str = "", key: str = "", **kwargs) -> MediaResolver:
    """A resolver with a 1 MB limit that may fetch from this machine's test servers (loopback is refused
    by default, so the permission is explicit, as a user's would be)."""
    kwargs.setdefault("media_allowed_hosts", ("127.0.0.1",))
    settings = Settings(label_studio_url=url, label_studio_api_key=key, media_max_bytes=1024 * 1024, **kwargs)
    return MediaResolver(settings)


# --- Label Studio paths and auth ----------------------------------------------
@pytest.mark.parametrize("key, header", [(LEGACY, f"Token {LEGACY}"), (PAT, f"Bearer {ACCESS}")])
def test_label_studio_paths_are_fetched_with_the_api_key(label_studio, key, header):
    media = resolver(label_studio.url, key)
    assert media.fetch("/data/upload/1/red.png", 29) == IMAGE
    assert media.fetch("/data/local-files/?d=images/red.png", 29) == IMAGE
    gets = [(path, auth) for path, auth in label_studio.seen if not path.startswith("/api/token")]
    assert gets == [("/data/upload/1/red.png", header), ("/data/local-files/?d=images/red.png", header)]


def test_a_personal_access_token_is_refreshed_once_and_reused(label_studio):
    media = resolver(label_studio.url, PAT)
    media.fetch("/data/upload/1/red.png")
    media.fetch("/data/local-files/?d=a.png")
    assert [path for path, _ in label_studio.seen].count("/api/token/refresh/") == 1


@pytest.mark.parametrize("key", ["wrong-legacy-token", PAT.replace("eyJ0", "eyJ1")])
def test_a_refused_key_says_which_setting_to_check(label_studio, key):
    with pytest.raises(MediaError, match="check LABEL_STUDIO_API_KEY: legacy token or personal access token"):
        resolver(label_studio.url, key).fetch("/data/upload/1/red.png", 29)


def test_a_relative_path_without_label_studio_url_says_to_set_it():
    with pytest.raises(MediaError) as caught:
        resolver().fetch("/data/upload/1/blue.png", 29)
    message = str(caught.value)
    assert "'/data/upload/1/blue.png'" in message and "set LABEL_STUDIO_URL" in message
    assert "inside Docker, localhost is the container itself" in message


def test_a_relative_path_without_api_key_says_to_set_it(label_studio):
    with pytest.raises(MediaError, match="set LABEL_STUDIO_API_KEY"):
        resolver(label_studio.url, "").fetch("/data/upload/1/red.png")
    assert label_studio.seen == []


def test_an_unreachable_label_studio_names_the_url_and_the_docker_pitfall(label_studio):
    url = label_studio.url
    label_studio.close()
    with pytest.raises(MediaError) as caught:
        resolver(url, LEGACY).fetch("/data/upload/1/red.png")
    message = str(caught.value)
    assert f"cannot reach Label Studio at {url}" in message and "localhost is the container" in message


def test_the_key_goes_to_absolute_urls_on_label_studio_only(label_studio, bucket):
    media = resolver(label_studio.url, LEGACY)
    assert media.fetch(f"{label_studio.url}/data/upload/1/red.png") == IMAGE
    assert media.fetch(f"{bucket.url}/bucket/x.png") == IMAGE
    assert label_studio.seen[-1][1] == f"Token {LEGACY}"
    assert bucket.seen == [("/bucket/x.png", "")]


# --- cloud URIs -----------------------------------------------------------------
def test_cloud_uris_are_resolved_by_label_studio_for_the_task(label_studio, bucket):
    assert resolver(label_studio.url, LEGACY).fetch("s3://bucket/x.png", 30) == IMAGE
    fileuri = base64.urlsafe_b64encode(b"s3://bucket/x.png").decode()
    assert label_studio.seen == [(f"/tasks/30/resolve/?fileuri={fileuri}", f"Token {LEGACY}")]
    assert bucket.seen == [("/bucket/x.png?X-Amz-Signature=abc", "")], "the API key leaked to the bucket"


@pytest.mark.parametrize("uri", ["s3://bucket/x.png", "gs://bucket/x.png", "azure-blob://container/x.png"])
def test_cloud_uris_without_label_studio_url_say_to_set_it(uri):
    with pytest.raises(MediaError, match="set LABEL_STUDIO_URL"):
        resolver().fetch(uri, 30)


def test_a_cloud_uri_label_studio_cannot_resolve_is_reported(label_studio):
    with pytest.raises(MediaError, match="Label Studio answered 404 for 'gs://other/y.png'"):
        resolver(label_studio.url, LEGACY).fetch("gs://other/y.png", 30)


# --- refusals and limits -------------------------------------------------------
@pytest.mark.parametrize("path, scheme", [("/to-file", "file"), ("/to-ftp", "ftp")])
def test_redirects_to_non_http_schemes_are_refused(label_studio, path, scheme):
    with pytest.raises(MediaError, match=f"redirects to a {scheme} URL .*only http and https are followed"):
        resolver().fetch(label_studio.url + path)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_downloads_over_the_size_limit_are_refused(label_studio, path):
    with pytest.raises(MediaError, match="1 MB limit; raise MEDIA_MAX_MB"):
        resolver().fetch(label_studio.url + path)


def test_a_slow_server_times_out_with_the_setting_to_raise(label_studio):
    with pytest.raises(MediaError, match=r"timed out after 0.3s; raise MEDIA_TIMEOUT_SECONDS"):
        resolver(media_timeout_seconds=0.3).fetch(label_studio.url + "/slow")


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_server_dripping_bytes_is_cut_off_at_the_total_deadline(label_studio, path):
    """Every read gets a byte well within the timeout, so only a deadline on the whole download stops it."""
    with pytest.raises(MediaError, match=r"timed out after 0.5s; raise MEDIA_TIMEOUT_SECONDS"):
        resolver(media_timeout_seconds=0.5).fetch(label_studio.url + path)


# --- which addresses downloads may reach ------------------------------------------
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/",
    "http://[fe80::1]/x.png",
])
def test_cloud_metadata_and_link_local_are_refused_even_when_allowed(url):
    media = resolver(media_allowed_hosts=("169.254.0.0/16", "fe80::/10", "100.64.0.0/10", "fd00::/8"))
    with pytest.raises(MediaError, match="link-local or cloud metadata address, which media downloads never fetch"):
        media.fetch(url, 7)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "10.1.2.3", "192.168.0.5", "[::ffff:127.0.0.1]"])
def test_loopback_and_private_addresses_are_refused_by_default(host):
    with pytest.raises(MediaError, match="loopback, private or reserved address.*add .* to MEDIA_ALLOWED_HOSTS"):
        resolver(media_allowed_hosts=()).fetch(f"http://{host}:9/x.png", 7)


def test_a_host_name_is_checked_by_what_it_resolves_to(label_studio):
    """``localhost`` is a name, not an address: the refusal comes after DNS resolution."""
    port = label_studio.url.rsplit(":", 1)[1]
    with pytest.raises(MediaError, match="localhost resolves to .*(127.0.0.1|::1)"):
        resolver(media_allowed_hosts=()).fetch(f"http://localhost:{port}/public/red.png")
    assert label_studio.seen == []


def test_label_studio_urls_host_is_allowed(label_studio):
    media = resolver(label_studio.url, LEGACY, media_allowed_hosts=())
    assert media.fetch(f"{label_studio.url}/public/red.png") == IMAGE
    port = label_studio.url.rsplit(":", 1)[1]
    with pytest.raises(MediaError, match="MEDIA_ALLOWED_HOSTS"):  # another loopback address is another host
        media.fetch(f"http://127.0.0.2:{port}/public/red.png")


@pytest.mark.parametrize("allowed", [("127.0.0.1",), ("127.0.0.0/8",), ("LocalHost",)])
def test_media_allowed_hosts_takes_names_addresses_and_networks(label_studio, allowed):
    port = label_studio.url.rsplit(":", 1)[1]
    host = "localhost" if allowed == ("LocalHost",) else "127.0.0.1"
    assert resolver(media_allowed_hosts=allowed).fetch(f"http://{host}:{port}/public/red.png") == IMAGE


@pytest.mark.parametrize("path, problem", [
    ("/to-metadata", "169.254.169.254 resolves to 169.254.169.254, a link-local or cloud metadata address"),
    ("/to-other-loopback", "127.0.0.2 resolves to 127.0.0.2, a loopback, private or reserved address"),
])
def test_every_redirect_hop_is_checked(label_studio, path, problem):
    with pytest.raises(MediaError, match=problem):
        resolver().fetch(label_studio.url + path, 7)


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(label_studio, monkeypatch):
    """DNS rebinding: the name answers an allowed address once, then another; only the first may be used."""
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "192.0.2.1"  # then an address nothing answers on
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = label_studio.url.rsplit(":", 1)[1]
    media = resolver(media_allowed_hosts=("127.0.0.1/32",), media_timeout_seconds=2)
    assert media.fetch(f"http://rebind.test:{port}/public/red.png") == IMAGE
    assert lookups == ["rebind.test"]


def test_a_missing_file_is_reported_as_such(label_studio):
    with pytest.raises(MediaError, match="answered 404 .* does not exist there"):
        resolver().fetch(label_studio.url + "/public/nothing.png")


@pytest.mark.parametrize("uri", ["ftp://example.com/x.png", "images/x.png", "javascript:alert(1)"])
def test_unsupported_references_list_what_works(uri):
    with pytest.raises(MediaError, match="use an http\\(s\\) URL, a Label Studio path"):
        resolver().fetch(uri)


@pytest.mark.parametrize("value", [None, "", 42, {"url": "x"}])
def test_a_task_value_that_is_not_a_reference_is_named(value):
    with pytest.raises(MediaError, match="task 5 has no media reference"):
        resolver().fetch(value, 5)


# --- cache ---------------------------------------------------------------------
def test_repeated_fetches_come_from_the_cache(label_studio):
    media = resolver()
    for _ in range(3):
        assert media.fetch(label_studio.url + "/public/red.png") == IMAGE
    assert len(label_studio.seen) == 1


def test_the_cache_stays_within_its_byte_budget(label_studio):
    media = resolver(media_cache_bytes=2 * len(IMAGE))
    for i in range(5):
        media.fetch(f"{label_studio.url}/public/red.png?v={i}")
    assert len(media.cache) == 2
    media.fetch(f"{label_studio.url}/public/red.png?v=4")  # most recent: still cached
    media.fetch(f"{label_studio.url}/public/red.png?v=0")  # evicted: fetched again
    assert [p for p, _ in label_studio.seen].count("/public/red.png?v=4") == 1
    assert [p for p, _ in label_studio.seen].count("/public/red.png?v=0") == 2


def test_fetch_many_keeps_order_and_reports_each_failure(label_studio):
    items = [(label_studio.url + "/public/red.png", 1), ("/data/upload/1/x.png", 2), ("data:,hi", 3)]
    got = resolver().fetch_many(items)
    assert got[0] == IMAGE and isinstance(got[1], MediaError) and got[2] == b"hi"


# --- data URIs -----------------------------------------------------------------
def test_data_uris_are_decoded_without_network():
    encoded = base64.b64encode(IMAGE).decode()
    assert resolver().fetch(f"data:image/png;base64,{encoded}") == IMAGE
    assert resolver().fetch("data:text/plain,a%20b") == b"a b"


@pytest.mark.parametrize(
    "uri, problem", [("data:image/png;base64", "no ','"), ("data:;base64,abc", "not valid base64")]
)
def test_broken_data_uris_are_refused(uri, problem):
    with pytest.raises(MediaError, match=problem):
        resolver().fetch(uri)


def test_oversized_data_uris_are_refused():
    payload = base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()
    with pytest.raises(MediaError, match="larger than the 1 MB limit"):
        resolver().fetch(f"data:image/png;base64,{payload}")


# --- local files ---------------------------------------------------------------
@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.png").write_bytes(IMAGE)
    (tmp_path / "secret.png").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.png", tmp_path / "root" / "escape.png")
    return tmp_path / "root"


def test_local_files_under_the_root_are_read(root):
    media = resolver(local_files_root=str(root))
    assert media.fetch("sub/a.png") == IMAGE
    assert media.fetch(str(root / "sub" / "a.png")) == IMAGE
    assert media.fetch((root / "sub" / "a.png").as_uri()) == IMAGE


@pytest.mark.parametrize("reference", ["../secret.png", "sub/../../secret.png", "escape.png"])
def test_local_files_never_escape_the_root(root, reference):
    with pytest.raises(MediaError, match="outside LOCAL_FILES_ROOT"):
        resolver(local_files_root=str(root)).fetch(reference)


def test_file_urls_outside_the_root_are_refused(root):
    with pytest.raises(MediaError, match="outside LOCAL_FILES_ROOT"):
        resolver(local_files_root=str(root)).fetch((root.parent / "secret.png").as_uri())


def test_local_files_need_a_configured_root(root):
    with pytest.raises(MediaError, match="set LOCAL_FILES_ROOT"):
        resolver().fetch((root / "sub" / "a.png").as_uri())


def test_a_missing_local_file_is_named(root):
    with pytest.raises(MediaError, match="no such file under LOCAL_FILES_ROOT"):
        resolver(local_files_root=str(root)).fetch("sub/none.png")


def test_local_files_are_read_fresh_not_cached(root):
    media = resolver(local_files_root=str(root))
    assert media.fetch("sub/a.png") == IMAGE
    (root / "sub" / "a.png").write_bytes(b"changed")
    assert media.fetch("sub/a.png") == b"changed"


def test_oversized_local_files_are_refused(root):
    (root / "big.png").write_bytes(b"x" * (2 * 1024 * 1024))
    with pytest.raises(MediaError, match="larger than the 1 MB limit"):
        resolver(local_files_root=str(root)).fetch("big.png")


# --- per-task failure ----------------------------------------------------------
def test_a_failed_prediction_is_empty_logged_and_retried_later(caplog):
    with caplog.at_level(logging.WARNING, logger="lsbackend.media"):
        prediction = failed_prediction({"id": 29}, MediaError("set LABEL_STUDIO_URL"), "v3")
    assert prediction == {
        "result": [], "score": 0.0, "model_version": "v3+media-error", "error": "set LABEL_STUDIO_URL",
    }
    assert "task 29: no prediction: set LABEL_STUDIO_URL" in caplog.text


# --- any string at all: a per-task MediaError, never another exception (issue 12) ------------------
ODD_REFERENCES = [
    "http://127.0.0.1:9/my image.png", "http://[::1/x.png", "http://[::1]:abc/x.png", "http://h:99999/x.png",
    "http://127.0.0.1:9/a\r\nHost: x.png", "a\x00b.png", "/data/a\x00b.png", "file:///tmp/a%00b", "http://[zz]/x",
    "https://exa mple.com/x.png", "s3://b/k\x00", "http://127.0.0.1:9/\udcff.png", "\ud800", "http://\u2100.com/x",
    "http://a..b/x", "//", "http://", "https://", "data:",
]


@pytest.mark.parametrize("reference", ODD_REFERENCES, ids=[repr(r)[:30] for r in ODD_REFERENCES])
def test_any_string_as_a_reference_is_a_media_error(tmp_path, reference):
    media = resolver("http://127.0.0.1:9", LEGACY, local_files_root=str(tmp_path), media_timeout_seconds=2)
    with pytest.raises(MediaError):  # a ValueError, TypeError or UnicodeError here failed the whole batch
        media.fetch(reference, 5)


@pytest.mark.parametrize("path", ["/to-bad-ipv6", "/to-bad-port", "/to-surrogate"])
def test_a_redirect_to_a_malformed_url_is_a_media_error(label_studio, path):
    with pytest.raises(MediaError):
        resolver().fetch(label_studio.url + path, 5)


def test_an_https_download_connects(label_studio):
    """An https URL used to fail before connecting (TypeError from the guarded connection's keywords)."""
    port = label_studio.url.rsplit(":", 1)[1]
    with pytest.raises(MediaError, match="cannot download|SSL|ssl|wrong version"):  # plain HTTP there: TLS fails
        resolver().fetch(f"https://127.0.0.1:{port}/public/red.png", 5)


# --- local_path: a file for libraries that want one ------------------------------
def test_local_path_keeps_a_download_as_a_file_with_its_suffix_once(label_studio):
    media = resolver(label_studio.url, LEGACY)
    path = media.local_path("/data/upload/1/red.png", 1)
    assert path.read_bytes() == IMAGE and path.suffix == ".png"
    assert media.local_path("/data/upload/1/red.png", 1) == path
    assert [p for p, _ in label_studio.seen] == ["/data/upload/1/red.png"]
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"  # no other user can plant or read a copy


def test_local_path_of_a_cloud_uri_goes_through_label_studio_for_that_task(label_studio, bucket):
    path = resolver(label_studio.url, LEGACY).local_path("s3://bucket/x.png", 30)
    assert path.read_bytes() == IMAGE


def test_local_path_names_a_local_file_where_it_is_and_never_outside_the_root(root):
    media = resolver(local_files_root=str(root))
    assert media.local_path("sub/a.png") == root / "sub" / "a.png"
    with pytest.raises(MediaError, match="outside LOCAL_FILES_ROOT"):
        media.local_path("../secret.png")


def test_local_path_copies_stay_within_the_cache_budget(label_studio):
    media = resolver(media_cache_bytes=2 * len(IMAGE))
    paths = [media.local_path(f"{label_studio.url}/public/red.png?v={i}") for i in range(4)]
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert media.local_path(f"{label_studio.url}/public/red.png?v=0").read_bytes() == IMAGE


def test_local_path_reports_what_fetch_reports(label_studio):
    with pytest.raises(MediaError, match="answered 404"):
        resolver(label_studio.url, LEGACY).local_path("/data/upload/1/none.png", 1)


def test_label_studio_host_is_read_as_label_studio_url(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_HOST", "http://ls.example:8080/")
    assert Settings.from_env().label_studio_url == "http://ls.example:8080"
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://label-studio:8080")
    assert Settings.from_env().label_studio_url == "http://label-studio:8080"
