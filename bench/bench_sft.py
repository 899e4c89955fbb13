"""SFT benchmark: `trainpad run` on a tiny Llama, as a user would. Prints one JSON line.

Job (the issue's reference): tiny Llama (hidden 64, 2 layers, ~1k vocab), 2,000 short chat rows,
3 epochs, block 128, batch 8, full fine-tuning, fp32 on CPU.

    .venv/bin/python bench/bench_sft.py [--rows 2000] [--epochs 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker_peak(proc: subprocess.Popen) -> tuple[int, int, float]:
    """(peak RSS of the worker alone, peak of the whole tree, wall)."""
    parent = psutil.Process(proc.pid)
    worker_peak_rss = tree_peak = 0
    t0 = time.time()
    while proc.poll() is None:
        try:
            kids = parent.children(recursive=True)
            rss = {p.pid: p.memory_info().rss for p in [parent, *kids] if p.is_running()}
            tree_peak = max(tree_peak, sum(rss.values()))
            worker_peak_rss = max([worker_peak_rss] + [rss.get(k.pid, 0) for k in kids])
        except psutil.Error:
            pass
        time.sleep(0.05)
    return worker_peak_rss, tree_peak, time.time() - t0


def run_once(work: Path, model: Path, data: Path, args: argparse.Namespace) -> dict:
    cfg = work / "bench_sft.yaml"
    cfg.write_text(
        "task: llm_sft\nparams:\n"
        f"  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n  batch_size: 8\n"
        f"  max_length: 128\n  learning_rate: 0.001\n  use_lora: false\n  valid_fraction: 0.0\n  packing: {args.packing}\n"
        "  warmup_ratio: 0.0\n"
    )
    data_dir = Path(tempfile.mkdtemp(dir=work))
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--data-dir", str(data_dir), "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    worker_rss, tree_rss, wall = worker_peak(proc)
    out = proc.stdout.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"bench run failed:\n{out}")
    run_dir = next((data_dir / "runs").iterdir())
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    first = next(e for e in events if e["type"] == "first_step")
    tokens = metrics.get("num_input_tokens_seen") or max(e.get("num_input_tokens_seen", 0) for e in events)
    losses = [e["loss"] for e in events if e["type"] == "log" and "loss" in e]
    return {
        "wall_s": round(wall, 2),
        "first_step_s": round(first["time"] - t0, 2),
        "train_runtime_s": round(metrics["train_runtime"], 2),
        "real_tokens": tokens,
        "train_tokens_per_s": round(tokens / metrics["train_runtime"]),
        "peak_rss_worker_mb": round(worker_rss / 2**20),
        "peak_rss_all_mb": round(tree_rss / 2**20),
        "final_loss": round(losses[-1], 4),
        "train_loss": round(metrics["train_loss"], 4),
        "steps": metrics["global_step"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--packing", default="auto")
    args = ap.parse_args()
    from tests.tiny import build_tiny_llama, chat_rows, write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_llama(work / "model", hidden=64, layers=2, vocab_size=1000)
        data = write_jsonl(work / "chat.jsonl", chat_rows(args.rows, seed=3))
        runs = [run_once(work, model, data, args) for _ in range(args.repeat)]
    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        json.dumps(
            {
                "bench": "sft",
                "rows": args.rows,
                "epochs": args.epochs,
                "packing": args.packing,
                "repeat": args.repeat,
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
