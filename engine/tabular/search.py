"""The search: k-fold cross-validation of one configuration (a candidate), the defaults of every family
first, then optuna trials over the best families, inside a time budget and until Stop."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from engine.errors import UserError
from engine.runfiles import stop_requested, write_event
from engine.tabular import log
from engine.tabular.families import default_params, fit_pipeline, portfolio, predict_scores, suggest_params
from engine.tabular.metrics import apply_temperature, compute_metric, fit_temperature, to_loss
from engine.tabular.prepare import Prepared
from engine.tabular.targets import Setup

# cheap first
AUTO_ORDER = ["linear", "svm", "hist_gradient_boosting", "xgboost", "random_forest", "extra_trees", "knn"]


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
    t0 = time.time()
    oof = np.zeros((len(y),) if setup.problem == "binary" else (len(y), setup.n_out))
    models = []
    for i, (tr, te) in enumerate(folds):
        if i and (time.time() > deadline or stop_requested()):
            return None
        model = fit_pipeline(family, setup, spec, hp, seed, X.iloc[tr], y[tr])
        with threadpool_limits(setup.threads):
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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search, splits = resume or Search(setup), make_folds(y, setup, folds, seed)
    n0 = len(search.leaderboard)

    def attempt(family: str, hp: dict[str, Any]) -> Candidate | None:
        try:
            end = deadline if search.kept else math.inf  # the first model always finishes (Stop still ends it)
            cand = cross_validate(family, hp, len(search.leaderboard) + 1, X, y, setup, spec, splits, seed, end)
        except Exception as e:  # noqa: BLE001 - one family failing must not end the search
            search.errors[family] = f"{type(e).__name__}: {e}".splitlines()[0]
            log(f"{family} failed: {search.errors[family]}")
            return None
        if cand is not None:
            search.add(cand)
            on_trial(search, cand)
        return cand

    def more() -> bool:
        trials = len(search.leaderboard) - n0
        return time.time() < deadline and not stop_requested() and (not max_trials or trials < max_trials)

    tried = {r["model"] for r in search.leaderboard}
    for family in families:
        if family in tried:
            continue
        if search.leaderboard and not more():
            break
        attempt(family, default_params(family, setup.problem))
    _tune(search, families, attempt, more, seed + n0)
    return search


def _tune(search: Search, families: list[str], attempt: Callable, more: Callable[[], bool], seed: int) -> None:
    """Optuna trials over the families worth tuning, one family after the other, while ``more()``."""
    import optuna

    ranked = _rank_families(search, families)
    studies = {f: _study(search, f, seed + i) for i, f in enumerate(ranked)}
    turn = 0
    while ranked and more():
        family = ranked[turn % len(ranked)]
        turn += 1
        trial = studies[family].ask()
        cand = attempt(family, suggest_params(family, search.setup.problem, trial))
        if cand is None:
            studies[family].tell(trial, state=optuna.trial.TrialState.FAIL)
            if family in search.errors:
                ranked.remove(family)
            continue
        studies[family].tell(trial, cand.loss)


def _study(search: Search, family: str, seed: int) -> Any:
    """A TPE study for ``family``: told about the family's earlier trials, its portfolio queued."""
    import optuna

    problem, metric = search.setup.problem, search.setup.metric
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))
    done = [r for r in search.leaderboard if r["model"] == family]
    for r in done:
        _warm_start(study, family, problem, r["params"], to_loss(metric, r["cv_score"]))
    for config in portfolio(family, problem):
        if not any(r["params"] == config for r in done):
            study.enqueue_trial(config)
    return study


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


def search_models(d: Prepared, params: Any, run_dir: Path, deadline: float, resume: Search | None) -> Search:
    """k-fold search over the model families (or the one chosen), one ``trial`` event per result."""

    def on_trial(search: Search, cand: Candidate) -> None:
        n, best = len(search.leaderboard), search.best
        event = {"type": "trial", "step": n, "score": cand.score, "best_score": best.score, "model": cand.family}
        event["fit_time"] = round(cand.fit_time, 3)
        if params.num_trials:
            event["max_steps"] = params.num_trials
        write_event(run_dir, event)
        log(
            f"trial {n}: {cand.family} cv_{d.setup.metric}={cand.score:.5g} ({cand.fit_time:.1f}s); "
            f"best {best.family} {best.score:.5g}"
        )

    families = AUTO_ORDER if params.model == "auto" else [params.model]
    search = run_search(
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
