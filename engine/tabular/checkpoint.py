"""Resume: after every search, its trials and the kept candidates' out-of-fold scores are saved as
``checkpoints/checkpoint-<trials>/search.joblib``; a resumed run restores them, checked against its data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import joblib

from engine import runfiles as rf
from engine.errors import UserError
from engine.tabular import log
from engine.tabular.search import Candidate, Search
from engine.tabular.targets import Setup

SEARCH_STATE = "search.joblib"


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
    if (state.get("problem"), state.get("metric"), state.get("rows")) != (setup.problem, setup.metric, rows):
        raise UserError(
            f"Cannot resume: the earlier search was a {state.get('problem')} problem optimising "
            f"{state.get('metric')} on {state.get('rows')} training rows; now it is {setup.problem} / "
            f"{setup.metric} on {rows} rows (data or parameters changed). Start a new run instead (Duplicate)."
        )
    kept = [Candidate(**c, models=[]) for c in state["kept"]]
    return Search(setup, leaderboard=list(state["leaderboard"]), kept=kept, errors=dict(state["errors"]))


def save_checkpoint(run_dir: Path, search: Search) -> Path:
    """``checkpoints/checkpoint-<trials>/search.joblib``: what Resume needs to continue the search."""
    folder = Path(run_dir) / rf.CHECKPOINTS / f"checkpoint-{len(search.leaderboard)}"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(search_state(search), folder / SEARCH_STATE, compress=3)
    for old in folder.parent.glob("checkpoint-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(folder: str, setup: Setup, rows: int) -> Search:
    """The search saved in ``folder`` by :func:`save_checkpoint`, checked against this run's data."""
    path = Path(folder) / SEARCH_STATE
    if not path.is_file():
        raise UserError(f"Cannot resume: `{path}` is missing (the earlier run saved no search state).")
    search = restore_search(joblib.load(path), setup, rows)
    log(
        f"Resuming a search of {len(search.leaderboard)} trials; best so far {search.best.family} {search.best.score:.5g}."
    )
    return search
