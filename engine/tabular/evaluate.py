"""How good the predictor is: eval_* metrics on the validation rows (or out of fold), permutation feature
importance within the time left, and the run's summary metrics and ``eval`` event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.runfiles import stop_requested, write_event
from engine.tabular import log
from engine.tabular.bundle import bundle_scores, leaderboard_rows
from engine.tabular.ensemble import Members
from engine.tabular.metrics import all_metrics, compute_metric, to_loss
from engine.tabular.prepare import Prepared
from engine.tabular.search import Search
from engine.tabular.targets import Setup, encode_targets


def evaluate(bundle: dict[str, Any], members: Members, d: Prepared, notices: list[str]) -> dict[str, Any]:
    """eval_* metrics on the validation rows (or, without any, on the out-of-fold predictions)."""
    if d.valid_mask is not None and d.valid_mask.any():
        oof = sum(w * c.oof for w, c in members)
        scores, y_true, source = oof[d.valid_mask], d.y[d.valid_mask], "validation rows, out of fold"
    elif d.valid_df is not None and len(d.valid_df):
        X_valid, y_true, unscored = _valid_rows(bundle, d)
        if unscored:
            log(f"{unscored} validation row(s) have no target or a class unseen in training; not scored.", notices)
        scores, source = bundle_scores(bundle, X_valid), "validation"
    else:
        scores, y_true, source = sum(w * c.oof for w, c in members), d.y, "cross-validation"
        log("No validation rows: eval_* metrics are the out-of-fold cross-validation scores.", notices)
    if len(y_true) == 0:
        return {}
    values = all_metrics(y_true, scores, d.setup.problem)
    out: dict[str, Any] = {f"eval_{k}": v for k, v in values.items()}
    out["eval_loss"] = values["rmse" if d.setup.problem == "regression" else "logloss"]
    out.update({"eval_rows": len(y_true), "eval_source": source})
    return out


def _valid_rows(bundle: dict[str, Any], d: Prepared) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The validation rows that can be scored (features, encoded targets) and how many cannot."""
    y_valid, ok = encode_targets(d.valid_df[d.targets], d.setup)
    return d.valid_df.reindex(columns=bundle["feature_columns"])[ok], y_valid[ok], int((~ok).sum())


def summary(search: Search, d: Prepared, cv_score: float, started: float) -> dict[str, Any]:
    """The run's metrics besides eval_*: the CV score of the saved members, the sub-task, the search."""
    return {
        f"cv_{d.setup.metric}": cv_score,
        "problem_type": d.setup.problem,
        "metric": d.setup.metric,
        "best_model": search.best.family,
        "n_trials": sum(r["model"] != "ensemble" for r in search.leaderboard),
        "train_rows": len(d.X),
        "search_seconds": round(time.time() - started, 2),
        "protocol": protocol(d),
    }


def protocol(d: Prepared) -> str:
    """How the rows were used, in words, for the model card."""
    if d.valid_mask is not None:
        n_valid = int(d.valid_mask.sum())
        return (
            f"Every labelled row trained the model: the {len(d.X) - n_valid} training rows and the {n_valid} "
            "validation rows went into one cross-validation (model search, ensemble weights), then the chosen models "
            "were refit on all of them. eval_* are the out-of-fold scores of the validation rows (each predicted by "
            "models that did not train on it; the model choice saw every out-of-fold score, so they are slightly "
            "optimistic); cv_* cover all rows. Judge the model on rows outside both files."
        )
    if d.valid_df is not None and len(d.valid_df):
        return (
            f"Cross-validation on the {len(d.X)} training rows chose and fitted the model; eval_* are scores on "
            f"the {len(d.valid_df)} held-out validation rows, which no model saw."
        )
    return f"Cross-validation on the {len(d.X)} training rows; eval_* are its out-of-fold scores."


def importance_for(bundle: dict[str, Any], d: Prepared, params: Any, started: float) -> dict[str, float]:
    """Permutation importance on the validation rows (or the training rows when there are few), in the time
    left until 97% of ``time_limit`` but at least 5% of it (the search stops at 85%, the refit at 88%); none when
    it is off or Stop was pressed."""
    if not params.feature_importance or stop_requested():
        return {}
    X_eval, y_eval = d.X, d.y
    if d.valid_df is not None and len(d.valid_df) >= 20:
        X_eval, y_eval, _ = _valid_rows(bundle, d)
    budget = started + params.time_limit * 0.97 - time.time()
    return permutation_importance(bundle, X_eval, y_eval, params.seed, max(1.0, params.time_limit * 0.05, budget))


def report(
    run_dir: Path, search: Search, metrics: dict[str, Any], importance: dict[str, float], notices: list[str]
) -> dict[str, Any]:
    """Write the final ``eval`` event; the metrics the worker saves (with the top of the leaderboard and of the
    feature importance, and the notices)."""
    scores = {k: v for k, v in metrics.items() if k.startswith(("eval_", "cv_")) and isinstance(v, float)}
    write_event(run_dir, {"type": "eval", "step": len(search.leaderboard), **scores})
    top = dict(list(importance.items())[:20])
    return {**metrics, "leaderboard": leaderboard_rows(search)[:20], "feature_importance": top, "notices": notices}


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
