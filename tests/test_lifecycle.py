"""Run lifecycle you can trust: each test is one defect found by driving Trainpad as a user would (kill -9,
Ctrl-C, many runs at once, a stop from another shell). Fake workers (plain processes written into a run's
row) keep most of them fast; the rest run the tiny SFT model."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine import runfiles as rf
from engine.cli import parse_args
from engine.config import load_config
from engine.data.tables import read_table
from engine.errors import UserError
from engine.run import procs
from engine.run.store import Store
from engine.run.supervisor import Supervisor
from engine.run.worker import error_message
from engine.task import get_task
from tests.fakes import IGNORES_SIGTERM, fake_run, fake_worker
from tests.tiny import chat_rows, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
SFT = get_task("llm_sft")


def sft(model: Path, data: Path, **kw):
    base = dict(base_model=str(model), data_path=str(data), epochs=1, batch_size=4, max_length=64, use_lora=True)
    return SFT.params.model_validate({**base, **kw})


def long_sft(model: Path, tmp_path: Path, **kw):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(200))
    return sft(model, data, max_steps=3000, batch_size=2, packing="none", logging_steps=1, valid_fraction=0.0, **kw)


def cli(*args: str, data_dir: Path, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINPAD_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300, **kw
    )


def wait_until(fn, timeout: float = 60, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition never held")


# 1 + 9: the queue is per data folder, and a run never waits on one that nobody will start


def test_cli_run_is_not_blocked_by_a_queued_run_nobody_will_start(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, manage_all=False, grace_period=5)
    orphan = fake_run(sup, tmp_path, status="queued")  # an app closed with a queue
    mine = sup.submit(SFT, long_sft(tiny_llama, tmp_path))
    assert sup.queue_position(mine) == (0, 0)
    sup.tick()
    assert sup.store.get_run(mine)["status"] == "running"
    assert sup.store.get_run(orphan)["status"] == "queued", "left for the app to start"
    sup.stop(mine)
    assert sup.wait(mine, timeout=60, drive=True)["status"] == "stopped"


def test_a_run_queued_by_a_live_process_is_waited_for_and_said(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, manage_all=True, grace_period=5)
    owner = fake_worker()
    try:
        ahead = fake_run(sup, tmp_path, status="queued", owner=(owner.pid, psutil.Process(owner.pid).create_time()))
        mine = sup.submit(SFT, long_sft(tiny_llama, tmp_path))
        sup.tick()
        assert sup.store.get_run(ahead)["status"] == "queued", "the app never starts a live process's run"
        assert sup.store.get_run(mine)["status"] == "queued", "first in, first out: it waits its turn"
        assert sup.queue_position(mine) == (0, 1)
    finally:
        owner.kill()
        owner.wait()
    sup.tick()  # the owner is gone: its run (no token) is adopted by the app, in order
    assert sup.store.get_run(ahead)["status"] in ("running", "failed")
    sup.wait(ahead, timeout=60, drive=True)
    wait_until(lambda: sup.tick() or sup.store.get_run(mine)["status"] == "running", timeout=60)
    sup.stop(mine)
    assert sup.wait(mine, timeout=60, drive=True)["status"] == "stopped"


def test_concurrency_limit_holds_across_processes(data_dir, tiny_llama, tmp_path):
    app = Supervisor(data_dir, concurrency=1, grace_period=5)
    first = app.submit(SFT, long_sft(tiny_llama, tmp_path))
    app.tick()
    assert app.store.get_run(first)["status"] == "running"
    cli_sup = Supervisor(data_dir, manage_all=False, grace_period=5)  # e.g. `trainpad run` while the app trains
    assert cli_sup.concurrency == 1, "the limit is stored with the data folder"
    second = cli_sup.submit(SFT, long_sft(tiny_llama, tmp_path))
    cli_sup.tick()
    assert cli_sup.store.get_run(second)["status"] == "queued"
    assert cli_sup.queue_position(second) == (1, 0)
    app.stop(first)
    app.wait(first, timeout=60, drive=True)
    wait_until(lambda: cli_sup.tick() or cli_sup.store.get_run(second)["status"] == "running", timeout=30)
    cli_sup.stop(second)
    assert cli_sup.wait(second, timeout=60, drive=True)["status"] == "stopped"


# 2: stop escalates to SIGKILL in whichever process looks after the deadline


def test_trainpad_stop_kills_a_worker_that_ignores_sigterm(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    worker = fake_worker(IGNORES_SIGTERM)
    time.sleep(0.5)  # let it install its handler
    run_id = fake_run(sup, tmp_path, proc=worker)
    out = cli("stop", run_id, "--grace", "1", data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    assert worker.wait(timeout=10) == -signal.SIGKILL
    row = sup.store.get_run(run_id)
    assert row["status"] == "stopped" and f"run {run_id} stopped" in out.stdout


def test_stop_deadline_is_kept_in_the_store_for_any_supervisor(data_dir, tmp_path):
    first = Supervisor(data_dir, manage_all=False, grace_period=0.5)
    worker = fake_worker(IGNORES_SIGTERM)
    time.sleep(0.5)
    run_id = fake_run(first, tmp_path, proc=worker)
    first.stop(run_id)  # e.g. a UI Stop; this process then goes away
    assert first.store.get_run(run_id)["kill_at"] > time.time() - 1
    time.sleep(0.7)
    Supervisor(data_dir, manage_all=False).refresh()  # anyone who looks next escalates
    assert worker.wait(timeout=10) == -signal.SIGKILL


# 3: a run's token lives only in the submitting process


def test_a_queued_run_whose_token_went_with_its_process_is_interrupted(data_dir, tmp_path):
    app = Supervisor(data_dir, manage_all=True)
    run_id = fake_run(app, tmp_path, status="queued", needs_token=1)
    app.tick()
    row = app.store.get_run(run_id)
    assert row["status"] == "interrupted" and not row.get("pid")
    assert "needs a Hugging Face token" in row["error"] and "give the token" in row["error"]


def test_only_the_submitting_process_starts_a_run_that_needs_a_token(data_dir, tmp_path):
    app = Supervisor(data_dir, manage_all=True)
    owner = fake_worker()
    try:
        run_id = fake_run(
            app, tmp_path, status="queued", needs_token=1, owner=(owner.pid, psutil.Process(owner.pid).create_time())
        )
        app.tick()
        assert app.store.get_run(run_id)["status"] == "queued"
    finally:
        owner.kill()
        owner.wait()


# 4: the worker's own outcome wins over a stop request


@pytest.mark.parametrize("said", ["succeeded", "failed"])
def test_a_stop_that_came_too_late_does_not_hide_the_outcome(data_dir, tmp_path, said):
    sup = Supervisor(data_dir, manage_all=False)
    worker = fake_worker("pass")
    worker.wait()
    run_id = fake_run(sup, tmp_path, proc=None, pid=worker.pid, pgid=worker.pid, pid_started=1.0, stop_requested=1)
    run_dir = Path(sup.store.get_run(run_id)["run_dir"])
    rf.write_json(run_dir / rf.OUTCOME, {"status": said, "exit_code": 0 if said == "succeeded" else 1})
    rf.write_json(run_dir / rf.METRICS, {"eval_loss": 0.5})
    rf.write_json(run_dir / rf.ERROR, {"message": "CUDA error: device-side assert", "type": "RuntimeError"})
    sup.refresh()
    row = sup.store.get_run(run_id)
    assert row["status"] == said
    if said == "failed":
        assert row["error"] == "CUDA error: device-side assert"
    else:
        assert row["key_metric"] == 0.5


def test_cancel_of_a_queued_run_never_overwrites_a_started_one(data_dir, tmp_path):
    store = Store(data_dir / "t.db")
    store.insert_run({"id": "r", "name": "r", "task": "llm_sft", "params": "{}"})
    assert store.claim("r")
    assert store.cancel_queued("r") is False and store.get_run("r")["status"] == "running"


# 5: no run stays `running` without a process


def test_a_claimed_run_whose_folder_is_gone_fails_instead_of_staying_running(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=True)
    run_id = fake_run(sup, tmp_path, status="queued", owner=sup.me)
    shutil.rmtree(sup.store.get_run(run_id)["run_dir"])
    sup.tick()
    row = sup.store.get_run(run_id)
    assert row["status"] == "failed" and "Could not start the worker" in row["error"] and "missing" in row["error"]


def test_a_failed_write_at_the_end_is_retried(data_dir, tiny_llama, tmp_path, monkeypatch):
    sup = Supervisor(data_dir, manage_all=False, grace_period=5)
    run_id = sup.submit(SFT, sft(tiny_llama, write_jsonl(tmp_path / "c.jsonl", chat_rows(16)), max_steps=2))
    sup.tick()
    sup._procs[run_id].wait(timeout=120)
    real = sup.store.update_if
    calls = {"n": 0}

    def locked_once(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            import sqlite3

            raise sqlite3.OperationalError("database is locked")
        return real(*a, **kw)

    monkeypatch.setattr(sup.store, "update_if", locked_once)
    with pytest.raises(Exception, match="locked"):
        sup.tick()
    assert run_id in sup._procs, "the process is not forgotten before its outcome is recorded"
    sup.tick()
    assert sup.store.get_run(run_id)["status"] == "succeeded" and run_id not in sup._procs


# 7: no duplicated chart points, no signal to a reused pid, wait(0)


def test_events_are_ingested_once_whoever_reads_them(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    worker = fake_worker()
    run_id = fake_run(sup, tmp_path, proc=worker)
    run_dir = sup.store.get_run(run_id)["run_dir"]
    for step in (1, 2, 3):
        rf.write_event(run_dir, {"type": "log", "step": step, "loss": 1.0 / step})
    sup.refresh()
    Supervisor(data_dir, manage_all=True).refresh()  # a restarted app
    worker.kill()
    worker.wait()
    Supervisor(data_dir, manage_all=True).refresh()  # and again once the worker has gone
    assert [m["step"] for m in sup.store.metrics(run_id, ["loss"])] == [1, 2, 3]
    assert sup.store.get_run(run_id)["status"] == "interrupted"


def test_a_reused_pid_is_never_signalled(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    bystander = fake_worker()
    try:
        run_id = fake_run(sup, tmp_path, proc=bystander)
        sup.store.update_run(run_id, pid_started=psutil.Process(bystander.pid).create_time() - 1000)
        sup.stop(run_id)
        time.sleep(0.3)
        assert bystander.poll() is None, "a process that merely has the run's old pid was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def test_wait_with_no_time_left_says_so(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    run_id = fake_run(sup, tmp_path, status="queued", owner=sup.me)
    with pytest.raises(TimeoutError, match="still queued"):
        sup.wait(run_id, timeout=0)


# 8: paths are made absolute when the run is submitted


def test_relative_paths_are_stored_absolute(data_dir, tiny_llama, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "chat.jsonl", chat_rows(16))
    monkeypatch.chdir(tmp_path)
    sup = Supervisor(data_dir, manage_all=False)
    run_id = sup.submit(SFT, sft(tiny_llama, Path("./chat.jsonl")))
    _, params = load_config(Path(sup.store.get_run(run_id)["run_dir"]) / rf.CONFIG)
    assert params.data_path == str(tmp_path / "chat.jsonl")
    assert sup.store.get_run(run_id)["params"]["data_path"] == str(tmp_path / "chat.jsonl")


# 10 + 18: data files that must be refused


def test_duplicate_column_names_are_refused(tmp_path):
    (tmp_path / "d.csv").write_text("text,label,text\na,1,b\n")
    with pytest.raises(UserError, match=r"same name: `text` in columns 1, 3"):
        read_table(tmp_path / "d.csv")


def test_a_binary_file_named_csv_is_named_as_such(tmp_path):
    (tmp_path / "sheet.csv").write_bytes(b"PK\x03\x04\x14\x00\x00\x00" + bytes(200))
    with pytest.raises(UserError, match="not a text CSV file: it looks like a ZIP archive or an Excel .xlsx"):
        read_table(tmp_path / "sheet.csv")


# 11: the worker reads the data once


def test_the_worker_reads_the_data_once(tiny_llama, tmp_path, monkeypatch):
    from engine.data import tables as data
    from engine.run import worker

    reads = []
    real = data.read_table
    monkeypatch.setattr(data, "read_table", lambda p, nrows=None: reads.append(p) or real(p, nrows))
    job = worker.make_job(SFT, sft(tiny_llama, write_jsonl(tmp_path / "c.jsonl", chat_rows(16))), tmp_path)
    assert len(job.train) + len(job.valid) == 16 and reads == [tmp_path / "c.jsonl"]
    task_files = sorted((ROOT / "engine" / "tasks").glob("*.py"))
    assert [f.name for f in task_files if "load_splits(" in f.read_text()] == []


# 12: a dead CLI leaves no row `running`; Ctrl-C on resume stops cleanly


@pytest.mark.slow
def test_kill_9_of_trainpad_run_is_reconciled_by_the_next_command(data_dir, tiny_llama, tmp_path):
    cfg = tmp_path / "sft.yaml"
    write_jsonl(tmp_path / "chat.jsonl", chat_rows(60))
    cfg.write_text(f"task: llm_sft\nparams:\n  base_model: {tiny_llama}\n  data_path: ./chat.jsonl\n  max_steps: 12\n")
    env = {**os.environ, "TRAINPAD_DATA_DIR": str(data_dir)}
    run = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(cfg)], cwd=ROOT, env=env)
    store = Store(data_dir / "trainpad.db") if wait_until(lambda: (data_dir / "trainpad.db").exists()) else None
    # a worker that has started (a row is `running` from its claim, a moment before the worker process exists:
    # killing the command in between rightly leaves the run `interrupted`)
    row = wait_until(lambda: next((r for r in store.runs_with_status("running") if r.get("pid")), None), timeout=60)
    run.kill()  # kill -9 of `trainpad run`: its worker goes on, orphaned
    run.wait()
    listing = cli("runs", data_dir=data_dir)
    assert row["id"] in listing.stdout
    wait_until(lambda: not procs.is_alive(row["pid"], row["pid_started"]), timeout=120)
    listing = cli("runs", "--json", data_dir=data_dir)
    (done,) = json.loads(listing.stdout)
    assert done["status"] == "succeeded", "the orphaned worker's outcome is recorded"


@pytest.mark.slow
def test_ctrl_c_on_trainpad_resume_stops_the_run_without_a_traceback(data_dir, tiny_llama, tmp_path):
    sup = Supervisor(data_dir, manage_all=False, grace_period=20)
    first = sup.submit(SFT, long_sft(tiny_llama, tmp_path, save_strategy="steps", save_steps=2))
    sup.tick()
    wait_until(lambda: sup.tick() or rf.last_checkpoint(sup.store.get_run(first)["run_dir"]), timeout=120)
    sup.stop(first)
    sup.wait(first, timeout=60, drive=True)
    env = {**os.environ, "TRAINPAD_DATA_DIR": str(data_dir)}
    resume = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "resume", first, "--grace", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = wait_until(lambda: next((r for r in sup.store.runs_with_status("running") if r.get("pid")), None))
    wait_until(lambda: (sup.store.get_run(child["id"]).get("step") or 0) > 0, timeout=120)
    resume.send_signal(signal.SIGINT)
    out, err = resume.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert resume.returncode == 143 and "stopping" in out
    assert sup.store.get_run(child["id"])["status"] == "stopped"
    assert not procs.is_alive(child["pid"], child["pid_started"])


# 13: many processes opening a new data folder at once


def _open_and_insert(args: tuple[str, int]) -> int:
    path, i = args
    store = Store(path)
    return store.insert_run({"id": f"r{i}", "name": "x", "task": "llm_sft", "params": "{}"})


def test_twenty_processes_create_the_store_and_insert_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(20) as pool:
        seqs = pool.map(_open_and_insert, [(str(tmp_path / "new" / "trainpad.db"), i) for i in range(20)])
    assert sorted(seqs) == list(range(1, 21))
    assert len(Store(tmp_path / "new" / "trainpad.db").list_runs()) == 20


# 14: stop is honoured before training starts


@pytest.mark.slow
def test_stop_while_preparing_data_ends_at_once(data_dir, tiny_llama, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", chat_rows(200) * 1500)  # 300k chats: seconds of reading
    sup = Supervisor(data_dir, manage_all=False, grace_period=120)
    run_id = sup.submit(SFT, sft(tiny_llama, big), check=False)
    sup.tick()
    time.sleep(2.5)  # imports and data reading: no training step yet
    assert sup.store.get_run(run_id)["step"] in (None, 0)
    t0 = time.time()
    sup.stop(run_id)
    row = sup.wait(run_id, timeout=60, drive=True)
    assert row["status"] == "stopped" and time.time() - t0 < 20, "not by SIGKILL after the 120 s grace"
    assert rf.read_json(Path(row["run_dir"]) / rf.OUTCOME)["status"] == "stopped"


# 15 + 16: broken events, a removed run folder


def test_an_event_line_that_is_not_an_object_is_skipped(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    worker = fake_worker()
    try:
        run_id = fake_run(sup, tmp_path, proc=worker)
        run_dir = Path(sup.store.get_run(run_id)["run_dir"])
        with open(run_dir / rf.EVENTS, "w") as f:
            f.write('[1, 2]\n"text"\n{"type": "log", "step": "x"}\n{"type": "log", "step": 4, "loss": 0.25}\n')
        sup.refresh()
        assert [(m["step"], m["value"]) for m in sup.store.metrics(run_id)] == [(4, 0.25)]
    finally:
        worker.kill()
        worker.wait()


def test_a_run_whose_folder_is_removed_fails_and_its_process_is_killed(data_dir, tmp_path):
    sup = Supervisor(data_dir, manage_all=False)
    worker = fake_worker()
    run_id = fake_run(sup, tmp_path, proc=worker)
    shutil.rmtree(sup.store.get_run(run_id)["run_dir"])
    sup.refresh()
    assert worker.wait(timeout=10) == -signal.SIGKILL
    row = sup.store.get_run(run_id)
    assert row["status"] == "failed" and "was removed while the run was running" in row["error"]


# 17: disk full


def test_no_space_left_is_said_plainly(data_dir, tmp_path, monkeypatch):
    message = error_message(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert message.startswith("No space left on the disk of") and "Free some space" in message
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100 * 2**20))
    sup = Supervisor(data_dir, manage_all=False)
    with pytest.raises(UserError, match="Only 100 MB free on the disk of the data folder"):
        sup.submit(SFT, sft(Path("m"), Path("d.jsonl")))
    assert sup.store.list_runs() == []


# 18: small things a user sees


def test_yaml_no_stays_the_documented_value(tmp_path, tiny_llama):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: llm_sft\nparams:\n  base_model: {tiny_llama}\n  eval_strategy: no\n  mixed_precision: no\n")
    _, params = load_config(cfg)
    assert params.eval_strategy == "no" and params.mixed_precision == "no"


def test_overrides_may_follow_flags_and_trainpad_app_runs_anywhere(tmp_path, tiny_llama):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: llm_sft\nparams:\n  base_model: {tiny_llama}\n  data_path: {tmp_path / 'c.jsonl'}\n")
    args = parse_args(["run", str(cfg), "--name", "X", "epochs=2", "--grace", "3", "batch_size=4"])
    assert args.overrides == ["epochs=2", "batch_size=4"] and args.name == "X" and args.grace == 3
    app = subprocess.run(
        [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main(['app', '--help']))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert app.returncode == 0 and "--port" in app.stdout, app.stderr


def test_a_model_loading_error_keeps_its_explanation(tmp_path):
    e = OSError("We couldn't connect to the Hub.\nCheck your connection, or set HF_HUB_OFFLINE=1 to use cached files.")
    message = error_message(e, tmp_path)
    assert "couldn't connect" in message and "HF_HUB_OFFLINE" in message


def test_check_reads_each_file_once_even_with_a_task_check(tmp_path, monkeypatch):
    from engine.data import splits
    from engine.data import tables as data

    (tmp_path / "t.csv").write_text("a,b,target\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    reads = []
    real = data._read_table
    monkeypatch.setattr(data, "_read_table", lambda p, nrows=None: reads.append(p) or real(p, nrows))
    tab = get_task("tabular")
    params = tab.params.model_validate({"data_path": str(tmp_path / "t.csv"), "target_columns": "target"})
    assert splits.check_data(tab, params) == []
    assert len(reads) == 1, reads


def test_resume_with_a_typed_token_keeps_it_in_memory_only(data_dir, tmp_path):
    from engine.run import supervisor as supervisor_module

    sup = Supervisor(data_dir, manage_all=False)
    run_id = fake_run(sup, tmp_path, status="stopped", owner=sup.me)
    (Path(sup.store.get_run(run_id)["run_dir"]) / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    new_id = sup.resume(run_id, secrets={"HF_TOKEN": "hf_typed_for_resume"})
    row = sup.store.get_run(new_id)
    assert row["needs_token"] == 1 and row["parent_id"] == run_id
    assert supervisor_module._SECRETS[new_id] == {"HF_TOKEN": "hf_typed_for_resume"}
    assert "hf_typed_for_resume" not in (Path(row["run_dir"]) / rf.CONFIG).read_text()
    assert "hf_typed_for_resume" not in json.dumps(sup.store.list_runs(), default=str)
