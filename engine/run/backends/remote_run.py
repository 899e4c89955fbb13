"""A run on a machine that does not share this one's disk (Hugging Face Jobs, a Ray cluster without shared
storage): the job's side and ours, talking only through the job's log.

In the job, ``python -m engine.run.backends.remote_run`` writes the run's config (from ``$TRAINPAD_CONFIG_YAML``)
into a fresh run folder, runs the worker on it, and prints every line the worker adds to ``events.jsonl`` and,
at the end, its result files, each behind a prefix. Here, :func:`mirror_log` turns the job's full log back into
the run folder: ``train.log`` (the plain lines), ``events.jsonl`` (only ever grows) and the result files. The
model itself goes back through ``push_to_hub`` from inside the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import runfiles as rf
from engine import settings

EVENT = "[trainpad:event] "
FILE = "[trainpad:file] "
RESULT_FILES = (rf.METRICS, rf.ERROR, rf.OUTCOME)
CONFIG_ENV = "TRAINPAD_CONFIG_YAML"


# --- in the job ---------------------------------------------------------------------------------------------


def job_command(params: dict[str, Any], run_dir: Path) -> list[str]:
    """The worker's command in the job (``num_processes`` 0: one process per GPU of the job's machine)."""
    from engine.preflight import system
    from engine.run import procs

    n = int(params.get("num_processes") if params.get("num_processes") is not None else 1)
    n = n or len(system.gpus()) or 1
    return procs.worker_command(run_dir, n, fsdp=params.get("distributed") == "fsdp")


def main() -> int:
    """Run the worker on the config from the environment, echoing its events and result files to stdout."""
    import yaml

    text = settings.text(CONFIG_ENV)
    if not text:
        print(f"[trainpad] error: ${CONFIG_ENV} is empty: this job was not started by Trainpad.", flush=True)
        return 2
    run_dir = Path(settings.text("TRAINPAD_RUN_DIR") or tempfile.mkdtemp(prefix="trainpad-run-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / rf.CONFIG).write_text(text, encoding="utf-8")
    params = (yaml.safe_load(text) or {}).get("params") or {}
    print(f"[trainpad] engine from {Path(__file__).resolve().parents[3]}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(CONFIG_ENV, None)
    worker = subprocess.Popen(job_command(params, run_dir), env=env, start_new_session=True)
    _forward_stop_signals(worker)
    offset = 0
    while worker.poll() is None:
        offset = _echo_events(run_dir, offset)
        time.sleep(0.5)
    _echo_events(run_dir, offset)
    for name in RESULT_FILES:
        data = rf.read_json(run_dir / name)
        if data is not None:
            print(f"{FILE}{name} {json.dumps(data)}", flush=True)
    return worker.returncode if worker.returncode >= 0 else 128 - worker.returncode


def _forward_stop_signals(worker: subprocess.Popen) -> None:
    """Stop (SIGTERM/SIGINT to this process) reaches the worker's whole group, which checkpoints and exits."""

    def forward(sig: int, _frame: Any) -> None:
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def _echo_events(run_dir: Path, offset: int) -> int:
    """Print the complete event lines written since ``offset``; returns the new offset."""
    events, offset = rf.read_events(run_dir, offset)
    for event in events:
        print(EVENT + json.dumps(event), flush=True)
    return offset


# --- here -------------------------------------------------------------------------------------------------


def mirror_log(lines: list[str], run_dir: Path) -> None:
    """Rebuild the run folder from the job's full log so far (idempotent, so every poll may call it).

    ``train.log`` is rewritten with the plain lines; events past those already in ``events.jsonl`` are appended
    (under a lock: several processes may follow one job); result files are written as the job printed them."""
    plain, events, files = split_log(lines)
    rewrite(run_dir / rf.LOG, "".join(line + "\n" for line in plain))
    _append_new_events(run_dir / rf.EVENTS, events)
    for name, data in files.items():
        if rf.read_json(run_dir / name) != data:
            rf.write_json(run_dir / name, data)


def split_log(lines: list[str]) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """(plain lines, event JSON lines, {result file: content}) from a job's log lines."""
    plain: list[str] = []
    events: list[str] = []
    files: dict[str, dict[str, Any]] = {}
    for raw in lines:
        line = raw.rstrip("\r\n")
        at = line.find(EVENT)
        if at >= 0 and _is_object(line[at + len(EVENT) :]):
            events.append(line[at + len(EVENT) :])
            continue
        at = line.find(FILE)
        if at >= 0:
            name, _, body = line[at + len(FILE) :].partition(" ")
            if name in RESULT_FILES and _is_object(body):
                files[name] = json.loads(body)
                continue
        plain.append(line)
    return plain, events, files


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, unless it already holds exactly that."""
    if path.exists() and path.stat().st_size == len(text.encode("utf-8")) and path.read_text("utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _append_new_events(path: Path, events: list[str]) -> None:
    import fcntl

    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        have = sum(1 for line in f if line.endswith("\n"))
        if len(events) > have:
            f.write("".join(e + "\n" for e in events[have:]))
            f.flush()


if __name__ == "__main__":
    sys.exit(main())
