"""The supervisor: queues runs, starts workers as subprocesses, ingests their events, records outcomes.

A background thread (not a Gradio event) used by the app and the CLI. It is the only writer of
the SQLite run store. Workers report only through files in their run folder (see ``runfiles``).
"""

from __future__ import annotations

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

import psutil
from pydantic import BaseModel

from engine import runfiles as rf
from engine.config import dump_config
from engine.data import check_data
from engine.errors import UserError
from engine.params import public_dict
from engine.store import ACTIVE, Store
from engine.task import Task, get_task

ENGINE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = "trainpad_data"
SKIP_METRIC_KEYS = {"type", "step", "epoch", "time", "max_steps", "message"}


def data_dir_from_env(explicit: str | Path | None = None) -> Path:
    """The data folder: explicit > $TRAINPAD_DATA_DIR > /data on a Space with storage > ./trainpad_data."""
    if explicit:
        return Path(explicit)
    if os.environ.get("TRAINPAD_DATA_DIR"):
        return Path(os.environ["TRAINPAD_DATA_DIR"])
    if os.environ.get("SYSTEM") == "spaces" and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/trainpad")
    return Path(DEFAULT_DATA_DIR)


def worker_command(run_dir: Path, backend: str = "local", num_processes: int = 1) -> list[str]:
    """The command that runs one run; the same for every backend."""
    if num_processes > 1:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(num_processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "engine.worker",
            str(run_dir),
        ]
    return [sys.executable, "-m", "engine.worker", str(run_dir)]


def worker_env(secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: ours, plus secrets, plus allocator settings that speed up CPU training."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH", "")]))
    env.update(secrets or {})
    return env


