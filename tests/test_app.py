"""The studio entry point: no heavy imports in the UI process, flags, auth parsing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import app
from tests.conftest import ROOT

HEAVY = [
    "torch",
    "transformers",
    "datasets",
    "trl",
    "peft",
    "xgboost",
    "sentence_transformers",
    "sklearn",
    "accelerate",
]

PROBE = """
import json, sys
import app
ctx, demo = app.create(sys.argv[1])
ctx.engine.shutdown()
heavy = json.loads(sys.argv[2])
print(json.dumps({"heavy": [m for m in heavy if m in sys.modules], "blocks": len(demo.blocks)}))
"""


def test_ui_process_never_imports_heavy_libraries(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "data"), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["blocks"] > 50  # the whole studio was built, not just imported


def test_flags_and_defaults(monkeypatch):
    for var in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "TRAINPAD_AUTH", "TRAINPAD_CONCURRENCY", "SYSTEM"):
        monkeypatch.delenv(var, raising=False)
    args = app.build_parser().parse_args([])
    assert (args.host, args.port, args.share, args.auth, args.concurrency) == ("127.0.0.1", 7860, False, None, 1)
    args = app.build_parser().parse_args(
        ["--host", "0.0.0.0", "--port", "9000", "--share", "--auth", "a:b", "--data-dir", "d", "--concurrency", "2"]
    )
    assert (args.host, args.port, args.share, args.auth, args.data_dir, args.concurrency) == (
        "0.0.0.0",
        9000,
        True,
        "a:b",
        "d",
        2,
    )


def test_auth_from_value_or_file(tmp_path):
    assert app.parse_auth(None) is None
    assert app.parse_auth("admin:s3:cret") == [("admin", "s3:cret")]
    users = tmp_path / "users.txt"
    users.write_text("# who may log in\nalice:pw1\n\nbob:pw2\n")
    assert app.parse_auth(str(users)) == [("alice", "pw1"), ("bob", "pw2")]
    with pytest.raises(SystemExit, match="expected user:password"):
        app.parse_auth("nocolon")


def test_trainpad_app_passes_its_flags_to_the_studio(monkeypatch):
    from engine import cli

    seen = {}
    monkeypatch.setattr("subprocess.call", lambda argv: seen.setdefault("argv", argv) and 0)
    cli.main(["--data-dir", "d", "app", "--port", "9000", "--share"])
    assert seen["argv"] == [sys.executable, "-m", "app", "--data-dir", "d", "--port", "9000", "--share"]


def test_view_modules_do_not_import_gradio():
    """The view logic is plain Python: importable (and testable) without Gradio."""
    code = "import sys, ui.task_view, ui.runs_view, ui.run_actions, ui.form_values; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
