"""The ``hf-jobs`` backend: a run is a Hugging Face Job, paid by the user's token, that pushes its model to the Hub.

Settings (environment):

- ``TRAINPAD_HF_IMAGE``: a Docker image with Trainpad installed; the job runs it as it is. Default: on a Space,
  that Space's own image (``hf.co/spaces/$SPACE_ID``: a duplicated Trainpad Space has everything); elsewhere
  :data:`DEFAULT_IMAGE`, PyTorch's public CUDA image, where the job first installs the Trainpad this studio runs
  (``hf_ship``: this engine as a wheel in the user's private repo ``<namespace>/trainpad-jobs``, its dependencies
  pinned to the versions installed here), shown as the run's phase "installing Trainpad on the job…".
- ``TRAINPAD_HF_FLAVOR``: the hardware (``a10g-small`` by default; ``cpu-basic`` ... ``h200x8``); a run's
  ``hf_flavor`` parameter (the form's choice) wins.
- ``TRAINPAD_HF_NAMESPACE``: the user or organization billed (default: the token's user).
- ``TRAINPAD_HF_TIMEOUT``: the job's time limit (default ``6h``; Hugging Face's own default is 30 minutes).
- ``TRAINPAD_HF_POLL_S``: seconds between two looks at the job's stage (default 5).
- ``HF_ENDPOINT``: the Hub's address (tests point it at a fake).

The job runs ``python -m engine.run.backends.remote_run`` with the run's config in an environment variable and the
token as a secret; the worker trains, pushes the model to ``hub_repo_id`` and prints its events and result
files to the log, which a thread here follows into the run folder. The token lives only in the memory of the
process that queued the run: after a restart the job goes on (and pushes its model), but Trainpad cannot follow
it, and says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine import runfiles as rf
from engine import settings
from engine.errors import UserError
from engine.run.backends import hf_flavors, hf_ship, remote_run

# The image of a job started from a local studio (the one place it is named): PyTorch's own runtime image on Docker
# Hub, maintained by the PyTorch team, carrying the torch this Trainpad pins with CUDA 12.6 (the widest range of
# drivers; Blackwell GPUs need CUDA 12.8+) on Ubuntu's Python. Trainpad is installed in it when the job starts.
DEFAULT_IMAGE = "pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime"
IMAGE_PYTHON, IMAGE_TORCH, IMAGE_CUDA = "3.12", "2.13.0", "12.6"
NO_KERNELS = ("rtx-pro-6000",)  # Blackwell (sm_120): no kernels in a CUDA 12.6 build of torch
DEFAULT_FLAVOR = "a10g-small"
COMMAND = ["python", "-m", "engine.run.backends.remote_run"]
STAGES = {"COMPLETED": "succeeded", "ERROR": "failed", "CANCELED": "stopped", "DELETED": "stopped"}
_FOLLOWERS: dict[str, _Follower] = {}
_LAST_LOOK: dict[str, tuple[float, str | None]] = {}
_LOCK = threading.Lock()


def available() -> str:
    """Empty when Hugging Face Jobs can be reached from here, else what to do (contacts nothing)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set, so the Hub cannot be reached. Unset it to use Hugging Face Jobs."
    return ""


def problems(params: dict[str, Any], secrets: dict[str, str]) -> list[str]:
    """Why this run cannot go to Hugging Face Jobs, every reason at once (checked again at submit)."""
    why = available()
    found = [f"Backend `hf-jobs` cannot be used: {why}"] if why else []
    if not secrets.get("HF_TOKEN"):
        found.append(
            "Hugging Face Jobs run with your token: enter a Hugging Face token with write access "
            "(the job is billed to it and pushes the model with it)."
        )
    if not (params.get("push_to_hub") and params.get("hub_repo_id")):
        found.append(
            "A Hugging Face Job returns its model only through the Hub: turn push_to_hub on and set hub_repo_id "
            "(e.g. your-name/my-model)."
        )
    found += local_path_problems(params)
    name = flavor(params)
    if name not in flavors():
        found.append(f"Hugging Face Jobs have no flavor `{name}` (hf_flavor). Valid: {', '.join(flavors())}.")
    elif image() == DEFAULT_IMAGE and name.startswith(NO_KERNELS):
        found.append(
            f"`{name}` has Blackwell GPUs, which the default image's torch (CUDA {IMAGE_CUDA}) cannot use: pick "
            "another hf_flavor, or set TRAINPAD_HF_IMAGE to an image with CUDA 12.8 or later and Trainpad installed."
        )
    return found


