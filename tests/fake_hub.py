"""A small fake of the Hugging Face Hub on 127.0.0.1 (a test fixture only): whoami, repo create and the routes a
regular (non-LFS) ``HfApi.upload_folder`` / ``create_commit`` uses, for models, datasets and Spaces; a Space's file
list, buckets and volumes; a taken name (409) and a read-only token (``read_token``: whoami says role ``read``,
writes get 403). Tests that need more (the Jobs API) pass ``routes``."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_write_token"
READ_TOKEN = "hf_fake_read_token"
REPO_KINDS = ("models", "datasets", "spaces")

# routes(handler, method, path parts, body) -> True when it answered the request
Routes = Callable[[Any, str, list[str], bytes], bool]


class FakeHub:
    def __init__(
        self,
        user: str = "ann",
        orgs: tuple[str, ...] = ("team",),
        token: str = TOKEN,
        routes: Routes | None = None,
        read_token: str = READ_TOKEN,
    ) -> None:
        self.user, self.orgs, self.token, self.routes, self.read_token = user, orgs, token, routes, read_token
        # repo id -> {"private": bool, "files": {path: bytes}, "request": the create request, "commits": int}
        self.repos: dict[str, dict[str, Any]] = {}
        self.buckets: dict[str, dict[str, Any]] = {}  # bucket id -> its create request
        self.volumes: dict[str, list[dict[str, Any]]] = {}  # Space id -> the volumes set on it
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
        self.repos.setdefault(repo, {"private": private, "files": {}, "request": req, "commits": 0})
        return repo

    def commit(self, repo: str, body: bytes) -> None:
        entry = self.repos.setdefault(repo, {"private": False, "files": {}})
        files = entry["files"]
        entry["commits"] = entry.get("commits", 0) + 1
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)

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
    read_only = handler.headers.get("Authorization") == f"Bearer {hub.read_token}"
    if method == "GET" and parts == ["api", "whoami-v2"]:
        orgs = [{"name": org} for org in hub.orgs]
        role = "read" if read_only else "write"
        reply(handler, 200, {"name": hub.user, "type": "user", "orgs": orgs, "auth": {"accessToken": {"role": role}}})
    elif read_only and method != "GET":
        reply(handler, 403, {"error": "You don't have the rights to create or change this repository"})
    elif method == "POST" and parts == ["api", "validate-yaml"]:
        reply(handler, 200, {"errors": [], "warnings": []})
    elif method == "POST" and parts == ["api", "repos", "create"]:
        req = json.loads(body)
        if f"{req.get('organization') or hub.user}/{req['name']}" in hub.repos:
            return reply(handler, 409, {"error": "You already created this repo"}) or True
        repo = hub.create(req)
        reply(handler, 200, {"url": f"{host}/{repo}", "name": repo})
    elif method == "GET" and parts[:2] == ["api", "spaces"] and len(parts) >= 6 and parts[4] == "tree":
        repo = f"{parts[2]}/{parts[3]}"
        if repo not in hub.repos:
            return reply(handler, 404, {"error": "Repository not found"}) or True
        files = hub.files(repo)
        reply(handler, 200, [{"type": "file", "oid": "0" * 40, "size": len(b), "path": f} for f, b in files.items()])
    elif method == "POST" and parts[:2] == ["api", "buckets"] and len(parts) == 4:
        hub.buckets[f"{parts[2]}/{parts[3]}"] = json.loads(body or b"{}")
        reply(handler, 200, {"url": f"{host}/buckets/{parts[2]}/{parts[3]}"})
    elif method == "PUT" and parts[:2] == ["api", "spaces"] and parts[4:] == ["volumes"]:
        hub.volumes[f"{parts[2]}/{parts[3]}"] = json.loads(body)["volumes"]
        reply(handler, 200, {})
    elif method == "POST" and len(parts) >= 6 and parts[1] in REPO_KINDS and parts[4] == "preupload":
        files = json.loads(body)["files"]
        reply(
            handler,
            200,
            {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
        )
    elif method == "POST" and len(parts) >= 6 and parts[1] in REPO_KINDS and parts[4] == "commit":
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
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
            hub.requests.append((method, self.path, dict(self.headers)))
            if self.headers.get("Authorization") not in (f"Bearer {hub.token}", f"Bearer {hub.read_token}"):
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

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

    return Handler
