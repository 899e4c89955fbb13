"""Several processes per run (accelerate launch, DDP over gloo on CPU) and the device-aware queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.params import validate_params
from engine.run import procs
from engine.run.supervisor import Supervisor
from engine.task import get_task
from tests.fakes import fake_run
from tests.tiny import tiny_bert_for, write_csv

TC = get_task("text_classification")
WORDS = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        out.append({"text": f"the {WORDS[label][i % 4]} day was {WORDS[label][(i + 1) % 4]}", "target": label})
    return out


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return tiny_bert_for(tmp_path_factory, [r["text"] for r in rows(64)], init_std=0.1)


def params(model: Path, data: Path, **kw):
    base = {"base_model": str(model), "data_path": str(data), "batch_size": 8, "learning_rate": 3e-3}
    return validate_params(TC.params, {**base, "valid_fraction": 0.0, "logging_steps": 1, **kw})


def first_loss(store, run_id: str) -> float:
    return next(m["value"] for m in store.metrics(run_id, ["loss"]))


@pytest.mark.slow
def test_two_processes_train_together_and_rank_0_reports(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "train.csv", rows(128))
    one = supervisor.submit(TC, params(tiny_bert, data, max_steps=6))
    two = supervisor.submit(TC, params(tiny_bert, data, max_steps=6, num_processes=2))
    rows_ = [supervisor.wait(r, timeout=300) for r in (one, two)]
    assert [r["status"] for r in rows_] == ["succeeded", "succeeded"], [r["error"] for r in rows_]
    events, _ = rf.read_events(rows_[1]["run_dir"])
    starts = [e for e in events if e["type"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2, "two ranks, one report"
    assert (Path(rows_[1]["run_dir"]) / "model" / "config.json").exists()
    l1, l2 = first_loss(supervisor.store, one), first_loss(supervisor.store, two)
    assert 0.6 < l2 / l1 < 1.6, f"the loss is not scaled by the number of processes ({l1:.3f} vs {l2:.3f})"


@pytest.mark.slow
def test_stop_ends_every_rank_with_one_checkpoint_and_resume_continues(supervisor, tiny_bert, tmp_path):
    data = write_csv(tmp_path / "train.csv", rows(128))
    run_id = supervisor.submit(TC, params(tiny_bert, data, max_steps=5000, num_processes=2))
    deadline = time.time() + 240
    while (supervisor.store.get_run(run_id).get("step") or 0) < 3 and time.time() < deadline:
        time.sleep(0.3)
    row = supervisor.store.get_run(run_id)
    supervisor.stop(run_id)
    row = supervisor.wait(run_id, timeout=120)
    assert row["status"] == "stopped", row["error"]
    assert procs.run_processes(row["run_dir"]) == [], "a rank is still alive"
    ckpt = rf.last_checkpoint(row["run_dir"])
    assert ckpt is not None and int(ckpt.name.split("-")[1]) >= 3
    new_id = supervisor.resume(run_id)
    deadline = time.time() + 240
    while (supervisor.store.get_run(new_id).get("step") or 0) <= int(
        ckpt.name.split("-")[1]
    ) and time.time() < deadline:
        time.sleep(0.3)
    supervisor.stop(new_id)
    assert supervisor.wait(new_id, timeout=120)["status"] == "stopped"


def test_the_queue_gives_each_run_its_own_gpus(data_dir, tmp_path, monkeypatch):
    sup = Supervisor(data_dir, concurrency=4, manage_all=True)
    sup.gpu_count = 4  # a machine with 4 GPUs
    started = {}
    monkeypatch.setattr(sup, "_launch", lambda row, devices="": started.setdefault(row["id"], devices))
    ids = [
        fake_run(sup, tmp_path, status="queued", owner=sup.me, params=f'{{"num_processes": {n}}}') for n in (2, 2, 1)
    ]
    sup._launch_queued()
    assert [started.get(i) for i in ids] == ["0,1", "2,3", None], "the third waits for a free GPU"
    named = fake_run(sup, tmp_path, status="running", owner=sup.me, devices="0")
    assert sup.devices_for({"gpus": "0"}, {"0"}) is None and sup.devices_for({"gpus": "1"}, {"0"}) == "1"
    assert sup.devices_for({"num_processes": 0}, set()) == "0,1,2,3", "0 = every GPU"
    assert named


@pytest.mark.slow
def test_stop_kills_ranks_that_cannot_handle_sigterm_whatever_their_process_group(data_dir, tiny_bert, tmp_path):
    """Both ranks SIGSTOPped (as ranks hung in a collective would be): Stop reaches them past the grace period,
    and the run is `stopped` only once no process of it is left."""
    import os
    import signal

    from engine.run.supervisor import Supervisor

    sup = Supervisor(data_dir, poll_interval=0.2, grace_period=3).start()
    try:
        data = write_csv(tmp_path / "train.csv", rows(128))
        run_id = sup.submit(TC, params(tiny_bert, data, max_steps=5000, num_processes=2))
        deadline = time.time() + 240
        while (sup.store.get_run(run_id).get("step") or 0) < 2 and time.time() < deadline:
            time.sleep(0.3)
        row = sup.store.get_run(run_id)
        ranks = [p for p in procs.run_processes(row["run_dir"]) if p.pid != row["pid"]]
        assert len(ranks) >= 2, "the launcher and two ranks"
        for p in ranks:
            p.send_signal(signal.SIGSTOP)
        sup.stop(run_id)
        row = sup.wait(run_id, timeout=60)
        assert row["status"] == "stopped", row["error"]
        assert procs.run_processes(row["run_dir"]) == [], "a rank is still alive"
        assert all(not p.is_running() or p.status() == "zombie" for p in ranks)
        assert os.getpgid(os.getpid())  # the test process itself is untouched
    finally:
        sup.shutdown(stop_runs=True)
