"""The Export panel's actions on one run (no Gradio here): which formats it can export (an unavailable one with its
install line), start an export or an endpoint (jobs in their own processes), stop one, and the jobs as Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.run.jobs import log_tail, progress
from engine.run.procs import free_port
from engine.ship.export import formats_for
from engine.ship.gguf import QUANTS
from ui.context import Context


def export_choices(ctx: Context, run_id: str) -> list[tuple[str, str]]:
    """(label, value) per format and quant: an unavailable one says why, and is not offered as a value."""
    row = ctx.store.get_run(run_id)
    if row is None or row["status"] != "succeeded":
        return []
    choices = []
    for fmt, why in formats_for(row["task"]).items():
        if why and "pip install" not in why:
            continue  # not for this task at all
        for quant in QUANTS if fmt == "gguf" else ("",):
            name = f"{fmt.upper()} {quant}".strip()
            choices.append((f"{name} — unavailable: {why}" if why else name, "" if why else f"{fmt}:{quant}"))
    return choices


def start_export(ctx: Context, run_id: str, choice: str, int8: bool = False) -> str:
    fmt, _, quant = choice.partition(":")
    return ctx.supervisor.submit_job("export", run_id, {"format": fmt, "quant": quant, "int8": int8})


def start_endpoint(ctx: Context, run_id: str, gguf: str = "") -> str:
    engine = "llama.cpp" if gguf else "transformers"
    return ctx.supervisor.submit_job("serve", run_id, {"port": free_port(), "engine": engine, "gguf": gguf})


def newest_export(ctx: Context, run_id: str) -> Path:
    """The file of the run's newest finished export; a UserError when there is none."""
    for job in reversed(ctx.store.list_jobs(run_id)):  # newest first
        path = (
            (job.get("result") or {}).get("path") if job["kind"] == "export" and job["status"] == "succeeded" else None
        )
        if path and Path(path).is_file():
            return Path(path)
    raise UserError(f"Run `{run_id}` has no finished export yet: pick a format and press Export.")


def stop_job(ctx: Context, job_id: str) -> None:
    ctx.supervisor.stop_job(job_id)


def jobs_markdown(ctx: Context, run_id: str) -> str:
    """The run's exports and endpoints: status, progress, file, size, checksum; an endpoint's URL and examples."""
    lines = []
    for job in reversed(ctx.store.list_jobs(run_id)):
        lines.append(_job_line(job))
    return "\n\n".join(lines) or "No exports or endpoints yet."


def _job_line(job: dict[str, Any]) -> str:
    result, said = job.get("result") or {}, progress(job)
    head = f"**{job['kind']}** `{job['id']}` — {job['status']}"
    if job["status"] == "running" and said:
        head += f" ({int(100 * said.get('fraction', 0))}%: {said.get('message', '')})"
    if job["status"] == "failed":
        return f"{head}\n\n{job.get('error') or log_tail(job, 1000)}"
    if job["kind"] == "serve" and result:
        return f"{head}: {result['url']}\n\n```bash\n{result['curl']}\n```\n\n```python\n{result['openai']}\n```"
    if result.get("path"):
        head += f": `{Path(result['path']).name}`, {result['bytes']:,} bytes, sha256 `{result['sha256'][:16]}…`"
        if result.get("ollama"):
            head += f"\n\nIn the file's folder: `{result['ollama']}`"
    return head
