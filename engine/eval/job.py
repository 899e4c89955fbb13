"""An evaluation job: ``python -m engine.eval.job JOB_DIR``, in its own process (engine.run.jobs).

Reads ``job.json`` ({"task", "model", "model_dir", "data" (a file or ``valid``), "column_mapping", "params",
"batch_size", "max_new_tokens"}), loads the test data with the task's roles, runs the task's ``evaluate`` and
writes ``predictions.jsonl`` (per-example rows, worst first) then ``result.json`` ({"metrics", "n_examples",
"predictions_path", "evaluation": the row the supervisor records}). Nothing is recorded unless it all succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine import runfiles as rf
from engine.data.splits import apply_mapping, load_splits, resolve_mapping
from engine.data.tables import read_table
from engine.errors import UserError
from engine.params import validate_params
from engine.run import jobs
from engine.task import Task, get_task

PREDICTIONS = "predictions.jsonl"


say = jobs.say


def test_data(task: Task, spec: dict[str, Any]) -> tuple[Any, str]:
    """The test rows with columns renamed to the task's roles, and their hash."""
    if spec["data"] == "valid":
        params = validate_params(task.params, spec.get("params") or {})
        _, valid = load_splits(task, params)
        if valid is None or valid.empty:
            raise UserError(
                f"Run `{spec['model']}` kept no validation split (valid_fraction was 0): give a test file (--data)."
            )
        return valid, hashlib.sha256(valid.to_json(orient="records", default_handler=str).encode()).hexdigest()
    df = read_test_file(spec["data"])
    if df.empty:
        raise UserError(f"Test file `{Path(spec['data']).name}` has no rows: there is nothing to evaluate.")
    if not task.loads_data:
        return df, spec["data_hash"]
    mapping, problems = resolve_mapping(task, list(df.columns), spec.get("column_mapping") or {})
    if problems:
        raise UserError([f"Test file `{Path(spec['data']).name}`: {p}" for p in problems])
    return apply_mapping(df, mapping).reset_index(drop=True), spec["data_hash"]


def read_test_file(path: str | Path) -> Any:
    """A test file as a table: a CSV/JSON/JSONL/Parquet file, or a folder or ZIP of images or audio clips read as
    training data is (class sub-folders, metadata.jsonl/csv, COCO/YOLO/VOC; file paths made absolute)."""
    from engine.data.archives import as_folder
    from engine.data.audio import is_audio_source, read_clip_table
    from engine.data.images import is_image_source, read_image_folder

    p = Path(path).expanduser()
    if is_audio_source(p):
        return read_clip_table(as_folder(p))
    if is_image_source(p) or p.is_dir():
        return read_image_folder(as_folder(p))
    return read_table(p)


def file_bases(task: Task, spec: dict[str, Any]) -> list[Path]:
    """Folders that relative image/audio paths in the test rows are read from: the test file's folder (as a
    training file's), or for the validation split the run's data folders."""
    if spec["data"] != "valid":
        path = Path(spec["data"]).expanduser().resolve()
        if path.is_dir() or path.suffix.lower() == ".zip":  # read with absolute paths; named relative to it
            from engine.data.archives import as_folder

            return [as_folder(path)]
        return [path.parent]
    from engine.data.images import data_bases

    return data_bases(validate_params(task.params, spec.get("params") or {}))


def run_eval(job_dir: Path) -> dict[str, Any]:
    spec = rf.read_json(job_dir / jobs.JOB_FILE) or {}
    task = get_task(spec["task"])
    df, data_hash = (None, spec["data_hash"]) if spec.get("benchmark") else test_data(task, spec)
    say(job_dir, 0.0, f"evaluating {spec['model']} on {spec['data'] if df is None else f'{len(df)} rows'}")
    started = time.time()
    options = {"batch_size": spec.get("batch_size"), "max_new_tokens": spec.get("max_new_tokens")}
    options |= {"progress": lambda f, m: say(job_dir, f, m), "params": spec.get("params") or {}}
    options |= {"bases": [] if spec.get("benchmark") else file_bases(task, spec)}
    out = _evaluate(task, spec, df, options, job_dir)
    seconds = round(time.time() - started, 3)
    predictions = write_rows(job_dir / PREDICTIONS, out["rows"])
    metrics = {k: v for k, v in out["metrics"].items() if v is not None}
    settings = {**(out.get("settings") or {}), "seconds": seconds, "batch_size": options["batch_size"]}
    key, n = out["key_metric"], len(df) if df is not None else len(out["rows"])
    evaluation = {"model": spec["model"], "task": task.name, "data": spec["data"], "data_hash": data_hash}
    evaluation |= {"n_examples": n, "metrics": json.dumps(metrics), "key_metric_name": key}
    evaluation |= {"key_metric": metrics.get(key), "greater_is_better": int(bool(out["greater_is_better"]))}
    evaluation |= {"predictions_path": str(predictions), "settings": json.dumps(settings, default=str)}
    return {
        "metrics": metrics,
        "n_examples": n,
        "predictions_path": str(predictions),
        "key_metric": key,
        "settings": settings,
        "evaluation": evaluation,
    }


def _evaluate(task: Task, spec: dict[str, Any], df: Any, options: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """The task's own metrics, an LLM judge's verdicts, or an lm-eval benchmark's scores."""
    if spec.get("benchmark"):
        from engine.eval.benchmark import run_benchmark

        return run_benchmark(spec, job_dir / "lm_eval_tasks", options)
    if spec.get("judge"):
        from engine.eval.judge import judged_evaluation

        return judged_evaluation(spec, df, options)
    return task.evaluate(Path(spec["model_dir"]), df, options)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Per-example rows as JSON lines, written whole or not at all."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_rows(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` per-example rows of a predictions file (worst first)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            out.append(json.loads(line))
    return out


def main(argv: list[str] | None = None) -> int:
    return jobs.job_main(
        argv, run_eval, "evaluation", lambda r: f"done: {r['key_metric']}={r['metrics'].get(r['key_metric'])}"
    )


if __name__ == "__main__":
    sys.exit(main())
