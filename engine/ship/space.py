"""The studio as a Hugging Face Space: ``trainpad space create|update NAME`` (and the studio's *Publish as a Space*).

:func:`build_folder` writes what a Space needs and nothing else: the card (``spaces/README.md`` with its front
matter, ``sdk_version`` set to the installed Gradio, the by-hand section left out), a ``requirements.txt`` with
the project's dependencies (a Space installs it before it copies the repository, so ``.`` cannot work) and the
app's files (``app.py``, ``engine/``, ``ui/``, ``assets/``). :func:`create_space` makes the Space repository
(sdk gradio, hardware, variables and secrets through the API, never in a file; storage as a bucket mounted at
``/data``) and uploads the folder in one commit; :func:`update_space` commits a newer build to the same Space.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from engine.errors import UserError
from engine.run.backends.hf_ship import project_dependencies

ROOT = Path(__file__).resolve().parents[2]
CARD_SOURCE = ROOT / "spaces" / "README.md"
APP_FILES = ("app.py",)
APP_FOLDERS = ("engine", "ui", "assets")
SKIPPED = ("__pycache__", ".pyc", ".pyo", ".DS_Store")
BY_HAND = "## Deploy by hand"  # the section of spaces/README.md that only the by-hand way needs
REQUIREMENTS_HEADER = (
    "# Written by `trainpad space create`: the project's dependencies; Gradio is the card's sdk_version."
)
STORAGE = ("none", "bucket", "small", "medium", "large")  # small/medium/large: the old tiers' names, now a bucket
MOUNT = "/data"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKENS_PAGE = "https://huggingface.co/settings/tokens"


@dataclass
class SpaceRequest:
    """What ``trainpad space create`` asks for. ``admins``: comma-separated (default: the token's user)."""

    name: str
    org: str = ""
    private: bool = False
    hardware: str = ""
    storage: str = "none"
    admins: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass
class Published:
    repo_id: str
    url: str
    notes: list[str] = field(default_factory=list)


# --- the folder ---------------------------------------------------------------------------------------------


def gradio_version() -> str:
    """The installed Gradio's version (read from its metadata: the CLI never imports Gradio)."""
    return metadata.version("gradio")


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(the YAML front matter, the body) of a card."""
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise UserError("The Space card has no front matter (a `---` block at its top): restore spaces/README.md.")
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def card_text(hardware: str = "", storage: str = "none") -> str:
    """The Space's README.md: spaces/README.md with ``sdk_version`` = the installed Gradio and the running Python,
    the asked hardware and storage as its suggestions, and without its by-hand section."""
    meta, body = split_front_matter(_read(CARD_SOURCE))
    meta["sdk_version"] = gradio_version()
    meta["python_version"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    if hardware:
        meta["suggested_hardware"] = hardware
    if storage in ("small", "medium", "large"):
        meta["suggested_storage"] = storage
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{_without_section(body, BY_HAND)}"


def _without_section(body: str, heading: str) -> str:
    start = body.find(heading)
    if start < 0:
        return body
    end = body.find("\n## ", start + len(heading))
    return body[:start].rstrip() + "\n" + (body[end:] if end >= 0 else "")


def requirements_text() -> str:
    """The project's dependencies for the Space's Python; Gradio pinned to the card's sdk_version, with the extra
    that Hugging Face sign-in needs."""
    lines = [REQUIREMENTS_HEADER]
    for dep in project_dependencies():
        name = re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower()
        lines.append(f"gradio[oauth]=={gradio_version()}" if name == "gradio" else dep)
    return "\n".join(lines) + "\n"


def app_files(root: Path = ROOT) -> list[Path]:
    """The app's files, relative to ``root``: no tests, benches, notebooks, runs or caches."""
    found = [Path(name) for name in APP_FILES]
    for folder in APP_FOLDERS:
        found += [p.relative_to(root) for p in sorted((root / folder).rglob("*")) if p.is_file()]
    return [p for p in found if not any(s in p.parts or p.name.endswith(s) for s in SKIPPED)]


def build_folder(out: Path, hardware: str = "", storage: str = "none") -> Path:
    """Write the Space's files into ``out`` (which must not hold anything else) and return it."""
    missing = [name for name in (*APP_FILES, *APP_FOLDERS) if not (ROOT / name).exists()]
    if missing or not CARD_SOURCE.is_file():
        raise UserError(
            f"Cannot build a Space from {ROOT}: {', '.join(missing) or 'spaces/README.md'} missing. Run this from a "
            "copy of the Trainpad repository (a pip-installed package does not carry the app's assets)."
        )
    out.mkdir(parents=True, exist_ok=True)
    for rel in app_files():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, out / rel)
    (out / "README.md").write_text(card_text(hardware, storage), encoding="utf-8")
    (out / "requirements.txt").write_text(requirements_text(), encoding="utf-8")
    return out


