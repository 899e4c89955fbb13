"""Jobs after training: an export, a served endpoint (an evaluation later). Each is its own process with a queue
place, a log and a row in the ``jobs`` table linked to its run, driven by the supervisor (the only SQLite writer).

A job runs ``python -m MODULE JOB_DIR`` (``runs/<run>/jobs/<job>/``) and reports only through files there:
``job.json`` (what to do, written at submit), ``job.log``, ``progress.json`` ({"fraction", "message"}),
``result.json`` (what it made; a server writes it once it answers) and ``error.json`` ({"message"}).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import runfiles as rf
from engine import settings
from engine.errors import UserError
from engine.run import procs
from engine.run.store import Store

JOB_FILE, LOG, PROGRESS, RESULT, ERROR = "job.json", "job.log", "progress.json", "result.json", "error.json"
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobKind:
    """``module``: run as ``python -m MODULE JOB_DIR``. ``slots``: most jobs of this kind running at once in the data
    folder (None: no limit). ``lives``: a server, which runs until stopped (then it is ``stopped``, not failed), and
    stops with the process that started it."""

    name: str
    module: str
    slots: int | None = 1
    lives: bool = False
    env: tuple[str, ...] = ()  # environment variables passed through to its process (e.g. a judge endpoint's key)
    records_evaluation: bool = False  # its result.json's "evaluation" becomes a row of the evaluations table


KINDS: dict[str, JobKind] = {
    "export": JobKind("export", "engine.ship.export", slots=1),
    "serve": JobKind("serve", "engine.ship.serve", slots=None, lives=True),
    "eval": JobKind(
        "eval",
        "engine.eval.job",
        slots=1,
        env=("TRAINPAD_JUDGE_URL", "TRAINPAD_JUDGE_KEY", "TRAINPAD_JUDGE_MODEL"),
        records_evaluation=True,
    ),
}


def say(job_dir: Path, fraction: float, message: str) -> None:
    """In a job's process: the progress its page shows, and a log line."""
    rf.write_json(job_dir / PROGRESS, {"fraction": round(fraction, 4), "message": message, "time": time.time()})
    print(f"[trainpad] {message}", flush=True)


def job_main(argv: list[str] | None, work: Any, what: str, done: Any) -> int:
    """A job module's ``main``: ``work(job_dir)``'s result to result.json with ``done(result)`` as the last progress
    line, or the failure in plain words to error.json (exit code 1)."""
    job_dir = Path((argv or sys.argv[1:])[0]).resolve()
    try:
        result = work(job_dir)
    except Exception as e:  # noqa: BLE001 - reported through error.json, in plain words when it is the user's
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        rf.write_json(job_dir / ERROR, {"message": message})
        print(f"[trainpad] {what} failed: {message}", flush=True)
        return 1
    rf.write_json(job_dir / RESULT, result)
    say(job_dir, 1.0, done(result))
    return 0


def job_kind(name: str) -> JobKind:
    if name not in KINDS:
        raise UserError(f"Unknown job kind `{name}`; one of: {', '.join(KINDS)}.")
    return KINDS[name]


def progress(job: dict[str, Any]) -> dict[str, Any]:
    """What the job said last about its progress ({} before it said anything)."""
    return rf.read_json(Path(job["job_dir"]) / PROGRESS) or {}


def log_tail(job: dict[str, Any], chars: int = 4000) -> str:
    path = Path(job["job_dir"]) / LOG
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - chars))
        return f.read().decode("utf-8", "replace")


