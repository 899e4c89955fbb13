"""Remote backends end to end: a real local Ray head (one per test session) and a fake of Hugging Face's Jobs
routes on 127.0.0.1 that runs each job's command as a local subprocess. A tiny tabular task goes through the
supervisor, the backend, the job and back into the run folder and the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import runfiles as rf
from engine.errors import UserError
from engine.params import validate_params
from engine.run import backends
from engine.run import supervisor as supervisor_module
from engine.run.backends import hf_jobs, remote_run
from engine.run.procs import ENGINE_ROOT
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests.fake_hub import FakeHub, reply
from tests.fakes import dead_process

TASK = get_task("tabular")
TOKEN = "hf_fake_token_for_tests"


def tabular_csv(folder: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    df["target"] = (df.x1 + 0.3 * rng.normal(size=n) > 0).astype(int)
    path = folder / "table.csv"
    df.to_csv(path, index=False)
    return path


def quick(tmp_path: Path, **kw):
    """A tabular run of a few seconds (``time_limit``/``num_trials`` make it longer)."""
    values = dict(model="linear", num_trials=2, cv_folds=2, time_limit=5, feature_importance=False, valid_fraction=0.2)
    return validate_params(TASK.params, {"data_path": str(tabular_csv(tmp_path)), **values, **kw})


def slow_run(tmp_path: Path):
    """A tabular search that would go on for a minute (for Stop)."""
    return quick(tmp_path, num_trials=0, time_limit=60, model="auto")


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def free_port() -> int:
    """A free TCP port outside Ray's worker range (10002-19999), where a fixed port makes `ray start` fail."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10002 <= port <= 19999:
            return port


# --- fast: pieces -------------------------------------------------------------------------------------------


