"""A small fake of the Hugging Face Hub on 127.0.0.1 (a test fixture only): whoami, repo create and the routes a
regular (non-LFS) ``HfApi.upload_folder`` uses. Tests that need more (the Jobs API) pass ``routes``."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_write_token"

# routes(handler, method, path parts, body) -> True when it answered the request
Routes = Callable[[Any, str, list[str], bytes], bool]


class FakeHub:
    def __init__(
        self, user: str = "ann", orgs: tuple[str, ...] = ("team",), token: str = TOKEN, routes: Routes | None = None
    ) -> None:
        self.user, self.orgs, self.token, self.routes = user, orgs, token, routes
        self.repos: dict[str, dict[str, Any]] = {}  # repo id -> {"private": bool, "files": {path: bytes}}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def files(self, repo: str) -> dict[str, bytes]:
        """What was committed to ``repo`` (empty when nothing was)."""
        return self.repos.get(repo, {}).get("files", {})

    def create(self, req: dict[str, Any]) -> str:
        repo = f"{req.get('organization') or self.user}/{req['name']}"
        private = bool(req.get("private")) or req.get("visibility") == "private"
        self.repos.setdefault(repo, {"private": private, "files": {}, "request": req})
        return repo

    def commit(self, repo: str, body: bytes) -> None:
        files = self.repos.setdefault(repo, {"private": False, "files": {}})["files"]
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    """Answer ``handler``'s request with ``body`` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _hub_routes(hub: FakeHub, handler: BaseHTTPRequestHandler, method: str, parts: list[str], body: bytes) -> bool:
    host = f"http://{handler.headers['Host']}"
    if method == "GET" and parts == ["api", "whoami-v2"]:
        orgs = [{"name": org} for org in hub.orgs]
        reply(handler, 200, {"name": hub.user, "type": "user", "orgs": orgs, "auth": {}})
    elif method == "POST" and parts == ["api", "validate-yaml"]:
        reply(handler, 200, {"errors": [], "warnings": []})
    elif method == "POST" and parts == ["api", "repos", "create"]:
        repo = hub.create(json.loads(body))
        reply(handler, 200, {"url": f"{host}/{repo}", "name": repo})
    elif method == "POST" and parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "preupload":
        files = json.loads(body)["files"]
        reply(
            handler,
            200,
            {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
        )
    elif method == "POST" and parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "commit":
        repo = f"{parts[2]}/{parts[3]}"
        hub.commit(repo, body)
        commit = {"commitUrl": f"{host}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40, "pullRequestUrl": None}
        reply(handler, 200, commit)
    else:
        return False
    return True


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            hub.requests.append((method, self.path, dict(self.headers)))
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                return reply(self, 401, {"error": "Invalid credentials in Authorization header"})
            parts = self.path.split("?")[0].strip("/").split("/")
            if hub.routes and hub.routes(self, method, parts, body):
                return
            if not _hub_routes(hub, self, method, parts, body):
                reply(self, 404, {"error": f"no route {self.path}"})

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

    return Handler
