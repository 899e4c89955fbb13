"""The `trainpad` command line, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import chat_rows, write_jsonl

ROOT = Path(__file__).resolve().parent.parent


def trainpad(*args: str, data_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TRAINPAD_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=300
    )


def write_config(tmp_path: Path, model: Path, rows: int = 80) -> Path:
    write_jsonl(tmp_path / "chat.jsonl", chat_rows(rows))
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(
        f"task: llm_sft\nparams:\n  base_model: {model}\n  data_path: ./chat.jsonl\n"
        "  epochs: 1\n  batch_size: 8\n  max_length: 64\n  use_lora: true\n"
    )
    return cfg


def test_validate_prints_config_and_reports_problems(tmp_path, tiny_llama):
    cfg = write_config(tmp_path, tiny_llama)
    ok = trainpad("validate", str(cfg), "epochs=2", data_dir=tmp_path / "d")
    assert ok.returncode == 0, ok.stderr
    assert "epochs: 2" in ok.stdout and "task: llm_sft" in ok.stdout
    assert "# **Tokens per example**" in ok.stdout and "median" in ok.stdout
    sampled = trainpad("validate", str(cfg), data_dir=tmp_path / "d", env={"TRAINPAD_CHECK_ROWS": "20"})
    assert "# Checked the first 20 of ~80 rows of `chat.jsonl`; the run trains on every row" in sampled.stdout
    bad = trainpad("validate", str(cfg), "epochs=0", "lr=1", data_dir=tmp_path / "d")
    assert bad.returncode == 2
    assert "`epochs` = 0" in bad.stderr and "Unknown parameter `lr`" in bad.stderr and "learning_rate" in bad.stderr


@pytest.mark.slow
def test_run_runs_predict_in_foreground(tmp_path, tiny_llama):
    cfg = write_config(tmp_path, tiny_llama)
    data_dir = tmp_path / "d"
    run = trainpad("run", str(cfg), "--name", "cli-run", data_dir=data_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout
    runs = trainpad("runs", "--json", data_dir=data_dir)
    rows = json.loads(runs.stdout)
    assert [r["name"] for r in rows] == ["cli-run"] and rows[0]["status"] == "succeeded"
    pred = trainpad("predict", rows[0]["id"], "what is 1 plus 1?", data_dir=data_dir)
    assert pred.returncode == 0, pred.stderr
    failed = trainpad("run", str(cfg), "base_model=./missing-model", data_dir=data_dir)
    assert failed.returncode == 2 and "missing-model" in failed.stderr, "refused before anything is queued"
    listing = trainpad("runs", data_dir=data_dir).stdout
    assert "failed" not in listing and "succeeded" in listing and len(listing.strip().splitlines()) == 2