def test_backends_are_listed_and_say_why_one_cannot_be_used(monkeypatch):
    monkeypatch.delenv("TRAINPAD_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    listed = {b.name: b for b in backends.all_backends()}
    assert list(listed) == ["local", "ray", "hf-jobs"]
    assert "unavailable" in listed["ray"].title and "TRAINPAD_RAY_ADDRESS" in listed["ray"].title
    assert backends.get_backend("ray").title == "Ray cluster"  # the stored name still resolves
    monkeypatch.setenv("TRAINPAD_RAY_ADDRESS", "http://127.0.0.1:8265")
    assert backends.all_backends()[1].title == "Ray cluster"


def test_job_log_is_mirrored_idempotently(tmp_path):
    lines = [
        "[trainpad] run x: task tabular",
        remote_run.EVENT + json.dumps({"type": "trial", "step": 1, "score": 0.5}),
        "noise " + remote_run.EVENT + json.dumps({"type": "trial", "step": 2, "score": 0.4}),
        remote_run.EVENT + "not json",
        remote_run.FILE + 'metrics.json {"eval_loss": 0.4}',
        remote_run.FILE + 'secrets.txt {"a": 1}',
    ]
    remote_run.mirror_log(lines[:2], tmp_path)
    remote_run.mirror_log(lines, tmp_path)
    remote_run.mirror_log(lines, tmp_path)
    events, _ = rf.read_events(tmp_path)
    assert [e["step"] for e in events] == [1, 2]
    assert rf.read_json(tmp_path / rf.METRICS) == {"eval_loss": 0.4}
    assert not (tmp_path / "secrets.txt").exists()
    log = (tmp_path / rf.LOG).read_text()
    assert log.splitlines() == ["[trainpad] run x: task tabular", remote_run.EVENT + "not json", lines[-1]]


def test_hf_jobs_refuse_what_a_job_cannot_do(tmp_path, monkeypatch):
    import huggingface_hub.constants

    assert "HF_HUB_OFFLINE is set" in hf_jobs.available()  # conftest keeps the tests offline
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TRAINPAD_HF_FLAVOR", "a10g-tiny")
    params = {"data_path": str(tabular_csv(tmp_path)), "push_to_hub": False, "resume_from": "/x/checkpoint-3"}
    found = "\n".join(hf_jobs.problems(params, {}))
    assert "enter a Hugging Face token" in found
    assert "turn push_to_hub on and set hub_repo_id" in found
    assert f"`data_path` is {tmp_path / 'table.csv'}, a path on this machine" in found
    assert "Resuming from a checkpoint" in found
    assert "no flavor `a10g-tiny`" in found and "h200x8" in found
    ok = {"data_path": "someone/dataset", "push_to_hub": True, "hub_repo_id": "me/model"}
    monkeypatch.delenv("TRAINPAD_HF_FLAVOR")
    assert hf_jobs.problems(ok, {"HF_TOKEN": TOKEN}) == []


def test_ray_settings(monkeypatch):
    from engine.run.backends import ray as ray_backend

    monkeypatch.delenv("TRAINPAD_RAY_SHARED_STORAGE", raising=False)
    for address, shared in [("http://127.0.0.1:8265", True), ("localhost:8265", True), ("http://ray-head:8265", False)]:
        monkeypatch.setenv("TRAINPAD_RAY_ADDRESS", address)
        assert ray_backend.shared_storage() is shared, address
    monkeypatch.setenv("TRAINPAD_RAY_SHARED_STORAGE", "1")
    assert ray_backend.shared_storage() and ray_backend.problems({}, {}) == []
    monkeypatch.setenv("TRAINPAD_RAY_SHARED_STORAGE", "0")
    assert "turn push_to_hub on" in ray_backend.problems({"push_to_hub": False}, {})[0]
    assert ray_backend.STATES == {
        "PENDING": None, "RUNNING": None, "SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"
    }  # fmt: skip


def test_job_command_follows_the_runs_processes(tmp_path):
    assert remote_run.job_command({}, tmp_path)[-3:] == ["-m", "engine.run.worker", str(tmp_path)]
    command = remote_run.job_command({"num_processes": 2, "distributed": "fsdp"}, tmp_path)
    assert command[command.index("--num_processes") + 1] == "2" and "--use_fsdp" in command


# --- the local Ray head -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_head():
    """A real Ray head on loopback for the whole session: its dashboard's address."""
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'trainpad[ray]' (CI installs it)")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    dash = free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block"]
    command += ["--node-ip-address=127.0.0.1", f"--port={free_port()}", "--dashboard-host=127.0.0.1"]
    command += [f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}"]
    command += [f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=2", "--include-dashboard=true"]
    command += ["--object-store-memory=200000000", "--disable-usage-stats", f"--temp-dir={temp}"]
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    with open(os.path.join(temp, "head.log"), "wb") as log:  # the cluster's `python` is this one
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{dash}"
    try:
        wait_for(lambda: _answers(url + "/api/version") or head.poll() is not None, 90, "Ray head")
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}: {Path(temp, 'head.log').read_text()[-2000:]}")
        yield url
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
        return True
    except OSError:
        return False


@pytest.fixture
def on_ray(ray_head, monkeypatch):
    monkeypatch.setenv("TRAINPAD_RAY_ADDRESS", ray_head)
    monkeypatch.setenv("TRAINPAD_RAY_GPUS_PER_PROCESS", "0")
    monkeypatch.setenv("TRAINPAD_RAY_STOP_WAIT_S", "30")
    return ray_head


