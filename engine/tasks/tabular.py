"""Tabular classification and regression: binary, multi-class, multi-label, single and multi-target.

One run = type the columns, k-fold search over model families inside a time budget, a weighted
ensemble over out-of-fold predictions, validation metrics, permutation importance, and one joblib
bundle (pipelines + labels) in ``run_dir/model``. The ML pieces live in ``engine/tabular_utils.py``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from engine import data
from engine.errors import UserError
from engine.params import CommonParams, field
from engine.task import Column, Task

MODELS = ["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear", "svm", "knn"]
# cheap first
AUTO_ORDER = ["linear", "svm", "hist_gradient_boosting", "xgboost", "random_forest", "extra_trees", "knn"]
AUTOTRAIN_MODELS = {
    "ridge": "linear",
    "logistic_regression": "linear",
    "lightgbm": "hist_gradient_boosting",
    "catboost": "hist_gradient_boosting",
    "random_forest": "random_forest",
    "extra_trees": "extra_trees",
}
BUNDLE = "model.joblib"
SEARCH_STATE = "search.joblib"  # in checkpoints/checkpoint-<trials>/, for Resume
KIND = Literal["numeric", "categorical", "boolean", "datetime", "text", "drop"]


class Params(CommonParams):
    """Tabular options. ``base_model`` is not used: choose ``model`` instead."""

    base_model: str = field("", "Not used by tabular models (choose `model` instead).", hidden=True)

    model: Literal[
        "auto", "xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear", "svm", "knn"
    ] = field(
        "auto",
        "auto: try several model families with cross-validation, tune the best, and ensemble them. "
        "Or pick one family and tune only it.",
    )
    problem_type: Literal["auto", "binary", "multiclass", "multilabel", "regression"] = field(
        "auto", "What to predict. auto: detected from the target column(s)."
    )
    target_columns: str = field(
        "",
        "Column(s) to predict, comma-separated for several (multi-label 0/1 columns or multi-target regression). "
        "Empty: the column mapped to `target`, or named `target`.",
    )
    metric: Literal["auto", "logloss", "accuracy", "balanced_accuracy", "roc_auc", "f1", "rmse", "mae", "r2"] = field(
        "auto", "Metric the search optimises. auto: logloss for classification, rmse for regression."
    )
    time_limit: int = field(120, "Seconds for the whole search (the run ends a little after).", ge=5, le=7 * 86400)
    num_trials: int = field(
        0, "Stop the search after this many trials (0 = as many as fit in time_limit).", ge=0, le=100_000
    )
    cv_folds: int = field(5, "Cross-validation folds for each trial.", ge=2, le=10, advanced=True)
    ensemble: bool = field(
        True, "Combine the best trials into a weighted ensemble (kept only if it scores better).", advanced=True
    )
    feature_types: dict[str, KIND] = field(
        {}, "Override the detected type of a column, e.g. {zip_code: categorical, notes: drop}.", advanced=True
    )
    text_columns: Literal["hash", "drop"] = field(
        "hash", "Free-text columns: hash their words into numeric features, or leave them out.", advanced=True
    )
    label_separator: str = field(
        ",",
        "Multi-label from one column: the separator between labels in a cell (e.g. `a,b`).",
        advanced=True,
        show_if={"problem_type": "multilabel"},
    )
    calibrate: bool = field(
        True,
        "Rescale each model's class probabilities with a temperature fitted on its out-of-fold predictions "
        "(better log loss, fairer ensembles; predicted classes do not change).",
        advanced=True,
    )
    refit_full: bool = field(
        True,
        "Refit the chosen models on all training rows when time allows (usually better on small tables). "
        "Off, or without time: predict with the average of the cross-validation fold models (bagging).",
        advanced=True,
    )
    feature_importance: bool = field(True, "Compute permutation feature importance at the end.", advanced=True)
    threads: int = field(
        0,
        "CPU threads per model fit (0 = auto: 1 for small and medium tables, all cores for large ones).",
        ge=0,
        le=256,
        advanced=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, values: Any) -> Any:
        """AutoTrain forms: `base_model: xgboost`, `column_mapping: {target_columns: [a, b]}`."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        base = str(values.get("base_model") or "")
        if base:
            if base not in MODELS and base not in AUTOTRAIN_MODELS:
                raise ValueError(
                    f"base_model `{base}` is not used by the tabular task; set `model` to one of auto, {', '.join(MODELS)}"
                )
            values.setdefault("model", AUTOTRAIN_MODELS.get(base, base))
            values["base_model"] = ""
        mapping = dict(values.get("column_mapping") or {})
        for key in ("target_columns", "target"):
            value = mapping.get(key)
            if key in mapping and (isinstance(value, (list, tuple)) or key == "target_columns" or "," in str(value)):
                names = list(value) if isinstance(value, (list, tuple)) else str(value or "").split(",")
                mapping.pop(key)
                if not values.get("target_columns"):
                    values["target_columns"] = ",".join(str(n).strip() for n in names if str(n).strip())
        if "column_mapping" in values:
            values["column_mapping"] = mapping
        return values


