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


@pytest.fixture(scope="module", autouse=True)
def _no_studio_left_registered():
    """A studio registers its context for the path guard (``ui.context.register``): a shared one left behind by a
    test module would make the next modules' previews and galleries read as a visitor's."""
    yield
    import sys

    if context := sys.modules.get("ui.context"):
        context._CURRENT.clear()


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
    from engine.run.supervisor import Supervisor

    sup = Supervisor(data_dir, poll_interval=0.2, grace_period=20).start()
    yield sup
    sup.shutdown(stop_runs=True)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def studio(data_dir):
    """The studio launched in this process on a free port: (url, context)."""
    import app

    ctx, demo = app.create(data_dir)
    port = free_port()
    app.launch(ctx, demo, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", ctx
    demo.close()
    ctx.engine.shutdown(stop_runs=True)
