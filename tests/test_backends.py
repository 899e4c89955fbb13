"""Remote backends end to end: a real local Ray head (one per test session) and a fake of Hugging Face's Jobs
routes on 127.0.0.1 that runs each job's command as a local subprocess. A tiny tabular task goes through the
supervisor, the backend, the job and back into the run folder and the store."""

from __future__ import annotations

import importlib.metadata
import io
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
import urllib.parse
import urllib.request
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from huggingface_hub import JobHardwareInfo

from engine import runfiles as rf
from engine.errors import UserError
from engine.params import validate_params
from engine.run import backends
from engine.run import supervisor as supervisor_module
from engine.run.backends import hf_flavors, hf_jobs, hf_ship, job_bootstrap, remote_run
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
    monkeypatch.delenv("TRAINPAD_HF_IMAGE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert hf_jobs.problems(ok, {"HF_TOKEN": TOKEN}) == []
    blackwell = hf_jobs.problems({**ok, "hf_flavor": "rtx-pro-6000"}, {"HF_TOKEN": TOKEN})
    assert len(blackwell) == 1 and "CUDA 12.6" in blackwell[0] and "TRAINPAD_HF_IMAGE" in blackwell[0]
    monkeypatch.setenv("TRAINPAD_HF_IMAGE", "me/trainpad:cuda13")  # an image of one's own may have the kernels
    assert hf_jobs.problems({**ok, "hf_flavor": "rtx-pro-6000"}, {"HF_TOKEN": TOKEN}) == []


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


def _hardware(name: str, pretty: str, ram: str, per_minute: float, gpu: tuple[str, str, str] | None = None) -> dict:
    """One flavor as ``GET /api/jobs/hardware`` lists it (huggingface_hub's ``JobHardwareInfo`` fields)."""
    accelerator = None
    if gpu:
        model, quantity, vram = gpu
        accelerator = {"type": "gpu", "model": model, "quantity": quantity, "vram": vram, "manufacturer": "Nvidia"}
    return {
        "name": name, "prettyName": pretty, "cpu": "4 vCPU", "ram": ram, "ephemeralStorage": "100 GB",
        "accelerator": accelerator, "unitCostMicroUSD": int(per_minute * 1e6), "unitCostUSD": per_minute,
        "unitLabel": "minute",
    }  # fmt: skip


HARDWARE = [
    _hardware("cpu-basic", "CPU Basic", "16 GB", 0.000167),
    _hardware("t4-small", "Nvidia T4 - small", "15 GB", 0.006667, ("T4", "1", "16 GB")),
    _hardware("a10g-small", "Nvidia A10G - small", "15 GB", 0.016667, ("A10G", "1", "24 GB")),
    _hardware("l4x4", "4x Nvidia L4", "186 GB", 0.063333, ("L4", "4", "96 GB")),
    _hardware("a100-large", "Nvidia A100 - large", "142 GB", 0.041667, ("A100", "1", "80 GB")),
    _hardware("h200", "Nvidia H200", "256 GB", 0.083333, ("H200", "1", "141 GB")),
]


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
        if method == "GET" and len(parts) >= 4 and parts[2] == "resolve":  # {ns}/{repo}/resolve/{rev}/{path}
            return self.resolve(handler, f"{parts[0]}/{parts[1]}", "/".join(parts[4:]))
        if parts[:2] != ["api", "jobs"] or len(parts) < 3:
            return False
        if method == "GET" and parts[2:] == ["hardware"]:
            reply(handler, 200, HARDWARE)
            return True
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

    def resolve(self, handler, repo: str, path: str) -> bool:
        data = self.files(repo).get(urllib.parse.unquote(path))
        if data is None:
            reply(handler, 404, {"error": "Entry not found"})
            return True
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return True

    def start_job(self, ns: str, body: dict) -> dict:
        """Run the job's command here: ``python``/``python3`` is this Python; an image with Trainpad (the command
        ``python -m ...``) runs in the checkout, the public image (the install first) in an empty folder. pip may
        not reach an index: the job's pinned dependencies are this environment's own."""
        job_id = f"job{len(self.jobs) + 1:04d}"
        name = body["command"][0]
        command = [sys.executable if name in ("python", "python3") else name, *body["command"][1:]]
        env = {**os.environ, "HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", **body["environment"], **body["secrets"]}
        env["PIP_NO_INDEX"] = "1"
        cwd = ENGINE_ROOT if name == "python" else tempfile.mkdtemp(prefix="fake-job-")
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
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
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    fake = FakeJobs()
    monkeypatch.setattr(hf_ship, "TARGET", str(tmp_path / "job-install"))  # where a job installs the shipped wheel
    monkeypatch.setattr(hf_ship, "_SHIPPED", {})
    monkeypatch.setattr(hf_flavors, "_LAST", {})
    monkeypatch.delenv("TRAINPAD_HF_IMAGE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
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
def test_hf_job_installs_the_shipped_trainpad_trains_pushes_and_is_followed_into_the_run(hub, supervisor, tmp_path):
    params = hf_params(tmp_path, hf_flavor="a100-large")  # the form's Run section
    run_id = supervisor.submit(TASK, params, secrets={"HF_TOKEN": TOKEN}, backend="hf-jobs")
    row = supervisor.wait(run_id, timeout=180)
    run_dir = Path(row["run_dir"])
    assert row["status"] == "succeeded", (row["error"], (run_dir / rf.LOG).read_text()[-2000:])
    (method, path, body), job = hub.requests[0], hub.jobs["job0001"]
    assert (method, path) == ("POST", "/api/jobs/tester") and row["remote_job_id"] == "tester/job0001"
    assert body["flavor"] == "a100-large" and body["secrets"] == {"HF_TOKEN": TOKEN}
    assert body["labels"]["trainpad_run"] == run_id and body["timeoutSeconds"] == 6 * 3600
    # no TRAINPAD_HF_IMAGE: PyTorch's public image, and a command that installs the shipped Trainpad first
    assert body["dockerImage"] == hf_jobs.DEFAULT_IMAGE == "pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime"
    python, flag, source, url, sha256, target = body["command"]
    assert (python, flag, source) == ("python3", "-c", hf_ship.BOOTSTRAP.read_text()) and target == hf_ship.TARGET
    wheel = hf_ship.build_wheel()
    assert url == f"{hub.url}/tester/trainpad-jobs/resolve/main/wheels/{urllib.parse.quote(wheel.name)}"
    assert hub.files("tester/trainpad-jobs") == {f"wheels/{wheel.name}": wheel.data} and sha256 == wheel.sha256
    assert hub.hub.repos["tester/trainpad-jobs"]["private"]
    assert TOKEN not in json.dumps(body["environment"]) and TOKEN not in json.dumps(body["command"])
    assert body["environment"][remote_run.CONFIG_ENV] == (run_dir / rf.CONFIG).read_text()
    lines = [line for _, line in job["lines"]]
    installed = next(i for i, line in enumerate(lines) if line.startswith("[trainpad] Trainpad ") and " in " in line)
    assert lines.index("[trainpad] installing Trainpad on the job…") < installed
    assert lines[installed + 1] == f"[trainpad] engine from {target}"  # the worker runs the installed copy
    assert wheel.version in lines[installed]
    # the model went to the Hub from the job; events (the install's phases first), results and log came back
    assert {"model.joblib", "README.md"} <= set(hub.files("tester/tiny-table"))
    metrics = json.loads((run_dir / rf.METRICS).read_text())
    assert row["key_metric"] == pytest.approx(metrics["eval_loss"])
    job_events = [line for line in lines if line.startswith(remote_run.EVENT)]
    events, _ = rf.read_events(run_dir)
    assert len(events) == len(job_events) >= 5 and supervisor.store.metrics(run_id, ["best_score"])
    assert [e["type"] for e in events[:2]] == ["phase", "phase"]
    assert events[0]["message"] == "installing Trainpad on the job…"
    log = (run_dir / rf.LOG).read_text()
    assert "[trainpad] pushed to" in log and remote_run.EVENT not in log and "installed on the job in" in log
    assert not any(TOKEN in p.read_text(errors="ignore") for p in run_dir.rglob("*") if p.is_file())


def test_hf_job_in_its_own_image_or_a_spaces_runs_trainpad_as_it_is(hub, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {"task": "tabular", "params": hf_params(tmp_path).model_dump()}
    (run_dir / rf.CONFIG).write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TRAINPAD_HF_IMAGE", "me/trainpad:dev")
    monkeypatch.setenv("SPACE_ID", "me/trainpad")
    assert hf_jobs.submit("r1", run_dir, {"HF_TOKEN": TOKEN}) == "tester/job0001"  # the setting wins
    monkeypatch.delenv("TRAINPAD_HF_IMAGE")
    hf_jobs.submit("r2", run_dir, {"HF_TOKEN": TOKEN})  # on a Space: the Space's own image
    first, second = (body for _, _, body in hub.requests)
    assert first["dockerImage"] == "me/trainpad:dev" and second["spaceId"] == "me/trainpad"
    assert first["command"] == second["command"] == hf_jobs.COMMAND
    assert "tester/trainpad-jobs" not in hub.hub.repos  # nothing shipped: the image has Trainpad
    assert first["flavor"] == "a10g-small"  # no hf_flavor, no TRAINPAD_HF_FLAVOR


def test_the_shipped_archive_holds_the_engine_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    root = tmp_path / "checkout"  # a checkout with a data folder, uploads and caches beside (and inside) the engine
    for rel in ["engine/__init__.py", "engine/run/worker.py", "engine/run/__pycache__/worker.cpython-311.pyc",
                "engine/notes.txt", "engine/.env", "trainpad_data/runs/r1/config.yaml", "uploads/data.csv",
                "ui/studio.py", "tests/test_x.py"]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"HF_TOKEN={TOKEN}\n" if rel.endswith((".env", ".yaml")) else "x = 1\n")
    wheel = hf_ship.build_wheel(root)
    info = f"trainpad-{wheel.version}.dist-info"
    assert wheel.files == ("engine/__init__.py", "engine/run/worker.py", f"{info}/METADATA", f"{info}/WHEEL",
                           f"{info}/RECORD")  # fmt: skip
    assert TOKEN.encode() not in wheel.data and hf_ship.build_wheel(root) == wheel  # deterministic
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as zf:
        assert all(TOKEN not in zf.read(name).decode() for name in zf.namelist())
        requires = [line.split(": ", 1)[1] for line in zf.read(f"{info}/METADATA").decode().splitlines()
                    if line.startswith("Requires-Dist")]  # fmt: skip
    # the real engine: only its Python files, at the versions installed here; torch is the image's
    real = hf_ship.build_wheel()
    assert {f for f in real.files if not f.startswith("engine/")} == {
        f"trainpad-{real.version}.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD")
    }
    assert all(f.endswith(".py") for f in real.files if f.startswith("engine/")) and len(real.data) < 2_000_000
    assert "torch" in requires and not any(r.startswith("gradio") for r in requires)
    assert f"transformers=={importlib.metadata.version('transformers')}" in requires
    assert real.version.startswith(hf_ship.base_version() + "+g") and real.name.endswith("-py3-none-any.whl")
    # the image carries the torch this Trainpad pins, and the bootstrap speaks remote_run's log protocol
    assert importlib.metadata.version("torch").split("+")[0] == hf_jobs.IMAGE_TORCH
    assert (job_bootstrap.EVENT, job_bootstrap.FILE) == (remote_run.EVENT, remote_run.FILE)


def test_a_bad_download_fails_the_install_saying_so(tmp_path, capsys):
    code = job_bootstrap.main([f"http://127.0.0.1:{free_port()}/x/trainpad-1-py3-none-any.whl", "0" * 64,
                               str(tmp_path / "t")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == job_bootstrap.INSTALL_FAILED and "could not download Trainpad" in out
    _, events, files = remote_run.split_log(out.splitlines())
    assert files[rf.ERROR]["type"] == "InstallError" and "could not download Trainpad" in files[rf.ERROR]["message"]
    assert json.loads(events[0])["message"] == "installing Trainpad on the job…"


def test_flavors_come_from_the_hub_with_prices_else_a_built_in_list(hub, monkeypatch):
    listed, note = hf_flavors.fetch(hub.url, TOKEN)
    assert note == "" and [f.name for f in listed] == [h["name"] for h in HARDWARE]
    by_name = {f.name: f for f in listed}
    assert by_name["a10g-small"].label() == "a10g-small · 1× A10G 24 GB · $1.00/h"
    assert by_name["l4x4"].memory_text() == "4× 24 GB" and by_name["cpu-basic"].label().startswith("cpu-basic · CPU")
    assert "a100-large" in hf_jobs.flavors()
    monkeypatch.setattr(hf_flavors, "_LAST", {})
    listed, note = hf_flavors.fetch(f"http://127.0.0.1:{free_port()}")  # nothing answers there
    assert listed == hf_flavors.BUILT_IN and "could not be fetched" in note and "built-in list" in note
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    listed, note = hf_flavors.fetch(hub.url, TOKEN)
    assert listed == hf_flavors.BUILT_IN and "HF_HUB_OFFLINE" in note
    assert {f.name for f in hf_flavors.BUILT_IN} <= set(hf_jobs.flavors())


def test_memory_check_names_a_flavor_that_fits(tmp_path):
    model = tmp_path / "llama-1b"  # only its config: the estimate reads no weights
    model.mkdir()
    config = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
              "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    sft = get_task("llm_sft")
    flavors = [hf_flavors.from_hub(JobHardwareInfo(**h)) for h in HARDWARE]
    big = validate_params(sft.params, {"base_model": str(model), "data_path": "d.csv", "batch_size": 16})
    line = hf_flavors.memory_line(sft, big, "a10g-small", flavors)
    assert "will not fit on `a10g-small` (24 GB)" in line and "fits on `a100-large` (80 GB, $2.50/h)" in line
    small = validate_params(sft.params, {"base_model": str(model), "data_path": "d.csv", "batch_size": 4})
    fits = hf_flavors.memory_line(sft, small, "a10g-small", flavors)
    assert fits.startswith("✅ **Memory** on Hugging Face Jobs `a10g-small` (24 GB): fits")
    assert "fits on `a10g-small`" in hf_flavors.memory_line(sft, small, "t4-small", flavors)  # the cheapest that fits
    huge = validate_params(sft.params, {"base_model": str(model), "data_path": "d.csv", "batch_size": 512})
    assert "no flavor fits — try batch size" in hf_flavors.memory_line(sft, huge, "h200", flavors)


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


@pytest.mark.slow
def test_the_form_offers_the_flavors_when_hf_jobs_is_picked_and_the_run_carries_the_choice(
    hub, supervisor, tmp_path, monkeypatch
):
    import gradio as gr

    from ui import runs_view, task_tab, task_view
    from ui.context import Context

    ctx = Context(supervisor)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the studio's own token, if any, asks for the list
    with gr.Blocks():  # the form is built for the "Run on" choice (the Train page's render re-runs on a change)
        local = task_tab.build(TASK, ctx, backend="local")
        jobs = [task_tab.build(t, ctx, backend="hf-jobs") for t in (TASK, get_task("llm_sft"))]
    flavor = local.run_fields["hf_flavor"]
    assert flavor.visible is False and "hf_flavor" not in local.form  # in the Run section, not the parameters
    shown = [t.run_fields["hf_flavor"] for t in jobs]
    assert all(f.visible for f in shown)
    assert ("a100-large · 1× A100 80 GB · $2.50/h", "a100-large") in shown[0].choices
    assert shown[0].choices[0] == ("default: a10g-small", "")
    values = {"data_path": "someone/table", "hf_flavor": "a100-large", "model": "linear"}
    params = validate_params(TASK.params, task_view.params_data(TASK, values))
    assert hf_jobs.flavor(params.model_dump()) == "a100-large"
    # the run's header says what the job does before its first step
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rf.write_event(run_dir, {"type": "phase", "message": "installing Trainpad on the job…"})
    row = {"status": "running", "step": 0, "run_dir": str(run_dir)}
    assert runs_view.phase_text(row) == "installing Trainpad on the job…"
    assert runs_view.phase_text({**row, "step": 3}) == "" and runs_view.phase_text({**row, "status": "queued"}) == ""


def test_the_job_downloads_with_its_token_which_never_leaves_the_hub_on_a_redirect(tmp_path):
    """The Hub answers a large file with a redirect to its storage's signed URL, which must not get the token."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: dict[str, str | None] = {}

    class Serve(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            seen[self.path] = self.headers.get("Authorization")
            if self.path == "/hub/wheel.whl":  # the Hub, on 127.0.0.1, sends the client to "localhost" (another host)
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/storage/wheel.whl")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"wheel")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job_bootstrap.download(f"http://127.0.0.1:{server.server_address[1]}/hub/wheel.whl", TOKEN, tmp_path / "w")
    finally:
        server.shutdown()
        server.server_close()
    assert (tmp_path / "w").read_bytes() == b"wheel"
    assert seen == {"/hub/wheel.whl": f"Bearer {TOKEN}", "/storage/wheel.whl": None}
