"""LLM preference tuning from unpaired feedback with KTO (trl's KTOTrainer): rows of prompt, completion and a thumbs
up or down, the shape most product feedback comes in. No pairs needed; the reference model is the starting model
(with LoRA: the same model with its adapter disabled).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from engine.errors import Problem, UserError
from engine.llm import data as ld
from engine.llm import model as lm
from engine.params import field
from engine.task import Column, Job, Task

UP = {"1", "1.0", "true", "yes", "y", "up", "good", "thumbs up", "thumbs_up", "👍", "+1", "positive", "desirable"}
DOWN = {"0", "0.0", "false", "no", "n", "down", "bad", "thumbs down", "thumbs_down", "👎", "-1", "negative"}
DOWN |= {"undesirable"}


class Params(ld.LLMParams):
    """KTO options on top of the shared LLM options."""

    learning_rate: float = field(
        5e-5, "Peak learning rate (5e-5 suits LoRA; use ~5e-7 to 5e-6 for full fine-tuning).", gt=0, le=1.0
    )
    beta: float = field(
        0.1, "How far the model may drift from the reference model: higher stays closer.", gt=0.0, le=10.0
    )
    desirable_weight: float = field(
        1.0,
        "Weight of thumbs-up rows. With more thumbs-down than up rows, raise it so that weight x ups is about "
        "1-1.33 x downs.",
        gt=0.0,
        le=100.0,
    )
    undesirable_weight: float = field(1.0, "Weight of thumbs-down rows.", gt=0.0, le=100.0)
    loss_type: Literal["kto", "apo_zero_unpaired"] = field(
        "kto", "KTO loss, or APO-zero for unpaired data.", advanced=True
    )


COLUMNS = [
    Column(
        "prompt", "the prompt: text, or a chat (list of {role, content})", kind="any", aliases=("question", "input")
    ),
    Column("completion", "the model's answer that was rated", aliases=("response", "answer", "output")),
    Column(
        "label",
        "the rating: thumbs up / down (true/false, 1/0, up/down, good/bad, 👍/👎)",
        kind="label",
        aliases=("feedback", "rating", "thumbs_up", "desirable"),
    ),
]


def thumbs(value: Any, row: int) -> bool:
    """A rating cell as True (up) or False (down); a UserError naming the row otherwise."""
    text = str(value).strip().lower()
    if text in UP:
        return True
    if text in DOWN:
        return False
    raise UserError(
        f"Row {row}, column `label`: `{str(value)[:40]}` is not a thumbs up or down. Use true/false, 1/0, up/down, "
        "good/bad or 👍/👎."
    )


def kto_example(prompt: Any, completion: Any, label: Any, row: int) -> dict[str, Any]:
    """One row in trl's unpaired form: text prompt and completion, or a chat prompt and an assistant turn."""
    p = ld.as_chat_or_text(prompt, row, "prompt")
    c = ld.as_chat_or_text(completion, row, "completion")
    if isinstance(p, list) and isinstance(c, str):
        c = [{"role": "assistant", "content": c}]
    elif isinstance(p, str) and isinstance(c, list):
        p = [{"role": "user", "content": p}]
    return {"prompt": p, "completion": c, "label": thumbs(label, row)}


def kto_rows(df: Any) -> list[dict[str, Any]]:
    cols = zip(df["prompt"].tolist(), df["completion"].tolist(), df["label"].tolist(), strict=True)
    rows = [kto_example(*v, i + 1) for i, v in enumerate(cols)]
    if any(isinstance(r["prompt"], list) for r in rows):  # one form for all rows: lift plain text to chats
        rows = [r if isinstance(r["prompt"], list) else _as_chat(r) for r in rows]
    return rows


def _as_chat(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "completion": [{"role": "assistant", "content": r["completion"]}],
        "label": r["label"],
    }


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Malformed rows and ratings; both thumbs up and down needed (KTO learns from the contrast)."""
    found: list[str] = []
    for name, df in (("Training", train), ("Validation", valid)):
        if df is None:
            continue
        cols = list(zip(df["prompt"].tolist(), df["completion"].tolist(), df["label"].tolist(), strict=True))
        found += [f"{name} data: {p}" for p in ld.collect_problems(cols, lambda v, r: kto_example(*v, r))]
    if not found:
        ups = sum(thumbs(v, i + 1) for i, v in enumerate(train["label"].tolist()))
        if ups in (0, len(train)):
            found.append(
                Problem(
                    f"Every training row is rated {'up' if ups else 'down'}: KTO needs both thumbs up and thumbs "
                    "down rows. Check the label column's mapping.",
                    role="label",
                )
            )
    return found or ld.render_problems(train, valid, params)


def train(job: Job) -> dict[str, float]:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from engine.llm import train as lt

    params = job.params
    train_ds = Dataset.from_list(kto_rows(job.train))
    valid_ds = Dataset.from_list(kto_rows(job.valid)) if lt.n_rows(job.valid) else None
    ups = sum(train_ds["label"])
    print(f"[trainpad] {len(train_ds)} rated rows ({ups} up, {len(train_ds) - ups} down), "
          f"{lt.n_rows(valid_ds)} validation rows; LoRA={'on' if params.use_lora else 'off'}", flush=True)  # fmt: skip
    trainer = lt.causal_trainer(
        job,
        KTOTrainer,
        KTOConfig,
        (train_ds, valid_ds),
        beta=params.beta,
        desirable_weight=params.desirable_weight,
        undesirable_weight=params.undesirable_weight,
        loss_type=params.loss_type,
    )
    return lt.fit(trainer, job)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Exact / normalized match, ROUGE-L, chrF and perplexity of the greedy answers to the prompts of the thumbs-up
    rows, against their completions (a thumbs-down completion is no reference; those rows are left out)."""
    from engine.llm import evaluate as le

    rows = kto_rows(df)
    liked = [r for r in rows if r["label"]]
    if not liked:
        raise UserError(
            f"None of the {len(rows)} test rows is rated thumbs up: KTO models are evaluated against the completions "
            "rated up (the reference answers). Add thumbs-up rows, or check the label column's mapping."
        )
    answers = [r["completion"][-1]["content"] if isinstance(r["completion"], list) else r["completion"] for r in liked]
    out = le.evaluate_generation(model_dir, le.reference_frame([r["prompt"] for r in liked], answers), options)
    out["metrics"] |= {"n_rated_up": len(liked), "n_rated_down_left_out": len(rows) - len(liked)}
    return out


TASK = Task(
    name="llm_kto",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM feedback tuning (KTO)",
    family="LLM",
    description="Teach a chat model from thumbs up / down feedback (Kahneman-Tversky Optimization): rows of prompt, "
    "completion and a rating; no pairs needed.",
    params=Params,
    columns=COLUMNS,
    check_data=check_data,
    data_summary=ld.data_summary,
    predict_input="chat",
    memory_profile={"sequences_per_example": 2, "reference_model": True},  # the example and a KL example
    train=train,
    predict=lm.generate,
    evaluate=evaluate,
    key_metric="eval_rewards/margins",
    greater_is_better=True,
    suggested_models=[
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
    ],
    model_note="A causal language model, usually one already fine-tuned to chat (SFT) on similar prompts.",
    autotrain_names=["llm-kto", "llm:kto"],
    autotrain_columns={"prompt_text_column": "prompt", "text_column": "completion"},
)
