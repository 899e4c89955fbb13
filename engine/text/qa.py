"""Helpers for the extractive-QA task (and small data checks shared by the seq2seq and
sentence-transformers tasks): answer parsing, the SQuAD metric, window features with stride and
span post-processing. Module level imports are light; numpy is imported inside functions.
"""

from __future__ import annotations

import ast
import json
import re
import string
from collections import Counter
from typing import Any

import pandas as pd

from engine.data.cells import is_missing, row_numbers
from engine.errors import UserError

MAX_ROW_PROBLEMS = 10


# ---- data checks --------------------------------------------------------------------------


def column_name(mapping: dict[str, str], role: str) -> str:
    """The user's column that plays ``role`` (the role itself when matched by name)."""
    return mapping.get(role) or role


def blank_cells(df: Any, roles: list[str], split: str, mapping: dict[str, str] | None = None) -> list[str]:
    """One problem per role whose column is empty in some rows, naming the column and the rows."""
    problems = []
    for role in roles:
        if role not in df.columns:
            continue
        empty = [i for i, v in zip(df.index, df[role], strict=True) if is_missing(v)]
        if empty:
            col = column_name(mapping or {}, role)
            problems.append(
                f"{split} data, column `{col}` ({role}): empty in {len(empty)} row(s): "
                f"{row_numbers(empty)}. Fill or remove those rows."
            )
    return problems


def blank_cells_in_splits(train: Any, valid: Any, roles: list[str], mapping: dict[str, str]) -> list[str]:
    """:func:`blank_cells` of the training data and, when there is one, of the validation data."""
    problems = blank_cells(train, roles, "Training", mapping)
    return problems + (blank_cells(valid, roles, "Validation", mapping) if valid is not None else [])


def cap(problems: list[str], limit: int = MAX_ROW_PROBLEMS) -> list[str]:
    """At most ``limit`` row problems, plus a line saying how many more there are."""
    if len(problems) <= limit:
        return problems
    return problems[:limit] + [f"... and {len(problems) - limit} more row(s) with problems; fix these first."]


# ---- answers ------------------------------------------------------------------------------


