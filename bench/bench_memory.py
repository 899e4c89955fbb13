"""Memory estimate vs measured peak on CPU: prints one JSON line per setting.

One child process builds the models in-process (tiny and "small" Llama and BERT, as ``tests/tiny.py`` does),
then for each setting runs the task's real ``train(job)`` (trl/transformers, the worker's allocator settings)
for a few steps and measures the peak RSS above the process's own baseline: RSS after the imports, the data and
``malloc_trim`` (the kernel's high-water mark is reset there through ``/proc/self/clear_refs``). The estimate's
model-dependent part (``Estimate.model_bytes``: all but the fixed framework overhead) is compared with that.

    .venv/bin/python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name, model, task, parameter overrides
SETTINGS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("tiny llama, full, b8 x 128", "tiny-llama", "llm_sft", {"batch_size": 8, "max_length": 128}),
    ("small llama, full, b8 x 256", "small-llama", "llm_sft", {"batch_size": 8, "max_length": 256}),
    ("small llama, full, b4 x 256", "small-llama", "llm_sft", {"batch_size": 4, "max_length": 256}),
    ("small llama, full, b8 x 128", "small-llama", "llm_sft", {"batch_size": 8, "max_length": 128}),
    (
        "small llama, LoRA r16, b8 x 256",
        "small-llama",
        "llm_sft",
        {"batch_size": 8, "max_length": 256, "use_lora": True},
    ),
    (
        "small llama, LoRA r16, b4 x 256",
        "small-llama",
        "llm_sft",
        {"batch_size": 4, "max_length": 256, "use_lora": True},
    ),
    (
        "small llama, full, checkpointing, b8 x 256",
        "small-llama",
        "llm_sft",
        {"batch_size": 8, "max_length": 256, "gradient_checkpointing": True},
    ),
    (
        "small llama, full, checkpointing, b4 x 256",
        "small-llama",
        "llm_sft",
        {"batch_size": 4, "max_length": 256, "gradient_checkpointing": True},
    ),
    ("wide llama, full, b4 x 256", "wide-llama", "llm_sft", {"batch_size": 4, "max_length": 256}),
    ("wide llama, LoRA r16, b4 x 256", "wide-llama", "llm_sft", {"batch_size": 4, "max_length": 256, "use_lora": True}),
    ("tiny bert classifier, b16 x 128", "tiny-bert", "text_classification", {"batch_size": 16, "max_length": 128}),
    ("small bert classifier, b16 x 128", "small-bert", "text_classification", {"batch_size": 16, "max_length": 128}),
    ("small bert classifier, b8 x 128", "small-bert", "text_classification", {"batch_size": 8, "max_length": 128}),
]
# What tests/test_memory.py runs (1,024 tokens a step, to stay quick): tiny + small, full/LoRA/checkpointing, BERT.
QUICK = [0, 2, 5, 7, 12]
MODELS = {  # name: (builder, hidden, layers, vocab)
    "tiny-llama": ("llama", 64, 2, 0),
    "small-llama": ("llama", 256, 4, 8192),
    "wide-llama": ("llama", 512, 4, 16384),
    "tiny-bert": ("bert", 32, 2, 0),
    "small-bert": ("bert", 256, 4, 8192),
}
WORDS = "the a cat dog sat ran on under mat rug red blue big small and then it was".split()


# ---- in the child process -----------------------------------------------------------------


def build_model(kind: str, hidden: int, layers: int, vocab: int, out: Path) -> Path:
    """A Llama or BERT saved to ``out``; vocab 0 = the tokenizer's size, else the embedding is that wide."""
    import torch
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from tests.tiny import build_tokenizer, build_wordpiece_tokenizer, causal_lm_config

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if kind == "llama":
        tok = build_tokenizer(out)
        cfg = causal_lm_config(tok, hidden, layers) | {"vocab_size": vocab or len(tok), "max_position_embeddings": 1024}
        LlamaForCausalLM(LlamaConfig(**cfg, tie_word_embeddings=vocab == 0)).save_pretrained(str(out))
    else:
        tok = build_wordpiece_tokenizer(out, [" ".join(WORDS)], vocab_size=200)
        cfg = BertConfig(
            vocab_size=vocab or len(tok),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            intermediate_size=hidden * 4,
            pad_token_id=tok.pad_token_id,
        )
        BertModel(cfg).save_pretrained(str(out))
    return out


