"""Turn the media reference in a task (a URL, path or data URI to an image, a text, any file) into bytes.

Label Studio hands tasks over with their media exactly as imported, so one
resolver has to understand every kind:

- ``http(s)://...``: downloaded; Label Studio's API key is sent only when the
  URL is on ``LABEL_STUDIO_URL`` itself;
- ``/data/upload/...``, ``/data/local-files/?d=...``, ``/tasks/<id>/resolve/...``:
  paths on Label Studio, downloaded from ``LABEL_STUDIO_URL`` with the API key;
- ``s3://``, ``gs://``, ``azure-blob://``: asked of Label Studio's resolve endpoint
  for the task, which redirects to a presigned URL (the key is not forwarded there);
- ``data:``: decoded in place;
- ``file://`` URLs, and paths under ``LOCAL_FILES_ROOT``: read from disk, never
  outside that folder.

Downloads are guarded against server-side request forgery (a task naming an
internal address): every connection, redirects included, goes to an address
checked after DNS resolution (``_AddressGuard``), and the whole download has
one deadline however slowly the bytes arrive (``_Deadline``).

Every failure is a ``MediaError`` whose message names the task's reference and
the setting to fix, so a model can report it per task and go on with the others.

Every variant ships this module (text models fetch ``<Text valueType="url">``
through it); it imports nothing beyond the standard library and the runtime, so
a text backend stays lean. Models reach it through ``LabelStudioMLBase.media``,
``media_many``, ``task_texts`` and ``local_path``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import http.client
import ipaddress
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .label_studio_api import LabelStudioClient, LabelStudioError
from .settings import Settings

log = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
WEB_SCHEMES = ("http", "https")
CHUNK_BYTES = 64 * 1024
DOCKER_HINT = "inside Docker, localhost is the container itself: use an address the container can reach"
KEY_HINT = "check LABEL_STUDIO_API_KEY: legacy token or personal access token?"


class MediaError(RuntimeError):
    """A task's media could not be loaded; the message says which and what to change."""


