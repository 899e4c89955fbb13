"""Run one engine function in a child process with limits on time and memory.

For what a user supplies that runs during Check (chat templates rendered over their data): one user's template
cannot take the app's memory or CPU, or slow another user's page. The child runs at a lower priority with an
address-space limit; the parent kills it at the timeout. Arguments go to the child pickled (we made them); the
result comes back as JSON (the child ran the user's template), so nothing it prints can become an object here.

Children are forked by a warm server process (started once, with its own environment and the modules a call needs
already imported), so a call costs a fork, not a Python start and its imports (~0.6 s of every Check and Start
of chat data). The server ends with the process that started it. Where it cannot run (no ``fork``), each call
starts its own child.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30.0
MEMORY_MB = 1536
PRELOAD = ("pandas", "jinja2", "engine.llm.data")  # what the calls' arguments and functions need (~110 MB)
ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

_server: dict[str, Any] = {}
_lock = threading.Lock()


def call(func: str, *args: Any, what: str, timeout: float | None = None, memory_mb: int | None = None) -> Any:
    """``module:function(*args)`` in a bounded child (``TIMEOUT_S``, ``MEMORY_MB`` unless given); its JSON-able
    result, or a UserError saying which limit ``what`` (e.g. "The chat template") went past."""
    timeout = TIMEOUT_S if timeout is None else timeout
    memory_mb = MEMORY_MB if memory_mb is None else memory_mb
    request = pickle.dumps((func, args, memory_mb))
    try:
        conn = _connect()
    except OSError:
        return _answer(*_run_once(request, timeout), what=what, timeout=timeout, memory_mb=memory_mb)
    return _answer(*_ask(conn, request, timeout), what=what, timeout=timeout, memory_mb=memory_mb)


def warm() -> None:
    """Start the server in the background (once), so that the first Check does not wait for it."""
    if _server.get("warming") is None:
        _server["warming"] = threading.Thread(target=_warm, daemon=True)
        _server["warming"].start()


def _warm() -> None:
    try:
        _connect().close()
    except OSError:
        pass


def _answer(out: str | None, failed: str, *, what: str, timeout: float, memory_mb: int) -> Any:
    """The child's JSON line -> its output, or the UserError for what went wrong (``failed``: "timeout",
    "memory" or the child's last words)."""
    if failed == "timeout":
        raise UserError(f"{what} took more than {timeout:.0f} s to render the data (a loop too long?). Simplify it.")
    if failed == "memory":
        raise UserError(f"{what} needed more than {memory_mb} MB to render the data. Simplify it.")
    if out is None:
        raise UserError(f"{what} could not be rendered: {failed[:300] or 'no output'}")
    result = json.loads(out)
    if "error" in result:
        raise UserError(result["error"])
    if "failed" in result:
        raise UserError(f"{what} could not be rendered: {str(result['failed'])[:300]}")
    return result["output"]


# --- the warm server ---------------------------------------------------------------------------------------------


def _connect() -> socket.socket:
    """A connection to the server (started, or started again after it ended)."""
    if not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX"):
        raise OSError("no fork here")
    with _lock:
        proc = _server.get("proc")
        if proc is None or proc.poll() is not None:
            _start_server()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(_server["path"])
        return conn


def _start_server() -> None:
    if _server.get("path"):  # a server that ended without cleaning up (killed)
        shutil.rmtree(os.path.dirname(_server["path"]), ignore_errors=True)
    folder = tempfile.mkdtemp(prefix="trainpad-bounded-")  # mode 0700: only this user can connect
    path = os.path.join(folder, "s")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.preflight.bounded", "--serve", path],
        stdin=subprocess.PIPE,  # closed when this process ends: the server ends too
        stdout=subprocess.PIPE,
        cwd=str(ROOT),
        env={**os.environ, **ENV},
    )
    ready = proc.stdout.readline() if proc.stdout else b""
    if ready.strip() != b"ready":
        proc.kill()
        raise OSError("the bounded server did not start")
    _server.update(proc=proc, path=path)


def _ask(conn: socket.socket, request: bytes, timeout: float) -> tuple[str | None, str]:
    """Send ``request`` to a forked child; (its JSON line or None, "" or why it failed)."""
    deadline = time.monotonic() + timeout
    with conn:
        conn.sendall(struct.pack("!Q", len(request)) + request)
        conn.shutdown(socket.SHUT_WR)
        data, pid = b"", 0
        while True:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = conn.recv(1 << 16)
            except TimeoutError:
                _kill(pid or _pid_of(data))
                return None, "timeout"
            if not chunk:
                break
            data += chunk
            pid = pid or _pid_of(data)
    lines = data.decode("utf-8", errors="replace").splitlines()
    body = [line for line in lines[1:] if line.strip()]
    if body and body[-1] == "MemoryError":
        return None, "memory"
    return (body[-1], "") if body else (None, "the check's process ended without an answer (out of memory?)")


def _pid_of(data: bytes) -> int:
    head, sep, _ = data.partition(b"\n")
    return int(head) if sep and head.isdigit() else 0


def _kill(pid: int) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _serve(path: str) -> None:
    """The server: import what calls need, then fork one child per connection until the parent ends."""
    import importlib
    import select

    for module in PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the system
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nothing a child prints can fill a pipe no one reads
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1 << 12):
            break  # the parent ended
        if listener in readable:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                _child(conn)
            conn.close()
    os.unlink(path)
    os.rmdir(os.path.dirname(path))


def _child(conn: socket.socket) -> None:
    """One call in a forked child: its pid first, then its JSON line (or ``MemoryError``); never returns."""

    try:
        conn.sendall(f"{os.getpid()}\n".encode())
        head = _recv_exact(conn, 8)
        func, args, memory_mb = pickle.loads(_recv_exact(conn, struct.unpack("!Q", head)[0]))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.alarm(int(TIMEOUT_S * 4))  # a last stop, should the parent be gone
        _limit(memory_mb)
        conn.sendall((_result_line(func, args) + "\n").encode())
    finally:
        os._exit(0)


def _limit(memory_mb: int) -> None:
    """This process's limits for one call: its address space, and a lower priority."""
    import resource

    limit = int(memory_mb) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.nice(10)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("the request ended early")
        data += chunk
    return data


def _result_line(func: str, args: tuple) -> str:
    """``{"output": …}``, ``{"error": …}`` (a UserError), ``{"failed": …}`` (another exception), or
    ``MemoryError``."""
    import importlib

    module, name = func.split(":")
    try:
        return json.dumps({"output": getattr(importlib.import_module(module), name)(*args)})
    except UserError as e:
        return json.dumps({"error": str(e)})
    except MemoryError:
        return "MemoryError"
    except Exception as e:
        return json.dumps({"failed": f"{type(e).__name__}: {e}"})


# --- one child per call (no fork here) ---------------------------------------------------------------------------


def _run_once(request: bytes, timeout: float) -> tuple[str | None, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engine.preflight.bounded"],
            input=request,
            capture_output=True,
            timeout=timeout,
            cwd=str(ROOT),
            env={**os.environ, **ENV},
        )
    except subprocess.TimeoutExpired:
        return None, "timeout"
    lines = proc.stdout.decode("utf-8", errors="replace").strip().splitlines()
    if lines and lines[-1] == "MemoryError" or proc.returncode in (-9, 137):
        return None, "memory"
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        return None, tail[0]
    return lines[-1], ""


def _main() -> None:

    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2])
        return
    func, args, memory_mb = pickle.loads(sys.stdin.buffer.read())
    _limit(memory_mb)
    print(_result_line(func, args), flush=True)


if __name__ == "__main__":
    _main()
