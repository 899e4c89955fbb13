"""The task contract and the registry of tasks.

Each file in ``engine/tasks/`` defines ``TASK = Task(...)`` and is listed in ``TASK_MODULES``.
Task modules must not import torch & co. at module level: the UI imports the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.errors import UserError

# Explicit registry, in display order. Add a task by adding its module name here.
TASK_MODULES = [
    "llm_sft",
    "llm_dpo",
    "llm_orpo",
    "llm_reward",
    "llm_grpo",
    "llm_rloo",
    "llm_kto",
    "llm_distill",
    "llm_pretrain",
    "text_classification",
    "text_regression",
    "token_classification",
    "seq2seq",
    "extractive_qa",
    "sentence_transformers",
    "image_classification",
    "image_regression",
    "object_detection",
    "tabular",
    "asr",
    "vlm",
]

FAMILIES = ["LLM", "Text", "Vision", "Audio", "Tabular"]


@dataclass(frozen=True)
class Column:
    """A role a data column can play for a task (e.g. ``text``, ``target``)."""

    role: str
    help: str
    required: bool = True
    kind: str = "text"  # text | label | number | list | messages | any
    aliases: tuple[str, ...] = ()  # other column names that commonly hold this role (matched after the role's own)
    need: str = ""  # the form's word for it when neither "required" nor "optional" is true (e.g. "required unless …")


@dataclass
class Job:
    """What the worker hands a task's ``train``: the task, its validated params, the run folder and the
    data already loaded with columns renamed to the task's roles (``valid`` is None when there is none)."""

    task: Task
    params: Any
    run_dir: Path
    train: Any  # pandas.DataFrame
    valid: Any = None  # pandas.DataFrame | None


@dataclass(frozen=True)
class Task:
    """Everything the engine and the UI need to know about one task."""

    name: str
    title: str
    family: str
    description: str
    params: type[BaseModel]
    columns: list[Column]
    train: Callable[[Job], dict[str, Any]]
    predict: Callable[[Path, Any], Any]
    # The kind of base model it fine-tunes (a key of engine.preflight.models.FITS; None: it takes no base model),
    # checked before launch, and the Hub pipeline tag whose models the base model box suggests (None: no search).
    model_kind: str | None = "text"
    hub_pipeline: str | None = None
    key_metric: str = "eval_loss"
    suggested_models: list[str] = field(default_factory=list)  # the base model picker's first choices, small first
    greater_is_better: bool = False
    model_note: str = ""
    stratify_role: str | None = None
    # Extra data checks: (train_df, valid_df or None, params) -> list of plain-language problems.
    check_data: Callable[[Any, Any, Any], list[str]] | None = None
    # Optional pre-launch summary shown by Check / `trainpad validate`: (task, params) -> Markdown.
    data_summary: Callable[[Any, Any], str] | None = None
    predict_input: str = "text"  # text | chat | json | table: which playground widget fits
    autotrain_names: list[str] = field(default_factory=list)
    # AutoTrain column_mapping keys whose role is not just the key without `_column`.
    autotrain_columns: dict[str, str] = field(default_factory=dict)
    # Last step of loading an AutoTrain config: (AutoTrain dict, mapped params dict) -> params dict.
    from_autotrain: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    library: str = "transformers"  # the model card's library_name
    uses_torch: bool = True  # the worker seeds torch's generators before `train` (new heads start the same)
    # The worker loads the data with `engine.data.splits.load_splits` and passes it in the Job; a task that reads its
    # files itself (tabular: raw columns, its own split) sets this False and gets `Job.train = None`.
    loads_data: bool = True
    # How a training example weighs on memory, for the pre-launch memory check (engine/memory.py):
    # sequences_per_example (2 for chosen/rejected pairs), reference_model (a frozen copy, DPO), lm_logits.
    memory_profile: dict[str, Any] = field(default_factory=dict)
    # Evaluation on a test set (an `eval` job, engine/eval): (model_dir, test DataFrame with columns renamed to the
    # roles, options) -> {"metrics": {...}, "rows": per-example dicts, worst first, "key_metric": name,
    # "greater_is_better": bool}. Options: batch_size, max_new_tokens, progress(fraction, message). None: no
    # evaluation for this task yet.
    evaluate: Callable[[Path, Any, dict[str, Any]], dict[str, Any]] | None = None


_REGISTRY: dict[str, Task] = {}


def _load() -> dict[str, Task]:
    if not _REGISTRY:
        for mod in TASK_MODULES:
            task = importlib.import_module(f"engine.tasks.{mod}").TASK
            _REGISTRY[task.name] = task
    return _REGISTRY


def all_tasks() -> list[Task]:
    """Every registered task, in display order."""
    return list(_load().values())


def get_task(name: str) -> Task:
    """The task called ``name``; a :class:`UserError` naming the valid tasks otherwise."""
    tasks = _load()
    if name not in tasks:
        for task in tasks.values():
            if name in task.autotrain_names:
                return task
        raise UserError(f"Unknown task `{name}`. Valid tasks: {', '.join(tasks)}.")
    return tasks[name]
