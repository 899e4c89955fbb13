"""AutoTrain Advanced 0.8.x configs and command lines, read as Trainpad configs.

The mapping is data, in one place: ``TASKS`` (every task alias AutoTrain's config parser accepts, and the
Trainpad task it becomes), ``DEFAULTS`` (AutoTrain's own default for every key of every params class: a key the
config leaves out means AutoTrain's default, not Trainpad's) and ``RULES`` (one table per AutoTrain params class:
every key is mapped onto the Trainpad param of the same meaning, ignored with a printed note because it does not
change the result, or refused with the reason). The functions below only walk these tables; what is special about
one task lives in that task's ``from_autotrain`` hook.

Safe in the UI process: no torch, transformers or datasets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.task import Task, all_tasks

# ---- the mapping, as data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What one AutoTrain key becomes.

    action: ``map`` (Trainpad param ``target``, value through ``CONVERT[convert]``), ``column`` (a column-mapping
    role ``target``, unless the task's ``autotrain_columns`` names another), ``hook`` (read by the task's own
    ``from_autotrain``), ``special`` (``SPECIAL[target]`` here), ``ignore`` (printed ``note``) or ``refuse``
    (``note`` is the reason). ``only``: the Trainpad tasks where AutoTrain uses the key; elsewhere it is ignored
    with a note saying AutoTrain does not use it there. ``default``: whether AutoTrain's default is applied when
    the key is absent (False for keys that change speed or memory only)."""

    action: str
    target: str = ""
    note: str = ""
    convert: str = ""
    only: tuple[str, ...] = ()
    default: bool = True


def _map(target: str, convert: str = "", only: tuple[str, ...] = (), default: bool = True) -> Rule:
    return Rule("map", target, convert=convert, only=only, default=default)


def _col(role: str, only: tuple[str, ...] = ()) -> Rule:
    return Rule("column", role, only=only, default=False)


def _special(name: str, default: bool = False) -> Rule:
    return Rule("special", name, default=default)


def _ignore(note: str) -> Rule:
    return Rule("ignore", note=note, default=False)


def _hook() -> Rule:
    return Rule("hook", default=False)


PREFERENCE = ("llm_dpo", "llm_orpo")
SECRET_KEYS = {"token"}  # never echoed in a note
HUB_NOTE = "Trainpad never reads a Hub token from a config: set HF_TOKEN or log in (`hf auth login`)."

_RUN = {
    "model": _map("base_model", default=False),
    "project_name": _special("name"),
    "data_path": _map("data_path", default=False),
    "train_split": _special("split"),
    "valid_split": _special("split"),
    "log": _map("report_to", "tracker"),
    "username": _special("hub"),
    "token": _ignore(HUB_NOTE),
    "push_to_hub": _special("hub"),
    "seed": _map("seed"),
}
_TRAINER = {
    "lr": _map("learning_rate"),
    "epochs": _map("epochs"),
    "batch_size": _map("batch_size"),
    "warmup_ratio": _map("warmup_ratio"),
    "gradient_accumulation": _map("grad_accum"),
    "optimizer": _map("optimizer"),
    "scheduler": _map("scheduler"),
    "weight_decay": _map("weight_decay"),
    "max_grad_norm": _map("max_grad_norm"),
    "logging_steps": _map("logging_steps", "auto_steps"),
    "eval_strategy": _map("eval_strategy"),
    "save_total_limit": _map("save_total_limit"),
    "auto_find_batch_size": _ignore(
        "auto_find_batch_size only halves the batch after an out-of-memory error (where the run would stop): "
        "Trainpad keeps batch_size and says so if memory runs out."
    ),
    "mixed_precision": _map("mixed_precision", "precision"),
}
_EARLY = {
    "early_stopping_patience": _map("early_stopping_patience"),
    "early_stopping_threshold": _map("early_stopping_threshold"),
}
_LORA = {
    "peft": _map("use_lora", "bool"),
    "quantization": _special("quantization", default=True),
    "lora_r": _map("lora_r"),
    "lora_alpha": _map("lora_alpha"),
    "lora_dropout": _map("lora_dropout"),
    "target_modules": _map("lora_target_modules", "modules"),
}
_ENCODER = {**_RUN, **_TRAINER, **_EARLY, "max_seq_length": _map("max_length")}

