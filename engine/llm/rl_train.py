"""Building the online RL trainers (trl's GRPOTrainer and RLOOTrainer) and the rollouts view. Worker only: imports
torch, transformers, trl and datasets, so a task imports it inside its ``train(job)``.

The rollouts view: at each logging step, a few of the latest prompts with all their completions and each reward's
score, appended to ``rollouts.jsonl`` (``engine.train.charts.append_rollouts``) for the run page.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from engine import runfiles as rf
from engine.llm import model as lm
from engine.llm import rewards, rl
from engine.llm import train as lt
from engine.task import Job
from engine.train import charts
from engine.train import trainer as tu

ROLLOUT_PROMPTS = 2  # prompts shown per logging step, each with all its completions
ROLLOUT_CHARS = 2000  # each prompt and completion is cut to this in the file


def prompt_datasets(job: Job) -> tuple[Dataset, Dataset | None]:
    """Train and validation (or None) prompt datasets in trl's form, extra columns kept for the rewards."""
    train = Dataset.from_list(rl.prompt_rows(job.train))
    valid = Dataset.from_list(rl.prompt_rows(job.valid)) if lt.n_rows(job.valid) else None
    form = "chats" if isinstance(train[0]["prompt"], list) else "plain text"
    print(
        f"[trainpad] {len(train)} training prompts, {lt.n_rows(valid)} validation prompts; {form}; "
        f"LoRA={'on' if job.params.use_lora else 'off'}",
        flush=True,
    )
    return train, valid


def generation_config(params: Any) -> dict[str, Any]:
    """trl config fields every online method shares: completion length, sampling, vLLM."""
    extra: dict[str, Any] = {
        "max_completion_length": params.max_completion_length,
        "temperature": params.temperature,
        "use_vllm": params.use_vllm,
        "remove_unused_columns": False,
    }
    if params.use_vllm:
        extra["vllm_mode"] = "colocate"
    return extra


def online_trainer(job: Job, trainer_cls: type, config_cls: type, **config: Any) -> Any:
    """A GRPO/RLOO-style trainer on the job's prompts: the causal LM (LoRA when asked), the chosen rewards and
    weights, the shared generation settings and ``config`` on top of the shared training arguments."""
    params = job.params
    train_ds, valid_ds = prompt_datasets(job)
    tok = lm.load_tokenizer(params)
    tok.padding_side = "left"
    funcs, weights = rewards.build(params, tok, runs_dir=job.run_dir.parent)
    print(f"[trainpad] rewards: {', '.join(f'{f.__name__} x{w:g}' for f, w in zip(funcs, weights, strict=True))}")
    args = tu.training_arguments(
        job,
        len(train_ds),
        lt.n_rows(valid_ds),
        config_cls,
        num_generations=params.num_generations,
        beta=params.beta,
        reward_weights=weights,
        **generation_config(params),
        **config,
    )
    trainer = trainer_cls(
        model=lm.load_causal_lm(params),
        reward_funcs=funcs,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tok,
        peft_config=lm.lora_config(params),
    )
    trainer.rollouts_dir = job.run_dir
    return trainer


class RolloutsMixin:
    """Writes the rollouts view at each training log (rank 0), from the trainer's record of its latest generation
    batch (``_logs``: prompts, completions, each reward's scores, advantages)."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        run_dir, step = getattr(self, "rollouts_dir", None), self.state.global_step
        fresh = step != getattr(self, "rollouts_step", None)  # the end-of-training summary logs the step again
        if run_dir is not None and fresh and self.model.training and rf.is_main_process() and self._logs["prompt"]:
            self.rollouts_step = step
            try:
                charts.append_rollouts(run_dir, self.state.global_step, rollout_rows(self._logs))
            except Exception as e:  # noqa: BLE001 - a view, never a reason to fail training
                print(f"[trainpad] rollouts view skipped: {type(e).__name__}: {e}", flush=True)
        super().log(logs, start_time)


def rollout_rows(logs: dict[str, Any], prompts: int = ROLLOUT_PROMPTS) -> list[dict[str, Any]]:
    """The latest batch's first ``prompts`` distinct prompts, each with every completion and its scores."""
    texts = [rewards.text_of(p) for p in logs["prompt"]]
    chosen = list(dict.fromkeys(texts))[:prompts]
    scores = {name: list(values) for name, values in logs["rewards"].items()}
    advantages = list(logs["advantages"])
    rows = []
    for i, (prompt, completion) in enumerate(zip(texts, logs["completion"], strict=True)):
        if prompt not in chosen:
            continue
        row = {"prompt": prompt[-ROLLOUT_CHARS:], "completion": rewards.text_of(completion)[:ROLLOUT_CHARS]}
        row["rewards"] = {name: _number(values[i]) for name, values in scores.items() if i < len(values)}
        row["advantage"] = _number(advantages[i]) if i < len(advantages) else None
        rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    value = float(value)
    return None if value != value else round(value, 4)


class TrainpadGRPOTrainer(RolloutsMixin, GRPOTrainer):
    """GRPOTrainer that writes the rollouts view."""


class TrainpadRLOOTrainer(RolloutsMixin, RLOOTrainer):
    """RLOOTrainer that writes the rollouts view."""


def grpo(job: Job, **config: Any) -> Any:
    return online_trainer(job, TrainpadGRPOTrainer, GRPOConfig, **config)


def rloo(job: Job, **config: Any) -> Any:
    return online_trainer(job, TrainpadRLOOTrainer, RLOOConfig, **config)
