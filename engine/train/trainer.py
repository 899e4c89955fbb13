"""Helpers shared by tasks trained with a Hugging Face ``Trainer`` (imported only in workers).

Plain functions: build ``TrainingArguments`` from a :class:`engine.task.Job` (best model and early stopping
on the task's key metric), report progress to ``events.jsonl`` and set up torch threads and the garbage
collector through one callback, honour Stop (checkpoint, then exit), resume, and save the final model.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import EarlyStoppingCallback, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments

from engine import runfiles as rf
from engine.preflight import models
from engine.task import Job

log = logging.getLogger("trainpad")
DEFAULT_GC = (700, 10, 10)
TINY_MODEL = 1_000_000  # parameters; below this one CPU thread is faster (measured on a 2-core machine)
# Key metrics the trainer does not compute itself (the events callback derives them from eval_loss, in the same
# order): the best checkpoint is picked on the metric they come from.
DERIVED_METRICS = {"eval_perplexity": ("eval_loss", False)}


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


# ---- arguments ----------------------------------------------------------------------------


def stop_everywhere() -> bool:
    """Whether Stop was asked for, on any process of the run: with several processes every rank must stop at the
    same step (they save one checkpoint together), so the flag is shared at each step."""
    import torch.distributed as dist

    flag = rf.stop_requested()
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    shared = torch.tensor([1.0 if flag else 0.0], device=on)
    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
    if shared.item() > 0:
        rf.request_stop_quietly()
    return shared.item() > 0


def best_metric(task: Any, n_eval: int) -> tuple[str, bool]:
    """The metric that picks the best checkpoint and drives early stopping, and whether greater is better.

    The task's key metric, with one rule for metrics it cannot give: with fewer than 2 evaluation rows
    (metrics across rows such as R² are undefined on one row) and for a metric derived from the loss
    (``DERIVED_METRICS``), the trainer's ``eval_loss`` (lower is better) is used.
    """
    if n_eval < 2:
        return "eval_loss", False
    return DERIVED_METRICS.get(task.key_metric, (task.key_metric, task.greater_is_better))


def keeps_best(params: Any, has_eval: bool) -> bool:
    """Early stopping and keeping the best checkpoint: only when there is validation data *and* evaluation
    during training (``eval_strategy`` "no" with a patience set just trains to the end)."""
    return has_eval and params.eval_strategy != "no" and params.early_stopping_patience > 0


def schedule(params: Any, has_eval: bool, total_steps: int) -> dict[str, Any]:
    """When to evaluate and when to save. Keeping the best model needs a checkpoint at each evaluation, so then
    checkpoints follow the evaluations (the log says so when that changes the user's save settings)."""
    plan: dict[str, Any] = {"eval_strategy": params.eval_strategy if has_eval else "no"}
    if plan["eval_strategy"] == "steps":
        plan["eval_steps"] = params.eval_steps or max(1, total_steps // 5)
    if not keeps_best(params, has_eval):
        plan["save_strategy"] = params.save_strategy
        if params.save_strategy == "steps":
            plan["save_steps"] = params.save_steps
        return plan
    plan["save_strategy"] = plan["eval_strategy"]
    if "eval_steps" in plan:
        plan["save_steps"] = plan["eval_steps"]
    asked = (params.save_strategy, params.save_steps if params.save_strategy == "steps" else None)
    if asked != (plan["save_strategy"], plan.get("save_steps")):
        every = f"every {plan['save_steps']} steps" if "save_steps" in plan else "every epoch"
        print(
            f"[trainpad] note: early stopping keeps the best model, which needs a checkpoint at each evaluation: "
            f"checkpoints are saved {every}, with the evaluations (save_strategy was {params.save_strategy}).",
            flush=True,
        )
    return plan


def training_arguments(job: Job, n_train: int, n_eval: int, args_cls: type = TrainingArguments, **extra: Any) -> Any:
    """TrainingArguments (or a subclass such as trl's configs) for the job: the shared params, evaluation on
    ``n_eval`` rows (none: no evaluation), best model and early stopping on :func:`best_metric`."""
    metric, greater = best_metric(job.task, n_eval)
    return _arguments(job.params, job.run_dir, n_train, n_eval > 0, args_cls, metric, greater, **extra)


def _arguments(
    params: Any,
    run_dir: Path,
    n_train: int,
    has_eval: bool,
    args_cls: type = TrainingArguments,
    metric: str | None = None,
    greater_is_better: bool = False,
    **extra: Any,
) -> Any:
    """TrainingArguments from the shared params with the best-model metric given explicitly."""
    per_epoch = steps_per_epoch(n_train, params)
    total = params.max_steps if params.max_steps > 0 else max(1, math.ceil(per_epoch * params.epochs))
    best = keeps_best(params, has_eval)
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
        save_total_limit=params.save_total_limit,
        report_to=trackers(params, run_dir),
        # Under several processes transformers multiplies the loss by their number when a model's forward takes
        # **kwargs, even if its loss ignores num_items_in_batch (classification heads): keep per-rank means.
        average_tokens_across_devices=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=params.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        load_best_model_at_end=best,
        metric_for_best_model=metric if best else None,
        greater_is_better=greater_is_better if best else None,
        **schedule(params, has_eval, total),
        **precision_flags(params.mixed_precision),
    )
    kwargs.update(extra)
    return args_cls(**kwargs)


def trackers(params: Any, run_dir: Path) -> str:
    """The Trainer's ``report_to``: the chosen tracker when installed, writing into the run folder and offline
    unless the user set it up for a server ("none", with a warning in the log, when it is not installed)."""
    name = getattr(params, "report_to", "none") or "none"
    if name == "none":
        return "none"
    if not models.tracker_installed(name):
        log.warning("report_to=%s: the package is not installed (pip install %s); not reporting.", name, name)
        return "none"
    run_dir = Path(run_dir)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    if not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("MLFLOW_TRACKING_URI", (run_dir / "mlruns").as_uri())
    os.environ.setdefault("TRACKIO_DIR", str(run_dir / "trackio"))
    return name


# ---- threads and the garbage collector ----------------------------------------------------


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(cpu_threads: int | None, model: Any = None) -> int:
    """Set torch's CPU threads and return how many: ``cpu_threads`` when set; 0 (auto) = every core, but 1 for a
    tiny model (threads cost more than they save); None (the task has no such setting) = every core."""
    n = cpu_threads or available_cores()
    if cpu_threads == 0 and model is not None and sum(p.numel() for p in model.parameters()) < TINY_MODEL:
        n = 1
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


# ---- progress, Stop -----------------------------------------------------------------------


PACE_EVERY_S = 2.0  # how often the step and pace are reported between logs
LOG_EVERY_S = 15.0  # with automatic logging_steps, the loss is logged at least this often: a live curve at once


class EventsCallback(TrainerCallback):
    """Sets up the process for training (torch threads, garbage collector), writes one ``events.jsonl`` line per
    log/eval and honours Stop (checkpoint, then end training)."""

    def __init__(
        self,
        run_dir: Path,
        tokens_per_sample: float | None = None,
        perplexity: bool = False,
        cpu_threads: int | None = None,
        log_every_s: float | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.log_every_s = log_every_s
        self.perplexity = perplexity
        self.tokens_per_sample = tokens_per_sample
        self.cpu_threads = cpu_threads
        self.t0 = time.time()
        self.first_step_at: float | None = None
        self.paced: tuple[float, int] = (self.t0, 0)  # (time, step) of the last pace report
        self.last: tuple[float, int, float] = (self.t0, 0, 0.0)  # (time, step, tokens) at the last log

    def on_train_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
        threads = set_threads(self.cpu_threads, model)
        gc.enable()
        gc.freeze()  # the model and libraries are loaded: keep them out of every later collection
        gc.set_threshold(*DEFAULT_GC)
        print(
            f"[trainpad] training on {device()} with {threads} CPU thread(s), {args.world_size} process(es)", flush=True
        )
        self.t0 = time.time()
        self.last = (self.t0, state.global_step, float(getattr(state, "num_input_tokens_seen", 0) or 0))
        rf.write_event(
            self.run_dir,
            {
                "type": "start",
                "step": state.global_step,
                "max_steps": state.max_steps,
                "num_train_epochs": args.num_train_epochs,
                "world_size": args.world_size,
            },
        )

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        if self.first_step_at is None:
            self.first_step_at = time.time()
            self.paced = (self.first_step_at, state.global_step)
            rf.write_event(
                self.run_dir, {"type": "first_step", "step": state.global_step, "max_steps": state.max_steps}
            )
        else:
            self.report_pace(state)
        if self.log_every_s and time.time() - self.last[0] > self.log_every_s and state.global_step > self.last[1]:
            control.should_log = True  # a long run's first log would otherwise come after minutes
        if stop_everywhere():
            log.warning("Stop requested: saving a checkpoint at step %d and ending training.", state.global_step)
            control.should_save = True
            control.should_training_stop = True
        return control

    def report_pace(self, state: Any) -> None:
        """Every few seconds, the step reached and the measured seconds per step since the last report (the first
        step, with its warm-up, left out): the run page's progress moves between logs and its ETA is measured."""
        now, (since, from_step) = time.time(), self.paced
        if now - since < PACE_EVERY_S or state.global_step <= from_step:
            return
        step_time = (now - since) / (state.global_step - from_step)
        self.paced = (now, state.global_step)
        event = {"type": "progress", "step": state.global_step, "epoch": state.epoch, "max_steps": state.max_steps}
        rf.write_event(self.run_dir, {**event, "step_time": step_time})

    def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
        logs = dict(logs or {})
        event: dict[str, Any] = {
            "type": "eval" if any(k.startswith("eval_") for k in logs) else "log",
            "step": state.global_step,
            "epoch": state.epoch,
            "max_steps": state.max_steps,
        }
        for key, value in logs.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "total_flos"):
                event[key] = value  # the run-average `train_loss` stays itself: it is no last point of `loss`
        if self.perplexity:
            event.update(lm_perplexity(logs))
        if event["type"] == "log" and "train_loss" not in logs:
            event.update(self.throughput(args, state))
        rf.write_event(self.run_dir, event)

    def throughput(self, args: Any, state: Any) -> dict[str, float]:
        """Samples (and tokens, when known) per second since the previous log: an interval rate, so a resumed
        run starts with no spike and a slow stretch shows where it happened."""
        now, step = time.time(), state.global_step
        last_time, last_step, last_tokens = self.last
        elapsed = max(1e-9, now - last_time)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        samples = max(0, step - last_step) * per_step
        seen = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens = seen - last_tokens if seen else (samples * self.tokens_per_sample if self.tokens_per_sample else 0)
        self.last = (now, step, seen)
        out = {"samples_per_second": samples / elapsed}
        if tokens:
            out["tokens_per_second"] = tokens / elapsed
        return out


def lm_perplexity(metrics: dict[str, Any]) -> dict[str, float]:
    """``eval_perplexity`` from a language-modelling ``eval_loss`` (only meaningful for causal LM losses)."""
    loss = metrics.get("eval_loss")
    return {"eval_perplexity": math.exp(loss)} if isinstance(loss, (int, float)) and loss < 50 else {}


def callbacks(
    params: Any, run_dir: Path, has_eval: bool, tokens_per_sample: float | None = None, perplexity: bool = False
) -> list[TrainerCallback]:
    """Events/Stop/threads callback (with ``eval_perplexity`` for language-modelling losses) and early stopping."""
    cbs: list[TrainerCallback] = [
        EventsCallback(
            run_dir,
            tokens_per_sample,
            perplexity,
            getattr(params, "cpu_threads", None),
            log_every_s=None if getattr(params, "logging_steps", 0) else LOG_EVERY_S,
        )
    ]
    if keeps_best(params, has_eval):
        cbs.append(EarlyStoppingCallback(params.early_stopping_patience, params.early_stopping_threshold))
        cbs.append(ReloadBestCallback())
    return cbs


# The Trainer's own warnings when the best checkpoint's weight names differ from the model's (handled below).
RELOAD_WARNINGS = (
    "There were missing keys in the checkpoint model loaded",
    "There were unexpected keys in the checkpoint model loaded",
)


def _misleading(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(RELOAD_WARNINGS)


class ReloadBestCallback(TrainerCallback):
    """Makes sure the *best* weights are the ones kept at the end of training.

    transformers 5.24 saves many models with their weights renamed (ViT, Swin, BEiT, DINOv2, the DETR family,
    RT-DETR, D-FINE, LLaVA-style VLMs: ``model.vision_tower…`` in memory, ``vision_tower…`` on disk), but the
    Trainer's best-model reload reads the file as it is: every renamed weight is reported missing and the *last*
    weights stay. When the checkpoint's names do not cover the model's, the best checkpoint is reloaded with
    ``from_pretrained`` (which applies the renaming). Text encoders and decoder LLMs save their own names: the
    check reads only the checkpoint's header and nothing is reloaded. LoRA adapters are reloaded right by the
    Trainer itself; models that are not a transformers ``PreTrainedModel`` (sentence-transformers) are left to it."""

    def on_train_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
        if args.load_best_model_at_end and model is not None and not hasattr(model, "peft_config"):
            logging.getLogger("transformers.trainer").addFilter(_misleading)

    def on_train_end(self, args, state, control, model=None, **kw):  # noqa: ANN001
        logging.getLogger("transformers.trainer").removeFilter(_misleading)
        best = state.best_model_checkpoint
        if not (args.load_best_model_at_end and best and model is not None) or hasattr(model, "peft_config"):
            return
        if not isinstance(model, PreTrainedModel) or not renamed_on_disk(model, Path(best)):
            return
        fresh = type(model).from_pretrained(best)
        model.load_state_dict(fresh.state_dict())
        del fresh
        print(f"[trainpad] kept the best model: {Path(best).name} ({args.metric_for_best_model} = "
              f"{state.best_metric:.4g})", flush=True)  # fmt: skip


def renamed_on_disk(model: Any, checkpoint: Path) -> bool:
    """Whether ``checkpoint``'s safetensors lack some of ``model``'s weights (tied copies aside): read from the
    files' headers only."""
    from safetensors import safe_open

    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        return False  # not a format we can compare: leave the Trainer's reload as it is
    on_disk: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            on_disk.update(f.keys())
    weights = model.state_dict()
    stored = {weights[k].data_ptr() for k in on_disk if k in weights}
    return any(k not in on_disk and weights[k].data_ptr() not in stored for k in weights)


# ---- train, evaluate, save ----------------------------------------------------------------


def save_trainer_model(trainer: Trainer, model_dir: Path) -> None:
    """The trainer's model and its tokenizer/processor, as ``from_pretrained`` loads them."""
    trainer.save_model(str(model_dir))
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(str(model_dir))


def train_and_save(
    trainer: Trainer,
    params: Any,
    run_dir: Path,
    has_eval: bool,
    save: bool | Callable[[Path], None] = True,
    perplexity: bool = False,
) -> dict[str, float]:
    """Train (resuming when asked), evaluate, save the model to ``run_dir/model``; return final metrics.

    ``save``: True saves the trainer's model and tokenizer; a function ``save(model_dir)`` saves the task's way;
    False saves nothing. Saving goes through :func:`engine.runfiles.save_unless_stopped`: on Stop the trainer
    has written a checkpoint, and this returns the partial metrics and saves nothing else.
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
        metrics.update(final_evaluation(trainer, run_dir, perplexity))
    if save:
        rf.save_unless_stopped(save if callable(save) else lambda d: save_trainer_model(trainer, d), run_dir)
    return metrics


def final_evaluation(trainer: Trainer, run_dir: Path, perplexity: bool = False) -> dict[str, float]:
    """Evaluate the final (or best) model and write the ``final`` event."""
    metrics = trainer.evaluate()
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
    return metrics
