"""Sequence-to-sequence (summarisation, translation, rewriting) with encoder-decoder models.

Trained with ``Seq2SeqTrainer``; evaluation generates text and scores it with ROUGE-1/2/L/Lsum,
BLEU, chrF and the mean generated length (:func:`engine.text.encoders.generated_text_metrics`). Optional LoRA (peft),
merged into the base model at the end so the saved model loads with ``AutoModelForSeq2SeqLM``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.params import LoraParams, field
from engine.task import Column, Job, Task
from engine.text import encoders as xu


class Params(LoraParams):
    """Seq2seq options on top of the shared training options."""

    learning_rate: float = field(3e-4, "Peak learning rate (3e-4 suits T5-style models; ~5e-5 for BART).", gt=0, le=1.0)
    max_length: int = field(128, "Longest input text in tokens; longer inputs are truncated.", ge=4, le=16384)
    max_target_length: int = field(
        64, "Longest target text in tokens (also the generation limit during evaluation).", ge=2, le=4096
    )
    source_prefix: str = field(
        "", "Text put before every input, e.g. `summarize: ` or `translate English to German: ` for T5.", advanced=True
    )
    num_beams: int = field(1, "Beam search width when generating (1 = greedy, fastest).", ge=1, le=16, advanced=True)
    use_lora: bool = field(
        False, "Train a small LoRA adapter instead of all weights (merged into the model at the end)."
    )


COLUMNS = [
    Column("text", "the input text (the document to summarise, the sentence to translate)"),
    Column("target", "the output text the model should produce for `text`"),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Blank inputs or targets (also in the validation data), named by row and column."""
    from engine.text.qa import blank_cells_in_splits

    return blank_cells_in_splits(train, valid, ["text", "target"], params.column_mapping)


# ---- training -----------------------------------------------------------------------------


def encode(df: Any, tok: Any, params: Params) -> list[dict[str, list[int]]]:
    """Token ids of inputs (with the source prefix) and targets, truncated to the length limits."""
    sources = [params.source_prefix + str(t) for t in df["text"]]
    enc = tok(sources, max_length=params.max_length, truncation=True)
    labels = tok(text_target=[str(t) for t in df["target"]], max_length=params.max_target_length, truncation=True)
    return [
        {"input_ids": i, "attention_mask": m, "labels": lab}
        for i, m, lab in zip(enc["input_ids"], enc["attention_mask"], labels["input_ids"], strict=True)
    ]


def load_model(params: Params) -> Any:
    from transformers import AutoModelForSeq2SeqLM

    from engine.llm.model import lora_config

    model = AutoModelForSeq2SeqLM.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    config = lora_config(params, task_type="SEQ_2_SEQ_LM")
    if config is None:
        return model
    from peft import get_peft_model

    return get_peft_model(model, config)


def save(model_dir: Path, trainer: Any, params: Params) -> None:
    """Save a standalone model (LoRA merged; the adapter kept in ``adapter/`` beside it), tokenizer, side file."""
    model = trainer.model
    if params.use_lora:
        model.save_pretrained(str(model_dir.parent / "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(str(model_dir))
    trainer.processing_class.save_pretrained(str(model_dir))
    keys = ("source_prefix", "max_length", "max_target_length", "num_beams")
    runfiles.write_side_file(model_dir, {"task": "seq2seq", **{k: getattr(params, k) for k in keys}})


def train(job: Job) -> dict[str, float]:
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    from engine.train import trainer as tu

    params = job.params
    tok = AutoTokenizer.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    train_ds = encode(job.train, tok, params)
    valid_ds = encode(job.valid, tok, params) if job.valid is not None else []
    model = load_model(params)
    print(
        f"[trainpad] {len(train_ds)} training rows, {len(valid_ds)} validation rows; "
        f"LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    args = tu.training_arguments(
        job,
        len(train_ds),
        len(valid_ds),
        Seq2SeqTrainingArguments,
        predict_with_generate=True,
        generation_max_length=params.max_target_length,
        generation_num_beams=params.num_beams,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds or None,
        processing_class=tok,
        data_collator=DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100),
        compute_metrics=functools.partial(xu.generated_text_metrics, tok=tok),
        callbacks=tu.callbacks(params, job.run_dir, bool(valid_ds)),
    )
    saver = functools.partial(save, trainer=trainer, params=params)
    return tu.train_and_save(trainer, params, job.run_dir, bool(valid_ds), save=saver)


# ---- inference ----------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """Generate the target for a text (str), several texts (list), or {"text": ..., "max_new_tokens", "num_beams"}."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    settings = runfiles.read_side_file(model_dir)
    options = inputs if isinstance(inputs, dict) else {"text": inputs}
    texts = options.get("text") or options.get("inputs") or ""
    single = isinstance(texts, str)
    texts = [texts] if single else [str(t) for t in texts]
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir)).eval()
    enc = tok(
        [settings.get("source_prefix", "") + t for t in texts],
        max_length=settings.get("max_length", 512),
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=int(options.get("max_new_tokens", settings.get("max_target_length", 128))),
            num_beams=int(options.get("num_beams", settings.get("num_beams", 1))),
            do_sample=False,
        )
    decoded = [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
    return decoded[0] if single else decoded


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """ROUGE, BLEU, chrF and exact match of the generated targets; the rows with the lowest chrF first."""
    from engine.train import evaluation

    texts, refs = df["text"].astype(str).tolist(), df["target"].astype(str).tolist()
    asked = {"max_new_tokens": options["max_new_tokens"]} if options.get("max_new_tokens") else {}
    preds = evaluation.batched(
        texts,
        lambda b: predict(model_dir, {"text": b, **asked}),
        options.get("batch_size") or 16,
        options.get("progress"),
    )
    return evaluation.generated_text(refs, preds, texts)


TASK = Task(
    name="seq2seq",
    model_kind="seq2seq",
    hub_pipeline="text2text-generation",
    title="Sequence to sequence",
    family="Text",
    description="Turn one text into another: summarisation, translation, rewriting. Scored with ROUGE, BLEU and chrF.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_rougeL",
    suggested_models=[
        "google/flan-t5-small",
        "google-t5/t5-small",
        "facebook/bart-base",
        "google/flan-t5-base",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An encoder-decoder model (AutoModelForSeq2SeqLM), e.g. google/flan-t5-small, t5-small, facebook/bart-base.",
    check_data=check_data,
    predict_input="text",
    autotrain_names=["text2text", "seq2seq", "text-to-text"],
)