RULES: dict[str, dict[str, Rule]] = {
    "LLM": {
        **_RUN,
        **_TRAINER,
        **_LORA,
        "trainer": _special("trainer"),
        "block_size": _special("lengths", default=True),
        "model_max_length": _special("lengths", default=True),
        "add_eos_token": _special("add_eos", default=True),
        "padding": _ignore(
            "padding (side) does not change training: every sequence is packed or padded with its attention mask."
        ),
        "use_flash_attention_2": _map("attn_implementation", "flash", default=False),
        "disable_gradient_checkpointing": _map("gradient_checkpointing", "negate", default=False),
        "chat_template": _special("chat_template"),
        "merge_adapter": _map("merge_adapter"),
        "model_ref": _special("model_ref"),
        "dpo_beta": _map("beta", only=("llm_dpo",)),
        "max_prompt_length": _map("max_prompt_length", only=PREFERENCE),
        "max_completion_length": _map("max_completion_length", "none_zero", only=PREFERENCE),
        "prompt_text_column": _col("prompt", only=PREFERENCE),
        "text_column": _col("text"),
        "rejected_text_column": _col("rejected", only=(*PREFERENCE, "llm_reward")),
        "unsloth": _ignore(
            "unsloth is a faster kernel set for CUDA GPUs (AutoTrain skips it elsewhere); same model, same result."
        ),
        "distributed_backend": _ignore(
            "distributed_backend: Trainpad spreads a run over GPUs with DDP (or FSDP: `distributed: fsdp`); "
            "DeepSpeed ZeRO computes the same updates."
        ),
    },
    "TEXT_CLASSIFICATION": {**_ENCODER, "text_column": _col("text"), "target_column": _col("target")},
    "TEXT_REGRESSION": {**_ENCODER, "text_column": _col("text"), "target_column": _col("target")},
    "TOKEN_CLASSIFICATION": {**_ENCODER, "tokens_column": _col("tokens"), "tags_column": _col("tags")},
    "EXTRACTIVE_QA": {
        **_ENCODER,
        "max_doc_stride": _map("doc_stride"),
        "text_column": _col("context"),
        "question_column": _col("question"),
        "answer_column": _col("answers"),
    },
    "SENTENCE_TRANSFORMERS": {
        **_ENCODER,
        "trainer": _special("trainer"),
        "sentence1_column": _col("sentence1"),
        "sentence2_column": _col("sentence2"),
        "sentence3_column": _col("sentence3"),
        "target_column": _col("target"),
    },
    "SEQ2SEQ": {
        **_ENCODER,
        **_LORA,
        "max_target_length": _map("max_target_length"),
        "text_column": _col("text"),
        "target_column": _col("target"),
    },
    "TABULAR": {
        **{k: v for k, v in _RUN.items() if k != "log"},  # AutoTrain's tabular class has no `log`
        "model": _special("tabular_model", default=True),
        "id_column": _col("id"),
        "target_columns": _special("targets"),
        "categorical_columns": _hook(),
        "numerical_columns": _hook(),
        "task": _special("tabular_task", default=True),
        "num_trials": _map("num_trials"),
        "time_limit": _map("time_limit"),
        "categorical_imputer": _special("preprocessing"),
        "numerical_imputer": _special("preprocessing"),
        "numeric_scaler": _special("preprocessing"),
    },
    "IMAGE_CLASSIFICATION": {
        **_RUN,
        **_TRAINER,
        **_EARLY,
        "image_column": _col("image"),
        "target_column": _col("target"),
    },
    "IMAGE_REGRESSION": {**_RUN, **_TRAINER, **_EARLY, "image_column": _col("image"), "target_column": _col("target")},
    "OBJECT_DETECTION": {
        **_RUN,
        **_TRAINER,
        **_EARLY,
        "image_column": _col("image"),
        "objects_column": _col("objects"),
        "image_square_size": _map("image_square_size"),
    },
    "VLM": {
        **_RUN,
        **_TRAINER,
        **_LORA,
        "trainer": Rule(
            "special",
            "trainer",
            note="AutoTrain prompts PaliGemma-style (`answer ` + question, captioning from a `caption` column, no "
            "chat template); Trainpad uses the model's chat template, and caption_prompt for rows without a "
            "question. Same pairs of image, prompt and answer; the prompt's wording differs.",
        ),
        "disable_gradient_checkpointing": _map("gradient_checkpointing", "negate", default=False),
        "merge_adapter": _ignore(
            "Trainpad's vlm saves the merged model and keeps the adapter in `adapter/`: both forms, same weights."
        ),
        "image_column": _col("image"),
        "text_column": _col("text"),
        "prompt_text_column": _col("prompt"),
    },
}

