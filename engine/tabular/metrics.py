"""Scoring: every metric of a sub-task on encoded targets and scores, a lower-is-better view of them, and the
temperature that calibrates a model's probabilities."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from engine.tabular.targets import metric_choices


def _binary_labels(scores: np.ndarray) -> np.ndarray:
    return (scores >= 0.5).astype(int)


def compute_metric(name: str, y: np.ndarray, p: np.ndarray, problem: str) -> float:
    """Metric ``name`` for encoded targets ``y`` and scores ``p`` (probabilities, or values for regression)."""
    from sklearn import metrics as m

    if problem == "regression":
        fn = {"rmse": m.root_mean_squared_error, "mae": m.mean_absolute_error, "r2": m.r2_score}[name]
        return float(fn(y, p))
    eps = 1e-7
    if problem == "binary":
        p1 = np.clip(p.ravel(), eps, 1 - eps)
        preds = _binary_labels(p1)
        fns: dict[str, Callable[[], float]] = {
            "logloss": lambda: m.log_loss(y, p1, labels=[0, 1]),
            "accuracy": lambda: m.accuracy_score(y, preds),
            "balanced_accuracy": lambda: m.balanced_accuracy_score(y, preds),
            "roc_auc": lambda: m.roc_auc_score(y, p1),
            "f1": lambda: m.f1_score(y, preds, zero_division=0),
        }
    elif problem == "multiclass":
        probs = np.clip(p, eps, 1)
        probs = probs / probs.sum(axis=1, keepdims=True)
        preds = probs.argmax(axis=1)
        labels = list(range(p.shape[1]))
        fns = {
            "logloss": lambda: m.log_loss(y, probs, labels=labels),
            "accuracy": lambda: m.accuracy_score(y, preds),
            "balanced_accuracy": lambda: m.balanced_accuracy_score(y, preds),
            "roc_auc": lambda: m.roc_auc_score(y, probs, multi_class="ovr", labels=labels),
            "f1": lambda: m.f1_score(y, preds, average="macro", zero_division=0),
        }
    else:
        probs = np.clip(p, eps, 1 - eps)
        preds = _binary_labels(probs)
        fns = {
            "logloss": lambda: float(
                np.mean([m.log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(y.shape[1])])
            ),
            "accuracy": lambda: m.accuracy_score(y, preds),
            "roc_auc": lambda: m.roc_auc_score(y, probs, average="macro"),
            "f1": lambda: m.f1_score(y, preds, average="macro", zero_division=0),
        }
    try:
        return float(fns[name]())
    except ValueError:  # e.g. AUC when a class is absent from the rows scored
        return float("nan")


def greater_is_better(metric: str) -> bool:
    return metric not in ("logloss", "rmse", "mae")


def to_loss(metric: str, value: float) -> float:
    """A lower-is-better version of a metric value (NaN -> +inf)."""
    if value is None or math.isnan(value):
        return math.inf
    return -value if greater_is_better(metric) else value


def all_metrics(y: np.ndarray, p: np.ndarray, problem: str) -> dict[str, float]:
    return {name: compute_metric(name, y, p, problem) for name in metric_choices(problem)}


def fit_temperature(scores: np.ndarray, y: np.ndarray, problem: str) -> float:
    """The temperature that minimises the log loss of out-of-fold ``scores`` (1.0: no change or no gain).

    Logits are divided by it, so class ranks, the 0.5 threshold and hence accuracy are unchanged. The
    targets are smoothed by 1/(n+1) (as if one more row were uncertain), so scores that separate the
    classes perfectly out of fold are not pushed to 0 and 1.
    """
    from scipy.optimize import minimize_scalar

    if problem == "regression":
        return 1.0
    smooth = 1.0 / (len(y) + 1)

    def loss(t: float) -> float:
        return _logloss(y, apply_temperature(scores, t, problem), problem, smooth)

    t = float(minimize_scalar(loss, bounds=(0.05, 5.0), method="bounded").x)
    return t if loss(t) < loss(1.0) - 1e-6 else 1.0


def _logloss(y: np.ndarray, p: np.ndarray, problem: str, smooth: float = 0.0) -> float:
    """Log loss against targets smoothed by ``smooth`` (no input checks: the temperature fit calls it often)."""
    eps = 1e-7
    if problem == "multiclass":
        logp = np.log(np.clip(p, eps, 1.0))
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return float(-np.mean((1 - smooth) * logp[np.arange(len(y)), y] + smooth * logp.mean(axis=1)))
    p = np.clip(p, eps, 1 - eps)
    ll = y * np.log(p) + (1 - y) * np.log(1 - p)
    return float(-np.mean((1 - smooth) * ll + smooth * 0.5 * (np.log(p) + np.log(1 - p))))


def apply_temperature(scores: np.ndarray, t: float, problem: str) -> np.ndarray:
    """Probabilities with their logits divided by ``t`` (softmax for multi-class, sigmoid otherwise)."""
    if t == 1.0 or problem == "regression":
        return scores
    eps = 1e-7
    if problem == "multiclass":
        z = np.log(np.clip(scores, eps, 1.0)) / t
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    p = np.clip(scores, eps, 1 - eps)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / t))
