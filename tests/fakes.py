"""Stand-ins for workers and runs queued by other processes: plain processes written into a run's row."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from engine import runfiles as rf


def dead_process() -> tuple[int, float]:
    """The identity of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    return p.pid, started


def fake_worker(code: str = "import time; time.sleep(120)") -> subprocess.Popen:
    """A process in its own group standing in for a worker."""
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def fake_run(sup, tmp_path: Path, status: str = "running", proc=None, owner=None, **fields) -> str:
    """A run row (and folder) as if some other process had queued or started it."""
    run_id = f"fake-{time.time_ns()}"
    run_dir = sup.runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / rf.CONFIG).write_text("task: llm_sft\nparams: {}\n")
    owner = owner or dead_process()
    row = {"id": run_id, "name": run_id, "task": "llm_sft", "status": status, "params": "{}", "run_dir": str(run_dir)}
    row.update(owner_pid=owner[0], owner_started=owner[1], events_offset=0, key_metric_name="eval_loss")
    if proc is not None:
        row.update(pid=proc.pid, pgid=proc.pid, pid_started=psutil.Process(proc.pid).create_time())
    sup.store.insert_run({**row, **fields})
    return run_id


class FakePredictor:
    """A Playground prediction process that starts nothing: its run folder, last use and whether it was closed."""

    def __init__(self, run_dir, log):
        self.run_dir, self.used, self.closed = str(run_dir), time.time(), False
        self.proc = type("P", (), {"poll": lambda s: None})()

    def close(self):
        self.closed = True


def fake_predictors(monkeypatch, max_processes: int, per_user: int = 1) -> None:
    """The Playground's processes replaced by :class:`FakePredictor`, with these slot limits and no sessions yet."""
    from ui import predictor

    monkeypatch.setattr(predictor, "Predictor", FakePredictor)
    monkeypatch.setattr(predictor, "MAX_PROCESSES", max_processes)
    monkeypatch.setattr(predictor, "PER_USER", per_user)
    monkeypatch.setattr(predictor, "_SESSIONS", {})
    monkeypatch.setattr(predictor, "_OWNERS", {})
