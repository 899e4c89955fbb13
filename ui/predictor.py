"""The playground's prediction processes: one ``python -m ui.predict_worker RUN_DIR`` per browser session,
started when a run is picked and released when another run is picked, the tab is closed, or the app exits.
"""

from __future__ import annotations

import atexit
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import settings
from engine.errors import UserError
from engine.run.procs import ENGINE_ROOT, worker_env
from engine.train.generation import MAX_NEW_TOKENS_ENV, max_new_tokens_cap
from ui.context import Context
from ui.predict_worker import MARK


class Predictor:
    """One ``python -m ui.predict_worker RUN_DIR`` process, answering one request at a time."""

    def __init__(self, run_dir: str | Path, log_path: Path):
        self.run_dir = str(run_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # closed in close(): lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ui.predict_worker", self.run_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ENGINE_ROOT),
            env={**worker_env(), MAX_NEW_TOKENS_ENV: str(max_new_tokens_cap())},
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.used = time.time()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._unfinished = 0  # requests whose final reply has not been read (a stream the browser left)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith(MARK):
                self._lines.put(line[len(MARK) :])
        self._lines.put(None)

    def ask(self, inputs: Any, timeout: float = 600) -> Any:
        """The model's output for ``inputs``; UserError with the reason otherwise."""
        output = None
        for kind, value in self.stream(inputs, timeout):
            if kind == "output":
                output = value
        return output

    def stream(self, inputs: Any, timeout: float = 600) -> Iterator[tuple[str, Any]]:
        """``("partial", text so far)`` while a streamed reply grows, then ``("output", the model's output)``;
        UserError with the reason otherwise. A stream left unfinished is drained before the next request."""
        self.used = time.time()
        with self._lock:
            while self._unfinished:  # an abandoned stream's remaining lines come first
                self._next_final(timeout)
                self._unfinished -= 1
            if self.proc.poll() is not None:
                raise UserError(f"The prediction process ended (exit code {self.proc.returncode}). Pick the run again.")
            self.proc.stdin.write(json.dumps(inputs) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            self._unfinished += 1
            while True:
                reply = self._next_reply(timeout)
                self.used = time.time()
                if "partial" in reply:
                    yield "partial", reply["partial"]
                    continue
                self._unfinished -= 1
                if "error" in reply:
                    raise UserError(reply["error"])
                yield "output", reply["output"]
                return

    def _next_reply(self, timeout: float) -> dict[str, Any]:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.close()
                raise UserError(f"No prediction after {timeout:.0f}s; the prediction process was stopped.") from None
            if line is None:
                raise UserError("The prediction process ended; see playground.log in the data folder's logs/.")
            reply = json.loads(line)
            if "ready" not in reply:
                return reply

    def _next_final(self, timeout: float) -> None:
        while "partial" in self._next_reply(timeout):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


_SESSIONS: dict[str, Predictor] = {}  # insertion order = least recently used first
_SESSIONS_LOCK = threading.Lock()
MAX_PROCESSES = settings.integer("TRAINPAD_MAX_PLAYGROUND")  # models held at once, all sessions together
IDLE_SECONDS = settings.number("TRAINPAD_PLAYGROUND_IDLE_S")  # an unused one is released after this
PER_USER = settings.integer("TRAINPAD_PLAYGROUND_PER_USER")  # models one user of a shared instance holds at once
SHARE_IDLE_S = 60.0  # another user's model is released for you only after this long unused
_OWNERS: dict[str, str] = {}  # session -> user (shared instances)


def predictor_for(ctx: Context, session: str, run_dir: str, needs: int = 1) -> Predictor:
    """This session's predictor for ``run_dir`` (a previous one for another run is released). At most
    ``MAX_PROCESSES`` live at once: the least recently used is released to make room. ``needs``: how many models
    the asking page holds at once (side by side: 2), so a user of a shared instance keeps that many whatever
    ``PER_USER`` says (their other Playground model is released first)."""
    with _SESSIONS_LOCK:
        current = _SESSIONS.pop(session, None)
        if current is not None and current.run_dir == str(run_dir) and current.proc.poll() is None:
            _SESSIONS[session] = current  # most recently used now
            current.used = time.time()
            return current
        if current is not None:
            current.close()
        shared = getattr(ctx, "shared", False)
        user = ctx.user() if shared else ""
        _make_room(user, max(PER_USER, needs) if shared else MAX_PROCESSES)
        _SESSIONS[session] = Predictor(run_dir, ctx.data_dir / "logs" / "playground.log")
        _OWNERS[session] = user
        _start_reaper()
        return _SESSIONS[session]


def _make_room(user: str, per_user: int) -> None:
    """Release this user's least recently used models beyond their share; when every slot is taken, another
    user's model only once it has been idle for ``SHARE_IDLE_S`` (a busy Playground says so instead)."""
    mine = [s for s in _SESSIONS if _OWNERS.get(s, "") == user]
    while len(mine) >= per_user:
        _close(mine.pop(0))
    while len(_SESSIONS) >= MAX_PROCESSES:
        oldest = next(iter(_SESSIONS))
        if _OWNERS.get(oldest, "") != user and time.time() - _SESSIONS[oldest].used < SHARE_IDLE_S:
            raise UserError(
                f"The Playground is busy: {len(_SESSIONS)} models are loaded for other users (the most this instance "
                "holds at once). Try again in a minute."
            )
        _close(oldest)


def _close(session: str) -> None:
    _OWNERS.pop(session, None)
    _SESSIONS.pop(session).close()


def reap_idle(now: float | None = None) -> int:
    """Release predictors unused for ``IDLE_SECONDS``; how many were released."""
    now = time.time() if now is None else now
    with _SESSIONS_LOCK:
        idle = [s for s, p in _SESSIONS.items() if now - p.used > IDLE_SECONDS or p.proc.poll() is not None]
        gone = [_SESSIONS.pop(s) for s in idle]
    for p in gone:
        p.close()
    return len(gone)


_REAPER: list[threading.Thread] = []


def _start_reaper() -> None:
    if _REAPER and _REAPER[0].is_alive():
        return

    def loop() -> None:
        while True:
            time.sleep(min(60.0, IDLE_SECONDS / 4))
            reap_idle()

    _REAPER[:] = [threading.Thread(target=loop, name="trainpad-playground-reaper", daemon=True)]
    _REAPER[0].start()


def release(session: str) -> None:
    with _SESSIONS_LOCK:
        current = _SESSIONS.pop(session, None)
    if current is not None:
        current.close()


def release_browser(session: str) -> None:
    """Release a browser session's predictors: its own and those of its pages (``<session>:<name>``, side by
    side's two)."""
    for key in [s for s in list(_SESSIONS) if s == session or s.startswith(f"{session}:")]:
        release(key)


@atexit.register
def release_all() -> None:
    for session in list(_SESSIONS):
        release(session)


def active_predictors() -> int:
    return sum(1 for p in _SESSIONS.values() if p.proc.poll() is None)
