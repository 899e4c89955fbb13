"""Sentence embeddings with sentence-transformers, in the five AutoTrain modes.

Each mode has its columns, its standard loss and an evaluator on the validation split:

- ``pair`` (anchor, positive) and ``qa`` (query, answer): MultipleNegativesRankingLoss, retrieval metrics.
- ``triplet`` (anchor, positive, negative): MultipleNegativesRankingLoss, triplet accuracy.
- ``pair_class`` (premise, hypothesis, label): SoftmaxLoss, accuracy of the softmax classifier.
- ``pair_score`` (sentence1, sentence2, score): CoSENTLoss, Spearman correlation of cosine similarity.

The evaluator's main metric is also logged as ``eval_score`` (the key metric, for early stopping).
A plain transformers encoder is wrapped as Transformer + mean pooling.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from engine import runfiles
from engine.data import cells
from engine.data.cells import row_numbers
from engine.errors import UserError
from engine.params import TrainerParams, field
from engine.task import Column, Job, Task
from engine.text import qa

TARGETS = ("label", "score")

# mode -> (its columns, in the order the loss reads them; the loss, for the log line)
MODES: dict[str, tuple[list[str], str]] = {
    "pair": (["anchor", "positive"], "MultipleNegativesRankingLoss"),
    "pair_class": (["premise", "hypothesis", "label"], "SoftmaxLoss"),
    "pair_score": (["sentence1", "sentence2", "score"], "CoSENTLoss"),
    "triplet": (["anchor", "positive", "negative"], "MultipleNegativesRankingLoss"),
    "qa": (["query", "answer"], "MultipleNegativesRankingLoss"),
}


class Params(TrainerParams):
    """Sentence-transformers options on top of the shared training options."""

    mode: Literal["pair", "pair_class", "pair_score", "triplet", "qa"] = field(
        "pair_score",
        "What your data holds. pair: (anchor, positive) similar texts; pair_class: (premise, hypothesis, label); "
        "pair_score: (sentence1, sentence2, score); triplet: (anchor, positive, negative); qa: (query, answer).",
    )
    learning_rate: float = field(3e-5, "Peak learning rate.", gt=0, le=1.0)
    max_length: int = field(128, "Longest text in tokens; longer texts are truncated.", ge=4, le=8192)


COLUMNS = [
    Column("anchor", "pair/triplet: the text to embed", required=False),
    Column("positive", "pair/triplet: a text similar to `anchor`", required=False),
    Column("negative", "triplet: a text unlike `anchor`", required=False),
    Column("premise", "pair_class: the first text", required=False),
    Column("hypothesis", "pair_class: the second text", required=False),
    Column(
        "label",
        "pair_class: the class of the pair (e.g. entailment / neutral / contradiction)",
        required=False,
        kind="label",
    ),
    Column("sentence1", "pair_score: the first text", required=False),
    Column("sentence2", "pair_score: the second text", required=False),
    Column("score", "pair_score: how similar the texts are (a number, e.g. 0 to 1)", required=False, kind="number"),
    Column("query", "qa: the question / search query", required=False),
    Column("answer", "qa: the passage that answers `query`", required=False),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """The mode's columns are mapped and filled; scores are numbers; validation labels occur in training."""
    roles = MODES[params.mode][0]
    missing = [r for r in roles if r not in train.columns]
    if missing:
        return [
            f"Mode `{params.mode}` needs the columns {', '.join(roles)}; missing: {', '.join(missing)}. "
            f"Columns mapped: {', '.join(train.columns) or 'none'}. Map yours with column_mapping, "
            f"e.g. {{{missing[0]}: my_column}}, or pick the mode that matches your data."
        ]
    problems = qa.blank_cells_in_splits(train, valid, roles, params.column_mapping)
    if problems:
        return problems
    for split, df in (("Training", train), ("Validation", valid)):
        if df is not None and "score" in roles:
            problems += _score_problems(df, split, params.column_mapping)
    if "label" in roles:
        problems += _label_problems(train, valid, params.column_mapping)
    return problems


def _score_problems(df: Any, split: str, mapping: dict[str, str]) -> list[str]:
    import pandas as pd

    numbers = pd.to_numeric(df["score"], errors="coerce")
    bad = df.index[numbers.isna()].tolist()
    if not bad:
        return []
    return [
        f"{split} data, column `{qa.column_name(mapping, 'score')}`: not a number in row(s) {row_numbers(bad)} "
        f"(first: {df['score'][bad[0]]!r}). Scores must be numbers such as 0.8."
    ]


def _label_problems(train: Any, valid: Any, mapping: dict[str, str]) -> list[str]:
    col = qa.column_name(mapping, "label")
    labels = {cells.label_name(v) for v in train["label"]}
    if len(labels) < 2:
        return [
            f"Training data, column `{col}`: only one label ({next(iter(labels))!r}); pair_class needs at least two."
        ]
    if valid is None:
        return []
    unseen = valid.index[~valid["label"].map(cells.label_name).isin(labels)].tolist()
    if not unseen:
        return []
    return [
        f"Validation data, column `{col}`: label {valid['label'][unseen[0]]!r} in row(s) {row_numbers(unseen)} "
        f"never occurs in the training data (labels: {', '.join(sorted(labels))}). Fix or remove those rows."
    ]


# ---- training -----------------------------------------------------------------------------