def local_path_problems(params: dict[str, Any]) -> list[str]:
    """Inputs that are files of this machine, which a job on Hugging Face cannot read."""
    found = []
    for key in ("base_model", "data_path", "valid_path"):
        value = str(params.get(key) or "")
        if value and Path(value).exists():
            found.append(
                f"`{key}` is {value}, a path on this machine; a Hugging Face Job cannot read it. Upload it to the "
                "Hub (`hf upload your-name/name <path>`) and use its id instead."
            )
    if params.get("resume_from"):
        found.append("Resuming from a checkpoint on this machine is not possible on Hugging Face Jobs: run it locally.")
    return found


def submit(run_id: str, run_dir: Path, secrets: dict[str, str]) -> str:
    """Start the job; returns ``<namespace>/<job id>``."""
    params = _params(run_dir)
    found = problems(params, secrets)
    if found:
        raise UserError(found)
    api = _api(secrets)
    ns = settings.text("TRAINPAD_HF_NAMESPACE") or _call(lambda: api.whoami()["name"])
    chosen, command = image(), COMMAND
    if chosen == DEFAULT_IMAGE:  # a public image: the job installs the Trainpad shipped with it first
        wheel, url = hf_ship.ship(api, ns, endpoint())
        command = hf_ship.job_command(url, wheel.sha256)
    env = {
        remote_run.CONFIG_ENV: (run_dir / rf.CONFIG).read_text(encoding="utf-8"),
        "PYTHONUNBUFFERED": "1",
        "TRAINPAD_RUN_ID": run_id,
    }
    job = _call(
        lambda: api.run_job(
            image=chosen,
            command=command,
            env=env,
            secrets={"HF_TOKEN": secrets["HF_TOKEN"]},
            flavor=flavor(params),
            timeout=settings.text("TRAINPAD_HF_TIMEOUT"),
            labels={"trainpad_run": run_id},
            namespace=ns,
        )
    )
    return f"{ns}/{job.id}"


def poll(job_id: str, run_dir: Path, secrets: dict[str, str]) -> str | None:
    """Mirror the job's log into the run folder; None while it runs, else how it ended."""
    ns, jid = job_id.split("/", 1)
    if not secrets.get("HF_TOKEN"):
        raise UserError(_cannot_follow(ns, jid, run_dir))
    api = _api(secrets)
    follower = _follower(api, ns, jid)
    stage, message = _stage(api, ns, jid)
    state = STAGES.get(stage)
    if state is None:
        remote_run.mirror_log(follower.snapshot(), run_dir)
        return None
    remote_run.mirror_log(_all_lines(api, ns, jid, follower), run_dir)
    if state == "failed" and not (run_dir / rf.ERROR).exists():
        text = f"The Hugging Face Job ended with an error: {message or 'no message'}. Its log is in train.log."
        rf.write_json(run_dir / rf.ERROR, {"message": text, "type": "HfJobError"})
    with _LOCK:
        _FOLLOWERS.pop(job_id, None)
        _LAST_LOOK.pop(job_id, None)
    return state


def cancel(job_id: str, secrets: dict[str, str]) -> None:
    """Cancel the job (the worker gets SIGTERM and checkpoints if the job lives long enough)."""
    ns, jid = job_id.split("/", 1)
    if not secrets.get("HF_TOKEN"):
        raise UserError(f"Trainpad no longer has the token that started this job: cancel it at {job_url(ns, jid)}.")
    api = _api(secrets)
    _call(lambda: api.cancel_job(job_id=jid, namespace=ns))


def image() -> str:
    """The job's image: $TRAINPAD_HF_IMAGE, else this Space's own image, else :data:`DEFAULT_IMAGE`."""
    if settings.is_set("TRAINPAD_HF_IMAGE"):
        return settings.text("TRAINPAD_HF_IMAGE")
    if os.environ.get("SPACE_ID"):
        return f"hf.co/spaces/{os.environ['SPACE_ID']}"
    return DEFAULT_IMAGE


def flavor(params: dict[str, Any]) -> str:
    """The run's hardware: its ``hf_flavor``, else $TRAINPAD_HF_FLAVOR, else :data:`DEFAULT_FLAVOR`."""
    return str(params.get("hf_flavor") or settings.text("TRAINPAD_HF_FLAVOR") or DEFAULT_FLAVOR)


