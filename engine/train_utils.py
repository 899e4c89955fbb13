"""Helpers shared by tasks trained with a Hugging Face ``Trainer`` (imported only in workers).

Plain functions: build ``TrainingArguments`` from :class:`engine.params.TrainerParams`, report
progress to ``events.jsonl`` through a callback, honour Stop (checkpoint, then exit), resume.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from engine import runfiles as rf

log = logging.getLogger("trainpad")
DEFAULT_GC = (700, 10, 10)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def precision_flags(mixed_precision: str) -> dict[str, bool]:
    """bf16/fp16 flags for TrainingArguments. auto: bf16 if the GPU supports it, else fp16; fp32 on CPU."""
    gpu = torch.cuda.is_available()
    if mixed_precision == "auto":
        if not gpu:
            return {"bf16": False, "fp16": False}
        return {"bf16": True, "fp16": False} if torch.cuda.is_bf16_supported() else {"bf16": False, "fp16": True}
    if mixed_precision in ("bf16", "fp16") and not gpu and mixed_precision == "fp16":
        raise ValueError("mixed_precision=fp16 needs a CUDA GPU; use `auto` or `no` on CPU.")
    return {"bf16": mixed_precision == "bf16", "fp16": mixed_precision == "fp16"}


def compute_dtype(mixed_precision: str) -> torch.dtype:
    flags = precision_flags(mixed_precision)
    return torch.bfloat16 if flags["bf16"] else torch.float16 if flags["fp16"] else torch.float32


def steps_per_epoch(n_train: int, params: Any, world_size: int = 1) -> int:
    return max(1, math.ceil(n_train / (params.batch_size * world_size)) // params.grad_accum or 1)


def training_arguments(
    params: Any,
    run_dir: Path,
    n_train: int,
    has_eval: bool,
    args_cls: type = TrainingArguments,
    metric: str | None = None,
    greater_is_better: bool = False,
    **extra: Any,
) -> Any:
    """TrainingArguments (or a subclass such as trl's configs) from the shared params."""
    per_epoch = steps_per_epoch(n_train, params)
    total = params.max_steps if params.max_steps > 0 else max(1, math.ceil(per_epoch * params.epochs))
    eval_strategy = params.eval_strategy if has_eval else "no"
    save_strategy = params.save_strategy
    best = keeps_best(params, has_eval)
    if best and save_strategy == "no":
        save_strategy = eval_strategy  # keeping the best model needs checkpoints at each evaluation
    kwargs: dict[str, Any] = dict(
        output_dir=str(Path(run_dir) / rf.CHECKPOINTS),
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        learning_rate=params.learning_rate,
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        lr_scheduler_type=params.scheduler,
        optim=params.optimizer,
        seed=params.seed,
        data_seed=params.seed,
        logging_steps=params.logging_steps or max(1, total // 25),
        logging_first_step=True,
        eval_strategy=eval_strategy,
        save_strategy=save_strategy,
        save_total_limit=params.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=params.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        load_best_model_at_end=best,
        metric_for_best_model=metric if best else None,
        greater_is_better=greater_is_better if best else None,
        **precision_flags(params.mixed_precision),
    )
    if eval_strategy == "steps":
        kwargs["eval_steps"] = params.eval_steps or max(1, total // 5)
    if save_strategy == "steps":
        kwargs["save_steps"] = kwargs.get("eval_steps", params.save_steps) if best else params.save_steps
    kwargs.update(extra)
    return args_cls(**kwargs)


class EventsCallback(TrainerCallback):
    """Writes one ``events.jsonl`` line per log/eval and honours Stop (checkpoint, then end training)."""

    def __init__(self, run_dir: Path, tokens_per_sample: float | None = None, perplexity: bool = False):
        self.run_dir = Path(run_dir)
        self.perplexity = perplexity
        self.tokens_per_sample = tokens_per_sample
        self.t0 = time.time()
        self.first_step_at: float | None = None

    def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
        gc.freeze()  # the model and libraries are loaded: keep them out of every later collection
        gc.set_threshold(*DEFAULT_GC)
        self.t0 = time.time()
        rf.write_event(
            self.run_dir,
            {
                "type": "start",
                "step": state.global_step,
                "max_steps": state.max_steps,
                "num_train_epochs": args.num_train_epochs,
            },
        )

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        if self.first_step_at is None:
            self.first_step_at = time.time()
            rf.write_event(
                self.run_dir, {"type": "first_step", "step": state.global_step, "max_steps": state.max_steps}
            )
        if rf.stop_requested():
            log.warning("Stop requested: saving a checkpoint at step %d and ending training.", state.global_step)
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        logs = dict(logs or {})
        elapsed = max(1e-9, time.time() - self.t0)
        event: dict[str, Any] = {
            "type": "eval" if any(k.startswith("eval_") for k in logs) else "log",
            "step": state.global_step,
            "epoch": state.epoch,
            "max_steps": state.max_steps,
        }
        for key, value in logs.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "total_flos"):
                event["loss" if key == "train_loss" and "loss" not in logs else key] = value
        if self.perplexity:
            event.update(lm_perplexity(logs))
        if event["type"] == "log":
            samples = (
                state.global_step
                * args.per_device_train_batch_size
                * args.gradient_accumulation_steps
                * args.world_size
            )
            event["samples_per_second"] = samples / elapsed
            tokens = getattr(state, "num_input_tokens_seen", 0) or (
                samples * self.tokens_per_sample if self.tokens_per_sample else 0
            )
            if tokens:
                event["tokens_per_second"] = tokens / elapsed
        rf.write_event(self.run_dir, event)


def lm_perplexity(metrics: dict[str, Any]) -> dict[str, float]:
    """``eval_perplexity`` from a language-modelling ``eval_loss`` (only meaningful for causal LM losses)."""
    loss = metrics.get("eval_loss")
    return {"eval_perplexity": math.exp(loss)} if isinstance(loss, (int, float)) and loss < 50 else {}


def keeps_best(params: Any, has_eval: bool) -> bool:
    """Early stopping and keeping the best checkpoint: only when there is validation data *and* evaluation
    during training (``eval_strategy`` "no" with a patience set just trains to the end)."""
    return has_eval and params.eval_strategy != "no" and params.early_stopping_patience > 0


def callbacks(
    params: Any, run_dir: Path, has_eval: bool, tokens_per_sample: float | None = None, perplexity: bool = False
) -> list[TrainerCallback]:
    """Events/Stop callback (with ``eval_perplexity`` for language-modelling losses) and early stopping."""
    cbs: list[TrainerCallback] = [EventsCallback(run_dir, tokens_per_sample, perplexity)]
    if keeps_best(params, has_eval):
        cbs.append(EarlyStoppingCallback(params.early_stopping_patience, params.early_stopping_threshold))
    return cbs


def train_and_save(
    trainer: Trainer, params: Any, run_dir: Path, has_eval: bool, save: bool = True, perplexity: bool = False
) -> dict[str, float]:
    """Train (resuming when asked), evaluate, save the model to ``run_dir/model``; return final metrics.

    On Stop the trainer has written a checkpoint; this returns the partial metrics and saves nothing else.
    """
    resume = params.resume_from or None
    if resume and not Path(resume).is_dir():
        raise FileNotFoundError(f"Checkpoint `{resume}` to resume from does not exist.")
    result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, float] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    metrics["train_loss"] = result.training_loss
    metrics["global_step"] = trainer.state.global_step
    if rf.stop_requested():
        return metrics
    if has_eval:
        metrics.update(trainer.evaluate())
        if perplexity:
            metrics.update(lm_perplexity(metrics))
        rf.write_event(
            run_dir,
            {
                "type": "final",
                "step": trainer.state.global_step,
                "epoch": trainer.state.epoch,
                **{k: v for k, v in metrics.items() if k.startswith("eval_")},
            },
        )
    if save:
        model_dir = Path(run_dir) / rf.MODEL_DIR
        trainer.save_model(str(model_dir))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(model_dir))
    return metrics


def setup_torch_threads() -> None:
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, n))