def train(job: Job) -> dict[str, float]:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers

    from engine.text import sentence as st
    from engine.train import trainer as tu

    params, roles, loss_name = job.params, *MODES[job.params.mode]
    problems = check_data(job.train, job.valid, params)  # Hub datasets are not checked before queueing
    if problems:
        raise UserError(problems)
    labels = sorted({cells.label_name(v) for v in job.train["label"]}) if "label" in roles else []
    label_ids = {name: i for i, name in enumerate(labels)}
    valid = job.valid if job.valid is not None and len(job.valid) else None
    model = st.load_model(params)
    loss = st.make_loss(model, params.mode, len(labels))
    n_valid = 0 if valid is None else len(valid)
    print(
        f"[trainpad] mode {params.mode}: {len(job.train)} training rows, {n_valid} validation rows; loss {loss_name}",
        flush=True,
    )
    ranking = loss_name == "MultipleNegativesRankingLoss"
    sampler = BatchSamplers.NO_DUPLICATES if ranking else BatchSamplers.BATCH_SAMPLER
    trainer = SentenceTransformerTrainer(
        model=model,
        args=tu.training_arguments(
            job, len(job.train), n_valid, SentenceTransformerTrainingArguments, batch_sampler=sampler
        ),
        train_dataset=st.to_dataset(job.train, roles, label_ids),
        eval_dataset=st.to_dataset(valid, roles, label_ids) if n_valid else None,
        loss=loss,
        evaluator=st.make_evaluator(valid, params.mode, roles, loss, label_ids) if n_valid else None,
        callbacks=tu.callbacks(params, job.run_dir, n_valid > 0),
    )
    saver = functools.partial(save, trainer=trainer, params=params, labels=labels)
    return tu.train_and_save(trainer, params, job.run_dir, n_valid > 0, save=saver)


def save(model_dir: Path, trainer: Any, params: Params, labels: list[str]) -> None:
    """The SentenceTransformer folder and the settings ``predict`` and a reader need (mode, labels, length)."""
    trainer.model.save_pretrained(str(model_dir))
    settings = {"task": "sentence_transformers", "mode": params.mode, "labels": labels, "max_length": params.max_length}
    runfiles.write_side_file(model_dir, settings)


# ---- inference ----------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> dict[str, Any]:
    """Embeddings and similarities for the playground.

    - one text: its embedding;
    - several lines of text, or {"query": ..., "candidates": [...]}: the candidates ranked by cosine
      similarity to the first line / the query;
    - a list of texts, or {"sentences": [...]}: their embeddings and the similarity matrix.
    """
    from engine.text import sentence as st

    return st.embed(model_dir, inputs)


# ---- evaluation ---------------------------------------------------------------------------

EVAL_ORDER = ("pair_score", "triplet", "pair", "qa", "pair_class")  # which mode a test file's columns are read as


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """By the test data's columns: pair_score, Spearman/Pearson of cosine vs score; triplet, accuracy of
    cos(anchor, positive) > cos(anchor, negative) and recall@1; pair/qa, recall@1/@5 and MRR of the positive among
    all the test file's candidates. Rows worst first."""
    from engine.text import evaluation as te

    side, params = runfiles.read_side_file(model_dir), options.get("params") or {}
    roles = {m: MODES[m][0] for m in EVAL_ORDER}
    mode = te.embedding_mode(df, side.get("mode") or params.get("mode"), roles)
    if problems := qa.blank_cells(df, roles[mode], "Test"):
        raise UserError(problems)
    if mode == "pair_score" and (problems := _score_problems(df, "Test", {})):
        raise UserError(problems)
    texts = [r for r in roles[mode] if r not in TARGETS]
    return te.evaluate_embeddings(
        model_dir, df, mode, texts, side.get("max_length") or params.get("max_length"), options
    )


def from_autotrain(raw: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """AutoTrain names the mode `trainer` and the columns sentence1/2/3 + target: map them to this mode's roles."""
    mode = raw.get("trainer") or (raw.get("params") or {}).get("trainer") or params.get("mode") or "pair_score"
    roles = MODES.get(mode, MODES["pair_score"])[0]
    generic = {"sentence1": 0, "sentence2": 1, "sentence3": 2}
    mapping = {}
    for key, column in (params.get("column_mapping") or {}).items():
        if key in generic and generic[key] < len(roles):
            key = roles[generic[key]]
        elif key == "target":
            key = next((r for r in roles if r in TARGETS), key)
        mapping[key] = column
    return {**params, "mode": mode, "column_mapping": mapping}


TASK = Task(
    name="sentence_transformers",
    model_kind="text",
    hub_pipeline="sentence-similarity",
    title="Sentence embeddings",
    family="Text",
    description="Train a sentence-transformers embedding model for search, clustering and similarity, from pairs, "
    "triplets, scored pairs, labelled pairs or question/answer pairs.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_score",
    suggested_models=[
        "sentence-transformers/all-MiniLM-L6-v2",
        "BAAI/bge-small-en-v1.5",
        "sentence-transformers/all-mpnet-base-v2",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="A sentence-transformers model (e.g. sentence-transformers/all-MiniLM-L6-v2) or any encoder "
    "(e.g. bert-base-uncased, wrapped with mean pooling).",
    check_data=check_data,
    predict_input="text",
    autotrain_names=["sentence-transformers", "st"],
    from_autotrain=from_autotrain,
    library="sentence-transformers",
)
