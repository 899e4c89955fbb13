"""What every UI handler needs: the supervisor (and its run store) and the data folder's sub-folders — seen as the
user of the current request.

On a shared instance (a Space, a public link, --host 0.0.0.0) every run, upload and export has an owner: a handler
sees, stops, deletes, downloads and predicts with its user's runs only (admins see all), and reads local files only
from that user's uploads and the folders the operator allowed. The user comes from the request Gradio is serving
(password login, or Hugging Face OAuth on a Space), so handlers need no extra parameter.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from engine import settings
from engine.errors import UserError
from engine.run.policy import inside, named_path_problems
from engine.run.store import Store
from engine.run.supervisor import Supervisor, safe_name


def current_request() -> Any:
    """The ``gr.Request`` of the event being handled (None outside one)."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a dependency
        return None
    return LocalContext.request.get(None)


def request_user(request: Any) -> str:
    """The logged-in user of ``request``: password login, else the Hugging Face account of an OAuth session."""
    if request is None:
        return ""
    name = getattr(request, "username", None)
    if name:
        return str(name)
    info = _oauth_info(request)
    return str((info.get("userinfo") or {}).get("preferred_username") or "")


def request_token(request: Any) -> str:
    """The user's own Hugging Face token from an OAuth session ("" when there is none)."""
    return str(_oauth_info(request).get("access_token") or "")


def _oauth_info(request: Any) -> dict[str, Any]:
    try:
        session = request.session  # only with the OAuth session middleware
    except (AttributeError, AssertionError, KeyError):
        return {}
    return dict(session.get("oauth_info") or {}) if hasattr(session, "get") else {}


