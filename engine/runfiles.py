"""The run folder protocol: what a worker writes and the supervisor and UI read.

runs/<id>/config.yaml   task + params (no secrets)
runs/<id>/events.jsonl  one JSON object per line: {"type": "log"|"start"|"trial"|..., "step": ..., ...}
runs/<id>/train.log     everything the worker prints
runs/<id>/metrics.json  final metrics (success only)
runs/<id>/error.json    {"message": one plain line, "type": exception class} (failure only)
runs/<id>/outcome.json  {"status": "succeeded"|"failed"|"stopped", "exit_code": n}
runs/<id>/model/        the trained model, model card README.md
runs/<id>/checkpoints/  resumable checkpoints (checkpoint-<step>/)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

CONFIG, EVENTS, LOG, METRICS, ERROR, OUTCOME = (
    "config.yaml",
    "events.jsonl",
    "train.log",
    "metrics.json",
    "error.json",
    "outcome.json",
)
MODEL_DIR, CHECKPOINTS = "model", "checkpoints"

_STOP = {"requested": False, "in_steps": False}
STEP_EVENTS = ("start", "first_step", "log", "trial")  # once one is written, the task checks Stop at each step


class StopRequested(BaseException):
    """Raised by the Stop signal handler outside the training steps (loading data or the model): nothing to
    checkpoint yet, so the worker stops at once. A BaseException, so that no ``except Exception`` swallows it."""


def request_stop(*_: Any) -> None:
    """Signal handler. During the training steps: ask the task to stop at its next step and save a checkpoint.
    Before them (data preparation, model loading): stop now."""
    _STOP["requested"] = True
    if not _STOP["in_steps"]:
        raise StopRequested()


def request_stop_quietly() -> None:
    """Mark Stop as asked for (another process of the run received it) without raising."""
    _STOP["requested"] = True


def stop_requested() -> bool:
    return _STOP["requested"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy / torch scalars
        return _clean(value.item())
    return value


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a multi-process one (only it writes the run's files)."""
    return os.environ.get("RANK", "0") == "0"


def write_event(run_dir: str | Path, event: dict[str, Any]) -> None:
    """Append one event line (flushed at once so the supervisor sees it); rank 0 only."""
    if not is_main_process():
        if event.get("type") in STEP_EVENTS:
            _STOP["in_steps"] = True
        return
    if event.get("type") in STEP_EVENTS:
        _STOP["in_steps"] = True
    event = {"time": time.time(), **{k: _clean(v) for k, v in event.items()}}
    with open(Path(run_dir) / EVENTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()


def read_events(run_dir: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete event lines after byte ``offset``; returns them and the new offset."""
    path = Path(run_dir) / EVENTS
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in chunk[: end + 1].splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict):  # a line that is valid JSON but not an object is not an event
            events.append(event)
    return events, offset + end + 1


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps({k: _clean(v) for k, v in data.items()}, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from a file; None when the file is missing, unreadable, not JSON or not an object."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def log_tail(run_dir: str | Path, max_bytes: int = 16_000) -> str:
    """The last part of the run's log."""
    path = Path(run_dir) / LOG
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        return f.read().decode("utf-8", errors="replace")


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder of a run, if any."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()
    ]
    return max(found)[1] if found else None


GUARD = "guard.json"  # a shared instance's rules for this run, checked again by the worker (see engine.run.policy)
SIDE_FILE = "trainpad.json"  # settings a task's predict needs, saved next to the model (lengths, prefixes...)


def save_unless_stopped(save: Any, run_dir: str | Path) -> bool:
    """Call ``save(model_dir)`` to write the final model, unless Stop was pressed (then the checkpoint is what
    counts). The one place a task's model is saved; returns whether it saved."""
    if stop_requested():
        return False
    model_dir = Path(run_dir) / MODEL_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    save(model_dir)
    return True


def write_side_file(model_dir: str | Path, settings: dict[str, Any]) -> None:
    """Write the task's settings that ``predict`` needs next to the saved model."""
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / SIDE_FILE).write_text(json.dumps(settings, indent=2, default=str), encoding="utf-8")


def read_side_file(model_dir: str | Path) -> dict[str, Any]:
    """The settings :func:`write_side_file` saved ({} when there are none)."""
    return read_json(Path(model_dir) / SIDE_FILE) or {}


def disk_full_message(run_dir: str | Path, log_text: str = "") -> str:
    """ "No space left on <disk>" when the run's disk is (nearly) full or its log says so; "" otherwise."""
    import shutil

    try:
        usage = shutil.disk_usage(run_dir if Path(run_dir).exists() else Path(run_dir).parent)
    except OSError:
        return ""
    if usage.free > 64 * 1024 * 1024 and "No space left on device" not in log_text:
        return ""
    return (
        f"No space left on the disk of {run_dir} ({usage.free / 2**20:.0f} MB free of {usage.total / 2**30:.1f} GB). "
        "The run could not write its files. Free some space (delete old runs or checkpoints), or use another "
        "data folder (--data-dir / TRAINPAD_DATA_DIR), then start it again."
    )


def print_summary(task: str, n_train: int, n_valid: int, **facts: Any) -> None:
    """One line in train.log saying what is about to be trained."""
    extra = "; ".join(f"{k}={v}" for k, v in facts.items())
    print(f"[trainpad] {task}: {n_train} training rows, {n_valid} validation rows; {extra}", flush=True)
