"""The Runs page: the history table (SQLite), one run's live view, its actions, and run comparison.

Everything shown is read from the run store and the run folder on each ``gr.Timer`` tick, so a
reloaded page or a restarted app shows the true state. Data functions are plain and tested directly.
"""

from __future__ import annotations

import html
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml

from engine import runfiles as rf
from engine.errors import UserError
from engine.store import ACTIVE, STATUSES
from engine.task import all_tasks
from ui.context import Context

ALL = "all"
TABLE_COLUMNS = [
    "id",
    "name",
    "task",
    "base model",
    "status",
    "progress",
    "started",
    "duration",
    "metric",
]
LOSS = ["loss", "eval_loss"]
LR = ["learning_rate"]
THROUGHPUT = ["tokens_per_second", "samples_per_second"]
NOT_CHARTED = {
    "grad_norm",
    "num_input_tokens_seen",
    "total_flos",
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
    "num_train_epochs",
    "global_step",
}


# --- formatting -------------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def progress_text(row: dict[str, Any]) -> str:
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    if total:
        return f"{step}/{total} ({100 * step / total:.0f}%)"
    return f"{step}" if step else ""


def duration_of(row: dict[str, Any], now: float | None = None) -> float | None:
    if not row.get("started_at"):
        return None
    return (row.get("ended_at") or now or time.time()) - row["started_at"]


def metric_text(row: dict[str, Any]) -> str:
    if row.get("key_metric") is None:
        return ""
    return f"{row.get('key_metric_name') or 'metric'}={row['key_metric']:.4g}"


# --- the table --------------------------------------------------------------------------------


def runs_table(ctx: Context, status: str = ALL, task: str = ALL) -> pd.DataFrame:
    """All runs (newest first) as the table shows them."""
    rows = ctx.store.list_runs(
        status=None if status in (ALL, "", None) else status,
        task=None if task in (ALL, "", None) else task,
    )
    now = time.time()
    data = [
        [
            r["id"],
            r.get("name") or "",
            r["task"],
            r.get("base_model") or "",
            r["status"],
            progress_text(r),
            fmt_time(r.get("started_at") or r.get("created_at")),
            fmt_duration(duration_of(r, now)),
            metric_text(r),
        ]
        for r in rows
    ]
    return pd.DataFrame(data, columns=TABLE_COLUMNS)


def any_active(ctx: Context) -> bool:
    return bool(ctx.store.runs_with_status(*ACTIVE))


# --- one run ----------------------------------------------------------------------------------


def chart_frame(ctx: Context, run_id: str, names: list[str], x: str = "step") -> pd.DataFrame:
    """Long-form metrics (x, value, series) for a LinePlot; rows without an epoch are dropped when x is epoch."""
    rows = ctx.store.metrics(run_id, names) if names else []
    df = pd.DataFrame(rows, columns=["step", "epoch", "name", "value", "time"])
    df = df.rename(columns={"name": "series"})[["step", "epoch", "value", "series"]]
    # numeric dtypes even when empty: the plot fixes its axis types from the first data it gets
    df = df.astype({"step": "int64", "epoch": "float64", "value": "float64", "series": "str"})
    if x == "epoch":
        df = df.dropna(subset=["epoch"])
    return df.reset_index(drop=True)


def chart_groups(ctx: Context, run_id: str) -> dict[str, list[str]]:
    """Metric names for each chart: loss, learning rate, throughput, other metrics."""
    names = set(ctx.store.metric_names(run_id)) if run_id else set()
    throughput = [n for n in THROUGHPUT if n in names][:1]
    used = set(LOSS) | set(LR) | set(THROUGHPUT)
    other = sorted(
        n for n in names if n not in used and n not in NOT_CHARTED and not n.endswith(("_per_second", "_runtime"))
    )
    return {
        "loss": [n for n in LOSS if n in names],
        "lr": [n for n in LR if n in names],
        "throughput": throughput,
        "other": other,
    }


def eta_seconds(ctx: Context, row: dict[str, Any], now: float | None = None) -> float | None:
    """Time left, from the pace of the steps logged so far."""
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    if row["status"] != "running" or not step or not total or step >= total:
        return None
    now = now or time.time()
    points = [m for m in ctx.store.metrics(row["id"], LOSS[:1]) if m.get("time")]
    if len(points) >= 2 and points[-1]["step"] > points[0]["step"]:
        rate = (points[-1]["time"] - points[0]["time"]) / (points[-1]["step"] - points[0]["step"])
    else:
        rate = (now - (row.get("started_at") or now)) / step
    return rate * (total - step)


