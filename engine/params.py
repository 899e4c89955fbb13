"""Parameters shared by every task, and the helpers that turn pydantic errors into plain text.

A task's ``Params`` subclasses :class:`CommonParams` (or :class:`TrainerParams` for tasks trained
with a Hugging Face ``Trainer``). Everything the UI form, the YAML config and the CLI know about a
parameter (default, bounds, choices, help, basic/advanced, when it applies) lives in its ``Field``.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import Problem, UserError

SECRET_FIELDS = ("hub_token",)
# Names people bring from transformers / AutoTrain, for "did you mean" hints.
ALIASES = {
    "lr": "learning_rate",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation": "grad_accum",
    "gradient_accumulation_steps": "grad_accum",
    "block_size": "max_length",
    "model_max_length": "max_length",
    "max_seq_length": "max_length",
    "peft": "use_lora",
    "evaluation_strategy": "eval_strategy",
    "lr_scheduler_type": "scheduler",
    "optim": "optimizer",
    "warmup_steps": "warmup_ratio",
    "model": "base_model",
    "train_path": "data_path",
}


def field(
    default: Any,
    help: str,
    *,
    advanced: bool = False,
    show_if: dict[str, Any] | None = None,
    group: str | None = None,
    hidden: bool = False,
    **bounds: Any,
) -> Any:
    """A pydantic ``Field`` carrying the UI hints: ``advanced``, ``show_if`` ({field: value(s)}), ``hidden``."""
    extra: dict[str, Any] = {"advanced": advanced}
    if hidden:
        extra["hidden"] = True
    if show_if:
        extra["show_if"] = show_if
    if group:
        extra["group"] = group
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class CommonParams(BaseModel):
    """What every task needs: a model, data and where they come from, a seed, Hub export."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    base_model: str = field("", "Hub model id (e.g. `HuggingFaceTB/SmolLM2-135M`) or a local model folder.")
    data_path: str = field(
        "",
        "Training data: a CSV/TSV/JSON/JSONL/Parquet file, a folder holding train/validation "
        "files, or a Hub dataset id.",
    )
    valid_path: str = field("", "Optional separate validation file. Empty: use `valid_split` or `valid_fraction`.")
    data_config: str = field("", "Hub dataset config (subset) name, if the dataset has several.", advanced=True)
    train_split: str = field("train", "Split used for training (Hub datasets and data folders).", advanced=True)
    valid_split: str = field(
        "", "Split used for validation (Hub datasets and data folders). Empty: none.", advanced=True
    )
    valid_fraction: float = field(
        0.1,
        "Share of the training rows held out for validation when no validation data is given (0 = no validation).",
        ge=0.0,
        le=0.5,
    )
    column_mapping: dict[str, str] = field(
        {}, "Which column of your data plays which role, e.g. {text: review}. Empty: match by name."
    )
    seed: int = field(42, "Random seed for data splits, initialisation and shuffling.", advanced=True, ge=0)
    max_rows: int = field(
        0, "Use at most this many training rows (0 = all). Handy for a quick try.", advanced=True, ge=0
    )
    trust_remote_code: bool = field(
        False, "Allow the model's own Python code from the Hub to run. Only for models you trust.", advanced=True
    )
    push_to_hub: bool = field(
        False, "Upload the trained model to the Hugging Face Hub at the end.", advanced=True, group="hub"
    )
    hub_repo_id: str = field(
        "",
        "Hub repository to push to, e.g. `your-name/my-model`.",
        advanced=True,
        show_if={"push_to_hub": True},
        group="hub",
    )
    hub_private: bool = field(
        True, "Create the Hub repository as private.", advanced=True, show_if={"push_to_hub": True}, group="hub"
    )
    resume_from: str = field("", "Checkpoint folder to resume from (set by Resume).", advanced=True)
    hf_flavor: str = field(
        "",
        "Hugging Face Jobs hardware when the run goes to `hf-jobs` (e.g. a10g-small, a100-large); empty: "
        "$TRAINPAD_HF_FLAVOR, else a10g-small. Other backends ignore it.",
        advanced=True,
    )


