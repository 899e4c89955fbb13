"""Reward modelling (trl's RewardTrainer): a one-output score head on a language model, trained so that
chosen answers score above rejected ones. The model predicts a score for a text or a chat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.llm import data as ld
from engine.llm import model as lm
from engine.params import field
from engine.task import Job, Task


class Params(ld.LLMParams):
    """Reward-model options on top of the shared LLM options."""

    learning_rate: float = field(
        1e-4, "Peak learning rate (1e-4 suits LoRA; use ~1e-5 for full fine-tuning).", gt=0, le=1.0
    )
    max_length: int = field(
        1024,
        "Longest chosen or rejected sequence in tokens (with its prompt). Longer pairs are left out of training.",
        ge=8,
        le=131072,
    )
    center_rewards: float = field(
        0.0,
        "Pull the scores towards 0 with this weight (e.g. 0.01), so that they are comparable across prompts.",
        ge=0.0,
        le=1.0,
        advanced=True,
    )


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from engine.llm import train as lt
    from engine.train import trainer as tu

    params = job.params
    train_ds, valid_ds = lt.preference_datasets(job.train, job.valid, params)
    tok = lm.load_tokenizer(params)
    model = lm.load_causal_lm(params, model_cls=AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    args = tu.training_arguments(
        job,
        len(train_ds),
        lt.n_rows(valid_ds),
        RewardConfig,
        max_length=params.max_length,
        dataset_num_proc=None,
        center_rewards_coefficient=params.center_rewards or None,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tok,
        peft_config=lm.lora_config(params, task_type="SEQ_CLS"),
    )
    _warn_dropped(len(train_ds), len(trainer.train_dataset), params.max_length)
    return lt.fit(trainer, job)


def _warn_dropped(before: int, after: int, max_length: int) -> None:
    if after == 0:
        from engine.errors import UserError

        raise UserError(f"Every training pair is longer than max_length={max_length} tokens. Raise max_length.")
    if after < before:
        print(
            f"[trainpad] {before - after} of {before} training pairs are longer than max_length={max_length} "
            "tokens and were left out.",
            flush=True,
        )


def predict(model_dir: Path, inputs: Any) -> float:
    """The reward score of a text, a chat (list of messages), or {"prompt": ..., "response": ...}."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    text, chat = _as_text(inputs, tok)
    enc = tok(text, return_tensors="pt", add_special_tokens=not chat)
    with torch.no_grad():
        return float(model(**enc).logits[0, 0])


def _as_text(inputs: Any, tok: Any) -> tuple[str, bool]:
    """The text to score and whether it came from a chat (rendered with the model's chat template)."""
    if isinstance(inputs, dict):
        prompt, answer = inputs.get("prompt"), str(inputs.get("response") or inputs.get("completion") or "")
        if "messages" in inputs:
            inputs = inputs["messages"]
        elif isinstance(prompt, list):
            inputs = [*prompt, {"role": "assistant", "content": answer}]
        else:
            inputs = str(prompt or inputs.get("text", "")) + answer
    if isinstance(inputs, list):
        return tok.apply_chat_template(ld.parse_messages(inputs, 1, "messages"), tokenize=False), True
    return str(inputs) + (tok.eos_token or ""), False


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of reward(chosen) > reward(rejected) on prompt / chosen / rejected test rows, and the mean margin;
    the smallest margins first."""
    from engine.llm import preference_eval

    return preference_eval.evaluate_reward(model_dir, df, options, _scored_text)


def _scored_text(prompt: Any, answer: Any, tok: Any) -> tuple[str, bool]:
    """An answer with its prompt as ``predict`` scores it: a chat rendered with the template, or prompt + answer."""
    if isinstance(answer, list):
        return _as_text([*(prompt or []), *answer], tok)
    return _as_text(str(prompt or "") + answer, tok)


TASK = Task(
    name="llm_reward",
    model_kind="text",
    hub_pipeline="text-generation",
    title="LLM reward model",
    family="LLM",
    description="Train a reward model that scores answers: rows of (prompt,) chosen and rejected answers. "
    "Used to rank answers or for RLHF.",
    params=Params,
    **ld.preference_task_fields(),
    memory_profile={"sequences_per_example": 2, "lm_logits": False},  # chosen + rejected per example (memory check)
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_accuracy",
    suggested_models=["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"],  # small first (CPU)
    greater_is_better=True,
    model_note="A causal language model; a one-output score head (AutoModelForSequenceClassification) is added.",
    autotrain_names=["llm-reward", "llm:reward"],
)
