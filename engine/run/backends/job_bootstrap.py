"""The first thing a Hugging Face Job runs in a public image: ``python3 -c <this file> URL SHA256 TARGET``.

Trainpad is not in the image yet, so this uses the standard library only (and is passed as text, never imported
in the job). It downloads the wheel that ``hf_ship`` uploaded (with the job's ``HF_TOKEN``, which is dropped when a
redirect leaves the Hub for its file storage), checks its SHA-256, installs it into TARGET without dependencies,
installs the dependencies its metadata pins into the image's Python (whose torch stays), and then becomes
``python -m engine.run.backends.remote_run`` with TARGET on ``PYTHONPATH``. The install is reported as a phase of
the run (an event line the studio shows while the run has no step yet) and how long it took goes to the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path

EVENT = "[trainpad:event] "  # = engine.run.backends.remote_run.EVENT (a test keeps them equal)
FILE = "[trainpad:file] "  # = remote_run.FILE
PIP = ["-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check", "--no-cache-dir"]
PIP += ["--progress-bar", "off", "--break-system-packages"]  # the image's Python is "externally managed" (PEP 668)
INSTALL_FAILED = 3


def main(argv: list[str]) -> int:
    url, sha256, target = argv
    started = time.time()
    phase("installing Trainpad on the job…")
    wheel = Path(tempfile.mkdtemp(prefix="trainpad-wheel-")) / urllib.parse.unquote(url.rsplit("/", 1)[-1])
    try:
        download(url, os.environ.get("HF_TOKEN", ""), wheel)
    except OSError as e:
        return fail(f"could not download Trainpad from {url}: {e}")
    found = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if found != sha256:
        return fail(f"the downloaded {wheel.name} is not the one shipped (sha256 {found[:12]}, not {sha256[:12]}).")
    try:
        pip("--no-deps", "--target", target, str(wheel))
        version, requirements = installed(target)
        if requirements:
            pip(*requirements)
    except (subprocess.CalledProcessError, LookupError) as e:
        return fail(f"pip could not install {wheel.name} and its dependencies ({e}); pip's messages are above.")
    phase(f"Trainpad {version} installed on the job in {time.time() - started:.0f} s")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [target, os.environ.get("PYTHONPATH")]))}
    os.execve(sys.executable, [sys.executable, "-m", "engine.run.backends.remote_run"], env)
    return 0  # not reached: execve replaces this process


def phase(message: str) -> None:
    """A phase of the run: an event for the studio, and a plain line for the log."""
    event = {"type": "phase", "phase": "install", "message": message, "time": time.time()}
    print(EVENT + json.dumps(event), flush=True)
    print(f"[trainpad] {message}", flush=True)


def fail(message: str) -> int:
    """Say why the install failed, in the log and as the run's error."""
    text = f"Installing Trainpad on the Hugging Face Job failed: {message}"
    print(f"[trainpad] error: {text}", flush=True)
    print(FILE + "error.json " + json.dumps({"message": text, "type": "InstallError"}), flush=True)
    return INSTALL_FAILED


class _TokenStaysOnTheHub(urllib.request.HTTPRedirectHandler):
    """Follows redirects; the token goes only to the host it was meant for (a signed storage URL refuses it)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # urllib's signature
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def download(url: str, token: str, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.build_opener(_TokenStaysOnTheHub).open(request, timeout=300) as response:
        with open(dest, "wb") as f:
            shutil.copyfileobj(response, f)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, *PIP, *args], check=True)


def installed(target: str) -> tuple[str, list[str]]:
    """(version, pinned requirements) of the Trainpad wheel installed in ``target``."""
    for dist in metadata.distributions(path=[target]):
        if dist.metadata["Name"] == "trainpad":
            return dist.version, [r for r in dist.requires or [] if "extra ==" not in r]
    raise LookupError(f"no Trainpad found in {target} after pip installed it")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
