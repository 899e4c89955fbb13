"""Faults: a killed worker, Stop, a restarted supervisor, and Resume from a checkpoint."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from engine import runfiles as rf
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests.test_sft import sft_params
from tests.tiny import chat_rows, write_jsonl

SFT = get_task("llm_sft")
pytestmark = pytest.mark.slow


def long_params(model: Path, tmp_path: Path, **kw):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(200))
    return sft_params(
        model,
        data,
        max_steps=3000,
        batch_size=2,
        packing="none",
        logging_steps=1,
        valid_fraction=0.0,
        use_lora=False,
        **kw,
    )


def wait_for_step(sup: Supervisor, run_id: str, step: int, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = sup.store.get_run(run_id)
        if row["status"] == "running" and (row.get("step") or 0) >= step:
            return row
        assert row["status"] in ("queued", "running"), row
        time.sleep(0.2)
    raise TimeoutError(f"run never reached step {step}")


def group_alive(pgid: int) -> bool:
    return any(_pgid(p) == pgid for p in psutil.process_iter() if p.status() != psutil.STATUS_ZOMBIE)


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except (ProcessLookupError, PermissionError):
        return None


def test_sigkill_mid_run_is_failed_with_log_tail(supervisor, tiny_llama, tmp_path):
    run_id = supervisor.submit(SFT, long_params(tiny_llama, tmp_path))
    row = wait_for_step(supervisor, run_id, 3)
    os.kill(row["pid"], signal.SIGKILL)
    row = supervisor.wait(run_id, timeout=60)
    assert row["status"] == "failed" and row["exit_code"] == -signal.SIGKILL
    assert "The worker process died: it ran out of memory or was killed" in row["error"]
    assert "Last lines of train.log" in row["error"] and "'loss'" in row["error"]


def test_stop_checkpoints_and_resume_continues_from_it(supervisor, tiny_llama, tmp_path):
    run_id = supervisor.submit(SFT, long_params(tiny_llama, tmp_path))
    row = wait_for_step(supervisor, run_id, 5)
    supervisor.stop(run_id)
    row = supervisor.wait(run_id, timeout=60)
    assert row["status"] == "stopped"
    assert not group_alive(row["pgid"]), "a process of the worker's group is still alive"
    ckpt = rf.last_checkpoint(row["run_dir"])
    assert ckpt is not None
    stopped_at = int(ckpt.name.split("-")[1])
    assert stopped_at >= 5

    new_id = supervisor.resume(run_id)
    new_row = wait_for_step(supervisor, new_id, stopped_at + 2)
    assert new_row["parent_id"] == run_id
    events, _ = rf.read_events(new_row["run_dir"])
    start = next(e for e in events if e["type"] == "start")
    assert start["step"] == stopped_at, "resumed run starts at the checkpoint's step"
    first_logged = min(e["step"] for e in events if e["type"] == "log")
    assert first_logged > stopped_at
    supervisor.stop(new_id)
    assert supervisor.wait(new_id, timeout=60)["status"] == "stopped"


def test_stop_of_a_queued_run_cancels_it(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, concurrency=1, poll_interval=0.2)
    first = sup.submit(SFT, long_params(tiny_llama, tmp_path))
    second = sup.submit(SFT, long_params(tiny_llama, tmp_path))
    sup.tick()
    assert sup.store.get_run(first)["status"] == "running"
    assert sup.store.get_run(second)["status"] == "queued"
    sup.stop(second)
    assert sup.store.get_run(second)["status"] == "stopped"
    sup.stop(first)
    assert sup.wait(first, timeout=60, drive=True)["status"] == "stopped"


def test_supervisor_restart_reattaches_or_marks_interrupted(data_dir, tiny_llama, tmp_path):
    first = Supervisor(data_dir, poll_interval=0.2, grace_period=20).start()
    run_id = first.submit(SFT, long_params(tiny_llama, tmp_path))
    wait_for_step(first, run_id, 2)
    first.shutdown()  # the app goes away; the worker keeps running

    second = Supervisor(data_dir, poll_interval=0.2, grace_period=20).start()  # re-attaches to the live worker
    try:
        step = second.store.get_run(run_id)["step"]
        wait_for_step(second, run_id, step + 3)  # still ingesting events
        second.stop(run_id)
        row = second.wait(run_id, timeout=60)
        assert row["status"] == "stopped"
        first._procs[run_id].wait(timeout=10)  # reap the zombie child of the first supervisor
    finally:
        second.shutdown()

    run_id2 = second.submit(SFT, long_params(tiny_llama, tmp_path))
    third = Supervisor(data_dir, poll_interval=0.2).start()
    row = wait_for_step(third, run_id2, 2)
    third.shutdown()
    os.killpg(row["pgid"], signal.SIGKILL)  # the worker dies while no supervisor is watching
    third._procs[run_id2].wait(timeout=10)
    fourth = Supervisor(data_dir, poll_interval=0.2)
    row = fourth.store.get_run(run_id2)
    assert row["status"] == "interrupted" and "no checkpoint" in row["error"] and "Duplicate" in row["error"]
    assert fourth.store.runs_with_status("running") == []


def test_queue_keeps_going_after_a_failed_run(data_dir, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(40))
    sup = Supervisor(data_dir, concurrency=1, poll_interval=0.2).start()
    try:
        bad = sup.submit(SFT, sft_params(tmp_path / "missing-model", data), check=False)  # fails in the worker
        good = sup.submit(SFT, sft_params(tiny_llama, data, epochs=1, use_lora=True))
        assert sup.wait(bad, timeout=120)["status"] == "failed"
        assert sup.wait(good, timeout=300)["status"] == "succeeded"
    finally:
        sup.shutdown()
