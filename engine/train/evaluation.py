"""Test-set reports shared by the tasks' ``evaluate``: metrics plus per-example rows, worst errors first.

Each returns the dict a task's ``evaluate`` returns (engine.task.Task.evaluate): ``metrics``, ``rows``,
``key_metric``, ``greater_is_better``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import UserError
from engine.train import metrics as metrics_lib


def batched(items: list[Any], fn: Callable[[list[Any]], list[Any]], size: int, progress: Any = None) -> list[Any]:
    """``fn`` over ``items`` ``size`` at a time, saying progress after each batch."""
    out: list[Any] = []
    for start in range(0, len(items), max(1, size)):
        out += list(fn(items[start : start + max(1, size)]))
        if progress:
            progress(len(out) / max(1, len(items)), f"predicted {len(out)} of {len(items)} rows")
    return out


def unseen_labels_error(known: set[str], refs: list[str], what: str = "label") -> None:
    """UserError naming the test labels the model never saw in training (and the rows), if any."""
    where = [i + 1 for i, r in enumerate(refs) if r not in known]
    if not where:
        return
    unseen = sorted({refs[i - 1] for i in where})
    rows = ", ".join(map(str, where[:10])) + (" ..." if len(where) > 10 else "")
    raise UserError(
        f"Test data has {what}(s) {', '.join(map(repr, unseen[:10]))} that the model never saw in training "
        f"(row(s) {rows}); it knows {', '.join(map(repr, sorted(known)[:20]))}. Fix those labels, remove the rows, "
        "or evaluate a model trained on them."
    )


def classification(refs: list[str], preds: list[str], scores: list[dict[str, float]], inputs: list[Any]) -> dict:
    """Accuracy, macro/micro/weighted F1, a per-class report and a confusion matrix; rows wrong first (most
    confidently wrong at the top)."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    names = sorted(set(refs) | set(preds))
    metrics: dict[str, Any] = {"accuracy": float(accuracy_score(refs, preds))}
    for avg in ("macro", "micro", "weighted"):
        metrics[f"f1_{avg}"] = float(f1_score(refs, preds, labels=names, average=avg, zero_division=0))
    report = classification_report(refs, preds, labels=names, output_dict=True, zero_division=0)
    metrics["per_class"] = {n: {k: round(float(v), 6) for k, v in report[n].items()} for n in names}
    metrics["confusion_matrix"] = {"labels": names, "matrix": confusion_matrix(refs, preds, labels=names).tolist()}
    rows = [
        {"row": i + 1, "input": _shown(x), "reference": r, "prediction": p, "correct": float(r == p)}
        | {"confidence": float(s.get(p, 0.0)), "reference_score": float(s.get(r, 0.0))}
        for i, (x, r, p, s) in enumerate(zip(inputs, refs, preds, scores, strict=True))
    ]
    rows.sort(key=lambda row: (row["correct"], -row["confidence"]))
    return {"metrics": metrics, "rows": rows, "key_metric": "f1_macro", "greater_is_better": True}


def regression(refs: list[Any], preds: list[Any], inputs: list[Any]) -> dict:
    """MSE, RMSE, MAE, R²; rows with the largest absolute error first."""
    import numpy as np

    metrics = metrics_lib.regression_metrics(refs, preds)
    errors = np.abs(
        np.asarray(preds, dtype=float).reshape(len(refs), -1) - np.asarray(refs, dtype=float).reshape(len(refs), -1)
    )
    rows = [
        {"row": i + 1, "input": _shown(x), "reference": r, "prediction": p, "abs_error": float(e.mean())}
        for i, (x, r, p, e) in enumerate(zip(inputs, refs, preds, errors, strict=True))
    ]
    rows.sort(key=lambda row: -row["abs_error"])
    return {
        "metrics": metrics,
        "rows": rows,
        "key_metric": "r2" if "r2" in metrics else "rmse",
        "greater_is_better": "r2" in metrics,
    }


def generated_text(refs: list[str], preds: list[str], inputs: list[Any]) -> dict:
    """ROUGE-1/2/L, BLEU, chrF and exact match; rows with the lowest sentence chrF first."""
    import sacrebleu

    metrics = metrics_lib.generation_metrics(preds, refs)
    metrics["exact_match"] = sum(p.strip() == r.strip() for p, r in zip(preds, refs, strict=True)) / max(1, len(refs))
    rows = [
        {"row": i + 1, "input": _shown(x), "reference": r, "prediction": p}
        | {"chrf": sacrebleu.sentence_chrf(p, [r]).score, "exact_match": float(p.strip() == r.strip())}
        for i, (x, r, p) in enumerate(zip(inputs, refs, preds, strict=True))
    ]
    rows.sort(key=lambda row: row["chrf"])
    return {"metrics": metrics, "rows": rows, "key_metric": "rougeL", "greater_is_better": True}


def _shown(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def shown_path(value: Any, bases: list[Any]) -> str:
    """How a test row's image or audio file is named in the predictions table: relative to the test data's folder
    when it lies inside it (a folder or ZIP's files are read with absolute paths), else as the test file gives it;
    a cell that is not a path (bytes, a Hub image) by its kind."""
    from pathlib import Path

    if isinstance(value, dict):
        value = value.get("path") or "an image or clip given as bytes"
    if not isinstance(value, (str, Path)):
        return f"a {type(value).__name__} cell"
    for base in bases:
        try:
            return str(Path(value).relative_to(Path(base)))
        except ValueError:
            continue
    return str(value)
