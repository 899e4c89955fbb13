"""Helpers shared by the encoder-model text tasks (classification, regression, token classification, ...).

Module level imports are light (the UI imports the task files that import this module); torch,
transformers and sklearn are imported inside the functions that run in workers.

- parameters: :class:`EncoderParams` (base model, ``max_length``, best-model-kept defaults);
- reading cells: :func:`parse_list` (lists, JSON/Python list text, whitespace-joined words),
  :func:`label_name` (strings/ints/bools/floats -> one stable label string);
- rows and labels: :func:`parse_rows`, :func:`label_maps`, :func:`unseen_labels`, :func:`unseen_problem`,
  :func:`warn_unseen`;
- models: :func:`load_tokenizer`, :func:`load_model`, :func:`fit` (Trainer + events + early stopping + save);
- metrics: :func:`classification_metrics`, :func:`multilabel_metrics`, :func:`regression_metrics`,
  :func:`seqeval_metrics`, :func:`generation_metrics` (plain dicts of floats, keys without the ``eval_`` prefix).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.params import TrainerParams, field
from engine.train.metrics import generation_metrics, metric_key

Optimizer = TrainerParams.model_fields["optimizer"].annotation


class EncoderParams(TrainerParams):
    """Options shared by tasks that fine-tune an encoder (BERT-like) model with a task head."""

    base_model: str = field(
        "google-bert/bert-base-uncased",
        "Hub model id (e.g. `google-bert/bert-base-uncased`, `FacebookAI/roberta-base`) or a local model folder.",
    )
    learning_rate: float = field(5e-5, "Peak learning rate (2e-5..5e-5 suits pretrained models).", gt=0, le=1.0)
    max_length: int = field(128, "Longest text in tokens; longer texts are truncated.", ge=8, le=8192)
    optimizer: Optimizer = field(
        "adamw_torch_fused",
        "Optimizer. adamw_torch_fused is AdamW in one kernel (faster on CPU and GPU). "
        "8-bit optimizers need a GPU and bitsandbytes.",
        advanced=True,
    )
    early_stopping_patience: int = field(
        5,
        "Stop when the validation metric has not improved for N evaluations, and keep the best model "
        "(0 = off: keep the last model).",
        ge=0,
        advanced=True,
    )


# ---- reading cells ------------------------------------------------------------------------


# ---- labels -------------------------------------------------------------------------------


# ---- models -------------------------------------------------------------------------------


def load_tokenizer(params: Any, **kwargs: Any) -> Any:
    """The base model's tokenizer, with a pad token (falls back to EOS/UNK when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def require_fast(tok: Any, model: str, why: str) -> Any:
    """``tok`` when it is a fast (Rust) tokenizer; a UserError saying what needs one otherwise."""
    if not tok.is_fast:
        raise UserError(
            f"Model `{model}` has no fast tokenizer, which {why}. Pick a model with a fast (Rust) tokenizer, i.e. "
            "a tokenizer.json (most BERT/RoBERTa/DeBERTa checkpoints)."
        )
    return tok


def load_model(params: Any, model_cls: Any, tok: Any, **config: Any) -> Any:
    """``model_cls.from_pretrained`` in fp32 with ``config`` overrides (num_labels, id2label, problem_type...)."""
    model = model_cls.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code, **config)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model


def fit(
    job: Any,
    model: Any,
    tok: Any,
    train_rows: list[dict],
    valid_rows: list[dict] | None,
    *,
    collator: Any,
    compute_metrics: Callable | None,
    preprocess_logits: Callable | None = None,
) -> dict[str, float]:
    """Train the job with the Hugging Face ``Trainer``: events, Stop, early stopping and best model on the task's
    key metric, save to run_dir/model. ``train_rows``/``valid_rows``: tokenized feature dicts; returns the final
    metrics."""
    from transformers import Trainer

    from engine.train import trainer as tu

    has_eval = bool(valid_rows)
    args = tu.training_arguments(job, len(train_rows), len(valid_rows or []), remove_unused_columns=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=valid_rows if has_eval else None,
        processing_class=tok,
        data_collator=collator,
        compute_metrics=compute_metrics if has_eval else None,
        preprocess_logits_for_metrics=preprocess_logits,
        callbacks=tu.callbacks(job.params, job.run_dir, has_eval),
    )
    metrics = tu.train_and_save(trainer, job.params, job.run_dir, has_eval)
    metrics.pop("eval_perplexity", None)  # exp(loss) means nothing for a task head
    return metrics


def load_pipeline(model_dir: str | Path, task: str, **kwargs: Any) -> Any:
    """A ``transformers.pipeline`` on a saved model folder (CPU unless a GPU is present).

    Cached per folder and options: the playground's prediction process asks again for every input.
    """
    return _pipeline(str(Path(model_dir).resolve()), task, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=2)