# AutoTrain 0.8.36's default for every key of every params class (src/autotrain/trainers/*/params.py).
_COMMON_DEFAULTS = {
    "lr": 5e-05,
    "epochs": 3,
    "batch_size": 8,
    "warmup_ratio": 0.1,
    "gradient_accumulation": 1,
    "optimizer": "adamw_torch",
    "scheduler": "linear",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "seed": 42,
    "train_split": "train",
    "valid_split": None,
    "logging_steps": -1,
    "project_name": "project-name",
    "auto_find_batch_size": False,
    "mixed_precision": None,
    "save_total_limit": 1,
    "token": None,
    "push_to_hub": False,
    "eval_strategy": "epoch",
    "username": None,
    "log": "none",
    "data_path": None,
}
_EARLY_DEFAULTS = {"early_stopping_patience": 5, "early_stopping_threshold": 0.01}
_LORA_DEFAULTS = {
    "target_modules": "all-linear",
    "peft": False,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "quantization": "int4",
}
_LLM_LIKE = {
    "data_path": "data",
    "lr": 3e-05,
    "epochs": 1,
    "batch_size": 2,
    "gradient_accumulation": 4,
    "disable_gradient_checkpointing": False,
    "merge_adapter": False,
    **_LORA_DEFAULTS,
}
_TEXT = {"model": "bert-base-uncased", "max_seq_length": 128, **_EARLY_DEFAULTS}
_IMAGE = {"model": "google/vit-base-patch16-224", "image_column": "image", **_EARLY_DEFAULTS}
DEFAULTS: dict[str, dict[str, Any]] = {
    "LLM": {
        **_COMMON_DEFAULTS,
        **_LLM_LIKE,
        "model": "gpt2",
        "add_eos_token": True,
        "block_size": -1,
        "model_max_length": 2048,
        "padding": "right",
        "trainer": "default",
        "use_flash_attention_2": False,
        "chat_template": None,
        "model_ref": None,
        "dpo_beta": 0.1,
        "max_prompt_length": 128,
        "max_completion_length": None,
        "prompt_text_column": None,
        "text_column": "text",
        "rejected_text_column": None,
        "unsloth": False,
        "distributed_backend": None,
    },
    "TEXT_CLASSIFICATION": {**_COMMON_DEFAULTS, **_TEXT, "text_column": "text", "target_column": "target"},
    "TEXT_REGRESSION": {**_COMMON_DEFAULTS, **_TEXT, "text_column": "text", "target_column": "target"},
    "TOKEN_CLASSIFICATION": {**_COMMON_DEFAULTS, **_TEXT, "tokens_column": "tokens", "tags_column": "tags"},
    "EXTRACTIVE_QA": {
        **_COMMON_DEFAULTS,
        **_TEXT,
        "max_doc_stride": 128,
        "text_column": "context",
        "question_column": "question",
        "answer_column": "answers",
    },
    "SENTENCE_TRANSFORMERS": {
        **_COMMON_DEFAULTS,
        **_TEXT,
        "model": "microsoft/mpnet-base",
        "lr": 3e-05,
        "trainer": "pair_score",
        "sentence1_column": "sentence1",
        "sentence2_column": "sentence2",
        "sentence3_column": None,
        "target_column": None,
    },
    "SEQ2SEQ": {
        **_COMMON_DEFAULTS,
        **_TEXT,
        **_LORA_DEFAULTS,
        "model": "google/flan-t5-base",
        "batch_size": 2,
        "max_target_length": 128,
        "quantization": "int8",
        "text_column": "text",
        "target_column": "target",
    },
    "TABULAR": {
        **{k: _COMMON_DEFAULTS[k] for k in _RUN if k in _COMMON_DEFAULTS and k != "log"},
        "model": "xgboost",
        "id_column": "id",
        "target_columns": ["target"],
        "categorical_columns": None,
        "numerical_columns": None,
        "task": "classification",
        "num_trials": 10,
        "time_limit": 600,
        "categorical_imputer": None,
        "numerical_imputer": None,
        "numeric_scaler": None,
    },
    "IMAGE_CLASSIFICATION": {**_COMMON_DEFAULTS, **_IMAGE, "target_column": "target"},
    "IMAGE_REGRESSION": {**_COMMON_DEFAULTS, **_IMAGE, "target_column": "target"},
    "OBJECT_DETECTION": {**_COMMON_DEFAULTS, **_IMAGE, "objects_column": "objects", "image_square_size": 600},
    "VLM": {
        **{k: v for k, v in _COMMON_DEFAULTS.items() if k not in _EARLY_DEFAULTS},
        **_LLM_LIKE,
        "model": "google/paligemma-3b-pt-224",
        "trainer": "vqa",
        "image_column": "image",
        "text_column": "text",
        "prompt_text_column": "prompt",
    },
}


@dataclass(frozen=True)
class AutoTrainTask:
    """One AutoTrain task alias: its params class, the Trainpad task, and the trainer the alias fixes."""

    params: str  # key of RULES / DEFAULTS
    task: str  # the Trainpad task name ("" = chosen by the trainer, see TRAINERS)
    trainer: str | None = None  # None: params.trainer (or AutoTrain's default) decides
    canonical: str = ""  # AutoTrain's own name for the task, for messages


def _aliases(params: str, task: str, canonical: str, names: list[str], trainer: str | None = None) -> dict:
    return {n: AutoTrainTask(params, task, trainer, canonical) for n in names}


# Every `task:` value AutoTrain 0.8.36's config parser accepts (its aliases plus its canonical names).
TASKS: dict[str, AutoTrainTask] = {
    **_aliases("LLM", "", "lm_training", ["llm", "lm_training"]),
    **{f"llm-{t}": AutoTrainTask("LLM", "", t, "lm_training") for t in ("sft", "dpo", "orpo", "reward", "generic")},
    **_aliases(
        "TEXT_CLASSIFICATION",
        "text_classification",
        "text_multi_class_classification",
        [
            "text_binary_classification",
            "text-binary-classification",
            "text_classification",
            "text-classification",
            "text_multi_class_classification",
        ],
    ),
    **_aliases(
        "TEXT_REGRESSION",
        "text_regression",
        "text_single_column_regression",
        ["text_single_column_regression", "text-single-column-regression", "text_regression", "text-regression"],
    ),
    **_aliases(
        "TOKEN_CLASSIFICATION",
        "token_classification",
        "text_token_classification",
        ["token_classification", "token-classification", "text_token_classification"],
    ),
    **_aliases("SEQ2SEQ", "seq2seq", "seq2seq", ["seq2seq"]),
    **_aliases("TABULAR", "tabular", "tabular", ["tabular"]),
    **_aliases(
        "EXTRACTIVE_QA",
        "extractive_qa",
        "text_extractive_question_answering",
        ["extractive_question_answering", "ext_qa", "ext-qa", "extractive-qa", "text_extractive_question_answering"],
    ),
    **_aliases(
        "SENTENCE_TRANSFORMERS", "sentence_transformers", "sentence_transformers", ["st", "sentence_transformers"]
    ),
    **{
        f"{prefix}:{mode}": AutoTrainTask(
            "SENTENCE_TRANSFORMERS", "sentence_transformers", mode, "sentence_transformers"
        )
        for prefix in ("st", "sentence-transformers")
        for mode in ("pair", "pair_class", "pair_score", "triplet", "qa")
    },
    **_aliases(
        "IMAGE_CLASSIFICATION",
        "image_classification",
        "image_multi_class_classification",
        [
            "image_binary_classification",
            "image-binary-classification",
            "image_classification",
            "image-classification",
            "image_multi_class_classification",
        ],
    ),
    **_aliases(
        "IMAGE_REGRESSION",
        "image_regression",
        "image_single_column_regression",
        [
            "image_single_column_regression",
            "image-single-column-regression",
            "image_regression",
            "image-regression",
            "image-scoring",
        ],
    ),
    **_aliases(
        "OBJECT_DETECTION",
        "object_detection",
        "image_object_detection",
        ["image_object_detection", "image-object-detection", "object_detection", "object-detection"],
    ),
    **{f"vlm:{t}": AutoTrainTask("VLM", "vlm", t, "vlm") for t in ("captioning", "vqa")},
    **_aliases("VLM", "vlm", "vlm", ["vlm"]),
}