@pytest.mark.slow
def test_ray_runs_succeed_or_fail_with_the_workers_error_followed_by_a_restarted_app(on_ray, data_dir, tmp_path):
    first = Supervisor(data_dir, poll_interval=0.2)
    good = first.submit(TASK, quick(tmp_path), backend="ray")
    bad = first.submit(TASK, quick(tmp_path, target_columns="nope"), backend="ray", check=False)
    first.tick()  # submits both jobs
    pid, started = dead_process()
    for run_id in (good, bad):
        assert first.store.get_run(run_id)["remote_job_id"] == f"trainpad-{run_id}"
        first.store.update_run(run_id, owner_pid=pid, owner_started=started)  # the app that submitted them is gone
    again = Supervisor(data_dir, poll_interval=0.2)  # a restarted app follows them by their stored job ids
    row = again.wait(good, timeout=120, drive=True)
    run_dir = Path(row["run_dir"])
    assert row["status"] == "succeeded", (row["error"], (run_dir / rf.LOG).read_text()[-2000:])
    assert row["backend"] == "ray"
    metrics = json.loads((run_dir / rf.METRICS).read_text())
    assert row["key_metric"] == pytest.approx(metrics["eval_loss"]) and 0 < metrics["eval_loss"] < 0.7
    assert (run_dir / "model" / "model.joblib").is_file() and (run_dir / "model" / "README.md").is_file()
    assert again.store.metrics(good, ["best_score"])  # events ingested
    assert "[trainpad] succeeded" in (run_dir / rf.LOG).read_text()  # the job's log, mirrored
    failed = again.wait(bad, timeout=120, drive=True)
    assert failed["status"] == "failed" and "nope" in failed["error"], failed["error"]
    assert "nope" in (Path(failed["run_dir"]) / rf.LOG).read_text()


@pytest.mark.slow
def test_ray_stop_stops_the_job(on_ray, supervisor, tmp_path):
    run_id = supervisor.submit(TASK, slow_run(tmp_path), backend="ray")
    wait_for(lambda: (supervisor.store.get_run(run_id)["step"] or 0) >= 1, 90, "first trial")
    t0 = time.time()
    supervisor.stop(run_id)
    row = supervisor.wait(run_id, timeout=60)
    assert row["status"] == "stopped", row["error"]
    assert time.time() - t0 < 40
    assert rf.read_json(Path(row["run_dir"]) / rf.OUTCOME)["status"] == "stopped"  # the worker's own word


# --- a fake of Hugging Face's Jobs routes, on the shared fake Hub ---------------------------------------------


