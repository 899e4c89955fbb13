"""The ``ray`` backend: a run is a Ray Job (``JobSubmissionClient``) on the cluster at ``$TRAINPAD_RAY_ADDRESS``.

Settings (environment):

- ``TRAINPAD_RAY_ADDRESS`` (or ``RAY_ADDRESS``): the dashboard's address, e.g. ``http://head:8265``.
- ``TRAINPAD_RAY_TOKEN``: a token for a cluster started with ``RAY_AUTH_MODE=token`` (sent as a Bearer header);
  Ray's own ``RAY_AUTH_TOKEN`` works too.
- ``TRAINPAD_RAY_SHARED_STORAGE``: ``1`` when the cluster's machines see this machine's data folder at the same
  path (NFS, or a head on this machine), ``0`` when they do not; unset: ``1`` only for a head on this machine.
- ``TRAINPAD_RAY_GPUS_PER_PROCESS``: GPUs the job asks for per training process (default 1; 0 on a CPU cluster).
- ``TRAINPAD_RAY_STOP_WAIT_S``: seconds Ray waits after Stop's SIGTERM before SIGKILL (default 120), so the
  worker can save its checkpoint (Ray's own default is 3 s; the job supervisor reads it from the job's env).

Shared storage: the job runs ``python -m engine.run.worker <run folder>`` with this machine's Python and the engine
on ``PYTHONPATH``; the worker writes events, results and the model straight into the run folder, and each poll
copies the job's log into ``train.log``. No shared storage: the engine package travels with the job
(``py_modules``), the config in an environment variable, the cluster's Python must have Trainpad's
dependencies, the data and base model must be Hub ids (or paths that exist on the cluster), and the model comes
back by ``push_to_hub`` (required); events and results come back through the job's log (see ``remote_run``).
Secrets (the HF token) go only into the job's environment variables, which anyone who can read the cluster's
job list can see.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from engine import runfiles as rf
from engine import settings
from engine.errors import UserError
from engine.run import procs
from engine.run.backends import remote_run

STATES = {"PENDING": None, "RUNNING": None, "SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}
PASSED_THROUGH = ("HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_CLIENTS: dict[tuple[str, str | None], Any] = {}
_LAST_LOOK: dict[str, float] = {}


def address() -> str:
    return settings.text("TRAINPAD_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or ""


def available() -> str:
    """Empty when a Ray cluster can be used from here, else what to do (cheap: imports and contacts nothing)."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed here. Install it with `pip install 'trainpad[ray]'`."
    if not address():
        return "no cluster address. Set $TRAINPAD_RAY_ADDRESS to the Ray dashboard's address (e.g. http://head:8265)."
    return ""


def problems(params: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """Why this run cannot go to the cluster (checked again at submit)."""
    why = available()
    if why:
        return [f"Backend `ray` cannot be used: {why}"]
    if shared_storage() or (params.get("push_to_hub") and params.get("hub_repo_id")):
        return []
    return [
        f"The Ray cluster at {address()} does not share this machine's disk, so the model can only come back "
        "through the Hub: turn push_to_hub on and set hub_repo_id (or set TRAINPAD_RAY_SHARED_STORAGE=1 if the "
        "cluster sees this data folder at the same path)."
    ]


def submit(run_id: str, run_dir: Path, secrets: dict[str, str]) -> str:
    """Submit the run as a Ray Job; returns its submission id (``trainpad-<run id>``)."""
    params = _params(run_dir)
    found = problems(params, secrets)
    if found:
        raise UserError(found)
    n = max(1, int(params.get("num_processes") or 1))
    gpus = settings.number("TRAINPAD_RAY_GPUS_PER_PROCESS") * n
    env = {
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",
        "RAY_JOB_STOP_WAIT_TIME_S": settings.text("TRAINPAD_RAY_STOP_WAIT_S"),
        "TRAINPAD_RUN_ID": run_id,
    }
    storage = "shared" if shared_storage() else "hub"
    if storage == "shared":
        env.update({k: os.environ[k] for k in PASSED_THROUGH if os.environ.get(k)})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(procs.ENGINE_ROOT), os.environ.get("PYTHONPATH")]))
        command = procs.worker_command(run_dir, n, fsdp=params.get("distributed") == "fsdp")
        runtime_env: dict[str, Any] = {"env_vars": {**env, **secrets}}
    else:
        env[remote_run.CONFIG_ENV] = (run_dir / rf.CONFIG).read_text(encoding="utf-8")
        env["HF_HUB_OFFLINE"] = "0"  # the model can only come back through the Hub
        env.update({"HF_ENDPOINT": os.environ["HF_ENDPOINT"]} if os.environ.get("HF_ENDPOINT") else {})
        command = ["python", "-m", "engine.run.backends.remote_run"]
        engine_dir = str(procs.ENGINE_ROOT / "engine")
        runtime_env = {"env_vars": {**env, **secrets}, "py_modules": [engine_dir], "excludes": ["__pycache__"]}
    return _client().submit_job(
        entrypoint=shlex.join(command),
        submission_id=f"trainpad-{run_id}",
        runtime_env=runtime_env,
        metadata={"trainpad_run": run_id, "trainpad_storage": storage},
        entrypoint_num_cpus=n if not gpus else 1,
        entrypoint_num_gpus=gpus or None,
    )