# AutoTrain's LLM trainers (`task: llm-X` or `params.trainer: X`) -> Trainpad tasks.
TRAINERS = {
    "sft": "llm_sft",
    "dpo": "llm_dpo",
    "orpo": "llm_orpo",
    "reward": "llm_reward",
    "default": "llm_pretrain",
    "generic": "llm_pretrain",
}

# AutoTrain's generic trainer renders chats with the template and packs them: Trainpad's SFT with wrapped packing.
TRAINERS_WITH_CHATS = {"default": "llm_sft", "generic": "llm_sft"}

# `autotrain <command>` of AutoTrain's CLI -> the params class; its flags are that class's keys.
CLI_COMMANDS = {
    "llm": "llm",
    "text-classification": "text_classification",
    "text-regression": "text_regression",
    "token-classification": "token_classification",
    "seq2seq": "seq2seq",
    "tabular": "tabular",
    "extractive-qa": "extractive-qa",
    "sentence-transformers": "st",
    "image-classification": "image_classification",
    "image-regression": "image_regression",
    "object-detection": "object_detection",
    "vlm": "vlm",
}

# AutoTrain tabular models -> Trainpad model families ("" = the same family under the same name).
TABULAR_MODELS = {
    "xgboost": "xgboost",
    "random_forest": "random_forest",
    "extra_trees": "extra_trees",
    "knn": "knn",
    "logistic_regression": "linear",
    "ridge": "linear",
    "svm": "svm",
    "lightgbm": "hist_gradient_boosting",
    "catboost": "hist_gradient_boosting",
}

BACKENDS_LOCAL = ("local",)  # local, local-cli, local-ui
BACKENDS_REMOTE = ("spaces-", "ep-", "ngc-", "nvcf-", "dgx-")

# ---- value conversions ---------------------------------------------------------------------------------------

CONVERT = {
    "": lambda v: v,
    "bool": bool,
    "negate": lambda v: not v,
    "auto_steps": lambda v: 0 if isinstance(v, int) and v < 0 else v,  # AutoTrain's -1 = "choose", Trainpad's 0
    "precision": lambda v: "no" if v in (None, "none", "no", "fp32") else v,  # AutoTrain's None = full fp32
    "flash": lambda v: "flash_attention_2" if v else "sdpa",
    "none_zero": lambda v: 0 if v is None else v,
    "tracker": lambda v: "none" if v in (None, "", "none") else str(v),
    "modules": lambda v: "all-linear" if v in (None, "", "all-linear") else str(v),
}


# ---- reading a config ----------------------------------------------------------------------------------------


def is_autotrain(data: dict[str, Any]) -> bool:
    """An AutoTrain config names `base_model`, `data:` or `project_name` at the top level."""
    return "base_model" in data or "data" in data or "project_name" in data


@dataclass
class _Ctx:
    """One conversion: the AutoTrain keys given and effective, and what becomes of them."""

    at: AutoTrainTask
    task: Task
    trainer: str | None
    given: dict[str, Any]  # what the config or command line says
    values: dict[str, Any]  # given over AutoTrain's defaults
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    name: str = ""
    env: bool = False  # may read ${VAR} from the environment (configs run from the command line only)


def convert(data: dict[str, Any], env: bool = False) -> tuple[dict[str, Any], list[str]]:
    """An AutoTrain Advanced YAML (as a dict) -> Trainpad's ``{task, name, backend, params}`` and the notes about
    keys that were ignored or adjusted. Raises UserError listing every refused key."""
    extra = sorted(set(data) - {"task", "base_model", "project_name", "log", "backend", "data", "params", "hub"})
    if extra:
        raise UserError(
            f"AutoTrain config: unknown top-level key(s) {', '.join(extra)}. AutoTrain configs have task, "
            "base_model, project_name, log, backend, data, params and hub."
        )
    alias = str(data.get("task") or "")
    return _convert(alias, flatten(data), backend=data.get("backend"), env=env)


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """The keys AutoTrain's parser hands its params class: top level, `data:`, column mapping, `hub:`, `params:`."""
    dcfg = data.get("data") or {}
    flat: dict[str, Any] = {}
    for src, dst in (("base_model", "model"), ("project_name", "project_name"), ("log", "log")):
        if src in data:
            flat[dst] = data[src]
    for key in ("path", "train_split", "valid_split", "chat_template"):
        if key in dcfg:
            flat["data_path" if key == "path" else key] = dcfg[key]
    flat.update(dcfg.get("column_mapping") or {})
    hub = data.get("hub") or {}
    flat.update({k: hub[k] for k in ("username", "token", "push_to_hub") if k in hub})
    flat.update(data.get("params") or {})
    return flat


