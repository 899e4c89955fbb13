"""Tabular learning for the tabular task: column typing, one scikit-learn pipeline per model family,
k-fold search inside a time budget, a greedy weighted ensemble over out-of-fold predictions, metrics,
permutation importance, and prediction from the saved bundle.

scikit-learn, numpy and pandas are imported here; xgboost and optuna only inside functions.
The saved pipelines reference :func:`prepare_frame` by name, so this module must stay importable.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FunctionTransformer, Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

FAMILIES = ["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear", "svm", "knn"]
KINDS = ["numeric", "categorical", "boolean", "datetime", "text", "drop"]
PROBLEMS = ["binary", "multiclass", "multilabel", "regression"]
MISSING_TOKENS = {"", "?", "-", "--", "na", "n/a", "nan", "null", "none", "missing", "#n/a", "nil"}
TRUE_WORDS, FALSE_WORDS = {"true", "yes", "y", "t"}, {"false", "no", "n", "f"}
HASH_DIMS = 32
DATE_PARTS = ["year", "month", "day", "dayofweek", "hour"]
SVM_CALIBRATION_FOLDS = 3


# --- column typing ------------------------------------------------------------------------------


def clean_cells(s: pd.Series) -> pd.Series:
    """Non-missing cells of ``s`` (common missing-value tokens such as `?` or `n/a` count as missing)."""
    s = s.dropna()
    if s.dtype == object:
        s = s[~s.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)]
    return s


def numeric_share(s: pd.Series) -> tuple[float, pd.Series]:
    """Share of cells that parse as numbers, and the cells that do not."""
    cells = clean_cells(s)
    if len(cells) == 0:
        return 0.0, cells
    parsed = pd.to_numeric(cells.astype(str).str.strip(), errors="coerce")
    return float(parsed.notna().mean()), cells[parsed.isna()]


def infer_kind(s: pd.Series) -> tuple[str, str]:
    """(kind, reason): how a feature column is used. Kinds: see ``KINDS``."""
    if pd.api.types.is_bool_dtype(s):
        return "boolean", ""
    if pd.api.types.is_numeric_dtype(s):
        return ("numeric", "") if s.notna().any() else ("drop", "it is empty")
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime", ""
    cells = clean_cells(s).astype(str).str.strip()
    if len(cells) == 0:
        return "drop", "it is empty"
    lower = set(cells.str.lower().unique())
    if len(lower) <= 2 and lower <= TRUE_WORDS | FALSE_WORDS:
        return "boolean", ""
    share, _ = numeric_share(s)
    if share >= 0.5:
        return "numeric", ""
    if _looks_like_dates(cells):
        return "datetime", ""
    words = cells.str.split().str.len().mean()
    unique_share = cells.nunique() / len(cells)
    if (words >= 4 or cells.str.len().mean() >= 40) and unique_share > 0.3:
        return "text", "it holds free text"
    if unique_share == 1.0 and len(cells) >= 20:
        return "drop", "every value is different (it looks like an identifier)"
    return "categorical", ""


def _looks_like_dates(cells: pd.Series) -> bool:
    sample = cells.head(200)
    if not sample.str.contains(r"\d").all() or not sample.str.contains(r"[-/:.]").all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


def feature_spec(df: pd.DataFrame, overrides: dict[str, str], text_mode: str, notices: list[str]) -> dict[str, Any]:
    """The feature columns and their kinds (inferred, then ``overrides``), with a notice per dropped column."""
    kinds: dict[str, str] = {}
    for col in df.columns:
        kind, reason = (overrides[col], "") if col in overrides else infer_kind(df[col])
        if kind == "text" and text_mode == "drop":
            kind, reason = "drop", "it holds free text (text_columns = drop)"
        elif kind == "text":
            notices.append(
                f"Column `{col}` holds free text: it is hashed into {HASH_DIMS} numeric features "
                "(set feature_types {%s: drop} to leave it out)." % col
            )
        if kind == "drop" and reason:
            notices.append(
                f"Column `{col}` is not used because {reason}. Override with feature_types if that is wrong."
            )
        kinds[col] = kind
    with_time = [c for c, k in kinds.items() if k == "datetime" and _has_time(df[c])]
    return {"columns": kinds, "with_time": with_time}


def _has_time(s: pd.Series) -> bool:
    parsed = pd.to_datetime(clean_cells(s).astype(str).head(500), errors="coerce", format="mixed")
    return bool((parsed.dt.hour.fillna(0) != 0).any() or (parsed.dt.minute.fillna(0) != 0).any())


def mixed_cells(s: pd.Series) -> pd.Series:
    """Text cells in a mostly-numeric column (empty when the column is consistent)."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s.iloc[:0]
    share, bad = numeric_share(s)
    return bad if 0.5 <= share < 1.0 else s.iloc[:0]


