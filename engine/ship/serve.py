"""A served endpoint: an OpenAI-compatible server for a finished run, as a job (``engine.run.jobs``).

The server is an existing one, never our own: ``transformers serve`` for the run's model folder, llama.cpp's server
(``llama_cpp.server``) for a GGUF export, or vLLM when it is installed and a GPU is there. ``python -m
engine.ship.serve JOB_DIR`` starts it in its process group, writes ``result.json`` ({"url", "model", ...}) once it
answers, and ends with it; Stop (SIGTERM to the group) ends both. It binds to $TRAINPAD_SERVE_HOST (127.0.0.1).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from engine import runfiles as rf
from engine import settings
from engine.errors import UserError
from engine.run import jobs

READY_TIMEOUT_S = 300.0
ENGINES = ("transformers", "llama.cpp", "vllm")


def host() -> str:
    return settings.text("TRAINPAD_SERVE_HOST") or "127.0.0.1"


def server_command(engine: str, model: Path, port: int) -> list[str]:
    """The server's command line (a list: never a shell)."""
    where = ["--host", host(), "--port", str(port)]
    if engine == "llama.cpp":
        if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
            raise UserError("Serving a GGUF needs llama-cpp-python[server]: `pip install -e '.[export]'`")
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), *where, "--n_ctx", "2048"]
    if engine == "vllm":
        vllm = shutil.which("vllm")
        if vllm is None:
            raise UserError("vLLM is not installed here (`pip install vllm` on a GPU machine).")
        return [vllm, "serve", str(model), *where]
    if engine != "transformers":
        raise UserError(f"engine must be one of {', '.join(ENGINES)}; got `{engine}`.")
    cli = Path(sys.executable).with_name("transformers")
    return [str(cli), "serve", str(model), *where, "--device", "cpu" if not _has_gpu() else "auto"]


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def model_name(engine: str, model: Path) -> str:
    """The ``model`` field requests name (each server has its own)."""
    return str(model)


def examples(url: str, model: str) -> dict[str, str]:
    """A ``curl`` line and an ``openai`` client snippet for the endpoint."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}], "temperature": 0})
    curl = f"curl {url}/chat/completions -H 'Content-Type: application/json' -d '{body}'"
    client = (
        "from openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}", api_key="none")\n'
        f"reply = client.chat.completions.create(model={model!r}, "
        'messages=[{"role": "user", "content": "Hello!"}], temperature=0)\n'
        "print(reply.choices[0].message.content)"
    )
    return {"curl": curl, "openai": client}


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UserError(f"The server ended before it answered (exit code {proc.returncode}); see the job's log.")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:  # noqa: S310 - our own loopback server
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise UserError(f"The server did not answer within {timeout:.0f}s; see the job's log.")


def run_server(job_dir: Path) -> int:
    spec = rf.read_json(job_dir / jobs.JOB_FILE) or {}
    engine, port = spec.get("engine") or "transformers", int(spec["port"])
    model = Path(spec.get("gguf") or Path(spec["run_dir"]) / rf.MODEL_DIR)
    if not model.exists():
        raise UserError(f"{model} does not exist: export the run first, or serve its model folder.")
    proc = subprocess.Popen(server_command(engine, model, port), stdin=subprocess.DEVNULL)
    try:
        url = f"http://{'127.0.0.1' if host() in ('0.0.0.0', '::') else host()}:{port}/v1"
        wait_ready(url, proc)
        name = model_name(engine, model)
        rf.write_json(job_dir / jobs.RESULT, {"url": url, "model": name, "engine": engine, **examples(url, name)})
        print(f"[trainpad] serving {model} at {url}", flush=True)
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    job_dir = Path((argv or sys.argv[1:])[0]).resolve()
    try:
        return run_server(job_dir)
    except Exception as e:  # noqa: BLE001 - reported through error.json
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        rf.write_json(job_dir / jobs.ERROR, {"message": message})
        print(f"[trainpad] serve failed: {message}", flush=True)
        return 1


def describe(job: dict[str, Any]) -> str:
    """Markdown for a serve job's row: its URL and how to call it."""
    result = job.get("result") or {}
    if not result:
        return f"Endpoint {job['status']}…"
    return f"**{result['url']}** ({result['engine']})\n\n```bash\n{result['curl']}\n```\n\n```python\n{result['openai']}\n```"


if __name__ == "__main__":
    sys.exit(main())
