"""Evaluation throughput: Trainpad's LLM evaluation (batched greedy answers + scoring + answer perplexity) vs a plain
`transformers` text-generation pipeline loop (one prompt at a time, greedy, the same max_new_tokens, no scoring) on
the same prompts and model, in one process after the model is loaded. Untrained Llamas built in-process (~1M and
~20M parameters): time does not depend on training. One JSON line per model. Run: ``python bench/bench_eval.py``."""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.tiny import NAMES, build_tiny_llama  # noqa: E402

N_PROMPTS = 64
NEW_TOKENS = 16


def rows(n: int) -> list[dict[str, str]]:
    rng = random.Random(0)
    return [{"prompt": f"{rng.choice(NAMES)} likes the colour", "completion": " red"} for _ in range(n)]


def pipeline_loop(model_dir: Path, prompts: list[str]) -> float:
    import torch
    from transformers import pipeline

    pipe = pipeline("text-generation", model=str(model_dir), device=-1, dtype=torch.float32)
    pipe(prompts[0], max_new_tokens=2, do_sample=False)  # warm up
    started = time.perf_counter()
    for p in prompts:
        pipe(p, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, return_full_text=False)
    return time.perf_counter() - started


def trainpad_eval(model_dir: Path, data: list[dict[str, str]], batch: int) -> tuple[float, dict]:
    import pandas as pd

    from engine.llm.evaluate import evaluate_generation
    from engine.llm.model import load_for_inference

    load_for_inference(model_dir)  # loaded once, as in the eval job, before the clock starts
    df = pd.DataFrame(data)
    evaluate_generation(model_dir, df.head(4), {"batch_size": 4, "max_new_tokens": 2})  # warm up
    started = time.perf_counter()
    out = evaluate_generation(model_dir, df, {"batch_size": batch, "max_new_tokens": NEW_TOKENS})
    return time.perf_counter() - started, out["metrics"]


def main() -> None:
    import torch

    torch.manual_seed(0)
    data = rows(N_PROMPTS)
    with tempfile.TemporaryDirectory() as tmp:
        for name, hidden, layers in (("llama-1M", 64, 2), ("llama-20M", 512, 6)):
            model_dir = build_tiny_llama(Path(tmp) / name, hidden=hidden, layers=layers, chat_template=None)
            plain = pipeline_loop(model_dir, [r["prompt"] for r in data])
            for batch in (1, 16):
                ours, metrics = trainpad_eval(model_dir, data, batch)
                print(
                    json.dumps(
                        {
                            "bench": "eval",
                            "model": name,
                            "prompts": N_PROMPTS,
                            "max_new_tokens": NEW_TOKENS,
                            "batch_size": batch,
                            "pipeline_loop_s": round(plain, 2),
                            "trainpad_eval_s": round(ours, 2),
                            "ratio": round(ours / plain, 3),
                            "examples_per_s": round(N_PROMPTS / ours, 1),
                            "threads": torch.get_num_threads(),
                            "perplexity": round(metrics["perplexity"], 1),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
