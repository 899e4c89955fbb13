"""A run's data: its sources read (files, folders, Hub), columns mapped to the task's roles, split into train and
validation; and the data check Check and Start run before launch."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from engine import settings
from engine.data import tables
from engine.data.cells import _rows
from engine.errors import Problem, UserError


def load_raw(params: Any, nrows: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Train and (if given) validation tables exactly as in the user's data."""
    if not params.data_path:
        raise UserError("No training data given. Set `data_path` to a file, a folder, or a Hub dataset id.")
    if not tables.is_local(params.data_path):
        return _load_hub(params, nrows)
    from engine.data.audio import audio_splits
    from engine.data.images import image_splits

    if (found := audio_splits(params)) is not None:
        return found

    if (found := image_splits(params)) is not None:
        return found
    train, valid = tables.resolve_files(params)
    return tables.read_table(train, nrows), (tables.read_table(valid, nrows) if valid else None)


def _load_hub(params: Any, nrows: int | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    import datasets  # heavy: only in workers / CLI

    from engine.data.images import hub_table

    def split(name: str) -> pd.DataFrame:
        s = f"{name}[:{nrows}]" if nrows else name
        try:
            ds = datasets.load_dataset(params.data_path, params.data_config or None, split=s)
        except Exception as e:
            raise UserError(f"Could not load Hub dataset `{params.data_path}` split `{name}`: {e}") from None
        return hub_table(ds)  # class ids (ClassLabel) as class names

    return split(params.train_split or "train"), (split(params.valid_split) if params.valid_split else None)


def resolve_mapping(task: Any, columns: list[str], mapping: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map each role of ``task`` to a column: explicit mapping first, then same-name match.

    Returns the mapping found and the problems (unknown roles, missing columns, missing required roles).
    """
    roles = {c.role: c for c in task.columns}
    found: dict[str, str] = {}
    problems = []
    for role, col in mapping.items():
        if role not in roles:
            problems.append(
                Problem(
                    f"column_mapping names an unknown role `{role}`. Roles for {task.name}: {', '.join(roles)}.",
                    field="column_mapping",
                )
            )
        elif col and col not in columns:
            problems.append(
                Problem(
                    f"Column `{col}` (mapped to role `{role}`) is not in the data. Columns found: {', '.join(columns)}.",
                    role=role,
                )
            )
        elif col:
            found[role] = col
    lower = {c.lower(): c for c in columns}
    for role, spec in roles.items():
        if role in found or role in mapping:
            continue
        taken = set(found.values())
        name = next((n for n in (role, *spec.aliases) if n.lower() in lower and lower[n.lower()] not in taken), None)
        if name:
            found[role] = lower[name.lower()]
    for role, col in roles.items():
        if col.required and role not in found and role not in mapping:
            problems.append(
                Problem(
                    f"No column for `{role}` ({col.help}). Columns found: {', '.join(columns)}. "
                    f"Map one with column_mapping, e.g. {{{role}: {columns[0] if columns else 'my_column'}}}.",
                    role=role,
                )
            )
    return found, problems


def apply_mapping(df: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Keep only the mapped columns, renamed to their roles."""
    return df[[mapping[r] for r in mapping]].set_axis(list(mapping), axis=1)


def split_train_valid(
    df: pd.DataFrame, fraction: float, seed: int, stratify: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Hold out ``fraction`` of the rows for validation (stratified on ``stratify`` when possible)."""
    if fraction <= 0 or len(df) < 4:
        return df.reset_index(drop=True), None
    n_valid = max(1, int(round(len(df) * fraction)))
    strat = None
    if stratify and stratify in df:
        labels = df[stratify].astype(str)
        counts = labels.value_counts()
        if counts.min() >= 2 and n_valid >= len(counts):
            strat = labels
    from sklearn.model_selection import train_test_split

    train, valid = train_test_split(df, test_size=n_valid, random_state=seed, shuffle=True, stratify=strat)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def load_splits(task: Any, params: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Train/validation tables with columns renamed to the task's roles (used by workers)."""
    raw_train, raw_valid = load_raw(params)
    mapping, problems = resolve_mapping(task, list(raw_train.columns), params.column_mapping)
    if problems:
        raise UserError(problems)
    train = apply_mapping(raw_train, mapping)
    if params.max_rows:
        train = (
            train.sample(n=min(params.max_rows, len(train)), random_state=params.seed)
            if params.max_rows < len(train)
            else train
        )
    if raw_valid is not None:
        return train.reset_index(drop=True), apply_mapping(raw_valid, mapping).reset_index(drop=True)
    return split_train_valid(train, params.valid_fraction, params.seed, task.stratify_role)


_CHECKS = threading.BoundedSemaphore(settings.integer("TRAINPAD_CHECKS_AT_ONCE"))


def check_data(task: Any, params: Any) -> list[str]:
    """Pre-flight data checks in plain language (empty list = fine). Reads local files only, each once, and of
    each file its first :func:`tables.check_rows` rows (:func:`check_note` says so); a few checks run at once, the
    others wait their turn."""
    with _CHECKS, tables.reading_once():
        return _check_data(task, params)


def check_note(params: Any) -> str:
    """A sentence for a data file longer than the check reads: "Checked the first N of ~M rows of `x.csv` …"."""
    if not params.data_path or not tables.is_local(params.data_path):
        return ""
    try:
        files = [f for f in tables.resolve_files(params) if f is not None and f.is_file()]
        counts = [(f, row_estimate(f)) for f in files if f.suffix.lower() in tables.EXTENSIONS]
    except (UserError, OSError):
        return ""
    n = tables.check_rows()
    parts = [f"the first {n:,} of ~{m:,} rows of `{f.name}`" for f, m in counts if m and m > n]
    if not parts:
        return ""
    return f"Checked {' and '.join(parts)}; the run trains on every row (the rest are read when it starts)."


def row_estimate(path: Path, head_bytes: int = 4 << 20) -> int | None:
    """About how many data rows a table file holds, without reading it whole: exact for Parquet, from the share of
    line ends in the first 4 MB for text files (exact when it is smaller); None for a JSON document."""
    kind = tables.EXTENSIONS.get(path.suffix.lower())
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if kind == "json" and not _is_json_lines(path):
        return None
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(head_bytes)
    lines = head.count(b"\n") + (0 if head.endswith(b"\n") else 1)
    rows = lines if len(head) >= size else round(size * head.count(b"\n") / max(1, len(head)))
    return max(0, rows - (1 if kind in ("csv", "tsv") else 0))


def _is_json_lines(path: Path) -> bool:
    """A .json file holding one object per line (``{...}`` then a line break then ``{``)."""
    with path.open("rb") as f:
        return re.search(rb"}[ \t\r]*\n\s*{", f.read(1 << 20)) is not None


def _check_data(task: Any, params: Any) -> list[str]:
    if not params.data_path:
        return [
            Problem(
                "No training data given. Upload a file, or set `data_path` to a file, a folder, or a Hub dataset id.",
                field="data_path",
            )
        ]
    if not tables.is_local(params.data_path):
        return []  # Hub datasets are checked by the worker when it loads them
    try:
        train, valid = load_raw(params, nrows=tables.check_rows())
    except UserError as e:
        return e.problems
    mapping, problems = resolve_mapping(task, list(train.columns), params.column_mapping)
    if valid is not None:
        missing = [c for c in mapping.values() if c not in valid.columns]
        if missing:
            problems.append(
                f"Validation data lacks column(s) {', '.join(missing)} that the training data has. "
                f"Validation columns: {', '.join(valid.columns)}."
            )
    for role, col in mapping.items():
        spec = next(c for c in task.columns if c.role == role)
        if spec.required:
            empty = train.index[train[col].isna()].tolist()
            if empty:
                problems.append(
                    Problem(
                        f"Column `{col}` ({role}) is empty in {len(empty)} row(s): {_rows(empty)}. "
                        "Fill or remove those rows.",
                        role=role,
                    )
                )
        if spec.kind == "number":
            problems += _non_numeric(train[col], col, role)
    if problems or task.check_data is None:
        return problems
    mapped_valid = (
        apply_mapping(valid, mapping)
        if valid is not None and not any(c not in valid.columns for c in mapping.values())
        else None
    )
    return task.check_data(apply_mapping(train, mapping), mapped_valid, params)


def _non_numeric(values: pd.Series, col: str, role: str) -> list[str]:
    """Rows whose value is present but not a number."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = values.index[parsed.isna() & values.notna()].tolist()
    if not bad:
        return []
    return [
        Problem(
            f"Column `{col}` ({role}) must hold numbers, but {len(bad)} row(s) do not: {_rows(bad)} "
            f"(e.g. {values[bad[0]]!r}). Fix or remove those rows.",
            role=role,
        )
    ]