# --- the frame step of every pipeline -----------------------------------------------------------


def output_columns(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Names of the numeric and categorical columns that :func:`prepare_frame` produces."""
    num, cat = [], []
    for col, kind in spec["columns"].items():
        if kind in ("numeric", "boolean"):
            num.append(col)
        elif kind == "categorical":
            cat.append(col)
        elif kind == "datetime":
            parts = DATE_PARTS if col in spec["with_time"] else DATE_PARTS[:-1]
            num += [f"{col}__{p}" for p in parts] + [f"{col}__days"]
        elif kind == "text":
            num += [f"{col}__h{i}" for i in range(HASH_DIMS)] + [f"{col}__len"]
    return num, cat


def prepare_frame(X: pd.DataFrame, spec: dict[str, Any]) -> pd.DataFrame:
    """Raw columns -> numeric columns (floats, NaN = missing) and categorical columns (strings or NaN)."""
    out: dict[str, Any] = {}
    for col, kind in spec["columns"].items():
        s = X[col] if col in X else pd.Series([np.nan] * len(X), index=X.index)
        if kind == "numeric":
            out[col] = _to_number(s)
        elif kind == "boolean":
            out[col] = _to_bool(s)
        elif kind == "categorical":
            out[col] = _to_category(s)
        elif kind == "datetime":
            out.update(_date_parts(col, s, col in spec["with_time"]))
        elif kind == "text":
            out.update(_hashed_text(col, s))
    num, cat = output_columns(spec)
    return pd.DataFrame(out, index=X.index)[num + cat]


def missing_mask(s: pd.Series) -> pd.Series:
    return s.isna() | s.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)


def _to_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return pd.to_numeric(s.astype(str).str.strip().where(~missing_mask(s)), errors="coerce").astype(float)


def _to_bool(s: pd.Series) -> pd.Series:
    words = s.astype(str).str.strip().str.lower()
    out = pd.Series(np.nan, index=s.index)
    out[words.isin(TRUE_WORDS | {"1", "1.0"})] = 1.0
    out[words.isin(FALSE_WORDS | {"0", "0.0"})] = 0.0
    return out


def _category_key(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _to_category(s: pd.Series) -> pd.Series:
    return s.where(~missing_mask(s)).map(_category_key, na_action="ignore").astype(object)


def _date_parts(col: str, s: pd.Series, with_time: bool) -> dict[str, pd.Series]:
    d = pd.to_datetime(s.where(~missing_mask(s)), errors="coerce", format="mixed")
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_localize(None)
    parts = DATE_PARTS if with_time else DATE_PARTS[:-1]
    out = {f"{col}__{p}": getattr(d.dt, p).astype(float) for p in parts}
    out[f"{col}__days"] = (d - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
    return out


def _hashed_text(col: str, s: pd.Series) -> dict[str, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    text = s.fillna("").astype(str)
    dense = HashingVectorizer(n_features=HASH_DIMS, alternate_sign=False, norm="l2").transform(text).toarray()
    out: dict[str, Any] = {f"{col}__h{i}": dense[:, i] for i in range(HASH_DIMS)}
    out[f"{col}__len"] = text.str.len().astype(float).to_numpy()
    return out


# --- problems, targets and metrics ----------------------------------------------------------------


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


def auto_threads(n_rows: int, n_cols: int) -> int:
    """One thread per fit for small and medium data (threads spin-wait and lose on busy or small CPUs)."""
    return 1 if n_rows * n_cols < 2_000_000 else max(1, min(os.cpu_count() or 1, 8))


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
    values = {_category_key(v).lower() for v in clean_cells(s).unique()}
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
        values = np.column_stack([_to_number(y[c]).to_numpy() for c in y.columns])
        return values, ~np.isnan(values).any(axis=1)
    if setup.problem == "multilabel" and setup.separator:
        col = y.iloc[:, 0]
        ok = ~missing_mask(col).to_numpy()
        sets = [set(_split_labels(v, setup.separator)) if k else set() for v, k in zip(col, ok, strict=True)]
        return np.array([[lab in s for lab in setup.classes] for s in sets], dtype=int).reshape(len(y), -1), ok
    if setup.problem == "multilabel":
        values = np.column_stack([_to_bool(y[c]).to_numpy() for c in y.columns])
        return np.nan_to_num(values).astype(int), ~np.isnan(values).any(axis=1)
    index = {c: i for i, c in enumerate(setup.classes)}
    keys = [label_key(v) if not _is_missing(v) else None for v in y.iloc[:, 0]]
    codes = np.array([index.get(k, -1) if k is not None else -1 for k in keys])
    return codes, codes >= 0


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip().lower() in MISSING_TOKENS


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


# --- models -------------------------------------------------------------------------------------


def default_params(family: str, problem: str) -> dict[str, Any]:
    """The first configuration tried for each family (close to each library's defaults)."""
    return {
        "xgboost": {  # shallow trees, slow learning, strong column sampling: robust on small tables
            "n_estimators": 500,
            "learning_rate": 0.03,
            "max_depth": 3,
            "min_child_weight": 1.0,
            "subsample": 0.8,
            "colsample_bytree": 0.5,
            "reg_lambda": 1.0,
            "reg_alpha": 1e-8,
        },
        "random_forest": {
            "n_estimators": 200,
            "max_features": 0.5 if problem == "regression" else 0.3,
            "min_samples_leaf": 1,
        },
        "extra_trees": {
            "n_estimators": 200,
            "max_features": 0.7 if problem == "regression" else 0.5,
            "min_samples_leaf": 1,
        },
        "hist_gradient_boosting": {
            "learning_rate": 0.1,
            "max_iter": 100,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 1e-6,
        },
        "linear": {"C": 1.0} if problem != "regression" else {"alpha": 1.0},
        "svm": {"C": 1.0, "gamma": "scale"},
        "knn": {"n_neighbors": 10, "weights": "distance", "p": 2},
    }[family]


def portfolio(family: str, problem: str) -> list[dict[str, Any]]:
    """Known-good configurations tried (in order) when a family is tuned, before the sampler's own picks."""
    xgb = {"min_child_weight": 1.0, "reg_lambda": 1.0, "reg_alpha": 1e-8}
    return {
        "xgboost": [
            {
                **xgb,
                "n_estimators": 100,
                "learning_rate": 0.3,
                "max_depth": 6,
                "subsample": 1.0,
                "colsample_bytree": 1.0,
            },
            {
                **xgb,
                "n_estimators": 300,
                "learning_rate": 0.05,
                "max_depth": 6,
                "subsample": 0.8,
                "colsample_bytree": 0.8,
            },
            {
                **xgb,
                "n_estimators": 300,
                "learning_rate": 0.05,
                "max_depth": 8,
                "min_child_weight": 3.0,
                "subsample": 0.7,
                "colsample_bytree": 0.6,
                "reg_lambda": 5.0,
            },
        ],
        "random_forest": [{"n_estimators": 300, "max_features": 0.6, "min_samples_leaf": 2}],
        "extra_trees": [{"n_estimators": 300, "max_features": 0.9, "min_samples_leaf": 2}],
        "hist_gradient_boosting": [
            {
                "learning_rate": 0.05,
                "max_iter": 300,
                "max_leaf_nodes": 15,
                "min_samples_leaf": 10,
                "l2_regularization": 1.0,
            },
            {
                "learning_rate": 0.1,
                "max_iter": 100,
                "max_leaf_nodes": 63,
                "min_samples_leaf": 5,
                "l2_regularization": 1e-6,
            },
        ],
        "linear": [{"alpha": 10.0}, {"alpha": 0.1}] if problem == "regression" else [{"C": 10.0}, {"C": 0.1}],
        "svm": [],  # the default (gamma "scale") runs first; optuna searches absolute gammas
        "knn": [{"n_neighbors": 5, "weights": "uniform", "p": 2}, {"n_neighbors": 25, "weights": "distance", "p": 1}],
    }[family]


def suggest_params(family: str, problem: str, trial: Any) -> dict[str, Any]:
    """One optuna trial's hyper-parameters for ``family``."""
    s = trial
    if family == "xgboost":
        return {
            "n_estimators": s.suggest_int("n_estimators", 50, 800, log=True),
            "learning_rate": s.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": s.suggest_int("max_depth", 2, 10),
            "min_child_weight": s.suggest_float("min_child_weight", 0.5, 20, log=True),
            "subsample": s.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": s.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": s.suggest_float("reg_lambda", 1e-3, 10, log=True),
            "reg_alpha": s.suggest_float("reg_alpha", 1e-8, 1.0, log=True),
        }
    if family in ("random_forest", "extra_trees"):
        return {
            "n_estimators": s.suggest_int("n_estimators", 100, 500, step=50),
            "max_features": s.suggest_float("max_features", 0.1, 1.0),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 1, 10),
        }
    if family == "hist_gradient_boosting":
        return {
            "learning_rate": s.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_iter": s.suggest_int("max_iter", 50, 500, log=True),
            "max_leaf_nodes": s.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 3, 50, log=True),
            "l2_regularization": s.suggest_float("l2_regularization", 1e-6, 10, log=True),
        }
    if family == "linear":
        key = "alpha" if problem == "regression" else "C"
        return {key: s.suggest_float(key, 1e-3, 1e2, log=True)}
    if family == "svm":
        return {"C": s.suggest_float("C", 1e-2, 1e3, log=True), "gamma": s.suggest_float("gamma", 1e-4, 1.0, log=True)}
    return {
        "n_neighbors": s.suggest_int("n_neighbors", 1, 50, log=True),
        "weights": s.suggest_categorical("weights", ["uniform", "distance"]),
        "p": s.suggest_int("p", 1, 2),
    }


