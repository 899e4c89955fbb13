"""Run one engine function in a child process with limits on time and memory.

For what a user supplies that runs during Check (chat templates rendered over their data): one user's template
cannot take the app's memory or CPU, or slow another user's page. The child runs at a lower priority with an
address-space limit; the parent kills it at the timeout. Arguments go to the child pickled (we made them); the
result comes back as JSON (the child ran the user's template), so nothing it prints can become an object here.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30.0
MEMORY_MB = 1536


def call(func: str, *args: Any, what: str, timeout: float | None = None, memory_mb: int | None = None) -> Any:
    """``module:function(*args)`` in a bounded child (``TIMEOUT_S``, ``MEMORY_MB`` unless given); its JSON-able
    result, or a UserError saying which limit ``what`` (e.g. "The chat template") went past."""
    timeout = TIMEOUT_S if timeout is None else timeout
    memory_mb = MEMORY_MB if memory_mb is None else memory_mb
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engine.preflight.bounded", str(memory_mb)],
            input=pickle.dumps((func, args)),
            capture_output=True,
            timeout=timeout,
            cwd=str(ROOT),
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{what} took more than {timeout:.0f} s to render the data (a loop too long?). Simplify it."
        ) from None
    out = proc.stdout.decode("utf-8", errors="replace").strip().splitlines()
    if proc.returncode != 0 or not out:
        if b"MemoryError" in proc.stderr or proc.returncode in (-9, 137):
            raise UserError(f"{what} needed more than {memory_mb} MB to render the data. Simplify it.")
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what} could not be rendered: {tail[0][:300]}")
    result = json.loads(out[-1])
    if "error" in result:
        raise UserError(result["error"])
    return result["output"]


def _main() -> None:
    import importlib
    import resource

    limit = int(sys.argv[1]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.nice(10)
    func, args = pickle.loads(sys.stdin.buffer.read())
    module, name = func.split(":")
    try:
        output = getattr(importlib.import_module(module), name)(*args)
        line = json.dumps({"output": output})
    except UserError as e:
        line = json.dumps({"error": str(e)})
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        sys.exit(3)
    print(line, flush=True)


if __name__ == "__main__":
    _main()
