"""Metrics shared by several tasks and families: classification, regression and generated text."""

from __future__ import annotations

import math
from typing import Any


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


def metric_key(name: str) -> str:
    """A label or entity name made safe to use inside a metric name."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)) or "_"