class Context:
    """The studio's state. ``shared``: isolate users; ``admins``: user names that see every run."""

    def __init__(
        self, supervisor: Supervisor, concurrency: int = 1, shared: bool = False, admins: tuple[str, ...] = ()
    ):
        self.engine = supervisor
        self.concurrency = concurrency
        self.shared = shared
        self.admins = tuple(admins)

    # --- who is asking -------------------------------------------------------------------

    def user(self) -> str:
        return request_user(current_request())

    def is_admin(self) -> bool:
        return not self.shared or self.user() in self.admins

    # --- the supervisor and the store, as this user sees them --------------------------------

    @property
    def supervisor(self) -> Any:
        return UserSupervisor(self) if self.shared else LocalSupervisor(self)

    @property
    def store(self) -> Any:
        return UserStore(self) if self.shared else self.engine.store

    def owns(self, row: dict[str, Any] | None) -> bool:
        """Whether the current user may see ``row`` (on a shared instance a visitor who is not signed in owns
        nothing)."""
        if row is None:
            return False
        if not self.shared:
            return True
        user = self.user()
        return bool(user) and (user in self.admins or (row.get("user") or "") == user)

    # --- folders ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.engine.data_dir

    @property
    def uploads_dir(self) -> Path:
        """Where this user's uploads are kept (one folder per user on a shared instance)."""
        return self.engine.user_dirs(self.user() if self.shared else "")[0]

    def served(self, path: Path) -> str:
        """``path`` (one of this user's exports) as a file the page may download: a link to it in a folder of
        Gradio's own cache with a random name. Gradio serves no data folder itself (no ``allowed_paths``), so no
        user reaches another's exports by guessing a name."""
        folder = gradio_cache() / "trainpad-exports" / secrets.token_hex(16)
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / path.name
        try:
            os.link(path, dest)
        except OSError:  # another disk
            shutil.copyfile(path, dest)
        return str(dest)

    @property
    def upload_quota(self) -> int:
        """Bytes of uploads one user may keep on a shared instance (0: no cap; none locally)."""
        return int(settings.number("TRAINPAD_USER_UPLOAD_GB") * 2**30) if self.shared else 0

    @property
    def exports_dir(self) -> Path:
        """Files offered for download (configs, model zips): the only data folder Gradio may serve."""
        path = self.data_dir / "exports"
        if self.shared:
            path = path / safe_name(self.user())
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def remove_exports(self, run_id: str) -> None:
        """The run's model zips (``ui.run_actions.download_zip``), in every user's exports folder."""
        for path in (self.data_dir / "exports").rglob(f"*-{run_id}-model-*.zip"):
            path.unlink(missing_ok=True)

    def readable(self, path: str | Path) -> bool:
        """Whether this user may read local ``path`` (locally: anything; shared: their uploads, allowed folders)."""
        return not self.shared or any(inside(path, r) for r in self.data_roots())

    def data_roots(self) -> list[Path]:
        """The folders this user's data may come from on a shared instance: their uploads, the allowed folders
        (none for a visitor who is not signed in: ``user_dirs("")`` is everyone's uploads)."""
        if not self.user():
            return []
        return [*self.engine.user_dirs(self.user()), *self.engine.policy.allowed_roots]

    def policy_problems(self, raw: dict[str, Any]) -> list[str]:
        """On a shared instance, what the policy refuses in a form's values (``engine.run.policy.problems``: local
        paths outside the user's uploads, files named inside the data, remote code), before any file is read."""
        if not self.shared:
            return []
        from dataclasses import replace
        from types import SimpleNamespace

        from engine.run.policy import problems

        fields = ("data_path", "valid_path", "base_model", "resume_from", "trust_remote_code", "column_mapping")
        params = SimpleNamespace(**{k: raw.get(k) for k in fields})
        user_dirs = self.engine.user_dirs(self.user()) if self.user() else []
        return problems(replace(self.engine.policy, shared=True), params, self.engine.runs_dir, user_dirs)

    def named_path_problems(self, source: Any) -> list[str]:
        """On a shared instance, files named inside the data (image/audio paths) outside :meth:`data_roots`."""
        return named_path_problems(source, self.data_roots()) if self.shared else []

    def browser_secret(self) -> str:
        """A secret kept in the data folder, so a restarted app still reads what browsers remember."""
        path = self.data_dir / ".ui_secret"
        if not path.exists():
            path.write_text(secrets.token_hex(16), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    def local_models(self) -> list[str]:
        """Model folders under ``<data_dir>/models`` (any folder holding a config.json), newest first."""
        if not self.models_dir.is_dir():
            return []
        found = [p.parent for p in self.models_dir.glob("*/config.json")] + [
            p.parent for p in self.models_dir.glob("*/*/config.json")
        ]
        return [str(p) for p in sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)]

    def used_models(self, task: str, limit: int = 20) -> list[str]:
        """Local model folders this user's runs of ``task`` trained from (still there), newest run first."""
        out: list[str] = []
        for row in self.store.list_runs(task=task, limit=200):
            path = str(row.get("base_model") or "")
            if path and path not in out and Path(path).is_absolute() and Path(path).is_dir():
                out.append(path)
        return out[:limit]


def gradio_cache() -> Path:
    """Gradio's upload/cache folder (as gradio.utils.get_upload_folder says, without importing Gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


_CURRENT: list[Context] = []


def register(ctx: Context) -> Context:
    """The app's context, for helpers that have no ``ctx`` of their own (e.g. the data preview's path guard)."""
    _CURRENT[:] = [ctx]
    return ctx


def readable(path: str | Path) -> bool:
    return _CURRENT[0].readable(path) if _CURRENT else True


def outside_files(source: Any) -> list[str]:
    """The app's :meth:`Context.named_path_problems` of ``source`` (none when no app is registered)."""
    return _CURRENT[0].named_path_problems(source) if _CURRENT else []