def _convert(
    alias: str, given: dict[str, Any], backend: Any = None, env: bool = False
) -> tuple[dict[str, Any], list[str]]:
    at = TASKS.get(alias) or _trainpad_alias(alias)
    trainer = _trainer(at, given)
    task = _resolve(at, alias, trainer, given)
    defaults = {k: v for k, v in DEFAULTS[at.params].items() if RULES[at.params][k].default}
    values = {**defaults, **given, **({"trainer": trainer} if trainer else {})}
    ctx = _Ctx(at, task, trainer, given, values, env=env)
    for key in values:
        _apply(ctx, key)
    _finish(ctx)
    if task.from_autotrain is not None:
        ctx.params = task.from_autotrain({"task": alias, "params": given, "trainer": trainer}, ctx.params)
    if ctx.problems:
        raise UserError(ctx.problems)
    where, note = _backend(backend)
    ctx.notes += [note] if note else []
    return {"task": task.name, "name": ctx.name, "backend": where, "params": ctx.params}, ctx.notes


def _trainpad_alias(alias: str) -> AutoTrainTask:
    """Task names AutoTrain's parser lacks but a Trainpad task accepts (e.g. `tabular:regression`, `llm:dpo`): the
    table of that task's AutoTrain params class applies."""
    task = next((t for t in all_tasks() if alias in t.autotrain_names or alias == t.name), None)
    trainer = next((k for k, v in TRAINERS.items() if task is not None and v == task.name), None)
    if trainer is not None:
        return AutoTrainTask("LLM", "", trainer, "lm_training")
    at = next((a for a in TASKS.values() if task is not None and a.task == task.name), None)
    if at is None:
        raise UserError(f"AutoTrain config: unknown task `{alias}`. AutoTrain's tasks are: {', '.join(sorted(TASKS))}.")
    return at


def _trainer(at: AutoTrainTask, given: dict[str, Any]) -> str | None:
    """AutoTrain's parser sets `trainer` from the task suffix, then `params:` overrides it (params.trainer wins)."""
    if "trainer" not in RULES[at.params]:
        return None
    value = given.get("trainer", at.trainer or DEFAULTS[at.params]["trainer"])
    return str(value)


def _resolve(at: AutoTrainTask, alias: str, trainer: str | None, given: dict[str, Any]) -> Task:
    """The registered Trainpad task for an AutoTrain alias; "not available in this version" when it is missing."""
    name = at.task
    if at.params == "LLM":
        if trainer not in TRAINERS:
            raise UserError(
                f"AutoTrain config: trainer `{trainer}` is not an AutoTrain LLM trainer; use one of "
                f"{', '.join(t for t in TRAINERS if t != 'generic')}."
            )
        chats = given.get("chat_template") not in (None, "none", "None", "")
        name = TRAINERS_WITH_CHATS.get(trainer, TRAINERS[trainer]) if chats else TRAINERS[trainer]
    tasks = all_tasks()
    found = next((t for t in tasks if t.name == name), None) or next(
        (t for t in tasks if alias in t.autotrain_names or at.canonical in t.autotrain_names), None
    )
    if found is None:
        raise UserError(
            f"Task `{alias}` (AutoTrain's {at.canonical}) is not available in this version of Trainpad. "
            f"Available tasks: {', '.join(t.name for t in tasks)}."
        )
    return found


def _apply(ctx: _Ctx, key: str) -> None:
    rule = RULES[ctx.at.params].get(key)
    value = ctx.values[key]
    if rule is None:
        ctx.notes.append(
            f"`{key}` is not an AutoTrain {ctx.at.canonical} setting (AutoTrain ignores it with a warning): ignored."
        )
        return
    if rule.only and ctx.task.name not in rule.only:
        if key in ctx.given and value not in (None, DEFAULTS[ctx.at.params].get(key)):
            ctx.notes.append(f"`{key}: {value}` ignored: AutoTrain does not use it for {_job(ctx)}.")
        return
    if rule.action == "map":
        _set(ctx, key, rule.target, CONVERT[rule.convert](value))
    elif rule.action == "column":
        if value not in (None, ""):
            role = ctx.task.autotrain_columns.get(key, rule.target)
            ctx.params.setdefault("column_mapping", {})[role] = value
    elif rule.action == "special":
        SPECIAL[rule.target](ctx, key, value)
    elif rule.action == "ignore":
        if key in ctx.given and value not in (None, False, "none"):
            shown = value if key not in SECRET_KEYS or str(value).startswith("${") else "***"
            ctx.notes.append(f"`{key}: {shown}` ignored: {rule.note}")
    elif rule.action == "refuse" and key in ctx.given:
        ctx.problems.append(f"AutoTrain `{key}: {value}` cannot be honoured: {rule.note}")


def _set(ctx: _Ctx, key: str, target: str, value: Any) -> None:
    if target not in ctx.task.params.model_fields:
        if key in ctx.given:
            ctx.problems.append(
                f"AutoTrain `{key}` has no equivalent in Trainpad's {ctx.task.name} task (no `{target}`); remove it."
            )
        return
    ctx.params[target] = value