def run_engine_module(
    module: str, run_dir: str | Path, payload: Any = None, timeout: float = 600, what: str = ""
) -> Any:
    """Run ``python -m MODULE RUN_DIR`` (JSON ``payload`` on stdin) in a worker environment and return the
    ``output`` of the JSON line it prints last; UserError with its ``error`` (or stderr tail) otherwise.

    Keeps heavy imports (torch & co.) out of the caller, e.g. the UI process.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, str(run_dir)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ENGINE_ROOT),
        env=worker_env(),
    )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise UserError(f"{what or module} failed (exit code {proc.returncode}): {tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise UserError(result["error"])
    return result["output"]


class Supervisor:
    """Runs queued runs up to ``concurrency`` at once; see the module docstring."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        concurrency: int = 1,
        poll_interval: float = 0.5,
        grace_period: float = 30.0,
        manage_all: bool = True,
    ):
        self.data_dir = data_dir_from_env(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "models").mkdir(exist_ok=True)
        self.store = Store(self.data_dir / "trainpad.db")
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.grace_period = grace_period
        self.manage_all = manage_all
        self._mine: set[str] = set()
        self._procs: dict[str, subprocess.Popen | psutil.Process] = {}
        self._offsets: dict[str, int] = {}
        self._secrets: dict[str, dict[str, str]] = {}
        self._kill_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        if manage_all:
            self.reconcile()

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
        self._halt.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception as e:  # never let the thread die; report and carry on
                print(f"[trainpad supervisor] {type(e).__name__}: {e}", file=sys.stderr)
            self._halt.wait(self.poll_interval)

    def reconcile(self) -> None:
        """On start-up: re-attach to live workers; runs whose process is gone become ``interrupted``."""
        for row in self.store.runs_with_status("running"):
            proc = _live_process(row)
            if proc is not None:
                self._procs[row["id"]] = proc
                self.store.clear_metrics(row["id"])  # re-ingested from the start of events.jsonl
                continue
            self._ingest(row["id"], Path(row["run_dir"]))
            outcome = rf.read_json(Path(row["run_dir"]) / rf.OUTCOME)
            if outcome:
                self._finish(row["id"], Path(row["run_dir"]), outcome.get("exit_code"), outcome=outcome)
            else:
                self.store.update_run(
                    row["id"],
                    status="interrupted",
                    ended_at=time.time(),
                    error="The app stopped while this run was running, and its process is gone. Resume it to continue from its last checkpoint.",
                )

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
    ) -> str:
        """Check data, write ``runs/<id>/config.yaml`` and queue the run. Raises UserError, creating nothing."""
        task = get_task(task) if isinstance(task, str) else task
        if check:
            problems = check_data(task, params)
            if problems:
                raise UserError(problems)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True)
        name = name or f"{task.name}-{run_id[-6:]}"
        (run_dir / rf.CONFIG).write_text(dump_config(task, params, name), encoding="utf-8")
        with self._lock:
            self._secrets[run_id] = dict(secrets or {})
            self._mine.add(run_id)
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
                }
            )
        return run_id

    def stop(self, run_id: str) -> None:
        """Queued: cancel. Running: SIGTERM the process group (worker checkpoints), SIGKILL after the grace period."""
        with self._lock:
            row = self.store.get_run(run_id)
            if row is None:
                raise UserError(f"No run with id `{run_id}`.")
            if row["status"] == "queued":
                self.store.update_run(run_id, status="stopped", ended_at=time.time(), stop_requested=1)
                return
            if row["status"] != "running":
                return
            self.store.update_run(run_id, stop_requested=1)
            _signal_group(row.get("pgid") or row.get("pid"), signal.SIGTERM)
            self._kill_at[run_id] = time.time() + self.grace_period

    def resume(self, run_id: str, secrets: dict[str, str] | None = None) -> str:
        """A new run continuing ``run_id`` from its last checkpoint."""
        row = self.store.get_run(run_id)
        if row is None:
            raise UserError(f"No run with id `{run_id}`.")
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
            task, params, name=f"{row['name']} (resumed)", secrets=secrets, parent_id=run_id, check=False
        )

    def delete(self, run_id: str) -> None:
        """Remove a finished run: its folder and its rows."""
        row = self.store.get_run(run_id)
        if row is None:
            return
        if row["status"] in ACTIVE:
            raise UserError(f"Run `{run_id}` is {row['status']}; stop it before deleting.")
        shutil.rmtree(row["run_dir"], ignore_errors=True)
        self.store.delete_run(run_id)

    def wait(self, run_id: str, timeout: float = 600, drive: bool = False) -> dict[str, Any]:
        """Block until the run ends (``drive``: tick in this thread instead of the background one)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if drive:
                self.tick()
            row = self.store.get_run(run_id)
            if row and row["status"] not in ACTIVE:
                return row
            time.sleep(self.poll_interval if not drive else 0.2)
        raise TimeoutError(f"run {run_id} still {row and row['status']} after {timeout}s")

    # --- one supervision step -------------------------------------------------------------

    def tick(self) -> None:
        """Ingest events, reap finished workers, enforce stop deadlines, start queued runs."""
        with self._lock:
            for run_id, proc in list(self._procs.items()):
                run_dir = self.runs_dir / run_id
                self._ingest(run_id, run_dir)
                code = _poll(proc, run_dir)
                if code is not None:
                    self._ingest(run_id, run_dir)
                    self._finish(run_id, run_dir, code)
                elif run_id in self._kill_at and time.time() > self._kill_at[run_id]:
                    _signal_group(proc.pid, signal.SIGKILL)
            self._launch_queued()

    def _launch_queued(self) -> None:
        free = self.concurrency - len(self._procs)
        if free <= 0:
            return
        for row in self.store.runs_with_status("queued")[:free]:
            if self.manage_all or row["id"] in self._mine:
                self._launch(row)

    def _launch(self, row: dict[str, Any]) -> None:
        if not self.store.claim(row["id"]):
            return  # another supervisor on the same data folder (the app, a CLI run) started it first
        run_dir = Path(row["run_dir"])
        log = open(run_dir / rf.LOG, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                worker_command(run_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(ENGINE_ROOT),
                env=worker_env(self._secrets.pop(row["id"], None)),
                start_new_session=True,
            )
        except OSError as e:
            self.store.update_run(
                row["id"], status="failed", ended_at=time.time(), error=f"Could not start the worker: {e}"
            )
            return
        finally:
            log.close()
        self._procs[row["id"]] = proc
        self._offsets[row["id"]] = 0
        created = psutil.Process(proc.pid).create_time() if psutil.pid_exists(proc.pid) else time.time()
        self.store.update_run(row["id"], pid=proc.pid, pgid=proc.pid, pid_started=created)

    def _ingest(self, run_id: str, run_dir: Path) -> None:
        events, self._offsets[run_id] = rf.read_events(run_dir, self._offsets.get(run_id, 0))
        if not events:
            return
        rows, progress = [], {}
        for ev in events:
            step = int(ev.get("step") or 0)
            if ev.get("max_steps"):
                progress["max_steps"] = int(ev["max_steps"])
            if step:
                progress["step"] = max(step, progress.get("step", 0))
            if ev.get("epoch") is not None:
                progress["epoch"] = float(ev["epoch"])
            for key, value in ev.items():
                if key not in SKIP_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append(
                        {
                            "step": step,
                            "epoch": ev.get("epoch"),
                            "name": key,
                            "value": float(value),
                            "time": ev.get("time"),
                        }
                    )
        self.store.add_metrics(run_id, rows)
        if progress:
            self.store.update_run(run_id, **progress)

    def _finish(self, run_id: str, run_dir: Path, code: int | None, outcome: dict[str, Any] | None = None) -> None:
        self._procs.pop(run_id, None)
        self._kill_at.pop(run_id, None)
        row = self.store.get_run(run_id) or {}
        outcome = outcome or rf.read_json(run_dir / rf.OUTCOME) or {}
        metrics = rf.read_json(run_dir / rf.METRICS) or {}
        error = rf.read_json(run_dir / rf.ERROR)
        if row.get("stop_requested"):
            status = "stopped"
        elif code == 0 and outcome.get("status") == "succeeded":
            status = "succeeded"
        else:
            status = "failed"
        fields: dict[str, Any] = {"status": status, "exit_code": code, "ended_at": time.time()}
        if status == "failed":
            fields["error"] = _failure_message(code, error, run_dir)
        key = row.get("key_metric_name")
        if key and isinstance(metrics.get(key), (int, float)):
            fields["key_metric"] = float(metrics[key])
        self.store.update_run(run_id, **fields)


def _failure_message(code: int | None, error: dict[str, Any] | None, run_dir: Path) -> str:
    if error and error.get("message"):
        return error["message"]
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        reason = "it ran out of memory or was killed" if -code == signal.SIGKILL else f"it received {name}"
    elif code == 0:
        reason = "it exited without reporting a result"
    else:
        reason = f"it exited with code {code}"
    tail = "\n".join(rf.log_tail(run_dir, 4000).strip().splitlines()[-15:])
    return f"The worker process died: {reason}. Last lines of train.log:\n{tail}"


def _poll(proc: subprocess.Popen | psutil.Process, run_dir: Path) -> int | None:
    """Exit code of a finished worker, None while it runs."""
    if isinstance(proc, subprocess.Popen):
        return proc.poll()
    try:  # a re-attached worker is not our child: its exit code comes from outcome.json
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        pass
    outcome = rf.read_json(run_dir / rf.OUTCOME)
    return int(outcome.get("exit_code", 1)) if outcome else -int(signal.SIGKILL)


def _live_process(row: dict[str, Any]) -> psutil.Process | None:
    pid = row.get("pid")
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if row.get("pid_started") and abs(proc.create_time() - row["pid_started"]) > 1.0:
            return None  # the pid was reused by another process
        return proc
    except psutil.Error:
        return None


def _signal_group(pgid: int | None, sig: int) -> None:
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
