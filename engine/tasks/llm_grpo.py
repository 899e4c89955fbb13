"""LLM reinforcement learning with GRPO (trl's GRPOTrainer): prompts in, completions sampled from the model, scored by
reward functions (presets or your own file, several at once with weights), each compared with the other
completions of its prompt. The reference model for the KL term (beta > 0) is the starting model: with LoRA the
same model with its adapter disabled.
"""

from __future__ import annotations

from typing import Literal

from engine.llm import evaluate as le
from engine.llm import model as lm
from engine.llm import rl
from engine.params import field
from engine.task import Job, Task


class Params(rl.RLParams):
    """GRPO options on top of the shared RL options."""

    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"] = field(
        "dapo",
        "How token losses are averaged: dapo (trl's default, no length bias), grpo (the original, per sequence), "
        "dr_grpo (a constant), bnpo, cispo, sapo.",
        advanced=True,
    )
    epsilon: float = field(0.2, "Clipping range of the policy ratio (as in PPO).", gt=0.0, le=1.0, advanced=True)
    scale_rewards: Literal["group", "batch", "none"] = field(
        "group",
        "Divide advantages by the reward spread of the prompt's group (group), of the batch, or not (none: Dr. GRPO).",
        advanced=True,
    )


def train(job: Job) -> dict[str, float]:
    from engine.llm import rl_train
    from engine.llm import train as lt

    p = job.params
    trainer = rl_train.grpo(job, loss_type=p.loss_type, epsilon=p.epsilon, scale_rewards=p.scale_rewards)
    return lt.fit(trainer, job)


TASK = Task(
    name="llm_grpo",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM reinforcement learning (GRPO)",
    family="LLM",
    description="Improve a model with rewards instead of answers (Group Relative Policy Optimization): rows of "
    "prompts (and optional answers); choose reward functions such as format, exact_match, length or your own.",
    params=Params,
    **rl.rl_task_fields(),
    train=train,
    predict=lm.generate,
    evaluate=le.evaluate_answers,
    autotrain_names=["llm-grpo", "llm:grpo"],
)
