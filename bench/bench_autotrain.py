"""The same AutoTrain config through real AutoTrain Advanced 0.8.36 and through Trainpad, side by side.

    python bench/bench_autotrain.py --autotrain-venv /tmp/at-venv [--jobs sft-text dpo tabular ...] [--out DIR]

AutoTrain is never a dependency: it lives in its own venv (``shared/notes/autotrain-peer.md`` says how to install
it on these CPU machines). Each job writes one AutoTrain YAML; ``autotrain --config`` runs it (the venv's ``bin``
first on PATH, ``HF_HUB_OFFLINE=1``), and ``trainpad run`` runs the very same file. Both train a tiny Llama built
once with AutoTrain's transformers (both versions load it). Per job and tool: optimizer steps, final training loss
(the last logged step), wall seconds from the command to its exit, peak RSS of the whole process tree. AutoTrain
exits 0 even when training failed, so a run without a logged loss counts as failed. Tabular: breast cancer split
into train (364 rows) and valid (91) files, AutoTrain's layout, and 114 rows neither tool sees, on which both
models' log loss and accuracy are measured (AutoTrain's saved pipeline is scored by its own venv's Python).
One JSON line per job and tool.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import watch_peak_rss  # noqa: E402

LLM = {"block_size": 64, "epochs": 2, "batch_size": 4, "gradient_accumulation": 2, "lr": 1e-3, "logging_steps": 1}
LLM |= {"mixed_precision": "none", "warmup_ratio": 0.0, "padding": "right"}
JOBS: dict[str, dict[str, Any]] = {
    "sft-text": {"task": "llm-sft", "rows": "text", "columns": {"text_column": "text"}, "params": {}},
    "sft-chat": {
        "task": "llm-sft",
        "rows": "chat",
        "chat_template": "tokenizer",
        "columns": {"text_column": "messages"},
        "params": {},
    },
    "sft-lora": {
        "task": "llm-sft",
        "rows": "text",
        "columns": {"text_column": "text"},
        "params": {"peft": True, "quantization": None, "lora_r": 8, "lora_alpha": 16, "merge_adapter": False},
    },
    "generic": {"task": "llm-generic", "rows": "text", "columns": {"text_column": "text"}, "params": {}},
    "dpo": {
        "task": "llm-dpo",
        "rows": "pairs",
        "columns": {"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"},
        "params": {"block_size": 128, "max_prompt_length": 32, "max_completion_length": 64, "lr": 1e-4},
    },
    "orpo": {
        "task": "llm-orpo",
        "rows": "pairs",
        "columns": {"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"},
        "params": {"block_size": 128, "max_prompt_length": 32, "max_completion_length": 64, "lr": 1e-4},
    },
    "reward": {
        "task": "llm-reward",
        "rows": "chat_pairs",
        "chat_template": "tokenizer",
        "columns": {"text_column": "chosen", "rejected_text_column": "rejected"},
        "params": {"block_size": 128, "lr": 1e-4},
    },
    "tabular": {"task": "tabular", "rows": "breast_cancer"},
}


# ---- data and model ------------------------------------------------------------------------------------------


def build_model(folder: Path, venv: Path) -> Path:
    """The tiny Llama of the tests, saved by AutoTrain's transformers (4.48) so that both tools load it."""
    if not (folder / "config.json").exists():
        code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; from tests.tiny import "
        code += f"build_tiny_llama; build_tiny_llama(Path({str(folder)!r}))"
        subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True)
    return folder


def write_rows(kind: str, folder: Path) -> Any:
    """The job's data in AutoTrain's local layout: ``folder/train.jsonl`` (and train/valid CSVs for tabular)."""
    from tests.tiny import chat_rows, text_rows
    from tests.tiny_llm import preference_rows

    rows = {
        "text": lambda: text_rows(400),
        "chat": lambda: chat_rows(400),
        "pairs": lambda: preference_rows(120, "text"),
        "chat_pairs": lambda: preference_rows(120, "chat"),
    }[kind]()
    with open(folder / "train.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return None


def breast_cancer(folder: Path, seed: int = 42) -> Any:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame.insert(0, "id", range(len(frame)))
    seen, unseen = train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame["diagnosis"])
    train, valid = train_test_split(seen, test_size=0.2, random_state=seed, stratify=seen["diagnosis"])
    train.to_csv(folder / "train.csv", index=False)
    valid.to_csv(folder / "valid.csv", index=False)
    unseen.to_csv(folder.parent / "unseen.csv", index=False)
    return unseen


