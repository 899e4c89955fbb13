"""What a run may ask for on this instance. A local single-user studio trusts its user (the operator); a shared one
(a Space, a public link, --host 0.0.0.0) does not: nothing a visitor types may reach the host beyond the run
folders and that visitor's own uploads.

The supervisor applies the policy to every submission, whichever way it came (UI, API, CLI)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import settings
from engine.data import audio, images
from engine.data.tables import EXTENSIONS, names_local_path
from engine.errors import Problem, UserError

ENDPOINT_FIELDS = ("judge_model",)  # fields that may hold an http(s) endpoint
PATH_FIELDS = ("data_path", "valid_path", "base_model", "reward_file", "reward_model", "judge_model", "teacher_model")


@dataclass(frozen=True)
class Policy:
    shared: bool = False  # visitors are not the operator
    allow_remote_code: bool = False  # trust_remote_code may be turned on (the operator said so)
    host_token: bool | None = None  # the host's HF token may serve runs that bring none (None: only when not shared)
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)  # folders visitors may name, beyond uploads
    max_queued_per_user: int = 0  # 0 = no cap
    allow_endpoints: bool = False  # a shared instance's users may name http(s) endpoints (an LLM judge) for runs

    @property
    def uses_host_token(self) -> bool:
        return (not self.shared) if self.host_token is None else self.host_token

    @classmethod
    def from_env(cls, shared: bool = False) -> Policy:
        """The operator's settings: TRAINPAD_ALLOW_REMOTE_CODE=1, TRAINPAD_HOST_TOKEN=1 (shared instances only),
        TRAINPAD_ALLOWED_ROOTS (folders separated by ':'), TRAINPAD_MAX_QUEUED (per user)."""
        roots = tuple(Path(p).expanduser().resolve() for p in settings.text("TRAINPAD_ALLOWED_ROOTS").split(":") if p)
        return cls(
            shared=shared,
            allow_remote_code=settings.flag("TRAINPAD_ALLOW_REMOTE_CODE"),
            host_token=True if settings.flag("TRAINPAD_HOST_TOKEN") else None,
            allowed_roots=roots,
            max_queued_per_user=settings.integer("TRAINPAD_MAX_QUEUED", 3 if shared else 0),
            allow_endpoints=settings.flag("TRAINPAD_ALLOW_ENDPOINTS"),
        )


def problems(policy: Policy, params: Any, runs_dir: Path, user_dirs: list[Path]) -> list[str]:
    """Why this instance refuses ``params``: remote code, a resume point outside the run folders, and on a
    shared instance local paths outside the user's uploads and the allowed folders (no folder is listed)."""
    found: list[str] = []
    if getattr(params, "trust_remote_code", False) and not policy.allow_remote_code:
        found.append(
            Problem(
                "trust_remote_code is off on this instance: a model's own Python code would run on the server. "
                "The operator can allow it (--allow-remote-code or TRAINPAD_ALLOW_REMOTE_CODE=1"
                + ("; never on by default on a shared instance)." if policy.shared else ")."),
                field="trust_remote_code",
            )
        )
    if "python" in (getattr(params, "reward_functions", None) or ()) and policy.shared and not policy.allow_remote_code:
        found.append(
            Problem(
                "The python reward runs your reward_file's code on the server: this shared instance refuses it. The "
                "operator can allow it (--allow-remote-code or TRAINPAD_ALLOW_REMOTE_CODE=1); or use the presets.",
                field="reward_functions",
            )
        )
    resume = str(getattr(params, "resume_from", "") or "")
    if resume and not _is_checkpoint_of_a_run(Path(resume), runs_dir):
        found.append(
            Problem(
                "resume_from must be a checkpoint folder of one of this instance's runs (Resume fills it in); "
                f"`{Path(resume).name}` is not.",
                field="resume_from",
            )
        )
    if policy.shared and not policy.allow_endpoints:  # the server would call any address a visitor names
        for name in ENDPOINT_FIELDS:
            if str(getattr(params, name, "") or "").strip().lower().startswith(("http://", "https://")):
                found.append(
                    Problem(
                        f"{name}: this shared instance does not call endpoints its users name (the operator can allow "
                        "it with TRAINPAD_ALLOW_ENDPOINTS=1); use a model folder of your uploads or one of your runs.",
                        field=name,
                    )
                )
    if policy.shared:
        roots = [*user_dirs, *policy.allowed_roots]
        for name in PATH_FIELDS:
            value = str(getattr(params, name, "") or "")
            if value and names_local_path(value) and not any(inside(value, r) for r in roots):
                found.append(
                    Problem(
                        f"{name}: on this shared instance a local path must be one of your uploads (or a folder the "
                        "operator allowed); upload the file, or give a Hub id.",
                        field=name,
                    )
                )
        if not found:  # the data files are the user's own: now the files they name (images, audio clips)
            found += named_path_problems(params, roots)
    return found


# ---- paths named inside data files ------------------------------------------------------------