def write_data(work: Path) -> dict[str, Path]:
    """SFT text (enough for full 256-token blocks) and classification rows longer than 128 tokens."""
    import random

    from tests.tiny import text_rows, write_jsonl

    rng = random.Random(0)
    long_rows = [{"text": " ".join(rng.choices(WORDS, k=160)), "target": rng.choice("xyz")} for _ in range(96)]
    return {
        "llm_sft": write_jsonl(work / "sft.jsonl", text_rows(1500)),
        "text_classification": write_jsonl(work / "cls.jsonl", long_rows),
    }


def _rss() -> int:
    return _status_kb("VmRSS") * 1024


def _peak() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _settle() -> int:
    """Free what can be freed, return the heap to the OS, reset the high-water mark; the RSS now."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    return _rss()


def measure_one(task_name: str, overrides: dict[str, Any], model: Path, data: Path, work: Path) -> dict[str, Any]:
    """Train a few steps of the task on ``model``; the estimate and the peak above the settled baseline."""
    from engine.params import validate_params
    from engine.preflight import memory
    from engine.run import worker
    from engine.task import get_task

    task = get_task(task_name)
    values = {"base_model": str(model), "data_path": str(data), "max_steps": 2, "valid_fraction": 0.0}
    values |= {"save_strategy": "no", "eval_strategy": "no", "logging_steps": 1, "seed": 0}
    if task_name == "llm_sft":
        values |= {"packing": "wrapped", "learning_rate": 1e-3, "use_lora": False}
    params = validate_params(task.params, values | overrides)
    run_dir = Path(tempfile.mkdtemp(dir=work))
    job = worker.make_job(task, params, run_dir)
    baseline = _settle()
    t0 = time.time()
    task.train(job)
    peak, seconds = _peak(), time.time() - t0
    est = memory.estimate(task, params, [])
    measured = peak - baseline
    return {
        "estimate_mb": round(est.model_bytes / 2**20, 1),
        "measured_mb": round(measured / 2**20, 1),
        "ratio": round(est.model_bytes / measured, 3),
        "baseline_mb": round(baseline / 2**20),
        "peak_mb": round(peak / 2**20),
        "parts_mb": {k: round(v / 2**20, 1) for k, v in est.parts().items()},
        "train_s": round(seconds, 1),
        "params": est.total_params,
        "trainable": est.trainable,
    }


def child(indices: list[int], work: Path) -> None:
    """Build the models, warm up once (lazy imports, thread pools), then measure each setting; JSON lines out."""
    import torch  # noqa: F401  (imported before the baseline: it is part of it)
    import transformers  # noqa: F401

    data = write_data(work)
    needed = {SETTINGS[i][1] for i in indices} | {"tiny-llama", "tiny-bert"}
    models = {name: build_model(*MODELS[name], out=work / name) for name in sorted(needed)}
    for name, task in (("tiny-llama", "llm_sft"), ("tiny-bert", "text_classification")):
        measure_one(task, {"max_steps": 1}, models[name], data[task], work)  # warm-up, not reported
    for i in indices:
        name, model, task, overrides = SETTINGS[i]
        row = {"setting": name, **measure_one(task, overrides, models[model], data[task], work)}
        print("RESULT " + json.dumps(row), flush=True)


# ---- in the calling process ---------------------------------------------------------------


def measure(indices: list[int], timeout: float = 600) -> list[dict[str, Any]]:
    """Run the settings in one fresh child process with the worker's environment; one dict per setting."""
    from engine.run.procs import worker_env

    env = worker_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", work, *map(str, indices)]
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"memory bench child failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the settings the test runs")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child([int(i) for i in args.child[1:]], Path(args.child[0]))
        return
    for row in measure(QUICK if args.quick else list(range(len(SETTINGS)))):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
