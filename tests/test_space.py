"""``trainpad space create|update`` against the fake Hub, the studio's *Publish as a Space*, and the built folder
started as a Space would start it (Hugging Face sign-in, shared mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import cli
from engine.ship import space
from tests.fake_hub import READ_TOKEN, TOKEN, FakeHub

SECRET = "admin:s3cret-for-the-space-only"


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the fake Hub is on 127.0.0.1
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, at its first import
    yield fake
    fake.close()


def front_matter(card: str) -> dict:
    meta, _ = space.split_front_matter(card)
    return meta


def check_card(card: str) -> None:
    meta = front_matter(card)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == metadata.version("gradio")
    assert meta["app_file"] == "app.py" and meta["hf_oauth"] is True
    assert {"read-repos", "write-repos"} <= set(meta["hf_oauth_scopes"])
    body = card.split("\n---\n", 1)[1]
    assert "TRAINPAD_MAX_QUEUED" in body and "When the Space sleeps" in body  # its limits, from spaces/README.md
    assert "Deploy by hand" not in body


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_writes_the_card_the_requirements_and_the_app_files_only(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "space", "create", "team/trainpad", "--dry-run", "--out", str(tmp_path))
    folder = Path(out.strip())
    assert code == 0 and folder == tmp_path / "trainpad"
    top = sorted(p.name for p in folder.iterdir())
    assert top == ["README.md", "app.py", "assets", "engine", "requirements.txt", "ui"]
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    assert "engine/ship/space.py" in files and "ui/studio.py" in files and "assets/style.css" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    check_card((folder / "README.md").read_text(encoding="utf-8"))
    requirements = (folder / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert f"gradio[oauth]=={metadata.version('gradio')}" in requirements and "." not in requirements
    assert "torch==2.13.0" in requirements and not any(r.startswith("gradio>") for r in requirements)

    (folder / "engine" / "stale.py").write_text("x = 1\n")
    assert run_cli(capsys, "space", "create", "trainpad", "--dry-run", "--out", str(tmp_path))[0] == 0
    assert not (folder / "engine" / "stale.py").exists()  # an earlier build is replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, _, err = run_cli(capsys, "space", "create", "mine", "--dry-run", "--out", str(tmp_path))
    assert code == 2 and "is not an earlier Space build" in err and (tmp_path / "mine" / "notes.txt").exists()


def test_the_by_hand_card_keeps_in_step_with_the_installed_gradio():
    meta, _ = space.split_front_matter(space.CARD_SOURCE.read_text(encoding="utf-8"))
    assert meta["sdk_version"] == metadata.version("gradio"), (
        "set spaces/README.md's sdk_version to the installed Gradio"
    )


def test_create_makes_one_space_with_its_settings_sent_through_the_api(hub, monkeypatch, capsys):
    monkeypatch.setenv("TRAINPAD_AUTH", SECRET)
    argv = ["space", "create", "trainpad", "--private", "--hardware", "a10g-small", "--storage", "small"]
    argv += ["--secret", "TRAINPAD_AUTH", "--var", "TRAINPAD_MAX_QUEUED=2"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"{hub.url}/spaces/ann/trainpad"
    assert list(hub.repos) == ["ann/trainpad"]
    repo = hub.repos["ann/trainpad"]
    request = repo["request"]
    assert request["type"] == "space" and request["sdk"] == "gradio" and request["hardware"] == "a10g-small"
    assert repo["private"] is True and repo["commits"] == 1
    assert {"key": "TRAINPAD_ADMINS", "value": "ann"} in request["variables"]
    assert {"key": "TRAINPAD_MAX_QUEUED", "value": "2"} in request["variables"]
    assert request["secrets"] == [{"key": "TRAINPAD_AUTH", "value": SECRET}]
    assert hub.volumes["ann/trainpad"] == [{"type": "bucket", "source": "ann/trainpad-storage", "mountPath": "/data"}]
    assert hub.buckets["ann/trainpad-storage"]["visibility"] == "private" and "storage buckets" in err

    files = repo["files"]
    assert {"README.md", "requirements.txt", "app.py", "engine/cli.py", "ui/studio.py"} <= set(files)
    assert not [f for f in files if f.split("/")[0] in ("tests", "bench", "spaces", "scripts", "trainpad_data")]
    check_card(files["README.md"].decode())
    for body in files.values():
        assert TOKEN.encode() not in body and SECRET.encode() not in body


def test_update_makes_one_more_commit_and_drops_what_the_app_no_longer_has(hub, capsys):
    assert run_cli(capsys, "space", "create", "trainpad")[0] == 0
    files = hub.repos["ann/trainpad"]["files"]
    files["engine/removed_module.py"] = b"old = True\n"  # a module of an older version
    files["NOTES.md"] = b"the owner's own file"
    code, out, err = run_cli(capsys, "space", "update", "ann/trainpad")
    assert code == 0, err
    assert out.strip() == f"{hub.url}/spaces/ann/trainpad"
    assert hub.repos["ann/trainpad"]["commits"] == 2 and list(hub.repos) == ["ann/trainpad"]
    assert "engine/removed_module.py" not in files and files["NOTES.md"] == b"the owner's own file"
    assert "engine/cli.py" in files

    code, _, err = run_cli(capsys, "space", "update", "never-made")
    assert code == 2 and "No Space ann/never-made: create it first" in err


def test_a_taken_name_or_a_read_only_token_says_so_and_creates_nothing(hub, monkeypatch, capsys):
    hub.create({"name": "taken", "type": "space"})
    code, _, err = run_cli(capsys, "space", "create", "taken", "--storage", "bucket")
    assert code == 2 and "The Space ann/taken already exists" in err and "space update" in err
    assert hub.repos["ann/taken"]["commits"] == 0 and hub.buckets == {} and hub.volumes == {}

    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    code, _, err = run_cli(capsys, "space", "create", "fresh")
    assert code == 2 and "can only read" in err and "write access" in err
    assert list(hub.repos) == ["ann/taken"]

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, _, err = run_cli(capsys, "space", "create", "fresh", "--org", "someone-else")
    assert code == 2 and "not a member" in err and list(hub.repos) == ["ann/taken"]
    code, _, err = run_cli(capsys, "space", "create", "fresh", "--secret", "NOT_SET_ANYWHERE", "--hardware", "gpu9000")
    assert code == 2 and "--secret NOT_SET_ANYWHERE" in err and "--hardware 'gpu9000'" in err
    assert list(hub.repos) == ["ann/taken"]


@pytest.mark.slow
def test_publish_from_the_studio_runs_the_command_with_the_users_token(hub, monkeypatch):
    from ui import publish

    monkeypatch.delenv("HF_TOKEN")
    admin, visitor = SimpleNamespace(is_admin=lambda: True), SimpleNamespace(is_admin=lambda: False)
    assert "Only an admin" in publish.publish(visitor, "create", "studio", "", False, "", "none", TOKEN)
    assert "token" in publish.publish(admin, "create", "studio", "", False, "", "none", "")
    assert hub.repos == {}

    answer = publish.publish(admin, "create", "studio", "team", True, "", "none", TOKEN)
    assert answer.startswith("✓ Published") and f"{hub.url}/spaces/team/studio" in answer, answer
    assert hub.repos["team/studio"]["private"] is True and hub.repos["team/studio"]["commits"] == 1
    answer = publish.publish(admin, "create", "studio", "team", False, "", "none", TOKEN)
    assert answer.startswith("Not published:") and "already exists" in answer
    assert publish.publish(admin, "update", "team/studio", "", False, "", "none", TOKEN).startswith("✓ Published")
    assert hub.repos["team/studio"]["commits"] == 2


def test_the_first_page_says_what_a_sleeping_space_keeps(tmp_path):
    from ui.publish import readme_text, space_note

    storage = tmp_path / "data"
    assert "are kept in" in space_note(storage / "trainpad", storage_root=storage)
    lost = space_note(tmp_path / "trainpad_data", storage_root=storage)
    assert "nothing is kept" in lost and "Sign in with Hugging Face" in lost
    assert readme_text(space.CARD_SOURCE).startswith("\n# Trainpad on a Hugging Face Space")


class _OpenIdProvider(BaseHTTPRequestHandler):
    """The sign-in provider's metadata, as Hugging Face serves it (the login route reads it)."""

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        base = f"http://{self.headers['Host']}"
        body = json.dumps({"issuer": base, "authorization_endpoint": f"{base}/oauth/authorize"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# Gradio's launch asks the new page once, with a 3 s timeout, and gives up on a timeout ("localhost is not
# accessible"): on this 2-core machine under a full test run the first page can take longer. Then the same app.py
# is run with only that self-check turned off.
WITHOUT_SELF_CHECK = (
    "import runpy, gradio.networking as n; n.url_ok = lambda url: True; runpy.run_path('app.py', run_name='__main__')"
)


def _start_app(folder: Path, env: dict[str, str], url: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """``python app.py`` in ``folder``, serving ``url`` (see WITHOUT_SELF_CHECK)."""
    for attempt, command in enumerate(([sys.executable, "app.py"], [sys.executable, "-c", WITHOUT_SELF_CHECK])):
        log = tmp_path / f"app-{attempt}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        if _serving(url, proc):
            return proc, log
        _end(proc)
        if "localhost is not accessible" not in log.read_text():
            break
    raise AssertionError(f"the Space's app did not start:\n{log.read_text()[-3000:]}")


def _serving(url: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=10).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_the_built_folder_starts_as_a_space_and_refuses_visitors_not_signed_in(tmp_path):
    pytest.importorskip("authlib", reason="Hugging Face sign-in needs gradio[oauth] (pip install -e .[dev])")
    import httpx
    from gradio_client import Client

    from engine.run.procs import free_port

    folder = space.dry_run("trainpad", tmp_path)
    found = subprocess.run(
        [sys.executable, "-c", "import engine, ui; print(engine.__file__, ui.__file__)"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert found.count(str(folder)) == 2, found  # the Space's own copy is what runs

    provider = ThreadingHTTPServer(("127.0.0.1", 0), _OpenIdProvider)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINPAD_", "GRADIO_", "HF_TOKEN"))}
    env |= {  # what the platform sets on a Space with hf_oauth: true (and a free local port)
        "SYSTEM": "spaces",
        "SPACE_ID": "ann/trainpad",
        "SPACE_AUTHOR_NAME": "ann",
        "SPACE_HOST": "ann-trainpad.hf.space",
        "OAUTH_CLIENT_ID": "client-id",
        "OAUTH_CLIENT_SECRET": "client-secret",
        "OAUTH_SCOPES": "openid profile read-repos write-repos",
        "OPENID_PROVIDER_URL": f"http://127.0.0.1:{provider.server_address[1]}",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "TRAINPAD_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
    }
    url = f"http://127.0.0.1:{port}"
    proc, log = _start_app(folder, env, url, tmp_path)
    try:
        assert "(shared: users are isolated)" in log.read_text()
        config = httpx.get(f"{url}/config", timeout=10).text
        assert "tp-space-note" in config and "nothing is kept" in config  # no storage at /data here
        login = httpx.get(f"{url}/login/huggingface", timeout=10)
        assert login.status_code in (302, 307) and "/oauth/authorize" in login.headers["location"]

        client = Client(url, verbose=False)
        data = str(folder / "assets" / "data" / "text_classification.csv")
        out = client.predict("tabular", {"data_path": data}, api_name="/start")
        # refused: by the sign-in check, or before it by the path policy (a visitor not signed in has no uploads)
        assert "Sign in first" in str(out) or "must be one of your uploads" in str(out), out
        table = client.predict("", "all", "all", "step", api_name="/poll")[0]
        assert table["data"] == []
        assert not list((tmp_path / "data" / "runs").glob("*"))  # nothing was queued
    finally:
        _end(proc)
        provider.shutdown()
        provider.server_close()


def test_the_publish_panel_is_in_a_local_studio_only(monkeypatch):
    import gradio as gr

    from ui import publish

    def panel(shared: bool) -> list[str]:
        with gr.Blocks() as demo:
            publish.wire_docs(SimpleNamespace(shared=shared, is_admin=lambda: True))
        return [b.elem_id for b in demo.blocks.values() if (getattr(b, "elem_id", None) or "").startswith("tp-publish")]

    monkeypatch.delenv("SYSTEM", raising=False)
    assert "tp-publish-create" in panel(shared=False) and panel(shared=True) == []
    monkeypatch.setenv("SYSTEM", "spaces")
    assert panel(shared=False) == []