def header_html(ctx: Context, row: dict[str, Any]) -> str:
    """Status badge, name, progress bar with ETA, timings."""
    status = row["status"]
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    pct = 100 * step / total if total else (100 if status == "succeeded" else 0)
    eta = eta_seconds(ctx, row)
    bits = [f"step {progress_text(row) or 0}"]
    if row.get("epoch") is not None:
        bits.append(f"epoch {row['epoch']:.2f}")
    if duration_of(row) is not None:
        bits.append(f"elapsed {fmt_duration(duration_of(row))}")
    if eta is not None:
        bits.append(f"ETA {fmt_duration(eta)}")
    if metric_text(row):
        bits.append(metric_text(row))
    return (
        f'<div class="tp-run-head"><span class="tp-badge tp-{status}" id="run-status">{status}</span> '
        f"<b>{html.escape(row.get('name') or row['id'])}</b> · {html.escape(row['task'])} · <code>{row['id']}</code>"
        f'<div class="tp-progress"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="tp-run-facts">{" · ".join(bits)}</div></div>'
    )


def run_view(ctx: Context, run_id: str, x: str = "step") -> dict[str, Any] | None:
    """Everything the detail panel shows for one run (None when it does not exist)."""
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        return None
    run_dir = Path(row["run_dir"])
    groups = chart_groups(ctx, run_id)
    config = (run_dir / rf.CONFIG).read_text(encoding="utf-8") if (run_dir / rf.CONFIG).exists() else ""
    return {
        "row": row,
        "header": header_html(ctx, row),
        "charts": {k: chart_frame(ctx, run_id, names, x) for k, names in groups.items()},
        "log": rf.log_tail(run_dir),
        "metrics": rf.read_json(run_dir / rf.METRICS),
        "error": row.get("error") if row["status"] in ("failed", "interrupted") else None,
        "config": config,
        "can": actions_allowed(row),
    }


def actions_allowed(row: dict[str, Any]) -> dict[str, bool]:
    run_dir = Path(row["run_dir"])
    active = row["status"] in ACTIVE
    model = run_dir / rf.MODEL_DIR
    return {
        "stop": active,
        "resume": not active and rf.last_checkpoint(run_dir) is not None,
        "duplicate": True,
        "delete": not active,
        "download": row["status"] == "succeeded" and model.is_dir(),
        "merge": not active and merge_available() and has_adapter(run_dir) and not is_merged(run_dir),
    }


def has_adapter(run_dir: Path) -> bool:
    return any((run_dir / d / "adapter_config.json").exists() for d in ("adapter", rf.MODEL_DIR))


def is_merged(run_dir: Path) -> bool:
    """A standalone model exists: ``merged/`` (engine.merge) or a full model in ``model/``."""
    model = run_dir / rf.MODEL_DIR
    full_model = (model / "config.json").exists() and not (model / "adapter_config.json").exists()
    return (run_dir / "merged").is_dir() or full_model


def merge_available() -> bool:
    return importlib.util.find_spec("engine.merge") is not None


# --- actions ----------------------------------------------------------------------------------


def download_zip(ctx: Context, run_id: str) -> Path:
    """A zip of the run's model folder, in the exports folder."""
    row = _row(ctx, run_id)
    model = Path(row["run_dir"]) / rf.MODEL_DIR
    if not model.is_dir():
        raise UserError(f"Run `{run_id}` has no model folder to download (status: {row['status']}).")
    base = ctx.exports_dir / f"{row.get('name') or run_id}-{run_id}-model".replace("/", "_")
    return Path(shutil.make_archive(str(base), "zip", root_dir=model))


def merge(ctx: Context, run_id: str) -> str:
    from engine import merge as merge_mod  # written separately; offered only when present

    row = _row(ctx, run_id)
    result = merge_mod.merge_in_subprocess(row["run_dir"])
    return f"Merged the adapter of `{run_id}`" + (f": {result}" if result else ".")


def duplicate_request(ctx: Context, run_id: str) -> dict[str, Any]:
    row = _row(ctx, run_id)
    return {
        "task": row["task"],
        "params": row["params"],
        "name": f"{row.get('name') or run_id} (copy)",
        "nonce": time.time(),
    }


def _row(ctx: Context, run_id: str) -> dict[str, Any]:
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        raise UserError(f"No run with id `{run_id}`. Pick one in the table.")
    return row


