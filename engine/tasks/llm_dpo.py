"""LLM preference tuning with DPO (trl's DPOTrainer): prompt / chosen / rejected, as text or chats.

The reference model is the base model: with LoRA, the same model with its adapter disabled (no
second copy in memory); with full fine-tuning, a frozen copy loaded from ``base_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from engine import llm_utils as lu
from engine.params import field
from engine.task import Task

LOSS_TYPES = Literal[
    "sigmoid",
    "ipo",
    "hinge",
    "robust",
    "bco_pair",
    "sppo_hard",
    "nca_pair",
    "apo_zero",
    "apo_down",
    "sigmoid_norm",
    "discopop",
]


class Params(lu.PreferenceParams):
    """DPO options on top of the shared LLM and preference options."""

    beta: float = field(
        0.1,
        "How far the model may drift from the reference model: higher stays closer (0.1 is typical).",
        gt=0.0,
        le=10.0,
    )
    loss_type: LOSS_TYPES = field(
        "sigmoid",
        "DPO loss: sigmoid (the original DPO), ipo, hinge, robust (noisy labels), apo_zero/apo_down, ...",
        advanced=True,
    )
    label_smoothing: float = field(
        0.0,
        "Share of preference labels assumed flipped (robust loss).",
        ge=0.0,
        lt=0.5,
        advanced=True,
        show_if={"loss_type": "robust"},
    )


def train(params: Params, run_dir: Path) -> dict[str, float]:
    from trl import DPOConfig, DPOTrainer

    from engine import train_utils as tu

    train_ds, valid_ds = lu.preference_datasets("llm_dpo", params)
    has_eval = valid_ds is not None
    tok = lu.load_tokenizer(params)
    model = lu.load_causal_lm(params)
    lu.ready_to_train()

    class DPO(DPOTrainer):
        """DPOTrainer that also honours max_prompt_length (keeps the prompt's end) and max_completion_length."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if not (params.max_prompt_length or params.max_completion_length):
                return dataset
            return dataset.map(
                _truncate, fn_kwargs={"prompt": params.max_prompt_length, "completion": params.max_completion_length}
            )

    args = tu.training_arguments(
        params,
        run_dir,
        n_train=len(train_ds),
        has_eval=has_eval,
        args_cls=DPOConfig,
        metric="rewards/accuracies",
        greater_is_better=True,
        beta=params.beta,
        loss_type=[params.loss_type],
        label_smoothing=params.label_smoothing,
        max_length=params.max_length,
        dataset_num_proc=None,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = DPO(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        processing_class=tok,
        peft_config=lu.lora_config(params),
    )
    lu.add_callbacks(trainer, params, run_dir, has_eval)
    return lu.fit(trainer, params, run_dir, has_eval)


def _truncate(example: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    out = dict(example)
    if prompt and len(out["prompt_ids"]) > prompt:
        out["prompt_ids"] = out["prompt_ids"][-prompt:]
    if completion:
        out["chosen_ids"], out["rejected_ids"] = out["chosen_ids"][:completion], out["rejected_ids"][:completion]
    return out


def predict(model_dir: Path, inputs: Any) -> str:
    """Generate a reply for a prompt string or a chat (list of messages)."""
    return lu.generate(model_dir, inputs)


TASK = Task(
    name="llm_dpo",
    title="LLM preference tuning (DPO)",
    family="LLM",
    description="Teach a chat model which of two answers is better (Direct Preference Optimization): "
    "rows of prompt, chosen and rejected answers.",
    params=Params,
    columns=lu.PREFERENCE_COLUMNS,
    train=train,
    predict=predict,
    key_metric="eval_rewards/accuracies",
    greater_is_better=True,
    model_note="A causal language model, usually one already fine-tuned to chat (SFT) on similar prompts.",
    check_data=lu.check_preferences,
    predict_input="chat",
    autotrain_columns={"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"},
    data_summary=lu.data_summary,
    autotrain_names=["llm-dpo", "llm:dpo"],
)