def config(name: str, job: dict[str, Any], model: Path, data: Path, time_limit: int) -> dict[str, Any]:
    """The AutoTrain YAML both tools run."""
    tabular = job["task"] == "tabular"
    doc: dict[str, Any] = {
        "task": job["task"],
        "base_model": "xgboost" if tabular else str(model),
        "project_name": name,
        "log": "none",
        "backend": "local",
        "data": {"path": str(data), "train_split": "train", "valid_split": "valid" if tabular else None},
    }
    if tabular:
        doc["data"]["column_mapping"] = {"id_column": "id", "target_columns": ["diagnosis"]}
        doc["params"] = {"task": "classification", "num_trials": 100, "time_limit": time_limit, "seed": 42}
    else:
        doc["data"].update(chat_template=job.get("chat_template"), column_mapping=job["columns"])
        doc["params"] = {**LLM, **job["params"]}
    return doc


# ---- the two tools -------------------------------------------------------------------------------------------


def run_autotrain(cfg_path: Path, work: Path, venv: Path) -> dict[str, Any]:
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    log_path = work / "autotrain.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / "autotrain"), "--config", str(cfg_path)], cwd=work, env=env, stdout=log, stderr=log
        )
        _, tree_rss, wall = watch_peak_rss(proc)
    text = log_path.read_text(errors="replace")
    if "tabular" in cfg_path.name:  # optuna trials, not training steps
        trials = len(re.findall(r"Trial \d+ finished", text))
        return {"wall_s": round(wall, 2), "peak_rss_mb": round(tree_rss / 2**20), "trials": trials}
    logged = [line for line in text.splitlines() if "on_log" in line]  # each log dict is printed twice
    losses = [float(x) for line in logged for x in re.findall(r"'loss': ([0-9.eE+-]+)", line)[:1]]
    summary = re.search(r"\{'train_runtime'[^}]*\}", text)
    out = {"wall_s": round(wall, 2), "peak_rss_mb": round(tree_rss / 2**20), "steps": len(losses)}
    out["final_loss"] = round(losses[-1], 4) if losses else None
    out["first_loss"] = round(losses[0], 4) if losses else None
    if summary:
        out["train_runtime_s"] = round(ast.literal_eval(summary.group(0))["train_runtime"], 2)
    if not losses:
        out["failed"] = text[-1500:]
    return out