class TrainerParams(CommonParams):
    """Optimisation settings shared by every task trained with a Hugging Face ``Trainer``."""

    epochs: float = field(3.0, "Number of passes over the training data.", gt=0, le=1000)
    learning_rate: float = field(5e-5, "Peak learning rate.", gt=0, le=1.0)
    batch_size: int = field(8, "Examples per device per step.", ge=1, le=4096)
    grad_accum: int = field(
        1, "Gradient accumulation steps (effective batch = batch_size x this).", ge=1, le=1024, advanced=True
    )
    max_steps: int = field(-1, "Stop after this many optimizer steps (-1 = use epochs).", ge=-1, advanced=True)
    warmup_ratio: float = field(
        0.0, "Share of the steps spent warming the learning rate up.", ge=0.0, le=0.5, advanced=True
    )
    weight_decay: float = field(0.0, "Weight decay (L2) applied by the optimizer.", ge=0.0, le=1.0, advanced=True)
    max_grad_norm: float = field(1.0, "Clip gradients to this norm (0 = no clipping).", ge=0.0, advanced=True)
    scheduler: Literal[
        "linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial", "inverse_sqrt"
    ] = field("linear", "Learning-rate schedule after warm-up.", advanced=True)
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_8bit", "paged_adamw_8bit"] = (
        field("adamw_torch", "Optimizer. 8-bit optimizers need a GPU and bitsandbytes.", advanced=True)
    )
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = field(
        "auto",
        "Number format for training. auto: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU.",
        advanced=True,
    )
    logging_steps: int = field(0, "Log every N steps (0 = about 25 points per run).", ge=0, advanced=True)
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio"] = field(
        "none",
        "Also log to an experiment tracker, if installed (pip install tensorboard / wandb / mlflow / trackio). "
        "Its files stay in the run folder; W&B runs offline unless WANDB_API_KEY is set.",
        advanced=True,
    )
    eval_strategy: Literal["epoch", "steps", "no"] = field(
        "epoch", "When to evaluate on the validation split.", advanced=True
    )
    eval_steps: int = field(
        0,
        "Evaluate every N steps when eval_strategy is steps (0 = about 5 per run).",
        ge=0,
        advanced=True,
        show_if={"eval_strategy": "steps"},
    )
    save_strategy: Literal["epoch", "steps", "no"] = field(
        "no", "When to write a resumable checkpoint (a checkpoint is always written on Stop).", advanced=True
    )
    save_steps: int = field(
        500,
        "Checkpoint every N steps when save_strategy is steps.",
        ge=1,
        advanced=True,
        show_if={"save_strategy": "steps"},
    )
    save_total_limit: int = field(2, "Keep at most this many checkpoints.", ge=1, le=100, advanced=True)
    early_stopping_patience: int = field(
        0, "Stop when the validation metric has not improved for N evaluations (0 = off).", ge=0, advanced=True
    )
    early_stopping_threshold: float = field(
        0.0, "Minimum improvement that counts for early stopping.", ge=0.0, advanced=True
    )
    gradient_checkpointing: bool = field(
        False, "Trade compute for memory (recomputes activations). Slower; off on CPU is best.", advanced=True
    )
    cpu_threads: int = field(
        0,
        "CPU threads for training (0 = auto: all cores, but 1 for tiny models, where threads cost more than they "
        "save). Ignored on GPU.",
        ge=0,
        le=512,
        advanced=True,
    )
    num_processes: int = field(
        1,
        "Processes to train on (one per GPU): 1 = one device, 0 = every GPU of the machine, N = N GPUs "
        "(on a CPU-only machine: N processes over gloo).",
        ge=0,
        le=64,
        advanced=True,
        group="devices",
    )
    gpus: str = field(
        "",
        "Which GPUs, e.g. `0,1` (empty = any free ones). A run never shares a GPU with another run unless you name it.",
        advanced=True,
        group="devices",
    )
    distributed: Literal["ddp", "fsdp"] = field(
        "ddp",
        "With several processes: ddp copies the model to each device; fsdp shards it (for models that do not fit one).",
        advanced=True,
        group="devices",
    )


