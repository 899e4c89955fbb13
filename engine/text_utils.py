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

import ast
import functools
import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.params import TrainerParams, field

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


def is_missing(value: Any) -> bool:
    """True for None/NaN/empty text (pandas gives NaN for empty CSV cells)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def parse_list(value: Any, row: int, column: str, split: bool = True) -> list[Any]:
    """A cell holding a list: a real list/array, JSON or Python list text, or (``split``) words joined by spaces.

    Raises :class:`UserError` naming the row and column when the cell is empty or unreadable.
    """
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if is_missing(value):
        raise UserError(f"Row {row}, column `{column}`: empty. Fill it or remove the row.")
    text = str(value).strip()
    if text.startswith("["):
        parsed = _literal_list(text)
        if parsed is None:
            raise UserError(
                f"Row {row}, column `{column}`: `{_short(text)}` looks like a list but could not be read. "
                'Write it as JSON, e.g. ["a", "b"].'
            )
        return parsed
    if split:
        return text.split()
    return [value]


def _literal_list(text: str) -> list[Any] | None:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, (list, tuple)):
            return list(value)
    return None


def is_list_cell(value: Any) -> bool:
    """True when a cell holds a list (or a list written as JSON/Python text)."""
    if isinstance(value, (list, tuple)) or (
        hasattr(value, "tolist") and not isinstance(value, (str, int, float, bool))
    ):
        return True
    return isinstance(value, str) and value.strip().startswith("[") and _literal_list(value.strip()) is not None


def label_name(value: Any) -> str:
    """One label as a stable string, so that equal numbers are one class: ``1``, ``1.0``, ``"1"``, ``"1.00"``,
    ``"+1"`` and ``"1e0"`` are all ``1``; ``0.50`` and ``"0.5"`` are ``0.5``; bools become ``True``/``False``.

    Text with a leading zero (``"01"``, ``"007"``) is kept as written: it only survives when the column holds
    text, where it is a code (a zip or product code), not a number, so ``"01"`` and ``"1"`` stay two classes.
    """
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text) and not _CODE.match(text):
            return str(int(text))
        if not _NUMBER.fullmatch(text) or _CODE.match(text):
            return text
        value = float(text)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def is_number(text: str) -> bool:
    """True when a label string is a plain number (as :func:`label_name` writes numbers)."""
    return bool(_NUMBER.fullmatch(text))


_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_CODE = re.compile(r"[+-]?0\d")  # a leading zero before a digit: "01", "007"


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_rows(values: Iterable[Any], parse: Callable[[Any, int], Any], empty: Any) -> tuple[list[Any], list[str]]:
    """``parse(value, row)`` for every row (1-based row numbers) and the problems its UserErrors name;
    a row that fails gets ``empty``, so the result still lines up with the rows."""
    rows, problems = [], []
    for i, value in enumerate(values):
        try:
            rows.append(parse(value, i + 1))
        except UserError as e:
            rows.append(empty)
            problems.extend(e.problems)
    return rows, problems


# ---- labels -------------------------------------------------------------------------------


def label_maps(labels: Iterable[str]) -> tuple[dict[int, str], dict[str, int]]:
    """``id2label`` and ``label2id`` for the label set, in a stable order (numbers numerically, then text)."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), name)
        except ValueError:
            return (1, 0.0, name.lower())

    names = sorted(set(labels), key=key)
    return dict(enumerate(names)), {n: i for i, n in enumerate(names)}


def unseen_labels(known: Iterable[str], rows: Iterable[Iterable[str]]) -> tuple[list[str], list[int]]:
    """Labels absent from ``known`` and the 0-based indexes of the rows holding them."""
    known = set(known)
    missing: set[str] = set()
    where = []
    for i, labels in enumerate(rows):
        bad = [x for x in labels if x not in known]
        if bad:
            missing.update(bad)
            where.append(i)
    return sorted(missing), where


def unseen_problem(known: Iterable[str], rows: Iterable[Iterable[str]], kind: str = "label") -> list[str]:
    """The validation rows whose labels (tags) never occur in the training data, as one problem (or none)."""
    from engine.data import row_numbers

    unseen, where = unseen_labels(known, rows)
    if not unseen:
        return []
    return [
        f"Validation data has {kind}(s) {', '.join(map(repr, unseen))} that never occur in the training data "
        f"(row(s) {row_numbers(where)}). Add training examples for them, or remove those rows."
    ]


