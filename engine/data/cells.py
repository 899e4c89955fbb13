"""Reading one cell at a time: missing values, lists in a cell, label names, row numbers as the user sees them,
and labels seen in validation but not in training."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from engine.errors import UserError


def is_missing(value: Any) -> bool:
    """True for None, NaN/NA/NaT (pandas gives NaN for empty CSV cells) and whitespace-only text; a list or array
    cell is never missing (it may be empty on purpose)."""
    if isinstance(value, str):
        return not value.strip()
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict)) or getattr(value, "ndim", 0) > 0:
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def parse_list(value: Any, row: int, column: str, split: bool = True) -> list[Any]:
    """A cell holding a list: a real list/array, JSON or Python list text, or (``split``) words joined by spaces.

    Raises :class:`UserError` naming the row and column when the cell is empty or unreadable.
    """
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if is_missing(value):
        raise UserError(f"Row {row}, column `{column}`: empty. Fill it or remove the row.")
    text = str(value).strip()
    if text.startswith("["):
        parsed = _literal_list(text)
        if parsed is None:
            raise UserError(
                f"Row {row}, column `{column}`: `{_short(text)}` looks like a list but could not be read. "
                'Write it as JSON, e.g. ["a", "b"].'
            )
        return parsed
    if split:
        return text.split()
    return [value]


def _literal_list(text: str) -> list[Any] | None:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, (list, tuple)):
            return list(value)
    return None


def is_list_cell(value: Any) -> bool:
    """True when a cell holds a list (or a list written as JSON/Python text)."""
    if isinstance(value, (list, tuple)) or (
        hasattr(value, "tolist") and not isinstance(value, (str, int, float, bool))
    ):
        return True
    return isinstance(value, str) and value.strip().startswith("[") and _literal_list(value.strip()) is not None


def label_name(value: Any) -> str:
    """One label as a stable string, so that equal numbers are one class: ``1``, ``1.0``, ``"1"``, ``"1.00"``,
    ``"+1"`` and ``"1e0"`` are all ``1``; ``0.50`` and ``"0.5"`` are ``0.5``; bools become ``True``/``False``.

    Text with a leading zero (``"01"``, ``"007"``) is kept as written: it only survives when the column holds
    text, where it is a code (a zip or product code), not a number, so ``"01"`` and ``"1"`` stay two classes.
    """
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text) and not _CODE.match(text):
            return str(int(text))
        if not _NUMBER.fullmatch(text) or _CODE.match(text):
            return text
        value = float(text)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def is_number(text: str) -> bool:
    """True when a label string is a plain number (as :func:`label_name` writes numbers)."""
    return bool(_NUMBER.fullmatch(text))


_INTEGER = re.compile(r"[+-]?\d+")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


_CODE = re.compile(r"[+-]?0\d")  # a leading zero before a digit: "01", "007"


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def parse_rows(values: Iterable[Any], parse: Callable[[Any, int], Any], empty: Any) -> tuple[list[Any], list[str]]:
    """``parse(value, row)`` for every row (1-based row numbers) and the problems its UserErrors name;
    a row that fails gets ``empty``, so the result still lines up with the rows."""
    rows, problems = [], []
    for i, value in enumerate(values):
        try:
            rows.append(parse(value, i + 1))
        except UserError as e:
            rows.append(empty)
            problems.extend(e.problems)
    return rows, problems


def label_maps(labels: Iterable[str]) -> tuple[dict[int, str], dict[str, int]]:
    """``id2label`` and ``label2id`` for the label set, in a stable order (numbers numerically, then text)."""

    def key(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), name)
        except ValueError:
            return (1, 0.0, name.lower())

    names = sorted(set(labels), key=key)
    return dict(enumerate(names)), {n: i for i, n in enumerate(names)}


def unseen_labels(known: Iterable[str], rows: Iterable[Iterable[str]]) -> tuple[list[str], list[int]]:
    """Labels absent from ``known`` and the 0-based indexes of the rows holding them."""
    known = set(known)
    missing: set[str] = set()
    where = []
    for i, labels in enumerate(rows):
        bad = [x for x in labels if x not in known]
        if bad:
            missing.update(bad)
            where.append(i)
    return sorted(missing), where


def unseen_problem(known: Iterable[str], rows: Iterable[Iterable[str]], kind: str = "label") -> list[str]:
    """The validation rows whose labels (tags) never occur in the training data, as one problem (or none)."""
    from engine.data.cells import row_numbers

    unseen, where = unseen_labels(known, rows)
    if not unseen:
        return []
    return [
        f"Validation data has {kind}(s) {', '.join(map(repr, unseen))} that never occur in the training data "
        f"(row(s) {row_numbers(where)}). Add training examples for them, or remove those rows."
    ]


def warn_unseen(known: Iterable[str], rows: Iterable[Iterable[str]], kind: str, effect: str) -> list[int]:
    """Say in the log which validation labels (tags) the training split lacks (a random split can do that);
    return the 0-based indexes of the rows holding them."""
    unseen, where = unseen_labels(known, rows)
    if unseen:
        print(
            f"[trainpad] warning: validation {kind}(s) {', '.join(map(repr, unseen))} never occur in the training "
            f"split; {len(where)} validation row(s) {effect}.",
            flush=True,
        )
    return where


def _rows(index: list[int], limit: int = 8) -> str:
    """Row numbers as the user sees them in a spreadsheet (1 = first data row)."""
    shown = ", ".join(str(i + 1) for i in index[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


row_numbers = _rows
