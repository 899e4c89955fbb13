"""Continued pretraining (causal language modelling) on raw text, packed into fixed-length blocks.

Documents are tokenized, each ended with the EOS token, concatenated and cut into ``block_size``
blocks (the last partial block is dropped). Plain ``transformers.Trainer`` on pre-packed blocks is the
fastest path on CPU (see notes/sft-cpu.md). Evaluation reports loss and perplexity.
"""

from __future__ import annotations

from typing import Any

from engine.errors import UserError
from engine.llm import data as ld
from engine.llm import evaluate as le
from engine.llm import model as lm
from engine.params import field
from engine.task import Column, Job, Task

TEXT_ROLES = ("text", "text_2", "text_3")


class Params(ld.LLMParams):
    """Continued-pretraining options on top of the shared LLM options."""

    learning_rate: float = field(
        5e-5, "Peak learning rate (5e-5 suits full training; use ~2e-4 with LoRA).", gt=0, le=1.0
    )
    use_lora: bool = field(
        False, "Train a small LoRA adapter instead of all weights (less memory, learns less new knowledge)."
    )
    block_size: int = field(0, "Length of the packed training blocks in tokens (0 = max_length).", ge=0, le=131072)
    max_length: int = field(512, "Longest block in tokens, when block_size is 0.", ge=8, le=131072)


COLUMNS = [
    Column("text", "raw text, one document per row"),
    Column("text_2", "more text appended to `text` (e.g. the body after a title)", required=False),
    Column("text_3", "more text appended after `text_2`", required=False),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Rows whose text is blank, by row number."""
    problems = []
    for name, df in (("Training", train), ("Validation", valid)):
        if df is None:
            continue
        blank = [i for i, t in enumerate(documents(df)) if not t.strip()]
        if blank and len(blank) == len(df):
            problems.append(f"{name} data: every row of `text` is blank. Map the column holding your text to `text`.")
        elif blank:
            from engine.data.cells import row_numbers

            problems.append(f"{name} data: `text` is blank in row(s) {row_numbers(blank)}. Fill or remove those rows.")
    return problems


def documents(df: Any) -> list[str]:
    """One string per row: the text columns present, joined with a blank line."""
    cols = [c for c in TEXT_ROLES if c in df]
    return [
        "\n\n".join(str(v) for v in row if isinstance(v, str) and v.strip()) for row in df[cols].itertuples(index=False)
    ]


def pack(texts: list[str], tok: Any, block: int) -> list[list[int]]:
    """Token blocks of exactly ``block`` tokens: documents end with EOS, are concatenated, then cut."""
    stream: list[int] = []
    for ids in tok(texts, add_special_tokens=True)["input_ids"]:
        stream += ids + (
            [tok.eos_token_id] if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id) else []
        )
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


def _blocks_dataset(df: Any, tok: Any, block: int, split: str) -> Any:
    from datasets import Dataset

    blocks = pack([t for t in documents(df) if t.strip()], tok, block)
    if not blocks:
        raise UserError(
            f"The {split} text holds fewer than block_size={block} tokens, so not one block can be made. "
            "Lower block_size (or max_length), or add text."
        )
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def train(job: Job) -> dict[str, float]:
    from transformers import Trainer, default_data_collator

    from engine.llm import train as lt
    from engine.train import trainer as tu

    params = job.params
    tok = lm.load_tokenizer(params)
    block = params.block_size or params.max_length
    train_ds = _blocks_dataset(job.train, tok, block, "training")
    valid_ds = _blocks_dataset(job.valid, tok, block, "validation") if lt.n_rows(job.valid) else None
    print(
        f"[trainpad] {len(train_ds)} training blocks and {lt.n_rows(valid_ds)} validation blocks of "
        f"{block} tokens; LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    trainer = Trainer(
        model=lm.with_lora(lm.load_causal_lm(params), params),
        args=tu.training_arguments(job, len(train_ds), lt.n_rows(valid_ds)),
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        data_collator=default_data_collator,
        processing_class=tok,
    )
    return lt.fit(trainer, job, tokens_per_sample=block, perplexity=True)


TASK = Task(
    name="llm_pretrain",
    model_kind="causal",
    hub_pipeline="text-generation",
    title="LLM continued pretraining",
    family="LLM",
    description="Keep training a language model on your own raw text (domain adaptation), packed into "
    "fixed-length blocks. Reports perplexity on held-out text.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=lm.generate,
    evaluate=le.evaluate_generation,  # held-out text: perplexity
    key_metric="eval_perplexity",
    suggested_models=[
        "HuggingFaceTB/SmolLM2-135M",
        "HuggingFaceTB/SmolLM2-360M",
        "Qwen/Qwen2.5-0.5B",
    ],  # small first (CPU)
    greater_is_better=False,
    model_note="A causal language model (AutoModelForCausalLM), base (not chat) models suit this best.",
    check_data=check_data,
    predict_input="text",
    data_summary=ld.data_summary,
    autotrain_names=["llm-generic", "llm:generic", "llm-clm", "llm:clm", "llm-pretrain", "clm"],
)
