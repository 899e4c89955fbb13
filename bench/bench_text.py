"""Encoder text-task benchmark: `trainpad run` on a tiny BERT, as a user would. One JSON line per task.

Reference job (the issue's): tiny BERT (``tests.tiny.build_tiny_bert``: hidden 32, 2 layers, WordPiece
vocab trained on the data), 2,000 rows of keyword-driven 3-class text with 5% of the labels redrawn at
random (~3.3% wrong, so ~0.967 is the best reachable validation accuracy), 5 epochs, batch 8, lr 3e-3,
10% held out for validation, product defaults otherwise (fp32 on CPU, best model kept). AutoTrain
Advanced on that job (from the issue): ~33 s wall, ~1.8 GB peak, ~0.957 accuracy.
Regression and token classification run the same size of job on their own synthetic data.

    .venv/bin/python bench/bench_text.py [--rows 2000] [--epochs 5] [--repeat 1] [--tasks text_classification,...]
        [--set cpu_threads=2 --set optimizer=adamw_torch ...]
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
from tests.test_text_classification import topic_rows  # noqa: E402
from tests.test_text_regression import review_rows  # noqa: E402
from tests.test_token_classification import ner_rows  # noqa: E402

TASKS = {
    # task: (rows(n) -> list of dicts, texts of a row for the tokenizer, key metrics to report)
    "text_classification": (
        lambda n: topic_rows(n, seed=1, noise=0.05),
        lambda r: r["text"],
        ["eval_accuracy", "eval_f1_macro"],
    ),
    "text_regression": (lambda n: review_rows(n, seed=1), lambda r: r["text"], ["eval_r2", "eval_rmse"]),
    "token_classification": (
        lambda n: ner_rows(n, seed=1),
        lambda r: " ".join(r["tokens"]),
        ["eval_f1", "eval_accuracy"],
    ),
}


def run_once(work: Path, task: str, model: Path, data: Path, args: argparse.Namespace) -> dict:
    run = trainpad_run(
        f"task: {task}\nparams:\n  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n"
        f"  batch_size: 8\n  learning_rate: {args.lr}\n  max_length: 128\n  valid_fraction: 0.1\n"
        + "".join(f"  {kv.split('=', 1)[0]}: {kv.split('=', 1)[1]}\n" for kv in args.set),
        work,
        task,
    )
    return {**measured(run), **{k: round(run["metrics"][k], 4) for k in TASKS[task][2]}}


def bench_task(work: Path, task: str, args: argparse.Namespace) -> dict:
    from tests.tiny import build_tiny_bert, write_jsonl

    make_rows, text_of, _ = TASKS[task]
    rows = make_rows(args.rows)
    model = build_tiny_bert(work / f"{task}-model", [text_of(r) for r in rows])
    data = write_jsonl(work / f"{task}.jsonl", rows)
    runs = [run_once(work, task, model, data, args) for _ in range(args.repeat)]
    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"bench": task, "rows": args.rows, "epochs": args.epochs, "batch_size": 8, "lr": args.lr,
            "repeat": args.repeat, "set": args.set, **result}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--set", action="append", default=[], help="extra param, e.g. --set cpu_threads=2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            print(json.dumps(bench_task(Path(tmp), task, args)), flush=True)


if __name__ == "__main__":
    main()
