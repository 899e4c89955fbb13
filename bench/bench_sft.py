"""SFT benchmark: `trainpad run` on a tiny Llama, as a user would. Prints one JSON line.

Job (the issue's reference): tiny Llama (hidden 64, 2 layers, ~1k vocab), 2,000 short chat rows,
3 epochs, block 128, batch 8, full fine-tuning, fp32 on CPU.

    .venv/bin/python bench/bench_sft.py [--rows 2000] [--epochs 3] [--repeat 1]
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


def run_once(work: Path, model: Path, data: Path, args: argparse.Namespace) -> dict:
    run = trainpad_run(
        "task: llm_sft\nparams:\n"
        f"  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n  batch_size: 8\n"
        f"  max_length: 128\n  learning_rate: 0.001\n  use_lora: false\n  valid_fraction: 0.0\n  packing: {args.packing}\n"
        "  warmup_ratio: 0.0\n",
        work,
        "bench_sft",
    )
    events, metrics = run["events"], run["metrics"]
    tokens = metrics.get("num_input_tokens_seen") or max(e.get("num_input_tokens_seen", 0) for e in events)
    losses = [e["loss"] for e in events if e["type"] == "log" and "loss" in e]
    return {
        **measured(run),
        "real_tokens": tokens,
        "train_tokens_per_s": round(tokens / metrics["train_runtime"]),
        "final_loss": round(losses[-1], 4),
        "train_loss": round(metrics["train_loss"], 4),
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