def _listify(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_text(value: str) -> Any:
    """A JSON or Python-literal dict; also numpy reprs like ``{'text': array(['x'], dtype=object)}``."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    cleaned = re.sub(r"array\((\[.*?\])(?:,\s*dtype=\w+)?\)", r"\1", value, flags=re.S)
    try:
        return ast.literal_eval(cleaned)
    except (ValueError, SyntaxError):
        return None


def parse_answers(value: Any, row: int, column: str) -> tuple[list[str], list[int]]:
    """SQuAD-form answers (a dict or its JSON text) as (texts, starts); empty lists = unanswerable."""
    if is_missing(value):
        return [], []
    if isinstance(value, str):
        value = _parse_text(value.strip())
    if not isinstance(value, dict) or "text" not in value or "answer_start" not in value:
        raise UserError(
            f"Row {row}, column `{column}`: expected SQuAD-form answers like "
            '{"text": ["Paris"], "answer_start": [31]}.'
        )
    texts, starts = _listify(value["text"]), _listify(value["answer_start"])
    if len(texts) != len(starts):
        raise UserError(
            f"Row {row}, column `{column}`: {len(texts)} answer text(s) but {len(starts)} answer_start "
            "value(s); give one start per answer."
        )
    try:
        return [str(t) for t in texts], [int(s) for s in starts]
    except (TypeError, ValueError):
        raise UserError(
            f"Row {row}, column `{column}`: answer_start must hold whole numbers, got {starts!r}."
        ) from None


def plain_answer(text: Any, start: Any, row: int, column: str) -> tuple[list[str], list[int]]:
    """An answer given as two plain columns (text + start); a blank text = unanswerable."""
    if is_missing(text):
        return [], []
    try:
        return [str(text)], [int(float(start))]
    except (TypeError, ValueError):
        raise UserError(f"Row {row}, column `{column}`: answer_start must be a whole number, got {start!r}.") from None


def answers_of(df: Any, mapping: dict[str, str]) -> list[tuple[list[str], list[int]]]:
    """The (texts, starts) of every row, from the `answers` column or `answer_text` + `answer_start`."""
    if "answers" in df.columns:
        col = column_name(mapping, "answers")
        return [parse_answers(v, i + 1, col) for i, v in zip(df.index, df["answers"], strict=True)]
    col = column_name(mapping, "answer_start")
    return [
        plain_answer(t, s, i + 1, col) for i, t, s in zip(df.index, df["answer_text"], df["answer_start"], strict=True)
    ]


def answer_problems(df: Any, split: str, mapping: dict[str, str], allow_unanswerable: bool) -> list[str]:
    """Row-level problems: unparsable answers, missing answers, answers not at answer_start in the context."""
    ans_col = column_name(mapping, "answers" if "answers" in df.columns else "answer_text")
    ctx_col = column_name(mapping, "context")
    problems: list[str] = []
    for i, context in zip(df.index, df["context"], strict=True):
        row = i + 1
        try:
            texts, starts = answers_of(df.loc[[i]], mapping)[0]
        except UserError as e:
            problems += [f"{split} data: {p}" for p in e.problems]
            continue
        if not texts and not allow_unanswerable:
            problems.append(
                f"{split} data, row {row}, column `{ans_col}`: no answer. Give the answer, or turn on "
                "allow_unanswerable if the question has no answer in the context (SQuAD v2)."
            )
        for text, start in zip(texts, starts, strict=True):
            found = str(context)[start : start + len(text)] if start >= 0 else ""
            if found != text:
                problems.append(
                    f"{split} data, row {row}: answer {text!r} (column `{ans_col}`) is not in column "
                    f"`{ctx_col}` at answer_start {start}{_where(str(context), text)}"
                )
    return problems


def _where(context: str, text: str) -> str:
    at = context.find(text)
    if at >= 0:
        return f" (it starts at {at}; fix answer_start)."
    return " (it does not occur in the context at all; fix the answer or the context)."


# ---- the SQuAD metric ---------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (the official SQuAD normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 (0-100), the best over each question's gold answers; [] = unanswerable ('')."""
    ems, f1s = [], []
    for pred, truths in zip(predictions, golds, strict=True):
        truths = truths or [""]
        ems.append(max(exact_match(pred, t) for t in truths))
        f1s.append(max(f1(pred, t) for t in truths))
    n = max(1, len(predictions))
    out = {"exact_match": 100 * sum(ems) / n, "f1": 100 * sum(f1s) / n}
    unanswerable = [not t for t in golds]
    if any(unanswerable):
        hits = [p == "" for p, u in zip(predictions, unanswerable, strict=True) if u]
        out["no_answer_accuracy"] = 100 * sum(hits) / len(hits)
    return out


# ---- features (windows over long contexts) ------------------------------------------------


def features(
    tok: Any,
    questions: list[str],
    contexts: list[str],
    answers: list[tuple[list[str], list[int]]] | None,
    max_length: int,
    doc_stride: int,
) -> list[dict[str, Any]]:
    """Token windows over each (question, context) with overlap ``doc_stride``.

    Each feature carries ``example`` (row index), ``offsets`` (char spans; None outside the context)
    and, when answers are given, ``start_positions``/``end_positions`` (the CLS token when the answer
    is not inside the window or there is none).
    """
    question_first = tok.padding_side == "right"
    first, second = (questions, contexts) if question_first else (contexts, questions)
    context_id = 1 if question_first else 0
    enc = tok(
        first,
        second,
        truncation="only_second" if question_first else "only_first",
        max_length=max_length,
        stride=min(doc_stride, max_length // 2),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    out = []
    for i, example in enumerate(enc["overflow_to_sample_mapping"]):
        seq_ids = enc.sequence_ids(i)
        offsets = [o if s == context_id else None for o, s in zip(enc["offset_mapping"][i], seq_ids, strict=True)]
        feat: dict[str, Any] = {k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        feat.update(example=example, offsets=offsets)
        if answers is not None:
            feat["start_positions"], feat["end_positions"] = _positions(feat, answers[example], tok)
        out.append(feat)
    return out


def cls_index(input_ids: list[int], tok: Any) -> int:
    return input_ids.index(tok.cls_token_id) if tok.cls_token_id in input_ids else 0


def _positions(feat: dict[str, Any], answer: tuple[list[str], list[int]], tok: Any) -> tuple[int, int]:
    cls = cls_index(feat["input_ids"], tok)
    texts, starts = answer
    if not texts:
        return cls, cls
    start_char, end_char = starts[0], starts[0] + len(texts[0])
    inside = [(t, o) for t, o in enumerate(feat["offsets"]) if o is not None]
    if not inside or inside[0][1][0] > start_char or inside[-1][1][1] < end_char:
        return cls, cls
    start = next(t for t, o in inside if o[1] > start_char)
    end = next(t for t, o in reversed(inside) if o[0] < end_char)
    return start, max(start, end)


def model_inputs(feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Features without the bookkeeping keys, for the Trainer and the collator."""
    return [{k: v for k, v in f.items() if k not in ("example", "offsets")} for f in feats]


# ---- post-processing ----------------------------------------------------------------------


def _log_softmax(x: Any) -> Any:
    import numpy as np

    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def best_answers(
    feats: list[dict[str, Any]],
    start_logits: Any,
    end_logits: Any,
    contexts: list[str],
    tok: Any,
    max_answer_length: int = 30,
    n_best: int = 20,
    allow_null: bool = False,
    null_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """The best span per example over all its windows: {answer, score (probability), start, end}.

    With ``allow_null`` the empty answer wins when its score beats the best span by ``null_threshold``.
    """
    import numpy as np

    best: list[dict[str, Any]] = [
        {"answer": "", "score": 0.0, "start": -1, "end": -1, "_logp": -np.inf} for _ in contexts
    ]
    null: list[float] = [np.inf] * len(contexts)  # the least 'no answer' over windows (windows lacking the span say no)
    for k, feat in enumerate(feats):
        n, ex, offsets = len(feat["input_ids"]), feat["example"], feat["offsets"]
        s_lp, e_lp = (
            _log_softmax(np.asarray(start_logits[k][:n], dtype=np.float64)),
            _log_softmax(np.asarray(end_logits[k][:n], dtype=np.float64)),
        )
        cls = cls_index(feat["input_ids"], tok)
        null[ex] = min(null[ex], s_lp[cls] + e_lp[cls])
        for s in np.argsort(s_lp)[::-1][:n_best]:
            for e in np.argsort(e_lp)[::-1][:n_best]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                logp = s_lp[s] + e_lp[e]
                if logp > best[ex]["_logp"]:
                    a, b = offsets[s][0], offsets[e][1]
                    best[ex] = {
                        "answer": contexts[ex][a:b],
                        "score": float(np.exp(logp)),
                        "start": int(a),
                        "end": int(b),
                        "_logp": logp,
                    }
    for ex, b in enumerate(best):
        if allow_null and null[ex] > b.pop("_logp") + null_threshold:
            best[ex] = {"answer": "", "score": float(np.exp(null[ex])), "start": -1, "end": -1}
        b.pop("_logp", None)
    return best


# ---- the task's model: tokenizer, features, metrics, answers -------------------------------

# What ``predict`` needs from the training settings, with the defaults for a model saved without them.
SETTINGS = {
    "max_length": 384,
    "doc_stride": 128,
    "max_answer_length": 30,
    "allow_unanswerable": False,
    "null_score_threshold": 0.0,
    "n_best": 20,
}


def load_fast_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer; UserError when it is not a fast one (character offsets need it)."""
    from transformers import AutoTokenizer

    from engine.text.encoders import require_fast

    tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    return require_fast(tok, name, "extractive QA needs for character offsets")


def table_features(df: Any, tok: Any, settings: dict[str, Any], mapping: dict[str, str] | None) -> list[dict]:
    """:func:`features` of a table's (question, context) rows; with answers (training) unless ``mapping`` is None."""
    answers = answers_of(df, mapping) if mapping is not None else None
    questions, contexts = [str(q).strip() for q in df["question"]], [str(c) for c in df["context"]]
    return features(tok, questions, contexts, answers, settings["max_length"], settings["doc_stride"])


def spans(feats: list[dict], start: Any, end: Any, contexts: list[str], tok: Any, settings: dict) -> list[dict]:
    """:func:`best_answers` with the task's settings."""
    keys = ("max_answer_length", "n_best", "allow_unanswerable", "null_score_threshold")
    return best_answers(feats, start, end, contexts, tok, *(settings[k] for k in keys))


def squad_compute(eval_pred: Any, feats: list[dict], df: Any, tok: Any, settings: dict, mapping: dict) -> dict:
    """``compute_metrics`` over window logits: best span per question, then EM and F1 (rounded)."""
    start, end = eval_pred.predictions[:2]
    best = spans(feats, start, end, [str(c) for c in df["context"]], tok, settings)
    golds = [texts for texts, _ in answers_of(df, mapping)]
    return {k: round(v, 4) for k, v in squad_metrics([b["answer"] for b in best], golds).items()}


def answer(model_dir: Any, items: list[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Answers of a saved model to {"question", "context"} items: {answer, score, start, end}; "" = no answer."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    settings = {**SETTINGS, **settings}
    tok = load_fast_tokenizer(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir)).eval()
    feats = table_features(pd.DataFrame(items), tok, settings, None)
    with torch.no_grad():
        out = model(**tok.pad(model_inputs(feats), return_tensors="pt"))
    contexts = [str(i["context"]) for i in items]
    return spans(feats, out.start_logits.numpy(), out.end_logits.numpy(), contexts, tok, settings)