class UserStore:
    """The run store seen by one user of a shared instance: others' runs do not exist. Deny by default: only the
    methods below exist (a test checks that the UI calls no other)."""

    def __init__(self, ctx: Context):
        self._ctx, self._store = ctx, ctx.engine.store

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._store.get_run(run_id)
        return row if self._ctx.owns(row) else None

    def list_runs(self, status: str | None = None, task: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        user = self._ctx.user()
        if not user:
            return []
        return self._store.list_runs(status=status, task=task, limit=limit, user=None if self._ctx.is_admin() else user)

    def runs_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        return [r for r in self._store.runs_with_status(*statuses) if self._ctx.owns(r)]

    def metrics(self, run_id: str, names: list[str] | None = None) -> list[dict[str, Any]]:
        return self._store.metrics(run_id, names) if self.get_run(run_id) else []

    def metric_names(self, run_id: str) -> list[str]:
        return self._store.metric_names(run_id) if self.get_run(run_id) else []

    def list_jobs(self, run_id: str) -> list[dict[str, Any]]:
        return self._store.list_jobs(run_id) if self.get_run(run_id) else []

    def get_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        row = self._store.get_sweep(sweep_id)
        return row if self._ctx.owns(row) else None

    def list_sweeps(self) -> list[dict[str, Any]]:
        return [s for s in self._store.list_sweeps() if self._ctx.owns(s)]

    def sweep_runs(self, sweep_id: str) -> list[dict[str, Any]]:
        return self._store.sweep_runs(sweep_id) if self.get_sweep(sweep_id) else []

    def list_evaluations(self, run_id: str | None = None, data_hash: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._store.list_evaluations(run_id, data_hash) if self._ctx.owns(e)]

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        job = self._store.get_job(job_id)
        return job if self._ctx.owns(job) else None


class LocalSupervisor:
    """The supervisor of a local studio: the engine's, and deleting a run also deletes its model zips. Only the
    methods below exist, as in :class:`UserSupervisor`."""

    def __init__(self, ctx: Context):
        self._ctx, self._sup = ctx, ctx.engine

    @property
    def store(self) -> Store:
        return self._sup.store

    def submit(self, task: Any, params: Any, **kw: Any) -> str:
        return self._sup.submit(task, params, **kw)

    def stop(self, run_id: str) -> None:
        self._sup.stop(run_id)

    def resume(self, run_id: str, secrets: dict[str, str] | None = None) -> str:
        return self._sup.resume(run_id, secrets=secrets)

    def queue_position(self, run_id: str) -> tuple[int, int]:
        return self._sup.queue_position(run_id)

    def delete(self, run_id: str) -> None:
        self._sup.delete(run_id)
        self._ctx.remove_exports(run_id)

    def submit_job(self, kind: str, run_id: str, args: dict[str, Any]) -> str:
        return self._sup.submit_job(kind, run_id, args)

    def stop_job(self, job_id: str) -> None:
        self._sup.stop_job(job_id)

    def submit_sweep(self, task: Any, params: Any, request: Any, **kw: Any) -> str:
        return self._sup.submit_sweep(task, params, request, **kw)

    def stop_sweep(self, sweep_id: str) -> None:
        self._sup.stop_sweep(sweep_id)

    def submit_eval(self, request: Any) -> str:
        from engine.eval.submit import submit_eval

        return submit_eval(self._sup, request)

    def stop_eval(self, job_id: str) -> None:
        self._sup.stop_job(job_id)


class UserSupervisor:
    """The supervisor used by one user of a shared instance: runs are theirs, their token is theirs. Deny by
    default: only the methods below exist (a test checks that the UI calls no other)."""

    def __init__(self, ctx: Context):
        self._ctx, self._sup = ctx, ctx.engine

    def queue_position(self, run_id: str) -> tuple[int, int]:
        """(runs training, the user's own runs queued ahead of ``run_id``): others' queued runs are not counted."""
        running, _ = self._sup.queue_position(self._own(run_id))
        if self._ctx.is_admin():
            return self._sup.queue_position(run_id)
        mine = [r["id"] for r in self.store.runs_with_status("queued")]
        ahead = mine.index(run_id) if run_id in mine else 0
        return min(running, 1), ahead

    @property
    def store(self) -> Store:
        return UserStore(self._ctx)  # type: ignore[return-value]

    def _own(self, run_id: str) -> str:
        if not self._ctx.owns(self._sup.store.get_run(run_id)):
            raise UserError(f"No run with id `{run_id}`.")
        return run_id

    def submit(self, task: Any, params: Any, **kw: Any) -> str:
        user = self._ctx.user()
        if not user:
            raise UserError("Sign in first: on this shared instance every run belongs to a signed-in user.")
        secrets_ = kw.pop("secrets", None) or _oauth_secrets()
        return self._sup.submit(task, params, secrets=secrets_, user=user, **kw)

    def stop(self, run_id: str) -> None:
        self._sup.stop(self._own(run_id))

    def delete(self, run_id: str) -> None:
        self._sup.delete(self._own(run_id))
        self._ctx.remove_exports(run_id)

    def resume(self, run_id: str, secrets: dict[str, str] | None = None) -> str:
        return self._sup.resume(self._own(run_id), secrets=secrets or _oauth_secrets())

    def submit_job(self, kind: str, run_id: str, args: dict[str, Any]) -> str:
        """An export of one of the user's runs; an endpoint only on the user's own run (not even an admin's)."""
        row = self._sup.store.get_run(self._own(run_id)) or {}
        if kind == "serve" and (row.get("user") or "") != self._ctx.user():
            raise UserError("Only the user who trained this run can start an endpoint for it.")
        return self._sup.submit_job(kind, run_id, args, user=self._ctx.user())

    def stop_job(self, job_id: str) -> None:
        job = self._sup.store.get_job(job_id)
        if job is None or not self._ctx.owns(self._sup.store.get_run(job["run_id"])):
            raise UserError(f"No job with id `{job_id}`.")
        self._sup.stop_job(job_id)

    def submit_sweep(self, task: Any, params: Any, request: Any, **kw: Any) -> str:
        """A sweep of the signed-in user: its trials are their runs (their queue cap, their token)."""
        user = self._ctx.user()
        if not user:
            raise UserError("Sign in first: on this shared instance every run belongs to a signed-in user.")
        secrets_ = kw.pop("secrets", None) or _oauth_secrets()
        return self._sup.submit_sweep(task, params, request, secrets=secrets_, user=user, **kw)

    def stop_sweep(self, sweep_id: str) -> None:
        if not self._ctx.owns(self._sup.store.get_sweep(sweep_id)):
            raise UserError(f"No sweep with id `{sweep_id}`.")
        self._sup.stop_sweep(sweep_id)

    def submit_eval(self, request: Any) -> str:
        """An evaluation by the signed-in user of their own run, or of a model folder and a test file they may
        read (their uploads, the allowed folders)."""
        from engine.eval.submit import submit_eval

        user = self._ctx.user()
        if not user:
            raise UserError("Sign in first: on this shared instance every evaluation belongs to a signed-in user.")
        for name in (request.model, request.against):
            if name and self._sup.store.get_run(name) is None and not self._ctx.readable(name):
                raise UserError(f"`{name}` is not one of your runs nor a folder you may read.")
            if name and self._sup.store.get_run(name) is not None:
                self._own(name)
        for path in (request.data, *request.benchmark.split(","), request.judge_model):
            path = str(path or "").strip()
            local = bool(Path(path).suffix) or os.sep in path or Path(path).expanduser().exists()  # a folder too
            if path and path != "valid" and local and not self._ctx.readable(path):
                raise UserError(f"`{Path(path).name}` is not among your uploads or the allowed folders.")
        return submit_eval(self._sup, request, user)

    def stop_eval(self, job_id: str) -> None:
        job = self._sup.store.get_job(job_id)
        if job is None or job["kind"] != "eval" or not self._ctx.owns(job):
            raise UserError(f"No evaluation with id `{job_id}`.")
        self._sup.stop_job(job_id)


def _oauth_secrets() -> dict[str, str] | None:
    token = request_token(current_request())
    return {"HF_TOKEN": token} if token else None
