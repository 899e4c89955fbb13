"""GRPO benchmark: Trainpad's llm_grpo task against trl's GRPOTrainer used directly, on the same tiny job. Prints
one JSON line: steps/s of each (from the trainers' own train_runtime), their ratio, and each one's peak RSS.

Job: tiny Llama (hidden 64, 2 layers), 64 chat prompts, the length reward (target 8 tokens), 4 generations per
prompt, batch 8, 16-token completions, LoRA, fp32 on CPU. Each side runs in its own fresh process.

    .venv/bin/python bench/bench_grpo.py [--steps 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS = {"num_generations": 4, "max_completion_length": 16, "batch_size": 8, "target_length": 8}


def prompts() -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"what is {i % 10} plus {i // 10}?"}]} for i in range(64)]


def trainpad_side(model: str, work: Path, steps: int) -> float:
    import pandas as pd

    from engine.params import validate_params
    from engine.task import Job, get_task

    task = get_task("llm_grpo")
    p = validate_params(
        task.params,
        {"base_model": model, "data_path": "in-memory", "max_steps": steps, "valid_fraction": 0, "logging_steps": 1,
         "reward_functions": ["length"], "learning_rate": 1e-3, **SETTINGS},
    )  # fmt: skip
    return task.train(Job(task, p, work, pd.DataFrame(prompts()), None))["train_steps_per_second"]


def trl_side(model: str, work: Path, steps: int) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from engine.llm.rewards import length_reward

    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    args = GRPOConfig(
        output_dir=str(work / "out"), max_steps=steps, per_device_train_batch_size=SETTINGS["batch_size"],
        num_generations=SETTINGS["num_generations"], max_completion_length=SETTINGS["max_completion_length"],
        learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
        gradient_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model),
        reward_funcs=[length_reward(SETTINGS["target_length"])],
        args=args,
        train_dataset=Dataset.from_list(prompts()),
        processing_class=tok,
        peft_config=lora,
    )
    return trainer.train().metrics["train_steps_per_second"]


def child(side: str, model: str, steps: int) -> None:
    import torch

    torch.set_num_threads(1)  # both sides: a tiny model trains fastest on one thread (Trainpad's auto choice)
    with tempfile.TemporaryDirectory() as tmp:
        speed = (trainpad_side if side == "trainpad" else trl_side)(model, Path(tmp), steps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"steps_per_s": speed, "peak_rss_mb": peak_mb}), flush=True)


def measure(side: str, model: Path, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, "--model", str(model), "--steps", str(steps)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", choices=["trainpad", "trl"])
    ap.add_argument("--model", default="")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, args.steps)
        return
    from tests.tiny import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny-llama")
        runs: dict[str, list[dict]] = {"trl": [], "trainpad": []}
        for _ in range(args.repeat):  # alternated, so that a change in the machine's load hits both sides
            for side in runs:
                runs[side].append(measure(side, model, args.steps))
    speed = {side: statistics.median(r["steps_per_s"] for r in rs) for side, rs in runs.items()}
    print(json.dumps({
        "bench": "grpo", "steps": args.steps, "repeat": args.repeat, **SETTINGS,
        "trl_steps_per_s": round(speed["trl"], 3), "trainpad_steps_per_s": round(speed["trainpad"], 3),
        "time_ratio_trainpad_over_trl": round(speed["trl"] / speed["trainpad"], 3),
        "trl_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["trl"])),
        "trainpad_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["trainpad"])),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
