"""Trainpad shipped with a Hugging Face Job that runs in a public image (no image of Trainpad is published).

:func:`build_wheel` packs this machine's ``engine/`` package, exactly as it is (uncommitted edits included), into a
pure-Python wheel whose version carries a hash of its content (``0.1.0+g<hash>``); its metadata pins every
dependency to the version installed here, except torch, which the image provides with CUDA (and gradio, which
only the studio uses). :func:`ship` uploads it to the user's private model repo ``<namespace>/trainpad-jobs``
(once per version), and :func:`job_command` is the job's command: ``python3 -c <job_bootstrap.py> URL SHA256
TARGET``, which downloads that wheel with the job's token, checks its hash, installs it into ``TARGET`` and its
pinned dependencies into the image's Python, then runs ``engine.run.backends.remote_run``. Nothing but
``engine/**/*.py`` and the wheel's own metadata is in the archive: no runs, uploads, configs or tokens.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import UserError
from engine.run import procs

REPO_NAME = "trainpad-jobs"  # <namespace>/trainpad-jobs: a private model repo holding the shipped wheels
TARGET = "/opt/trainpad"  # where the job installs the wheel (on PYTHONPATH of remote_run and the worker)
FROM_IMAGE = {"torch"}  # the image's CUDA build is kept: never pinned, never reinstalled
STUDIO_ONLY = {"gradio"}  # dependencies a job never imports
BOOTSTRAP = Path(__file__).with_name("job_bootstrap.py")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same engine gives the same bytes (and version)
_SHIPPED: dict[tuple[str, str], str] = {}  # (repo, wheel name) -> its URL, once uploaded by this process


@dataclass(frozen=True)
class Wheel:
    name: str  # trainpad-<version>-py3-none-any.whl
    version: str
    data: bytes
    sha256: str
    files: tuple[str, ...]  # the members, in order


def build_wheel(root: Path = procs.ENGINE_ROOT) -> Wheel:
    """The wheel of ``root/engine`` (every ``.py`` file, no caches) with pinned requirements; deterministic."""
    sources = engine_files(root)
    requirements = job_requirements()
    digest = hashlib.sha256()
    for rel, data in sources:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update("\n".join(requirements).encode())
    version = f"{base_version()}+g{digest.hexdigest()[:12]}"
    info = f"trainpad-{version}.dist-info"
    members = [*sources, (f"{info}/METADATA", _metadata(version, requirements)), (f"{info}/WHEEL", _WHEEL)]
    members.append((f"{info}/RECORD", _record(members, f"{info}/RECORD")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in members:
            item = zipfile.ZipInfo(rel, _ZIP_TIME)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(item, data)
    data = buffer.getvalue()
    name = f"trainpad-{version}-py3-none-any.whl"
    return Wheel(name, version, data, hashlib.sha256(data).hexdigest(), tuple(rel for rel, _ in members))


def engine_files(root: Path = procs.ENGINE_ROOT) -> list[tuple[str, bytes]]:
    """(path in the wheel, content) of every Python file of the engine package under ``root``."""
    found = sorted(p for p in (root / "engine").rglob("*.py") if "__pycache__" not in p.parts)
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in found]


def job_requirements() -> list[str]:
    """The engine's dependencies pinned to the versions installed here (torch left to the image; a package not
    installed here, or installed from a local build, keeps the project's own range)."""
    out = []
    for dep in project_dependencies():
        name = re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].strip()
        if name.lower() in STUDIO_ONLY:
            continue
        if name.lower() in FROM_IMAGE:
            out.append(name)
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = ""
        out.append(f"{name}=={version}" if version and "+" not in version else dep)
    return out


def project_dependencies() -> list[str]:
    """Trainpad's own dependencies (``pyproject.toml`` beside the engine, else the installed metadata)."""
    pyproject = procs.ENGINE_ROOT / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    return [r for r in metadata.requires("trainpad") or [] if "extra ==" not in r]


def base_version() -> str:
    """Trainpad's version (``pyproject.toml``, else the installed metadata)."""
    pyproject = procs.ENGINE_ROOT / "pyproject.toml"
    if pyproject.is_file():
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            return found.group(1)
    try:
        return metadata.version("trainpad").split("+")[0]
    except metadata.PackageNotFoundError:
        return "0.0.0"


def ship(api: Any, namespace: str, endpoint: str) -> tuple[Wheel, str]:
    """Upload this engine's wheel to ``<namespace>/trainpad-jobs`` (private; skipped when this process already
    did); (the wheel, the URL the job downloads it from)."""
    from huggingface_hub.errors import HfHubHTTPError

    wheel = build_wheel()
    repo = f"{namespace}/{REPO_NAME}"
    key = (repo, wheel.name)
    if key not in _SHIPPED:
        try:
            api.create_repo(repo, private=True, exist_ok=True)
            api.upload_file(
                path_or_fileobj=wheel.data,
                path_in_repo=f"wheels/{wheel.name}",
                repo_id=repo,
                commit_message=f"Trainpad {wheel.version}, shipped with Hugging Face Jobs",
            )
        except HfHubHTTPError as e:
            code = e.response.status_code if e.response is not None else "?"
            raise UserError(
                f"Trainpad could not upload itself to your private repository {repo} (HTTP {code}: "
                f"{e.server_message or e}), which a Hugging Face Job installs it from. Use a token with write access "
                "to that namespace, or set TRAINPAD_HF_IMAGE to an image with Trainpad installed."
            ) from e
        _SHIPPED[key] = f"{endpoint.rstrip('/')}/{repo}/resolve/main/wheels/{quote(wheel.name)}"
    return wheel, _SHIPPED[key]


def job_command(url: str, sha256: str, target: str | None = None) -> list[str]:
    """The job's command: install the shipped wheel, then run ``remote_run`` (see ``job_bootstrap.py``)."""
    return ["python3", "-c", BOOTSTRAP.read_text(encoding="utf-8"), url, sha256, target or TARGET]


_WHEEL = b"Wheel-Version: 1.0\nGenerator: trainpad (engine/run/backends/hf_ship.py)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _metadata(version: str, requirements: list[str]) -> bytes:
    lines = ["Metadata-Version: 2.1", "Name: trainpad", f"Version: {version}"]
    lines.append("Summary: Trainpad's engine, shipped with a Hugging Face Job")
    lines += [f"Requires-Dist: {r}" for r in requirements]
    return ("\n".join(lines) + "\n").encode()


def _record(members: list[tuple[str, bytes]], record: str) -> bytes:
    rows = []
    for rel, data in members:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(data)}")
    rows.append(f"{record},,")
    return ("\n".join(rows) + "\n").encode()
