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
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import measured, trainpad_run  # noqa: E402

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
    run = trainpad_run(config(task, model, data, args), work, f"bench_{task}")
    logs = [e for e in run["events"] if e["type"] == "log" and e.get("tokens_per_second")]
    return {
        **measured(run),
        "tokens_per_s": round(logs[-1]["tokens_per_second"]) if logs else None,
        "train_loss": round(run["metrics"]["train_loss"], 4),
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
