"""Queue an evaluation: resolve what is evaluated (a run id, or a model folder with its task) and on which data (a
test file, or the run's validation split), check what can be checked without loading the model, then queue an
``eval`` job. Used by ``trainpad eval`` and the studio."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine.data.splits import resolve_mapping
from engine.errors import UserError
from engine.eval.job import read_test_file
from engine.task import Task, get_task

VALID_SPLIT = "valid"  # --data valid: the run's own validation split


@dataclass
class EvalRequest:
    """What to evaluate: ``model`` is a run id or a model folder (then ``task`` is needed); ``data`` a test file or
    ``valid``; ``column_mapping`` maps roles to the file's columns (a run's own mapping by default)."""

    model: str
    data: str = VALID_SPLIT
    task: str = ""
    column_mapping: dict[str, str] = field(default_factory=dict)
    batch_size: int = 16
    max_new_tokens: int = 0  # 0: the longest reference answer plus a margin
    judge: str = ""  # pairwise | single: an LLM judge instead of the task's metrics
    against: str = ""  # pairwise: the other model (a run id or a model folder)
    judge_model: str = ""  # a local judge folder, or the endpoint's model name (default TRAINPAD_JUDGE_MODEL)
    benchmark: str = ""  # lm-eval task names, task YAML files or prompt/completion JSONL files, comma-separated


def resolve(sup: Any, request: EvalRequest) -> tuple[dict[str, Any] | None, Task, dict[str, Any]]:
    """(the run row or None for a base model, the task, the job's arguments); UserError in plain words."""
    run = sup.store.get_run(request.model)
    if run is not None:
        if run["status"] != "succeeded":
            raise UserError(f"Run `{run['id']}` is {run['status']}; only a succeeded run has a model to evaluate.")
        config = yaml.safe_load((Path(run["run_dir"]) / rf.CONFIG).read_text()) or {}
        task = get_task(request.task or config["task"])
        params = config.get("params") or {}
        model_dir, label = Path(run["run_dir"]) / rf.MODEL_DIR, run["id"]
    else:
        model_dir, label, params = Path(request.model).expanduser(), str(request.model), {}
        if not model_dir.is_dir():
            raise UserError(
                f"`{request.model}` is neither a run id nor a model folder. `trainpad runs` lists the runs; a base "
                "model is evaluated from its local folder (with --task)."
            )
        if not request.task and not request.benchmark:
            raise UserError(f"Evaluating the base model `{request.model}` needs its task: add --task TASK.")
        task = get_task(request.task or "llm_sft")
        model_dir = model_dir.resolve()
    if task.evaluate is None:
        raise UserError(f"Evaluation is not available for {task.title} yet.")
    judged = _judge_args(sup, task, request) if request.judge else {}
    mapping = request.column_mapping or dict(params.get("column_mapping") or {})
    data = _benchmark(task, request.benchmark) if request.benchmark else _check_data(task, request.data, mapping, run)
    args = {"task": task.name, "model": label, "model_dir": str(model_dir), "params": params}
    args |= data | {"column_mapping": mapping, "batch_size": request.batch_size}
    args |= {"max_new_tokens": request.max_new_tokens} | judged
    return run, task, args


def _judge_args(sup: Any, task: Task, request: EvalRequest) -> dict[str, Any]:
    """The judge's part of the job (checked now: the mode, an LLM task, a judge to ask, the other model)."""
    from engine.eval.judge import MODES, judge_source

    if request.judge not in MODES:
        raise UserError(f"--judge must be one of {', '.join(MODES)}; got `{request.judge}`.")
    if task.model_kind != "causal":
        raise UserError(f"An LLM judge grades generated answers; {task.title} models do not generate them.")
    judge_source(request.judge_model)
    args = {"judge": request.judge, "judge_model": request.judge_model}
    if request.judge == "single":
        return args
    if not request.against:
        raise UserError("A pairwise judgement needs the other model: --against RUN_ID_OR_MODEL_FOLDER.")
    return args | {"against": request.against, "against_dir": str(model_folder(sup, request.against))}


def model_folder(sup: Any, model: str) -> Path:
    """The model folder of a succeeded run's id, or a model folder itself."""
    run = sup.store.get_run(model)
    if run is not None:
        if run["status"] != "succeeded":
            raise UserError(f"Run `{model}` is {run['status']}; only a succeeded run has a model.")
        return Path(run["run_dir"]) / rf.MODEL_DIR
    if not Path(model).expanduser().is_dir():
        raise UserError(f"`{model}` is neither a run id nor a model folder.")
    return Path(model).expanduser().resolve()


def _check_data(task: Task, data: str, mapping: dict[str, str], run: dict[str, Any] | None) -> dict[str, Any]:
    """The test data's path and hash, after the checks that need no model: it exists, has rows, has the roles."""
    if data in ("", VALID_SPLIT):
        if run is None:
            raise UserError("A base model has no validation split: give a test file with --data TEST_FILE.")
        return {"data": VALID_SPLIT, "data_hash": ""}  # the job splits the run's data again and hashes it
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"Test file `{data}` not found.")
    df = read_test_file(path)  # a table, or a folder/ZIP of images or clips
    if df.empty:
        raise UserError(f"Test file `{data}` has no rows: there is nothing to evaluate.")
    if task.loads_data:
        found, problems = resolve_mapping(task, list(df.columns), mapping)
        if problems:
            raise UserError([f"Test file `{path.name}`: {p}" for p in problems])
    return {"data": str(path.resolve()), "data_hash": file_hash(path) if path.is_file() else folder_hash(path)}