def _job(ctx: _Ctx) -> str:
    return f"its `{ctx.trainer}` trainer" if ctx.trainer and ctx.at.params == "LLM" else ctx.at.canonical


def _finish(ctx: _Ctx) -> None:
    """Rules that look at several keys: validation present or not; early stopping only with validation."""
    if ctx.values.get("valid_split") in (None, ""):
        for key in ("early_stopping_patience", "early_stopping_threshold"):
            ctx.params.pop(key, None)  # AutoTrain stops early only when it has validation data
        if "valid_fraction" in ctx.task.params.model_fields:
            ctx.params["valid_fraction"] = 0.0  # AutoTrain trains on every row when valid_split is null


# ---- the keys that need more than a rename -------------------------------------------------------------------


def _name(ctx: _Ctx, key: str, value: Any) -> None:
    ctx.name = str(value or "")


def _split(ctx: _Ctx, key: str, value: Any) -> None:
    """`train`, `valid`, or Hub `config:split` (AutoTrain's form for a dataset config)."""
    if value in (None, ""):
        return
    text = str(value).strip()
    if ":" in text:
        config, text = text.split(":", 1)
        ctx.params["data_config"] = config
    ctx.params[key] = text


def _hub(ctx: _Ctx, key: str, value: Any) -> None:
    if key != "push_to_hub" or not value:
        return
    user = ctx.values.get("username") or ""
    if isinstance(user, str) and user.startswith("${"):
        var = user[2:-1]
        if not ctx.env:
            ctx.notes.append(
                f"hub.username {user} is not read from the environment here (only configs run from the command "
                f"line read it): the model is pushed as `{ctx.values.get('project_name')}` under the token's account."
            )
            user = ""
        elif var not in os.environ:
            ctx.problems.append(
                f"hub.username is ${{{var}}} but the environment variable {var} is not set: set it, or write the "
                "username, or set push_to_hub: false."
            )
            return
        else:
            user = os.environ[var]
    ctx.params["push_to_hub"] = True
    ctx.params["hub_repo_id"] = f"{user}/{ctx.values.get('project_name')}" if user else str(ctx.values["project_name"])


def _trainer_key(ctx: _Ctx, key: str, value: Any) -> None:
    """The trainer chose the task (LLM) or is read by the task's hook (sentence-transformers mode)."""
    if ctx.at.trainer and key in ctx.given and str(value) != ctx.at.trainer:
        ctx.notes.append(
            f"task `{ctx.at.trainer}` and params.trainer `{value}` disagree: AutoTrain's parser lets "
            f"params.trainer win, so this is a `{value}` job ({ctx.task.name})."
        )
    note = RULES[ctx.at.params][key].note
    if note:
        ctx.notes.append(f"trainer {value}: {note}")


def block_length(values: dict[str, Any], tokenizer_max: int | None) -> int:
    """AutoTrain's packed length (configure_block_size + get_tokenizer): `block_size` (-1/None: the tokenizer's
    limit but at most 1024), never above the tokenizer's limit; a tokenizer limit over 2048 is replaced by
    `model_max_length`. ``tokenizer_max`` None (tokenizer not on this machine) counts as over 2048."""
    limit = values.get("model_max_length", 2048)
    tok = tokenizer_max if tokenizer_max is not None and tokenizer_max <= 2048 else limit
    block = values.get("block_size", -1)
    if block in (-1, None):
        return min(tok, 1024)
    return min(int(block), tok)


def _tokenizer_max(base_model: str) -> int | None:
    from engine.llm.data import tokenizer_folder

    folder = tokenizer_folder(base_model)
    try:
        value = json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length") if folder else None
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, (int, float)) else None


def _lengths(ctx: _Ctx, key: str, value: Any) -> None:
    """block_size = the packed sequence length; model_max_length = the tokenizer's truncation limit (which caps
    block_size). Both become the one Trainpad length with that meaning: `max_length` (and `block_size`)."""
    if key != "block_size":
        return
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value):
        ctx.problems.append(
            f"AutoTrain `block_size: {value}` lists several lengths; Trainpad trains one length per run: "
            "give one number."
        )
        return
    values = {**ctx.values, "block_size": int(value) if value not in (None, "") else -1}
    block = block_length(values, _tokenizer_max(str(ctx.values.get("model") or "")))
    for target in ("max_length", "block_size"):
        if target in ctx.task.params.model_fields:
            ctx.params[target] = block
    if "block_size" in ctx.given and "model_max_length" in ctx.given:
        ctx.notes.append(
            f"block_size {ctx.given['block_size']} and model_max_length {ctx.given['model_max_length']}: "
            f"sequences of {block} tokens (max_length {block}); model_max_length is AutoTrain's tokenizer "
            "truncation limit, which only caps block_size."
        )


def _add_eos(ctx: _Ctx, key: str, value: Any) -> None:
    if ctx.trainer not in ("default", "generic"):
        if key in ctx.given and value is False:
            ctx.notes.append("`add_eos_token: false` ignored: AutoTrain uses it only for its generic trainer.")
        return
    if value is False and key in ctx.given:
        ctx.problems.append(
            "AutoTrain `add_eos_token: false` cannot be honoured: Trainpad's continued pretraining always ends "
            "each document with the EOS token, so documents never run together. Remove the key."
        )


