"""Text classification: binary, multi-class and multi-label, with labels as strings, ints or bools."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from engine import runfiles
from engine.data import cells
from engine.errors import UserError
from engine.params import field
from engine.task import Column, Job, Task
from engine.text import encoders as xu
from engine.train import charts
from engine.train import metrics as metrics_lib


class Params(xu.EncoderParams):
    """Classification options on top of the shared encoder options."""

    multi_label: Literal["auto", "yes", "no"] = field(
        "auto",
        'Several labels per text. auto: yes when labels are lists (or JSON lists like ["a", "b"]) '
        "or when label_separator is set.",
    )
    label_separator: str = field(
        "",
        "Split text labels on this (e.g. `,` or `|`) for multi-label data. Empty: each label is one class.",
        advanced=True,
    )
    threshold: float = field(
        0.5, "Multi-label: a label is predicted when its probability reaches this.", gt=0.0, lt=1.0, advanced=True
    )


COLUMNS = [
    Column("text", "the text to classify"),
    Column(
        "target",
        "the label: a string, int or bool; for multi-label a list or a delimited string",
        kind="label",
        aliases=("label", "labels", "class", "category", "sentiment"),
    ),
]


# ---- labels -------------------------------------------------------------------------------


def is_multi_label(values: Any, params: Params) -> bool:
    if params.multi_label != "auto":
        return params.multi_label == "yes"
    return bool(params.label_separator) or any(cells.is_list_cell(v) for v in values)


def row_labels(value: Any, row: int, multi: bool, params: Params) -> list[str]:
    """The label(s) of one row as strings; UserError naming the row when there are none."""
    if not multi:
        if cells.is_missing(value):
            raise UserError(f"Row {row}, column `target`: no label. Fill it or remove the row.")
        if cells.is_list_cell(value):
            raise UserError(
                f"Row {row}, column `target`: a list of labels, but multi_label is `no`. "
                "Set multi_label to yes (or auto), or give one label per row."
            )
        return [cells.label_name(value)]
    if isinstance(value, str) and params.label_separator and not value.strip().startswith("["):
        labels = [cells.label_name(x) for x in value.split(params.label_separator) if x.strip()]
    else:
        labels = [
            cells.label_name(x) for x in cells.parse_list(value, row, "target", split=False) if not cells.is_missing(x)
        ]
    if not labels:
        raise UserError(f"Row {row}, column `target`: no label. Fill it or remove the row.")
    return labels


def all_labels(values: Any, multi: bool, params: Params) -> tuple[list[list[str]], list[str]]:
    """Labels of every row, and the problems found (row numbers are 1-based)."""
    return cells.parse_rows(values, functools.partial(row_labels, multi=multi, params=params), [])


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Every row has a label; at least two classes; validation labels all occur in the training data."""
    multi = is_multi_label(train["target"], params)
    labels, problems = all_labels(train["target"], multi, params)
    if problems:
        return [f"Training data: {p}" for p in problems[:10]]
    names = {x for row in labels for x in row}
    if len(names) < 2 and not multi:
        return [f"Column `target` holds a single class ({', '.join(names)}). Classification needs at least two."]
    if not multi and len(names) > max(50, len(labels) // 2) and all(cells.is_number(n) for n in names):
        problems.append(
            f"Column `target` has {len(names)} different numbers for {len(labels)} rows: "
            "it looks like a score. Use the text_regression task for numeric targets."
        )
    if valid is not None:
        vlabels, vproblems = all_labels(valid["target"], multi, params)
        problems += [f"Validation data: {p}" for p in vproblems[:10]] + cells.unseen_problem(names, vlabels)
    return problems


# ---- training -----------------------------------------------------------------------------


def encode(df: Any, tok: Any, label2id: dict[str, int], multi: bool, params: Params) -> list[dict]:
    """Tokenized rows with ``labels``: a class id, or a 0/1 float vector for multi-label."""
    labels, _ = all_labels(df["target"], multi, params)
    enc = tok(df["text"].astype(str).tolist(), truncation=True, max_length=params.max_length)
    targets = [[float(n in row) for n in label2id] if multi else label2id[row[0]] for row in labels]
    return [{**{k: v[i] for k, v in enc.items()}, "labels": t} for i, t in enumerate(targets)]


def drop_unseen(valid_df: Any, label2id: dict[str, int], multi: bool, params: Params) -> Any:
    """Validation rows whose labels the model knows (a random split can leave a rare label only there)."""
    labels, _ = all_labels(valid_df["target"], multi, params)
    where = cells.warn_unseen(label2id, labels, "label", "left out of evaluation")
    return valid_df.drop(index=valid_df.index[where]).reset_index(drop=True) if where else valid_df


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

    params = job.params
    multi = is_multi_label(job.train["target"], params)
    labels, problems = all_labels(job.train["target"], multi, params)
    if problems:
        raise UserError(problems[:10])
    id2label, label2id = cells.label_maps(x for row in labels for x in row)
    tok = xu.load_tokenizer(params)
    model = xu.load_model(
        params,
        AutoModelForSequenceClassification,
        tok,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        problem_type="multi_label_classification" if multi else "single_label_classification",
    )
    model.config.threshold = params.threshold  # saved in config.json; predict uses it for multi-label
    train_rows = encode(job.train, tok, label2id, multi, params)
    valid_rows = None
    if job.valid is not None:
        valid_rows = encode(drop_unseen(job.valid, label2id, multi, params), tok, label2id, multi, params)
    runfiles.print_summary(
        "text classification",
        len(train_rows),
        len(valid_rows or []),
        classes=len(id2label),
        multi_label=multi,
        max_length=params.max_length,
    )
    names = [id2label[i] for i in range(len(id2label))]

    def compute(pred: Any) -> dict[str, float]:  # the scores, and the confusion matrix for the run page
        import numpy as np

        out = metrics_lib.classifier_metrics(pred, multi=multi, threshold=params.threshold)
        if not multi:
            charts.write_confusion(job.run_dir, pred.label_ids, np.asarray(pred.predictions).argmax(-1), names)
        return out

    return xu.fit(
        job, model, tok, train_rows, valid_rows, collator=DataCollatorWithPadding(tok), compute_metrics=compute
    )


# ---- playground ---------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """``{"label": best, "scores": {label: probability}}`` per text (multi-label: ``labels`` above the threshold)."""
    texts, single = xu.as_texts(inputs)
    pipe = xu.load_pipeline(model_dir, "text-classification", top_k=None)
    multi = pipe.model.config.problem_type == "multi_label_classification"
    threshold = float(getattr(pipe.model.config, "threshold", 0.5))
    out = []
    for scores in pipe(texts, truncation=True):
        ranked = {s["label"]: round(float(s["score"]), 6) for s in scores}
        result: dict[str, Any] = {"label": scores[0]["label"], "scores": ranked}
        if multi:
            result["labels"] = [k for k, v in ranked.items() if v >= threshold]
        out.append(result)
    return out[0] if single else out


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, F1, per-class report and confusion matrix on a test set; test labels must be the model's."""
    from engine.train import evaluation

    config = runfiles.read_json(Path(model_dir) / "config.json") or {}
    known = {str(v) for v in (config.get("id2label") or {}).values()}
    multi = config.get("problem_type") == "multi_label_classification"
    params = Params.model_construct(**(options.get("params") or {}))
    labels, problems = all_labels(df["target"], multi, params)
    if problems:
        raise UserError([f"Test data: {p}" for p in problems[:10]])
    evaluation.unseen_labels_error(known, [x for row in labels for x in row] if multi else [r[0] for r in labels])
    texts = df["text"].astype(str).tolist()
    out = evaluation.batched(
        texts, lambda b: predict(model_dir, b), options.get("batch_size") or 32, options.get("progress")
    )
    if not multi:
        return evaluation.classification(
            [r[0] for r in labels], [o["label"] for o in out], [o["scores"] for o in out], texts
        )
    refs, preds = ["|".join(sorted(r)) for r in labels], ["|".join(sorted(o["labels"])) for o in out]
    return evaluation.classification(refs, preds, [{p: 1.0} for p in preds], texts)


TASK = Task(
    name="text_classification",
    model_kind="text",
    hub_pipeline="text-classification",
    title="Text classification",
    family="Text",
    description="Sort texts into classes (binary, multi-class or multi-label): sentiment, topics, intents, spam...",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    key_metric="eval_f1_macro",
    suggested_models=[
        "prajjwal1/bert-tiny",
        "distilbert/distilbert-base-uncased",
        "FacebookAI/roberta-base",
        "microsoft/deberta-v3-base",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An encoder model (AutoModelForSequenceClassification), e.g. a BERT, RoBERTa, DeBERTa or "
    "DistilBERT checkpoint; a classification head is added for your labels.",
    stratify_role="target",
    check_data=check_data,
    predict_input="text",
    evaluate=evaluate,
    autotrain_names=[
        "text-classification",
        "text_multi_class_classification",
        "text_binary_classification",
        "text_multi_label_classification",
    ],
)