def warn_unseen(known: Iterable[str], rows: Iterable[Iterable[str]], kind: str, effect: str) -> list[int]:
    """Say in the log which validation labels (tags) the training split lacks (a random split can do that);
    return the 0-based indexes of the rows holding them."""
    unseen, where = unseen_labels(known, rows)
    if unseen:
        print(
            f"[trainpad] warning: validation {kind}(s) {', '.join(map(repr, unseen))} never occur in the training "
            f"split; {len(where)} validation row(s) {effect}.",
            flush=True,
        )
    return where


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

    from engine import train_utils as tu

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


def print_summary(task: str, n_train: int, n_valid: int, **facts: Any) -> None:
    """One line in train.log saying what is about to be trained."""
    extra = "; ".join(f"{k}={v}" for k, v in facts.items())
    print(f"[trainpad] {task}: {n_train} training rows, {n_valid} validation rows; {extra}", flush=True)


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


def softmax(logits: Any) -> Any:
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(labels: Any, logits: Any) -> dict[str, float]:
    """Accuracy, F1/precision/recall (macro, micro, weighted); AUC when there are two classes."""
    import numpy as np
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    labels = np.asarray(labels)
    probs = softmax(logits)
    preds = probs.argmax(-1)
    out = {"accuracy": float(accuracy_score(labels, preds))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average=avg, zero_division=0)
        out.update({f"f1_{avg}": float(f), f"precision_{avg}": float(p), f"recall_{avg}": float(r)})
    if probs.shape[-1] == 2 and len(set(labels.tolist())) == 2:
        out["auc"] = float(roc_auc_score(labels, probs[:, 1]))
    return out


def multilabel_metrics(labels: Any, logits: Any, threshold: float = 0.5) -> dict[str, float]:
    """Micro/macro F1, precision, recall and subset accuracy (``accuracy``) for multi-label outputs."""
    import numpy as np
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = np.asarray(labels).astype(int)
    preds = (1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64))) >= threshold).astype(int)
    subset = float(accuracy_score(labels, preds))
    out = {"accuracy": subset, "subset_accuracy": subset}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average=avg, zero_division=0)
        out.update({f"f1_{avg}": float(f), f"precision_{avg}": float(p), f"recall_{avg}": float(r)})
    return out


def classifier_metrics(pred: Any, multi: bool, threshold: float = 0.5) -> dict[str, float]:
    """``compute_metrics`` for a classification head: multi-label or single-label metrics."""
    if multi:
        return multilabel_metrics(pred.label_ids, pred.predictions, threshold)
    return classification_metrics(pred.label_ids, pred.predictions)


def regression_metrics(targets: Any, preds: Any) -> dict[str, float]:
    """MSE, RMSE, MAE, R² and explained variance (averaged over targets when there are several)."""
    import numpy as np
    from sklearn.metrics import explained_variance_score, mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    p = np.asarray(preds, dtype=np.float64).reshape(len(targets), -1)
    mse = float(mean_squared_error(y, p))
    out = {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y, p))}
    if len(y) > 1:
        out["r2"] = float(r2_score(y, p))
        out["explained_variance"] = float(explained_variance_score(y, p))
    return out


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


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure (rouge-score), BLEU and chrF (sacrebleu), all on a 0-100 scale."""
    import sacrebleu
    from rouge_score import rouge_scorer, scoring

    kinds = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=True)
    agg = scoring.BootstrapAggregator()
    for pred, ref in zip(predictions, references, strict=True):
        agg.add_scores(scorer.score(ref.replace(". ", ".\n"), pred.replace(". ", ".\n")))
    mid = agg.aggregate()
    out = {k: 100 * mid[k].mid.fmeasure for k in kinds}
    out["bleu"] = sacrebleu.corpus_bleu(predictions, [references]).score
    out["chrf"] = sacrebleu.corpus_chrf(predictions, [references]).score
    return out


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


def metric_key(name: str) -> str:
    """A label or entity name made safe to use inside a metric name."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)) or "_"
