"""From the user's files to what the search needs: load and check, drop unlabelled rows, split, detect the
sub-task, type the feature columns, encode the targets, choose the threads per fit."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.data import cells, splits
from engine.errors import UserError
from engine.tabular import log
from engine.tabular.checks import load_checked, resolve_roles
from engine.tabular.columns import feature_spec, missing_mask
from engine.tabular.targets import Setup, detect_problem, encode_targets, label_key, make_setup, metric_choices


@dataclass
class Prepared:
    """The training table split, typed and encoded: everything the search needs."""

    X: pd.DataFrame
    y: np.ndarray
    valid_df: pd.DataFrame | None
    targets: list[str]
    id_col: str | None
    setup: Setup
    spec: dict[str, Any]
    valid_mask: np.ndarray | None = None  # rows of X that came from the user's validation data (joined the CV)


def prepare(params: Any, notices: list[str]) -> Prepared:
    """Load, check, split, detect the sub-task, type the feature columns and encode the targets."""
    raw, raw_valid = load_checked(params)
    targets, id_col, _ = resolve_roles(list(raw.columns), params)
    train_df, valid_df = split_rows(raw, raw_valid, targets, params, notices)
    if raw_valid is not None and params.validation_rows == "train":
        train_df, valid_df = join_validation(train_df, valid_df, targets), None
    problem = detect_problem(train_df[targets], params.problem_type)
    if problem in ("binary", "multiclass"):
        train_df = drop_rare_classes(train_df, targets[0], notices)
    valid_mask = train_df.pop(FROM_VALID).to_numpy(bool) if FROM_VALID in train_df else None
    features = [c for c in raw.columns if c not in targets and c != id_col]
    threads = params.threads or auto_threads(len(train_df), len(features))
    setup = make_setup(train_df[targets], problem, params.metric, params.label_separator, threads, params.calibrate)
    if setup.metric not in metric_choices(problem):
        choices = ", ".join(metric_choices(problem))
        raise UserError(f"metric {setup.metric} does not fit a {problem} problem. Use one of: {choices} (or auto).")
    y, _ = encode_targets(train_df[targets], setup)
    X = train_df[features]
    spec = feature_spec(X, params.feature_types, params.text_columns, notices)
    for n in notices:
        log(f"notice: {n}")
    log(
        f"{problem} problem, {len(X)} training rows, {0 if valid_df is None else len(valid_df)} validation rows, "
        f"{sum(k != 'drop' for k in spec['columns'].values())} features; optimising {setup.metric}."
    )
    if valid_mask is not None:
        log(f"{int(valid_mask.sum())} validation rows joined the cross-validation (validation_rows: train).")
    return Prepared(X, y, valid_df, targets, id_col, setup, spec, valid_mask)


FROM_VALID = "__trainpad_from_validation__"


def join_validation(train_df: pd.DataFrame, valid_df: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """The training rows and the labelled validation rows in one table, the latter marked in ``FROM_VALID``."""
    labelled = ~missing_mask(valid_df[targets[0]])
    for t in targets[1:]:
        labelled &= ~missing_mask(valid_df[t])
    both = pd.concat(
        [train_df.assign(**{FROM_VALID: False}), valid_df[labelled].assign(**{FROM_VALID: True})], ignore_index=True
    )
    return both


def auto_threads(n_rows: int, n_cols: int) -> int:
    """One thread per fit for small and medium data (threads spin-wait and lose on busy or small CPUs)."""
    return 1 if n_rows * n_cols < 2_000_000 else max(1, min(os.cpu_count() or 1, 8))


def split_rows(
    raw: pd.DataFrame, raw_valid: pd.DataFrame | None, targets: list[str], params: Any, notices: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Drop rows without a target, cap rows, hold out validation rows (stratified for one class column)."""
    unlabeled = missing_mask(raw[targets[0]])
    for t in targets[1:]:
        unlabeled |= missing_mask(raw[t])
    if unlabeled.any():
        rows = cells.row_numbers(raw.index[unlabeled].tolist())
        log(f"{int(unlabeled.sum())} row(s) have no target value and are left out: rows {rows}.", notices)
    df = raw[~unlabeled]
    if params.max_rows and params.max_rows < len(df):
        df = df.sample(n=params.max_rows, random_state=params.seed)
    if raw_valid is not None:
        return df.reset_index(drop=True), raw_valid.reset_index(drop=True)
    problem = detect_problem(df[targets], params.problem_type)
    strat = targets[0] if problem in ("binary", "multiclass") else None
    return splits.split_train_valid(df, params.valid_fraction, params.seed, strat)


def drop_rare_classes(df: pd.DataFrame, target: str, notices: list[str]) -> pd.DataFrame:
    """Classes with a single training row cannot be cross-validated: leave them out, with a notice."""
    keys = df[target].map(label_key)
    counts = keys.value_counts()
    rare = counts[counts < 2].index.tolist()
    if rare:
        shown = ", ".join(repr(r) for r in rare[:5])
        log(f"Class(es) {shown} of `{target}` have a single training row and are left out.", notices)
        df = df[~keys.isin(rare)].reset_index(drop=True)
    return df