def preprocessor(family: str, spec: dict[str, Any]) -> ColumnTransformer:
    """Imputation, scaling and categorical encoding suited to ``family`` (unknown categories handled)."""
    num, cat = output_columns(spec)
    if family in ("linear", "svm", "knn"):
        num_step: Any = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
        )
        cat_step: Any = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="__missing__"),
            OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=30, sparse_output=False),
        )
    elif family in ("random_forest", "extra_trees"):
        num_step = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        cat_step = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, max_categories=254
        )
    else:  # xgboost, hist_gradient_boosting: missing values native, categories as codes (unknown -> missing)
        num_step = "passthrough"
        cat_step = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan, max_categories=254
        )
    parts = [(name, step, cols) for name, step, cols in (("num", num_step, num), ("cat", cat_step, cat)) if cols]
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def estimator(family: str, setup: Setup, spec: dict[str, Any], hp: dict[str, Any], seed: int) -> Any:
    """The model of ``family`` for the sub-task, wrapped for multi-label / multi-target where needed."""
    from sklearn import ensemble, linear_model, neighbors
    from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor

    reg = setup.problem == "regression"
    num, cat = output_columns(spec)
    if family == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBRegressor if reg else xgb.XGBClassifier
        model = cls(
            tree_method="hist",
            n_jobs=setup.threads,
            random_state=seed,
            verbosity=0,
            enable_categorical=bool(cat),
            feature_types=["q"] * len(num) + ["c"] * len(cat) if cat else None,
            max_cat_to_onehot=8,
            **hp,
        )
        return model
    if family == "random_forest":
        cls = ensemble.RandomForestRegressor if reg else ensemble.RandomForestClassifier
        model = cls(n_jobs=setup.threads, random_state=seed, **hp)
    elif family == "extra_trees":
        cls = ensemble.ExtraTreesRegressor if reg else ensemble.ExtraTreesClassifier
        model = cls(n_jobs=setup.threads, random_state=seed, **hp)
    elif family == "hist_gradient_boosting":
        cls = ensemble.HistGradientBoostingRegressor if reg else ensemble.HistGradientBoostingClassifier
        mask = [False] * len(num) + [True] * len(cat)
        model = cls(random_state=seed, categorical_features=mask if cat else None, early_stopping=False, **hp)
        if reg and len(setup.targets) > 1:
            return MultiOutputRegressor(model)
    elif family == "linear":
        model = linear_model.Ridge(**hp) if reg else linear_model.LogisticRegression(max_iter=2000, **hp)
    elif family == "svm":
        model = _svm(reg, seed, hp)
    else:
        cls = neighbors.KNeighborsRegressor if reg else neighbors.KNeighborsClassifier
        model = cls(n_jobs=setup.threads, **hp)
    return MultiOutputClassifier(model) if setup.problem == "multilabel" else model


