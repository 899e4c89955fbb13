"""Process plumbing shared by the supervisor, predict, merge, the CLI and the playground: where data lives,
the worker's command and environment, running an engine module in a child process, and process identity
(pid + start time, so that a reused pid is never signalled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from engine import settings
from engine.errors import UserError

ENGINE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding engine/ (cwd and PYTHONPATH of workers)
DEFAULT_DATA_DIR = "trainpad_data"


def data_dir_from_env(explicit: str | Path | None = None) -> Path:
    """The data folder: explicit > $TRAINPAD_DATA_DIR > /data on a Space with storage > ./trainpad_data."""
    if explicit:
        return Path(explicit)
    if settings.is_set("TRAINPAD_DATA_DIR"):
        return Path(settings.text("TRAINPAD_DATA_DIR"))
    if os.environ.get("SYSTEM") == "spaces" and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/trainpad")
    return Path(DEFAULT_DATA_DIR)


def worker_command(run_dir: Path, num_processes: int = 1, fsdp: bool = False) -> list[str]:
    """The command that runs one run: the worker, or ``accelerate launch`` of it over N processes (DDP, or FSDP).

    ``--multi_gpu`` is what makes accelerate start N processes even on a CPU-only machine (gloo); ``--cpu``
    with several processes would silently run one."""
    worker = ["-m", "engine.run.worker", str(run_dir)]
    if num_processes <= 1:
        return [sys.executable, *worker]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]
    if fsdp:
        launch += [
            "--use_fsdp",
            "--fsdp_sharding_strategy",
            "FULL_SHARD",
            "--fsdp_auto_wrap_policy",
            "TRANSFORMER_BASED_WRAP",
        ]
        launch += ["--fsdp_state_dict_type", "FULL_STATE_DICT"]
    return [*launch, *worker]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a run's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What a worker inherits from the app's environment: the machine's set-up, never its secrets (HF_TOKEN,
# TRAINPAD_AUTH, cloud keys...). A run's own token comes in ``secrets``.
ENV_ALLOWED = {"PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SHELL", "TERM", "PWD"}
ENV_ALLOWED_PREFIXES = (
    "LC_",
    "PYTHON",
    "VIRTUAL_ENV",
    "CONDA",
    "LD_LIBRARY_PATH",
    "XDG_",
    "SSL_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_",
    "HF_ENDPOINT",
    "HF_HUB_ENABLE",
    "HF_HUB_DISABLE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "TORCH",
    "CUDA",
    "NVIDIA",
    "NCCL",
    "OMP_",
    "MKL_",
    "OPENBLAS",
    "KMP_",
    "MALLOC_",
    "ACCELERATE_",
    "PYTORCH_",
    "TRAINPAD_DATA_DIR",
    "WANDB_MODE",
    "RAY_",
)
SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRAINPAD_AUTH")


def worker_env(secrets: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: an allow-list of ours (no host secrets), the run's own secrets, and allocator
    settings that speed up CPU training. Without a token of its own, the run may not fall back on a token saved
    on this machine (``huggingface-cli login``)."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}
    for name in SECRET_NAMES:
        env.pop(name, None)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TQDM_DISABLE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ENGINE_ROOT), env.get("PYTHONPATH", "")]))
    env.update(secrets or {})
    if not env.get("HF_TOKEN"):
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    return env


def run_engine_module(
    module: str, run_dir: str | Path, payload: Any = None, timeout: float = 600, what: str = ""
) -> Any:
    """Run ``python -m MODULE RUN_DIR`` (JSON ``payload`` on stdin) in a worker environment and return the
    ``output`` of the JSON line it prints last; UserError with its ``error`` (or stderr tail) otherwise.

    Keeps heavy imports (torch & co.) out of the caller, e.g. the UI process.
    """
    proc = subprocess.run(
        [sys.executable, "-m", module, str(run_dir)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ENGINE_ROOT),
        env=worker_env(),
    )
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise UserError(f"{what or module} failed (exit code {proc.returncode}): {tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise UserError(result["error"])
    return result["output"]


def started_at(pid: int) -> float | None:
    """The start time of process ``pid`` (None if there is none)."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def this_process() -> tuple[int, float]:
    """This process's identity: pid and start time."""
    return os.getpid(), started_at(os.getpid()) or 0.0


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not a zombie, not a reused pid)."""
    return live_process(pid, started) is not None


def live_process(pid: int | None, started: float | None) -> psutil.Process | None:
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if started and abs(proc.create_time() - started) > 1.0:
            return None  # the pid was reused by another process
        return proc
    except psutil.Error:
        return None


def run_processes(run_dir: str | Path | None) -> list[psutil.Process]:
    """Every live process of a run, whatever its process group: the worker, accelerate's launcher and each rank
    all carry the run folder in their command line (``-m engine.run.worker RUN_DIR``); ranks that torchrun put
    in process groups of their own, or that outlived a killed launcher, are found too."""
    if not run_dir:
        return []
    wanted = str(run_dir).rstrip("/")
    found = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if any(str(arg).rstrip("/") == wanted for arg in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def signal_run(row: dict[str, Any], sig: int) -> bool:
    """Send ``sig`` to every process of a run: its process group while its leader is still that run's (pid +
    start time checked), and every process naming the run's folder (:func:`run_processes`: ranks in groups of
    their own, leftovers of a dead leader). True when one was signalled."""
    sent = False
    pgid = row.get("pgid") or row.get("pid")
    if pgid and is_alive(row.get("pid"), row.get("pid_started")):
        try:
            os.killpg(pgid, sig)
            sent = True
        except (ProcessLookupError, PermissionError):
            pass
    for proc in run_processes(row.get("run_dir")):
        try:
            proc.send_signal(sig)
            sent = True
        except psutil.Error:
            pass
    return sent


def signal_name(code: int) -> str:
    return signal.Signals(code).name if code in signal.Signals._value2member_map_ else str(code)