def dry_run(name: str, out_dir: str | Path | None = None, hardware: str = "", storage: str = "none") -> Path:
    """``--dry-run``: the folder only, as ``OUT_DIR/NAME`` (a folder of an earlier build there is replaced)."""
    target = Path(out_dir or ".") / split_name(name)[1]
    if target.exists() and any(target.iterdir()):
        requirements = target / "requirements.txt"
        if not (requirements.is_file() and requirements.read_text(encoding="utf-8").startswith(REQUIREMENTS_HEADER)):
            raise UserError(f"{target} exists and is not an earlier Space build: remove it, or give another --out.")
        shutil.rmtree(target)
    return build_folder(target, hardware, storage)


# --- the Hub ------------------------------------------------------------------------------------------------


def create_space(request: SpaceRequest, token: str | None = None) -> Published:
    """Create the Space and upload the app in one commit. Nothing is created when the token cannot write there
    or the name is taken; storage that the Hub refuses is a note, not a failure (the Space works without it)."""
    _check_request(request)
    api, token = _api(token)
    org, name = split_name(request.name, request.org)
    user = _writer(api, token, org)
    repo_id = _repo_id(name, org or user)
    variables = {"TRAINPAD_ADMINS": request.admins or user, **request.variables}
    with tempfile.TemporaryDirectory(prefix="trainpad-space-") as tmp:
        folder = build_folder(Path(tmp) / "space", request.hardware, request.storage)
        try:
            api.create_repo(
                repo_id,
                repo_type="space",
                space_sdk="gradio",
                private=request.private,
                space_hardware=request.hardware or None,
                space_variables=[{"key": k, "value": v} for k, v in variables.items()],
                space_secrets=[{"key": k, "value": v} for k, v in request.secrets.items()] or None,
                exist_ok=False,
            )
        except Exception as e:
            raise _hub_error(e, repo_id, "create") from None
        notes = _storage(api, repo_id, request.storage)
        try:
            _commit(api, repo_id, folder, [], "Trainpad Space (trainpad space create)")
        except UserError as e:
            raise UserError(
                f"{e} The Space {repo_id} was created empty: `trainpad space update {repo_id}` uploads it."
            ) from None
    return Published(repo_id, _space_url(api, repo_id), notes)


def update_space(name: str, org: str = "", token: str | None = None) -> Published:
    """Commit a newer build to an existing Space: the app's folders replaced as a whole, other files kept."""
    api, token = _api(token)
    org, name = split_name(name, org)
    user = _writer(api, token, org)
    repo_id = _repo_id(name, org or user)
    try:
        remote = api.list_repo_files(repo_id, repo_type="space")
    except Exception as e:
        raise _hub_error(e, repo_id, "update") from None
    with tempfile.TemporaryDirectory(prefix="trainpad-space-") as tmp:
        folder = build_folder(Path(tmp) / "space")
        built = {p.as_posix() for p in app_files()} | {"README.md", "requirements.txt"}
        gone = [f for f in remote if f.split("/")[0] in APP_FOLDERS and f not in built]
        _commit(api, repo_id, folder, gone, "Update Trainpad (trainpad space update)")
    return Published(repo_id, _space_url(api, repo_id))


def named_values(pairs: list[str], secret_names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, secrets) from ``--var NAME=VALUE`` and ``--secret NAME`` (its value from this environment, so
    that it is never typed on a command line nor written to a file; an unset one is refused by the request's check)."""
    if bad := [f"--var {p!r}: write NAME=VALUE" for p in pairs if "=" not in p]:
        raise UserError(bad)
    return dict(p.split("=", 1) for p in pairs), {n: os.environ.get(n, "") for n in secret_names}


def _check_request(request: SpaceRequest) -> None:
    problems = []
    if request.storage not in STORAGE:
        problems.append(f"--storage {request.storage!r}: choose one of {', '.join(STORAGE)}")
    for kind, values in (("--var", request.variables), ("--secret", request.secrets)):
        problems += [
            f"{kind} {k!r}: not a valid variable name (letters, digits, _)" for k in values if not ENV_NAME.match(k)
        ]
    problems += [
        f"--secret {k}: set {k} in this shell's environment first" for k, v in request.secrets.items() if not v
    ]
    if request.hardware:
        from huggingface_hub import SpaceHardware

        choices = [h.value for h in SpaceHardware]
        if request.hardware not in choices:
            problems.append(f"--hardware {request.hardware!r}: choose one of {', '.join(choices)}")
    if problems:
        raise UserError(problems)


def _api(token: str | None) -> tuple[Any, str]:
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise UserError(
            f"No Hugging Face token: set HF_TOKEN (a token with write access, {TOKENS_PAGE}) or run `hf auth login`."
        )
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token), token