def _benchmark(task: Task, benchmark: str) -> dict[str, Any]:
    """The job's benchmark arguments; lm-eval must be installed and the model a causal LM."""
    from engine.eval.benchmark import missing

    if task.model_kind != "causal":
        raise UserError(f"lm-eval benchmarks evaluate language models; {task.title} models are not.")
    if why := missing():
        raise UserError(why)
    files = [
        Path(p.strip()).expanduser() for p in benchmark.split(",") if p.strip().endswith((".jsonl", ".yaml", ".yml"))
    ]
    digest = hashlib.sha256(benchmark.encode())
    for path in files:
        if not path.is_file():
            raise UserError(f"Benchmark file `{path}` not found.")
        digest.update(file_hash(path).encode())
    return {"data": benchmark, "data_hash": digest.hexdigest(), "benchmark": benchmark}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hash(folder: Path) -> str:
    """A hash of a test folder: every file's relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + file_hash(path).encode())
    return digest.hexdigest()


def shared_data_problems(task: Task, args: dict[str, Any]) -> list[str]:
    """On a shared instance (a signed-in ``user``), test data names only files uploaded with it: no folder (a ZIP
    upload instead), and image/audio cells of a test table relative paths that stay in the table's folder."""
    from engine.data.images import stays_inside
    from engine.run.policy import MEDIA_ROLES

    path = Path(args["data"])
    if args["data"] == VALID_SPLIT or args.get("benchmark"):
        return []
    if path.is_dir():
        return [
            f"Test data `{path.name}` is a folder: on this shared instance upload the test images or clips as a ZIP."
        ]
    if path.suffix.lower() == ".zip" or not task.loads_data:
        return []
    df = read_test_file(path)
    found, _ = resolve_mapping(task, list(df.columns), args.get("column_mapping") or {})
    return [
        f"`{path.name}`, column `{col}`, row {i + 1}: `{Path(str(v)).name[:80]}` is not a file uploaded with the "
        "test file. On this shared instance image and audio paths must be relative to the test file's folder "
        "(upload a ZIP of the table and its files)."
        for role, col in found.items()
        if role in MEDIA_ROLES
        for i, cell in enumerate(df[col])
        for v in _named_files(cell)
        if not stays_inside(v)
    ][:5]


def _named_files(cell: Any) -> list[str]:
    """The file paths a test-table cell names: a path, or a list (or JSON list) of them (VLM rows)."""
    if isinstance(cell, str) and cell.strip().startswith("["):
        try:
            cell = json.loads(cell)
        except ValueError:
            pass
    if hasattr(cell, "tolist"):
        cell = cell.tolist()
    values = cell if isinstance(cell, list) else [cell]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def submit_eval(sup: Any, request: EvalRequest, user: str = "") -> str:
    """Queue the evaluation as an ``eval`` job; returns the job id."""
    run, task, args = resolve(sup, request)
    if user and (problems := shared_data_problems(task, args)):
        raise UserError(problems)
    if run is not None:
        return sup.jobs.submit("eval", run, args, user)
    return sup.jobs.submit_unlinked("eval", sup.data_dir / "evals", args, user)
