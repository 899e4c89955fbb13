"""Trainpad studio entry point: ``python app.py`` (or ``trainpad app``), on a laptop, a GPU box or a Space.

Offline, no token needed. The UI process never imports torch & co.; training and prediction run in
subprocesses started by the supervisor and the playground.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from engine import settings

ON_SPACES = os.environ.get("SYSTEM") == "spaces"
ON_COLAB = "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ  # a notebook needs a public link


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """``user:pass``, or a file with one ``user:pass`` per line (``#`` comments allowed)."""
    if not value:
        return None
    path = Path(value).expanduser()
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else [value]
    pairs = []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth: expected user:password (or a file of such lines), got {line.split(':')[0]!r}:…")
        pairs.append((user, password))
    return pairs or None


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="trainpad app", description="Start the Trainpad studio (a Gradio web app).")
    p.add_argument(
        "--host",
        default=env("GRADIO_SERVER_NAME") or ("0.0.0.0" if ON_SPACES else "127.0.0.1"),
        help="address to listen on (default 127.0.0.1; $GRADIO_SERVER_NAME)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(env("GRADIO_SERVER_PORT") or 7860),
        help="port (default 7860; $GRADIO_SERVER_PORT)",
    )
    p.add_argument(
        "--share",
        action="store_true",
        default=ON_COLAB,
        help="also open a public gradio.live link (needs internet; on by default in Colab)",
    )
    p.add_argument(
        "--auth",
        default=settings.text("TRAINPAD_AUTH") or None,
        help="password login: user:pass, or a file of user:pass lines ($TRAINPAD_AUTH)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="runs, history and models (default $TRAINPAD_DATA_DIR, /data/trainpad on a Space with storage, ./trainpad_data)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=settings.integer("TRAINPAD_CONCURRENCY"),
        help="runs trained at the same time; more wait in the queue (default 1; $TRAINPAD_CONCURRENCY)",
    )
    p.add_argument(
        "--max-file-size",
        default=settings.text("TRAINPAD_MAX_UPLOAD"),
        help="largest upload (default 2gb)",
    )
    p.add_argument(
        "--admin",
        default=settings.text("TRAINPAD_ADMINS") or (env("SPACE_AUTHOR_NAME") or ""),
        help="on a shared instance, users who see every run, comma-separated ($TRAINPAD_ADMINS; on a Space: its owner)",
    )
    p.add_argument(
        "--allow-remote-code",
        action="store_true",
        default=settings.flag("TRAINPAD_ALLOW_REMOTE_CODE"),
        help="let runs turn trust_remote_code on (a model's own Python code runs on this machine)",
    )
    p.add_argument(
        "--clean-hours",
        type=float,
        default=None,
        help="remove uploads and exports unused for this many hours (default 48 shared, 720 local; 0: never; "
        "$TRAINPAD_CLEAN_HOURS)",
    )
    p.add_argument(
        "--clean-gb",
        type=float,
        default=None,
        help="then the oldest while uploads and exports take more than this (default 10 shared, 50 local; 0: no "
        "limit; $TRAINPAD_CLEAN_GB)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="start a shared instance (0.0.0.0, --share) without a login: anyone who reaches it can use it",
    )
    return p


def is_shared(host: str, share: bool) -> bool:
    """Visitors other than the operator can reach the studio: a Space, a public link, a non-loopback address."""
    return ON_SPACES or share or host not in ("127.0.0.1", "localhost", "::1")


def oauth_enabled() -> bool:
    """Hugging Face login: on a Space with ``hf_oauth: true`` (the platform sets OAUTH_CLIENT_ID)."""
    from ui.studio import oauth_enabled as enabled

    return enabled()


def shared_login_problem(shared: bool, auth: Any, insecure: bool) -> str:
    """Why a shared instance may not start as asked ("" when it may)."""
    if not shared or auth or oauth_enabled() or insecure:
        return ""
    return (
        "Refusing to start a shared instance without a login: anyone reaching it could train on this machine, "
        "read the runs and use its resources. Give --auth user:pass (or a users file, $TRAINPAD_AUTH), enable "
        "Hugging Face login on a Space (hf_oauth: true), or pass --insecure if you really mean it."
    )


def colab_login() -> list[tuple[str, str]]:
    """Colab opens a public link: make a login for it and print it (the notebook's user reads it there)."""
    import secrets

    password = secrets.token_urlsafe(9)
    print(f"Trainpad login for the public link: user `trainpad`, password `{password}`", flush=True)
    return [("trainpad", password)]


