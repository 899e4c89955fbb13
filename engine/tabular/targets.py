"""What is learned: the sub-task (binary, multi-class, multi-label, regression), its classes or targets, the
metric to optimise, and the targets encoded as numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.data.cells import is_missing
from engine.tabular.columns import (
    FALSE_WORDS,
    MISSING_TOKENS,
    TRUE_WORDS,
    category_key,
    clean_cells,
    missing_mask,
    numeric_share,
    to_bool,
    to_number,
)

PROBLEMS = ["binary", "multiclass", "multilabel", "regression"]


@dataclass
class Setup:
    """What is being learned: the sub-task, the classes or targets, and the metric to optimise."""

    problem: str
    targets: list[str]
    classes: list[Any] = field(default_factory=list)  # class labels (binary/multiclass) or label names (multilabel)
    metric: str = "logloss"
    separator: str = ""  # multilabel from one column: the label separator
    threads: int = 1  # threads per model fit (OpenMP/BLAS/joblib)
    calibrate: bool = True  # temperature-scale each candidate's probabilities (fitted out of fold)

    @property
    def n_out(self) -> int:
        if self.problem == "multiclass":
            return len(self.classes)
        if self.problem == "multilabel":
            return len(self.classes)
        return len(self.targets) if self.problem == "regression" else 1


def detect_problem(y: pd.DataFrame, requested: str) -> str:
    """The sub-task for targets ``y``: ``requested`` unless it is auto (see ``PROBLEMS``)."""
    if requested == "multiclass" and y.shape[1] == 1 and clean_cells(y.iloc[:, 0]).nunique() == 2:
        return "binary"
    if requested != "auto":
        return requested
    if y.shape[1] > 1:
        if all(is_binary(y[c]) for c in y.columns):
            return "multilabel"
        return "regression"
    s = clean_cells(y.iloc[:, 0])
    n = s.nunique()
    if n == 2:
        return "binary"
    share, _ = numeric_share(s)
    if share < 1.0:
        return "multiclass"
    values = pd.to_numeric(s.astype(str), errors="coerce")
    integral = bool((values == values.round()).all())
    return "multiclass" if integral and n <= 20 and n < 0.5 * len(s) else "regression"


def is_binary(s: pd.Series) -> bool:
    values = {category_key(v).lower() for v in clean_cells(s).unique()}
    return values <= {"0", "1"} | TRUE_WORDS | FALSE_WORDS and len(values) <= 2


def default_metric(problem: str) -> str:
    return "rmse" if problem == "regression" else "logloss"


def metric_choices(problem: str) -> list[str]:
    if problem == "regression":
        return ["rmse", "mae", "r2"]
    return ["logloss", "accuracy", "roc_auc", "f1"] + (["balanced_accuracy"] if problem != "multilabel" else [])


def make_setup(
    y: pd.DataFrame, problem: str, metric: str, separator: str, threads: int = 1, calibrate: bool = True
) -> Setup:
    """Classes/label names from the training targets; the metric (auto -> the sub-task's default)."""
    targets = list(y.columns)
    setup = Setup(
        problem=problem,
        targets=targets,
        metric=default_metric(problem) if metric == "auto" else metric,
        threads=threads,
        calibrate=calibrate,
    )
    if problem in ("binary", "multiclass"):
        setup.classes = sorted(clean_cells(y.iloc[:, 0]).map(label_key).unique().tolist(), key=_sort_key)
    elif problem == "multilabel" and len(targets) == 1:
        setup.separator = separator or ","
        labels = {lab for v in clean_cells(y.iloc[:, 0]) for lab in _split_labels(v, setup.separator)}
        setup.classes = sorted(labels)
    elif problem == "multilabel":
        setup.classes = targets
    return setup


def label_key(v: Any) -> Any:
    """Labels compare as plain Python values; 1.0 and 1 are the same class; strings are stripped."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v.strip() if isinstance(v, str) else v


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))


def _split_labels(v: Any, sep: str) -> list[str]:
    return [p.strip() for p in str(v).split(sep) if p.strip()]


def encode_targets(y: pd.DataFrame, setup: Setup) -> tuple[np.ndarray, np.ndarray]:
    """(encoded targets, mask of usable rows). Rows with a missing or unknown target are masked out."""
    if setup.problem == "regression":
        values = np.column_stack([to_number(y[c]).to_numpy() for c in y.columns])
        return values, ~np.isnan(values).any(axis=1)
    if setup.problem == "multilabel" and setup.separator:
        col = y.iloc[:, 0]
        ok = ~missing_mask(col).to_numpy()
        sets = [set(_split_labels(v, setup.separator)) if k else set() for v, k in zip(col, ok, strict=True)]
        return np.array([[lab in s for lab in setup.classes] for s in sets], dtype=int).reshape(len(y), -1), ok
    if setup.problem == "multilabel":
        values = np.column_stack([to_bool(y[c]).to_numpy() for c in y.columns])
        return np.nan_to_num(values).astype(int), ~np.isnan(values).any(axis=1)
    index = {c: i for i, c in enumerate(setup.classes)}
    keys = [label_key(v) if not _no_target(v) else None for v in y.iloc[:, 0]]
    codes = np.array([index.get(k, -1) if k is not None else -1 for k in keys])
    return codes, codes >= 0


def _no_target(v: Any) -> bool:
    """A missing cell, or a placeholder for one ("NA", "null"…)."""
    return is_missing(v) or str(v).strip().lower() in MISSING_TOKENS
