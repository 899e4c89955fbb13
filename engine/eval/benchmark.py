"""Standard benchmarks through lm-eval (lm-evaluation-harness), in the eval job's process: any of its tasks when
the Hub is reachable, and local-file tasks offline (an lm-eval task YAML, or a JSONL of prompt/completion rows
scored by exact match). Installed by the ``eval`` extra (``pip install -e .[eval]``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.errors import UserError

INSTALL = "pip install -e '.[eval]'  (lm-eval)"
LOCAL_TASK = "trainpad_local"


def missing() -> str:
    """Why benchmarks cannot run here ("" when they can)."""
    return "" if importlib.util.find_spec("lm_eval") else f"Benchmarks need lm-eval: {INSTALL}."


def task_names(benchmark: str, work_dir: Path) -> tuple[list[str], list[str]]:
    """(lm-eval task names, folders to include) for ``benchmark``: comma-separated names, task YAML files, or
    JSONL files of prompt/completion rows (each made into a task here)."""
    names, folders = [], []
    for n, part in enumerate(p.strip() for p in benchmark.split(",") if p.strip()):
        path = Path(part).expanduser()
        if path.suffix in (".yaml", ".yml"):
            if not path.is_file():
                raise UserError(f"Benchmark task file `{part}` not found.")
            names.append((yaml.safe_load(path.read_text()) or {}).get("task") or path.stem)
            folders.append(str(path.resolve().parent))
        elif path.suffix == ".jsonl":
            if not path.is_file():
                raise UserError(f"Benchmark data `{part}` not found.")
            names.append(_jsonl_task(path.resolve(), work_dir, f"{LOCAL_TASK}_{n}"))
            folders.append(str(work_dir))
        else:
            names.append(part)
    if not names:
        raise UserError("--benchmark names no task: give lm-eval task names, a task YAML, or a JSONL file.")
    return names, folders


def _jsonl_task(path: Path, work_dir: Path, name: str) -> str:
    """An lm-eval generate-until task over a JSONL of {prompt, completion}: greedy, exact match."""
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{completion}}",
        "generation_kwargs": {"until": ["\n", "<|im_end|>", "</s>"], "max_gen_toks": 64, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return name


def run_benchmark(spec: dict[str, Any], work_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's scores of the model on the benchmark's tasks, and its per-sample rows (wrong first)."""
    if why := missing():
        raise UserError(why)
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    names, folders = task_names(spec["benchmark"], work_dir)
    manager = TaskManager(include_path=folders or None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = int(options.get("batch_size") or 16)
    try:
        out = simple_evaluate(
            model="hf",
            model_args=_model_args(Path(spec["model_dir"]), device),
            tasks=names,
            task_manager=manager,
            batch_size=batch,
            device=device,
            log_samples=True,
            limit=spec.get("limit") or None,
        )
    except Exception as e:  # noqa: BLE001 - lm-eval raises many kinds; the message is what the user needs
        raise UserError(_fetch_problem(names, e)) from None
    return _report(out, names) | {"settings": {"lm_eval_tasks": names, "batch_size": batch, "device": device}}


def _model_args(model_dir: Path, device: str) -> str:
    dtype = "float32" if device == "cpu" else "auto"
    adapter = rf.read_json(model_dir / "adapter_config.json")
    if adapter:
        return f"pretrained={adapter['base_model_name_or_path']},peft={model_dir},dtype={dtype}"
    return f"pretrained={model_dir},dtype={dtype}"


def _fetch_problem(names: list[str], e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    offline = any(w in text for w in ("offline", "Connection", "resolve", "Hub", "couldn't be found", "not found"))
    if offline:
        return (
            f"The data of benchmark {', '.join(names)} cannot be fetched ({text[:300]}). Without the Hugging Face "
            "Hub, use a local-file task: --benchmark my_task.yaml, or a JSONL of prompt/completion rows."
        )
    return f"lm-eval could not run {', '.join(names)}: {text[:500]}"


def _report(out: dict[str, Any], names: list[str]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for task, scores in (out.get("results") or {}).items():
        for key, value in scores.items():
            if isinstance(value, (int, float)) and "," in key and "stderr" not in key:
                metrics[f"{task}/{key.split(',')[0]}"] = float(value)
    if not metrics:
        raise UserError(f"lm-eval returned no scores for {', '.join(names)}.")
    rows = []
    for task, samples in (out.get("samples") or {}).items():
        for s in samples:
            score = {k: s[k] for k in s if f"{task}/{k}" in metrics}
            rows.append({"task": task, "row": s.get("doc_id"), "input": str(s.get("arguments", ""))[:2000]})
            rows[-1] |= {"reference": str(s.get("target")), "prediction": str(s.get("filtered_resps"))[:2000], **score}
    first = next(iter(metrics))
    rows.sort(key=lambda r: r.get(first.split("/", 1)[1], 0))
    return {"metrics": metrics, "rows": rows, "key_metric": first, "greater_is_better": True}
