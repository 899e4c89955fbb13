"""Limits of a shared instance that cost disk, time and memory: one export zip per run, the cleanup of old uploads
and exports, the bounded pre-launch data check, and paths named inside data files."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from engine import runfiles as rf
from engine.errors import UserError
from ui import run_actions
from ui.context import Context


def finished_run(ctx: Context, run_id: str, name: str, user: str = "") -> Path:
    """A succeeded run with a small model folder, as the worker leaves it."""
    run_dir = ctx.engine.runs_dir / run_id
    (run_dir / rf.MODEL_DIR).mkdir(parents=True)
    (run_dir / rf.MODEL_DIR / "config.json").write_text("{}")
    (run_dir / rf.MODEL_DIR / "weights.bin").write_bytes(os.urandom(2000))
    row = {"id": run_id, "name": name, "task": "llm_sft", "status": "succeeded", "params": "{}"}
    ctx.engine.store.insert_run({**row, "run_dir": str(run_dir), "key_metric_name": "eval_loss", "user": user})
    return run_dir


def as_user(ctx: Context, user: str) -> Context:
    ctx.user = lambda: user  # the user a request would carry
    return ctx


def test_one_export_zip_per_run_reused_replaced_and_deleted_with_the_run(supervisor):
    ctx = Context(supervisor)
    run_dir = finished_run(ctx, "r1", "x" * 300 + "/évil name")  # a long name with a slash: no "name too long"
    first = run_actions.download_zip(ctx, "r1")
    assert first.parent == ctx.exports_dir and len(first.name) < 120 and "r1" in first.name
    assert sorted(zipfile.ZipFile(first).namelist()) == ["config.json", "weights.bin"]
    built = first.stat().st_mtime_ns
    time.sleep(0.01)
    assert run_actions.download_zip(ctx, "r1") == first and first.stat().st_mtime_ns == built, "reused, not re-zipped"
    (run_dir / rf.MODEL_DIR / "extra.json").write_text("{}")  # the model folder changed (e.g. merged)
    second = run_actions.download_zip(ctx, "r1")
    assert second != first and not first.exists() and "extra.json" in zipfile.ZipFile(second).namelist()
    assert [p.name for p in ctx.exports_dir.iterdir()] == [second.name], "one zip per run, no half-built files"
    ctx.supervisor.delete("r1")
    assert not second.exists(), "deleting the run deletes its zip"


def test_exports_stay_per_user_on_a_shared_instance(supervisor):
    ann = as_user(Context(supervisor, shared=True), "ann")
    finished_run(ann, "ra", "mine", user="ann")
    zipped = run_actions.download_zip(ann, "ra")
    assert zipped.parent.name == "ann"
    bob = as_user(Context(supervisor, shared=True), "bob")
    with pytest.raises(UserError, match="No run with id `ra`"):
        run_actions.download_zip(bob, "ra")
    assert list(bob.exports_dir.iterdir()) == []
    ann.supervisor.delete("ra")
    assert not zipped.exists()
