"""LLM preference tuning with ORPO (trl.experimental.orpo): SFT and preference in one loss, no reference model.

ORPO moved to ``trl.experimental.orpo`` in trl 1.x; its trainer tokenizes plain text itself and renders
chats with the tokenizer's chat template (the one chosen in ``chat_template``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.llm import data as ld
from engine.llm import model as lm
from engine.params import field
from engine.task import Job, Task


class Params(ld.PreferenceParams):
    """ORPO options on top of the shared LLM and preference options."""

    beta: float = field(
        0.1,
        "Weight of the odds-ratio (preference) term beside the SFT loss on chosen answers (λ in the paper).",
        gt=0.0,
        le=10.0,
    )


def train(job: Job) -> dict[str, float]:
    from engine.llm import train as lt

    trainer = lt.preference_trainer(
        job, lt.TruncatingORPOTrainer, lt.ORPOConfig, beta=job.params.beta, remove_unused_columns=False
    )
    return lt.fit(trainer, job, tokens_per_sample=_tokens_per_pair(trainer.train_dataset))


def _tokens_per_pair(dataset: Any) -> float:
    """Mean tokens in one training example (chosen + rejected sequences), for the tokens/s figure."""
    n = len(dataset)
    chosen, rejected = dataset["chosen_input_ids"], dataset["rejected_input_ids"]
    return sum(len(c) + len(r) for c, r in zip(chosen, rejected, strict=True)) / max(1, n)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Preference accuracy on prompt / chosen / rejected test rows: the model's log-probability of the chosen answer
    (summed over its tokens) above the rejected one's; the mean margin; the smallest margins first."""
    from engine.llm import preference_eval

    return preference_eval.evaluate_policy(model_dir, df, options)


TASK = Task(
    name="llm_orpo",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM preference tuning (ORPO)",
    family="LLM",
    description="Fine-tune and preference-tune in one step (Odds Ratio Preference Optimization, no reference "
    "model): rows of prompt, chosen and rejected answers.",
    params=Params,
    **ld.preference_task_fields(),
    memory_profile={"sequences_per_example": 2},  # chosen + rejected per example (memory check)
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
    model_note="A causal language model (base or chat); ORPO also teaches the chosen answers directly.",
    autotrain_names=["llm-orpo", "llm:orpo"],
)