# --- compare ----------------------------------------------------------------------------------


def compare(ctx: Context, run_ids: list[str], x: str = "step") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Loss curves of several runs (series = run name + metric) and a table of the params that differ."""
    frames, configs = [], {}
    for run_id in run_ids:
        row = ctx.store.get_run(run_id)
        if row is None:
            continue
        label = f"{row.get('name') or run_id}"
        df = chart_frame(ctx, run_id, LOSS, x)
        df["series"] = label + " · " + df["series"]
        frames.append(df)
        configs[label] = {"task": row["task"], **(row.get("params") or {})}
    curves = pd.concat(frames, ignore_index=True) if frames else chart_frame(ctx, "", [], x)
    return curves, config_diff(configs)


def config_diff(configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per parameter whose value differs between the runs (columns = runs)."""
    keys = sorted({k for c in configs.values() for k in c})
    rows = []
    for key in keys:
        values = [configs[label].get(key) for label in configs]
        if len({yaml.safe_dump(v) for v in values}) > 1:
            rows.append([key, *[_short(v) for v in values]])
    return pd.DataFrame(rows, columns=["parameter", *configs])


def _short(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    )
    return text if len(text) <= 80 else text[:79] + "…"


def run_choices(ctx: Context) -> list[tuple[str, str]]:
    return [(f"{r.get('name') or r['id']} · {r['status']} · {r['id']}", r["id"]) for r in ctx.store.list_runs()]


# --- layout and wiring ------------------------------------------------------------------------

PLOT = {"x": "step", "y": "value", "color": "series", "height": 290}


def build(ctx: Context, run_id: Any) -> dict[str, Any]:
    """Lay out the page (inside a ``gr.Tab``); ``run_id`` is an unrendered Textbox placed here."""
    c: dict[str, Any] = {}
    tasks = [ALL] + [t.name for t in all_tasks()]
    with gr.Row():
        c["status_f"] = gr.Dropdown([ALL, *STATUSES], value=ALL, label="Status", elem_id="runs-status-filter", scale=1)
        c["task_f"] = gr.Dropdown(tasks, value=ALL, label="Task", elem_id="runs-task-filter", scale=1)
        c["refresh"] = gr.Button("Refresh", scale=0, elem_id="runs-refresh")
    c["table"] = gr.Dataframe(
        value=pd.DataFrame(columns=TABLE_COLUMNS),
        interactive=False,
        label="Runs (click a row)",
        elem_id="runs-table",
        max_height=320,
        wrap=False,
    )
    with gr.Row():
        run_id.render()
        c["x_axis"] = gr.Radio(["step", "epoch"], value="step", label="Chart x axis", elem_id="runs-x", scale=1)
    c["header"] = gr.HTML(elem_id="run-header")
    c["error"] = gr.Markdown(visible=False, elem_id="run-error", elem_classes=["tp-error"])
    with gr.Row():
        c["stop"] = gr.Button("Stop", elem_id="run-stop", variant="stop", interactive=False)
        c["resume"] = gr.Button("Resume", elem_id="run-resume", interactive=False)
        c["duplicate"] = gr.Button("Duplicate", elem_id="run-duplicate", interactive=False)
        c["download"] = gr.Button("Download model", elem_id="run-download", interactive=False)
        c["merge"] = gr.Button("Merge adapter", elem_id="run-merge", visible=False)
        c["delete"] = gr.Button("Delete", elem_id="run-delete", interactive=False)
    with gr.Row(visible=False) as c["confirm_row"]:
        c["confirm_text"] = gr.Markdown()
        c["confirm"] = gr.Button("Yes, delete", variant="stop", elem_id="run-delete-confirm", scale=0)
        c["cancel"] = gr.Button("Cancel", scale=0)
    c["file"] = gr.File(label="Model zip", visible=False, elem_id="run-file", interactive=False)
    with gr.Row():
        c["loss"] = gr.LinePlot(label="Loss (training, validation)", elem_id="chart-loss", **PLOT)
        c["lr"] = gr.LinePlot(label="Learning rate", elem_id="chart-lr", **PLOT)
    with gr.Row():
        c["throughput"] = gr.LinePlot(label="Throughput", elem_id="chart-throughput", **PLOT)
        c["other"] = gr.LinePlot(label="Other metrics (validation, …)", elem_id="chart-other", **PLOT)
    c["log"] = gr.Textbox(
        label="Log (tail)",
        lines=14,
        max_lines=14,
        interactive=False,
        elem_id="run-log",
        autoscroll=True,
    )
    with gr.Row():
        c["metrics"] = gr.JSON(label="Final metrics", elem_id="run-metrics")
        c["config"] = gr.Code(language="yaml", label="Config", elem_id="run-config", interactive=False)
    with gr.Accordion("Compare runs", open=False, elem_id="compare"):
        with gr.Row():
            c["cmp_runs"] = gr.Dropdown(
                choices=[],
                multiselect=True,
                label="Runs to compare (two or more)",
                elem_id="compare-runs",
                scale=4,
            )
            c["cmp_go"] = gr.Button("Compare", scale=0, elem_id="compare-go")
        c["cmp_plot"] = gr.LinePlot(label="Loss curves", elem_id="compare-plot", **{**PLOT, "height": 300})
        c["cmp_table"] = gr.Dataframe(label="Parameters that differ", interactive=False, elem_id="compare-table")
    return c


