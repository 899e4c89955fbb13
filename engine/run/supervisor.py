"""The supervisor: the queue's state machine. Queues runs, starts workers as subprocesses, ingests their events,
records outcomes, escalates stops.

Any process may run one (the app's background thread, a `trainpad run`, a `trainpad stop`) on the same data folder:
the queue, the concurrency limit, stop deadlines and event offsets live in SQLite, so whichever supervisor looks
next does what is due. Workers report only through files in their run folder (see ``runfiles``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine import runfiles as rf
from engine import settings
from engine.config import dump_config
from engine.data.splits import check_data
from engine.data.tables import absolute_paths, disk_problem
from engine.errors import Problem, UserError
from engine.params import public_dict
from engine.preflight import system
from engine.preflight.models import check_params
from engine.run import procs
from engine.run.backends import Backend, get_backend, operations
from engine.run.jobs import Jobs
from engine.run.policy import Policy
from engine.run.policy import problems as policy_problems
from engine.run.procs import ENGINE_ROOT, data_dir_from_env
from engine.run.store import ACTIVE, Store
from engine.run.sweep import SweepRequest, Sweeps
from engine.task import Task, get_task

SKIP_METRIC_KEYS = {"type", "step", "epoch", "time", "max_steps", "message"}
STOPPED_EXIT = 143
# A run's HF token lives only in the memory of the process that queued it (never on disk).
_SECRETS: dict[str, dict[str, str]] = {}


class Supervisor:
    """Starts queued runs while fewer than ``concurrency`` run in this data folder; see the module docstring.

    ``manage_all``: also start runs queued by processes that have ended (the app); a CLI starts only its own.
    ``concurrency``: runs trained at once in this data folder (stored there, so every process honours it);
    None reads the stored value ($TRAINPAD_CONCURRENCY, else 1).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        concurrency: int | None = None,
        poll_interval: float = 0.5,
        grace_period: float = 30.0,
        manage_all: bool = True,
        policy: Policy | None = None,
    ):
        self.data_dir = data_dir_from_env(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "models").mkdir(exist_ok=True)
        self.store = Store(self.data_dir / "trainpad.db")
        if concurrency is not None:
            self.store.set_setting("concurrency", str(int(concurrency)))
        self.poll_interval = poll_interval
        self.grace_period = grace_period
        self.manage_all = manage_all
        self.policy = policy or Policy()
        self.me = procs.this_process()
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self.jobs = Jobs(self.store, self.me, grace_period, manage_all)  # exports, endpoints (engine.run.jobs)
        self.sweeps = Sweeps(self)  # grouped trial runs (engine.run.sweep)
        self.refresh()

    @property
    def concurrency(self) -> int:
        """Runs trained at once in this data folder, whichever process started them."""
        if settings.is_set("TRAINPAD_CONCURRENCY"):
            return max(1, settings.integer("TRAINPAD_CONCURRENCY"))
        return max(1, int(self.store.setting("concurrency") or 1))

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Supervisor:
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._halt.clear()
            self._thread = threading.Thread(target=self._loop, name="trainpad-supervisor", daemon=True)
            self._thread.start()
        return self

    def shutdown(self, stop_runs: bool = False) -> None:
        """Stop the thread. Runs keep going unless ``stop_runs`` (a restarted app re-attaches to them)."""
        if stop_runs:
            for run_id in list(self._procs):
                self.stop(run_id)
            deadline = time.time() + self.grace_period + 5
            while self._procs and time.time() < deadline:
                self.tick()
                time.sleep(0.2)
        self.jobs.shutdown()  # servers stop with the process that started them
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception as e:  # never let the thread die; report and carry on (the next tick retries)
                print(f"[trainpad supervisor] {type(e).__name__}: {e}", file=sys.stderr)
            self._halt.wait(self.poll_interval)

    # --- public API -----------------------------------------------------------------------

    def submit(
        self,
        task: Task | str,
        params: BaseModel,
        name: str = "",
        secrets: dict[str, str] | None = None,
        parent_id: str | None = None,
        check: bool = True,
        backend: str = "local",
        user: str = "",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Check data, write ``runs/<id>/config.yaml`` and queue the run. Raises UserError, creating nothing.

        Paths in the params are made absolute here (relative to this process's folder), so the worker reads
        exactly the files that were checked. The instance's :class:`Policy` applies to every submission.
        """
        task = get_task(task) if isinstance(task, str) else task
        params = absolute_paths(params)
        problems = disk_problem(self.data_dir) + self._backend_problems(backend, params, secrets or {})
        problems += policy_problems(self.policy, params, self.runs_dir, self.user_dirs(user))
        problems += self._resume_problems(params, user) + self._quota_problems(user) + _name_problems(name)
        if check and not problems:  # the base model first: a missing or wrong model is settled before launch
            problems = check_params(task, params, (secrets or {}).get("HF_TOKEN")) + check_data(task, params)
        if problems:
            raise UserError(problems)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True)
        name = name or f"{task.name}-{run_id[-6:]}"
        (run_dir / rf.CONFIG).write_text(dump_config(task, params, name, backend), encoding="utf-8")
        if self.policy.shared:  # what the worker checks again before it opens anything (the last line of defence)
            rf.write_json(run_dir / rf.GUARD, self._guard(params, user))
        if secrets:
            _SECRETS[run_id] = dict(secrets)
        self.store.insert_run(
            {
                "id": run_id,
                "name": name,
                "task": task.name,
                "status": "queued",
                "backend": backend,
                "params": json.dumps(public_dict(params)),
                "base_model": getattr(params, "base_model", ""),
                "run_dir": str(run_dir),
                "key_metric_name": task.key_metric,
                "parent_id": parent_id,
                "owner_pid": self.me[0],
                "owner_started": self.me[1],
                "needs_token": int(bool(secrets)),
                "user": user,
                "events_offset": 0,
                **(extra or {}),  # a sweep trial's sweep_id and searched values
            }
        )
        return run_id

    def stop(self, run_id: str) -> None:
        """Queued: cancel. Running: SIGTERM the process group (the worker checkpoints); whichever supervisor
        looks after the grace period sends SIGKILL (the deadline is stored with the run)."""
        with self._lock:
            row = self._row(run_id)
            if row["status"] == "queued" and self.store.cancel_queued(run_id):
                return
            row = self._row(run_id)
            if row["status"] != "running":
                return
            self.store.update_run(run_id, stop_requested=1, kill_at=time.time() + self.grace_period)
            if _remote(row):
                if row.get("remote_job_id"):
                    operations(_backend(row)).cancel(row["remote_job_id"], _SECRETS.get(run_id) or {})
                return
            procs.signal_run(row, signal.SIGTERM)

    def resume(self, run_id: str, secrets: dict[str, str] | None = None) -> str:
        """A new run continuing ``run_id`` from its last checkpoint."""
        row = self._row(run_id)
        if row["status"] in ACTIVE:
            raise UserError(f"Run `{run_id}` is still {row['status']}; stop it before resuming.")
        ckpt = rf.last_checkpoint(row["run_dir"])
        if ckpt is None:
            raise UserError(
                f"Run `{run_id}` has no checkpoint to resume from. Set save_strategy to epoch or steps, "
                "or use Duplicate to start it again."
            )
        task = get_task(row["task"])
        params = task.params.model_validate({**row["params"], "resume_from": str(ckpt)})
        return self.submit(
            task,
            params,
            name=f"{row['name']} (resumed)",
            secrets=secrets,
            parent_id=run_id,
            check=False,
            backend=row.get("backend") or "local",
            user=row.get("user") or "",
        )

    def delete(self, run_id: str) -> None:
        """Remove a finished run: its folder and its rows."""
        row = self.store.get_run(run_id)
        if row is None:
            return
        if row["status"] in ACTIVE:
            raise UserError(f"Run `{run_id}` is {row['status']}; stop it before deleting.")
        shutil.rmtree(row["run_dir"], ignore_errors=True)
        for job in self.store.list_jobs(run_id, None, *ACTIVE):
            self.jobs.stop(job["id"])
        self.store.delete_jobs(run_id)
        self.store.delete_run(run_id)

    def submit_job(self, kind: str, run_id: str, args: dict[str, Any], user: str = "") -> str:
        """Queue a job (an export, a served endpoint) on a finished run; see ``engine.run.jobs``."""
        return self.jobs.submit(kind, self._row(run_id), args, user)

    def submit_sweep(
        self,
        task: Task | str,
        params: BaseModel,
        request: SweepRequest,
        secrets: dict[str, str] | None = None,
        backend: str = "local",
        user: str = "",
    ) -> str:
        """Queue a sweep (its first trials at once); see ``engine.run.sweep``. Raises UserError, queueing nothing."""
        with self._lock:
            return self.sweeps.create(task, params, request, secrets, backend, user)

    def stop_sweep(self, sweep_id: str) -> None:
        """Cancel a sweep's queued trials, stop its running ones; it starts no new trial."""
        with self._lock:
            self.sweeps.stop(sweep_id)

    def stop_job(self, job_id: str) -> None:
        with self._lock:
            self.jobs.stop(job_id)

    def wait_job(self, job_id: str, timeout: float = 600, until: Any = None) -> dict[str, Any]:
        """Tick in this thread until the job ends (or ``until(job)`` holds); TimeoutError past ``timeout``."""
        deadline = time.time() + max(0.0, timeout)
        while True:
            self.tick()
            job = self.store.get_job(job_id)
            if job is None or job["status"] not in ACTIVE or (until is not None and until(job)):
                return job
            if time.time() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.2)

    def wait(self, run_id: str, timeout: float = 600, drive: bool = False) -> dict[str, Any]:
        """Block until the run ends (``drive``: tick in this thread instead of the background one)."""
        deadline = time.time() + max(0.0, timeout)
        while True:
            if drive:
                self.tick()
            row = self.store.get_run(run_id)
            if row and row["status"] not in ACTIVE:
                return row
            if time.time() >= deadline:
                raise TimeoutError(f"run {run_id} still {row and row['status']} after {timeout}s")
            time.sleep(self.poll_interval if not drive else 0.2)

    def queue_position(self, run_id: str) -> tuple[int, int]:
        """(runs training in this data folder, runs queued ahead of ``run_id`` that will start first)."""
        running = len([r for r in self.store.runs_with_status("running") if not _remote(r)])
        ahead = 0
        for row in self._startable_queue():
            if row["id"] == run_id:
                break
            ahead += 1
        return running, ahead

    # --- one supervision step -------------------------------------------------------------

    def tick(self) -> None:
        """Bring every running run's row up to date, then start queued runs while slots are free."""
        with self._lock:
            self.refresh()
            self.sweeps.tick()
            self._launch_queued()
            self.jobs.tick()

    def refresh(self) -> None:
        """Make the store true to the processes (cheap; every command that reads the store calls it): ingest
        events, record ended workers (ours, and orphans whose owner is gone), escalate overdue stops, fail runs
        whose folder was removed, and settle queued runs whose owner is gone and that need its token."""
        with self._lock:
            for row in self.store.runs_with_status("running"):
                self._watch(row)
            for row in self.store.runs_with_status("queued"):
                if row.get("needs_token") and not self._owner_alive(row) and row["id"] not in _SECRETS:
                    self.store.update_if(row["id"], "queued", _token_lost(row))

    reconcile = refresh  # the name used at start-up

    def _watch(self, row: dict[str, Any]) -> None:
        run_id, run_dir = row["id"], Path(row["run_dir"])
        if not run_dir.is_dir():
            self._folder_removed(row)
            return
        if _remote(row):
            self._watch_remote(row)
            return
        row = self._ingest(row)
        child = self._procs.get(run_id)
        if child is not None:
            code = child.poll()
            if code is not None:
                self._end_when_no_process_is_left(row, code)
                return
        elif procs.live_process(row.get("pid"), row.get("pid_started")) is None:
            if self._owner_alive(row) and (not row.get("pid") or not self._is_me(row)):
                return  # being launched, or the process that started it reaps it and records its exit code
            self._end_when_no_process_is_left(row, None)
            return
        if row.get("stop_requested") and row.get("kill_at") and time.time() > row["kill_at"]:
            procs.signal_run(row, signal.SIGKILL)

    def _end_when_no_process_is_left(self, row: dict[str, Any], code: int | None) -> None:
        """The leader has ended: record the run once none of its processes is left (a rank in a process group of
        its own, or one that outlived a killed launcher, holds memory and devices). Leftovers get SIGTERM, then
        SIGKILL after the grace period."""
        left = procs.run_processes(row["run_dir"])
        if not left:
            self._finish(self._ingest(row), code)
            return
        if not row.get("kill_at"):
            self.store.update_run(row["id"], kill_at=time.time() + self.grace_period)
            procs.signal_run(row, signal.SIGTERM)
        elif time.time() > row["kill_at"]:
            procs.signal_run(row, signal.SIGKILL)

    def _startable_queue(self) -> list[dict[str, Any]]:
        """Queued runs in order, without those nobody will start (owner gone: only the app adopts them)."""
        return [r for r in self.store.runs_with_status("queued") if self._owner_alive(r) or self._may_adopt(r)]

    def _launch_queued(self) -> None:
        """Start what is due, in order: remote runs at once; local ones while the data folder has a free slot
        and (on a GPU machine) the devices they ask for are free. A live process's run ahead keeps its place."""
        local = [r for r in self.store.runs_with_status("running") if not _remote(r)]
        free = self.concurrency - len(local)
        used = {d for r in local for d in (r.get("devices") or "").split(",") if d and d != "cpu"}
        for row in self._startable_queue():
            if _remote(row):
                if self._is_me(row) or self._may_adopt(row):
                    self._launch(row)
                continue
            if free <= 0:
                break
            free -= 1
            if not (self._is_me(row) or self._may_adopt(row)):
                continue  # its own process starts it at its next look
            devices = self.devices_for(row.get("params") or {}, used)
            if devices is None:
                free += 1  # waits for GPUs; a later run that fits may start (never two runs on one GPU)
                continue
            used |= set(devices.split(",")) - {"cpu"}
            self._launch(row, devices)

    @functools.cached_property
    def gpu_count(self) -> int:
        """GPUs of this machine (nvidia-smi, no torch), looked up once."""
        return len(system.gpus())

    def devices_for(self, params: dict[str, Any], used: set[str]) -> str | None:
        """The devices a local run gets now: "cpu", or GPU indices like "0,1"; None while they are busy."""
        if not self.gpu_count:
            return "cpu"
        wanted = [g.strip() for g in str(params.get("gpus") or "").split(",") if g.strip()]
        if wanted:
            return ",".join(wanted) if not set(wanted) & used else None
        n = int(params.get("num_processes") or 0) or self.gpu_count  # 0 = every GPU
        idle = [str(i) for i in range(self.gpu_count) if str(i) not in used]
        return ",".join(idle[:n]) if len(idle) >= n else None

    def _launch(self, row: dict[str, Any], devices: str = "") -> None:
        run_id = row["id"]
        if not self.store.claim(run_id, owner_pid=self.me[0], owner_started=self.me[1], devices=devices):
            return  # another supervisor on the same data folder started it first
        try:
            run_dir = Path(row["run_dir"])
            if not (run_dir / rf.CONFIG).is_file():
                raise FileNotFoundError(f"{run_dir / rf.CONFIG} is missing (was the run folder removed?)")
            if _remote(row):
                job_id = operations(_backend(row)).submit(run_id, run_dir, _SECRETS.get(run_id) or {})
                self.store.update_run(run_id, remote_job_id=str(job_id))
                return
            proc = self._start_worker(run_id, run_dir, row.get("params") or {}, devices)
        except Exception as e:  # the run is claimed: it must not stay `running` without a process
            error = str(e) if isinstance(e, UserError) else f"Could not start the worker: {type(e).__name__}: {e}"
            self.store.update_run(run_id, status="failed", ended_at=time.time(), error=error)
            return
        self._procs[run_id] = proc
        _SECRETS.pop(run_id, None)
        started = procs.started_at(proc.pid) or time.time()
        self.store.update_run(run_id, pid=proc.pid, pgid=proc.pid, pid_started=started)

    def _start_worker(self, run_id: str, run_dir: Path, params: dict[str, Any], devices: str) -> subprocess.Popen:
        env = procs.worker_env(_SECRETS.get(run_id) or self._host_secrets())
        if devices and devices != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = devices
            n = len(devices.split(","))
        else:
            n = max(1, int(params.get("num_processes") or 1))
        command = procs.worker_command(run_dir, n, fsdp=params.get("distributed") == "fsdp")
        with open(run_dir / rf.LOG, "ab") as log:
            return subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ENGINE_ROOT),
                env=env,
                start_new_session=True,
            )

    def _watch_remote(self, row: dict[str, Any]) -> None:
        """Mirror a remote job into the run folder and the store; record how it ended."""
        run_id, job_id = row["id"], row.get("remote_job_id")
        if not job_id:
            if not self._owner_alive(row):  # the submitting process died while submitting
                self.store.update_if(run_id, "running", _never_submitted(row))
            return
        try:
            state = operations(_backend(row)).poll(job_id, Path(row["run_dir"]), _SECRETS.get(run_id) or {})
        except UserError as e:  # can never follow it from here
            fields = {"status": "interrupted", "ended_at": time.time(), "error": str(e)}
            self.store.update_if(run_id, "running", fields)
            return
        except Exception as e:  # the cluster or the network may be back at the next look
            print(f"[trainpad supervisor] following {row['backend']} job {job_id}: {type(e).__name__}: {e}")
            return
        row = self._ingest(row)
        if state is not None:
            outcome = Path(row["run_dir"]) / rf.OUTCOME
            if not outcome.exists():
                rf.write_json(
                    outcome, {"status": state, "exit_code": {"succeeded": 0, "stopped": STOPPED_EXIT}.get(state, 1)}
                )
            self._finish(row, None)
            _SECRETS.pop(run_id, None)

    def user_dirs(self, user: str) -> list[Path]:
        """Folders a user's runs may read local files from: their uploads, and the operator's models folder."""
        uploads = self.data_dir / "uploads"
        return [uploads / safe_name(user) if user else uploads, self.data_dir / "models"]

    def _resume_problems(self, params: BaseModel, user: str) -> list[str]:
        """On a shared instance, ``resume_from`` must be a checkpoint of one of the user's own runs, and a model
        named by run id (a reward model, a judge, a teacher) one of the user's own runs too."""
        if not self.policy.shared:
            return []
        found = []
        resume = str(getattr(params, "resume_from", "") or "")
        owner = self._run_of_path(resume) if resume else None
        if resume and (owner is None or (owner.get("user") or "") != user):
            found.append(
                Problem(
                    "resume_from must be a checkpoint of one of your own runs (Resume fills it in).",
                    field="resume_from",
                )
            )
        for name, run_id in _run_references(params, self.runs_dir).items():
            row = self.store.get_run(run_id)
            if row is None or (row.get("user") or "") != user:
                found.append(Problem(f"{name}: `{run_id}` is not one of your runs.", field=name))
        return found

    def _run_of_path(self, path: str) -> dict[str, Any] | None:
        """The run whose folder holds ``path`` (links resolved), if any."""
        try:
            rel = Path(path).expanduser().resolve().relative_to(self.runs_dir.resolve())
        except (ValueError, OSError):
            return None
        row = self.store.get_run(rel.parts[0]) if rel.parts else None
        return row if row and Path(row["run_dir"]).resolve() == self.runs_dir.resolve() / rel.parts[0] else None

    def _guard(self, params: BaseModel, user: str) -> dict[str, Any]:
        """The shared-instance rules a run's worker checks again on the values it opens (``guard.json``)."""
        return {
            "shared": True,
            "user": user,
            "roots": [str(p) for p in [*self.user_dirs(user), *self.policy.allowed_roots]],
            "runs_dir": str(self.runs_dir),
            "allow_remote_code": self.policy.allow_remote_code,
            "allow_endpoints": self.policy.allow_endpoints,
            "runs": sorted(_run_references(params, self.runs_dir).values()),  # runs it may name (checked above)
            "resume_from": str(Path(getattr(params, "resume_from", "") or "").expanduser().resolve())
            if getattr(params, "resume_from", "")
            else "",
        }

    def _quota_problems(self, user: str) -> list[str]:
        cap = self.policy.max_queued_per_user
        if not cap:
            return []
        waiting = [r for r in self.store.runs_with_status(*ACTIVE) if (r.get("user") or "") == user]
        if len(waiting) < cap:
            return []
        return [f"You have {len(waiting)} runs queued or running, the most this instance allows; wait for one to end."]

    def _host_secrets(self) -> dict[str, str]:
        """The host's token for a run that brought none, when the policy allows it (never on a shared instance
        unless the operator says so)."""
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        return {"HF_TOKEN": token} if token and self.policy.uses_host_token else {}

    def _backend_problems(self, name: str, params: BaseModel, secrets: dict[str, str]) -> list[str]:
        """Why a run cannot go to backend ``name`` (unknown, not usable here, more GPUs than this machine has)."""
        try:
            backend = get_backend(name or "local")
        except ValueError as e:
            return [str(e)]
        if backend.remote:
            return list(operations(backend).problems(params.model_dump(), secrets))
        n, gpus = int(getattr(params, "num_processes", 1) or 0), self.gpu_count
        if gpus and n > gpus:
            return [f"num_processes is {n} but this machine has {gpus} GPU(s). Use at most {gpus} (0 = every GPU)."]
        wanted = [g.strip() for g in str(getattr(params, "gpus", "") or "").split(",") if g.strip()]
        bad = [g for g in wanted if not g.isdigit() or int(g) >= max(gpus, 1)]
        if bad:
            return [
                f"gpus names {', '.join(bad)}, but this machine's GPUs are 0..{max(gpus - 1, 0)}"
                + ("" if gpus else " (it has none)")
                + "."
            ]
        return []

    def _ingest(self, row: dict[str, Any]) -> dict[str, Any]:
        """Add the run's new events to the store (exactly once, whichever supervisor reads them first)."""
        offset = int(row.get("events_offset") or 0)
        events, new_offset = rf.read_events(row["run_dir"], offset)
        if new_offset == offset:
            return row
        metrics, progress = _event_rows(events)
        if self.store.ingest(row["id"], offset, new_offset, metrics, **progress):
            return {**row, **progress, "events_offset": new_offset}
        return self.store.get_run(row["id"]) or row

    def _finish(self, row: dict[str, Any], code: int | None) -> None:
        """Record how a run ended, trusting the worker's own outcome first. Forgets the process only once the
        row is written (a failed write is retried at the next tick)."""
        run_dir = Path(row["run_dir"])
        outcome = rf.read_json(run_dir / rf.OUTCOME) or {}
        if code is None and isinstance(outcome.get("exit_code"), int):
            code = outcome["exit_code"]
        fields: dict[str, Any] = {"status": _status(row, outcome, code), "exit_code": code, "ended_at": time.time()}
        if fields["status"] == "stopped" and row.get("prune_requested"):
            fields["status"] = "pruned"  # a sweep stopped it for being behind (engine.run.sweep)
        if fields["status"] == "failed":
            fields["error"] = _failure_message(code, rf.read_json(run_dir / rf.ERROR), run_dir)
        elif fields["status"] == "interrupted":
            fields["error"] = _interrupted_message(run_dir)
        metrics = rf.read_json(run_dir / rf.METRICS) or {}
        key = row.get("key_metric_name")
        if key and isinstance(metrics.get(key), (int, float)):
            fields["key_metric"] = float(metrics[key])
        self.store.update_if(row["id"], "running", fields)
        self._procs.pop(row["id"], None)

    def _folder_removed(self, row: dict[str, Any]) -> None:
        procs.signal_run(row, signal.SIGKILL)
        child = self._procs.get(row["id"])
        if child is not None:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                return  # retried at the next tick
        error = (
            f"The run folder {row['run_dir']} was removed while the run was running, so the run was stopped: "
            "its config, log, checkpoints and model are gone. Start it again (Duplicate) to train it."
        )
        self.store.update_if(row["id"], "running", {"status": "failed", "ended_at": time.time(), "error": error})
        self._procs.pop(row["id"], None)

    # --- ownership ------------------------------------------------------------------------

    def _row(self, run_id: str) -> dict[str, Any]:
        row = self.store.get_run(run_id)
        if row is None:
            raise UserError(f"No run with id `{run_id}`. `trainpad runs` lists the runs of this data folder.")
        return row

    def _is_me(self, row: dict[str, Any]) -> bool:
        """Owned by this process (any Supervisor object in it: secrets are per process)."""
        return row.get("owner_pid") == self.me[0]

    def _owner_alive(self, row: dict[str, Any]) -> bool:
        if self._is_me(row):
            return True
        return procs.is_alive(row.get("owner_pid"), row.get("owner_started"))

    def _may_adopt(self, row: dict[str, Any]) -> bool:
        """The app starts queued runs whose owner has ended, unless they need that owner's token."""
        return self.manage_all and not self._owner_alive(row) and not row.get("needs_token")