# Columns whose cells the readers open as files (the image and audio readers' own list, and VLM's `images`)
PATH_COLUMNS = tuple(dict.fromkeys((*images.FILE_COLUMNS, *audio.FILE_COLUMNS, "images")))
MEDIA_ROLES = ("image", "images", "audio")  # roles whose mapped column holds file paths
MAX_TABLES = 50  # data tables looked at in a data folder
CHUNK_ROWS = 50_000


def named_path_problems(params: Any, roots: list[Path]) -> list[str]:
    """Files named inside the data (an image or audio column of a CSV/JSON/Parquet file or a folder's metadata) that
    resolve outside ``roots``: relative paths are read against the data file's folder, as the readers do. Only the
    path columns are read, in chunks; the messages name the file, column and row, never a server folder."""
    real_roots = [os.path.realpath(r) for r in roots]
    mapped = {c.lower() for r, c in (getattr(params, "column_mapping", None) or {}).items() if r in MEDIA_ROLES and c}
    found: list[str] = []
    for table, bases in _data_tables(params):
        for col, row, name in _outside(_path_cells(table, {*PATH_COLUMNS, *MEDIA_ROLES} | mapped), bases, real_roots):
            how = "an absolute path" if os.path.isabs(os.path.expanduser(name.strip())) else "a path leaving the folder"
            found.append(
                Problem(
                    f"`{table.name}`, column `{col}`, row {row}: `{Path(name).name[:80]}` ({how}) is not in your "
                    "uploads. On this shared instance a data file may name only files uploaded with it (paths "
                    "relative to the data file's folder); upload the images or clips with the table (a ZIP).",
                    field="data_path",
                )
            )
            if len(found) >= 5:
                return found
    return found


def _data_tables(params: Any) -> list[tuple[Path, list[str]]]:
    """The local table files of the data (a folder's tables and metadata files, a few levels down) and the folders
    their relative paths are read against (their own folder, then the data and validation folders)."""
    sources = [Path(str(v)).expanduser() for v in (params.data_path, getattr(params, "valid_path", "")) if v]
    folders = [os.path.realpath(p if p.is_dir() else p.parent) for p in sources if p.exists()]
    tables: list[Path] = []
    for src in sources:
        if src.is_file() and src.suffix.lower() in EXTENSIONS:
            tables.append(src)
        elif src.is_dir():
            tables += [f for f in _walk(src, depth=3) if f.suffix.lower() in EXTENSIONS][:MAX_TABLES]
    return [(t, list(dict.fromkeys([os.path.realpath(t.parent), *folders]))) for t in tables]


def _walk(folder: Path, depth: int) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            yield entry
        elif entry.is_dir() and depth > 1 and not entry.is_symlink():
            yield from _walk(entry, depth - 1)


def _outside(
    cells: Iterator[tuple[str, int, Any]], bases: list[str], roots: list[str]
) -> Iterator[tuple[str, int, str]]:
    """(column, row, name) of the cells naming a file outside ``roots`` (after ``~``, ``..`` and folder links)."""
    folders: dict[str, bool] = {}  # folder -> inside the roots once its links are resolved (once per folder)
    for col, row, value in cells:
        bad = next((n for n in _names(value) if _escapes(n, bases, roots, folders)), None)
        if bad is not None:
            yield col, row, bad


def _escapes(name: str, bases: list[str], roots: list[str], folders: dict[str, bool]) -> bool:
    """Whether ``name``, read as the readers read it (absolute, else under each base), leaves ``roots``. Decided
    once per folder part of the name (a million rows name a few folders)."""
    head, sep, last = name.strip().rpartition("/")
    key = head + sep if last not in ("", ".", "..") else name.strip()
    if key not in folders:
        folders[key] = _folder_escapes(key if key == name.strip() else key + "x", bases, roots)
    return folders[key]


def _folder_escapes(name: str, bases: list[str], roots: list[str]) -> bool:
    path = os.path.expanduser(name) if name.startswith("~") else name
    for candidate in [path] if os.path.isabs(path) else [os.path.join(b, path) for b in bases]:
        folder, last = os.path.split(candidate)
        folder = candidate if last in ("", ".", "..") else folder  # a name ending in `..` is a folder itself
        if not (_within(os.path.normpath(folder), roots) and _within(os.path.realpath(folder), roots)):
            return True
    return False


