"""Column typing (what each raw column is used as) and the frame step every saved pipeline starts with.

Saved pipelines name :func:`prepare_frame` by module path: keep it here, with this name (older bundles name
``engine.tabular_utils.prepare_frame``, which re-exports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

KINDS = ["numeric", "categorical", "boolean", "datetime", "text", "drop"]
MISSING_TOKENS = {"", "?", "-", "--", "na", "n/a", "nan", "null", "none", "missing", "#n/a", "nil"}
TRUE_WORDS, FALSE_WORDS = {"true", "yes", "y", "t"}, {"false", "no", "n", "f"}
HASH_DIMS = 32
DATE_PARTS = ["year", "month", "day", "dayofweek", "hour"]

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
            out[col] = to_number(s)
        elif kind == "boolean":
            out[col] = to_bool(s)
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


def to_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    return pd.to_numeric(s.astype(str).str.strip().where(~missing_mask(s)), errors="coerce").astype(float)


def to_bool(s: pd.Series) -> pd.Series:
    words = s.astype(str).str.strip().str.lower()
    out = pd.Series(np.nan, index=s.index)
    out[words.isin(TRUE_WORDS | {"1", "1.0"})] = 1.0
    out[words.isin(FALSE_WORDS | {"0", "0.0"})] = 0.0
    return out


def category_key(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _to_category(s: pd.Series) -> pd.Series:
    return s.where(~missing_mask(s)).map(category_key, na_action="ignore").astype(object)


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