def _pipeline(model_dir: str, task: str, options: tuple) -> Any:
    import torch
    from transformers import pipeline

    device = 0 if torch.cuda.is_available() else -1
    return pipeline(task, model=model_dir, tokenizer=model_dir, device=device, **dict(options))


def as_texts(inputs: Any) -> tuple[list[str], bool]:
    """Playground inputs as a list of texts, and whether a single text was given."""
    if isinstance(inputs, dict):
        inputs = inputs.get("text", inputs.get("inputs", ""))
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, (list, tuple)) and all(isinstance(x, str) for x in inputs):
        return list(inputs), False
    raise UserError("Give a text (or a list of texts) to predict on.")


# ---- metrics ------------------------------------------------------------------------------


def is_iob(tags: Iterable[str]) -> bool:
    """True when the tag set follows an IOB/IOBES scheme (``B-PER``, ``I-PER``, ``O`` ...)."""
    tags = [t for t in set(tags) if t != "O"]
    return bool(tags) and all(t[:2] in ("B-", "I-", "E-", "S-", "L-", "U-") for t in tags)


def to_iob(tags: list[str]) -> list[str]:
    """Plain entity tags (``PER PER O LOC``) as IOB2 (``B-PER I-PER O B-LOC``) so seqeval can read them."""
    out, prev = [], "O"
    for t in tags:
        out.append("O" if t == "O" else (f"I-{t}" if t == prev else f"B-{t}"))
        prev = t
    return out


def seqeval_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, float]:
    """seqeval precision, recall, F1 and accuracy, overall and per entity type (``<TYPE>_f1`` ...)."""
    return seqeval_scores(true_tags, pred_tags)[0]


def seqeval_scores(
    true_tags: list[list[str]], pred_tags: list[list[str]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(:func:`seqeval_metrics`, seqeval's report per entity type: {type: {precision, recall, f1, support}}, support =
    true entities), from one report."""
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    if not is_iob(t for row in true_tags for t in row):
        true_tags, pred_tags = [to_iob(r) for r in true_tags], [to_iob(r) for r in pred_tags]
    out = {
        "precision": float(precision_score(true_tags, pred_tags, zero_division=0)),
        "recall": float(recall_score(true_tags, pred_tags, zero_division=0)),
        "f1": float(f1_score(true_tags, pred_tags, zero_division=0)),
        "accuracy": float(accuracy_score(true_tags, pred_tags)),
    }
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    per_entity = {
        str(name): {
            "precision": float(s["precision"]),
            "recall": float(s["recall"]),
            "f1": float(s["f1-score"]),
            "support": int(s["support"]),
        }
        for name, s in report.items()
        if not name.endswith(" avg") and isinstance(s, dict)
    }
    for name, scores in per_entity.items():
        out.update({f"{metric_key(name)}_{k}": v for k, v in scores.items() if k != "support"})
    return out, per_entity


def best_ids(logits: Any, labels: Any) -> Any:
    """``preprocess_logits_for_metrics``: keep only the best id per token (not every logit) while evaluating."""
    return logits.argmax(-1)


def tagged(pred: Any, id2label: dict[int, str]) -> tuple[list[list[str]], list[list[str]]]:
    """The true and predicted tag names of each evaluated row, over the tokens that carry a tag (not -100)."""
    import numpy as np

    preds = np.asarray(pred.predictions).argmax(-1) if np.ndim(pred.predictions) == 3 else pred.predictions
    true, guess = [], []
    for p_row, l_row in zip(preds, pred.label_ids, strict=True):
        keep = l_row != -100
        true.append([id2label[int(x)] for x in l_row[keep]])
        guess.append([id2label[int(x)] for x in p_row[keep]])
    return true, guess


def generated_text_metrics(eval_pred: Any, tok: Any) -> dict[str, float]:
    """``compute_metrics`` for generated token ids: decode, score (:func:`generation_metrics`), and report the
    mean generated length."""
    import numpy as np

    preds = np.where(eval_pred.predictions < 0, tok.pad_token_id, eval_pred.predictions)
    labels = np.where(eval_pred.label_ids < 0, tok.pad_token_id, eval_pred.label_ids)
    texts = [t.strip() for t in tok.batch_decode(preds, skip_special_tokens=True)]
    refs = [t.strip() for t in tok.batch_decode(labels, skip_special_tokens=True)]
    out = generation_metrics(texts, refs)
    out["gen_len"] = float(np.mean(np.count_nonzero(preds != tok.pad_token_id, axis=1)))
    return {k: round(v, 4) for k, v in out.items()}
