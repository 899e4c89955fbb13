"""Shared fixtures: tiny models built once per session, an isolated data folder per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "trainpad_data"
    monkeypatch.setenv("TRAINPAD_DATA_DIR", str(d))
    return d


@pytest.fixture
def supervisor(data_dir):
    from engine.supervisor import Supervisor

    sup = Supervisor(data_dir, poll_interval=0.2, grace_period=20).start()
    yield sup
    sup.shutdown(stop_runs=True)
