"""The predictor's members: a greedy weighted ensemble over out-of-fold scores (kept when it beats the best
single candidate), refit on all training rows when time allows."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from engine.runfiles import stop_requested
from engine.tabular import log
from engine.tabular.families import fit_pipeline
from engine.tabular.metrics import compute_metric, to_loss
from engine.tabular.prepare import Prepared
from engine.tabular.search import Candidate, Search
from engine.tabular.targets import Setup

Members = list[tuple[float, Candidate]]  # (weight, candidate)


def final_members(search: Search, d: Prepared, params: Any, started: float) -> tuple[Members, float]:
    """The members to save and their CV score: the ensemble or the best candidate, refit on all rows when
    ``refit_full`` is on and there is time (always for members restored from a checkpoint: they have no models)."""
    members, cv_score = choose_members(search, d.y, d.setup, params.ensemble)
    restored = any(not c.models for _, c in members)
    if restored or (params.refit_full and not stop_requested()):
        deadline = math.inf if restored else started + params.time_limit * 0.88
        members = refit(members, d, params.seed, deadline)
    return members, cv_score


def choose_members(search: Search, y: np.ndarray, setup: Setup, ensemble: bool) -> tuple[Members, float]:
    """The weighted ensemble when it beats the best single candidate on CV (it joins the leaderboard either way),
    else the best candidate."""
    best = search.best
    if not ensemble or len(search.kept) < 2:
        return [(1.0, best)], best.score
    weights, score = greedy_ensemble(search.kept, y, setup)
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
    if to_loss(setup.metric, score) >= best.loss:
        return [(1.0, best)], best.score
    log(
        "ensemble: "
        + ", ".join(f"{c.family}#{c.trial} x{w:.2f}" for w, c in members)
        + f" -> cv_{setup.metric}={score:.5g}"
    )
    return members, score


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


def refit(members: Members, d: Prepared, seed: int, deadline: float) -> Members:
    """Each member refit once on all training rows (replacing its fold models) when that fits before ``deadline``
    (estimated from its fold fits); else the members as they are, predicting with their fold models."""
    estimate = sum(1.3 * c.fit_time / max(1, len(c.models) - 1) for _, c in members)  # a fold fit x k/(k-1)
    if time.time() + estimate > deadline:
        log("No time left to refit on all rows: predictions average the cross-validation fold models.")
        return members
    out = [
        (w, replace(c, models=[fit_pipeline(c.family, d.setup, d.spec, c.params, seed, d.X, d.y)])) for w, c in members
    ]
    log("Refit the chosen models on all training rows.")
    return out
