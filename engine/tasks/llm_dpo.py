"""LLM preference tuning with DPO (trl's DPOTrainer): prompt / chosen / rejected, as text or chats.

The reference model is the base model: with LoRA, the same model with its adapter disabled (no
second copy in memory); with full fine-tuning, a frozen copy loaded from ``base_model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from engine.llm import data as ld
from engine.llm import model as lm
from engine.params import field
from engine.task import Job, Task

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


class Params(ld.PreferenceParams):
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


def train(job: Job) -> dict[str, float]:
    from trl import DPOConfig

    from engine.llm import train as lt

    p = job.params
    trainer = lt.preference_trainer(
        job,
        lt.TruncatingDPOTrainer,
        DPOConfig,
        beta=p.beta,
        loss_type=[p.loss_type],
        label_smoothing=p.label_smoothing,
        include_num_input_tokens_seen="non_padding",
    )
    return lt.fit(trainer, job)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Preference accuracy on prompt / chosen / rejected test rows: the model's log-probability of the chosen answer
    (summed over its tokens) above the rejected one's; the mean margin; the smallest margins first."""
    from engine.llm import preference_eval

    return preference_eval.evaluate_policy(model_dir, df, options)


TASK = Task(
    name="llm_dpo",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM preference tuning (DPO)",
    family="LLM",
    description="Teach a chat model which of two answers is better (Direct Preference Optimization): "
    "rows of prompt, chosen and rejected answers.",
    params=Params,
    **ld.preference_task_fields(),
    memory_profile={
        "sequences_per_example": 2,
        "reference_model": True,
    },  # chosen + rejected per example (memory check)
    train=train,
    predict=lm.generate,
    evaluate=evaluate,
    key_metric="eval_rewards/accuracies",
    suggested_models=[
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="A causal language model, usually one already fine-tuned to chat (SFT) on similar prompts.",
    autotrain_names=["llm-dpo", "llm:dpo"],
)
