"""ZIP archives: limits checked before extraction, safe extraction once per archive, the folder inside it."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from engine.errors import UserError

ZIP_MAX_MEMBERS = 500_000


ZIP_MAX_BYTES = 50 * 2**30  # total uncompressed size


ZIP_MAX_RATIO = 100  # uncompressed / compressed, for the archive and for any member over ZIP_RATIO_FLOOR


ZIP_RATIO_FLOOR = 2**20  # small members (text, blank images) compress very well legitimately


def _member_problem(info: zipfile.ZipInfo, max_ratio: float) -> str | None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return f"member `{name}` points outside the archive (absolute path or `..`)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member `{name}` is a symbolic link"
    if info.file_size > ZIP_RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return f"member `{name}` expands {ratio:.0f}x ({info.compress_size} -> {info.file_size} bytes; limit {max_ratio:g}x)"
    return None


def zip_problems(
    path: str | Path,
    max_members: int = ZIP_MAX_MEMBERS,
    max_bytes: int = ZIP_MAX_BYTES,
    max_ratio: float = ZIP_MAX_RATIO,
) -> list[str]:
    """Why the ZIP at ``path`` must not be extracted (empty list: safe), read from its directory only."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        return [f"`{p.name}` is not a readable ZIP archive ({e}). Create it again (e.g. `zip -r data.zip folder`)."]
    refuse = f"ZIP `{p.name}` refused:"
    if len(infos) > max_members:
        return [f"{refuse} {len(infos)} members, more than the limit of {max_members}. Split the data."]
    problems = [f"{refuse} {m}." for m in (_member_problem(i, max_ratio) for i in infos) if m]
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > max_bytes:
        problems.append(
            f"{refuse} it expands to {total / 2**30:.1f} GiB, more than the limit of {max_bytes / 2**30:.1f} GiB."
        )
    elif total > ZIP_RATIO_FLOOR and total > max_ratio * max(packed, 1):
        problems.append(
            f"{refuse} it expands {total / max(packed, 1):.0f}x ({packed} -> {total} bytes; limit "
            f"{max_ratio:g}x), which is how zip bombs look."
        )
    return problems[:10]


def extracted_folder(path: str | Path) -> Path:
    """Where :func:`extract_zip` puts the ZIP at ``path``: a hidden folder beside it named after its size and
    modification time (the same archive is extracted once; a changed one again)."""
    p = Path(path).resolve()
    st = p.stat()
    digest = hashlib.sha1(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    parent = p.parent if os.access(p.parent, os.W_OK) else Path(tempfile.gettempdir()) / "trainpad-unzipped"
    return parent / f".{p.stem}-{digest}"


def extract_zip(path: str | Path, **limits: Any) -> Path:
    """Extract the ZIP at ``path`` (checked by :func:`zip_problems` first) and return the folder.

    Members are written into a temporary folder beside the destination and counted as they are written (a
    member that writes more than its header says is refused), then the folder is moved into place."""
    problems = zip_problems(path, **limits)
    if problems:
        raise UserError(problems)
    dest = extracted_folder(path)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir() and not any(j in i.filename for j in JUNK)]
        need = sum(i.file_size for i in infos)
        free = shutil.disk_usage(dest.parent).free
        if need + 256 * 2**20 > free:
            raise UserError(
                f"ZIP `{Path(path).name}` expands to {need / 2**20:.0f} MB but only {free / 2**20:.0f} "
                f"MB are free on the disk of `{dest.parent}`. Free some space or upload less data."
            )
        tmp = Path(tempfile.mkdtemp(prefix=".unzip-", dir=dest.parent))
        try:
            for info in infos:
                _extract_member(zf, info, tmp)
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process may have finished the same extraction first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> None:
    target = (root / info.filename.replace("\\", "/")).resolve()
    if root.resolve() not in target.parents:
        raise UserError(f"ZIP member `{info.filename}` points outside the archive; refused.")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(2**20):
            written += len(chunk)
            if written > info.file_size:
                raise UserError(f"ZIP member `{info.filename}` holds more data than its header says; refused.")
            out.write(chunk)


def as_folder(path: str | Path) -> Path:
    """A folder for a data source: ZIPs are extracted (safely, once)."""
    p = Path(path).expanduser()
    return _unwrap(extract_zip(p)) if p.suffix.lower() == ".zip" else p


JUNK = ("__MACOSX", ".DS_Store", "Thumbs.db")


def _unwrap(folder: Path) -> Path:
    """A ZIP often holds one top folder: use what is inside it."""
    entries = [e for e in folder.iterdir() if e.name not in JUNK and not e.name.startswith(".")]
    return _unwrap(entries[0]) if len(entries) == 1 and entries[0].is_dir() else folder
