"""Text regression: predict one number (or several) from a text, e.g. a rating, a score, a price."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.data import cells
from engine.data.cells import row_numbers
from engine.errors import UserError
from engine.task import Column, Job, Task
from engine.text import encoders as xu
from engine.train import charts
from engine.train import metrics as metrics_lib


class Params(xu.EncoderParams):
    """Regression uses the shared encoder options as they are."""


COLUMNS = [
    Column("text", "the text to score"),
    Column(
        "target",
        "the number to predict (several targets: a list like [3.5, 1.0] per row)",
        kind="any",
        aliases=("label", "score", "value", "rating"),
    ),
]


def row_target(value: Any, row: int) -> list[float]:
    """The target(s) of one row as floats; UserError naming the row and the value otherwise."""
    listed = cells.is_list_cell(value) or (isinstance(value, str) and value.strip().startswith("["))
    values = cells.parse_list(value, row, "target", split=False) if listed else [value]
    out = []
    for v in values:
        if cells.is_missing(v):
            raise UserError(f"Row {row}, column `target`: no value. Fill it or remove the row.")
        try:
            number = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError):
            raise UserError(
                f"Row {row}, column `target`: `{v}` is not a number. Regression needs numeric "
                "targets; for classes use the text_classification task."
            ) from None
        if not math.isfinite(number):
            raise UserError(f"Row {row}, column `target`: `{v}` is not a finite number.")
        out.append(number)
    return out


def all_targets(values: Any) -> tuple[list[list[float]], list[str]]:
    """Targets of every row, and the problems found (bad values, rows with a different number of targets)."""
    rows, problems = cells.parse_rows(values, row_target, [])
    sizes = [len(r) for r in rows if r]
    if sizes and not problems:
        common = max(set(sizes), key=sizes.count)
        odd = [i for i, r in enumerate(rows) if len(r) != common]
        if odd:
            problems.append(
                f"Column `target`: most rows have {common} value(s), but row(s) "
                f"{row_numbers(odd)} differ. Give every row the same number of targets."
            )
    return rows, problems


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Every target is a finite number, with the same count per row in training and validation data."""
    targets, problems = all_targets(train["target"])
    problems = [f"Training data: {p}" for p in problems[:10]]
    if valid is not None:
        vtargets, vproblems = all_targets(valid["target"])
        problems += [f"Validation data: {p}" for p in vproblems[:10]]
        if not problems and targets and vtargets and len(targets[0]) != len(vtargets[0]):
            problems.append(
                f"Training rows have {len(targets[0])} target(s) but validation rows have "
                f"{len(vtargets[0])}. Use the same targets in both files."
            )
    return problems


def encode(df: Any, tok: Any, params: Params) -> list[dict]:
    targets, problems = all_targets(df["target"])
    if problems:
        raise UserError(problems[:10])
    enc = tok(df["text"].astype(str).tolist(), truncation=True, max_length=params.max_length)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": t if len(t) > 1 else t[0]} for i, t in enumerate(targets)]


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    params = job.params
    tok = xu.load_tokenizer(params)
    train_rows = encode(job.train, tok, params)
    valid_rows = encode(job.valid, tok, params) if job.valid is not None else None
    n_targets = len(train_rows[0]["labels"]) if isinstance(train_rows[0]["labels"], list) else 1
    names = [f"target_{i}" for i in range(n_targets)]
    model = xu.load_model(
        params,
        AutoModelForSequenceClassification,
        tok,
        num_labels=n_targets,
        problem_type="regression",
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    runfiles.print_summary(
        "text regression", len(train_rows), len(valid_rows or []), targets=n_targets, max_length=params.max_length
    )
    collator = DataCollatorWithPadding(tok)

    def compute(pred: Any) -> dict[str, float]:  # the scores, and predicted-vs-true for the run page
        import numpy as np

        true, predicted = np.asarray(pred.label_ids), np.asarray(pred.predictions)
        charts.write_predictions(job.run_dir, true.reshape(len(true), -1)[:, 0], predicted.reshape(len(true), -1)[:, 0])
        return metrics(pred)

    return xu.fit(job, model, tok, train_rows, valid_rows, collator=collator, compute_metrics=compute)


def metrics(pred: Any) -> dict[str, float]:
    """``compute_metrics``: MSE, RMSE, MAE, and R² with more than one row."""
    return metrics_lib.regression_metrics(pred.label_ids, pred.predictions)


def predict(model_dir: Path, inputs: Any) -> Any:
    """The predicted number per text (a list of numbers when the model has several targets)."""
    texts, single = xu.as_texts(inputs)
    pipe = xu.load_pipeline(model_dir, "text-classification", top_k=None, function_to_apply="none")
    out = []
    for scores in pipe(texts, truncation=True):
        by_id = sorted(scores, key=lambda s: pipe.model.config.label2id.get(s["label"], 0))
        values = [round(float(s["score"]), 6) for s in by_id]
        out.append(values[0] if len(values) == 1 else values)
    return out[0] if single else out


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """MSE, RMSE, MAE and R² on a test set; the rows with the largest errors first."""
    from engine.train import evaluation

    texts = df["text"].astype(str).tolist()
    try:
        refs = [float(v) if not isinstance(v, list) else [float(x) for x in v] for v in df["target"]]
    except (TypeError, ValueError):
        raise UserError("Test data: column `target` must hold numbers (the score to predict).") from None
    out = evaluation.batched(
        texts, lambda b: predict(model_dir, b), options.get("batch_size") or 32, options.get("progress")
    )
    return evaluation.regression(refs, out, texts)


TASK = Task(
    name="text_regression",
    model_kind="text",
    hub_pipeline="text-classification",
    title="Text regression",
    family="Text",
    description="Predict a number from a text: a rating, a readability score, a price, a sentiment strength...",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_r2",
    suggested_models=[
        "prajjwal1/bert-tiny",
        "distilbert/distilbert-base-uncased",
        "FacebookAI/roberta-base",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An encoder model (AutoModelForSequenceClassification with problem_type=regression), e.g. a BERT, "
    "RoBERTa or DeBERTa checkpoint; a regression head is added.",
    check_data=check_data,
    predict_input="text",
    autotrain_names=["text-regression", "text_single_column_regression"],
)