class LoraParams(TrainerParams):
    """Trainer options plus LoRA (peft) adapters, for tasks that can train an adapter instead of all weights."""

    use_lora: bool = field(False, "Train a small LoRA adapter instead of all weights (much less memory).")
    lora_r: int = field(16, "LoRA rank.", ge=1, le=1024, show_if={"use_lora": True}, advanced=True)
    lora_alpha: int = field(32, "LoRA scaling (alpha).", ge=1, le=4096, show_if={"use_lora": True}, advanced=True)
    lora_dropout: float = field(
        0.05, "Dropout on the LoRA layers.", ge=0.0, le=0.9, show_if={"use_lora": True}, advanced=True
    )
    lora_target_modules: str = field(
        "all-linear",
        "Layers that get adapters: all-linear, or layer names separated by commas (e.g. q_proj,v_proj; q,v for T5).",
        show_if={"use_lora": True},
        advanced=True,
    )


def format_validation_error(err: ValidationError, model: type[BaseModel], data: dict[str, Any]) -> list[Problem]:
    """One plain sentence per pydantic error: the field, the value given, and how to fix it."""
    known = list(model.model_fields)
    problems = []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"]) or "(config)"
        if e["type"] == "extra_forbidden":
            alias = ALIASES.get(name)
            close = [alias] if alias in known else difflib.get_close_matches(name, known, n=1)
            hint = (
                f" Did you mean `{close[0]}`?"
                if close
                else " Remove it (see the task's example config for its parameters)."
            )
            problems.append(Problem(f"Unknown parameter `{name}` = {shown(e['input'])}.{hint}", field=name))
            continue
        given = e.get("input")
        fix = _fix_hint(model, str(e["loc"][0]) if e["loc"] else "", e)
        field_name = str(e["loc"][0]) if e["loc"] else None
        problems.append(Problem(f"Parameter `{name}` = {shown(given)}: {e['msg']}.{fix}", field=field_name))
    return problems


TOKEN_LIKE = re.compile(r"(hf_|sk-|ghp_|xox[bp]-|AKIA)[A-Za-z0-9_\-]{8,}")


def shown(value: Any) -> str:
    """A value as an error message may echo it: a token-like string, or the value of an environment variable
    whose name says it is a secret, is hidden."""
    if isinstance(value, str) and (TOKEN_LIKE.search(value) or _is_secret_value(value)):
        return "'***' (hidden: it looks like a secret)"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…'"


def _is_secret_value(value: str) -> bool:
    import os

    if len(value) < 6:
        return False
    names = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|AUTH|KEY|CREDENTIAL", re.IGNORECASE)
    return any(names.search(k) and v and (v in value or value in v) for k, v in os.environ.items() if len(v) >= 6)


def _fix_hint(model: type[BaseModel], name: str, e: dict[str, Any]) -> str:
    info = model.model_fields.get(name)
    if info is None:
        return ""
    bounds = []
    for meta in info.metadata:
        for key, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, key, None) is not None:
                bounds.append(f"{sign} {getattr(meta, key)}")
    if bounds:
        return f" Use a value {' and '.join(bounds)} (default {info.default!r})."
    if e["type"] == "literal_error":
        return f" Default is {info.default!r}."
    return ""


def validate_params(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """Validate ``data`` against ``model``; raise :class:`UserError` listing every problem at once."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(err, model, data)) from None


def public_dict(params: BaseModel) -> dict[str, Any]:
    """Params as plain data, without secrets: what goes into config files and the database."""
    return {k: v for k, v in params.model_dump(mode="json").items() if k not in SECRET_FIELDS}


def field_hints(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The UI hints of one field (``advanced``, ``show_if``, ``group``)."""
    extra = model.model_fields[name].json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}
