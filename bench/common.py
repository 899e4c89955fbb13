"""What every training benchmark shares: run `trainpad run CONFIG` as a user would and measure it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def watch_peak_rss(proc: subprocess.Popen) -> tuple[int, int, float]:
    """Poll until ``proc`` exits: (peak RSS of the worker alone, peak of the whole process tree, wall seconds)."""
    parent = psutil.Process(proc.pid)
    worker_peak = tree_peak = 0
    t0 = time.time()
    while proc.poll() is None:
        try:
            kids = parent.children(recursive=True)
            rss = {p.pid: p.memory_info().rss for p in [parent, *kids] if p.is_running()}
            tree_peak = max(tree_peak, sum(rss.values()))
            worker_peak = max([worker_peak] + [rss.get(k.pid, 0) for k in kids])
        except psutil.Error:
            pass
        time.sleep(0.05)
    return worker_peak, tree_peak, time.time() - t0


def trainpad_run(config_text: str, work: Path, name: str = "bench") -> dict[str, Any]:
    """Write the config, run it through `trainpad run` in a fresh data folder; measurements plus the run's files.

    Returns wall_s, first_step_s, peak_rss_worker_mb, peak_rss_all_mb, and ``events`` / ``metrics`` of the run.
    """
    cfg = work / f"{name}.yaml"
    cfg.write_text(config_text)
    data_dir = Path(tempfile.mkdtemp(dir=work))
    t0 = time.time()
    cmd = [sys.executable, "-m", "engine.cli", "--data-dir", str(data_dir), "run", str(cfg)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    worker_rss, tree_rss, wall = watch_peak_rss(proc)
    out = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"bench run {name} failed:\n{out[-3000:]}")
    run_dir = next((data_dir / "runs").iterdir())
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    first = next(e for e in events if e["type"] == "first_step")
    return {
        "wall_s": round(wall, 2),
        "first_step_s": round(first["time"] - t0, 2),
        "train_runtime_s": round(metrics["train_runtime"], 2),
        "peak_rss_worker_mb": round(worker_rss / 2**20),
        "peak_rss_all_mb": round(tree_rss / 2**20),
        "steps": metrics["global_step"],
        "events": events,
        "metrics": metrics,
    }


def measured(run: dict[str, Any]) -> dict[str, Any]:
    """The measurements of a run, without its events and metrics."""
    return {k: v for k, v in run.items() if k not in ("events", "metrics")}