def _chat_template(ctx: _Ctx, key: str, value: Any) -> None:
    """none/null: the column is used as plain text; tokenizer/chatml/zephyr: the column holds chats."""
    if value in (None, "none", "None", ""):
        return
    if value not in ("tokenizer", "chatml", "zephyr"):
        ctx.problems.append(f"AutoTrain `chat_template: {value}`: use none, tokenizer, chatml or zephyr.")
        return
    if "chat_template" not in ctx.task.params.model_fields:
        ctx.notes.append(f"`chat_template: {value}` ignored: {ctx.task.name} reads plain text.")
        return
    ctx.params["chat_template"] = value
    if value != "tokenizer":
        ctx.notes.append(
            f"chat_template {value}: Trainpad writes the {value} markers as text; AutoTrain also adds them to the "
            "vocabulary as special tokens (new embedding rows). The training text is the same."
        )


def _quantization(ctx: _Ctx, key: str, value: Any) -> None:
    """AutoTrain quantizes the base model only for LoRA (peft)."""
    quantized = value not in (None, "none", "")
    if not ctx.values.get("peft"):
        if key in ctx.given and quantized:
            ctx.notes.append(f"`quantization: {value}` ignored: AutoTrain quantizes only with peft: true.")
        return
    if "quantization" in ctx.task.params.model_fields:
        ctx.params["quantization"] = value if quantized else "none"
    elif quantized:
        source = f"`quantization: {value}`" if key in ctx.given else f"AutoTrain's default quantization ({value})"
        ctx.notes.append(
            f"{source} ignored: Trainpad's {ctx.task.name} trains LoRA on the unquantized base model (more memory, "
            "no quantization error; the same adapter training otherwise)."
        )


def _model_ref(ctx: _Ctx, key: str, value: Any) -> None:
    if value in (None, "") or ctx.trainer != "dpo":
        if value not in (None, ""):
            ctx.notes.append("`model_ref` ignored: AutoTrain uses it only for DPO.")
        return
    if ctx.values.get("peft"):
        ctx.notes.append("`model_ref` ignored: with peft AutoTrain uses the base model (adapter off) as reference.")
    elif value != ctx.values.get("model"):
        ctx.problems.append(
            f"AutoTrain `model_ref: {value}` cannot be honoured: Trainpad's DPO reference is the base model "
            f"({ctx.values.get('model')}). Remove model_ref, or train from {value}."
        )


def _tabular_model(ctx: _Ctx, key: str, value: Any) -> None:
    name = str(value or "")
    if name not in TABULAR_MODELS:
        ctx.problems.append(
            f"AutoTrain tabular model `{name}` is not in Trainpad: use one of {', '.join(TABULAR_MODELS)} "
            "(or set `model: auto` in a Trainpad config to search every family)."
        )
        return
    ctx.params["model"] = TABULAR_MODELS[name]
    if TABULAR_MODELS[name] != name:
        ctx.notes.append(
            f"model {name}: Trainpad's `{TABULAR_MODELS[name]}` family stands in for it (same kind of model, "
            "different library)."
        )


def _targets(ctx: _Ctx, key: str, value: Any) -> None:
    names = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    names = [str(n).strip() for n in names if str(n).strip()]
    if len(names) == 1:
        ctx.params.setdefault("column_mapping", {})["target"] = names[0]
    elif names:
        ctx.params["target_columns"] = ",".join(names)


def _tabular_task(ctx: _Ctx, key: str, value: Any) -> None:
    """AutoTrain's classification (binary or multi-class; multi-label with several targets) or regression."""
    if value == "regression":
        ctx.params["problem_type"] = "regression"
    elif value == "classification":
        targets = ctx.values.get("target_columns") or []
        several = isinstance(targets, (list, tuple)) and len(targets) > 1
        ctx.params["problem_type"] = "multilabel" if several else "multiclass"  # 2 classes -> binary
    else:
        ctx.problems.append(f"AutoTrain tabular `task: {value}`: use classification or regression.")


PREPROCESSING = {
    # AutoTrain value -> what Trainpad does instead (None: Trainpad does the same).
    "numerical_imputer": {"median": None, "mean": "the median (plus a missing-value indicator)"},
    "categorical_imputer": {"most_frequent": "a separate `missing` category"},
    "numeric_scaler": {
        "standard": None,
        "robust": "standard scaling for linear, SVM and kNN models and none for trees",
        "minmax": "standard scaling for linear, SVM and kNN models and none for trees",
        "normal": "standard scaling for linear, SVM and kNN models and none for trees",
    },
}


def _preprocessing(ctx: _Ctx, key: str, value: Any) -> None:
    if value in (None, "", "none") or key not in ctx.given:
        return
    choices = PREPROCESSING[key]
    if value not in choices:
        ctx.problems.append(f"AutoTrain `{key}: {value}`: AutoTrain accepts {', '.join(choices)} or none.")
        return
    instead = choices[value] or "the same"
    ctx.notes.append(
        f"`{key}: {value}` ignored: Trainpad prepares columns per model family ({instead}); on rows with "
        "missing values or outliers results can differ slightly."
    )


SPECIAL = {
    "name": _name,
    "split": _split,
    "hub": _hub,
    "trainer": _trainer_key,
    "lengths": _lengths,
    "add_eos": _add_eos,
    "chat_template": _chat_template,
    "quantization": _quantization,
    "model_ref": _model_ref,
    "tabular_model": _tabular_model,
    "targets": _targets,
    "tabular_task": _tabular_task,
    "preprocessing": _preprocessing,
}


