"""LLM family benchmark: DPO, ORPO, reward modelling and continued pretraining through `trainpad run`,
on a tiny Llama (hidden 64, 2 layers, ~1k vocab), fp32 on CPU. Prints one JSON line per task.

Preference tasks: ``--pairs`` easy synthetic pairs (chats, prompt implied by the shared user turn);
pretraining: ``--texts`` short documents in 128-token blocks. Batch 8, ``--epochs`` epochs, no validation.

    .venv/bin/python bench/bench_llm.py [--tasks llm_dpo,llm_orpo,llm_reward,llm_pretrain] [--lora] [--repeat 1]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_sft import worker_peak  # noqa: E402

TASKS = ["llm_dpo", "llm_orpo", "llm_reward", "llm_pretrain"]


def config(task: str, model: Path, data: Path, args: argparse.Namespace) -> str:
    lr = 0.005 if args.lora else 0.001
    extra = "  block_size: 128\n" if task == "llm_pretrain" else ""
    return (
        f"task: {task}\nparams:\n  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n"
        f"  batch_size: 8\n  max_length: 128\n  learning_rate: {lr}\n  use_lora: {str(args.lora).lower()}\n"
        f"  valid_fraction: 0.0\n  logging_steps: 5\n{extra}"
    )


def run_once(work: Path, task: str, model: Path, data: Path, args: argparse.Namespace) -> dict:
    cfg = work / f"bench_{task}.yaml"
    cfg.write_text(config(task, model, data, args))
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
        raise SystemExit(f"bench run of {task} failed:\n{out[-3000:]}")
    run_dir = next((data_dir / "runs").iterdir())
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    first = next(e for e in events if e["type"] == "first_step")
    logs = [e for e in events if e["type"] == "log" and e.get("tokens_per_second")]
    return {
        "wall_s": round(wall, 2),
        "first_step_s": round(first["time"] - t0, 2),
        "train_runtime_s": round(metrics["train_runtime"], 2),
        "tokens_per_s": round(logs[-1]["tokens_per_second"]) if logs else None,
        "peak_rss_worker_mb": round(worker_rss / 2**20),
        "peak_rss_all_mb": round(tree_rss / 2**20),
        "train_loss": round(metrics["train_loss"], 4),
        "steps": metrics["global_step"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    from tests.tiny import build_tiny_llama, text_rows, write_jsonl
    from tests.tiny_llm import preference_rows

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_llama(work / "model", hidden=64, layers=2, vocab_size=1000)
        pairs = write_jsonl(work / "pairs.jsonl", preference_rows(args.pairs, "chat", seed=3))
        texts = write_jsonl(work / "texts.jsonl", text_rows(args.texts, seed=3))
        for task in args.tasks.split(","):
            data = texts if task == "llm_pretrain" else pairs
            runs = [run_once(work, task, model, data, args) for _ in range(args.repeat)]
            result = {k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None for k in runs[0]}
            rows = args.texts if task == "llm_pretrain" else args.pairs
            print(
                json.dumps(
                    {
                        "bench": task,
                        "rows": rows,
                        "epochs": args.epochs,
                        "lora": args.lora,
                        "repeat": args.repeat,
                        **result,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