class BlockedAddress(MediaError):
    """A download would connect to an address media downloads refuse."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Never fetched, whatever MEDIA_ALLOWED_HOSTS says: link-local (169.254.169.254 is the metadata service
#: of AWS, GCP, Azure, DigitalOcean, OpenStack) and the other clouds' metadata addresses.
NEVER = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it really goes."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped or ip.sixtofour:
        return ip.ipv4_mapped or ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class _AddressGuard:
    """Decides which addresses a download may connect to.

    Link-local and cloud metadata addresses: never. Loopback, private and other
    non-public addresses: only for LABEL_STUDIO_URL's host or what
    MEDIA_ALLOWED_HOSTS lists (host names, addresses or networks). Every other
    address: yes. Addresses are checked after DNS resolution, all of a name's
    records, and the caller connects to the checked address itself, so a second
    lookup cannot point the connection elsewhere.
    """

    def __init__(self, label_studio_url: str, allowed: tuple[str, ...]) -> None:
        self.names: set[str] = set()
        self.networks: list[IPNetwork] = []
        ls_host = urllib.parse.urlsplit(label_studio_url).hostname if label_studio_url else None
        for entry in (*allowed, *([ls_host] if ls_host else [])):
            entry = entry.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))
        self.ls_host = ls_host

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host`` to connect to, or ``BlockedAddress``/``MediaError`` saying why not."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise MediaError(f"cannot resolve the host {host!r} ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:  # a name with one bad record among good ones is refused whole
            self.check(host, ipaddress.ip_address(address.split("%", 1)[0]))
        return addresses

    def check(self, host: str, ip: IPAddress) -> None:
        inner = _embedded_ipv4(ip)
        for candidate in (ip, inner) if inner else (ip,):
            if any(candidate in net for net in NEVER if net.version == candidate.version):
                raise BlockedAddress(
                    f"{host} resolves to {ip}, a link-local or cloud metadata address, which media downloads "
                    "never fetch"
                )
        target = inner or ip
        if target.is_global and not target.is_multicast:
            return
        if self._allowed(host, ip, inner):
            return
        raise BlockedAddress(
            f"{host} resolves to {ip}, a loopback, private or reserved address, which media downloads refuse "
            f"unless allowed: add {host} to MEDIA_ALLOWED_HOSTS if it is your own server"
        )

    def _allowed(self, host: str, ip: IPAddress, inner: ipaddress.IPv4Address | None) -> bool:
        if host.lower().rstrip(".").strip("[]") in self.names:
            return True
        if any(addr in net for net in self.networks for addr in (ip, inner) if addr and addr.version == net.version):
            return True
        return bool(self.ls_host) and str(inner or ip) in self._label_studio_addresses()

    def _label_studio_addresses(self) -> set[str]:
        """What LABEL_STUDIO_URL's host resolves to now: media may live on Label Studio's machine by address."""
        try:
            infos = socket.getaddrinfo(self.ls_host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return set()
        found = set()
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            found.add(str(_embedded_ipv4(ip) or ip))
        return found


class _Deadline:
    """One download's total time limit, however slowly the server trickles bytes.

    A socket timeout limits each read, not their sum: a server sending a byte a
    second never trips it. At the deadline a timer shuts the download's sockets
    down, which wakes any blocked read (plain or TLS).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        left = self.expires - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("download deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if not self.expired:
                return
        self._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        # OSError: already closed, or detached by TLS wrapping (the TLS socket is watched too)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    """Connects only to an address the guard checked, within the download's deadline."""

    guard: _AddressGuard
    deadline: _Deadline
    timeout: float  # urllib hands every connection the opener's timeout (``_download_uncached`` sets one)
    source_address: tuple[str, int] | None  # set by HTTPConnection.__init__; typeshed does not declare it

    def __init__(self, *args, guard: _AddressGuard | None = None, deadline: _Deadline | None = None,
                 **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if guard is not None and deadline is not None:  # None when HTTPSConnection.__init__ calls this one
            self.guard, self.deadline = guard, deadline

    def connect(self) -> None:
        error: OSError | None = None
        for address in self.guard.addresses(self.host, self.port):
            try:
                self.sock = socket.create_connection(
                    (address, self.port), min(self.timeout, self.deadline.remaining()), self.source_address
                )
                break
            except TimeoutError:
                raise
            except OSError as exc:
                error = exc
        else:
            raise error or OSError(f"no address for {self.host}")
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deadline.watch(self.sock)


class _GuardedHTTPSConnection(http.client.HTTPSConnection, _GuardedHTTPConnection):
    """TLS over the guarded connection; the certificate is still checked against the host name."""

    def __init__(self, *args, guard: _AddressGuard, deadline: _Deadline, **kwargs) -> None:  # noqa: ANN002, ANN003
        # HTTPSConnection.__init__ takes no extra keywords: set ours, then let it run the chain
        self.guard, self.deadline = guard, deadline
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        super().connect()  # HTTPSConnection.connect: the guarded TCP connect, then the TLS handshake
        self.deadline.watch(self.sock)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: _AddressGuard, deadline: _Deadline) -> None:
        super().__init__()
        self.connection = functools.partial(_GuardedHTTPConnection, guard=guard, deadline=deadline)

    def http_open(self, req):  # noqa: ANN001, ANN201 (urllib's signature)
        return self.do_open(self.connection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    _context: ssl.SSLContext | None  # set by HTTPSHandler.__init__; typeshed does not declare it

    def __init__(self, guard: _AddressGuard, deadline: _Deadline) -> None:
        super().__init__()
        self.connection = functools.partial(_GuardedHTTPSConnection, guard=guard, deadline=deadline)

    def https_open(self, req):  # noqa: ANN001, ANN201 (urllib's signature)
        return self.do_open(self.connection, req, context=self._context)


def _short(uri: str, limit: int = 80) -> str:
    """The reference as shown in messages and logs: shortened, and without its query string,
    where presigned URLs carry their credentials."""
    if "?" in uri and not uri.startswith("data:"):
        uri = uri.split("?", 1)[0] + "?..."
    return uri if len(uri) <= limit else uri[: limit - 3] + "..."


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, and never carry the API key to another host.

    The resolve endpoint redirects to a presigned cloud URL: sending Label
    Studio's token there would leak it (and S3 refuses two kinds of auth).
    """

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 (urllib's signature)
        location = headers.get("location") or headers.get("uri") or ""
        target = urllib.parse.urljoin(req.full_url, location)
        scheme = urllib.parse.urlsplit(target).scheme.lower()
        if scheme not in WEB_SCHEMES:
            raise MediaError(
                f"{_short(req.full_url)} redirects to a {scheme or 'schemeless'} URL ({_short(target)}); "
                "only http and https are followed"
            )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's signature)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _ByteCache:
    """A small thread-safe LRU of downloaded bytes, bounded by total size."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._size -= len(old) if old is not None else 0
            self._items[key] = value
            self._size += len(value)
            while self._size > self.capacity:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)


class _FileCache:
    """Downloaded media kept as files for code that wants a path (``MediaResolver.local_path``).

    Files live in a private directory made on first use (``mkdtemp``: mode 0700, so no other
    user can plant or read one), named by a hash of the reference, and the oldest are deleted
    once their total passes ``capacity`` bytes (``MEDIA_CACHE_MB``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._dir: Path | None = None
        self._sizes: OrderedDict[Path, int] = OrderedDict()
        self._lock = threading.Lock()

    def path_for(self, key: str, suffix: str) -> Path:
        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="lsbackend-media-"))
            return self._dir / (hashlib.sha256(key.encode()).hexdigest()[:32] + suffix)

    def get(self, path: Path) -> Path | None:
        with self._lock:
            if path in self._sizes and path.is_file():
                self._sizes.move_to_end(path)
                return path
            self._sizes.pop(path, None)
            return None

    def put(self, path: Path, data: bytes) -> Path:
        partial = path.with_name(f".{path.name}.{threading.get_ident()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)  # a reader never sees half a file
        with self._lock:
            self._sizes[path] = len(data)
            self._sizes.move_to_end(path)
            while sum(self._sizes.values()) > self.capacity and len(self._sizes) > 1:
                old, _ = self._sizes.popitem(last=False)
                old.unlink(missing_ok=True)
        return path


#: A file suffix worth keeping on a cached copy (libraries pick decoders by it): ".jpg", ".tar.gz" no.
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def _suffix_of(uri: str) -> str:
    if uri[:5].lower() == "data:":
        return ""
    path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
    if "fileuri=" in uri:  # Label Studio's resolve URL carries the cloud URI in base64
        return ""
    found = _SUFFIX.search(Path(path).name)
    return found.group(0).lower() if found else ""


class MediaResolver:
    """Loads task media as bytes, with limits, a bounded cache and clear errors."""

    def __init__(self, settings: Settings) -> None:
        self.label_studio_url = settings.label_studio_url.rstrip("/")
        self.api_key = settings.label_studio_api_key
        self.timeout = settings.media_timeout_seconds
        self.max_bytes = settings.media_max_bytes
        self.max_pixels = settings.media_max_pixels
        self.root = Path(settings.local_files_root).resolve() if settings.local_files_root else None
        self.cache = _ByteCache(settings.media_cache_bytes)
        self.files = _FileCache(settings.media_cache_bytes)
        self.fetch_threads = max(1, settings.media_fetch_threads)
        self._client = LabelStudioClient(self.label_studio_url, self.api_key) if self.label_studio_url else None
        self.guard = _AddressGuard(self.label_studio_url, settings.media_allowed_hosts)

    # --- public ------------------------------------------------------------
    def fetch(self, uri: object, task_id: object = None) -> bytes:
        """The bytes ``uri`` refers to, or ``MediaError`` saying why not and what to set."""
        if not isinstance(uri, str) or not uri.strip():
            raise MediaError(f"task {task_id} has no media reference, got {type(uri).__name__} {uri!r:.40}")
        uri = uri.strip()
        try:
            if uri[:5].lower() == "data:":
                return self._data_uri(uri)
            return self._fetch_reference(uri, task_id)
        except MediaError:
            raise
        except (ValueError, TypeError, UnicodeError, OSError, http.client.HTTPException) as exc:
            # what the URL and path libraries refuse (a malformed IPv6 host, a NUL, a lone surrogate, ...)
            # is this task's problem, never the batch's
            log.info("task %s: cannot load its media", task_id, exc_info=True)
            raise MediaError(f"cannot load {_short(uri)!r}: {type(exc).__name__}: {exc}"[:300]) from None

    def local_path(self, uri: object, task_id: object = None) -> Path:
        """A file on this machine holding what ``uri`` refers to, or ``MediaError`` saying why not.

        For libraries that want a path rather than bytes. A file under ``LOCAL_FILES_ROOT`` is
        returned where it is (after the same confinement check as ``fetch``); anything else is
        fetched with ``fetch``'s guarantees and kept in a private cache directory, bounded by
        ``MEDIA_CACHE_MB``, keeping the reference's suffix (``.jpg``, ``.wav``, ``.pdf``).
        Treat the file as read-only and open it soon: old copies are deleted as new ones arrive.
        """
        if isinstance(uri, str) and uri.strip() and uri.strip()[:5].lower() != "data:":
            reference = uri.strip()
            try:
                local = self._local_path(reference, urllib.parse.urlsplit(reference).scheme.lower())
            except ValueError as exc:
                raise MediaError(f"cannot load {_short(reference)!r}: {exc}"[:300]) from None
            if local is not None:
                self._read_check(local, reference)
                return local
        key = f"{task_id}|{uri}" if isinstance(uri, str) and urllib.parse.urlsplit(uri).scheme in CLOUD_SCHEMES \
            else str(uri)
        path = self.files.path_for(key, _suffix_of(uri) if isinstance(uri, str) else "")
        cached = self.files.get(path)
        if cached is not None:
            return cached
        data = self.fetch(uri, task_id)
        try:
            return self.files.put(path, data)
        except OSError as exc:
            raise MediaError(f"cannot keep a local copy of {_short(str(uri))!r}: {exc.strerror or exc}") from None

    def fetch_many(self, items: Iterable[tuple[object, object]]) -> list[bytes | MediaError]:
        """Fetch ``(uri, task_id)`` pairs, ``MEDIA_FETCH_THREADS`` at a time; each entry is bytes or its ``MediaError``.

        Downloads mostly wait on the network, so threads overlap them; bench/image_bench.py chose the default.
        """

        def one(item: tuple[object, object]) -> bytes | MediaError:
            try:
                return self.fetch(*item)
            except MediaError as exc:
                return exc

        items = list(items)
        if len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.fetch_threads, len(items))) as pool:
            return list(pool.map(one, items))

    # --- kinds -------------------------------------------------------------
    def _fetch_reference(self, uri: str, task_id: object) -> bytes:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        local = self._local_path(uri, scheme)
        if local is not None:
            return self._read_file(local, uri)
        if scheme in WEB_SCHEMES:
            same_origin = bool(self.label_studio_url) and _origin(uri) == _origin(self.label_studio_url)
            return self._download(uri, uri, from_label_studio=same_origin)
        if scheme in CLOUD_SCHEMES:
            return self._cloud(uri, task_id)
        if uri.startswith("/"):
            return self._download(self._label_studio_url_for(uri), uri, from_label_studio=True)
        raise MediaError(
            f"cannot load a reference of this kind ({len(uri)} characters, not shown): "
            "use an http(s) URL, a Label Studio path (/data/...), "
            f"a cloud URI ({', '.join(s + '://' for s in CLOUD_SCHEMES)}), a data: URI, "
            "or a file under LOCAL_FILES_ROOT"
        )

    def _data_uri(self, uri: str) -> bytes:
        header, comma, payload = uri[5:].partition(",")
        if not comma:
            raise MediaError(f"data URI {_short(uri, 40)!r} has no ',' before its data")
        if len(payload) * 3 // 4 > self.max_bytes:
            raise MediaError(f"data URI is larger than {self._limit_text()}; raise MEDIA_MAX_MB or send a URL")
        if header.lower().endswith(";base64"):
            try:
                return base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                raise MediaError(f"data URI {_short(uri, 40)!r} is not valid base64") from None
        return urllib.parse.unquote_to_bytes(payload)

    def _cloud(self, uri: str, task_id: object) -> bytes:
        if task_id is None:
            raise MediaError(f"{_short(uri)!r} can only be resolved by Label Studio for a task; the task has no id")
        fileuri = base64.urlsafe_b64encode(uri.encode()).decode()
        path = f"/tasks/{task_id}/resolve/?fileuri={fileuri}"
        return self._download(self._label_studio_url_for(uri, path), uri, from_label_studio=True)

    def _label_studio_url_for(self, uri: str, path: str | None = None) -> str:
        if not self.label_studio_url:
            raise MediaError(
                f"{_short(uri)!r} is served by Label Studio: set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY) "
                f"so the backend can download it; {DOCKER_HINT}"
            )
        if not self.api_key:
            raise MediaError(f"{_short(uri)!r} is served by Label Studio, which needs a key: set LABEL_STUDIO_API_KEY")
        return self.label_studio_url + (path or uri)

    # --- local files -------------------------------------------------------
    def _local_path(self, uri: str, scheme: str) -> Path | None:
        """The disk path ``uri`` names, or None when it is not a local reference."""
        if scheme == "file":
            path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
        elif self.root is not None and not scheme and not uri.startswith("/"):
            path = uri  # relative to LOCAL_FILES_ROOT
        elif self.root is not None and uri.startswith("/") and Path(uri).is_relative_to(self.root):
            path = uri
        else:
            return None
        if self.root is None:
            raise MediaError(f"{_short(uri)!r} is a local file: set LOCAL_FILES_ROOT to the folder that holds it")
        return self._confined(path, uri)

    def _confined(self, path: str, uri: str) -> Path:
        """``path`` inside LOCAL_FILES_ROOT after resolving ``..`` and symlinks, or ``MediaError``."""
        assert self.root is not None
        try:
            target = (self.root / path).resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise MediaError(f"{_short(uri)!r}: no such file under LOCAL_FILES_ROOT={self.root}") from None
        except (OSError, RuntimeError) as exc:
            raise MediaError(f"{_short(uri)!r}: cannot resolve the path ({exc})") from None
        if not target.is_relative_to(self.root):
            raise MediaError(f"{_short(uri)!r} is outside LOCAL_FILES_ROOT={self.root}; only files inside it are read")
        return target

    def _read_file(self, path: Path, uri: str) -> bytes:
        try:
            self._read_check(path, uri)
            return path.read_bytes()
        except OSError as exc:
            raise MediaError(f"cannot read {_short(uri)!r}: {exc.strerror or exc}") from None

    def _read_check(self, path: Path, uri: str) -> None:
        """A local file may be read: a regular file within MEDIA_MAX_MB."""
        try:
            if not path.is_file():
                raise MediaError(f"{_short(uri)!r} is not a regular file")
            if path.stat().st_size > self.max_bytes:
                raise MediaError(f"{_short(uri)!r} is larger than {self._limit_text()}; raise MEDIA_MAX_MB")
        except OSError as exc:
            raise MediaError(f"cannot read {_short(uri)!r}: {exc.strerror or exc}") from None

    # --- HTTP --------------------------------------------------------------
    def _download(self, url: str, uri: str, from_label_studio: bool) -> bytes:
        """GET ``url`` (``uri`` is what the task said, for messages); cached, as predict and train repeat it."""
        cached = self.cache.get(url)
        if cached is not None:
            return cached
        data = self._download_uncached(url, uri, from_label_studio)
        self.cache.put(url, data)
        return data

    def _download_uncached(self, url: str, uri: str, from_label_studio: bool) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "lsbackend-media"})
        if from_label_studio:
            request.add_header("Authorization", self._auth_header())
        with _Deadline(self.timeout) as deadline:
            # No proxy: the address check must see where the connection really goes.
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}),
                _GuardedHTTPHandler(self.guard, deadline),
                _GuardedHTTPSHandler(self.guard, deadline),
                _SafeRedirects,
            )
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    data = self._read_limited(response, uri)
            except BlockedAddress as exc:
                raise BlockedAddress(f"{_short(uri)!r} refused: {exc}") from None
            except MediaError:
                raise
            except urllib.error.HTTPError as exc:
                raise self._http_error(exc.code, uri, from_label_studio) from None
            except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
                if deadline.expired:
                    raise self._timeout_error(uri) from None
                raise self._connection_error(exc, uri, from_label_studio) from None
            if deadline.expired:  # the shutdown can look like a clean end of the body
                raise self._timeout_error(uri)
            return data

    def _timeout_error(self, uri: str) -> MediaError:
        return MediaError(f"{_short(uri)!r} timed out after {self.timeout:g}s; raise MEDIA_TIMEOUT_SECONDS")

    def _auth_header(self) -> str:
        assert self._client is not None
        try:
            return self._client.auth_header()
        except LabelStudioError as exc:
            raise MediaError(str(exc)) from None
        except (KeyError, TypeError, ValueError):
            raise MediaError(f"Label Studio's token refresh gave no access token; {KEY_HINT}") from None

    def _read_limited(self, response, uri: str) -> bytes:  # noqa: ANN001 (an http.client response)
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise MediaError(f"{_short(uri)!r} is {int(length)} bytes, over {self._limit_text()}; raise MEDIA_MAX_MB")
        chunks, size = [], 0
        while chunk := response.read(CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaError(f"{_short(uri)!r} is over {self._limit_text()}; raise MEDIA_MAX_MB")
            chunks.append(chunk)
        return b"".join(chunks)

    def _http_error(self, code: int, uri: str, from_label_studio: bool) -> MediaError:
        where = "Label Studio" if from_label_studio else "the server"
        if code in (401, 403) and from_label_studio:
            return MediaError(f"Label Studio answered {code} for {_short(uri)!r}: {KEY_HINT}")
        if code == 404:
            return MediaError(f"{where} answered 404 for {_short(uri)!r}: the file does not exist there")
        return MediaError(f"{where} answered {code} for {_short(uri)!r}")

    def _connection_error(self, exc: BaseException, uri: str, from_label_studio: bool) -> MediaError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            return self._timeout_error(uri)
        if from_label_studio:
            return MediaError(
                f"cannot reach Label Studio at {self.label_studio_url} for {_short(uri)!r} ({reason}): "
                f"check LABEL_STUDIO_URL; {DOCKER_HINT}"
            )
        return MediaError(f"cannot download {_short(uri)!r} ({reason})")

    def _limit_text(self) -> str:
        return f"the {self.max_bytes / (1024 * 1024):g} MB limit"


_resolvers: dict[int, tuple[Settings, MediaResolver]] = {}
_resolvers_lock = threading.Lock()
_RESOLVERS_KEPT = 8


def resolver_for(settings: Settings) -> MediaResolver:
    """The resolver for these settings, shared by every model object built with them.

    Sharing keeps one download cache per backend instead of one per project and
    model version; the settings come from whoever built the model, never from
    the environment.
    """
    with _resolvers_lock:
        kept = _resolvers.get(id(settings))
        if kept is not None and kept[0] is settings:
            return kept[1]
        if len(_resolvers) >= _RESOLVERS_KEPT:  # tests build many settings; a server builds one
            _resolvers.pop(next(iter(_resolvers)))
        resolver = MediaResolver(settings)
        _resolvers[id(settings)] = (settings, resolver)
        return resolver


def decode_text(data: bytes, uri: object) -> str:
    """The text a fetched file holds (UTF-8, a byte-order mark dropped), or ``MediaError`` saying it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MediaError(f"{_short(str(uri))!r} is not UTF-8 text (byte {exc.start} is not valid); "
                         "save the file as UTF-8") from None


def failed_prediction(task: dict, error: MediaError, model_version: str) -> dict:
    """The prediction for a task whose media failed: empty, with the reason, logged.

    The version gets a ``+media-error`` suffix: Label Studio re-predicts a task
    only when it has no prediction with the current version, so this keeps the
    task in line for the next "Retrieve predictions" once the cause is fixed.
    """
    task_id = task.get("id") if isinstance(task, dict) else None
    log.warning("task %s: no prediction: %s", task_id, error)
    return {"result": [], "score": 0.0, "model_version": f"{model_version}+media-error", "error": str(error)}
