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
        default=env("TRAINPAD_AUTH"),
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
        default=int(env("TRAINPAD_CONCURRENCY") or 1),
        help="runs trained at the same time; more wait in the queue (default 1; $TRAINPAD_CONCURRENCY)",
    )
    p.add_argument(
        "--max-file-size",
        default=env("TRAINPAD_MAX_UPLOAD") or "2gb",
        help="largest upload (default 2gb)",
    )
    return p


def create(data_dir: str | Path | None = None, concurrency: int = 1) -> tuple[Any, Any]:
    """The supervisor (started) and the studio's Blocks, not launched yet."""
    from engine.supervisor import Supervisor
    from ui.context import Context
    from ui.studio import build_demo

    # The queue's default limit for events that set none (read when Blocks is created). Set here, not with
    # demo.queue(), which rebuilds the whole server app (~0.5 s with every task's form).
    os.environ.setdefault("GRADIO_DEFAULT_CONCURRENCY_LIMIT", "4")
    supervisor = Supervisor(data_dir, concurrency=concurrency).start()
    ctx = Context(supervisor, concurrency=concurrency)
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
    from ui.studio import launch_kwargs

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


def main(argv: list[str] | None = None) -> int:
    """``python app.py [--host H] [--port P] [--share] [--auth user:pass|FILE] [--data-dir D] [--concurrency N]``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise SystemExit("--concurrency must be 1 or more.")
    ctx, demo = create(args.data_dir, args.concurrency)
    print(f"Trainpad: data folder {ctx.data_dir}", flush=True)
    try:
        launch(ctx, demo, args.host, args.port, args.share, parse_auth(args.auth), args.max_file_size)
    finally:
        ctx.supervisor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
