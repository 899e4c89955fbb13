"""Building and running the LLM tasks' trainers. Worker only: imports torch, transformers, trl and datasets,
so a task imports it inside its ``train(job)``.

A task builds its datasets (:func:`preference_datasets` for prompt/chosen/rejected data) and its (trl)
trainer, the ones below where trl's needs a change, and ends with :func:`fit` (train, evaluate, save).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from datasets import Dataset
from transformers import Trainer, TrainerCallback
from trl import DPOTrainer, SFTTrainer

from engine import runfiles as rf
from engine.llm import data as ld
from engine.llm import model as lm
from engine.task import Job
from engine.train import charts
from engine.train import trainer as tu

with warnings.catch_warnings():  # ORPO is in trl.experimental (an "experimental" warning): we pin trl's range
    warnings.simplefilter("ignore")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

__all__ = ["ORPOConfig"]  # for llm_orpo, so that the warning is silenced in one place


def n_rows(data: Any) -> int:
    """Rows in a split (a DataFrame or a Dataset; 0 for None)."""
    return 0 if data is None else len(data)


def preference_datasets(train: Any, valid: Any, params: Any) -> tuple[Dataset, Dataset | None]:
    """Train and validation (or None) datasets of preference examples in trl's form, from the two splits."""
    train_ds = Dataset.from_list(ld.preference_rows(train))
    valid_ds = Dataset.from_list(ld.preference_rows(valid)) if n_rows(valid) else None
    form = "chats" if isinstance(train_ds[0]["chosen"], list) else "plain text"
    print(
        f"[trainpad] {len(train_ds)} training pairs, {n_rows(valid_ds)} validation pairs; "
        f"{form}; LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    return train_ds, valid_ds


def preference_trainer(job: Job, trainer_cls: type, config_cls: type, **config: Any) -> Any:
    """A DPO/ORPO-style trainer on the job's preference pairs, with the prompt and answer length limits."""
    params = job.params
    limits = {"max_prompt_length": params.max_prompt_length, "max_completion_length": params.max_completion_length}
    datasets = preference_datasets(job.train, job.valid, params)
    return causal_trainer(job, trainer_cls, config_cls, datasets, limits, **config)


def causal_trainer(
    job: Job,
    trainer_cls: type,
    config_cls: type,
    datasets: tuple[Any, Any],
    trainer_kw: dict | None = None,
    **config: Any,
) -> Any:
    """A trl trainer on (train, validation or None) datasets: the causal LM (with LoRA when asked), its tokenizer,
    and ``config`` on top of the shared training arguments (``max_length``, no dataset worker processes)."""
    params = job.params
    train_ds, valid_ds = datasets
    args = tu.training_arguments(
        job, len(train_ds), n_rows(valid_ds), config_cls, max_length=params.max_length, dataset_num_proc=None, **config
    )
    return trainer_cls(
        model=lm.load_causal_lm(params),
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=lm.load_tokenizer(params),
        peft_config=lm.lora_config(params),
        **(trainer_kw or {}),
    )


def fit(trainer: Any, job: Job, tokens_per_sample: float | None = None, perplexity: bool = False) -> dict[str, float]:
    """Attach Trainpad's callbacks, train (resuming when asked), evaluate when the trainer has validation data,
    then save the model (merged or adapter) and tokenizer unless Stop was pressed; return the final metrics."""
    params, run_dir, has_eval = job.params, job.run_dir, trainer.eval_dataset is not None
    for callback in tu.callbacks(params, run_dir, has_eval, tokens_per_sample, perplexity):
        trainer.add_callback(callback)
    if has_eval and (samples := SamplesCallback.for_job(trainer, job)) is not None:
        trainer.add_callback(samples)
    save = functools.partial(lm.save_lm, trainer, params)  # called with the model folder
    return tu.train_and_save(trainer, params, run_dir, has_eval, save=save, perplexity=perplexity)


SAMPLE_NEW_TOKENS = 48  # generated per sample: a glimpse of the model's answers, cheap even on CPU
SAMPLE_PROMPT_TOKENS = 256  # the end of a longer prompt is kept


class SamplesCallback(TrainerCallback):
    """At each evaluation, a few validation prompts generated greedily, appended to the run's samples file
    (``engine.train.charts.append_samples``) for the run page. Main process only; a failure is reported once in the
    log and never fails the run."""

    def __init__(self, run_dir: Any, tok: Any, prompts: list[dict[str, Any]]):
        self.run_dir, self.tok, self.prompts, self.last_step = run_dir, tok, prompts, -1

    @classmethod
    def for_job(cls, trainer: Any, job: Job) -> SamplesCallback | None:
        """The callback for a trainer with a generative model and validation prompts, on rank 0 of a run whose
        model is whole on it (not sharded by FSDP or DeepSpeed); else None."""
        args, model = trainer.args, trainer.model
        sharded = bool(getattr(args, "fsdp", None)) or bool(getattr(args, "deepspeed", None))
        can_generate = getattr(model, "can_generate", lambda: False)()
        if not rf.is_main_process() or sharded or not can_generate or trainer.processing_class is None:
            return None
        prompts = ld.sample_prompts(job.valid)
        return cls(job.run_dir, trainer.processing_class, prompts) if prompts else None

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None or state.global_step == self.last_step or rf.stop_requested():
            return
        self.last_step = state.global_step  # the final evaluation repeats the last one's step: generate once
        try:
            texts = generate(model, self.tok, [p["prompt"] for p in self.prompts])
        except Exception as e:  # a glimpse, never a reason to fail training
            print(f"[trainpad] sample generations skipped: {type(e).__name__}: {e}", flush=True)
            self.prompts = []
            return
        rows = [
            {"prompt": shown_prompt(p["prompt"]), "generated": t, "reference": p["reference"]}
            for p, t in zip(self.prompts, texts, strict=True)
        ]
        charts.append_samples(self.run_dir, state.global_step, rows)


def generate(model: Any, tok: Any, prompts: list[Any], max_new_tokens: int = SAMPLE_NEW_TOKENS) -> list[str]:
    """Greedy continuations of ``prompts`` (texts, or chats formatted with the tokenizer's chat template), one at
    a time (no padding to get wrong); the model is put back in training mode after."""
    import torch

    training, device = model.training, next(model.parameters()).device
    model.eval()
    out = []
    try:
        for prompt in prompts:
            ids = lm.encode_prompt(tok, prompt)["input_ids"][:, -SAMPLE_PROMPT_TOKENS:].to(device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # generation-config notes (sampling settings unused by greedy)
                found = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tok.pad_token_id,
                )
            out.append(tok.decode(found[0, ids.shape[1] :], skip_special_tokens=True).strip())
    finally:
        model.train(training)
    return out


def shown_prompt(prompt: Any) -> str:
    """A prompt as the samples table shows it: a chat as its turns, `role: content` one per line."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt) if isinstance(prompt, list) else str(prompt)


class FastLossSFTTrainer(SFTTrainer):
    """SFTTrainer with the model's own cross-entropy (trl's fused-metrics loss path costs ~30% on CPU)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        inputs["use_cache"] = False
        return Trainer.compute_loss(
            self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


class TruncatingDPOTrainer(DPOTrainer):
    """DPOTrainer that also honours ``max_prompt_length`` (keeps the prompt's end) and
    ``max_completion_length`` (keeps each answer's start), 0 meaning no limit."""

    def __init__(self, *args: Any, max_prompt_length: int = 0, max_completion_length: int = 0, **kwargs: Any):
        self.limits = {"prompt": max_prompt_length, "completion": max_completion_length}
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        return dataset.map(_truncate_ids, fn_kwargs=self.limits) if any(self.limits.values()) else dataset


def _truncate_ids(example: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    out = dict(example)
    if prompt and len(out["prompt_ids"]) > prompt:
        out["prompt_ids"] = out["prompt_ids"][-prompt:]
    if completion:
        out["chosen_ids"], out["rejected_ids"] = out["chosen_ids"][:completion], out["rejected_ids"][:completion]
    return out


class TruncatingORPOTrainer(ORPOTrainer):
    """ORPOTrainer that also honours ``max_prompt_length`` (keeps the prompt's end) and
    ``max_completion_length`` (keeps each answer's start), 0 meaning no limit."""

    def __init__(self, *args: Any, max_prompt_length: int = 0, max_completion_length: int = 0, **kwargs: Any):
        self.limits = {"prompt": max_prompt_length, "completion": max_completion_length}
        super().__init__(*args, **kwargs)

    def tokenize_row(self, feature, model=None):  # noqa: ANN001
        tok, feature = self.processing_class, dict(feature)
        feature["prompt"] = truncate_text(tok, feature["prompt"], self.limits["prompt"], keep_end=True)
        for key in ("chosen", "rejected"):
            feature[key] = truncate_text(tok, feature[key], self.limits["completion"])
        return super().tokenize_row(feature, model)


def truncate_text(tok: Any, text: str, limit: int, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` tokens (its end when ``keep_end``); unchanged when it fits or limit is 0."""
    if not limit:
        return text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return tok.decode(ids[-limit:] if keep_end else ids[:limit])
