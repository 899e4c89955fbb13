"""The sweep machinery's cost per trial: a random sweep of N trials over the learning rate of a tiny BERT text
classifier (one at a time) against the same N runs started by hand through the same queue, in fresh data folders.

Prints one JSON line per mode (wall time, per-trial wait from queued to started, gap between one trial's end and the
next one's start, the sweep's own tick time) and one with the sweep's trials table (best first).

    python bench/bench_sweep.py [--trials 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.params import validate_params  # noqa: E402
from engine.run import sweep as sw  # noqa: E402
from engine.run.supervisor import Supervisor  # noqa: E402
from engine.task import get_task  # noqa: E402
from tests.test_text_classification import topic_rows  # noqa: E402

TC = get_task("text_classification")


def timings(rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["started_at"])
    waits = [r["started_at"] - r["created_at"] for r in rows]
    gaps = [b["started_at"] - a["ended_at"] for a, b in zip(rows, rows[1:], strict=False)]
    return {
        "wall_s": round(rows[-1]["ended_at"] - rows[0]["created_at"], 2),
        "train_s_median": round(statistics.median(r["ended_at"] - r["started_at"] for r in rows), 2),
        "queued_to_started_s_median": round(statistics.median(waits), 3),
        "end_to_next_start_s_median": round(statistics.median(gaps), 3) if gaps else None,
    }


def drive(sup: Supervisor, done) -> float:
    """Tick until ``done()``; returns the seconds spent in the sweeps' part of the ticks."""
    spent = 0.0
    while not done():
        sup.refresh()
        t = time.perf_counter()
        sup.sweeps.tick()
        spent += time.perf_counter() - t
        sup._launch_queued()
        time.sleep(0.2)
    return spent


def main() -> None:
    from tests.tiny import build_tiny_bert, write_csv

    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    model = build_tiny_bert(work / "bert", [r["text"] for r in topic_rows(400, seed=99)], init_std=0.1)
    data = write_csv(work / "train.csv", topic_rows(300, seed=1))
    base = {"base_model": str(model), "data_path": str(data), "epochs": 2, "batch_size": 16, "valid_fraction": 0.2}
    params = validate_params(TC.params, base)

    sup = Supervisor(work / "sweep", poll_interval=0.2)
    request = sw.SweepRequest([sw.parse_param("learning_rate=log:1e-4:1e-2")], "random", args.trials, 1)
    sweep_id = sup.submit_sweep(TC, params, request)
    tick_s = drive(sup, lambda: sup.store.get_sweep(sweep_id)["status"] != "running")
    runs = sup.store.sweep_runs(sweep_id)
    print(json.dumps({"mode": "sweep", "trials": len(runs), **timings(runs), "sweep_ticks_s": round(tick_s, 3)}))
    rates = [r["trial"]["learning_rate"] for r in runs]

    hand = Supervisor(work / "hand", poll_interval=0.2)
    ids = []
    for lr in rates:  # one after the other, as a user would: start the next when the last has ended
        ids.append(hand.submit(TC, validate_params(TC.params, {**base, "learning_rate": lr})))
        hand.wait(ids[-1], timeout=600, drive=True)
    print(json.dumps({"mode": "by hand", "trials": len(ids), **timings([hand.store.get_run(i) for i in ids])}))

    result = sw.summary(sup.store, sweep_id)
    table = sorted(result["trials"], key=lambda t: -(t["metric"] or 0))
    rows = [
        {"run": t["run_id"], "lr": round(t["params"]["learning_rate"], 6), result["key_metric"]: t["metric"]}
        for t in table
    ]
    print(json.dumps({"table": rows, "best_run_id": result["best_run_id"]}))


if __name__ == "__main__":
    main()