def plot_update(df: pd.DataFrame, x: str) -> Any:
    """A LinePlot update; no data is sent as None (Gradio 6.31 stops drawing lines for good after it
    has been given an empty DataFrame)."""
    return gr.LinePlot(value=None if df.empty else df, x=x)


DETAIL_KEYS = [
    "header",
    "error",
    "loss",
    "lr",
    "throughput",
    "other",
    "log",
    "metrics",
    "config",
    "stop",
    "resume",
    "duplicate",
    "download",
    "merge",
    "delete",
]


def detail_updates(ctx: Context, run_id: str, x: str) -> list[Any]:
    """Updates for ``DETAIL_KEYS`` from :func:`run_view`."""
    view = run_view(ctx, run_id, x)
    if view is None:
        empty = chart_frame(ctx, "", [], x)
        note = "Pick a run in the table (or start one from a task tab)." if not run_id else f"No run `{run_id}`."
        return [
            f'<div class="tp-run-head">{html.escape(note)}</div>',
            gr.update(visible=False),
            *[plot_update(empty, x)] * 4,
            "",
            gr.update(value=None, visible=False),
            "",
            *[gr.update(interactive=False)] * 4,
            gr.update(visible=False),
            gr.update(interactive=False),
        ]
    error = view["error"]
    plots = [plot_update(view["charts"][k], x) for k in ("loss", "lr", "throughput", "other")]
    can = view["can"]
    return [
        view["header"],
        gr.update(
            value=f"**This run {view['row']['status']}.**\n\n```\n{error}\n```" if error else "",
            visible=bool(error),
        ),
        *plots,
        view["log"],
        gr.update(value=view["metrics"], visible=view["metrics"] is not None),
        view["config"],
        gr.update(interactive=can["stop"]),
        gr.update(interactive=can["resume"]),
        gr.update(interactive=can["duplicate"]),
        gr.update(interactive=can["download"]),
        gr.update(visible=can["merge"]),
        gr.update(interactive=can["delete"]),
    ]


def wire(
    ctx: Context,
    c: dict[str, Any],
    run_id: Any,
    timer: Any,
    saved_run: Any,
    load_request: Any,
    main_tabs: Any,
) -> None:
    """Timer polling, selection, actions and compare."""
    detail = [c[k] for k in DETAIL_KEYS]
    filters = [c["status_f"], c["task_f"]]

    def poll(rid: str, status: str, task: str, x: str) -> list[Any]:
        # Read "anything active?" first: a run that ends while the view is built gets one more tick, so the
        # page never freezes showing `running` for a run that has already stopped.
        active = any_active(ctx)
        return [runs_table(ctx, status, task), *detail_updates(ctx, rid, x), gr.Timer(active=active)]

    poll_in, poll_out = [run_id, *filters, c["x_axis"]], [c["table"], *detail, timer]
    timer.tick(poll, poll_in, poll_out, api_name="poll", concurrency_limit=None, show_progress="hidden")
    for trigger in (c["refresh"].click, c["x_axis"].change):
        trigger(
            poll,
            poll_in,
            poll_out,
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
        )
    for f in filters:
        f.change(
            lambda s, t: runs_table(ctx, s, t),
            filters,
            c["table"],
            api_visibility="private",
            concurrency_limit=None,
        )

    def on_select(evt: gr.SelectData) -> str:
        return evt.row_value[0] if evt.row_value else gr.skip()

    c["table"].select(on_select, None, run_id, api_visibility="private", concurrency_limit=None)
    run_id.change(lambda r: r, run_id, saved_run, api_visibility="private", concurrency_limit=None).then(
        poll,
        poll_in,
        poll_out,
        api_visibility="private",
        concurrency_limit=None,
        show_progress="hidden",
    )
    c["log"].change(
        None,
        None,
        None,
        js="() => { const t = document.querySelector('#run-log textarea'); if (t) t.scrollTop = t.scrollHeight; }",
    )
    _wire_actions(ctx, c, run_id, timer, load_request, main_tabs, poll, poll_in, poll_out)
    _wire_compare(ctx, c)


