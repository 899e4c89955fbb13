"""LLM reinforcement learning with RLOO (trl's RLOOTrainer): like GRPO (the same prompts, rewards and form), with
REINFORCE Leave-One-Out advantages: each completion is compared with the mean of its prompt's other completions.
"""

from __future__ import annotations

from engine.llm import evaluate as le
from engine.llm import model as lm
from engine.llm import rl
from engine.params import field
from engine.task import Job, Task


class Params(rl.RLParams):
    """RLOO options on top of the shared RL options."""

    beta: float = field(
        0.05,
        "KL penalty towards the starting model (RLOO's default 0.05; 0: none, no reference model in memory).",
        ge=0.0,
        le=10.0,
    )
    epsilon: float = field(0.2, "Clipping range of the policy ratio.", gt=0.0, le=1.0, advanced=True)
    normalize_advantages: bool = field(False, "Scale the advantages to unit spread over the batch.", advanced=True)


def train(job: Job) -> dict[str, float]:
    from engine.llm import rl_train
    from engine.llm import train as lt

    p = job.params
    trainer = rl_train.rloo(job, epsilon=p.epsilon, normalize_advantages=p.normalize_advantages)
    return lt.fit(trainer, job)


TASK = Task(
    name="llm_rloo",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM reinforcement learning (RLOO)",
    family="LLM",
    description="Improve a model with rewards (REINFORCE Leave-One-Out): the same prompts and reward functions as "
    "GRPO, each completion compared with its prompt's other completions.",
    params=Params,
    **rl.rl_task_fields(),
    train=train,
    predict=lm.generate,
    evaluate=le.evaluate_answers,
    autotrain_names=["llm-rloo", "llm:rloo"],
)
