"""A small fake of the Hugging Face Hub's repo-create and upload routes on 127.0.0.1 (a test fixture only):
enough for ``HfApi.create_repo`` and ``HfApi.upload_folder`` with regular (non-LFS) uploads."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "hf_fake_write_token"


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}  # repo id -> {"private": bool, "files": {path: bytes}}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path, dict(self.headers)))
                if not self._authorised():
                    return
                if self.path.startswith("/api/whoami-v2"):
                    return self._reply(200, {"name": "ann", "type": "user", "orgs": [{"name": "team"}]})
                self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                hub.requests.append(("POST", self.path, dict(self.headers)))
                if not self._authorised():
                    return
                parts = self.path.split("?")[0].strip("/").split("/")
                if self.path.startswith("/api/validate-yaml"):
                    return self._reply(200, {"errors": [], "warnings": []})
                if self.path.startswith("/api/repos/create"):
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'ann'}/{req['name']}"
                    private = bool(req.get("private")) or req.get("visibility") == "private"
                    hub.repos.setdefault(repo, {"private": private, "files": {}, "request": req})
                    return self._reply(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
                if len(parts) >= 6 and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                if len(parts) >= 6 and parts[4] == "commit":
                    repo = f"{parts[2]}/{parts[3]}"
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.repos[repo]["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._reply(
                        200,
                        {
                            "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{'1' * 40}",
                            "commitOid": "1" * 40,
                            "pullRequestUrl": None,
                        },
                    )
                self._reply(404, {"error": f"no route {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
