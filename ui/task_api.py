"""The form's actions as API endpoints, registered once for every task: ``/check``, ``/config``, ``/start``,
``/preview`` (``gr.api``: typed functions, no components), with the checks and path policy the form has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from engine.errors import UserError
from engine.task import Task
from ui import form_values, task_view
from ui.context import Context, gradio_cache
from ui.task_view import DATA_FIELDS, MAP_PREFIX, problems_md


def api_values(ctx: Context, task_name: str, values: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
    """An API call's task and its values as the form holds them. ``values``: the task's params as in a config
    (``column_mapping`` a dict), plus ``run_name``, ``hf_token`` and ``upload`` (a file sent with the call)."""
    from engine.task import all_tasks

    tasks = {t.name: t for t in all_tasks()}
    if task_name not in tasks:
        raise gr.Error(f"Unknown task {task_name!r}: one of {', '.join(sorted(tasks))}.")
    task, values = tasks[task_name], dict(values or {})
    upload = values.pop("upload", None)
    mapping = values.pop("column_mapping", None) or {}
    if not isinstance(mapping, dict):
        raise gr.Error("`column_mapping` must be an object: {role: column}.")
    form = form_values.params_to_values(task.params, values)
    form |= {k: values[k] for k in ("base_model", "data_path", "run_name", "hf_token") if k in values}
    form |= {MAP_PREFIX + role: column for role, column in mapping.items()}
    if upload:  # only a file the call itself sent (Gradio's cache), never a path of the server
        path = Path(upload if isinstance(upload, str) else upload.get("path", "")).resolve()
        if not path.is_relative_to(gradio_cache()):
            raise gr.Error("`upload` must be a file sent with the call (gradio_client's handle_file).")
        form["upload"] = str(path)
    return task, form


def register_api(ctx: Context) -> None:
    """``/check``, ``/config``, ``/start`` and ``/preview`` (call inside the Blocks): what the form's buttons do,
    for any task by name, with the same checks and the same path policy."""

    def check(task: str, values: dict, backend: str = "local") -> tuple[str, str]:
        """Check a task's settings and data: (the parameter problems or a ✓ line, the data report) as Markdown."""
        t, form = api_values(ctx, task, values)
        form_md, data_md, _ = task_view.check_report(ctx, t, form, backend)
        return form_md, data_md

    def config(task: str, values: dict) -> tuple[str, str, str]:
        """The run's config (YAML), the ``trainpad run`` command that starts it from a terminal, and where the file
        is kept for the page's download (a random folder of Gradio's cache, as the form's Config offers it)."""
        t, form = api_values(ctx, task, values)
        try:
            text, command, path = task_view.make_config(ctx, t, form)
        except UserError as e:
            raise gr.Error(problems_md(e.problems)) from None
        return text, command, ctx.served(path)

    def start(task: str, values: dict, backend: str = "local") -> tuple[str, str, str]:
        """Queue a run: ("✓ Queued run `ID`.", "", ID), or (parameter problems, data problems, "") and nothing
        queued."""
        t, form = api_values(ctx, task, values)
        try:
            form = task_view.resolve_upload(ctx, form)
        except UserError as e:
            return "", problems_md(e.problems), ""
        run_id, param_problems, data_problems = task_view.try_start(ctx, t, form, backend)
        if not run_id:
            return problems_md(param_problems), problems_md(data_problems), ""
        return f"✓ Queued run `{run_id}`.", "", run_id

    def preview(task: str, values: dict) -> tuple[list, str, dict]:
        """The data's first rows (as records), a note or the problem, and the column matched to each role."""
        t, form = api_values(ctx, task, values)
        extra = {k: form.get(k) for k in DATA_FIELDS if k in form}
        current = {c.role: form.get(MAP_PREFIX + c.role, "") for c in t.columns}
        df, note, matched, _ = task_view.preview_data(t, str(form.get("data_path") or ""), extra, current)
        return df.astype(str).to_dict("records"), note, matched

    for fn in (check, config, start, preview):
        gr.api(fn, api_name=fn.__name__, concurrency_limit=None)
