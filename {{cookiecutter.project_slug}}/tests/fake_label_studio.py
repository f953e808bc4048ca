"""A local HTTP server standing in for Label Studio's API in tests (loopback only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.YWNjZXNz"


class FakeLabelStudio:
    """Serves ``/api/projects/<id>/export``, ``/api/token/refresh/``, ``/api/ml`` and ``/api/webhooks/``
    (list and PATCH, shaped as Label Studio 1.23 answers them); records auth headers and patches."""

    def __init__(self, export: list[dict] | None = None) -> None:
        self.export = export or []
        self.auth_seen: list[str] = []
        self.ml_backends: list[dict] = []
        self.webhooks: list[dict] = []
        self.patches: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/token/refresh/" and body.get("refresh") == PAT:
                    return self.reply(200, {"access": ACCESS})
                self.reply(401, {"detail": "bad refresh token"})

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                fake.auth_seen.append(auth)
                if auth not in (f"Token {LEGACY_TOKEN}", f"Bearer {ACCESS}"):
                    return self.reply(401, {"detail": "Authentication credentials were not provided."})
                if self.path.startswith("/api/projects/") and "/export" in self.path:
                    return self.reply(200, fake.export)
                if self.path.startswith("/api/ml?project="):
                    return self.reply(200, list(fake.ml_backends))
                if self.path.startswith("/api/webhooks/?project="):
                    return self.reply(200, list(fake.webhooks))
                self.reply(404, {"detail": "not found"})

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization", "") not in (f"Token {LEGACY_TOKEN}", f"Bearer {ACCESS}"):
                    return self.reply(401, {"detail": "Authentication credentials were not provided."})
                hook = next((h for h in fake.webhooks if self.path == f"/api/webhooks/{h['id']}/"), None)
                if hook is None:
                    return self.reply(404, {"detail": "not found"})
                fake.patches.append((self.path, body))
                hook.update(body)
                self.reply(200, hook)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