def from_autotrain(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """AutoTrain tabular configs: `tabular:regression` fixes the sub-task; categorical/numerical_columns type columns."""
    if str(config.get("task", "")).endswith("regression"):
        params["problem_type"] = "regression"
    given = config.get("params") or {}
    types = {c: "categorical" for c in given.get("categorical_columns") or []}
    types.update({c: "numeric" for c in given.get("numerical_columns") or []})
    if types:
        params["feature_types"] = {**types, **(params.get("feature_types") or {})}
    return params


COLUMNS = [
    Column("target", "the column to predict (several: set target_columns)", required=False, kind="label"),
    Column("id", "an optional row id: kept out of the features, copied to predictions", required=False, kind="any"),
]


# --- columns and pre-flight checks ----------------------------------------------------------------


def resolve_roles(columns: list[str], params: Params) -> tuple[list[str], str | None, list[str]]:
    """(target columns, id column or None, problems)."""
    names = params.target_columns or params.column_mapping.get("target", "")
    targets = [t.strip() for t in names.split(",") if t.strip()]
    lower = {c.lower(): c for c in columns}
    if not targets and "target" in lower:
        targets = [lower["target"]]
    problems = []
    if not targets:
        problems.append(
            f"No target column: say which column to predict with target_columns (or column_mapping "
            f"{{target: your_column}}). Columns found: {', '.join(columns)}."
        )
    for t in targets:
        if t not in columns:
            problems.append(f"Target column `{t}` is not in the data. Columns found: {', '.join(columns)}.")
    id_col = params.column_mapping.get("id") or lower.get("id")
    if id_col and id_col in targets:
        problems.append(f"Column `{id_col}` is both the id and a target. Map a different id column, or none.")
    return targets, id_col, problems


def table_problems(df: Any, valid: Any, params: Params) -> list[str]:
    """Every reason the data cannot be trained on, in plain language (empty = fine)."""
    from engine import tabular_utils as tu

    targets, id_col, problems = resolve_roles(list(df.columns), params)
    if problems:
        return problems
    if valid is not None:
        missing = [t for t in targets if t not in valid.columns]
        if missing:
            problems.append(f"Validation data lacks the target column(s) {', '.join(missing)}.")
    problems += _target_problems(df, targets, params)
    if id_col:
        dup = df.index[df[id_col].duplicated(keep=False)].tolist()
        if dup:
            problems.append(
                f"Id column `{id_col}` is not unique: {len(dup)} rows share an id, rows {data.row_numbers(dup)}. "
                "Make the ids unique, or map no id column."
            )
    features = [c for c in df.columns if c not in targets and c != id_col]
    unknown = [c for c in params.feature_types if c not in features]
    if unknown:
        problems.append(
            f"feature_types names column(s) {', '.join(unknown)} that are not features of the data. "
            f"Feature columns: {', '.join(features)}."
        )
    for col in features:
        if params.feature_types.get(col, "numeric") != "numeric":
            continue
        bad = tu.mixed_cells(df[col])
        if len(bad):
            examples = ", ".join(repr(v) for v in bad.unique()[:3])
            problems.append(
                f"Column `{col}` mixes numbers and text: {examples} in row(s) {data.row_numbers(bad.index.tolist())}. "
                f"Fix or empty those cells, or set feature_types {{{col}: categorical}} to treat it as categories."
            )
    if not problems and all(
        params.feature_types.get(c) == "drop" or (c not in params.feature_types and tu.infer_kind(df[c])[0] == "drop")
        for c in features
    ):
        problems.append(
            "No usable feature columns: every column besides the target and id is empty, dropped or an identifier."
        )
    if len(df) < 10:
        problems.append(f"Only {len(df)} rows: tabular training needs at least 10 (and does well with hundreds).")
    return problems


def _target_problems(df: Any, targets: list[str], params: Params) -> list[str]:
    from engine import tabular_utils as tu

    problems = []
    for t in targets:
        if len(tu.clean_cells(df[t])) == 0:
            problems.append(
                f"Target column `{t}` is empty in every row. Choose the column that holds the values to predict."
            )
    if problems:
        return problems
    problem = tu.detect_problem(df[targets], params.problem_type)
    if len(targets) > 1 and problem in ("binary", "multiclass"):
        return [
            f"problem_type {problem} takes one target column, got {len(targets)}. Use multilabel for several 0/1 "
            "columns, regression for several number columns."
        ]
    for t in targets:
        cells = tu.clean_cells(df[t])
        if problem == "regression":
            share, bad = tu.numeric_share(df[t])
            if len(bad):
                problems.append(
                    f"Target column `{t}` must hold numbers for regression, but row(s) {data.row_numbers(bad.index.tolist())} "
                    f"hold {', '.join(repr(v) for v in bad.unique()[:3])}. Fix those cells, or set problem_type to a classification."
                )
            elif cells.nunique() < 2:
                problems.append(
                    f"Target column `{t}` has the same value ({cells.iloc[0]!r}) in every row: there is nothing to learn."
                )
        elif problem == "multilabel" and len(targets) > 1 and not tu.is_binary(df[t]):
            problems.append(
                f"Multi-label target column `{t}` must hold 0/1 (or yes/no) values; found {', '.join(repr(v) for v in cells.unique()[:3])}."
            )
        elif problem != "multilabel" and cells.nunique() < 2:
            problems.append(
                f"Target column `{t}` has a single class ({cells.iloc[0]!r}) in all {len(cells)} labelled rows: "
                "classification needs at least two. Add rows of other classes."
            )
        elif problem == "binary" and cells.nunique() > 2:
            problems.append(
                f"problem_type is binary but target column `{t}` has {cells.nunique()} classes. Use multiclass (or auto)."
            )
    if problem == "multilabel" and len(targets) > 1:
        flat = [c for c in targets if tu.clean_cells(df[c]).nunique() < 2]
        problems += [
            f"Multi-label column `{c}` has the same value in every row: remove it from target_columns." for c in flat
        ]
    return problems


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Task checks before queueing. Reads the raw tables: features are every column, not only the mapped roles."""
    raw_train, raw_valid = data.load_raw(params)
    return table_problems(raw_train, raw_valid, params)


# --- training -------------------------------------------------------------------------------------


def _log(message: str, notices: list[str] | None = None) -> None:
    print(f"[trainpad] {message}", flush=True)
    if notices is not None:
        notices.append(message)


def split_rows(raw: Any, raw_valid: Any, targets: list[str], params: Params, notices: list[str]) -> tuple[Any, Any]:
    """Drop rows without a target, cap rows, hold out validation rows (stratified for one class column)."""
    from engine import tabular_utils as tu

    unlabeled = tu.missing_mask(raw[targets[0]])
    for t in targets[1:]:
        unlabeled |= tu.missing_mask(raw[t])
    if unlabeled.any():
        _log(
            f"{int(unlabeled.sum())} row(s) have no target value and are left out: rows {data.row_numbers(raw.index[unlabeled].tolist())}.",
            notices,
        )
    df = raw[~unlabeled]
    if params.max_rows and params.max_rows < len(df):
        df = df.sample(n=params.max_rows, random_state=params.seed)
    if raw_valid is not None:
        return df.reset_index(drop=True), raw_valid.reset_index(drop=True)
    problem = tu.detect_problem(df[targets], params.problem_type)
    strat = targets[0] if problem in ("binary", "multiclass") else None
    return data.split_train_valid(df, params.valid_fraction, params.seed, strat)


def drop_rare_classes(df: Any, target: str, notices: list[str]) -> Any:
    """Classes with a single training row cannot be cross-validated: leave them out, with a notice."""
    from engine import tabular_utils as tu

    keys = df[target].map(tu.label_key)
    counts = keys.value_counts()
    rare = counts[counts < 2].index.tolist()
    if rare:
        _log(
            f"Class(es) {', '.join(repr(r) for r in rare[:5])} of `{target}` have a single training row and are left out.",
            notices,
        )
        df = df[~keys.isin(rare)].reset_index(drop=True)
    return df


@dataclass
class Prepared:
    """The training table split, typed and encoded: everything the search needs."""

    X: Any
    y: Any
    valid_df: Any
    targets: list[str]
    id_col: str | None
    setup: Any
    spec: dict[str, Any]


def prepare(params: Params, notices: list[str]) -> Prepared:
    """Load, check, split, detect the sub-task, type the feature columns and encode the targets."""
    from engine import tabular_utils as tu

    raw, raw_valid = data.load_raw(params)
    problems = table_problems(raw, raw_valid, params)
    if problems:
        raise UserError(problems)
    targets, id_col, _ = resolve_roles(list(raw.columns), params)
    train_df, valid_df = split_rows(raw, raw_valid, targets, params, notices)
    problem = tu.detect_problem(train_df[targets], params.problem_type)
    if problem in ("binary", "multiclass"):
        train_df = drop_rare_classes(train_df, targets[0], notices)
    features = [c for c in raw.columns if c not in targets and c != id_col]
    threads = params.threads or tu.auto_threads(len(train_df), len(features))
    setup = tu.make_setup(train_df[targets], problem, params.metric, params.label_separator, threads, params.calibrate)
    if setup.metric not in tu.metric_choices(problem):
        choices = ", ".join(tu.metric_choices(problem))
        raise UserError(f"metric {setup.metric} does not fit a {problem} problem. Use one of: {choices} (or auto).")
    y, _ = tu.encode_targets(train_df[targets], setup)
    X = train_df[features]
    spec = tu.feature_spec(X, params.feature_types, params.text_columns, notices)
    for n in notices:
        print(f"[trainpad] notice: {n}", flush=True)
    _log(
        f"{problem} problem, {len(X)} training rows, {0 if valid_df is None else len(valid_df)} validation rows, "
        f"{sum(k != 'drop' for k in spec['columns'].values())} features; optimising {setup.metric}."
    )
    return Prepared(X, y, valid_df, targets, id_col, setup, spec)


def search_models(d: Prepared, params: Params, run_dir: Path, deadline: float) -> Any:
    """k-fold search over the model families (or the one chosen), one ``trial`` event per result."""
    from engine import tabular_utils as tu
    from engine.runfiles import write_event

    def on_trial(search: tu.Search, cand: tu.Candidate) -> None:
        n, best = len(search.leaderboard), search.best
        event = {"type": "trial", "step": n, "score": cand.score, "best_score": best.score, "model": cand.family}
        event["fit_time"] = round(cand.fit_time, 3)
        if params.num_trials:
            event["max_steps"] = params.num_trials
        write_event(run_dir, event)
        _log(
            f"trial {n}: {cand.family} cv_{d.setup.metric}={cand.score:.5g} ({cand.fit_time:.1f}s); "
            f"best {best.family} {best.score:.5g}"
        )

    families = AUTO_ORDER if params.model == "auto" else [params.model]
    resume = load_checkpoint(params.resume_from, d) if params.resume_from else None
    search = tu.run_search(
        d.X,
        d.y,
        d.setup,
        d.spec,
        families,
        folds=params.cv_folds,
        seed=params.seed,
        deadline=deadline,
        max_trials=params.num_trials,
        on_trial=on_trial,
        resume=resume,
    )
    if not search.kept:
        raise UserError("No model could be trained: " + "; ".join(f"{f}: {e}" for f, e in search.errors.items()))
    return search


def train(params: Params, run_dir: Path) -> dict[str, Any]:
    from engine import tabular_utils as tu
    from engine.runfiles import stop_requested, write_event

    t0 = time.time()
    notices: list[str] = []
    d = prepare(params, notices)
    search = search_models(d, params, run_dir, deadline=t0 + params.time_limit * 0.85)
    save_checkpoint(run_dir, search)
    members, cv_score = choose_members(search, d.y, d.setup, params.ensemble)
    restored = any(not c.models for _, c in members)  # from a resumed search: only their settings were kept
    if restored or (params.refit_full and not stop_requested()):
        members = refit(members, d, params, deadline=math.inf if restored else t0 + params.time_limit * 0.95)
    bundle = tu.make_bundle(members, d.setup, d.spec, d.id_col, list(d.X.columns))
    metrics = evaluate(bundle, members, d, notices)
    metrics.update(
        {
            f"cv_{d.setup.metric}": cv_score,
            "problem_type": d.setup.problem,
            "metric": d.setup.metric,
            "best_model": search.best.family,
            "n_trials": sum(r["model"] != "ensemble" for r in search.leaderboard),
            "train_rows": len(d.X),
            "search_seconds": round(time.time() - t0, 2),
        }
    )
    t_search, importance = time.time(), {}
    if params.feature_importance and not stop_requested():
        budget = t0 + params.time_limit * 0.92 - time.time()  # the rest is for saving the bundle
        importance = importance_for(bundle, d, params, budget_s=max(0.5, budget))
    t_importance = time.time()
    save(run_dir / "model", bundle, search, importance, metrics, notices)
    _log(
        f"search and evaluation {t_search - t0:.1f}s, importance {t_importance - t_search:.1f}s, "
        f"saving {time.time() - t_importance:.1f}s"
    )
    scores = {k: v for k, v in metrics.items() if k.startswith(("eval_", "cv_")) and isinstance(v, float)}
    write_event(run_dir, {"type": "eval", "step": len(search.leaderboard), **scores})
    top = dict(list(importance.items())[:20])
    return {**metrics, "leaderboard": leaderboard_rows(search)[:20], "feature_importance": top, "notices": notices}


def save_checkpoint(run_dir: Path, search: Any) -> Path:
    """``checkpoints/checkpoint-<trials>/search.joblib``: what Resume needs to continue the search."""
    import shutil

    import joblib

    from engine import runfiles as rf
    from engine import tabular_utils as tu

    folder = Path(run_dir) / rf.CHECKPOINTS / f"checkpoint-{len(search.leaderboard)}"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(tu.search_state(search), folder / SEARCH_STATE, compress=3)
    for old in folder.parent.glob("checkpoint-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(folder: str, d: Prepared) -> Any:
    """The search saved in ``folder`` by :func:`save_checkpoint`, checked against the data of this run."""
    import joblib

    from engine import tabular_utils as tu

    path = Path(folder) / SEARCH_STATE
    if not path.is_file():
        raise UserError(f"Cannot resume: `{path}` is missing (the earlier run saved no search state).")
    search = tu.restore_search(joblib.load(path), d.setup, len(d.y))
    _log(
        f"Resuming a search of {len(search.leaderboard)} trials; best so far {search.best.family} {search.best.score:.5g}."
    )
    return search


def refit(members: list, d: Prepared, params: Params, deadline: float) -> list:
    """The members refit on all training rows when that fits before ``deadline``; else the fold models."""
    from engine import tabular_utils as tu

    done = tu.refit_full(members, d.X, d.y, d.setup, d.spec, params.seed, deadline)
    if done is None:
        _log("No time left to refit on all rows: predictions average the cross-validation fold models.")
        return members
    _log("Refit the chosen models on all training rows.")
    return done


def choose_members(search: Any, y: Any, setup: Any, ensemble: bool) -> tuple[list[tuple[float, Any]], float]:
    """The weighted ensemble when it beats the best single candidate on CV, else the best candidate."""
    from engine import tabular_utils as tu

    best = search.best
    if not ensemble or len(search.kept) < 2:
        return [(1.0, best)], best.score
    weights, score = tu.greedy_ensemble(search.kept, y, setup)
    members = [(w, search.kept[i]) for i, w in sorted(weights.items(), key=lambda kv: -kv[1])]
    search.leaderboard.append(
        {
            "model": "ensemble",
            "trial": None,
            "cv_score": score,
            "fit_time": round(sum(c.fit_time for _, c in members), 3),
            "params": {f"{c.family}#{c.trial}": round(w, 4) for w, c in members},
        }
    )
    if tu.to_loss(setup.metric, score) >= best.loss:
        return [(1.0, best)], best.score
    _log(
        "ensemble: "
        + ", ".join(f"{c.family}#{c.trial} x{w:.2f}" for w, c in members)
        + f" -> cv_{setup.metric}={score:.5g}"
    )
    return members, score


def evaluate(bundle: dict[str, Any], members: list, d: Prepared, notices: list[str]) -> dict[str, Any]:
    """eval_* metrics on the validation rows (or, without any, on the out-of-fold predictions)."""
    from engine import tabular_utils as tu

    if d.valid_df is not None and len(d.valid_df):
        y_valid, ok = tu.encode_targets(d.valid_df[d.targets], d.setup)
        if (~ok).any():
            _log(
                f"{int((~ok).sum())} validation row(s) have no target or a class unseen in training; not scored.",
                notices,
            )
        X_valid = d.valid_df.reindex(columns=bundle["feature_columns"])[ok]
        scores, y_true, source = tu.bundle_scores(bundle, X_valid), y_valid[ok], "validation"
    else:
        scores, y_true, source = sum(w * c.oof for w, c in members), d.y, "cross-validation"
        _log("No validation rows: eval_* metrics are the out-of-fold cross-validation scores.", notices)
    if len(y_true) == 0:
        return {}
    values = tu.all_metrics(y_true, scores, d.setup.problem)
    out: dict[str, Any] = {f"eval_{k}": v for k, v in values.items()}
    out["eval_loss"] = values["rmse" if d.setup.problem == "regression" else "logloss"]
    out.update({"eval_rows": len(y_true), "eval_source": source})
    return out


def importance_for(bundle: dict[str, Any], d: Prepared, params: Params, budget_s: float) -> dict[str, float]:
    """Permutation importance on the validation rows (or the training rows when there are few)."""
    from engine import tabular_utils as tu

    X_eval, y_eval = d.X, d.y
    if d.valid_df is not None and len(d.valid_df) >= 20:
        y_valid, ok = tu.encode_targets(d.valid_df[d.targets], d.setup)
        X_eval, y_eval = d.valid_df.reindex(columns=bundle["feature_columns"])[ok], y_valid[ok]
    return tu.permutation_importance(bundle, X_eval, y_eval, params.seed, budget_s)


def leaderboard_rows(search: Any) -> list[dict[str, Any]]:
    from engine import tabular_utils as tu

    metric = search.setup.metric
    rows = sorted(search.leaderboard, key=lambda r: tu.to_loss(metric, r["cv_score"]))
    return [{**r, "params": json.dumps(r["params"], default=str)} for r in rows]


def save(
    model_dir: Path,
    bundle: dict[str, Any],
    search: Any,
    importance: dict[str, float],
    metrics: dict[str, Any],
    notices: list[str],
) -> None:
    """model.joblib (the whole predictor), leaderboard.csv/.json, feature_importance.csv, tabular.json."""
    import joblib
    import pandas as pd

    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, model_dir / BUNDLE, compress=3)
    rows = leaderboard_rows(search)
    pd.DataFrame(rows).to_csv(model_dir / "leaderboard.csv", index=False)
    (model_dir / "leaderboard.json").write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    pd.DataFrame({"feature": list(importance), "importance": list(importance.values())}).to_csv(
        model_dir / "feature_importance.csv", index=False
    )
    summary = {
        "setup": bundle["setup"],
        "feature_types": bundle["spec"]["columns"],
        "id_column": bundle["id_column"],
        "members": [{"model": m["family"], "weight": m["weight"], "params": m["params"]} for m in bundle["members"]],
        "metrics": {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))},
        "notices": notices,
    }
    (model_dir / "tabular.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")


# --- prediction -----------------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """A row dict -> {prediction, probabilities}; a list of rows -> a list of those;
    a CSV/table path -> {output_csv, rows, preview} with one prediction (and class probabilities) per row."""
    import joblib
    import pandas as pd

    from engine import tabular_utils as tu

    bundle = joblib.load(Path(model_dir) / BUNDLE)
    if isinstance(inputs, str) and inputs.strip()[:1] in ("{", "["):
        inputs = json.loads(inputs)
    if isinstance(inputs, dict):
        return predict_rows(bundle, pd.DataFrame([inputs]))[0]
    if isinstance(inputs, list):
        if not all(isinstance(r, dict) for r in inputs):
            raise UserError('Give rows as objects, e.g. [{"age": 41, "city": "Oslo"}].')
        return predict_rows(bundle, pd.DataFrame(inputs))
    if isinstance(inputs, pd.DataFrame):
        return predict_rows(bundle, inputs)
    if isinstance(inputs, (str, Path)) and Path(inputs).is_file():
        raw = data.read_table(inputs)
        rows = predict_rows(bundle, raw)
        table = tu.predictions_frame(bundle, raw, rows)
        out = Path(tempfile.mkdtemp(prefix="trainpad-predictions-")) / f"{Path(inputs).stem}_predictions.csv"
        table.to_csv(out, index=False)
        return {
            "output_csv": str(out),
            "rows": len(table),
            "preview": json.loads(table.head(20).to_json(orient="records")),
        }
    raise UserError("Tabular prediction takes a row ({column: value}), a list of rows, or the path of a CSV file.")


def predict_rows(bundle: dict[str, Any], raw: Any) -> list[dict[str, Any]]:
    from engine import tabular_utils as tu

    if len(raw) == 0:
        return []
    known = [c for c in bundle["feature_columns"] if c in raw.columns]
    if not known:
        raise UserError(
            f"None of the model's columns are in the input. Expected columns: {', '.join(bundle['feature_columns'])}."
        )
    X = raw.reindex(columns=bundle["feature_columns"])
    return tu.decode(bundle, tu.bundle_scores(bundle, X))


TASK = Task(
    name="tabular",
    title="Tabular (classification & regression)",
    family="Tabular",
    description="Predict one or more columns of a table: binary, multi-class or multi-label classes, or numbers. "
    "Searches xgboost, forests, gradient boosting, linear, SVM and k-NN models within a time budget and ensembles the best.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    key_metric="eval_loss",
    greater_is_better=False,
    model_note="No pretrained model: the model family is chosen with `model` (auto searches several). "
    "eval_loss is the log loss (classification) or RMSE (regression) on the validation rows.",
    stratify_role="target",
    check_data=check_data,
    predict_input="table",
    from_autotrain=from_autotrain,
    library="sklearn",
    uses_torch=False,
    autotrain_names=[
        "tabular:classification",
        "tabular:regression",
        "tabular-classification",
        "tabular-regression",
        "tabular_classification",
        "tabular_regression",
    ],
)