def _within(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _names(value: Any) -> list[str]:
    """The file names a cell holds: a path, a list of paths, or a Hub image/audio cell's ``path`` (without bytes)."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        return [str(value["path"])] if value.get("path") and not value.get("bytes") else []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return [n for v in value for n in _names(v)]
    return []


def _path_cells(table: Path, wanted: set[str]) -> Iterator[tuple[str, int, Any]]:
    """(column, row number from 1, cell) of the path columns of ``table`` (``wanted``: lower-case names; a column
    matches whatever its case, as the column mapping does), read in chunks (unreadable: nothing; the data check
    reports it)."""
    kind = EXTENSIONS[table.suffix.lower()]
    try:
        if kind in ("csv", "tsv"):
            yield from _csv_cells(table, "\t" if kind == "tsv" else ",", wanted)
        elif kind == "parquet":
            yield from _parquet_cells(table, wanted)
        else:
            yield from _json_cells(table, wanted)
    except (OSError, ValueError, UserError):  # pandas/pyarrow parse errors are ValueErrors
        return


def _csv_cells(table: Path, sep: str, wanted: set[str]) -> Iterator[tuple[str, int, Any]]:
    import pandas as pd

    columns = [c for c in pd.read_csv(table, sep=sep, nrows=0).columns if str(c).lower() in wanted]
    if not columns:
        return
    for chunk in pd.read_csv(table, sep=sep, usecols=columns, dtype=str, chunksize=CHUNK_ROWS):
        first = int(chunk.index[0]) + 1 if len(chunk) else 0
        for col in columns:
            for i, v in enumerate(chunk[col].tolist()):
                yield col, first + i, v


def _parquet_cells(table: Path, wanted: set[str]) -> Iterator[tuple[str, int, Any]]:
    import pyarrow.parquet as pq

    f = pq.ParquetFile(table)
    columns = [c for c in f.schema_arrow.names if c.lower() in wanted]
    row = 0
    for batch in f.iter_batches(batch_size=CHUNK_ROWS, columns=columns) if columns else ():
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            for col in columns:
                yield col, row + i + 1, data[col][i]
        row += batch.num_rows


def _json_cells(table: Path, wanted: set[str]) -> Iterator[tuple[str, int, Any]]:
    """JSON lines one line at a time; a JSON document whole (as every reader reads it)."""
    from engine.data.tables import read_table

    with table.open(encoding="utf-8") as f:
        lines = f.read(1).strip() == "{" and table.suffix.lower() == ".jsonl"
    if not lines:
        df = read_table(table)
        for col in [c for c in df.columns if str(c).lower() in wanted]:
            for i, v in df[col].items():
                yield col, int(i) + 1, v
        return
    with table.open(encoding="utf-8") as f:
        for row, line in enumerate((ln for ln in f if ln.strip()), start=1):
            obj = json.loads(line)
            for col in [k for k in obj if str(k).lower() in wanted] if isinstance(obj, dict) else ():
                yield col, row, obj[col]


def inside(path: str | Path, root: Path) -> bool:
    """Whether ``path`` (after resolving links) is ``root`` or below it."""
    try:
        Path(path).expanduser().resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a link loop
        return False


def _is_checkpoint_of_a_run(path: Path, runs_dir: Path) -> bool:
    """``<runs_dir>/<run>/checkpoints/<checkpoint>`` (after resolving links), and a folder."""
    try:
        rel = path.expanduser().resolve().relative_to(runs_dir.resolve())
    except (ValueError, OSError):
        return False
    return len(rel.parts) == 3 and rel.parts[1] == "checkpoints" and path.is_dir()


# ---- the worker's own check (the last line of defence) ------------------------------------------


def guard_problems(guard: dict[str, Any], params: Any) -> list[str]:
    """A shared run's final values checked again by its worker before it opens anything: the same rules as at
    submission (``guard`` is what the supervisor wrote to ``guard.json``), and ``resume_from`` unchanged."""
    roots = [Path(r) for r in guard.get("roots") or []]
    policy = Policy(
        shared=True,
        allow_remote_code=bool(guard.get("allow_remote_code")),
        allow_endpoints=bool(guard.get("allow_endpoints")),
    )
    runs_dir = Path(guard.get("runs_dir") or "/nonexistent")
    found = problems(policy, params, runs_dir, roots)
    for name in ("reward_model", "judge_model", "teacher_model"):  # a model named by run id: the user's own only
        value = str(getattr(params, name, "") or "").strip()
        if value and "/" not in value and (runs_dir / value).is_dir() and value not in (guard.get("runs") or []):
            found.append(Problem(f"{name}: `{value}` is not one of your runs.", field=name))
    resume = str(getattr(params, "resume_from", "") or "")
    if resume and str(Path(resume).expanduser().resolve()) != guard.get("resume_from"):
        found.append(Problem("resume_from is not the checkpoint this run was checked with; resume from the Runs page."))
    return found


def frame_path_problems(guard: dict[str, Any], params: Any, frames: list[Any]) -> list[str]:
    """Files named in the loaded data's media columns (whatever the source: local tables, folders, Hub datasets)
    that lie outside the user's folders, in the words of :func:`named_path_problems`."""
    real_roots = [os.path.realpath(r) for r in guard.get("roots") or []]
    sources = [Path(str(v)).expanduser() for v in (params.data_path, getattr(params, "valid_path", "")) if v]
    bases = [os.path.realpath(p if p.is_dir() else p.parent) for p in sources if p.exists()] or [os.getcwd()]
    found: list[str] = []
    for df in frames:
        if df is None:
            continue
        cols = [c for c in df.columns if str(c).lower() in MEDIA_ROLES or str(c).lower() in PATH_COLUMNS]
        cells = ((c, int(i) + 1, v) for c in cols for i, v in df[c].items())
        for col, row, name in _outside(cells, bases, real_roots):
            found.append(
                Problem(
                    f"Column `{col}`, row {row}: `{Path(name).name[:80]}` is not in your uploads. On this shared "
                    "instance the data may name only files uploaded with it.",
                    field="data_path",
                )
            )
            if len(found) >= 5:
                return found
    return found