MODEL_REFERENCES = ("reward_model", "judge_model", "teacher_model")  # fields that may name a run by its id


def _run_references(params: BaseModel, runs_dir: Path) -> dict[str, str]:
    """{field: run id} for the fields that name a run of this data folder by its id."""
    out = {}
    for name in MODEL_REFERENCES:
        value = str(getattr(params, name, "") or "").strip()
        if value and "/" not in value and value not in (".", "..") and (runs_dir / value).is_dir():
            out[name] = value
    return out


MAX_NAME = 200  # characters of a run's name


def _name_problems(name: str) -> list[str]:
    if len(name) <= MAX_NAME:
        return []
    return [Problem(f"The run name is {len(name):,} characters long; use at most {MAX_NAME}.", field="run_name")]


def safe_name(user: str) -> str:
    """A user name as a folder name (letters, digits, - _ . only)."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", user)[:64].lstrip(".") or "_"


def _remote(row: dict[str, Any]) -> bool:
    return (row.get("backend") or "local") != "local"


def _backend(row: dict[str, Any]) -> Backend:
    return get_backend(row.get("backend") or "local")


def _never_submitted(row: dict[str, Any]) -> dict[str, Any]:
    error = (
        f"The process that started this run on `{row.get('backend')}` ended before the job was submitted. "
        "Start it again (Duplicate)."
    )
    return {"status": "failed", "ended_at": time.time(), "error": error}


def _event_rows(events: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Metric rows and progress fields from event objects (lines that are not objects are skipped)."""
    rows: list[dict[str, Any]] = []
    progress: dict[str, Any] = {}
    for ev in events:
        if not isinstance(ev, dict):
            continue
        try:
            step = int(ev.get("step") or 0)
            epoch = float(ev["epoch"]) if isinstance(ev.get("epoch"), (int, float)) else None
        except (TypeError, ValueError):
            continue
        if isinstance(ev.get("max_steps"), int) and ev["max_steps"] > 0:
            progress["max_steps"] = ev["max_steps"]
        if step:
            progress["step"] = max(step, progress.get("step", 0))
        if epoch is not None:
            progress["epoch"] = epoch
        for key, value in ev.items():
            if key not in SKIP_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append(
                    {"step": step, "epoch": epoch, "name": str(key), "value": float(value), "time": ev.get("time")}
                )
    return rows, progress


