"""LLM supervised fine-tuning on trl's SFTTrainer: plain text, chats, or prompt/completion pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from engine import llm_utils as lu
from engine.params import field
from engine.task import Column, Task


class Params(lu.LLMParams):
    """SFT options on top of the shared LLM options."""

    packing: Literal["auto", "none", "wrapped", "bfd"] = field(
        "auto",
        "Pack several examples into each sequence. bfd: padding-free, no attention across examples (fast on GPU). "
        "wrapped: fixed blocks, examples may see their neighbours (fastest on CPU). auto: bfd on GPU, wrapped on CPU.",
    )
    completion_only_loss: bool = field(
        False, "Learn only from the answers (completion / last assistant turn), not from prompts.", advanced=True
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
        return [
            "SFT needs a `text` column, a `messages` column (chats), or `prompt` and `completion` columns. "
            "Map your columns with column_mapping, e.g. {text: my_column}."
        ]
    problems = []
    if "messages" in cols:
        for name, df in (("training", train), ("validation", valid)):
            if df is not None:
                found = lu.collect_problems(df["messages"], lambda v, r: lu.parse_messages(v, r, "messages"))
                problems += [f"{name.capitalize()} data: {p}" for p in found]
    if params.completion_only_loss and "text" in cols and not ({"messages"} & cols or {"prompt", "completion"} <= cols):
        problems.append(
            "completion_only_loss needs prompt/completion columns or chats; plain `text` has no answer part."
        )
    return problems or lu.render_problems(train, valid, params)


def to_dataset(df: Any, params: Params) -> Any:
    """A ``datasets.Dataset`` in one of trl's formats: text, messages, or prompt/completion."""
    from datasets import Dataset

    cols = set(df.columns)
    if "messages" in cols:
        chats = [lu.parse_messages(v, i + 1, "messages") for i, v in enumerate(df["messages"])]
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


def train(params: Params, run_dir: Path) -> dict[str, float]:
    from transformers import Trainer
    from trl import SFTConfig, SFTTrainer

    from engine import data
    from engine import task as task_mod
    from engine import train_utils as tu

    tu.setup_torch_threads()
    train_df, valid_df = data.load_splits(task_mod.get_task("llm_sft"), params)
    train_ds, valid_ds = to_dataset(train_df, params), (to_dataset(valid_df, params) if valid_df is not None else None)
    has_eval = valid_ds is not None and len(valid_ds) > 0
    tok = lu.load_tokenizer(params)
    model = lu.load_causal_lm(params)
    packing, strategy = packing_choice(params)
    print(
        f"[trainpad] {len(train_ds)} training rows, {len(valid_ds) if has_eval else 0} validation rows; "
        f"packing={strategy if packing else 'none'}; LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )

    class SFT(SFTTrainer):
        """SFTTrainer with the model's own cross-entropy (trl's fused-metrics loss path costs ~30% on CPU)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            inputs["use_cache"] = False
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )

    args = tu.training_arguments(
        params,
        run_dir,
        n_train=len(train_ds),
        has_eval=has_eval,
        args_cls=SFTConfig,
        max_length=params.max_length,
        packing=packing,
        packing_strategy=strategy,
        eval_packing=packing,
        completion_only_loss=params.completion_only_loss or None,
        dataset_num_proc=None,
        include_num_input_tokens_seen="non_padding",
        metric="eval_loss",
    )
    trainer = SFT(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds if has_eval else None,
        processing_class=tok,
        peft_config=lu.lora_config(params),
        callbacks=tu.callbacks(params, run_dir, has_eval, perplexity=True),
    )
    metrics = tu.train_and_save(trainer, params, run_dir, has_eval, save=False, perplexity=True)
    if not _stopped():
        lu.save_lm(trainer, params, run_dir / "model")
    return metrics


def _stopped() -> bool:
    from engine.runfiles import stop_requested

    return stop_requested()


def predict(model_dir: Path, inputs: Any) -> str:
    """Generate a reply for a prompt string or a chat (list of messages)."""
    return lu.generate(model_dir, inputs)


TASK = Task(
    name="llm_sft",
    title="LLM fine-tuning (SFT)",
    family="LLM",
    description="Teach a causal language model from examples: plain text, chats, or prompt/completion pairs.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    key_metric="eval_loss",
    greater_is_better=False,
    model_note="A causal language model (AutoModelForCausalLM), e.g. a Llama, Qwen, Mistral, Gemma or SmolLM checkpoint.",
    check_data=check_data,
    predict_input="chat",
    data_summary=lu.data_summary,
    autotrain_names=["llm-sft", "llm", "llm:sft", "llm-generic"],
)
