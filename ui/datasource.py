"""Data for a task tab: keeping uploads, previews, and matching columns to the task's roles.

Uploads are copied into ``<data_dir>/uploads/`` so a run never depends on Gradio's temp folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from engine import settings
from engine.data import archives, images, splits
from engine.data import tables as data
from engine.data.cells import is_missing
from engine.errors import UserError
from engine.run.policy import inside
from engine.task import Task
from ui import context

UPLOAD_TYPES = [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".pq", ".zip"]
MEDIA_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".wav",
    ".mp3",
    ".flac",
    ".ogg",
    ".m4a",
}
PREVIEW_ROWS = 20


def keep_upload(path: str | Path, uploads_dir: Path, quota_bytes: int = 0) -> Path:
    """Copy an uploaded file into ``uploads_dir/<content digest>/`` under the user's own file name (so every
    message names the file the user knows); a ZIP is unpacked to a folder there. Copied to a temporary name
    first, so a failed copy or a refused ZIP leaves nothing behind. ``quota_bytes`` (a shared instance's
    per-user cap; 0 = none) bounds what ``uploads_dir`` may hold with it."""
    src = Path(path)
    folder = uploads_dir / _digest(src)
    if quota_bytes and not folder.exists():
        _check_quota(src, uploads_dir, quota_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # used now: the cleanup counts an upload's age from its last use
    if src.suffix.lower() == ".zip":
        return _unzip(src, folder / _safe_stem(src))
    dest = folder / (_safe_stem(src) + src.suffix.lower())
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    return dest


def _check_quota(src: Path, uploads_dir: Path, quota_bytes: int) -> None:
    incoming = src.stat().st_size
    if src.suffix.lower() == ".zip":
        with zipfile.ZipFile(src) as zf:
            incoming += sum(i.file_size for i in zf.infolist())
    held = _size(uploads_dir) if uploads_dir.is_dir() else 0
    if held + incoming > quota_bytes:
        raise UserError(
            f"Your uploads would take {(held + incoming) / 2**30:.2f} GB; this instance keeps at most "
            f"{quota_bytes / 2**30:.2f} GB per user (TRAINPAD_USER_UPLOAD_GB). Upload less, or wait for old uploads "
            "to be cleaned."
        )


def _safe_stem(src: Path) -> str:
    """The upload's name without odd characters or a length the file system refuses."""
    return safe_file_name(src.stem, 80, "data")