def create(
    data_dir: str | Path | None = None,
    concurrency: int = 1,
    shared: bool = False,
    admins: tuple[str, ...] = (),
    allow_remote_code: bool = False,
    isolated: bool | None = None,
    clean: tuple[float | None, float | None] = (None, None),
) -> tuple[Any, Any]:
    """The supervisor (started) and the studio's Blocks, not launched yet. ``clean``: (hours, GB) limits of the
    uploads and exports cleanup (None: the defaults, ``ui.datasource.cleanup_limits``)."""
    import gc

    gc.disable()  # what start-up makes (modules, models, the page's blocks) lives on: no collection passes (~0.1 s)
    try:
        return _create(data_dir, concurrency, shared, admins, allow_remote_code, isolated, clean)
    finally:
        gc.freeze()  # what start-up made is never scanned again
        gc.enable()


def _create(
    data_dir: str | Path | None,
    concurrency: int,
    shared: bool,
    admins: tuple[str, ...],
    allow_remote_code: bool,
    isolated: bool | None,
    clean: tuple[float | None, float | None],
) -> tuple[Any, Any]:
    from dataclasses import replace

    from engine.run.policy import Policy
    from engine.run.supervisor import Supervisor
    from ui.context import Context, register
    from ui.datasource import start_cleanup
    from ui.studio import build_demo

    # The queue's default limit for events that set none (read when Blocks is created). Set here, not with
    # demo.queue(), which rebuilds the whole server app (~0.5 s with every task's form).
    os.environ.setdefault("GRADIO_DEFAULT_CONCURRENCY_LIMIT", "4")
    policy = Policy.from_env(shared)
    if allow_remote_code:
        policy = replace(policy, allow_remote_code=True)
    supervisor = Supervisor(data_dir, concurrency=concurrency, policy=policy).start()
    isolated = shared if isolated is None else isolated
    ctx = register(Context(supervisor, concurrency=concurrency, shared=isolated, admins=admins))
    start_cleanup(ctx, *clean)  # old uploads and exports, at start and every half hour
    return ctx, build_demo(ctx)


def launch(
    ctx: Any,
    demo: Any,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: list[tuple[str, str]] | None = None,
    max_file_size: str = "2gb",
    **kw: Any,
) -> Any:
    """Launch ``demo`` with the studio's theme and settings."""
    import inspect

    from ui.studio import launch_kwargs

    # Gradio asks the new server for its page once, with a 3 s timeout, and exits when that times out: a studio of
    # ~2,000 components on a busy 2-core machine can take longer. The check only guards machines whose localhost is
    # unreachable (Colab), where the studio asks for a public link anyway.
    if "_frontend" in inspect.signature(demo.launch).parameters:
        kw.setdefault("_frontend", False)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share and not ON_SPACES,
        auth=auth,
        auth_message="Trainpad login" if auth else None,
        max_file_size=max_file_size,
        show_error=True,
        **launch_kwargs(ctx),
        **kw,
    )


def notebook_launch(data_dir: str | Path | None = None, **kw: Any) -> Any:
    """Start the studio from a notebook (Colab): a public link with a printed login, the data folder kept under
    the notebook's working folder (or Google Drive when mounted there). Returns the launched app's result."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    drive = Path("/content/drive/MyDrive")
    data_dir = data_dir or (drive / "trainpad" if drive.is_dir() else None)
    ctx, demo = create(data_dir, shared=True)
    print(f"Trainpad: data folder {ctx.data_dir}", flush=True)
    return launch(ctx, demo, share=True, auth=colab_login(), **kw)


def main(argv: list[str] | None = None) -> int:
    """``python app.py [--host H] [--port P] [--share] [--auth user:pass|FILE] [--data-dir D] [--concurrency N]``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be 1 or more.")
    auth = parse_auth(args.auth)
    shared = is_shared(args.host, args.share)
    if shared and ON_COLAB and not auth and not args.insecure:
        auth = colab_login()
    problem = shared_login_problem(shared, auth, args.insecure)
    if problem:
        raise SystemExit(problem)
    if shared and args.insecure and not auth and not oauth_enabled():
        print("WARNING: shared instance WITHOUT a login (--insecure): anyone who reaches it can use it.", flush=True)
    admins = tuple(a.strip() for a in args.admin.split(",") if a.strip())
    isolated = shared and bool(auth or oauth_enabled())  # without a login there is no one to isolate
    clean = (args.clean_hours, args.clean_gb)
    ctx, demo = create(args.data_dir, args.concurrency, shared, admins, args.allow_remote_code, isolated, clean)
    print(f"Trainpad: data folder {ctx.data_dir}" + (" (shared: users are isolated)" if shared else ""), flush=True)
    try:
        launch(ctx, demo, args.host, args.port, args.share, auth, args.max_file_size)
    finally:
        ctx.engine.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
