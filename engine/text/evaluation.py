"""Test-set evaluation helpers for the text tasks that are not plain classifiers: word tags (token
classification), answer spans (extractive QA) and sentence embeddings (similarity, triplets, retrieval).

Each model is loaded once and run ``batch`` rows at a time; the reports follow ``engine.task.Task.evaluate``:
``metrics``, ``rows`` worst first, ``key_metric``, ``greater_is_better``. Heavy imports happen inside the functions
(eval jobs only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.data.cells import is_missing
from engine.errors import UserError
from engine.text import qa
from engine.text.encoders import is_iob, require_fast, seqeval_scores, to_iob

Progress = Callable[[float, str], None] | None


def _say(progress: Progress, done: int, total: int, what: str) -> None:
    if progress:
        progress(done / max(1, total), f"{what} {done} of {total} rows")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- token classification -----------------------------------------------------------------


def load_word_tagger(model_dir: str | Path) -> tuple[Any, Any]:
    """A saved token-classification model and its fast tokenizer, set up for pre-split words."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    try:
        tok(["a", "b"], is_split_into_words=True)
    except (ValueError, TypeError, AssertionError):
        tok = AutoTokenizer.from_pretrained(str(model_dir), add_prefix_space=True)
    require_fast(tok, str(model_dir), "token classification needs to align tags with sub-words")
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir)).eval()
    return model.to(_device()), tok


def predict_word_tags(
    model_dir: str | Path, words: list[list[str]], batch: int = 32, max_length: int = 512, progress: Progress = None
) -> list[list[str]]:
    """One predicted tag per word (the tag of its first sub-word); words cut off by ``max_length`` get ``O``."""
    import torch

    model, tok = load_word_tagger(model_dir)
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    out: list[list[str]] = []
    for start in range(0, len(words), max(1, batch)):
        chunk = words[start : start + max(1, batch)]
        enc = tok(chunk, is_split_into_words=True, truncation=True, max_length=max_length, padding=True)
        inputs = {k: torch.tensor(v, device=model.device) for k, v in enc.items()}
        with torch.no_grad():
            best = model(**inputs).logits.argmax(-1).cpu().tolist()
        for i, row in enumerate(chunk):
            tags = ["O"] * len(row)
            seen = set()
            for pos, word in enumerate(enc.word_ids(i)):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags[word] = id2label[best[i][pos]]
            out.append(tags)
        _say(progress, len(out), len(words), "tagged")
    return out


def entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, first word, last word) of each entity in an IOB tag sequence (seqeval's reading)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return {(str(t), int(s), int(e)) for t, s, e in get_entities(list(tags))}


def tagging_report(words: list[list[str]], true: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """Entity precision/recall/F1 (micro, seqeval), a per-entity-type report and token accuracy; rows with the most
    wrong entities first (then the lowest token accuracy)."""
    scores, per_entity = seqeval_scores(true, pred)
    metrics: dict[str, Any] = {k: scores[k] for k in ("precision", "recall", "f1")}
    metrics |= {"token_accuracy": scores["accuracy"], "per_entity": per_entity}
    if not is_iob(t for row in true for t in row):  # plain tags (PER, LOC) are read as IOB, as seqeval_scores does
        true, pred = [to_iob(r) for r in true], [to_iob(r) for r in pred]
    rows = [_tagged_row(i, w, t, p) for i, (w, t, p) in enumerate(zip(words, true, pred, strict=True))]
    rows.sort(key=lambda r: (-r["wrong_entities"], r["token_accuracy"]))
    return {"metrics": metrics, "rows": rows, "key_metric": "f1", "greater_is_better": True}


def _tagged_row(i: int, words: list[str], true: list[str], pred: list[str]) -> dict[str, Any]:
    gold, found = entities(true), entities(pred)
    return {
        "row": i + 1,
        "input": " ".join(words),
        "reference": _entities_shown(gold, words),
        "prediction": _entities_shown(found, words),
        "wrong_entities": len(gold ^ found),
        "correct": float(gold == found),
        "token_accuracy": sum(a == b for a, b in zip(true, pred, strict=True)) / max(1, len(true)),
        "reference_tags": " ".join(true),
        "predicted_tags": " ".join(pred),
    }


def _entities_shown(ents: set[tuple[str, int, int]], words: list[str]) -> str:
    """``PER: alice; LOC: new york`` in sentence order."""
    return "; ".join(f"{t}: {' '.join(words[s : e + 1])}" for t, s, e in sorted(ents, key=lambda x: (x[1], x[0])))


# ---- extractive question answering --------------------------------------------------------


def gold_answers(df: Any) -> list[list[str]]:
    """Each test row's gold answer texts ([] = unanswerable), from `answers` (SQuAD form) or `answer_text` (no
    `answer_start` needed to score); a UserError when neither column is there."""
    if "answers" in df.columns:
        return [qa.parse_answers(v, i + 1, "answers")[0] for i, v in enumerate(df["answers"])]
    if "answer_text" in df.columns:
        return [[] if is_missing(v) else [str(v)] for v in df["answer_text"]]
    raise UserError(
        "The test data needs the gold answers: an `answers` column (SQuAD form, "
        '{"text": ["..."], "answer_start": [..]}) or an `answer_text` column. Columns found: '
        f"{', '.join(map(str, df.columns))}. Map yours with --map answers=COLUMN (or answer_text=COLUMN)."
    )


def predict_answers(
    model_dir: str | Path, questions: list[str], contexts: list[str], batch: int = 16, progress: Progress = None
) -> list[dict[str, Any]]:
    """The best answer span to each question ({answer, score, start, end}; "" = no answer), with the settings the
    model was trained with (windows, stride, unanswerable handling)."""
    import torch
    from transformers import AutoModelForQuestionAnswering

    from engine import runfiles

    settings = {**qa.SETTINGS, **runfiles.read_side_file(model_dir)}
    tok = qa.load_fast_tokenizer(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir)).eval().to(_device())
    out: list[dict[str, Any]] = []
    for start in range(0, len(questions), max(1, batch)):
        qs, cs = questions[start : start + max(1, batch)], contexts[start : start + max(1, batch)]
        feats = qa.features(tok, qs, cs, None, settings["max_length"], settings["doc_stride"])
        inputs = tok.pad(qa.model_inputs(feats), return_tensors="pt").to(model.device)
        with torch.no_grad():
            found = model(**inputs)
        out += qa.spans(feats, found.start_logits.cpu().numpy(), found.end_logits.cpu().numpy(), cs, tok, settings)
        _say(progress, len(out), len(questions), "answered")
    return out


def qa_report(questions: list[str], golds: list[list[str]], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact match and token F1 (SQuAD, 0-100, best over each row's gold answers); rows with the lowest F1 first."""
    preds = [a["answer"] for a in answers]
    metrics: dict[str, Any] = dict(qa.squad_metrics(preds, golds))
    rows = []
    for i, (q, gold, a) in enumerate(zip(questions, golds, answers, strict=True)):
        truths = gold or [""]
        row = {"row": i + 1, "input": q, "reference": " | ".join(gold) or "(no answer)"}
        row |= {"prediction": a["answer"] or "(no answer)", "score": round(float(a["score"]), 6)}
        row |= {"exact_match": 100 * max(qa.exact_match(a["answer"], t) for t in truths)}
        row |= {"f1": 100 * max(qa.f1(a["answer"], t) for t in truths)}
        rows.append(row)
    rows.sort(key=lambda r: (r["f1"], r["exact_match"], -r["score"]))
    return {"metrics": metrics, "rows": rows, "key_metric": "f1", "greater_is_better": True}


# ---- sentence embeddings ------------------------------------------------------------------


def load_embedder(model_dir: str | Path, max_length: int | None = None) -> Any:
    """A SentenceTransformer from a saved folder (a plain encoder gets mean pooling)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device=_device())
    if max_length:
        model.max_seq_length = max_length
    return model


def embed_texts(model: Any, texts: list[str], batch: int = 32) -> Any:
    """Unit-length embeddings of ``texts`` (a numpy array, one row per text): dot products are cosines."""
    return model.encode(
        [str(t) for t in texts], batch_size=max(1, batch), convert_to_numpy=True, normalize_embeddings=True
    )


def similarity_report(first: list[str], second: list[str], cosines: list[float], gold: list[float]) -> dict[str, Any]:
    """Spearman and Pearson correlation of the cosine similarity with the gold scores; rows whose cosine rank is
    furthest from their gold score's rank first."""
    import numpy as np
    from scipy.stats import pearsonr, rankdata, spearmanr

    if len(gold) < 2 or len(set(gold)) < 2:
        raise UserError(
            f"Correlation needs at least two test rows with different scores; the test data has {len(gold)} row(s) "
            f"and {len(set(gold))} distinct score(s). Add rows with other scores."
        )
    constant = len(set(np.round(cosines, 9))) < 2
    metrics = {
        "spearman": 0.0 if constant else float(spearmanr(cosines, gold).statistic),
        "pearson": 0.0 if constant else float(pearsonr(cosines, gold).statistic),
        "mean_cosine": float(np.mean(cosines)),
    }
    n = len(gold)
    rank_gap = np.abs(rankdata(cosines) - rankdata(gold)) / n
    rows = [
        {"row": i + 1, "input": a, "candidate": b, "reference": g, "prediction": round(float(c), 6)}
        | {"rank_error": round(float(e), 6)}
        for i, (a, b, c, g, e) in enumerate(zip(first, second, cosines, gold, rank_gap, strict=True))
    ]
    rows.sort(key=lambda r: -r["rank_error"])
    return {"metrics": metrics, "rows": rows, "key_metric": "spearman", "greater_is_better": True}


def retrieval_ranks(queries: Any, docs: Any, gold: list[int]) -> list[int]:
    """The rank (1 = best) of each query's gold document among ``docs`` by cosine (ties count against it)."""
    import numpy as np

    sims = np.asarray(queries) @ np.asarray(docs).T
    right = sims[np.arange(len(gold)), gold]
    return [int((sims[i] >= right[i] - 1e-6).sum()) for i in range(len(gold))]


def retrieval_report(queries: list[str], positives: list[str], q_emb: Any, d_emb: Any, docs: list[str]) -> dict:
    """Recall@1/@5 and MRR of each query's positive among every distinct candidate text of the test data
    (``docs``); rows with the positive ranked lowest first."""
    index = {d: i for i, d in enumerate(docs)}
    gold = [index[p] for p in positives]
    ranks = retrieval_ranks(q_emb, d_emb, gold)
    n = max(1, len(ranks))
    metrics = {
        "recall_at_1": sum(r == 1 for r in ranks) / n,
        "recall_at_5": sum(r <= 5 for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks) / n,
        "n_candidates": len(docs),
    }
    rows = [
        {"row": i + 1, "input": q, "reference": p, "positive_rank": r, "correct": float(r == 1)}
        for i, (q, p, r) in enumerate(zip(queries, positives, ranks, strict=True))
    ]
    rows.sort(key=lambda r: -r["positive_rank"])
    return {"metrics": metrics, "rows": rows, "key_metric": "recall_at_1", "greater_is_better": True}


def triplet_report(
    anchors: list[str], positives: list[str], negatives: list[str], embed: Callable[[list[str]], Any]
) -> dict[str, Any]:
    """Accuracy of cos(anchor, positive) > cos(anchor, negative), the mean margin, and the positive's recall@1 /
    MRR among every distinct positive and negative text; rows with the smallest margin first."""
    import numpy as np

    docs = list(dict.fromkeys([*positives, *negatives]))
    a, d = embed(anchors), embed(docs)
    index = {t: i for i, t in enumerate(docs)}
    cos_p = np.sum(a * d[[index[p] for p in positives]], axis=1)
    cos_n = np.sum(a * d[[index[x] for x in negatives]], axis=1)
    retrieval = retrieval_report(anchors, positives, a, d, docs)
    ranks = {r["row"]: r["positive_rank"] for r in retrieval["rows"]}
    margins = cos_p - cos_n
    metrics = {"accuracy": float(np.mean(margins > 0)), "mean_margin": float(np.mean(margins))}
    metrics |= {k: retrieval["metrics"][k] for k in ("recall_at_1", "mrr", "n_candidates")}
    rows = [
        {"row": i + 1, "input": an, "reference": p, "negative": ng}
        | {"cos_positive": round(float(cp), 6), "cos_negative": round(float(cn), 6), "margin": round(float(m), 6)}
        | {"correct": float(m > 0), "positive_rank": ranks[i + 1]}
        for i, (an, p, ng, cp, cn, m) in enumerate(
            zip(anchors, positives, negatives, cos_p, cos_n, margins, strict=True)
        )
    ]
    rows.sort(key=lambda r: r["margin"])
    return {"metrics": metrics, "rows": rows, "key_metric": "accuracy", "greater_is_better": True}


def embedding_mode(df: Any, trained: str | None, roles: dict[str, list[str]]) -> str:
    """The sentence-embedding mode whose columns (``roles``: mode -> its columns, in the order to try) the test
    data has: the model's own mode first, else the first that fits (pair_class data cannot be scored: its
    classifier is not saved)."""
    have, order = set(df.columns), tuple(roles)
    fits = [m for m in ((trained,) if trained in roles else ()) + order if set(roles[m]) <= have]
    if not fits:
        wanted = "; ".join(f"{m}: {', '.join(roles[m])}" for m in order[:4])
        raise UserError(
            f"The test data's columns ({', '.join(map(str, df.columns)) or 'none'}) fit no evaluation: it needs "
            f"{wanted}. Map yours with --map ROLE=COLUMN."
        )
    usable = [m for m in fits if m != "pair_class"]
    if not usable:
        raise UserError(
            "pair_class test data (premise, hypothesis, label) cannot be scored: the classifier trained beside the "
            "embeddings is not saved with the model. Evaluate on scored pairs (sentence1, sentence2, score), "
            "triplets (anchor, positive, negative) or pairs (anchor, positive)."
        )
    return usable[0]


def evaluate_embeddings(
    model_dir: Any, df: Any, mode: str, roles: list[str], max_length: int | None, options: dict[str, Any]
) -> dict[str, Any]:
    """A sentence-embedding model on checked test data: scored pairs (cosine vs ``score``), triplets, or
    query/positive pairs ranked against every positive in the file; ``roles`` the text columns of ``mode``."""
    import pandas as pd

    model = load_embedder(model_dir, max_length)
    batch = options.get("batch_size") or 32

    def embed(texts: list[str]) -> Any:
        return embed_texts(model, texts, batch)

    texts = {r: df[r].astype(str).tolist() for r in roles}
    if mode == "pair_score":
        cosines = (embed(texts["sentence1"]) * embed(texts["sentence2"])).sum(axis=1).tolist()
        gold = pd.to_numeric(df["score"]).astype(float).tolist()
        return similarity_report(texts["sentence1"], texts["sentence2"], cosines, gold)
    if mode == "triplet":
        return triplet_report(texts["anchor"], texts["positive"], texts["negative"], embed)
    queries, positives = texts[roles[0]], texts[roles[1]]
    docs = list(dict.fromkeys(positives))
    return retrieval_report(queries, positives, embed(queries), embed(docs), docs)
