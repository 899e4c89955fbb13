"""The studio and Hugging Face Spaces: *Publish as a Space* (admin-only, in a local studio) and, on a Space, the
first page's note on what is kept when the Space sleeps.

Publishing runs the command a user would type (``trainpad space create|update NAME``) in its own process, with the
user's token in that process's environment only; the answer is its printed URL, or its error in plain words.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import gradio as gr

from engine.run.procs import ENGINE_ROOT, worker_env
from ui.context import Context, current_request, request_token

STORAGE_ROOT = Path("/data")  # where a Space's persistent storage (a mounted bucket) appears
PUBLISH_TIMEOUT_S = 900
STORAGE_CHOICES = [("none: runs are lost when the Space sleeps", "none"), ("a storage bucket at /data", "bucket")]


def on_space() -> bool:
    """Running on a Hugging Face Space (the platform sets SYSTEM=spaces)."""
    return os.environ.get("SYSTEM") == "spaces"


def space_note(data_dir: Path, storage_root: Path = STORAGE_ROOT) -> str:
    """What this Space keeps when it sleeps or restarts, and what it does not (the first page's note)."""
    signin = "Sign in with Hugging Face (top right) to train: every run belongs to the user who started it. "
    if Path(data_dir).resolve().is_relative_to(storage_root):
        return (
            f"**On this Space** runs, history, uploads, checkpoints and models are kept in `{data_dir}` (persistent "
            "storage) when the Space sleeps or restarts. A training that is running then ends: it shows as "
            f"*interrupted*, and **Resume** continues it from its last checkpoint. {signin}"
        )
    return (
        "**On this Space nothing is kept** when it sleeps or restarts (it has no persistent storage at `/data`): "
        "the run history, uploads, checkpoints and trained models are lost, and a running training ends. Download "
        f"models or push them to the Hub as soon as they finish. {signin}"
    )


def build_space_note(ctx: Context) -> None:
    """The note, at the top of the page, on a Space only."""
    if on_space():
        gr.Markdown(space_note(ctx.data_dir), elem_id="tp-space-note")


def readme_text(path: Path) -> str:
    """A README for the Docs page, without a Space card's front matter (on a Space, README.md is the card)."""
    if not path.exists():
        return "See the project README."
    return re.sub(r"\A---\n.*?\n---\n", "", path.read_text(encoding="utf-8"), count=1, flags=re.S)


def publish_command(action: str, name: str, org: str, private: bool, hardware: str, storage: str) -> list[str]:
    """``trainpad space create|update NAME …`` as this Python runs it."""
    command = [sys.executable, "-m", "engine.cli", "space", action, name.strip()]
    command += ["--org", org.strip()] if org.strip() else []
    if action == "create":
        command += ["--private"] if private else []
        command += ["--hardware", hardware] if hardware else []
        command += ["--storage", storage or "none"]
    return command


def publish(
    ctx: Context, action: str, name: str, org: str, private: bool, hardware: str, storage: str, token: str
) -> str:
    """Run the publish command with the user's token (typed here, their sign-in's, or this app's $HF_TOKEN)."""
    if not ctx.is_admin():
        return "Only an admin of this studio may publish it as a Space."
    if not (name or "").strip():
        return "Give the Space a name (letters, digits, `-`), e.g. `my-trainpad` or `my-org/my-trainpad`."
    token = (token or "").strip() or request_token(current_request()) or os.environ.get("HF_TOKEN", "")
    if not token:
        return "Give a Hugging Face token with write access (or start the studio with HF_TOKEN set)."
    command = publish_command(action, name, org or "", private, hardware or "", storage or "none")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PUBLISH_TIMEOUT_S,
            cwd=str(ENGINE_ROOT),
            env=worker_env({"HF_TOKEN": token}),
        )
    except subprocess.TimeoutExpired:
        return f"Publishing took over {PUBLISH_TIMEOUT_S // 60} minutes and was stopped; try `trainpad space {action}`."
    return _answer(done)


def _answer(done: subprocess.CompletedProcess) -> str:
    notes = [ln.removeprefix("note: ") for ln in done.stderr.splitlines() if ln.startswith("note: ")]
    if done.returncode == 0:
        url = done.stdout.strip().splitlines()[-1]
        return "\n".join([f"✓ Published: [{url}]({url}) (it builds for a few minutes)", *[f"- {n}" for n in notes]])
    errors = [ln.removeprefix("error: ") for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    tail = errors or done.stderr.strip().splitlines()[-3:] or [f"exit code {done.returncode}"]
    return "Not published: " + "\n".join(tail)


def build(ctx: Context) -> None:
    """The *Publish as a Space* panel (a local studio only: its operator is its admin)."""
    from huggingface_hub import SpaceHardware

    with gr.Accordion("Publish as a Space", open=False, elem_id="tp-publish"):
        gr.Markdown(
            "A Hugging Face Space running this studio, with Hugging Face sign-in (the same as `trainpad space "
            "create NAME`). **Update** pushes this version to a Space made before."
        )
        with gr.Row():
            name = gr.Textbox(label="Space name", placeholder="my-trainpad", elem_id="tp-publish-name")
            org = gr.Textbox(label="Organisation", placeholder="optional (default: you)", elem_id="tp-publish-org")
            hardware = gr.Dropdown(
                [("the Hub's default", ""), *[(h.value, h.value) for h in SpaceHardware]],
                value="",
                label="Hardware",
                elem_id="tp-publish-hardware",
            )
            storage = gr.Dropdown(STORAGE_CHOICES, value="none", label="Storage", elem_id="tp-publish-storage")
            private = gr.Checkbox(label="Private", elem_id="tp-publish-private")
        token = gr.Textbox(
            label="Hugging Face token (write access)",
            type="password",
            placeholder="default: this studio's $HF_TOKEN; never saved",
            elem_id="tp-publish-token",
        )
        with gr.Row():
            create = gr.Button("Create Space", variant="primary", elem_id="tp-publish-create")
            update = gr.Button("Update Space", elem_id="tp-publish-update")
        answer = gr.Markdown(elem_id="tp-publish-answer")
    inputs = [name, org, private, hardware, storage, token]
    for button, action in ((create, "create"), (update, "update")):
        button.click(
            partial(publish, ctx, action),
            inputs,
            answer,
            api_visibility="private",
            concurrency_limit=1,
            show_progress_on=answer,
        )


def wire_docs(ctx: Context) -> None:
    """What the Docs page adds: the publish panel, in a local studio (not on a Space, not for visitors)."""
    if not ctx.shared and not on_space():
        build(ctx)