class FakeJobs:
    """Jobs run as local subprocesses, served by ``tests.fake_hub.FakeHub`` (which also takes the uploads)."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []  # the job submissions: (method, path, body)
        self.jobs: dict[str, dict] = {}
        self.changed = threading.Condition()
        self.hub = FakeHub(user="tester", orgs=(), token=TOKEN, routes=self.route)
        self.url = self.hub.url

    def files(self, repo: str) -> dict[str, bytes]:
        return self.hub.files(repo)

    def route(self, handler, method: str, parts: list[str], body: bytes) -> bool:
        if parts[:2] != ["api", "jobs"] or len(parts) < 3:
            return False
        if method == "POST" and len(parts) == 3:
            submitted = json.loads(body)
            self.requests.append(("POST", handler.path, submitted))
            reply(handler, 200, self.info(self.start_job(parts[2], submitted)))
            return True
        job = self.jobs.get(parts[3]) if len(parts) >= 4 else None
        if job is None:
            reply(handler, 404, {"error": "Job not found"})
        elif method == "POST" and parts[4:] == ["cancel"]:
            self.cancel(job)
            reply(handler, 200, {})
        elif parts[4:] == ["logs"]:
            self.stream_logs(handler, job)
        else:
            reply(handler, 200, self.info(job))
        return True

    def start_job(self, ns: str, body: dict) -> dict:
        job_id = f"job{len(self.jobs) + 1:04d}"
        command = [sys.executable if body["command"][0] == "python" else body["command"][0], *body["command"][1:]]
        env = {**os.environ, "HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", **body["environment"], **body["secrets"]}
        proc = subprocess.Popen(
            command, cwd=ENGINE_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        job = {"id": job_id, "ns": ns, "stage": "RUNNING", "lines": [], "proc": proc, "body": body}
        self.jobs[job_id] = job
        threading.Thread(target=self._collect, args=(job,), daemon=True).start()
        return job

    def _collect(self, job: dict) -> None:
        for raw in job["proc"].stdout:
            with self.changed:
                job["lines"].append((_now(), raw.decode("utf-8", "replace").rstrip("\n")))
                self.changed.notify_all()
        code = job["proc"].wait()
        with self.changed:
            if job["stage"] == "RUNNING":
                job["stage"] = "COMPLETED" if code == 0 else "ERROR"
                job["message"] = None if code == 0 else f"exit code {code}"
            job["done"] = True
            self.changed.notify_all()

    def cancel(self, job: dict) -> None:
        with self.changed:
            job["stage"] = "CANCELED"
        if job["proc"].poll() is None:
            os.killpg(job["proc"].pid, signal.SIGTERM)

    def info(self, job: dict) -> dict:
        body = job["body"]
        return {
            "id": job["id"],
            "owner": {"id": "u1", "name": job["ns"], "type": "user"},
            "status": {"stage": job["stage"], "message": job.get("message")},
            "createdAt": "2026-01-01T00:00:00.000Z",
            "dockerImage": body.get("dockerImage"),
            "command": body["command"],
            "flavor": body.get("flavor"),
            "labels": body.get("labels"),
        }

    def stream_logs(self, handler, job: dict) -> None:
        """Server-sent events: every line so far, then new ones until the job's process ends."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        sent = 0
        while True:
            with self.changed:
                lines, done = list(job["lines"]), job.get("done", False)
                if sent == len(lines) and not done:
                    self.changed.wait(0.5)
                    continue
            for stamp, line in lines[sent:]:
                handler.wfile.write(f"data: {json.dumps({'data': line, 'timestamp': stamp})}\n\n".encode())
            handler.wfile.flush()
            sent = len(lines)
            if done:
                return

    def close(self) -> None:
        for job in self.jobs.values():
            if job["proc"].poll() is None:
                os.killpg(job["proc"].pid, signal.SIGKILL)
                job["proc"].wait()
        self.hub.close()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    fake = FakeJobs()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("TRAINPAD_HF_POLL_S", "0.2")
    monkeypatch.delenv("TRAINPAD_HF_NAMESPACE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest keeps tests offline
    monkeypatch.setattr(hf_jobs, "local_path_problems", lambda params: [])  # the fake's jobs read local files
    yield fake
    fake.close()


def hf_params(tmp_path: Path, **kw):
    return quick(tmp_path, push_to_hub=True, hub_repo_id="tester/tiny-table", **kw)


@pytest.mark.slow
def test_hf_job_trains_pushes_and_is_followed_into_the_run(hub, supervisor, tmp_path):
    run_id = supervisor.submit(TASK, hf_params(tmp_path), secrets={"HF_TOKEN": TOKEN}, backend="hf-jobs")
    row = supervisor.wait(run_id, timeout=120)
    run_dir = Path(row["run_dir"])
    assert row["status"] == "succeeded", (row["error"], (run_dir / rf.LOG).read_text()[-2000:])
    (method, path, body), job = hub.requests[0], hub.jobs["job0001"]
    assert (method, path) == ("POST", "/api/jobs/tester") and row["remote_job_id"] == "tester/job0001"
    assert body["flavor"] == "a10g-small" and body["secrets"] == {"HF_TOKEN": TOKEN}
    assert body["labels"]["trainpad_run"] == run_id and body["timeoutSeconds"] == 6 * 3600
    assert body["dockerImage"] == hf_jobs.DEFAULT_IMAGE and body["command"] == hf_jobs.COMMAND
    assert TOKEN not in json.dumps(body["environment"])
    assert body["environment"][remote_run.CONFIG_ENV] == (run_dir / rf.CONFIG).read_text()
    # the model went to the Hub from the job; events, results and log came back through the job's log
    assert {"model.joblib", "README.md"} <= set(hub.files("tester/tiny-table"))
    metrics = json.loads((run_dir / rf.METRICS).read_text())
    assert row["key_metric"] == pytest.approx(metrics["eval_loss"])
    job_events = [line for _, line in job["lines"] if line.startswith(remote_run.EVENT)]
    events, _ = rf.read_events(run_dir)
    assert len(events) == len(job_events) >= 3 and supervisor.store.metrics(run_id, ["best_score"])
    log = (run_dir / rf.LOG).read_text()
    assert "[trainpad] pushed to" in log and remote_run.EVENT not in log
    assert not any(TOKEN in p.read_text(errors="ignore") for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.slow
def test_hf_job_stop_cancels_it(hub, supervisor, tmp_path):
    run_id = supervisor.submit(TASK, hf_params(tmp_path, num_trials=0, time_limit=60, model="auto"),
                               secrets={"HF_TOKEN": TOKEN}, backend="hf-jobs")  # fmt: skip
    wait_for(lambda: (supervisor.store.get_run(run_id)["step"] or 0) >= 1, 90, "first trial")
    supervisor.stop(run_id)
    row = supervisor.wait(run_id, timeout=60)
    assert row["status"] == "stopped", row["error"]
    assert hub.jobs["job0001"]["stage"] == "CANCELED"


@pytest.mark.slow
def test_hf_job_with_a_bad_token_fails_saying_so(hub, supervisor, tmp_path):
    run_id = supervisor.submit(TASK, hf_params(tmp_path), secrets={"HF_TOKEN": "hf_wrong"}, backend="hf-jobs")
    row = supervisor.wait(run_id, timeout=30)
    assert row["status"] == "failed" and "refused the token (HTTP 401" in row["error"], row["error"]
    assert hub.jobs == {}


@pytest.mark.slow
def test_hf_job_without_the_token_after_a_restart_is_interrupted_with_its_link(hub, data_dir, tmp_path):
    sup = Supervisor(data_dir, poll_interval=0.2)
    run_id = sup.submit(TASK, hf_params(tmp_path), secrets={"HF_TOKEN": TOKEN}, backend="hf-jobs")
    sup.tick()
    assert sup.store.get_run(run_id)["remote_job_id"] == "tester/job0001"
    supervisor_module._SECRETS.pop(run_id)  # what a restarted app has: no token
    row = Supervisor(data_dir, poll_interval=0.2).wait(run_id, timeout=10, drive=True)
    assert row["status"] == "interrupted"
    assert f"{hub.url}/jobs/tester/job0001" in row["error"] and "tester/tiny-table" in row["error"]
    assert "cannot follow it" in row["error"]


@pytest.mark.slow
def test_ray_without_shared_storage_ships_the_engine_and_pushes_the_model(
    on_ray, hub, supervisor, tmp_path, monkeypatch
):
    monkeypatch.setenv("TRAINPAD_RAY_SHARED_STORAGE", "0")
    with pytest.raises(UserError, match="turn push_to_hub on and set hub_repo_id"):
        supervisor.submit(TASK, quick(tmp_path), backend="ray")  # refused before anything is created
    assert supervisor.store.list_runs() == []
    run_id = supervisor.submit(TASK, hf_params(tmp_path), secrets={"HF_TOKEN": TOKEN}, backend="ray")
    row = supervisor.wait(run_id, timeout=120)
    run_dir = Path(row["run_dir"])
    assert row["status"] == "succeeded", (row["error"], (run_dir / rf.LOG).read_text()[-2000:])
    assert {"model.joblib", "README.md"} <= set(hub.files("tester/tiny-table"))
    assert not (run_dir / "model").exists()  # it stayed on the cluster; the Hub has it
    metrics = json.loads((run_dir / rf.METRICS).read_text())
    assert row["key_metric"] == pytest.approx(metrics["eval_loss"])
    events, _ = rf.read_events(run_dir)
    assert len(events) >= 3 and supervisor.store.metrics(run_id, ["best_score"])
    assert remote_run.EVENT not in (run_dir / rf.LOG).read_text()