def _wire_actions(
    ctx: Context,
    c: dict[str, Any],
    run_id: Any,
    timer: Any,
    load_request: Any,
    main_tabs: Any,
    poll: Any,
    poll_in: list[Any],
    poll_out: list[Any],
) -> None:
    def guard(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except UserError as e:
                raise gr.Error(str(e), duration=None) from None

        return run

    def refresh(dep: Any) -> None:
        dep.then(
            poll,
            poll_in,
            poll_out,
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
        )

    def on_stop(rid: str) -> Any:
        ctx.supervisor.stop(_row(ctx, rid)["id"])
        gr.Info(f"Stopping {rid}: it saves a checkpoint, then stops.")
        return gr.Timer(active=True)

    refresh(c["stop"].click(guard(on_stop), run_id, timer, api_name="stop_run", concurrency_limit=None))

    def on_resume(rid: str) -> Any:
        new_id = ctx.supervisor.resume(_row(ctx, rid)["id"])
        gr.Info(f"Resuming {rid} as {new_id}")
        return new_id, gr.Timer(active=True)

    c["resume"].click(guard(on_resume), run_id, [run_id, timer], api_name="resume_run", concurrency_limit=None)
    c["duplicate"].click(
        guard(lambda rid: (duplicate_request(ctx, rid), gr.Tabs(selected="train"))),
        run_id,
        [load_request, main_tabs],
        api_visibility="private",
        concurrency_limit=None,
    )
    c["download"].click(
        guard(lambda rid: gr.update(value=str(download_zip(ctx, rid)), visible=True)),
        run_id,
        c["file"],
        api_name="download_run",
        concurrency_limit=None,
    )
    refresh(c["merge"].click(guard(lambda rid: gr.Info(merge(ctx, rid))), run_id, None, api_visibility="private"))
    c["delete"].click(
        lambda rid: (gr.update(visible=True), f"Delete run `{rid}` and its folder for good?"),
        run_id,
        [c["confirm_row"], c["confirm_text"]],
        api_visibility="private",
        concurrency_limit=None,
    )
    c["cancel"].click(lambda: gr.update(visible=False), None, c["confirm_row"], api_visibility="private")

    def on_delete(rid: str) -> Any:
        ctx.supervisor.delete(_row(ctx, rid)["id"])
        gr.Info(f"Deleted run {rid}")
        return "", gr.update(visible=False), gr.update(visible=False)

    refresh(
        c["confirm"].click(
            guard(on_delete),
            run_id,
            [run_id, c["confirm_row"], c["file"]],
            api_name="delete_run",
            concurrency_limit=None,
        )
    )


def _wire_compare(ctx: Context, c: dict[str, Any]) -> None:
    def on_compare(ids: list[str], x: str) -> tuple[Any, Any]:
        if not ids or len(ids) < 2:
            raise gr.Error("Pick at least two runs to compare.")
        curves, diff = compare(ctx, ids, x)
        return plot_update(curves, x), diff

    c["cmp_go"].click(
        on_compare,
        [c["cmp_runs"], c["x_axis"]],
        [c["cmp_plot"], c["cmp_table"]],
        api_name="compare_runs",
        concurrency_limit=None,
    )
    c["cmp_runs"].focus(
        lambda: gr.update(choices=run_choices(ctx)),
        None,
        c["cmp_runs"],
        api_visibility="private",
        concurrency_limit=None,
    )


def restore(ctx: Context, saved: str | None) -> tuple[str, Any]:
    """On (re)load: the run this browser watched, else the newest active run; poll while anything runs."""
    rid = saved if saved and ctx.store.get_run(saved) else ""
    if not rid:
        active = ctx.store.runs_with_status("running") or ctx.store.runs_with_status("queued")
        rid = active[-1]["id"] if active else ""
    return rid, gr.Timer(active=any_active(ctx))
