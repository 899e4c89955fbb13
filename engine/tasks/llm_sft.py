"""LLM supervised fine-tuning on trl's SFTTrainer: plain text, chats, or prompt/completion pairs."""

from __future__ import annotations

from typing import Any, Literal

from engine.errors import Problem
from engine.llm import data as ld
from engine.llm import evaluate as le
from engine.llm import model as lm
from engine.params import field
from engine.task import Column, Job, Task


class Params(ld.LLMParams):
    """SFT options on top of the shared LLM options."""

    packing: Literal["auto", "none", "wrapped", "bfd"] = field(
        "auto",
        "Pack several examples into each sequence. bfd: padding-free, no attention across examples (fast on GPU). "
        "wrapped: fixed blocks, examples may see their neighbours (fastest on CPU). auto: bfd on GPU, wrapped on CPU.",
    )
    completion_only_loss: bool = field(
        False, "Learn only from the answers (completion / last assistant turn), not from prompts.", advanced=True
    )
    drop_partial_block: bool = field(
        False,
        "With wrapped packing, leave out the last block when it is shorter than max_length (AutoTrain's packing "
        "does: imported AutoTrain configs turn this on, so they run the same number of steps).",
        advanced=True,
        show_if={"packing": ["wrapped", "auto"]},
    )


COLUMNS = [
    Column("text", "plain training text, one example per row", required=False),
    Column("messages", "a chat: list of {role, content} (or its JSON text)", required=False, kind="messages"),
    Column("prompt", "the prompt, with `completion` as the answer", required=False),
    Column("completion", "the answer to `prompt`", required=False),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """One of the three data forms must be present; chats must be well-formed."""
    cols = set(train.columns)
    if not ({"text", "messages"} & cols or {"prompt", "completion"} <= cols):
        return [  # one problem, shown beside the `text` dropdown only (not under all four)
            Problem(
                "SFT needs a `text` column, a `messages` column (chats), or `prompt` and `completion` columns. "
                "Map your columns with column_mapping, e.g. {text: my_column}.",
                role="text",
            )
        ]
    problems = []
    if "messages" in cols:
        for name, df in (("training", train), ("validation", valid)):
            if df is not None:
                found = ld.collect_problems(df["messages"], lambda v, r: ld.parse_messages(v, r, "messages"))
                problems += [f"{name.capitalize()} data: {p}" for p in found]
    if params.completion_only_loss and "text" in cols and not ({"messages"} & cols or {"prompt", "completion"} <= cols):
        problems.append(
            "completion_only_loss needs prompt/completion columns or chats; plain `text` has no answer part."
        )
    return problems or ld.render_problems(train, valid, params)


def to_dataset(df: Any, params: Params) -> Any:
    """A ``datasets.Dataset`` in one of trl's formats: text, messages, or prompt/completion."""
    from datasets import Dataset

    cols = set(df.columns)
    if "messages" in cols:
        chats = [ld.parse_messages(v, i + 1, "messages") for i, v in enumerate(df["messages"])]
        if params.completion_only_loss:
            rows = [
                {"prompt": c[:-1], "completion": c[-1:]} for c in chats if len(c) > 1 and c[-1]["role"] == "assistant"
            ]
            return Dataset.from_list(rows)
        return Dataset.from_dict({"messages": chats})
    if {"prompt", "completion"} <= cols:
        return Dataset.from_dict(
            {"prompt": df["prompt"].astype(str).tolist(), "completion": df["completion"].astype(str).tolist()}
        )
    return Dataset.from_dict({"text": df["text"].astype(str).tolist()})


def packing_choice(params: Params) -> tuple[bool, str]:
    import torch

    choice = params.packing
    if choice == "auto":
        choice = "bfd" if torch.cuda.is_available() else "wrapped"
    return choice != "none", ("bfd" if choice == "none" else choice)


def build_trainer(job: Job) -> Any:
    """The run's SFT trainer: datasets in trl's form, tokenizer, model, LoRA and arguments."""
    from trl import SFTConfig

    from engine.llm import train as lt
    from engine.train import trainer as tu

    params = job.params
    train_ds = to_dataset(job.train, params)
    valid_ds = to_dataset(job.valid, params) if lt.n_rows(job.valid) else None
    tok = lm.load_tokenizer(params)
    packing, strategy = packing_choice(params)
    print(
        f"[trainpad] {len(train_ds)} training rows, {lt.n_rows(valid_ds)} validation rows; "
        f"packing={strategy if packing else 'none'}; LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    args = tu.training_arguments(
        job,
        len(train_ds),
        lt.n_rows(valid_ds),
        SFTConfig,
        max_length=params.max_length,
        packing=packing,
        packing_strategy=strategy,
        eval_packing=packing,
        completion_only_loss=params.completion_only_loss,  # trl's None would mask prompts even when off
        dataset_num_proc=None,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = lt.FastLossSFTTrainer(
        model=lm.load_causal_lm(params),
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds if lt.n_rows(valid_ds) else None,  # chats without a final answer are left out
        processing_class=tok,
        peft_config=lm.lora_config(params),
    )
    if packing and strategy == "wrapped" and params.drop_partial_block:
        trainer.train_dataset = full_blocks(trainer.train_dataset, params.max_length)
    return trainer


def full_blocks(dataset: Any, length: int) -> Any:
    """Only the packed blocks of exactly ``length`` tokens (AutoTrain's packing drops the partial ones)."""
    return dataset.filter(lambda row: len(row["input_ids"]) == length)


def from_autotrain(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """AutoTrain's SFT always packs (trl's wrapped blocks of `block_size`), and with a chat template its text
    column holds chats: Trainpad's `messages` role."""
    chats = (config.get("params") or {}).get("chat_template") not in (None, "none", "None", "")
    mapping = dict(params.get("column_mapping") or {})
    if chats and "text" in mapping:
        mapping["messages"] = mapping.pop("text")
    packed = {"packing": "wrapped", "drop_partial_block": True}
    return {**params, **packed, **({"column_mapping": mapping} if mapping else {})}


def train(job: Job) -> dict[str, float]:
    from engine.llm import train as lt

    return lt.fit(build_trainer(job), job, perplexity=True)


TASK = Task(
    name="llm_sft",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM fine-tuning (SFT)",
    family="LLM",
    description="Teach a causal language model from examples: plain text, chats, or prompt/completion pairs.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=lm.generate,
    key_metric="eval_loss",
    suggested_models=[
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-1.5B-Instruct",
    ],  # small first (CPU)
    greater_is_better=False,
    model_note="A causal language model (AutoModelForCausalLM), e.g. a Llama, Qwen, Mistral, Gemma or SmolLM checkpoint.",
    check_data=check_data,
    predict_input="chat",
    data_summary=ld.data_summary,
    autotrain_names=["llm-sft", "llm:sft"],
    from_autotrain=from_autotrain,
    evaluate=le.evaluate_generation,
)