def run_trainpad(cfg_path: Path, work: Path, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-m", "engine.cli", "--data-dir", str(data_dir), "run", str(cfg_path), *overrides]
    with open(work / "trainpad.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        _, tree_rss, wall = watch_peak_rss(proc)
    out: dict[str, Any] = {"wall_s": round(wall, 2), "peak_rss_mb": round(tree_rss / 2**20)}
    if proc.returncode != 0:
        return {**out, "failed": (work / "trainpad.log").read_text()[-1500:]}
    run_dir = next((data_dir / "runs").iterdir())
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "n_trials" in metrics:  # tabular
        return {**out, "trials": metrics["n_trials"], "run_dir": str(run_dir)}
    losses = [e for e in events if e.get("type") == "log" and "loss" in e and "learning_rate" in e]  # not the summary
    out["steps"] = metrics.get("global_step", len(losses))
    out["final_loss"] = round(losses[-1]["loss"], 4) if losses else None
    out["first_loss"] = round(losses[0]["loss"], 4) if losses else None
    if "train_runtime" in metrics:
        out["train_runtime_s"] = round(metrics["train_runtime"], 2)
    out["run_dir"] = str(run_dir)
    return out


# ---- tabular: both models on rows neither saw ----------------------------------------------------------------

SCORE_AUTOTRAIN = """
import sys, json, joblib, pandas as pd, numpy as np
from sklearn.metrics import log_loss, accuracy_score
model = joblib.load(sys.argv[1]); enc = list(joblib.load(sys.argv[2]).values())[0]
model = model[0] if isinstance(model, list) else model
rows = pd.read_csv(sys.argv[3]); y = enc.transform(rows["diagnosis"])
X = rows.drop(columns=["id", "diagnosis"])
p = model.predict_proba(X)
print(json.dumps({"unseen_logloss": log_loss(y, p, labels=[0, 1]), "unseen_accuracy": accuracy_score(y, p.argmax(1))}))
"""


def score_autotrain(work: Path, name: str, unseen_csv: Path, venv: Path) -> dict[str, float]:
    folder = work / name
    args = [str(folder / "model.joblib"), str(folder / "target_encoders.joblib"), str(unseen_csv)]
    done = subprocess.run([str(venv / "bin" / "python"), "-c", SCORE_AUTOTRAIN, *args], capture_output=True, text=True)
    if done.returncode != 0:
        return {"score_failed": done.stderr[-800:]}
    return {k: round(v, 4) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def score_trainpad(run_dir: Path, unseen) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, log_loss

    from engine.tabular.bundle import predict

    rows = predict(run_dir / "model", unseen.drop(columns="diagnosis").to_dict(orient="records"))
    proba = [[r["probabilities"][k] for k in sorted(r["probabilities"], key=str)] for r in rows]
    y = unseen["diagnosis"].tolist()
    pred = [r["prediction"] for r in rows]
    return {
        "unseen_logloss": round(log_loss(y, proba, labels=[0, 1]), 4),
        "unseen_accuracy": round(accuracy_score(y, pred), 4),
    }


def run_tool(tool: str, cfg_path: Path, work: Path, venv: Path) -> dict[str, Any]:
    if tool == "autotrain":
        return run_autotrain(cfg_path, work, venv)
    return run_trainpad(cfg_path, work, ("validation_rows=score",) if tool == "trainpad-heldout" else ())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--autotrain-venv", type=Path, default=Path(os.environ.get("AUTOTRAIN_VENV", "at-venv")))
    ap.add_argument("--jobs", nargs="*", default=list(JOBS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--time-limit", type=int, default=20, help="tabular: seconds for each tool's search")
    ap.add_argument("--seeds", type=int, nargs="*", default=[42], help="tabular: splits of breast cancer")
    ap.add_argument(
        "--tools",
        nargs="*",
        default=["autotrain", "trainpad"],
        help="autotrain, trainpad, and for tabular trainpad-heldout (validation rows only scored: the old protocol)",
    )
    args = ap.parse_args(argv)
    venv = args.autotrain_venv.resolve()
    if not (venv / "bin" / "autotrain").exists():
        raise SystemExit(f"No AutoTrain at {venv}: install it as shared/notes/autotrain-peer.md says.")
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-autotrain-"))
    model = build_model(root / "tiny-llama", venv)
    for name in args.jobs:
        for seed in args.seeds if name == "tabular" else [None]:
            job_name = name if seed is None else f"{name}-{seed}"
            work = root / job_name
            (work / "data").mkdir(parents=True, exist_ok=True)
            unseen = (
                breast_cancer(work / "data", seed)
                if seed is not None
                else write_rows(JOBS[name]["rows"], work / "data")
            )
            cfg = config(job_name, JOBS[name], model, work / "data", args.time_limit)
            cfg_path = work / f"{job_name}.yml"
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            for tool in args.tools:
                if tool == "trainpad-heldout" and unseen is None:
                    continue
                result = run_tool(tool, cfg_path, work, venv)
                if unseen is not None and tool == "autotrain":
                    result |= score_autotrain(work, job_name, work / "unseen.csv", venv)
                elif unseen is not None and "run_dir" in result:
                    result |= score_trainpad(Path(result["run_dir"]), unseen)
                result.pop("run_dir", None)
                print(json.dumps({"job": job_name, "tool": tool, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
