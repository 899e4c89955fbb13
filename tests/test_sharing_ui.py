"""A shared studio as its visitors meet it: logins, isolation between users through the public API, the start-up
refusal without a login, and the playground's process cap."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import app
from tests.conftest import free_port
from tests.tiny import chat_rows, write_jsonl
from ui import predictor
from ui.runs import DETAIL_KEYS

USERS = [("ann", "pw-ann"), ("bob", "pw-bob"), ("root", "pw-root")]


@pytest.fixture
def shared_studio(data_dir):
    ctx, demo = app.create(data_dir, shared=True, admins=("root",))
    port = free_port()
    app.launch(ctx, demo, port=port, auth=USERS, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", ctx
    demo.close()
    ctx.engine.shutdown(stop_runs=True)


def client(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=dict(USERS) and (user, dict(USERS)[user]), verbose=False)


def table_ids(c) -> list[str]:
    out = c.predict("", "all", "all", "step", api_name="/poll")
    return [r[0] for r in out[0]["data"]]


@pytest.mark.slow
def test_users_see_and_touch_only_their_own_runs(shared_studio, tiny_llama):
    url, ctx = shared_studio
    uploads = ctx.engine.user_dirs("ann")[0]
    uploads.mkdir(parents=True)
    data = write_jsonl(uploads / "chat.jsonl", chat_rows(24))
    model = ctx.data_dir / "models" / "tiny"
    shutil.copytree(tiny_llama, model)
    ann, bob, root = (client(url, u) for u, _ in USERS)

    out = ann.predict("llm_sft", {"base_model": str(model), "data_path": str(data), "max_steps": 2}, api_name="/start")
    run_id = out[2]
    assert run_id and ctx.engine.store.get_run(run_id)["user"] == "ann"
    row = ctx.engine.wait(run_id, timeout=240)
    assert row["status"] == "succeeded", row["error"]

    assert run_id in table_ids(ann) and run_id in table_ids(root), "the owner and the admin see it"
    assert run_id not in table_ids(bob)
    detail = bob.predict(run_id, "all", "all", "step", api_name="/poll")
    assert run_id not in str(detail[1 + DETAIL_KEYS.index("metrics")])
    for api in ("/stop_run", "/download_run", "/delete_run"):
        with pytest.raises(Exception, match="No run with id"):
            bob.predict(run_id, api_name=api)
    assert ctx.engine.store.get_run(run_id)["status"] == "succeeded" and Path(row["run_dir"]).is_dir()
    with pytest.raises(Exception, match="not in the list of choices|No run with id"):  # noqa: B017
        bob.predict(run_id, "text", "hi", "", None, None, None, api_name="/predict")

    out = bob.predict("llm_sft", {"base_model": str(model), "data_path": str(data), "max_steps": 2}, api_name="/start")
    said = f"{out[0]} {out[1]}"
    assert not isinstance(out[2], str) or not out[2], "nothing was queued"
    assert "must be one of your uploads" in said, said
    assert str(data.parent) not in said, "no server path is echoed"
    assert len(ctx.engine.store.list_runs()) == 1


def test_a_shared_start_without_a_login_is_refused_and_insecure_warns(tmp_path):
    env = {"TRAINPAD_DATA_DIR": str(tmp_path / "d"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    refused = subprocess.run(
        [sys.executable, "app.py", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(app.__file__).parent,
        env=env,
    )
    assert refused.returncode != 0 and "Refusing to start a shared instance without a login" in refused.stderr
    assert app.shared_login_problem(True, None, insecure=True) == ""
    assert app.shared_login_problem(False, None, insecure=False) == ""
    assert (
        app.is_shared("0.0.0.0", False) and app.is_shared("127.0.0.1", True) and not app.is_shared("127.0.0.1", False)
    )


class FakePredictor:
    def __init__(self, run_dir, log_path):
        self.run_dir = str(run_dir)
        self.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.used = time.time()

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_playground_processes_are_capped_and_idle_ones_reaped(monkeypatch, tmp_path):
    monkeypatch.setattr(predictor, "Predictor", FakePredictor)
    monkeypatch.setattr(predictor, "MAX_PROCESSES", 3)
    ctx = type("Ctx", (), {"data_dir": tmp_path})()
    made = [predictor.predictor_for(ctx, f"session-{i}", f"run-{i}") for i in range(10)]
    try:
        assert predictor.active_predictors() == 3
        assert sum(p.proc.poll() is None for p in made) == 3, "the least recently used were released"
        assert predictor.reap_idle(now=time.time() + predictor.IDLE_SECONDS + 1) == 3
        assert predictor.active_predictors() == 0
    finally:
        predictor.release_all()
        for p in made:
            if p.proc.poll() is None:
                p.close()
