"""The playground's table input (tabular runs): one row pasted as CSV (header optional) or JSON, a row taken from
the run's training data, or a whole uploaded file predicted at once (capped in rows, with a CSV to download).
The model's columns come from ``model/tabular.json``; no pickle is read in the UI process.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine import runfiles as rf
from engine import settings
from engine.data import tables as data
from engine.errors import UserError

MAX_ROWS_ENV = "TRAINPAD_MAX_PREDICT_ROWS"
SHOWN_ROWS = 200  # predictions shown on the page; the download has them all


@dataclass(frozen=True)
class ModelColumns:
    features: list[str]  # what the model reads, in training order
    ignored: list[str]  # the target(s) and the id column: accepted in the input and left out


def model_columns(run_dir: str | Path) -> ModelColumns | None:
    """The columns a tabular run's model takes (from its ``tabular.json``); None when it has none."""
    summary = rf.read_json(Path(run_dir) / "model" / "tabular.json") or {}
    if not summary.get("feature_types"):
        return None
    ignored = [*(summary.get("setup") or {}).get("targets", []), summary.get("id_column")]
    return ModelColumns(list(summary["feature_types"]), [c for c in ignored if c])


def max_rows() -> int:
    """The most rows one uploaded file may have (``TRAINPAD_MAX_PREDICT_ROWS``, default 10,000)."""
    return max(1, settings.integer(MAX_ROWS_ENV))


def placeholder(columns: ModelColumns | None) -> str:
    if columns is None:
        return 'One row as JSON, e.g. {"age": 41, "city": "Oslo"}, or as CSV with a header line.'
    names = ",".join(columns.features)
    return (
        f"{names}\n(values on the line below; without the header line give all {len(columns.features)} in this order)"
    )


# --- one pasted row --------------------------------------------------------------------------


def parse_rows(text: str, columns: ModelColumns | None) -> list[dict[str, Any]]:
    """The rows in ``text``: a JSON object (or list of them), or CSV lines with an optional header line. Checked
    against the model's columns: a missing or unknown column is named."""
    text = (text or "").strip()
    if not text:
        raise UserError("Paste a row first (CSV or JSON), or press \u201cFill from data row\u201d.")
    rows = _json_rows(text) if text[0] in "{[" else _csv_rows(text, columns)
    if columns is not None:
        for row in rows:
            check_columns(list(row), columns, "The row")
    known = set(columns.features) if columns else None
    return [{k: v for k, v in row.items() if known is None or k in known} for row in rows]


def _json_rows(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"The row is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}).") from None
    rows = [value] if isinstance(value, dict) else value
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UserError('Give the row as a JSON object of column: value, e.g. {"age": 41, "city": "Oslo"}.')
    return rows


def _csv_rows(text: str, columns: ModelColumns | None) -> list[dict[str, Any]]:
    lines = [cells for cells in csv.reader(io.StringIO(text), skipinitialspace=True) if any(c.strip() for c in cells)]
    names = set(columns.features + columns.ignored) if columns else set()
    has_header = len(lines) > 1 and (not names or all(c.strip() in names for c in lines[0]))
    if has_header:
        header = [c.strip() for c in lines[0]]
        return [dict(zip(header, _values(cells, len(header)), strict=True)) for cells in lines[1:]]
    if columns is None:
        raise UserError("Add a header line with the column names above the values (or paste the row as JSON).")
    if len(lines) == 1 and all(c.strip() in names for c in lines[0]):
        raise UserError("That is only the header line: add a line with the values under it.")
    expected = len(columns.features)
    for cells in lines:
        if len(cells) != expected:
            raise UserError(
                f"The row has {len(cells)} values but the model takes {expected} columns, in this order: "
                f"{', '.join(columns.features)}. Add a header line to give fewer or in another order."
            )
    return [dict(zip(columns.features, _values(cells, expected), strict=True)) for cells in lines]


def _values(cells: list[str], width: int) -> list[Any]:
    """CSV cells as values (an empty cell is unknown), padded or checked to ``width``."""
    if len(cells) != width:
        raise UserError(f"A line has {len(cells)} values but the header names {width} columns.")
    return [c.strip() or None for c in cells]


def check_columns(given: list[str], columns: ModelColumns, what: str, extra_ok: bool = False) -> None:
    """UserError naming the model's columns that ``given`` lacks, and (unless ``extra_ok``) the ones it has that
    the model does not know (the target and id columns are always accepted)."""
    missing = [c for c in columns.features if c not in given]
    unknown = [] if extra_ok else [c for c in given if c not in columns.features and c not in columns.ignored]
    problems = []
    if missing:
        problems.append(f"lacks the column{'s' if len(missing) > 1 else ''} {_names(missing)}")
    if unknown:
        problems.append(f"has {_names(unknown)}, which the model does not know")
    if problems:
        raise UserError(
            f"{what} {' and '.join(problems)}. The model takes: {', '.join(columns.features)} "
            "(an empty value means unknown)."
        )


def _names(cols: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in cols)


# --- a row of the training data ----------------------------------------------------------------


def data_row_text(params: dict[str, Any], number: Any, columns: ModelColumns | None, label_columns: set[str]) -> str:
    """Row ``number`` (1 = the first data row) of the run's training file as a JSON object, the target(s) and id
    left out."""
    path = params.get("data_path") or ""
    if not path or not data.is_local(path) or not Path(path).is_file():
        raise UserError("This run's training data is not a local file here, so there is no row to fill from.")
    try:
        n = int(number)
    except (TypeError, ValueError):
        raise UserError(f"The data row must be a whole number, not {number!r}.") from None
    if n < 1:
        raise UserError(f"Data rows count from 1; {n} is not one.")
    frame = data.read_table(path, nrows=n)
    if len(frame) < n:
        raise UserError(f"The training data has only {len(frame)} rows; pick a row from 1 to {len(frame)}.")
    keep = columns.features if columns else [c for c in frame.columns if c not in label_columns]
    record = frame.iloc[[n - 1]].reindex(columns=keep)
    return json.dumps(json.loads(record.to_json(orient="records"))[0], ensure_ascii=False)


# --- an uploaded file ----------------------------------------------------------------------------


def check_upload(path: str | Path, columns: ModelColumns | None) -> int:
    """The row count of an uploaded table, refused when over ``max_rows()`` or lacking a model column."""
    name = Path(path).name
    limit = max_rows()
    frame = data.read_table(path, nrows=limit + 1)
    if len(frame) > limit:
        raise UserError(
            f"`{name}` has more than {limit:,} rows; this instance predicts at most {limit:,} rows at once "
            f"({MAX_ROWS_ENV}). Split the file."
        )
    if len(frame) == 0:
        raise UserError(f"`{name}` has no rows to predict.")
    if columns is not None:
        check_columns([str(c) for c in frame.columns], columns, f"`{name}`", extra_ok=True)
    return len(frame)


def keep_predictions(output: dict[str, Any], dest: Path) -> pd.DataFrame:
    """Move the prediction process's CSV to ``dest`` (a folder the studio serves) and read it back."""
    made = Path(output["output_csv"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(made), dest)
    if made.parent.name.startswith("trainpad-predictions-"):
        shutil.rmtree(made.parent, ignore_errors=True)
    return pd.read_csv(dest)


def batch_summary(table: pd.DataFrame, source: str) -> str:
    shown = f"the first {SHOWN_ROWS} are shown" if len(table) > SHOWN_ROWS else "all are shown"
    return f"{len(table):,} predictions for `{source}` ({shown}; the CSV below has every row)."
