"""Extractive question answering: find the answer span to a question inside a context.

Answers come in SQuAD form (``{"text": [...], "answer_start": [...]}``, also as JSON text in a CSV
cell) or as two plain columns (``answer_text`` + ``answer_start``). Long contexts are split into
overlapping windows (``doc_stride``); questions without an answer (SQuAD v2) are learnt when
``allow_unanswerable`` is on. Metrics: exact match and F1 (the SQuAD metric, 0-100).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.errors import UserError
from engine.params import TrainerParams, field
from engine.task import Column, Job, Task
from engine.text import qa


class Params(TrainerParams):
    """Extractive-QA options on top of the shared training options."""

    max_length: int = field(
        384, "Longest question + context window in tokens; longer contexts are split into windows.", ge=32, le=8192
    )
    doc_stride: int = field(128, "Overlap in tokens between consecutive windows of a long context.", ge=0, le=4096)
    max_answer_length: int = field(
        30, "Longest answer span in tokens the model may return.", ge=1, le=1024, advanced=True
    )
    allow_unanswerable: bool = field(
        False,
        "Some questions have no answer in their context (SQuAD v2): rows with an empty answer teach the model "
        "to say so. Off: every row must have an answer.",
    )
    null_score_threshold: float = field(
        0.0,
        "Answer only when the best span beats 'no answer' by this log-probability margin (higher = fewer answers).",
        advanced=True,
        show_if={"allow_unanswerable": True},
    )
    n_best: int = field(
        20, "Start/end candidates considered per window when picking the answer span.", ge=1, le=100, advanced=True
    )


COLUMNS = [
    Column("context", "the passage that contains the answer"),
    Column("question", "the question about the context"),
    Column(
        "answers",
        'SQuAD-form answers: {"text": ["..."], "answer_start": [char offset]} (or its JSON text)',
        required=False,
        kind="any",
    ),
    Column("answer_text", "the answer as plain text (with `answer_start`), instead of `answers`", required=False),
    Column("answer_start", "character offset of `answer_text` in the context", required=False, kind="number"),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Answer columns present; no blank contexts/questions; every answer occurs in its context at answer_start."""
    cols = set(train.columns)
    if "answers" not in cols and not {"answer_text", "answer_start"} <= cols:
        missing = "answer_start" if "answer_text" in cols else "answer_text" if "answer_start" in cols else "answers"
        return [
            f"Extractive QA needs an `answers` column (SQuAD form) or both `answer_text` and `answer_start` "
            f"columns; `{missing}` is missing. Columns mapped: {', '.join(sorted(cols))}. "
            "Map yours with column_mapping, e.g. {answers: my_answers}."
        ]
    problems = []
    for split, df in (("Training", train), ("Validation", valid)):
        if df is None:
            continue
        blanks = qa.blank_cells(df, ["context", "question"], split, params.column_mapping)
        problems += blanks or qa.answer_problems(df, split, params.column_mapping, params.allow_unanswerable)
    return qa.cap(problems)


# ---- training -----------------------------------------------------------------------------


def save(model_dir: Path, trainer: Any, params: Params) -> None:
    """The model, its tokenizer and the settings ``predict`` needs (lengths, stride, unanswerable handling)."""
    from engine.train.trainer import save_trainer_model

    save_trainer_model(trainer, model_dir)
    runfiles.write_side_file(model_dir, {"task": "extractive_qa", **settings(params)})


def settings(params: Params) -> dict[str, Any]:
    return {k: getattr(params, k) for k in qa.SETTINGS}


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding, Trainer

    from engine.train import trainer as tu

    params, mapping = job.params, job.params.column_mapping
    problems = check_data(job.train, job.valid, params)  # Hub datasets are not checked before queueing
    if problems:
        raise UserError(problems)
    tok = qa.load_fast_tokenizer(params.base_model, params.trust_remote_code)
    train_feats = qa.table_features(job.train, tok, settings(params), mapping)
    valid = job.valid if job.valid is not None and len(job.valid) else None
    valid_feats = qa.table_features(valid, tok, settings(params), mapping) if valid is not None else []
    print(
        f"[trainpad] {len(job.train)} training questions -> {len(train_feats)} windows; "
        f"{0 if valid is None else len(valid)} validation questions -> {len(valid_feats)} windows",
        flush=True,
    )
    compute = functools.partial(
        qa.squad_compute, feats=valid_feats, df=valid, tok=tok, settings=settings(params), mapping=mapping
    )
    trainer = Trainer(
        model=AutoModelForQuestionAnswering.from_pretrained(
            params.base_model, trust_remote_code=params.trust_remote_code
        ),
        args=tu.training_arguments(job, len(train_feats), len(valid_feats)),
        train_dataset=qa.model_inputs(train_feats),
        eval_dataset=qa.model_inputs(valid_feats) if valid_feats else None,
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
        callbacks=tu.callbacks(params, job.run_dir, bool(valid_feats)),
        compute_metrics=compute if valid_feats else None,
    )
    saver = functools.partial(save, trainer=trainer, params=params)
    return tu.train_and_save(trainer, params, job.run_dir, bool(valid_feats), save=saver)


# ---- inference ----------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """Answer {"question", "context"} (or a list of them): {answer, score, start, end}; "" = no answer."""
    items = inputs if isinstance(inputs, list) else [inputs]
    if not all(isinstance(i, dict) and i.get("question") and i.get("context") for i in items):
        raise UserError('Give a question and a context, e.g. {"question": "Who ...?", "context": "..."}.')
    best = qa.answer(model_dir, items, runfiles.read_side_file(model_dir))
    return best if isinstance(inputs, list) else best[0]


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Exact match and token F1 (SQuAD style, 0-100) of the answer spans; rows with the lowest F1 first."""
    from engine.text import evaluation as te

    if blanks := qa.blank_cells(df, ["context", "question"], "Test"):
        raise UserError(blanks)
    golds = te.gold_answers(df)
    questions, contexts = [str(q).strip() for q in df["question"]], [str(c) for c in df["context"]]
    batch, progress = options.get("batch_size") or 16, options.get("progress")
    return te.qa_report(questions, golds, te.predict_answers(model_dir, questions, contexts, batch, progress))


TASK = Task(
    name="extractive_qa",
    model_kind="text",
    hub_pipeline="question-answering",
    title="Extractive question answering",
    family="Text",
    description="Find the answer to a question as a span of its context (SQuAD style, with or without "
    "unanswerable questions). Scored with exact match and F1.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_f1",
    suggested_models=[
        "distilbert/distilbert-base-uncased",
        "google-bert/bert-base-uncased",
        "deepset/roberta-base-squad2",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An encoder with a fast tokenizer (AutoModelForQuestionAnswering), e.g. bert-base-uncased, "
    "distilbert-base-uncased, deberta-v3-base.",
    check_data=check_data,
    predict_input="json",
    autotrain_columns={"text_column": "context", "question_column": "question", "answer_column": "answers"},
    autotrain_names=["extractive-qa", "extractive-question-answering", "text-extractive-qa"],
)