def _status(row: dict[str, Any], outcome: dict[str, Any], code: int | None) -> str:
    """The worker's own word first; a stop counts only when the worker did not finish on its own."""
    said = outcome.get("status")
    if said == "succeeded" and code in (0, None):
        return "succeeded"
    if said == "failed":
        return "failed"
    if said == "stopped":
        return "stopped"
    if row.get("stop_requested") and code in (None, STOPPED_EXIT, -signal.SIGTERM, -signal.SIGKILL):
        return "stopped"
    return "interrupted" if code is None else "failed"


def _token_lost(row: dict[str, Any]) -> dict[str, Any]:
    error = (
        "This run needs a Hugging Face token, which is kept only in the memory of the process that queued it "
        f"(pid {row.get('owner_pid')}), and that process ended before the run started. The token is never "
        "written to disk: start the run again (Duplicate, or `trainpad run` with $HF_TOKEN set) and give the token."
    )
    return {"status": "interrupted", "ended_at": time.time(), "error": error}


def _interrupted_message(run_dir: Path) -> str:
    base = "The run's process ended without reporting a result, and the process that started it is gone."
    if rf.last_checkpoint(run_dir) is not None:
        return base + " Resume it to continue from its last checkpoint."
    return base + " It saved no checkpoint, so use Duplicate to start it again."


def _failure_message(code: int | None, error: dict[str, Any] | None, run_dir: Path) -> str:
    if error and error.get("message"):
        return error["message"]
    tail = "\n".join(rf.log_tail(run_dir, 4000).strip().splitlines()[-15:])
    space = rf.disk_full_message(run_dir, tail)
    if space:
        return space
    if code is not None and code < 0:
        name = procs.signal_name(-code)
        reason = "it ran out of memory or was killed" if -code == signal.SIGKILL else f"it received {name}"
    elif code == 0:
        reason = "it exited without reporting a result"
    else:
        reason = f"it exited with code {code}"
    return f"The worker process died: {reason}. Last lines of train.log:\n{tail}"