def _svm(reg: bool, seed: int, hp: dict[str, Any]) -> Any:
    """RBF support vectors: probabilities by Platt scaling over ``SVM_CALIBRATION_FOLDS`` internal folds;
    regression targets standardised."""
    from sklearn import svm
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import TransformedTargetRegressor

    if reg:
        return TransformedTargetRegressor(svm.SVR(**hp), transformer=StandardScaler())
    return CalibratedClassifierCV(svm.SVC(random_state=seed, **hp), cv=SVM_CALIBRATION_FOLDS, ensemble=False)


def build_pipeline(family: str, setup: Setup, spec: dict[str, Any], hp: dict[str, Any], seed: int) -> Pipeline:
    """The whole model: raw frame -> typed columns -> family preprocessing -> estimator."""
    frame = FunctionTransformer(prepare_frame, kw_args={"spec": spec}, validate=False)
    return Pipeline(
        [("frame", frame), ("prep", preprocessor(family, spec)), ("model", estimator(family, setup, spec, hp, seed))]
    )


def predict_scores(model: Pipeline, X: pd.DataFrame, setup: Setup) -> np.ndarray:
    """Scores in a fixed shape: (n,) P(class 1) for binary, (n, k) class / label probabilities, (n, t) values."""
    if setup.problem == "regression":
        return np.asarray(model.predict(X), dtype=float).reshape(len(X), -1)
    proba = model.predict_proba(X)
    final = model[-1]
    if setup.problem == "multilabel":
        if isinstance(proba, list):
            return np.column_stack(
                [_column_of(p, est.classes_, 1) for p, est in zip(proba, final.estimators_, strict=True)]
            )
        return np.asarray(proba).reshape(len(X), -1)
    full = np.zeros((len(X), len(setup.classes)))
    full[:, np.asarray(final.classes_, dtype=int)] = proba
    return full[:, 1] if setup.problem == "binary" else full