def flavors() -> list[str]:
    """Every flavor name known here (huggingface_hub's, and the Hub's last list), without asking the Hub."""
    from huggingface_hub import JobHardware

    names = [f.value for f in JobHardware]
    return names + [f.name for f in hf_flavors.known() if f.name not in names]


def job_url(ns: str, jid: str) -> str:
    return f"{endpoint()}/jobs/{ns}/{jid}"


# --- following the log --------------------------------------------------------------------------------------


class _Follower:
    """A thread reading the job's log as it grows (``fetch_job_logs(follow=True)`` blocks; polls must not)."""

    def __init__(self, fetch: Callable[[], Any]):
        self.lines: list[str] = []
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, args=(fetch,), name="trainpad-hf-logs", daemon=True)
        self.thread.start()

    def _run(self, fetch: Callable[[], Any]) -> None:
        try:
            for line in fetch():
                self.lines.append(line)
        except Exception as e:  # a new follower replays the whole log at the next poll
            self.error = e

    def snapshot(self) -> list[str]:
        return list(self.lines)


def _follower(api: Any, ns: str, jid: str) -> _Follower:
    key = f"{ns}/{jid}"
    with _LOCK:
        follower = _FOLLOWERS.get(key)
        if follower is None or (not follower.thread.is_alive() and follower.error is not None):
            follower = _Follower(lambda: api.fetch_job_logs(job_id=jid, namespace=ns, follow=True))
            _FOLLOWERS[key] = follower
        return follower


def _all_lines(api: Any, ns: str, jid: str, follower: _Follower) -> list[str]:
    """The ended job's whole log: the follower's once it has drained, else one plain read."""
    follower.thread.join(timeout=10)
    if not follower.thread.is_alive() and follower.error is None:
        return follower.snapshot()
    return list(_call(lambda: list(api.fetch_job_logs(job_id=jid, namespace=ns, follow=False))))


def _stage(api: Any, ns: str, jid: str) -> tuple[str, str | None]:
    """The job's stage and message, looked up at most every $TRAINPAD_HF_POLL_S seconds."""
    key = f"{ns}/{jid}"
    every = settings.number("TRAINPAD_HF_POLL_S")
    last = _LAST_LOOK.get(key)
    if last and time.time() - last[0] < every:
        return last[1] or "RUNNING", None
    info = _call(lambda: api.inspect_job(job_id=jid, namespace=ns))
    stage = str(getattr(info.status.stage, "value", info.status.stage))
    _LAST_LOOK[key] = (time.time(), stage)
    return stage, info.status.message


# --- plumbing -----------------------------------------------------------------------------------------------


def _api(secrets: dict[str, str]) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=secrets["HF_TOKEN"])


def endpoint() -> str:
    """The Hub's address ($HF_ENDPOINT, else huggingface_hub's default)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _call(fn: Callable[[], Any]) -> Any:
    """``fn()``, with the Hub's refusals turned into what the user must do."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return fn()
    except HfHubHTTPError as e:
        code = e.response.status_code if e.response is not None else None
        if code == 401:
            raise UserError(
                "Hugging Face refused the token (HTTP 401: invalid or expired). Enter a valid token with write "
                "access (huggingface.co/settings/tokens)."
            ) from e
        if code in (402, 403):
            raise UserError(
                f"Hugging Face refused to run the job (HTTP {code}): Jobs need a positive credit balance (or a "
                "PRO/organization plan) and a token allowed to start jobs in that namespace. "
                f"Details: {e.server_message or e}"
            ) from e
        raise


def _cannot_follow(ns: str, jid: str, run_dir: Path) -> str:
    repo = _params(run_dir).get("hub_repo_id") or "its hub_repo_id"
    return (
        f"This run goes on as a Hugging Face Job ({job_url(ns, jid)}) and will push its model to "
        f"https://huggingface.co/{repo}, but Trainpad cannot follow it: the Hugging Face token is kept only in the "
        "memory of the process that started it, which has ended. Watch the job and its log at that link."
    )


def _params(run_dir: Path) -> dict[str, Any]:
    config = yaml.safe_load((run_dir / rf.CONFIG).read_text(encoding="utf-8")) or {}
    return config.get("params") or {}
