"""Where runs execute. The UI's backend selector lists :func:`all_backends`; a new backend is one entry here and,
for a remote one, one module in this package.

Every backend runs the same worker command (``python -m engine.run.worker RUN_DIR``) on the run's config file.
``local`` runs it as a subprocess of whichever process starts the run (the supervisor's own path). A remote
backend's module provides four plain functions, called by the supervisor (never by the UI's event handlers):

- ``available() -> str``: "" when usable from here, else why not and how to fix it (install, address, token).
- ``submit(run_id, run_dir, secrets) -> str``: start the job; returns the remote job id (stored with the run).
- ``poll(job_id, run_dir, secrets) -> str | None``: mirror the job's log, events and result files into ``run_dir``
  (idempotent: ``events.jsonl`` only ever grows, so the supervisor's offsets stay valid; several processes may poll)
  and return None while it runs, else ``"succeeded"``, ``"failed"`` or ``"stopped"``. Raises
  :class:`engine.errors.UserError` when it can never follow the job from here (e.g. no token after a restart).
- ``problems(params, secrets) -> list[str]``: why a run with these params (a dict) cannot go there (including
  ``available()``'s reason); checked at Check/Start, so nothing is created for a refused run.
- ``cancel(job_id, secrets) -> None``: stop the job (the worker gets SIGTERM and checkpoints where the backend
  allows it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from types import ModuleType


@dataclass(frozen=True)
class Backend:
    name: str  # stored in the run row (``runs.backend``) and in YAML (``backend:``)
    title: str  # shown in the selector
    note: str = ""
    module: str = ""  # engine.run.backends.<module> for a remote backend; "" for local
    concurrency: int = 1  # local: runs at once in the data folder

    @property
    def remote(self) -> bool:
        return bool(self.module)


def all_backends(concurrency: int = 1) -> list[Backend]:
    """The backends a run can be sent to, the default first; one not usable from here says why in its title."""
    return [_with_status(b) for b in _backends(concurrency)]


def _backends(concurrency: int) -> list[Backend]:
    return [
        Backend(
            "local",
            f"Local (this machine, {concurrency} run{'s' if concurrency != 1 else ''} at a time)",
            "Runs as subprocesses of this machine, on every GPU a run asks for (or the CPU); more runs wait in "
            "the queue.",
            concurrency=concurrency,
        ),
        *REMOTE,
    ]


REMOTE: list[Backend] = [
    Backend(
        "ray",
        "Ray cluster",
        "Runs as a Ray Job on the cluster at $TRAINPAD_RAY_ADDRESS (GPUs per process: "
        "$TRAINPAD_RAY_GPUS_PER_PROCESS, default 1); a restarted app follows it again.",
        module="ray",
    ),
    Backend(
        "hf-jobs",
        "Hugging Face Jobs",
        "Runs on Hugging Face's machines with your token (flavor: $TRAINPAD_HF_FLAVOR, default a10g-small; "
        "billed to your account); the data and base model must be on the Hub, and the model is pushed to "
        "hub_repo_id.",
        module="hf_jobs",
    ),
]


def status(backend: Backend) -> str:
    """Empty when ``backend`` can be used from here, else why not and how to fix it."""
    return operations(backend).available() if backend.remote else ""


def _with_status(backend: Backend) -> Backend:
    why = status(backend)
    if not why:
        return backend
    return replace(backend, title=f"{backend.title} (unavailable: {why})", note=f"Unavailable: {why} {backend.note}")


def get_backend(name: str, concurrency: int = 1) -> Backend:
    """The backend called ``name``; ValueError listing the valid names otherwise."""
    for backend in _backends(concurrency):
        if backend.name == name:
            return backend
    raise ValueError(f"Unknown backend `{name}`. Valid: {', '.join(b.name for b in _backends(concurrency))}.")


def operations(backend: Backend) -> ModuleType:
    """The module with a remote backend's ``available/submit/poll/cancel`` (imported only when used)."""
    return importlib.import_module(f"engine.run.backends.{backend.module}")