def _column_of(proba: np.ndarray, classes: np.ndarray, wanted: int) -> np.ndarray:
    hits = np.flatnonzero(np.asarray(classes) == wanted)
    return proba[:, hits[0]] if len(hits) else np.zeros(len(proba))


# --- search ---------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One configuration evaluated with k-fold CV: its out-of-fold scores and fold models (the bag)."""

    family: str
    params: dict[str, Any]
    trial: int
    score: float
    loss: float
    fit_time: float
    oof: np.ndarray  # out-of-fold scores, after the temperature
    models: list[Pipeline]
    temperature: float = 1.0


def make_folds(y: np.ndarray, setup: Setup, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    k = max(2, min(k, len(y) // 2))
    if setup.problem in ("binary", "multiclass") and np.bincount(y).min() >= 2:
        with warnings.catch_warnings():  # a class smaller than k still lands in every training fold
            warnings.simplefilter("ignore")
            return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y))))


def cross_validate(
    family: str,
    hp: dict[str, Any],
    trial: int,
    X: pd.DataFrame,
    y: np.ndarray,
    setup: Setup,
    spec: dict[str, Any],
    folds: list,
    seed: int,
    deadline: float,
) -> Candidate | None:
    """Fit one model per fold; None when the deadline or a Stop arrives before the last fold."""
    from engine.runfiles import stop_requested

    t0 = time.time()
    oof = np.zeros((len(y),) if setup.problem == "binary" else (len(y), setup.n_out))
    models = []
    for i, (tr, te) in enumerate(folds):
        if i and (time.time() > deadline or stop_requested()):
            return None
        model = build_pipeline(family, setup, spec, hp, seed)
        y_fit = y[tr].ravel() if setup.problem == "regression" and y.shape[1] == 1 else y[tr]
        with threadpool_limits(setup.threads):
            model.fit(X.iloc[tr], y_fit)
            oof[te] = predict_scores(model, X.iloc[te], setup)
        models.append(model)
    t = fit_temperature(oof, y, setup.problem) if setup.calibrate else 1.0
    oof = apply_temperature(oof, t, setup.problem)
    score = compute_metric(setup.metric, y, oof, setup.problem)
    return Candidate(family, hp, trial, score, to_loss(setup.metric, score), time.time() - t0, oof, models, t)


@dataclass
class Search:
    """The state of a search: every result (leaderboard) and the candidates kept for the ensemble."""

    setup: Setup
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    kept: list[Candidate] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    keep: int = 12

    @property
    def best(self) -> Candidate | None:
        return min(self.kept, key=lambda c: c.loss) if self.kept else None

    def add(self, cand: Candidate) -> None:
        self.leaderboard.append(
            {
                "model": cand.family,
                "trial": cand.trial,
                "cv_score": cand.score,
                "fit_time": round(cand.fit_time, 3),
                "temperature": round(cand.temperature, 3),
                "params": cand.params,
            }
        )
        self.kept.append(cand)
        self.kept.sort(key=lambda c: c.loss)
        best_per_family = {c.family: c for c in reversed(self.kept)}
        self.kept = [c for i, c in enumerate(self.kept) if i < self.keep or best_per_family[c.family] is c]


