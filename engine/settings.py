"""Every ``TRAINPAD_*`` environment variable in one table, with typed readers.

A module reads a setting with :func:`text`, :func:`integer`, :func:`number` or :func:`flag`; the name must be in
:data:`SETTINGS` (a test checks that no other module reads ``TRAINPAD_*`` from the environment itself), and
README's table of settings lists the same names. A value that does not parse is a :class:`UserError` naming the
variable and the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from engine.errors import UserError


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # text | int | float | flag
    default: Any
    meaning: str


_ALL = [
    # where and how many
    Setting("TRAINPAD_DATA_DIR", "text", "./trainpad_data", "data folder: runs, SQLite history, uploads, models"),
    Setting("TRAINPAD_CONCURRENCY", "int", 1, "runs trained at once; the rest wait in the queue"),
    Setting("TRAINPAD_CHECK_ROWS", "int", 20_000, "rows of each data file that Check reads (the run reads all)"),
    Setting("TRAINPAD_CHECKS_AT_ONCE", "int", 2, "data checks run at the same time; more wait their turn"),
    Setting("TRAINPAD_MAX_NEW_TOKENS", "int", 1024, "most new tokens one generation may ask for"),
    Setting("TRAINPAD_MAX_PREDICT_ROWS", "int", 10_000, "most rows of a file predicted in the Playground"),
    Setting("TRAINPAD_MAX_PLAYGROUND", "int", 3, "Playground models held in memory at once, all users together"),
    Setting("TRAINPAD_PLAYGROUND_IDLE_S", "float", 600.0, "seconds before an unused Playground model is released"),
    Setting("TRAINPAD_PLAYGROUND_PER_USER", "int", 1, "Playground models one user of a shared instance holds"),
    Setting("TRAINPAD_USER_UPLOAD_GB", "float", 5.0, "uploads one user of a shared instance may keep (0: no cap)"),
    # the studio and shared instances
    Setting("TRAINPAD_AUTH", "text", "", "password login: user:pass, or a file of user:pass lines (secret)"),
    Setting("TRAINPAD_OAUTH", "flag", False, "sign in with Hugging Face (set on a Space with hf_oauth)"),
    Setting("TRAINPAD_ADMINS", "text", "", "users of a shared instance who see every run, comma-separated"),
    Setting("TRAINPAD_MAX_UPLOAD", "text", "2gb", "largest upload"),
    Setting("TRAINPAD_ALLOW_REMOTE_CODE", "flag", False, "let runs turn trust_remote_code on"),
    Setting("TRAINPAD_ALLOW_ENDPOINTS", "flag", False, "a shared instance's users may name http(s) endpoints (judge)"),
    Setting("TRAINPAD_HOST_TOKEN", "flag", False, "a shared instance lends the host's HF_TOKEN to visitors' runs"),
    Setting("TRAINPAD_ALLOWED_ROOTS", "text", "", "folders (':'-separated) a shared instance's users may read"),
    Setting("TRAINPAD_MAX_QUEUED", "int", 3, "runs one user of a shared instance may have waiting (0: no cap)"),
    Setting("TRAINPAD_CLEAN_HOURS", "float", 720.0, "uploads and downloads older than this are removed (shared: 48)"),
    Setting("TRAINPAD_CLEAN_GB", "float", 50.0, "uploads and downloads beyond this size are removed (shared: 10)"),
    Setting("TRAINPAD_ZIP_MAX_MEMBERS", "int", 500_000, "most files in an uploaded ZIP (shared: 50,000)"),
    Setting("TRAINPAD_ZIP_MAX_GB", "float", 50.0, "largest unpacked size of an uploaded ZIP (shared: 10)"),
    # Ray
    Setting("TRAINPAD_RAY_ADDRESS", "text", "", "the Ray cluster's Jobs API address (else RAY_ADDRESS)"),
    Setting("TRAINPAD_RAY_TOKEN", "text", "", "bearer token for the Ray Jobs API (secret)"),
    Setting("TRAINPAD_RAY_GPUS_PER_PROCESS", "float", 1.0, "GPUs a Ray job asks for per training process"),
    Setting("TRAINPAD_RAY_STOP_WAIT_S", "text", "120", "seconds Ray waits for a stopped job to checkpoint"),
    Setting("TRAINPAD_RAY_POLL_S", "float", 1.0, "seconds between looks at a Ray job"),
    Setting("TRAINPAD_RAY_SHARED_STORAGE", "text", "", "1/0: the cluster sees this machine's data folder (auto)"),
    # Hugging Face Jobs
    Setting("TRAINPAD_HF_IMAGE", "text", "", "the Docker image of HF Jobs runs"),
    Setting("TRAINPAD_HF_FLAVOR", "text", "", "the hardware of HF Jobs runs (e.g. a10g-small)"),
    Setting("TRAINPAD_HF_NAMESPACE", "text", "", "the user or organisation HF Jobs run under (default: the token's)"),
    Setting("TRAINPAD_HF_TIMEOUT", "text", "6h", "longest an HF Job may run"),
    Setting("TRAINPAD_HF_POLL_S", "float", 5.0, "seconds between looks at an HF Job"),
    # exports and served endpoints
    Setting("TRAINPAD_LLAMA_CPP_DIR", "text", "", "llama.cpp's GGUF converter folder (else the unpacked one)"),
    Setting("TRAINPAD_SERVE_HOST", "text", "127.0.0.1", "address served endpoints bind to (loopback unless set)"),
    # evaluations
    Setting("TRAINPAD_JUDGE_URL", "text", "", "an OpenAI-compatible endpoint that judges answers (…/v1)"),
    Setting("TRAINPAD_JUDGE_KEY", "text", "", "the judge endpoint's API key (secret; never stored)"),
    Setting("TRAINPAD_JUDGE_MODEL", "text", "", "the model name the judge endpoint is asked for"),
    # set by Trainpad for its own processes
    Setting("TRAINPAD_RUN_ID", "text", "", "(set by Trainpad) the run a worker belongs to"),
    Setting("TRAINPAD_RUN_DIR", "text", "", "(set by Trainpad) a remote job's run folder"),
    Setting("TRAINPAD_CONFIG_YAML", "text", "", "(set by Trainpad) a remote job's config"),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _ALL}


def _raw(name: str) -> str:
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a Trainpad setting: add it to engine/settings.py")
    return os.environ.get(name, "").strip()


def text(name: str, default: str | None = None) -> str:
    """The variable's text; ``default`` (else the table's default) when unset or empty."""
    return _raw(name) or (SETTINGS[name].default if default is None else default)


def _parsed(name: str, kind: type, default: Any) -> Any:
    raw = _raw(name)
    if not raw:
        return SETTINGS[name].default if default is None else default
    try:
        return kind(raw)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise UserError(f"{name}={raw!r} is not {word}. Set it to {word} ({SETTINGS[name].meaning}).") from None


def integer(name: str, default: int | None = None) -> int:
    """The variable as an int; ``default`` (else the table's) when unset; a UserError when it is not a number."""
    return _parsed(name, int, default)


def number(name: str, default: float | None = None) -> float:
    """The variable as a float; ``default`` (else the table's) when unset; a UserError when it is not a number."""
    return _parsed(name, float, default)


def flag(name: str) -> bool:
    """True when the variable is ``1`` (or true/yes/on)."""
    return _raw(name).lower() in ("1", "true", "yes", "on")


def is_set(name: str) -> bool:
    """Whether the variable has a non-empty value."""
    return bool(_raw(name))


def markdown_table() -> str:
    """README's table of settings."""
    rows = [f"| `{s.name}` | {s.default if s.default not in ('', None) else ''} | {s.meaning} |" for s in _ALL]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])
