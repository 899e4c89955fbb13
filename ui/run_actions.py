"""What can be done with one run (stop, resume, download, merge, duplicate, delete) and the plain
actions behind the Runs page's buttons. No Gradio here: ``ui.runs`` wires these to the buttons."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from engine import runfiles as rf
from engine.errors import UserError
from engine.run import merge as merge_mod
from engine.run.store import ACTIVE
from ui.context import Context
from ui.datasource import safe_file_name

RESUMABLE = ("stopped", "failed", "interrupted")


def get_row(ctx: Context, run_id: str) -> dict[str, Any]:
    """The run's row; UserError when there is none."""
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        raise UserError(f"No run with id `{run_id}`. Pick one in the table.")
    return row


def actions_allowed(row: dict[str, Any]) -> dict[str, bool]:
    """Which buttons the run's state allows."""
    run_dir = Path(row["run_dir"])
    active = row["status"] in ACTIVE
    return {
        "stop": active,
        # a finished run has nothing left to train: resuming it made a 0-step copy (Duplicate trains it again)
        "resume": row["status"] in RESUMABLE and rf.last_checkpoint(run_dir) is not None,
        "duplicate": True,
        "delete": not active,
        "download": row["status"] == "succeeded" and (run_dir / rf.MODEL_DIR).is_dir(),
        "merge": not active and has_adapter(run_dir) and not is_merged(run_dir),
    }


def has_adapter(run_dir: Path) -> bool:
    return any((run_dir / d / "adapter_config.json").exists() for d in ("adapter", rf.MODEL_DIR))


def is_merged(run_dir: Path) -> bool:
    """A standalone model exists: ``merged/`` (engine.run.merge) or a full model in ``model/``."""
    model = run_dir / rf.MODEL_DIR
    full_model = (model / "config.json").exists() and not (model / "adapter_config.json").exists()
    return (run_dir / merge_mod.MERGED_DIR).is_dir() or full_model


def download_zip(ctx: Context, run_id: str) -> Path:
    """A zip of the run's model folder in the user's exports folder, built once per state of the model folder:
    another click reuses it; a changed model (e.g. after a merge) replaces it."""
    row = get_row(ctx, run_id)
    model = Path(row["run_dir"]) / rf.MODEL_DIR
    if not model.is_dir():
        raise UserError(f"Run `{run_id}` has no model folder to download (status: {row['status']}).")
    name = safe_file_name(str(row.get("name") or run_id), 60, "run")
    path = ctx.exports_dir / f"{name}-{run_id}-model-{folder_state(model)}.zip"
    if path.is_file():
        os.utime(path)  # used now: the cleanup counts its age from here
        return path
    for old in ctx.exports_dir.glob(f"*-{run_id}-model-*.zip"):  # an earlier state of this run's model
        old.unlink(missing_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.part")  # built beside, then renamed: a reader never sees half a zip
    try:
        os.replace(shutil.make_archive(str(tmp), "zip", root_dir=model), path)
    finally:
        Path(f"{tmp}.zip").unlink(missing_ok=True)
    return path


def folder_state(folder: Path) -> str:
    """A short digest of the folder's file names, sizes and modification times (cheap: no file is read)."""
    digest = hashlib.sha1()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        digest.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:10]


def merge(ctx: Context, run_id: str) -> str:
    """Merge the run's adapter into its base model (in a subprocess); a one-line report."""
    row = get_row(ctx, run_id)
    result = merge_mod.merge_in_subprocess(row["run_dir"])
    return f"Merged the adapter of `{run_id}`" + (f": {result}" if result else ".")


def duplicate_request(ctx: Context, run_id: str) -> dict[str, Any]:
    """A request to fill the run's task form with its params (see ``ui.task_tab``'s fill)."""
    row = get_row(ctx, run_id)
    return {
        "task": row["task"],
        "params": row["params"],
        "name": f"{row.get('name') or run_id} (copy)",
        "nonce": time.time(),
    }