def run_search(
    X: pd.DataFrame,
    y: np.ndarray,
    setup: Setup,
    spec: dict[str, Any],
    families: list[str],
    *,
    folds: int,
    seed: int,
    deadline: float,
    max_trials: int,
    on_trial: Callable[[Search, Candidate], None],
    resume: Search | None = None,
) -> Search:
    """Defaults of every family first (cheap ones first), then optuna trials over the best families.

    ``resume``: a search restored from a checkpoint; its trials count, its families' defaults are not
    tried again, and each family's sampler starts from that family's earlier trials.
    """
    import optuna

    from engine.runfiles import stop_requested

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search, splits = resume or Search(setup), make_folds(y, setup, folds, seed)
    n = n0 = len(search.leaderboard)
    tried = {r["model"] for r in search.leaderboard}

    def attempt(family: str, hp: dict[str, Any]) -> Candidate | None:
        nonlocal n
        try:
            end = deadline if search.kept else math.inf  # the first model always finishes (Stop still ends it)
            cand = cross_validate(family, hp, n + 1, X, y, setup, spec, splits, seed, end)
        except Exception as e:  # noqa: BLE001 - one family failing must not end the search
            search.errors[family] = f"{type(e).__name__}: {e}".splitlines()[0]
            print(f"[trainpad] {family} failed: {search.errors[family]}", flush=True)
            return None
        if cand is not None:
            n += 1
            search.add(cand)
            on_trial(search, cand)
        return cand

    def more() -> bool:
        return time.time() < deadline and not stop_requested() and (not max_trials or n - n0 < max_trials)

    for family in families:
        if family in tried:
            continue
        if n and not more():
            break
        attempt(family, default_params(family, setup.problem))
    ranked = _rank_families(search, families)
    studies = {
        f: optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed + i + n0, n_startup_trials=4))
        for i, f in enumerate(ranked)
    }
    for family, study in studies.items():
        done = [r for r in search.leaderboard if r["model"] == family]
        for r in done:
            _warm_start(study, family, setup.problem, r["params"], to_loss(setup.metric, r["cv_score"]))
        for config in portfolio(family, setup.problem):
            if not any(r["params"] == config for r in done):
                study.enqueue_trial(config)
    turn = 0
    while ranked and more():
        family = ranked[turn % len(ranked)]
        turn += 1
        trial = studies[family].ask()
        cand = attempt(family, suggest_params(family, setup.problem, trial))
        if cand is None:
            studies[family].tell(trial, state=optuna.trial.TrialState.FAIL)
            if family in search.errors:
                ranked.remove(family)
            continue
        studies[family].tell(trial, cand.loss)
    return search


class _Recorder:
    """Stands in for an optuna trial: answers with the given params and records each one's distribution."""

    def __init__(self, params: dict[str, Any]):
        self.params, self.distributions = params, {}

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> Any:
        from optuna.distributions import IntDistribution

        self.distributions[name] = IntDistribution(low, high, log=log, step=step)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> Any:
        from optuna.distributions import FloatDistribution

        self.distributions[name] = FloatDistribution(low, high, log=log, step=step)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        from optuna.distributions import CategoricalDistribution

        self.distributions[name] = CategoricalDistribution(choices)
        return self.params[name]


def _warm_start(study: Any, family: str, problem: str, params: dict[str, Any], loss: float) -> None:
    """Tell ``study`` about an earlier trial (skipped when it lies outside the search space, e.g. a default)."""
    import optuna

    rec = _Recorder(params)
    try:
        suggest_params(family, problem, rec)
        values = {k: params[k] for k in rec.distributions}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=rec.distributions, value=loss))
    except (KeyError, ValueError, TypeError):
        pass


def search_state(search: Search) -> dict[str, Any]:
    """What Resume needs to continue ``search``: every trial, and the kept candidates' out-of-fold scores.
    Fold models are not kept (they can be large); a resumed run refits the members it picks."""
    keys = ("family", "params", "trial", "score", "loss", "fit_time", "temperature", "oof")
    return {
        "version": 1,
        "problem": search.setup.problem,
        "metric": search.setup.metric,
        "rows": len(search.kept[0].oof) if search.kept else 0,
        "leaderboard": [r for r in search.leaderboard if r["model"] != "ensemble"],
        "kept": [{k: getattr(c, k) for k in keys} for c in search.kept],
        "errors": dict(search.errors),
    }


