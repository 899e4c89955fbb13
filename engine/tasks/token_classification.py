"""Token classification (named entities, part-of-speech...): one tag per word, tags aligned to sub-words."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.data import cells
from engine.errors import UserError
from engine.task import Column, Job, Task
from engine.text import encoders as xu
from engine.train import charts


class Params(xu.EncoderParams):
    """Token classification uses the shared encoder options as they are."""


COLUMNS = [
    Column(
        "tokens",
        "the words of a sentence: a list, a JSON list, or words separated by spaces",
        kind="list",
        aliases=("words",),
    ),
    Column(
        "tags",
        "one tag per word (e.g. B-PER, I-PER, O): a list, a JSON list, or tags separated by spaces",
        kind="list",
        aliases=("ner_tags", "labels", "pos_tags"),
    ),
]


def parse_row(tokens: Any, tags: Any, row: int) -> tuple[list[str], list[str]]:
    """The words and tags of one row; UserError naming the row when they are empty or of different lengths."""
    words = [str(w) for w in cells.parse_list(tokens, row, "tokens")]
    labels = [cells.label_name(t) for t in cells.parse_list(tags, row, "tags")]
    if not words:
        raise UserError(f"Row {row}, column `tokens`: no words. Fill it or remove the row.")
    if len(words) != len(labels):
        raise UserError(
            f"Row {row}: {len(words)} word(s) in `tokens` but {len(labels)} tag(s) in `tags`. "
            "Give exactly one tag per word."
        )
    return words, labels


def parse_rows(df: Any) -> tuple[list[tuple[list[str], list[str]]], list[str]]:
    """Every row's (words, tags), and the problems found."""
    pairs = zip(df["tokens"], df["tags"], strict=True)
    return cells.parse_rows(pairs, lambda pair, row: parse_row(*pair, row), ([], []))


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Words and tags readable and of equal length in every row; validation tags all seen in training."""
    rows, found = parse_rows(train)
    problems = [f"Training data: {p}" for p in found[:10]]
    if valid is not None:
        vrows, vfound = parse_rows(valid)
        problems += [f"Validation data: {p}" for p in vfound[:10]]
        if not problems:
            problems = cells.unseen_problem({t for _, tags in rows for t in tags}, (tags for _, tags in vrows), "tag")
    return problems


def encode(rows: list[tuple[list[str], list[str]]], tok: Any, label2id: dict[str, int], max_length: int) -> list[dict]:
    """Tokenized words with the tag id on each word's first sub-word (-100 elsewhere, ignored by the loss)."""
    enc = tok([w for w, _ in rows], is_split_into_words=True, truncation=True, max_length=max_length)
    out = []
    for i, (_, tags) in enumerate(rows):
        labels, prev = [], None
        for word in enc.word_ids(i):
            labels.append(-100 if word is None or word == prev else label2id.get(tags[word], -100))
            prev = word
        out.append({**{k: v[i] for k, v in enc.items()}, "labels": labels})
    return out


def load_word_tokenizer(params: Params) -> Any:
    """The tokenizer, set up for pre-split words (byte-level BPE tokenizers need ``add_prefix_space``)."""
    tok = xu.load_tokenizer(params)
    try:
        tok(["a", "b"], is_split_into_words=True)
    except (ValueError, TypeError, AssertionError):
        tok = xu.load_tokenizer(params, add_prefix_space=True)
    return xu.require_fast(tok, params.base_model, "token classification needs to align tags with sub-words")


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

    params = job.params
    rows, problems = parse_rows(job.train)
    vrows, vproblems = parse_rows(job.valid) if job.valid is not None else ([], [])
    if problems or vproblems:
        raise UserError((problems + vproblems)[:10])
    id2label, label2id = cells.label_maps(t for _, tags in rows for t in tags)
    tok = load_word_tokenizer(params)
    model = xu.load_model(
        params, AutoModelForTokenClassification, tok, num_labels=len(id2label), id2label=id2label, label2id=label2id
    )
    cells.warn_unseen(label2id, (tags for _, tags in vrows), "tag", "have words left out of evaluation")
    train_rows = encode(rows, tok, label2id, params.max_length)
    valid_rows = encode(vrows, tok, label2id, params.max_length) if vrows else None
    runfiles.print_summary(
        "token classification", len(train_rows), len(valid_rows or []), tags=len(id2label), max_length=params.max_length
    )
    return xu.fit(
        job,
        model,
        tok,
        train_rows,
        valid_rows,
        collator=DataCollatorForTokenClassification(tok),
        compute_metrics=functools.partial(metrics, id2label=id2label, run_dir=job.run_dir),
        preprocess_logits=xu.best_ids,
    )


def metrics(pred: Any, id2label: dict[int, str], run_dir: Path) -> dict[str, float]:
    """seqeval scores; each entity type's precision, recall, F1 and support go to the run page's table."""
    true, guess = xu.tagged(pred, id2label)
    scores, per_entity = xu.seqeval_scores(true, guess)
    charts.write_per_entity(run_dir, per_entity)
    return scores


def predict(model_dir: Path, inputs: Any) -> Any:
    """Entities found in each text: ``[{"entity", "word", "score", "start", "end"}]`` (sub-words merged)."""
    texts, single = xu.as_texts(inputs)
    pipe = xu.load_pipeline(model_dir, "token-classification", aggregation_strategy="simple")
    out = [[entity(e) for e in ents] for ents in pipe(texts)]
    return out[0] if single else out


def entity(found: dict[str, Any]) -> dict[str, Any]:
    """One entity of the pipeline's output as plain JSON values."""
    start, end = found.get("start"), found.get("end")
    return {
        "entity": found["entity_group"],
        "word": found["word"],
        "score": round(float(found["score"]), 6),
        "start": None if start is None else int(start),
        "end": None if end is None else int(end),
    }


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Entity precision/recall/F1 (seqeval, micro), per entity type, token accuracy; rows with wrong entities first.
    Test tags must be tags the model knows."""
    from engine.text import evaluation as te
    from engine.train import evaluation

    rows, problems = parse_rows(df)
    if problems:
        raise UserError([f"Test data: {p}" for p in problems[:10]])
    config = runfiles.read_json(Path(model_dir) / "config.json") or {}
    known = {str(v) for v in (config.get("id2label") or {}).values()}
    evaluation.unseen_labels_error(known, [t for _, tags in rows for t in tags], "tag")
    max_length = (options.get("params") or {}).get("max_length") or 512
    words = [w for w, _ in rows]
    pred = te.predict_word_tags(model_dir, words, options.get("batch_size") or 32, max_length, options.get("progress"))
    return te.tagging_report(words, [t for _, t in rows], pred)


TASK = Task(
    name="token_classification",
    model_kind="text",
    hub_pipeline="token-classification",
    title="Token classification",
    family="Text",
    description="Tag each word of a sentence: named entities (people, places...), part-of-speech, keywords...",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_f1",
    suggested_models=[
        "distilbert/distilbert-base-cased",
        "google-bert/bert-base-cased",
        "FacebookAI/roberta-base",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An encoder model with a fast tokenizer (AutoModelForTokenClassification), e.g. a BERT, RoBERTa or "
    "DeBERTa checkpoint; a tagging head is added for your tags.",
    check_data=check_data,
    predict_input="text",
    autotrain_names=["token-classification", "token_classification"],
)