def poll(job_id: str, run_dir: Path, secrets: dict[str, str]) -> str | None:
    """Copy the job's log into the run folder (at most every $TRAINPAD_RAY_POLL_S seconds, default 1); None while
    it runs, else how it ended."""
    if time.time() - _LAST_LOOK.get(job_id, 0.0) < settings.number("TRAINPAD_RAY_POLL_S"):
        return None
    _LAST_LOOK[job_id] = time.time()
    client = _client_for(job_id)
    try:
        info = client.get_job_info(job_id)
    except RuntimeError as e:
        if "does not exist" in str(e):
            raise UserError(
                f"The Ray cluster at {address()} has no job `{job_id}` any more (was the cluster restarted?). "
                "Trainpad cannot follow this run: start it again (Duplicate)."
            ) from e
        raise
    status = str(getattr(info.status, "value", info.status))
    lines = client.get_job_logs(job_id).splitlines()
    if status == "PENDING" and not lines:
        lines = [f"[trainpad] Ray job {job_id} is waiting for resources: {info.message or ''}".rstrip()]
    if (info.metadata or {}).get("trainpad_storage") == "shared":  # the worker writes the run folder itself
        remote_run.rewrite(run_dir / rf.LOG, "".join(line + "\n" for line in lines))
    else:
        remote_run.mirror_log(lines, run_dir)
    state = STATES.get(status)
    if state is not None:
        _LAST_LOOK.pop(job_id, None)
    if state == "failed" and not (run_dir / rf.ERROR).exists() and info.message:
        rf.write_json(run_dir / rf.ERROR, {"message": f"The Ray job failed: {info.message}", "type": "RayJobError"})
    return state


def cancel(job_id: str, secrets: dict[str, str]) -> None:
    """Stop the job: Ray sends SIGTERM to the worker (which checkpoints), SIGKILL after the stop wait."""
    _client_for(job_id).stop_job(job_id)


def shared_storage() -> bool:
    """Whether the cluster sees this machine's run folders (setting, else: the head runs on this machine)."""
    setting = settings.text("TRAINPAD_RAY_SHARED_STORAGE")
    if setting:
        return setting.lower() not in ("0", "false", "no")
    host = urlparse(address() if "://" in address() else f"http://{address()}").hostname or ""
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client_for(job_id: str) -> Any:
    """The client of the cluster that runs ``job_id``; UserError when this process has no cluster address."""
    why = available()
    if why:
        raise UserError(
            f"Trainpad cannot follow Ray job `{job_id}` from here: {why} The job may still run on its cluster "
            f"(`ray job status {job_id}`)."
        )
    return _client()


def _client() -> Any:
    """A client for the cluster (made once per address and token: making one checks the connection)."""
    from ray.job_submission import JobSubmissionClient

    token = settings.text("TRAINPAD_RAY_TOKEN")
    key = (address(), token)
    if key not in _CLIENTS:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        _CLIENTS[key] = JobSubmissionClient(address(), headers=headers)
    return _CLIENTS[key]


def _params(run_dir: Path) -> dict[str, Any]:
    config = yaml.safe_load((run_dir / rf.CONFIG).read_text(encoding="utf-8")) or {}
    return config.get("params") or {}