def restore_search(state: dict[str, Any], setup: Setup, rows: int) -> Search:
    """The search saved by :func:`search_state`; a UserError when the data or the metric has changed since."""
    from engine.errors import UserError

    if (state.get("problem"), state.get("metric"), state.get("rows")) != (setup.problem, setup.metric, rows):
        raise UserError(
            f"Cannot resume: the earlier search was a {state.get('problem')} problem optimising "
            f"{state.get('metric')} on {state.get('rows')} training rows; now it is {setup.problem} / "
            f"{setup.metric} on {rows} rows (data or parameters changed). Start a new run instead (Duplicate)."
        )
    kept = [Candidate(**c, models=[]) for c in state["kept"]]
    return Search(setup, leaderboard=list(state["leaderboard"]), kept=kept, errors=dict(state["errors"]))


def _rank_families(search: Search, families: list[str], top: int = 3) -> list[str]:
    """The families worth tuning: the best ``top`` by CV loss, plus linear (cheap, and it diversifies ensembles).
    knn is tuned only when it is the best."""
    best: dict[str, float] = {}
    for c in search.kept:
        best[c.family] = min(best.get(c.family, math.inf), c.loss)
    ranked = sorted((f for f in families if f in best and f not in search.errors), key=lambda f: best[f])
    chosen = [f for i, f in enumerate(ranked[:top]) if f != "knn" or i == 0]
    if "linear" in ranked and "linear" not in chosen:
        chosen.append("linear")
    return chosen or ranked[:1]


# --- ensemble -------------------------------------------------------------------------------------


def greedy_ensemble(
    cands: list[Candidate], y: np.ndarray, setup: Setup, rounds: int = 30, init_families: int = 2
) -> tuple[dict[int, float], float]:
    """Caruana-style selection with replacement over out-of-fold scores: {candidate index: weight}, CV score.

    Starts from the best candidate of each of the ``init_families`` best families (sorted initialisation:
    it keeps the ensemble diverse and less fitted to the folds), then adds greedily; the best prefix wins.
    """
    counts: dict[int, int] = {}
    for c in sorted(range(len(cands)), key=lambda k: cands[k].loss):
        if len(counts) < init_families and cands[c].family not in {cands[k].family for k in counts}:
            counts[c] = 1
    total = sum(cands[i].oof for i in counts)

    def loss_of(scores: np.ndarray) -> float:
        return to_loss(setup.metric, compute_metric(setup.metric, y, scores, setup.problem))

    history = [(loss_of(total / len(counts)), dict(counts))]
    for _ in range(rounds):
        n = sum(counts.values())
        losses = [loss_of((total + c.oof) / (n + 1)) for c in cands]
        pick = int(np.argmin(losses))
        counts[pick] = counts.get(pick, 0) + 1
        total = total + cands[pick].oof
        history.append((losses[pick], dict(counts)))
    _, chosen = min(history, key=lambda h: h[0])
    n = sum(chosen.values())
    weights = {i: c / n for i, c in chosen.items()}
    score = compute_metric(setup.metric, y, sum(w * cands[i].oof for i, w in weights.items()), setup.problem)
    return weights, score


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


def refit_full(
    members: list[tuple[float, Candidate]],
    X: pd.DataFrame,
    y: np.ndarray,
    setup: Setup,
    spec: dict[str, Any],
    seed: int,
    deadline: float,
) -> list[tuple[float, Candidate]] | None:
    """Each member refit once on all training rows (replacing its fold models); None if it would miss ``deadline``."""
    estimate = sum(1.3 * c.fit_time / max(1, len(c.models) - 1) for _, c in members)  # a fold fit x k/(k-1)
    if time.time() + estimate > deadline:
        return None
    y_fit = y.ravel() if setup.problem == "regression" and y.shape[1] == 1 else y
    out = []
    for w, c in members:
        model = build_pipeline(c.family, setup, spec, c.params, seed)
        with threadpool_limits(setup.threads):
            model.fit(X, y_fit)
        out.append((w, replace(c, models=[model])))
    return out


# --- the saved bundle -----------------------------------------------------------------------------


def make_bundle(
    members: list[tuple[float, Candidate]],
    setup: Setup,
    spec: dict[str, Any],
    id_column: str | None,
    feature_columns: list[str],
) -> dict[str, Any]:
    """Everything ``predict`` needs, saved with joblib: members (weight, fold models, temperature), setup,
    column spec."""
    return {
        "version": 1,
        "setup": setup.__dict__.copy(),
        "spec": spec,
        "id_column": id_column,
        "feature_columns": feature_columns,
        "members": [
            {"family": c.family, "params": c.params, "weight": w, "models": c.models, "temperature": c.temperature}
            for w, c in members
        ],
    }