def safe_file_name(text: str, limit: int, default: str) -> str:
    """``text`` as part of a file name: odd characters as ``_``, no leading/trailing dots, at most ``limit``
    characters (``default`` when nothing is left)."""
    return (re.sub(r"[^\w.-]", "_", text).strip("._") or default)[:limit]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def _unzip(src: Path, dest: Path) -> Path:
    """Unpack safely (no paths leaving ``dest``); a single top folder inside becomes the data folder."""
    try:
        archive = zipfile.ZipFile(src)
    except zipfile.BadZipFile:
        raise UserError(f"`{src.name}` is not a readable ZIP file. Zip the data folder again and upload it.") from None
    with archive:
        problems = archives.zip_problems(src, **zip_limits())  # `../`, absolute/link members, bombs, too many members
        if problems:
            raise UserError(problems)
        names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
        if not [n for n in names if not n.endswith("/")]:
            raise UserError(f"`{src.name}` is an empty ZIP: it holds no files. Zip the data folder and upload it.")
        unpacked = sum(i.file_size for i in archive.infolist())
        free = shutil.disk_usage(dest.parent).free
        if unpacked + (200 << 20) > free:
            raise UserError(
                f"`{src.name}` unpacks to {unpacked / 2**20:.0f} MB but the data folder's disk has only "
                f"{free / 2**20:.0f} MB free. Free some space, or upload less."
            )
        for n in names:
            if Path(n).is_absolute() or ".." in Path(n).parts:
                raise UserError(f"`{src.name}` holds an unsafe path `{n}`. Zip the folder with relative paths.")
        if not dest.exists():  # unpacked beside, then moved: a failed extraction leaves no half folder behind
            tmp = dest.with_name(dest.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                archive.extractall(tmp, members=names)
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                shutil.rmtree(tmp, ignore_errors=True)
                raise UserError(
                    f"`{src.name}` could not be unpacked ({e}). Zip the folder again and upload it."
                ) from None
            tmp.replace(dest)
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def zip_limits() -> dict[str, Any]:
    """The operator's ZIP limits ($TRAINPAD_ZIP_MAX_MEMBERS, $TRAINPAD_ZIP_MAX_GB); stricter defaults on a shared
    instance, whose disk every visitor shares."""
    shared = bool(context._CURRENT and context._CURRENT[0].shared)
    members = settings.integer("TRAINPAD_ZIP_MAX_MEMBERS", 50_000 if shared else archives.ZIP_MAX_MEMBERS)
    gigabytes = settings.number("TRAINPAD_ZIP_MAX_GB", 10 if shared else archives.ZIP_MAX_BYTES / 2**30)
    return {"max_members": members, "max_bytes": int(gigabytes * 2**30)}


def source_params(
    data_path: str,
    valid_path: str = "",
    train_split: str = "train",
    valid_split: str = "",
    data_config: str = "",
) -> Any:
    """The data-location fields ``engine.data.tables`` reads, without a full params object."""
    return SimpleNamespace(
        data_path=data_path,
        valid_path=valid_path,
        train_split=train_split or "train",
        valid_split=valid_split,
        data_config=data_config,
    )


def guard(path: str) -> None:
    """On a shared instance, a local path must be the user's upload or an allowed folder; the refusal names
    nothing on the server."""
    if data.is_local(path) and not context.readable(path):
        raise UserError(
            "On this shared instance you can use your own uploads (or folders the operator allowed), not other "
            "paths on the server. Upload the file, or give a Hub dataset id."
        )


def preview(source: Any) -> tuple[pd.DataFrame, str]:
    """The first rows of local data and a one-line note; a Hub id only gets a note (no network here). A file or
    folder that cannot be read is a UserError naming it (not the folders above it)."""
    try:
        return _preview(source)
    except OSError as e:
        name = Path(str(e.filename or source.data_path)).name or str(source.data_path)
        raise UserError(
            f"`{name}` could not be read ({e.strerror or type(e).__name__}). Give a data file or folder this app "
            "can read, or upload the file."
        ) from None


def _preview(source: Any) -> tuple[pd.DataFrame, str]:
    path = str(source.data_path or "").strip()
    if not path:
        return pd.DataFrame(), ""
    guard(path)
    if source.valid_path:
        guard(str(source.valid_path))
    if not data.is_local(path):
        return pd.DataFrame(), (
            f"Hub dataset `{path}` (split `{source.train_split}`): the worker downloads it when "
            "the run starts. Type the column names into the mapping below if they differ from the roles."
        )
    folder = Path(path).expanduser()
    if folder.is_dir() and not _has_table(folder) and not images.is_image_source(folder):
        return media_listing(
            folder
        ), f"Folder `{folder.name}`: files and the sub-folder each one is in (usually its label)."
    train, valid = splits.load_raw(source, nrows=PREVIEW_ROWS)
    note = f"First {len(train)} rows of `{Path(path).name}`" + (
        " (a validation file was found too)." if valid is not None else "."
    )
    return train, note


def _has_table(folder: Path) -> bool:
    return any(f.suffix.lower() in data.EXTENSIONS for f in folder.iterdir())


SCAN_LIMIT = 20_000  # entries looked at when listing a folder's media (a folder like `/` is not walked whole)


def media_listing(folder: Path, limit: int = PREVIEW_ROWS) -> pd.DataFrame:
    rows = []
    for seen, f in enumerate(folder.rglob("*")):
        if seen >= SCAN_LIMIT:
            break
        if f.suffix.lower() in MEDIA_SUFFIXES:
            rows.append({"file": str(f.relative_to(folder)), "folder": f.parent.name})
            if len(rows) >= limit:
                break
    return pd.DataFrame(rows).sort_values("file").reset_index(drop=True) if rows else pd.DataFrame(rows)


def match_columns(task: Task, columns: list[str], current: dict[str, str] | None = None) -> dict[str, str]:
    """Role -> column: keep a current choice that still exists, else the column named like the role or one of its
    aliases (the worker's own matching, :func:`engine.data.splits.resolve_mapping`)."""
    keep = {role: c for role, c in (current or {}).items() if c and c in columns}
    found, _ = splits.resolve_mapping(task, columns, keep)
    return {col.role: found.get(col.role, "") for col in task.columns}


def display_frame(df: pd.DataFrame, max_chars: int = 200) -> pd.DataFrame:
    """Cells as short text, so lists and long strings show in the preview table."""

    def short(v: Any) -> str:
        text = v if isinstance(v, str) else ("" if is_missing(v) else str(v))
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    return df.apply(lambda col: col.map(short)) if len(df.columns) else df


def gallery(source: Any, limit: int = 24) -> tuple[list[tuple[Any, str]], str]:
    """Thumbnails with their labels (boxes drawn for detection) and the class counts of local image data;
    ``([], "")`` for data without an image column (or that cannot be read: the preview says why)."""
    path = str(source.data_path or "").strip()
    if not path or not data.is_local(path) or not context.readable(path):
        return [], ""
    outside = context.outside_files(source)
    if outside:  # a shared instance shows no thumbnail of a file outside the user's uploads
        return [], str(outside[0])
    try:
        train, _ = splits.load_raw(source, nrows=data.check_rows())  # a table's first rows; image folders whole
    except UserError:
        return [], ""
    if not any(c in train.columns for c in images.FILE_COLUMNS):
        return [], ""
    folder = Path(path).expanduser()
    note = images.counts_note(train) + (" (the first rows of the table)" if len(train) >= data.check_rows() else "")
    return images.gallery(train, [folder if folder.is_dir() else folder.parent], limit), note


# ---- cleanup of old uploads and exports -------------------------------------------------------


def cleanup_limits(shared: bool) -> tuple[float, float]:
    """(max age in hours, max total GB) of uploads + exports: $TRAINPAD_CLEAN_HOURS, $TRAINPAD_CLEAN_GB (0: no
    limit). A shared instance's disk is small and every visitor's: 48 hours and 10 GB; locally 30 days and 50 GB."""
    hours = settings.number("TRAINPAD_CLEAN_HOURS", 48 if shared else 720)
    gigabytes = settings.number("TRAINPAD_CLEAN_GB", 10 if shared else 50)
    return hours, gigabytes


_DIGEST = re.compile(r"[0-9a-f]{10}")


def clean_old_files(ctx: Any, hours: float, gigabytes: float, now: float | None = None) -> dict[str, int]:
    """Remove uploads (one folder per upload) and exports (configs, model zips) last used more than ``hours`` ago,
    then the oldest ones while they take more than ``gigabytes``; model zips of deleted runs go at once, and so
    do files in $GRADIO_TEMP_DIR older than ``hours`` when the operator set one. An upload named by a queued or
    running run is never removed. Returns what was removed: ``{"items": n, "bytes": b, "paths": [...]}``."""
    now = time.time() if now is None else now
    in_use = _active_paths(ctx.engine.store)
    items = [(p, _last_used(p), _size(p)) for p in _upload_folders(ctx.data_dir / "uploads")]
    items = [i for i in items if not any(inside(u, i[0]) for u in in_use)]
    exports = [f for f in (ctx.data_dir / "exports").rglob("*") if f.is_file()]
    run_ids = [r["id"] for r in ctx.engine.store.list_runs(limit=1_000_000)]
    orphans = [f for f in exports if "-model-" in f.name and not any(f"-{r}-model-" in f.name for r in run_ids)]
    items += [(f, 0.0 if f in orphans else f.stat().st_mtime, f.stat().st_size) for f in exports]
    served = context.gradio_cache() / "trainpad-exports"  # the download links of exports (ctx.served)
    if served.is_dir():
        items += [(d, d.stat().st_mtime, 0) for d in served.iterdir()]  # age only: links to the exports
    gradio_tmp = os.environ.get("GRADIO_TEMP_DIR")
    if gradio_tmp and Path(gradio_tmp).is_dir():
        items += [(f, f.stat().st_mtime, 0) for f in Path(gradio_tmp).rglob("*") if f.is_file()]  # age only
    doomed = _over_limits(items, now - hours * 3600 if hours else None, int(gigabytes * 2**30) if gigabytes else None)
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return {"items": len(doomed), "bytes": sum(size for p, _, size in items if p in doomed), "paths": doomed}


def _over_limits(items: list[tuple[Path, float, int]], before: float | None, max_bytes: int | None) -> list[Path]:
    """Items last used before ``before``, then, while the total is over ``max_bytes``, the oldest items of whoever
    holds the most (one user filling the disk loses their own files first, not another user's idle ones)."""
    old = [p for p, used, _ in items if before is not None and used < before]
    held: dict[str, int] = {}
    for p, _, size in items:
        if p not in old:
            held[_holder(p)] = held.get(_holder(p), 0) + size
    kept = sorted((i for i in items if i[0] not in old), key=lambda i: (-held[_holder(i[0])], i[1]))
    total = sum(size for _, _, size in kept)
    for path, _, size in kept:
        if max_bytes is None or total <= max_bytes:
            break
        old.append(path)
        total -= size
    return old


def _holder(path: Path) -> str:
    """Whose file this is: the user folder under uploads/ or exports/ (shared instances); "" otherwise."""
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part in ("uploads", "exports") and i + 2 < len(parts) and not _DIGEST.fullmatch(parts[i + 1]):
            return parts[i + 1]
    return ""


def _upload_folders(uploads: Path) -> list[Path]:
    """One folder per upload (``uploads/<digest>``, or ``uploads/<user>/<digest>`` on a shared instance)."""
    if not uploads.is_dir():
        return []
    found = []
    for entry in uploads.iterdir():
        if entry.is_dir() and _DIGEST.fullmatch(entry.name):
            found.append(entry)
        elif entry.is_dir():
            found += [d for d in entry.iterdir() if d.is_dir() and _DIGEST.fullmatch(d.name)]
    return found


def _active_paths(store: Any) -> list[str]:
    """The local paths that queued and running runs read."""
    paths = []
    for row in store.runs_with_status("queued", "running"):
        params = row.get("params") or {}
        paths += [str(params.get(k)) for k in ("data_path", "valid_path", "base_model") if params.get(k)]
    return paths


def _last_used(folder: Path) -> float:
    return max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())])


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def start_cleanup(
    ctx: Any, hours: float | None = None, gigabytes: float | None = None, every: float = 1800
) -> threading.Thread:
    """Clean at start and every ``every`` seconds (a daemon thread; it ends when the data folder is gone). Limits
    not given come from :func:`cleanup_limits`."""
    default_hours, default_gb = cleanup_limits(ctx.shared or ctx.engine.policy.shared)
    hours = default_hours if hours is None else hours
    gigabytes = default_gb if gigabytes is None else gigabytes

    def loop() -> None:
        while ctx.data_dir.is_dir():
            try:
                clean_old_files(ctx, hours, gigabytes)
            except Exception as e:  # never stop cleaning; the next round retries
                print(f"[trainpad cleanup] {type(e).__name__}: {e}", file=sys.stderr)
            time.sleep(every)

    thread = threading.Thread(target=loop, name="trainpad-cleanup", daemon=True)
    thread.start()
    return thread
