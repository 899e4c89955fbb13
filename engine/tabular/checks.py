"""Pre-flight checks of the raw tables, in plain language. Check runs them before a run is queued, and
:func:`load_checked` runs them again when the run starts (the files may have changed in between)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from engine.data import cells, splits
from engine.data import tables as data
from engine.errors import UserError
from engine.tabular.columns import clean_cells, infer_kind, mixed_cells, numeric_share
from engine.tabular.targets import detect_problem, is_binary

MIN_ROWS = 10


def load_checked(params: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The raw train and validation tables (every column, not only the mapped roles); a :class:`UserError`
    listing every problem when they cannot be trained on."""
    raw, raw_valid = splits.load_raw(params)  # refuses a file whose header repeats a column name
    problems = table_problems(raw, raw_valid, params)
    if problems:
        raise UserError(problems)
    return raw, raw_valid


def resolve_roles(columns: list[str], params: Any) -> tuple[list[str], str | None, list[str]]:
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


def table_problems(df: pd.DataFrame, valid: pd.DataFrame | None, params: Any) -> list[str]:
    """Every reason the data cannot be trained on, in plain language (empty = fine)."""
    targets, id_col, problems = resolve_roles(list(df.columns), params)
    if problems:
        return problems
    features = [c for c in df.columns if c not in targets and c != id_col]
    if valid is not None:
        problems += _valid_problems(df, valid, targets, features, params)
    problems += _target_problems(df, targets, params)
    if id_col:
        dup = df.index[df[id_col].duplicated(keep=False)].tolist()
        if dup:
            problems.append(
                f"Id column `{id_col}` is not unique: {len(dup)} rows share an id, rows {cells.row_numbers(dup)}. "
                "Make the ids unique, or map no id column."
            )
    problems += _feature_problems(df, features, params)
    if not problems and all(_kind(df, c, params) == "drop" for c in features):
        problems.append(
            "No usable feature columns: every column besides the target and id is empty, dropped or an identifier."
        )
    if len(df) < MIN_ROWS:
        problems.append(
            f"Only {len(df)} rows: tabular training needs at least {MIN_ROWS} (and does well with hundreds)."
        )
    return problems


def _kind(df: pd.DataFrame, col: str, params: Any) -> str:
    """How column ``col`` is used: the feature_types override, else the detected kind."""
    return params.feature_types.get(col) or infer_kind(df[col])[0]


def _valid_problems(
    df: pd.DataFrame, valid: pd.DataFrame, targets: list[str], features: list[str], params: Any
) -> list[str]:
    """The validation table lacks a target, or a feature the model uses (it would see it as empty)."""
    missing = [t for t in targets if t not in valid.columns]
    if missing:
        return [f"Validation data lacks the target column(s) {', '.join(missing)}."]
    missing = [c for c in features if c not in valid.columns and _kind(df, c, params) != "drop"]
    if not missing:
        return []
    train_name, valid_name = _file_names(params)
    names = ", ".join(f"`{c}`" for c in missing)
    return [
        f"Validation {valid_name} lacks the feature column(s) {names} that the training {train_name} has: the "
        f"model would see them as empty. Add them to the validation data, or set feature_types "
        f"{{{missing[0]}: drop}} to leave a column out."
    ]


def _file_names(params: Any) -> tuple[str, str]:
    """How to name the training and validation data in a message: their file names, or the Hub splits."""
    if data.is_local(params.data_path):
        train, valid = data.resolve_files(params)
        return f"file `{train.name}`", f"file `{valid.name}`" if valid else "data"
    return f"split `{params.train_split or 'train'}`", f"split `{params.valid_split}`"


def _feature_problems(df: pd.DataFrame, features: list[str], params: Any) -> list[str]:
    """feature_types names columns that are not features; a numeric column holds some text."""
    problems = []
    unknown = [c for c in params.feature_types if c not in features]
    if unknown:
        problems.append(
            f"feature_types names column(s) {', '.join(unknown)} that are not features of the data. "
            f"Feature columns: {', '.join(features)}."
        )
    for col in features:
        if params.feature_types.get(col, "numeric") != "numeric":
            continue
        bad = mixed_cells(df[col])
        if len(bad):
            examples = ", ".join(repr(v) for v in bad.unique()[:3])
            problems.append(
                f"Column `{col}` mixes numbers and text: {examples} in row(s) {cells.row_numbers(bad.index.tolist())}. "
                f"Fix or empty those cells, or set feature_types {{{col}: categorical}} to treat it as categories."
            )
    return problems


def _target_problems(df: pd.DataFrame, targets: list[str], params: Any) -> list[str]:
    """Empty targets, too few classes or values, a sub-task that does not fit the target columns."""
    problems = [
        f"Target column `{t}` is empty in every row. Choose the column that holds the values to predict."
        for t in targets
        if len(clean_cells(df[t])) == 0
    ]
    if problems:
        return problems
    problem = detect_problem(df[targets], params.problem_type)
    if len(targets) > 1 and problem in ("binary", "multiclass"):
        return [
            f"problem_type {problem} takes one target column, got {len(targets)}. Use multilabel for several 0/1 "
            "columns, regression for several number columns."
        ]
    problems = [p for t in targets if (p := _target_column_problem(df[t], t, problem, len(targets)))]
    if problem == "multilabel" and len(targets) > 1:
        flat = [c for c in targets if clean_cells(df[c]).nunique() < 2]
        problems += [
            f"Multi-label column `{c}` has the same value in every row: remove it from target_columns." for c in flat
        ]
    return problems


def _target_column_problem(s: pd.Series, t: str, problem: str, n_targets: int) -> str:
    """What is wrong with target column ``t`` (values ``s``) for sub-task ``problem`` ('' = nothing)."""
    cells = clean_cells(s)
    if problem == "regression":
        _, bad = numeric_share(s)
        if len(bad):
            return (
                f"Target column `{t}` must hold numbers for regression, but row(s) {cells.row_numbers(bad.index.tolist())} "
                f"hold {', '.join(repr(v) for v in bad.unique()[:3])}. Fix those cells, or set problem_type to a classification."
            )
        if cells.nunique() < 2:
            return (
                f"Target column `{t}` has the same value ({cells.iloc[0]!r}) in every row: there is nothing to learn."
            )
        return ""
    if problem == "multilabel" and n_targets > 1 and not is_binary(s):
        return f"Multi-label target column `{t}` must hold 0/1 (or yes/no) values; found {', '.join(repr(v) for v in cells.unique()[:3])}."
    if problem != "multilabel" and cells.nunique() < 2:
        return (
            f"Target column `{t}` has a single class ({cells.iloc[0]!r}) in all {len(cells)} labelled rows: "
            "classification needs at least two. Add rows of other classes."
        )
    if problem == "binary" and cells.nunique() > 2:
        return (
            f"problem_type is binary but target column `{t}` has {cells.nunique()} classes. Use multiclass (or auto)."
        )
    return ""
