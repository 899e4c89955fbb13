"""What a run may ask for on this instance. A local single-user studio trusts its user (the operator); a shared one
(a Space, a public link, --host 0.0.0.0) does not: nothing a visitor types may reach the host beyond the run
folders and that visitor's own uploads.

The supervisor applies the policy to every submission, whichever way it came (UI, API, CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.data import names_local_path
from engine.errors import Problem

PATH_FIELDS = ("data_path", "valid_path", "base_model")


@dataclass(frozen=True)
class Policy:
    shared: bool = False  # visitors are not the operator
    allow_remote_code: bool = False  # trust_remote_code may be turned on (the operator said so)
    host_token: bool | None = None  # the host's HF token may serve runs that bring none (None: only when not shared)
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)  # folders visitors may name, beyond uploads
    max_queued_per_user: int = 0  # 0 = no cap

    @property
    def uses_host_token(self) -> bool:
        return (not self.shared) if self.host_token is None else self.host_token

    @classmethod
    def from_env(cls, shared: bool = False) -> Policy:
        """The operator's settings: TRAINPAD_ALLOW_REMOTE_CODE=1, TRAINPAD_HOST_TOKEN=1 (shared instances only),
        TRAINPAD_ALLOWED_ROOTS (folders separated by ':'), TRAINPAD_MAX_QUEUED (per user)."""
        env = os.environ.get
        roots = tuple(Path(p).expanduser().resolve() for p in (env("TRAINPAD_ALLOWED_ROOTS") or "").split(":") if p)
        return cls(
            shared=shared,
            allow_remote_code=env("TRAINPAD_ALLOW_REMOTE_CODE") == "1",
            host_token=True if env("TRAINPAD_HOST_TOKEN") == "1" else None,
            allowed_roots=roots,
            max_queued_per_user=int(env("TRAINPAD_MAX_QUEUED") or (3 if shared else 0)),
        )


def problems(policy: Policy, params: Any, runs_dir: Path, user_dirs: list[Path]) -> list[str]:
    """Why this instance refuses ``params``: remote code, a resume point outside the run folders, and on a
    shared instance local paths outside the user's uploads and the allowed folders (no folder is listed)."""
    found: list[str] = []
    if getattr(params, "trust_remote_code", False) and not policy.allow_remote_code:
        found.append(
            Problem(
                "trust_remote_code is off on this instance: a model's own Python code would run on the server. "
                "The operator can allow it (--allow-remote-code or TRAINPAD_ALLOW_REMOTE_CODE=1"
                + ("; never on by default on a shared instance)." if policy.shared else ")."),
                field="trust_remote_code",
            )
        )
    resume = str(getattr(params, "resume_from", "") or "")
    if resume and not _is_checkpoint_of_a_run(Path(resume), runs_dir):
        found.append(
            Problem(
                "resume_from must be a checkpoint folder of one of this instance's runs (Resume fills it in); "
                f"`{Path(resume).name}` is not.",
                field="resume_from",
            )
        )
    if policy.shared:
        roots = [*user_dirs, *policy.allowed_roots]
        for name in PATH_FIELDS:
            value = str(getattr(params, name, "") or "")
            if value and names_local_path(value) and not any(inside(value, r) for r in roots):
                found.append(
                    Problem(
                        f"{name}: on this shared instance a local path must be one of your uploads (or a folder the "
                        "operator allowed); upload the file, or give a Hub id.",
                        field=name,
                    )
                )
    return found


def inside(path: str | Path, root: Path) -> bool:
    """Whether ``path`` (after resolving links) is ``root`` or below it."""
    try:
        Path(path).expanduser().resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a link loop
        return False


def _is_checkpoint_of_a_run(path: Path, runs_dir: Path) -> bool:
    """``<runs_dir>/<run>/checkpoints/<checkpoint>`` (after resolving links), and a folder."""
    try:
        rel = path.expanduser().resolve().relative_to(runs_dir.resolve())
    except (ValueError, OSError):
        return False
    return len(rel.parts) == 3 and rel.parts[1] == "checkpoints" and path.is_dir()
