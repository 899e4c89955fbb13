"""The online RL tasks' data side (GRPO, RLOO; the prompts of distillation), safe in the UI process: the shared
params (generation, KL, rewards), the prompt columns, prompt parsing and the checks before launch.

Imports no torch, transformers, trl or datasets; trainer building lives in :mod:`engine.llm.rl_train`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from engine.errors import Problem, UserError
from engine.llm import data as ld
from engine.llm import rewards
from engine.params import field
from engine.task import Column

PROMPT_COLUMNS = [
    Column(
        "prompt",
        "the prompt: text, or a chat (list of {role, content}); a chat ending in an assistant turn loses that turn",
        kind="any",
        aliases=("question", "query", "instruction", "messages", "problem"),
    ),
    Column(
        "answer",
        "optional: the expected answer (exact_match compares with it; a python reward gets it as `answer`)",
        required=False,
        aliases=("solution", "ground_truth", "reference", "target"),
    ),
    Column("info", "optional: any other column a python reward should receive (as `info`)", required=False, kind="any"),
]

REWARD_NAMES = Literal["format", "exact_match", "length", "reward_model", "judge", "python"]


class GenerationParams(ld.LLMParams):
    """What online methods share: prompts in, completions sampled from the policy."""

    learning_rate: float = field(
        2e-5, "Peak learning rate (1e-5 to 1e-4 suits LoRA; use ~1e-6 for full fine-tuning).", gt=0, le=1.0
    )
    max_length: int = field(512, "Longest prompt in tokens; longer prompts keep their end.", ge=8, le=131072)
    max_completion_length: int = field(
        128, "Longest completion the policy may generate, in tokens.", ge=1, le=32768, group="generation"
    )
    temperature: float = field(
        1.0, "Sampling temperature of the completions (higher: more varied).", gt=0.0, le=5.0, group="generation"
    )
    use_vllm: bool = field(
        False,
        "Generate with vLLM (colocated on the GPU): much faster generation. Needs a CUDA GPU and the vllm package.",
        advanced=True,
        group="generation",
    )


class RLParams(GenerationParams):
    """GRPO/RLOO options: rewards, generations per prompt, KL to the reference model."""

    reward_functions: list[REWARD_NAMES] = field(
        ["length"],
        "Rewards, several at once (comma-separated): format (regex / think-answer tags), exact_match (vs the "
        "`answer` column, numbers and math), length (close to target_length), reward_model, judge, python (your file).",
    )
    reward_weights: list[float] = field([], "One weight per reward function, in the same order (empty: all 1).")
    num_generations: int = field(
        4,
        "Completions sampled per prompt; their rewards are compared with each other. batch_size x grad_accum must "
        "be a multiple of it.",
        ge=2,
        le=256,
    )
    beta: float = field(
        0.0,
        "KL penalty towards the starting model (0: none, no reference model in memory; 0.001-0.04 keeps it close).",
        ge=0.0,
        le=10.0,
    )
    target_length: int = field(
        64, "length reward: the completion length (tokens) that scores 1.", ge=1, le=32768, group="rewards"
    )
    format_pattern: str = field(
        "",
        "format reward: a regular expression the completion must contain (empty: <think>…</think><answer>…</answer>).",
        advanced=True,
        group="rewards",
    )
    reward_model: str = field(
        "", "reward_model reward: a finished reward-model run's id, or a model folder.", advanced=True, group="rewards"
    )
    judge_model: str = field(
        "",
        "judge reward: a local causal LM (folder or run id), or an OpenAI-compatible endpoint URL.",
        advanced=True,
        group="rewards",
    )
    judge_api_model: str = field(
        "", "judge reward: the model name the endpoint serves.", advanced=True, group="rewards"
    )
    judge_api_key_env: str = field(
        "OPENAI_API_KEY",
        "judge reward: the environment variable holding the endpoint's key (never the key itself).",
        advanced=True,
        group="rewards",
    )
    judge_prompt: str = field(
        "", "judge reward: the prompt, with {prompt} and {completion} (empty: a 0-10 rating).", advanced=True,
        group="rewards",
    )  # fmt: skip
    reward_file: str = field(
        "",
        "python reward: your .py file; its function gets (prompts, completions, completion_ids, answer, …) like "
        "trl's and returns one float per completion. It runs your code: a shared instance refuses it unless allowed.",
        advanced=True,
        group="rewards",
    )
    reward_function_name: str = field(
        "reward", "python reward: the function to call in reward_file.", advanced=True, group="rewards"
    )

    @model_validator(mode="after")
    def _groups_fit(self) -> RLParams:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of "
                f"num_generations ({self.num_generations}): each prompt's completions are compared in one batch. "
                f"Set batch_size to {self.num_generations} (or a multiple)."
            )
        return self


# ---- data ---------------------------------------------------------------------------------------


def prompt_of(value: Any, row: int) -> str | list[dict[str, str]]:
    """A prompt as trl takes it: text, or a chat without a final assistant turn (that is what the policy writes)."""
    prompt = ld.as_chat_or_text(value, row, "prompt")
    if isinstance(prompt, list) and prompt[-1]["role"] == "assistant":
        prompt = prompt[:-1]
        if not prompt:
            raise UserError(f"Row {row}, column `prompt`: the chat has only an assistant turn; nothing to answer.")
    return prompt


def prompt_rows(df: Any) -> list[dict[str, Any]]:
    """Each row as {prompt, answer?, info?}: one form for all prompts (text lifted to a user turn when some are
    chats), extra columns as text."""
    prompts = [prompt_of(v, i + 1) for i, v in enumerate(df["prompt"].tolist())]
    if any(isinstance(p, list) for p in prompts):
        prompts = [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts]
    rows = [{"prompt": p} for p in prompts]
    for extra in ("answer", "info"):
        if extra in df:
            for row, value in zip(rows, df[extra].tolist(), strict=True):
                row[extra] = "" if value is None or (isinstance(value, float) and value != value) else str(value)
    return rows


def prompt_problems(train: Any, valid: Any) -> list[str]:
    """Malformed prompts (by row) in either split."""
    found: list[str] = []
    for name, df in (("Training", train), ("Validation", valid)):
        if df is not None:
            found += [f"{name} data: {p}" for p in ld.collect_problems(df["prompt"], prompt_of)]
    return found


def check_rl(train: Any, valid: Any, params: Any) -> list[str]:
    """Prompts, rewards (names, weights, settings, files) and vLLM before launch."""
    return prompt_problems(train, valid) + rewards.problems(params, set(train.columns)) + vllm_problems(params)


def vllm_problems(params: Any) -> list[str]:
    """vLLM needs a CUDA GPU and the vllm package: said at Check, not at step 0."""
    if not getattr(params, "use_vllm", False):
        return []
    import importlib.util

    from engine.preflight import system

    if not system.gpus():
        return [Problem("use_vllm needs a CUDA GPU; this machine has none. Turn use_vllm off.", field="use_vllm")]
    if importlib.util.find_spec("vllm") is None:
        return [Problem("use_vllm needs the vllm package: pip install vllm (or turn use_vllm off).", field="use_vllm")]
    return []


def rl_task_fields() -> dict[str, Any]:
    """The ``Task`` fields GRPO and RLOO share: prompt columns, checks, the chat playground, the memory profile."""
    return {
        "columns": PROMPT_COLUMNS,
        "check_data": check_rl,
        "predict_input": "chat",
        "memory_profile": {
            "length_fields": ("max_length", "max_completion_length"),
            "reference_model": "beta",
            "generations": True,
        },
        "key_metric": "eval_reward",
        "greater_is_better": True,
        "suggested_models": [
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "HuggingFaceTB/SmolLM2-360M-Instruct",
            "Qwen/Qwen2.5-0.5B-Instruct",
        ],
        "model_note": "A causal language model, usually one already fine-tuned to chat (SFT) on similar prompts.",
    }
