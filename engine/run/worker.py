"""The worker: ``python -m engine.run.worker RUN_DIR`` runs one run and reports only through files.

Exit codes: 0 succeeded, 1 failed (error.json says why), 2 bad input (error.json), 143 stopped.
The HF token arrives only through the environment (``HF_TOKEN``) and is never written anywhere.
"""

from __future__ import annotations

import gc
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.errors import UserError

STOPPED_EXIT = 143


def model_card(task: Any, params: Any, metrics: dict[str, Any], name: str) -> str:
    """A Hub model card: metadata front matter plus a short description and the metrics."""
    meta: dict[str, Any] = {
        "library_name": task.library,
        "tags": ["trainpad", task.name],
    }
    if params.base_model and not Path(params.base_model).exists():
        meta["base_model"] = params.base_model
    if params.data_path and not Path(params.data_path).exists():
        meta["datasets"] = [params.data_path]
    shown = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items() if isinstance(v, (int, float))}
    if shown:
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {"task": {"type": task.name}, "metrics": [{"type": k, "value": v} for k, v in shown.items()]}
                ],
            }
        ]
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}",
        "",
        f"Trained with Trainpad — task **{task.title}**"
        + (f", from `{params.base_model}`." if params.base_model else "."),
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in shown.items()]
    if isinstance(metrics.get("protocol"), str):  # how the task used the rows (e.g. tabular with a validation file)
        lines += ["", "## How the data was used", "", metrics["protocol"]]
    lines += [
        "",
        "## Training parameters",
        "",
        "```yaml",
        yaml.safe_dump(_card_params(params), sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _card_params(params: Any) -> dict[str, Any]:
    from engine.params import public_dict

    data = public_dict(params)
    for key in ("data_path", "valid_path", "resume_from"):  # local paths say nothing to a reader of the card
        if data.get(key) and Path(str(data[key])).exists():
            data[key] = Path(str(data[key])).name
    return data


def push_to_hub(run_dir: Path, params: Any) -> str:
    import os

    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise UserError(
            "push_to_hub is on but no Hugging Face token was given. Enter a write token, or turn push_to_hub off."
        )
    api = HfApi(token=token)
    repo = api.create_repo(params.hub_repo_id, private=params.hub_private, exist_ok=True).repo_id
    api.upload_folder(folder_path=str(run_dir / rf.MODEL_DIR), repo_id=repo)
    return repo


def seed_everything(seed: int, with_torch: bool) -> None:
    """Seed Python's, numpy's and (for torch tasks) torch's generators, so that weights a task creates
    before its trainer seeds anything (a new classification head, LoRA adapters) are the same in every run."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if with_torch:
        import torch

        torch.manual_seed(seed)


def make_job(task: Any, params: Any, run_dir: Path) -> Any:
    """The task's inputs: the data is read here, once, with columns renamed to the task's roles."""
    from engine.data.splits import load_splits
    from engine.task import Job

    train, valid = load_splits(task, params) if task.loads_data else (None, None)
    return Job(task=task, params=params, run_dir=run_dir, train=train, valid=valid)


def run(run_dir: Path) -> int:
    """Run the task in ``run_dir``; write metrics/card/outcome or error; return the exit code."""
    from engine.config import load_run_config
    from engine.run.policy import frame_path_problems, guard_problems

    t0 = time.time()
    task, params = load_run_config(run_dir / rf.CONFIG)
    guard = rf.read_json(run_dir / rf.GUARD)
    if guard and (found := guard_problems(guard, params)):
        raise UserError(found)
    name = (yaml.safe_load((run_dir / rf.CONFIG).read_text()) or {}).get("name") or run_dir.name
    print(f"[trainpad] run {run_dir.name}: task {task.name}, base model {params.base_model or '-'}", flush=True)
    seed_everything(params.seed, task.uses_torch)
    job = make_job(task, params, run_dir)
    if guard and (found := frame_path_problems(guard, params, [job.train, job.valid])):
        raise UserError(found)
    metrics = task.train(job) or {}
    if rf.stop_requested():
        if rf.is_main_process():
            rf.write_json(run_dir / rf.OUTCOME, {"status": "stopped", "exit_code": STOPPED_EXIT, "metrics": metrics})
            print("[trainpad] stopped; checkpoint saved.", flush=True)
        return STOPPED_EXIT
    if not rf.is_main_process():
        return 0  # rank 0 writes the run's result files
    metrics["wall_seconds"] = round(time.time() - t0, 3)
    rf.write_json(run_dir / rf.METRICS, metrics)
    model_dir = run_dir / rf.MODEL_DIR
    if model_dir.is_dir():
        (model_dir / "README.md").write_text(model_card(task, params, metrics, name), encoding="utf-8")
    if params.push_to_hub:
        print(f"[trainpad] pushed to https://huggingface.co/{push_to_hub(run_dir, params)}", flush=True)
    rf.write_json(run_dir / rf.OUTCOME, {"status": "succeeded", "exit_code": 0})
    print(
        f"[trainpad] succeeded in {metrics['wall_seconds']:.1f}s: "
        + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)),
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m engine.run.worker RUN_DIR", file=sys.stderr)
        return 2
    gc.set_threshold(100_000, 50, 1000)  # few collections during the heavy imports; EventsCallback restores it
    signal.signal(signal.SIGTERM, rf.request_stop)
    signal.signal(signal.SIGINT, rf.request_stop)
    run_dir = Path(argv[0]).resolve()
    try:
        code = run(run_dir)
    except rf.StopRequested:
        print("[trainpad] stopped before training started; nothing to checkpoint.", flush=True)
        if rf.is_main_process():
            rf.write_json(run_dir / rf.OUTCOME, {"status": "stopped", "exit_code": STOPPED_EXIT})
        return STOPPED_EXIT
    except UserError as e:
        print(f"[trainpad] error: {e}", flush=True)
        _fail(run_dir, str(e), "UserError", 2)
        return 2
    except BaseException as e:  # every failure must be reported and exit non-zero
        traceback.print_exc()
        sys.stdout.flush()
        _fail(run_dir, error_message(e, run_dir), type(e).__name__, 1)
        return 1
    return code


def error_message(e: BaseException, run_dir: Path) -> str:
    """What the user reads: the exception's own text (several lines, e.g. transformers' model-loading
    explanations, cut at 1,500 characters), with a hint for common causes; the traceback is in train.log."""
    import errno

    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return rf.disk_full_message(run_dir, "No space left on device") + f" ({e})"
    text = str(e).strip()
    message = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if len(message) > 1500:
        message = message[:1500] + " …(see train.log for the rest)"
    return _explain(message)


def _fail(run_dir: Path, message: str, kind: str, code: int) -> None:
    """Write error.json and outcome.json; if even that fails (disk full, folder gone), say it on the log."""
    if not rf.is_main_process():
        return
    try:
        rf.write_json(run_dir / rf.ERROR, {"message": message, "type": kind})
        rf.write_json(run_dir / rf.OUTCOME, {"status": "failed", "exit_code": code})
    except OSError as e:
        print(f"[trainpad] error: {message}\n[trainpad] could not write error.json: {e}", flush=True)


def _explain(message: str) -> str:
    """Add a hint to errors users often hit."""
    hints = {
        "out of memory": " Lower batch_size or max_length, or turn on LoRA / gradient checkpointing.",
        "is not a local folder and is not a valid model identifier": " Check the model id, or use a local model folder (the Hub may be unreachable).",
        "Connection": " The Hugging Face Hub could not be reached. Use a local model folder, or check the network.",
    }
    return message + next((h for k, h in hints.items() if k.lower() in message.lower()), "")


if __name__ == "__main__":
    sys.exit(main())
