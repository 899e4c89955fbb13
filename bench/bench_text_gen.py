"""Text benchmark, part B: seq2seq (tiny T5), extractive QA (tiny BERT) and sentence transformers (tiny BERT)
through `trainpad run`, fp32 on CPU, on the learnable synthetic data of the tests. One JSON line per task:
wall time, time to first step, peak RSS (worker and whole process tree), the key metric and the steps.

    .venv/bin/python bench/bench_text_gen.py [--tasks seq2seq,extractive_qa,sentence_transformers]
                                             [--rows 2000] [--epochs 3] [--st-mode pair_score] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import measured, trainpad_run  # noqa: E402

TASKS = ["seq2seq", "extractive_qa", "sentence_transformers"]
KEY = {"seq2seq": "eval_rougeL", "extractive_qa": "eval_f1", "sentence_transformers": "eval_score"}
PARAMS = {
    "seq2seq": "  learning_rate: 0.006\n  max_length: 16\n  max_target_length: 8\n",
    "extractive_qa": "  learning_rate: 0.003\n  max_length: 32\n  doc_stride: 8\n  allow_unanswerable: true\n",
    "sentence_transformers": "  learning_rate: 0.003\n  max_length: 16\n",
}


def prepare(work: Path, task: str, rows: int, st_mode: str) -> tuple[Path, Path]:
    """The task's tiny model and a CSV of ``rows`` synthetic rows."""
    from tests.test_extractive_qa import qa_rows
    from tests.test_sentence_transformers import st_rows
    from tests.test_seq2seq import colour_rows
    from tests.tiny import build_tiny_bert, build_tiny_t5

    data = {
        "seq2seq": lambda: colour_rows(rows, seed=3),
        "extractive_qa": lambda: qa_rows(rows, seed=3),
        "sentence_transformers": lambda: st_rows(st_mode, rows, seed=3),
    }[task]()
    path = work / f"{task}.csv"
    pd.DataFrame(data).to_csv(path, index=False)
    texts = [str(v) for r in data[:300] for v in r.values()]
    build = build_tiny_t5 if task == "seq2seq" else build_tiny_bert
    return build(work / f"model-{task}", texts), path


def run_once(work: Path, task: str, model: Path, data: Path, args: argparse.Namespace) -> dict:
    mode = f"  mode: {args.st_mode}\n" if task == "sentence_transformers" else ""
    run = trainpad_run(
        f"task: {task}\nparams:\n  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n"
        f"  batch_size: 16\n  valid_fraction: 0.1\n{PARAMS[task]}{mode}",
        work,
        f"bench_{task}",
    )
    return {**measured(run), KEY[task]: round(run["metrics"][KEY[task]], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--st-mode", default="pair_score", choices=["pair", "pair_class", "pair_score", "triplet", "qa"])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for task in args.tasks.split(","):
            model, data = prepare(work, task, args.rows, args.st_mode)
            runs = [run_once(work, task, model, data, args) for _ in range(args.repeat)]
            result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            extra = {"mode": args.st_mode} if task == "sentence_transformers" else {}
            line = {"bench": task, "rows": args.rows, "epochs": args.epochs, "repeat": args.repeat, **extra, **result}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