# ---- backends ------------------------------------------------------------------------------------------------


def _backend(value: Any) -> tuple[str, str]:
    """AutoTrain's `backend:` -> Trainpad's, with a note. local* runs here; AutoTrain's hosted backends run on HF
    Jobs when that backend is installed, else the config runs only with an explicit ``--backend``."""
    name = str(value or "local")
    if name.startswith(BACKENDS_LOCAL):
        return "local", ""
    if name.startswith(BACKENDS_REMOTE):
        if importlib.util.find_spec("engine.run.backends.hf_jobs") is not None:
            hardware = name.split("-", 1)[1] if name.startswith("spaces-") else ""
            same = f" (set TRAINPAD_HF_FLAVOR={hardware} for the same hardware)" if hardware else ""
            return "hf-jobs", f"backend {name} (AutoTrain's hosted hardware) runs on Hugging Face Jobs{same}."
        return name, (
            f"backend `{name}` is AutoTrain's hosted hardware (Spaces, Endpoints, NGC/NVCF), which this Trainpad "
            "cannot launch: `trainpad run --backend local` runs it here, or pick a Trainpad backend."
        )
    return name, f"backend `{name}` is not an AutoTrain backend."


def backend_of(data: dict[str, Any]) -> str:
    """Where an AutoTrain config runs; UserError for a hosted backend Trainpad cannot launch."""
    doc, notes = convert(data)
    if doc["backend"].startswith(BACKENDS_REMOTE) or doc["backend"] not in ("local", "hf-jobs", "ray"):
        raise UserError(notes[-1] if notes else f"backend `{doc['backend']}` cannot be launched.")
    return doc["backend"]


def load(data: dict[str, Any], env: bool = False) -> dict[str, Any]:
    """Convert an AutoTrain config for ``engine.config`` and print its notes (to stderr) as it loads. ``env``: the
    config comes from the command line and may read ``${VAR}`` (hub.username) from the environment."""
    doc, notes = convert(data, env)
    for line in notes:
        print(f"[AutoTrain config] {line}", file=sys.stderr)
    return doc


def notes(data: dict[str, Any]) -> list[str]:
    """What loading this AutoTrain config ignores or adjusts, one sentence each (for the UI's Load config)."""
    return convert(data)[1] if is_autotrain(data) else []


# ---- AutoTrain's command line ---------------------------------------------------------------------------------

_CLI_ONLY = {"train", "deploy", "inference", "backend"}


def parse_command(command: str) -> dict[str, Any]:
    """``autotrain llm --train --model m --data-path d --trainer sft ...`` -> the same job as an AutoTrain YAML
    dict (so the same mapping and policy apply). Flags are the params class's keys (`--lr`, `--data-path` or
    `--data_path`); AutoTrain's CLI defaults apply (e.g. its LLM `--block-size` is 1024, not -1)."""
    words = shlex.split(command)
    if words and Path(words[0]).name == "autotrain":
        words = words[1:]
    if not words or words[0] not in CLI_COMMANDS:
        raise UserError(
            f"Not an AutoTrain training command: `{command[:80]}`. Expected `autotrain <command> --train ...` with "
            f"one of: {', '.join(CLI_COMMANDS)}."
        )
    at = TASKS[CLI_COMMANDS[words[0]]]
    flat = _flags(words[1:], DEFAULTS[at.params])
    if at.params == "LLM":
        flat.setdefault("block_size", 1024)  # run_llm.py's --block-size default
    backend = flat.pop("backend", "local")
    for key in _CLI_ONLY - {"backend"}:
        flat.pop(key, None)
    doc: dict[str, Any] = {"task": CLI_COMMANDS[words[0]], "backend": backend}
    for src, dst in (("model", "base_model"), ("project_name", "project_name")):
        if src in flat:
            doc[dst] = flat.pop(src)
    if "data_path" in flat:
        doc["data"] = {"path": flat.pop("data_path")}
    hub = {k: flat.pop(k) for k in ("username", "token", "push_to_hub") if k in flat}
    if hub:
        doc["hub"] = hub
    doc["params"] = flat
    return doc


def _flags(words: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise UserError(f"AutoTrain command: expected a --flag, got `{word}`.")
        key, _, inline = word[2:].partition("=")
        key = key.replace("-", "_")
        is_flag = isinstance(defaults.get(key), bool) or key in _CLI_ONLY - {"backend"}
        if is_flag and not inline:
            out[key] = True
            i += 1
            continue
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(words):
            value, i = words[i + 1], i + 2
        else:
            raise UserError(f"AutoTrain command: `--{key}` needs a value.")
        out[key] = _typed(value, defaults.get(key))
    return out


def _typed(text: str, default: Any) -> Any:
    """A CLI value as AutoTrain's argparse types it (int, float, str; `None` text for optional strings)."""
    if text.lower() == "none":
        return None
    for kind in (int, float):
        if isinstance(default, kind) and not isinstance(default, bool):
            try:
                return kind(text)
            except ValueError:
                break
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def masked(command: str) -> str:
    """The command line with the value of `--token` replaced by ***."""
    words, out, hide = shlex.split(command), [], False
    for word in words:
        flag = word.split("=", 1)[0].replace("_", "-")
        out.append("***" if hide else ("--token=***" if flag == "--token" and "=" in word else word))
        hide = flag == "--token" and "=" not in word
    return " ".join(w if w.endswith("***") else shlex.quote(w) for w in out)