def _writer(api: Any, token: str, org: str) -> str:
    """The token's user, after checking that the token may write (to ``org`` when one is given)."""
    try:
        me = api.whoami(token=token)
    except Exception as e:
        raise _hub_error(e, "", "whoami") from None
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise UserError(
            f"This Hugging Face token can only read: a Space needs one with write access ({TOKENS_PAGE}). "
            "Nothing was created."
        )
    orgs = [o.get("name") for o in me.get("orgs") or []]
    if org and org != me["name"] and org not in orgs:
        raise UserError(
            f"--org {org!r}: the token's user {me['name']!r} is not a member of it (organisations: "
            f"{', '.join(orgs) or 'none'}). Nothing was created."
        )
    return str(me["name"])


def split_name(name: str, org: str = "") -> tuple[str, str]:
    """(namespace, name) of NAME or ORG/NAME; ``--org`` wins over a namespace written in NAME."""
    namespace, _, short = name.strip().strip("/").rpartition("/")
    return org or namespace, short


def _repo_id(name: str, namespace: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$", name):
        raise UserError(f"Space name {name!r}: use letters, digits, '-', '_' or '.' (at most 96 characters).")
    return f"{namespace}/{name}"


def _storage(api: Any, repo_id: str, storage: str) -> list[str]:
    """Mount a private bucket ``<space>-storage`` at /data (the Hub's persistent storage for Spaces now)."""
    if storage == "none":
        return []
    notes = []
    if storage != "bucket":
        notes.append(f"storage tiers ({storage!r}) were replaced by storage buckets: mounting a bucket at {MOUNT}")
    bucket = f"{repo_id}-storage"
    try:
        from huggingface_hub import Volume

        api.create_bucket(bucket, private=True, exist_ok=True)
        api.set_space_volumes(repo_id, [Volume(type="bucket", source=bucket, mount_path=MOUNT)])
    except Exception as e:
        notes.append(
            f"the Space was created without persistent storage ({_reason(e)}): runs are lost when it sleeps. "
            f"Mount a bucket at {MOUNT} in its Settings → Volumes when you can."
        )
        return notes
    return [*notes, f"bucket {bucket} mounted at {MOUNT}: runs, history and models survive restarts and sleep"]


def _commit(api: Any, repo_id: str, folder: Path, deleted: list[str], message: str) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    operations: list[Any] = [CommitOperationDelete(path_in_repo=f) for f in deleted]
    operations += [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=p) for p in files]
    try:
        api.create_commit(repo_id, operations, commit_message=message, repo_type="space")
    except Exception as e:
        raise _hub_error(e, repo_id, "upload") from None


def _space_url(api: Any, repo_id: str) -> str:
    return f"{api.endpoint.rstrip('/')}/spaces/{repo_id}"


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    code = getattr(response, "status_code", None)
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"HTTP {code}: {text}" if code else text


def _hub_error(error: Exception, repo_id: str, step: str) -> UserError:
    """A Hub failure said plainly: what happened and what to do."""
    code = getattr(getattr(error, "response", None), "status_code", None)
    if code == 401:
        return UserError(
            f"The Hub did not accept this token (HTTP 401): check HF_TOKEN or `hf auth login` ({TOKENS_PAGE})."
        )
    if code == 409 and step == "create":
        return UserError(
            f"The Space {repo_id} already exists: pick another name, or `trainpad space update {repo_id}` to push "
            "a new version to it. Nothing was created."
        )
    if code == 404 and step == "update":
        return UserError(f"No Space {repo_id}: create it first with `trainpad space create {repo_id}`.")
    if code == 403:
        return UserError(
            f"This token may not write to {repo_id} (HTTP 403): it needs write access to that user or organisation "
            f"({TOKENS_PAGE}). " + ("Nothing was created." if step == "create" else "")
        )
    if code == 402:
        return UserError("The Hub asks for payment for this hardware (HTTP 402): add billing, or leave out --hardware.")
    if code is not None:
        return UserError(f"The Hub refused to {step} {repo_id or 'the Space'} ({_reason(error)}).")
    if isinstance(error, OSError) or any(
        w in type(error).__name__ for w in ("Connect", "Timeout", "Network", "Offline")
    ):
        endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        return UserError(f"Could not reach the Hugging Face Hub at {endpoint} ({_reason(error)}): check the network.")
    raise error


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")
