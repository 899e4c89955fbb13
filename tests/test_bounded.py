"""The bounded child (engine.preflight.bounded): a warm server forks each call's child with its limits; the answer,
the time and memory limits and a crash come back as the caller's values or clear errors, and the server does not
outlive the process that started it."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from engine.errors import UserError
from engine.preflight import bounded

HERE = "tests.bounded_calls"


def children_left(server: int) -> list:
    """The server's children still running after up to 5 s (an ended child may take a moment to go)."""
    deadline = time.time() + 5
    while True:
        left = [p for p in psutil.Process(server).children() if p.status() != psutil.STATUS_ZOMBIE]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.1)


def server_pid() -> int:
    return bounded._server["proc"].pid


def test_calls_are_forked_by_one_warm_server_with_their_limits():
    first, second = (bounded.call(f"{HERE}:pid", what="The test") for _ in range(2))
    server = server_pid()
    assert first != second and server not in (first, second), "a child per call, not the server itself"
    assert bounded.call("os.path:join", "a", "b", what="The test") == "a/b"
    with pytest.raises(UserError, match="The test needed more than 300 MB"):
        bounded.call(f"{HERE}:hog", 600, what="The test", memory_mb=300)
    t0 = time.time()
    with pytest.raises(UserError, match="The test took more than 1 s"):
        bounded.call("time:sleep", 30, what="The test", timeout=1)
    assert time.time() - t0 < 5
    with pytest.raises(UserError, match="The test could not be rendered: ValueError: nope"):
        bounded.call(f"{HERE}:boom", what="The test")
    assert server_pid() == server and psutil.pid_exists(server), "one server served them all"
    assert children_left(server) == [], "each child ended (the one past its time was killed)"


def test_a_server_that_ended_is_started_again():
    bounded.call(f"{HERE}:pid", what="The test")
    old = bounded._server["proc"]
    old.kill()
    old.wait()
    assert bounded.call("os.path:join", "x", "y", what="The test") == "x/y"
    assert server_pid() != old.pid


def test_the_server_ends_with_the_process_that_started_it():
    code = "from engine.preflight import bounded; bounded.call('os.path:join', 'a', what='t'); print(bounded._server['proc'].pid)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    server = int(out.stdout.split()[-1])
    deadline = time.time() + 10
    while (
        psutil.pid_exists(server) and psutil.Process(server).status() != psutil.STATUS_ZOMBIE and time.time() < deadline
    ):
        time.sleep(0.1)
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE


def test_without_the_server_each_call_starts_its_own_child(monkeypatch):
    def no_server() -> None:
        raise OSError("no fork here")

    monkeypatch.setattr(bounded, "_connect", no_server)
    assert bounded.call("os.path:join", "a", "b", what="The test") == "a/b"
    with pytest.raises(UserError, match="needed more than 300 MB"):
        bounded.call(f"{HERE}:hog", 600, what="The test", memory_mb=300)
    with pytest.raises(UserError, match="took more than 1 s"):
        bounded.call("time:sleep", 30, what="The test", timeout=1)
    with pytest.raises(UserError, match="could not be rendered: ValueError: nope"):
        bounded.call(f"{HERE}:boom", what="The test")
