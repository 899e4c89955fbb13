"""Reading user data into pandas, mapping columns to task roles, splitting, and pre-flight checks.

Only pandas is used for local files, so the checks run in the UI process before anything is
queued. Hub datasets are read with ``datasets`` (imported lazily, in workers or the CLI).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from engine import settings
from engine.errors import UserError

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
TRAIN_NAMES = ("train", "training")
VALID_NAMES = ("validation", "valid", "val", "dev", "eval", "test")


_ONCE = threading.local()


@contextmanager
def reading_once() -> Iterator[None]:
    """Within this block (the pre-launch check), each file is read once, and only its first :func:`check_rows`
    rows: a task's own checks and the data summary reuse what the generic checks read."""
    outer = getattr(_ONCE, "cache", None)
    _ONCE.cache = {} if outer is None else outer
    try:
        yield
    finally:
        _ONCE.cache = outer


def read_table(path: str | Path, nrows: int | None = None) -> pd.DataFrame:
    """Read one CSV/TSV/JSON/JSONL/Parquet file; plain-language errors for empty or broken files."""
    cache = getattr(_ONCE, "cache", None)
    if cache is None:
        return _read_table(path, nrows)
    p = Path(path)
    nrows = nrows or check_rows()
    key = (str(p.resolve()), nrows, p.stat().st_mtime_ns if p.exists() else 0)
    if key not in cache:
        cache[key] = _read_table(path, nrows)
    return cache[key].copy()


def _read_table(path: str | Path, nrows: int | None = None) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise UserError(f"Data file `{p}` does not exist. Check the path, or upload the file again.")
    kind = EXTENSIONS.get(p.suffix.lower())
    if kind is None:
        raise UserError(
            f"Data file `{p.name}` has an unsupported type `{p.suffix}`. Use one of: {', '.join(EXTENSIONS)}."
        )
    if p.stat().st_size == 0:
        raise UserError(f"Data file `{p.name}` is empty. Upload a file with a header row and at least one data row.")
    reader = {"csv": _read_csv, "tsv": _read_csv, "json": _read_json, "jsonl": _read_jsonl, "parquet": _read_parquet}[
        kind
    ]
    df = reader(p, nrows)
    if len(df) == 0:
        raise UserError(f"Data file `{p.name}` has a header but no data rows. Add at least one row.")
    df.columns = [str(c) for c in df.columns]
    return df


def _read_csv(p: Path, nrows: int | None) -> pd.DataFrame:
    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    _refuse_binary(p)
    _refuse_duplicate_header(p, sep)
    try:
        return pd.read_csv(p, sep=sep, nrows=nrows, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"Data file `{p.name}` has no columns. Its first line must be a header row.") from None
    except pd.errors.ParserError as e:
        raise UserError(
            f"Data file `{p.name}` could not be parsed: {_parser_line(e)}. "
            "Check that row for extra separators or an unclosed quote."
        ) from None
    except UnicodeDecodeError as e:
        raise UserError(f"Data file `{p.name}` is not UTF-8 text (byte {e.start}). Save it as UTF-8 CSV.") from None


def _refuse_binary(p: Path) -> None:
    """A binary file (a spreadsheet, an archive, an image) named .csv is not 'a header with no rows'."""
    with p.open("rb") as f:
        head = f.read(8192)
    if b"\x00" in head:
        kind = next((name for magic, name in BINARY_MAGIC.items() if head.startswith(magic)), "a binary file")
        raise UserError(
            f"Data file `{p.name}` is not a text {p.suffix.lstrip('.').upper()} file: it looks like {kind}. "
            "Export it as CSV (UTF-8) from the program that made it, or upload the right file."
        )


def _refuse_duplicate_header(p: Path, sep: str) -> None:
    """Two columns with one name would be silently renamed `name.1` by pandas: say so instead."""
    import csv

    with p.open(encoding="utf-8", errors="replace", newline="") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    names = [h.strip() for h in header]
    dups = sorted({n for n in names if names.count(n) > 1 and n})
    if dups:
        where = "; ".join(
            f"`{d}` in columns {', '.join(str(i + 1) for i, n in enumerate(names) if n == d)}" for d in dups
        )
        raise UserError(
            f"Data file `{p.name}` has two or more columns with the same name: {where}. Rename them so each column name is unique."
        )


BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or an Excel .xlsx workbook",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls or Office file",
    b"PAR1": "a Parquet file (rename it to .parquet)",
    b"\x89PNG": "a PNG image",
    b"%PDF": "a PDF document",
}


def _parser_line(e: Exception) -> str:
    msg = str(e).strip()
    # pandas says e.g. "Error tokenizing data. C error: Expected 2 fields in line 4, saw 3"
    if "C error:" in msg:
        msg = msg.split("C error:", 1)[1].strip()
    return msg


def _read_jsonl(p: Path, nrows: int | None) -> pd.DataFrame:
    try:
        return _jsonl_rows(p, nrows)
    except UnicodeDecodeError as e:
        raise _not_utf8(p, e) from None


def _not_utf8(p: Path, e: UnicodeDecodeError) -> UserError:
    return UserError(f"Data file `{p.name}` is not UTF-8 text (byte {e.start}). Save it as UTF-8 JSON.")


def _jsonl_rows(p: Path, nrows: int | None) -> pd.DataFrame:
    rows = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"Data file `{p.name}`, line {lineno}: not valid JSON ({e.msg} at column {e.colno}). "
                    "Each line must be one JSON object."
                ) from None
            if not isinstance(row, dict):
                raise UserError(
                    f"Data file `{p.name}`, line {lineno}: expected a JSON object like "
                    f'{{"text": ...}}, got {type(row).__name__}.'
                )
            rows.append(row)
            if nrows and len(rows) >= nrows:
                break
    return pd.DataFrame(rows)