def bundle_scores(bundle: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
    """Weighted average over members of the average over each member's fold models (temperature-scaled)."""
    setup = Setup(**bundle["setup"])
    total = None
    with threadpool_limits(setup.threads):
        for m in bundle["members"]:
            part = sum(predict_scores(model, X, setup) for model in m["models"]) / len(m["models"])
            part = apply_temperature(part, m.get("temperature", 1.0), setup.problem)
            total = m["weight"] * part if total is None else total + m["weight"] * part
    return total


def decode(bundle: dict[str, Any], scores: np.ndarray) -> list[dict[str, Any]]:
    """Scores -> one {prediction, probabilities} dict per row, in the user's labels."""
    setup = Setup(**bundle["setup"])
    rows = []
    for s in scores:
        if setup.problem == "regression":
            values = [float(v) for v in np.atleast_1d(s)]
            rows.append(
                {"prediction": values[0] if len(values) == 1 else dict(zip(setup.targets, values, strict=True))}
            )
        elif setup.problem == "binary":
            p = float(s)
            rows.append(
                {
                    "prediction": setup.classes[int(p >= 0.5)],
                    "probabilities": {str(setup.classes[0]): 1 - p, str(setup.classes[1]): p},
                }
            )
        elif setup.problem == "multiclass":
            rows.append(
                {
                    "prediction": setup.classes[int(np.argmax(s))],
                    "probabilities": {str(c): float(v) for c, v in zip(setup.classes, s, strict=True)},
                }
            )
        else:
            rows.append(
                {
                    "prediction": [str(c) for c, v in zip(setup.classes, s, strict=True) if v >= 0.5],
                    "probabilities": {str(c): float(v) for c, v in zip(setup.classes, s, strict=True)},
                }
            )
    return rows


def predictions_frame(bundle: dict[str, Any], raw: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A table of predictions (and class probabilities) per input row, led by the id column if present."""
    setup = Setup(**bundle["setup"])
    out = pd.DataFrame(index=range(len(rows)))
    if bundle["id_column"] and bundle["id_column"] in raw:
        out[bundle["id_column"]] = raw[bundle["id_column"]].to_numpy()
    if setup.problem == "regression" and len(setup.targets) > 1:
        for t in setup.targets:
            out[t] = [r["prediction"][t] for r in rows]
    elif setup.problem == "multilabel":
        out["prediction"] = [(setup.separator or ",").join(r["prediction"]) for r in rows]
    else:
        out["prediction"] = [r["prediction"] for r in rows]
    for r_key in (rows[0].get("probabilities") or {}) if rows else {}:
        out[f"proba_{r_key}"] = [r["probabilities"][r_key] for r in rows]
    return out


# --- importance -----------------------------------------------------------------------------------


def permutation_importance(
    bundle: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    budget_s: float,
    repeats: int = 3,
    max_rows: int = 1000,
) -> dict[str, float]:
    """Mean rise of the loss when one raw column is shuffled (bigger = more important), within ``budget_s``.

    The ``repeats`` shuffled copies of a column are scored in one batch (one prediction call per column);
    a column is skipped when the last one's time would overrun the budget.
    """
    setup = Setup(**bundle["setup"])
    rng = np.random.default_rng(seed)
    if len(X) > max_rows:
        idx = rng.choice(len(X), max_rows, replace=False)
        X, y = X.iloc[idx], y[idx]
    X = X.reset_index(drop=True)
    base = to_loss(setup.metric, compute_metric(setup.metric, y, bundle_scores(bundle, X), setup.problem))
    deadline = time.time() + budget_s
    out: dict[str, float] = {}
    n, cost = len(X), 0.0
    for col in [c for c, k in bundle["spec"]["columns"].items() if k != "drop"]:
        if time.time() + cost > deadline:
            break
        started = time.time()
        batch = pd.concat([X] * repeats, ignore_index=True)
        batch[col] = np.concatenate([rng.permutation(X[col].to_numpy()) for _ in range(repeats)])
        scores = bundle_scores(bundle, batch)
        losses = [
            to_loss(setup.metric, compute_metric(setup.metric, y, scores[r * n : (r + 1) * n], setup.problem))
            for r in range(repeats)
        ]
        out[col] = float(np.mean(losses) - base)
        cost = time.time() - started
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