class Jobs:
    """The jobs half of a supervisor: queue, launch, watch, stop. ``manage_all``: also start jobs whose owner
    process has ended (the app); servers whose owner has ended are stopped (a server stops with its app)."""

    def __init__(self, store: Store, me: tuple[int, float], grace_period: float = 30.0, manage_all: bool = True):
        self.store, self.me, self.grace_period, self.manage_all = store, me, grace_period, manage_all
        self._procs: dict[str, subprocess.Popen] = {}

    def submit(self, kind: str, run: dict[str, Any], args: dict[str, Any], user: str = "") -> str:
        """Queue a job on a finished run; returns its id."""
        spec = job_kind(kind)
        if run["status"] != "succeeded":
            raise UserError(f"Run `{run['id']}` is {run['status']}; only a succeeded run has a model to {kind}.")
        return self._queue(spec, Path(run["run_dir"]) / "jobs", run["id"], {"run_dir": run["run_dir"], **args}, user)

    def submit_unlinked(self, kind: str, home: Path, args: dict[str, Any], user: str = "") -> str:
        """Queue a job that belongs to no run (an evaluation of a base model), its folder under ``home``."""
        return self._queue(job_kind(kind), home, "", args, user)

    def _queue(self, spec: JobKind, home: Path, run_id: str, args: dict[str, Any], user: str) -> str:
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        job_dir = home / job_id
        job_dir.mkdir(parents=True)
        rf.write_json(job_dir / JOB_FILE, {"kind": spec.name, "run_id": run_id, **args})
        row = {"id": job_id, "kind": spec.name, "run_id": run_id, "user": user, "job_dir": str(job_dir)}
        row |= {"args": json.dumps(args), "owner_pid": self.me[0], "owner_started": self.me[1]}
        self.store.insert_job(row)
        return job_id

    def stop(self, job_id: str) -> None:
        """Queued: cancel. Running: SIGTERM its process group; SIGKILL after the grace period (at a later tick)."""
        job = self.store.get_job(job_id)
        if job is None or job["status"] not in ACTIVE:
            return
        ended = {"status": "stopped", "ended_at": time.time(), "stop_requested": 1}
        if job["status"] == "queued" and self.store.update_job_if(job_id, "queued", ended):
            return
        self.store.update_job_if(job_id, "running", {"stop_requested": 1, "kill_at": time.time() + self.grace_period})
        procs.signal_run(_signal_row(self.store.get_job(job_id) or job), signal.SIGTERM)

    def tick(self) -> None:
        """Record ended jobs, stop orphaned servers, escalate overdue stops, then start queued jobs."""
        for job in self.store.list_jobs(None, None, "running"):
            self._watch(job)
        self._launch_queued()

    def shutdown(self, wait: float = 10.0) -> None:
        """Stop the servers this process started (a server stops with its app or CLI)."""
        mine = [j for j in self.store.list_jobs(None, None, *ACTIVE) if job_kind(j["kind"]).lives and self._is_me(j)]
        for job in mine:
            self.stop(job["id"])
        deadline = time.time() + wait
        while any(self._procs.get(j["id"]) for j in mine) and time.time() < deadline:
            self.tick()
            time.sleep(0.1)
        for job in mine:  # past the wait: no server outlives its app
            if self._procs.get(job["id"]):
                procs.signal_run(_signal_row(self.store.get_job(job["id"]) or job), signal.SIGKILL)
                self._procs[job["id"]].wait(timeout=5)
                self.tick()

    # --- internals ------------------------------------------------------------------------

    def _launch_queued(self) -> None:
        running = self.store.list_jobs(None, None, "running")
        for job in self.store.list_jobs(None, None, "queued"):
            spec = job_kind(job["kind"])
            if not (self._is_me(job) or (self.manage_all and not self._owner_alive(job))):
                continue
            if spec.slots is not None and sum(r["kind"] == spec.name for r in running) >= spec.slots:
                continue
            if self._launch(job, spec):
                running.append(job)

    def _launch(self, job: dict[str, Any], spec: JobKind) -> bool:
        fields = {"status": "running", "started_at": time.time(), "owner_pid": self.me[0]}
        if not self.store.update_job_if(job["id"], "queued", fields | {"owner_started": self.me[1]}):
            return False  # another supervisor took it
        job_dir = Path(job["job_dir"])
        try:
            with open(job_dir / LOG, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", spec.module, str(job_dir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=str(procs.ENGINE_ROOT),
                    env=procs.worker_env({k: settings.text(k) for k in spec.env if settings.is_set(k)}),
                    start_new_session=True,
                )
        except OSError as e:
            error = f"Could not start the {spec.name} job: {type(e).__name__}: {e}"
            self.store.update_job(job["id"], status="failed", ended_at=time.time(), error=error)
            return False
        self._procs[job["id"]] = proc
        self.store.update_job(job["id"], pid=proc.pid, pid_started=procs.started_at(proc.pid) or time.time())
        return True

    def _watch(self, job: dict[str, Any]) -> None:
        child = self._procs.get(job["id"])
        if child is not None:
            code = child.poll()
            if code is not None:
                self._finish(job, code)
                return
        elif procs.live_process(job.get("pid"), job.get("pid_started")) is None:
            if self._owner_alive(job) and not job.get("pid"):
                return  # being launched
            self._finish(job, None)
            return
        elif job_kind(job["kind"]).lives and not self._owner_alive(job) and not job.get("stop_requested"):
            self.stop(job["id"])  # its app or CLI is gone: a server does not outlive it
            return
        if job.get("stop_requested") and job.get("kill_at") and time.time() > job["kill_at"]:
            procs.signal_run(_signal_row(job), signal.SIGKILL)

    def _finish(self, job: dict[str, Any], code: int | None) -> None:
        job_dir = Path(job["job_dir"])
        result = rf.read_json(job_dir / RESULT)
        fields: dict[str, Any] = {"exit_code": code, "ended_at": time.time()}
        if job.get("stop_requested"):
            fields["status"] = "stopped"
        elif result is not None and code in (0, None):
            fields["status"] = "succeeded"
        else:
            fields["status"] = "failed"
            error = rf.read_json(job_dir / ERROR) or {}
            tail = "\n".join(log_tail(job).strip().splitlines()[-10:])
            fields["error"] = (
                error.get("message") or f"The {job['kind']} job ended (exit code {code}). Its log:\n{tail}"
            )
        if result is not None:
            fields["result"] = json.dumps(result)
        evaluation = (result or {}).get("evaluation") if job_kind(job["kind"]).records_evaluation else None
        if fields["status"] == "succeeded" and evaluation:
            row = {**evaluation, "id": job["id"], "job_id": job["id"], "user": job.get("user") or ""}
            self.store.finish_job_with_evaluation(job["id"], fields, row | {"run_id": job.get("run_id") or ""})
        else:
            self.store.update_job_if(job["id"], "running", fields)
        self._procs.pop(job["id"], None)

    def _is_me(self, job: dict[str, Any]) -> bool:
        return job.get("owner_pid") == self.me[0]

    def _owner_alive(self, job: dict[str, Any]) -> bool:
        return self._is_me(job) or procs.is_alive(job.get("owner_pid"), job.get("owner_started"))


def _signal_row(job: dict[str, Any]) -> dict[str, Any]:
    """A job row as :func:`procs.signal_run` reads it (its process group is its pid; its folder names it)."""
    return {**job, "pgid": job.get("pid"), "run_dir": job["job_dir"]}
