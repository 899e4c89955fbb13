"""Where runs execute. The UI's backend selector lists :func:`all_backends`; new backends appear here only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str  # stored in the run row (``runs.backend``)
    title: str  # shown in the selector
    concurrency: int  # runs at once
    note: str = ""


def all_backends(concurrency: int = 1) -> list[Backend]:
    """The backends a run can be sent to, the default first."""
    return [
        Backend(
            "local",
            f"Local (this machine, {concurrency} run{'s' if concurrency != 1 else ''} at a time)",
            concurrency,
            "Runs as subprocesses of this app; more runs wait in the queue.",
        ),
    ]


def get_backend(name: str, concurrency: int = 1) -> Backend:
    """The backend called ``name``; ValueError listing the valid names otherwise."""
    for backend in all_backends(concurrency):
        if backend.name == name:
            return backend
    raise ValueError(f"Unknown backend `{name}`. Valid: {', '.join(b.name for b in all_backends(concurrency))}.")