def _read_json(p: Path, nrows: int | None) -> pd.DataFrame:
    try:
        head = _json_list_head(p, nrows) if nrows and p.stat().st_size > JSON_STREAM_BYTES else None
        data = head if head is not None else json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise _not_utf8(p, e) from None
    except json.JSONDecodeError as e:
        if e.lineno > 1:  # maybe JSON lines with a .json suffix
            try:
                return _read_jsonl(p, nrows)
            except UserError:
                pass
        raise UserError(f"Data file `{p.name}`, line {e.lineno}: not valid JSON ({e.msg}).") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "train"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise UserError(f"Data file `{p.name}` must hold a list of objects (one per row), or be JSON lines.")
    return pd.DataFrame(data[:nrows] if nrows else data)


JSON_STREAM_BYTES = 8 << 20  # a bigger JSON list is read item by item when only its first rows are wanted
_BETWEEN_ITEMS = re.compile(r"[\s,]*")


def _json_list_head(p: Path, nrows: int) -> list[Any] | None:
    """The first ``nrows`` objects of a file holding one JSON list, decoded from the file's head only (the rest is
    never read); None when the file is not a list of objects (the caller reads it whole)."""
    decoder, items = json.JSONDecoder(), []
    with p.open(encoding="utf-8") as f:
        buf = f.read(1 << 20)
        if not buf.lstrip().startswith("["):
            return None
        pos = buf.index("[") + 1
        while len(items) < nrows:
            pos = _BETWEEN_ITEMS.match(buf, pos).end()
            if pos < len(buf) and buf[pos] == "]":
                break
            try:
                item, pos = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                more = f.read(max(1 << 20, len(buf)))  # an item cut by the buffer's end: read on (doubling)
                if not more:
                    return None  # broken JSON: the whole-file read says where
                buf, pos = buf[pos:] + more, 0
                continue
            if not isinstance(item, dict):
                return None
            items.append(item)
    return items


def _read_parquet(p: Path, nrows: int | None) -> pd.DataFrame:
    try:
        if not nrows:
            return pd.read_parquet(p)
        import pyarrow.parquet as pq  # pandas' own Parquet engine: only the first row group(s) are read

        batch = next(pq.ParquetFile(p).iter_batches(batch_size=nrows), None)
        return batch.to_pandas() if batch is not None else pd.read_parquet(p)
    except Exception as e:  # pyarrow raises many types
        raise UserError(f"Data file `{p.name}` is not a readable Parquet file ({e}).") from None


def _pick(folder: Path, names: tuple[str, ...]) -> Path | None:
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() in EXTENSIONS and any(f.stem.lower().startswith(n) for n in names):
            return f
    return None


def is_local(source: str) -> bool:
    """True when ``source`` looks like a local file or folder rather than a Hub dataset id."""
    return bool(source) and (
        Path(source).exists() or source.startswith((".", "/", "~")) or Path(source).suffix.lower() in EXTENSIONS
    )


PATH_FIELDS = ("data_path", "valid_path", "base_model", "resume_from")


def absolute_paths(params: Any) -> Any:
    """The params with local paths made absolute (relative to this process's folder): the UI, the CLI and the
    worker (which runs elsewhere) then all read the same files. Hub ids are left as they are."""
    updates = {}
    for name in PATH_FIELDS:
        value = getattr(params, name, None)
        if isinstance(value, str) and value and names_local_path(value):
            updates[name] = str(Path(value).expanduser().resolve())
    return params.model_copy(update=updates) if updates else params


def names_local_path(value: str) -> bool:
    """A value that names a path on this machine rather than a Hub id: it exists, starts like a path, or has more
    than one ``/`` (a Hub id has at most one)."""
    return value.startswith((".", "/", "~")) or value.count("/") > 1 or Path(value).expanduser().exists()


MIN_FREE_BYTES = 500 * 1024 * 1024


def disk_problem(folder: str | Path, need: int = MIN_FREE_BYTES) -> list[str]:
    """A problem when the disk holding ``folder`` has less than ``need`` bytes free (checkpoints, the model)."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return []
    if free >= need:
        return []
    return [
        f"Only {free / 2**20:.0f} MB free on the disk of the data folder `{folder}`; a run needs at least "
        f"{need / 2**20:.0f} MB for its checkpoints and model. Free some space, or use another data folder "
        "(--data-dir / TRAINPAD_DATA_DIR)."
    ]


def resolve_files(params: Any) -> tuple[Path, Path | None]:
    """The local train file and optional validation file named by the params."""
    src = Path(params.data_path).expanduser()
    valid = Path(params.valid_path).expanduser() if params.valid_path else None
    if src.is_dir():
        train = _pick(src, (params.train_split or "train",) + TRAIN_NAMES)
        if train is None:  # the data files it holds are named, never the rest of the folder
            files = sorted(f.name for f in src.iterdir() if f.suffix.lower() in EXTENSIONS)[:10]
            found = f"its data files: {', '.join(files)}" if files else "it holds no data file"
            wanted = params.train_split or "train"
            raise UserError(
                f"Data folder `{src.name}` has no training file (looked for {wanted}.csv/.jsonl/...; {found}). "
                "Name the training file train.csv (or set train_split to its name)."
            )
        if valid is None:
            names = (params.valid_split,) + VALID_NAMES if params.valid_split else VALID_NAMES
            valid = _pick(src, names)
        return train, valid
    return src, valid


def check_rows() -> int:
    """Rows of each file the pre-launch check reads ($TRAINPAD_CHECK_ROWS, default 20,000): a check costs seconds
    and megabytes, whatever the file's size. The worker trains on every row."""
    return settings.integer("TRAINPAD_CHECK_ROWS")
