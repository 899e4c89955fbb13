"""The Evaluate page: evaluate a run or a base model on a test file (an ``eval`` job, never in this process), follow
its progress, see a model's evaluations with its worst predictions, and compare base vs runs on the same test data
(key metric first, the best marked, and a chart). Handlers are plain functions of the context (tested without a
browser); ``build`` lays out and wires the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.eval.submit import EvalRequest
from engine.task import all_tasks
from ui.context import Context
from ui.progress import NO_PROGRESS
from ui.runs_view import fmt_time

BEST = "★"
QUIET = {"api_visibility": "private", "concurrency_limit": None, **NO_PROGRESS}  # no spinner on tables and plots


def model_choices(ctx: Context) -> list[tuple[str, str]]:
    """Succeeded runs (by id) and base model folders under the data folder's models/."""
    runs = [
        (f"{r.get('name') or r['id']} · {r['task']} · {r['id']}", r["id"]) for r in ctx.store.list_runs("succeeded")
    ]
    return runs + [(f"base: {Path(p).name}", p) for p in ctx.local_models()]


def evaluable_tasks() -> list[str]:
    return [t.name for t in all_tasks() if t.evaluate is not None]


def eval_request(
    model: str, task: str, data: str, upload: Any, judge: str, against: str, benchmark: str
) -> EvalRequest:
    """The request the form describes (an uploaded file wins over a typed path)."""
    if not model:
        raise UserError("Pick the model to evaluate: a finished run, or a base model folder.")
    path = upload if isinstance(upload, str) and upload else (data or "").strip() or "valid"
    request = EvalRequest(str(model), path, task or "")
    request.judge = "" if judge in ("", "none", None) else judge
    request.against, request.benchmark = against or "", (benchmark or "").strip()
    return request


def submit(ctx: Context, *form: Any) -> tuple[str, str]:
    """(job id, status text) of a newly queued evaluation; the problem as an error toast."""
    try:
        job_id = ctx.supervisor.submit_eval(eval_request(*form))
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None
    return job_id, f"Evaluation `{job_id}` queued."


def job_status(ctx: Context, job_id: str) -> tuple[str, bool]:
    """(Markdown of the job's state, whether it still runs)."""
    job = ctx.store.get_job(job_id) if job_id else None
    if job is None:
        return "", False
    progress = json.loads(Path(job["job_dir"], "progress.json").read_text()) if _has(job, "progress.json") else {}
    if job["status"] in ("queued", "running"):
        bar = f" {progress.get('fraction', 0) * 100:.0f}% — {progress.get('message', '')}" if progress else ""
        return f"**{job['status']}**{bar}", True
    if job["status"] == "failed":
        return f"**failed**: {job.get('error') or 'see the job log'}", False
    metrics = (job.get("result") or {}).get("metrics") or {}
    shown = ", ".join(f"{k} = {_fmt(v)}" for k, v in metrics.items() if isinstance(v, (int, float)))
    return f"**{job['status']}** — {shown}", False


def _has(job: dict[str, Any], name: str) -> bool:
    return Path(job["job_dir"], name).exists()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluations_frame(ctx: Context, model: str) -> pd.DataFrame:
    """A model's evaluations (a run's, or a base model's), newest first."""
    rows = [e for e in ctx.store.list_evaluations() if e["model"] == model or e["run_id"] == model]
    return pd.DataFrame(
        [
            {
                "evaluation": e["id"],
                "data": Path(e["data"]).name,
                "examples": e["n_examples"],
                "key metric": f"{e['key_metric_name']} = {_fmt(e['key_metric'])}",
                "metrics": _summary(e["metrics"]),
                "when": fmt_time(e.get("created_at")),
            }
            for e in rows
        ],
        columns=["evaluation", "data", "examples", "key metric", "metrics", "when"],
    )


def _summary(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if isinstance(v, (int, float)))


def worst_rows(ctx: Context, evaluation_id: str, limit: int = 20) -> pd.DataFrame:
    """The evaluation's first ``limit`` per-example rows (worst first)."""
    from engine.eval.job import read_rows

    found = [e for e in ctx.store.list_evaluations() if e["id"] == evaluation_id]
    if not found or not Path(found[0]["predictions_path"]).exists():
        return pd.DataFrame()
    return pd.DataFrame(read_rows(found[0]["predictions_path"], limit)).astype(str)


def data_choices(ctx: Context) -> list[tuple[str, str]]:
    """Test data evaluated so far (one choice per data hash), with how many models were evaluated on it."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for e in ctx.store.list_evaluations():
        seen.setdefault(e["data_hash"], []).append(e)
    return [
        (f"{Path(v[0]['data']).name} · {k[:8]} · {len({e['model'] for e in v})} model(s)", k) for k, v in seen.items()
    ]


def compare_frame(ctx: Context, data_hash: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, chart data): base vs runs on the same test data, the latest evaluation of each model, key metric
    first with the best value marked; the chart plots each model's key metric."""
    latest: dict[str, dict[str, Any]] = {}
    for e in ctx.store.list_evaluations(data_hash=data_hash):  # newest first
        latest.setdefault(e["model"], e)
    if not latest:
        return pd.DataFrame(), pd.DataFrame(columns=["model", "value"])
    evals = list(latest.values())
    key, greater = evals[0]["key_metric_name"], bool(evals[0]["greater_is_better"])
    values = [e["metrics"].get(key) for e in evals]
    known = [v for v in values if isinstance(v, (int, float))]
    best = (max if greater else min)(known) if known else None
    order = sorted(
        range(len(evals)), key=lambda i: (values[i] is None, -(values[i] or 0) if greater else values[i] or 0)
    )
    names = sorted({k for e in evals for k, v in e["metrics"].items() if isinstance(v, (int, float)) and k != key})
    table = []
    for i in order:
        e, v = evals[i], values[i]
        row = {"model": _model_name(ctx, e), "kind": "run" if e["run_id"] else "base model"}
        row[key] = f"{_fmt(v)} {BEST}" if v is not None and v == best else _fmt(v)
        table.append(row | {n: _fmt(e["metrics"].get(n)) for n in names})
    chart = pd.DataFrame(
        [{"model": _model_name(ctx, evals[i]), "value": values[i]} for i in order if values[i] is not None]
    )
    return pd.DataFrame(table), chart


def _model_name(ctx: Context, e: dict[str, Any]) -> str:
    if not e["run_id"]:
        return f"base: {Path(e['model']).name}"
    run = ctx.store.get_run(e["run_id"]) or {}
    return f"{run.get('name') or e['run_id']} ({e['run_id']})"


# --- layout and wiring ----------------------------------------------------------------------------


def build(ctx: Context) -> dict[str, Any]:
    """The page's widgets (inside a ``gr.Tab``), wired."""
    c: dict[str, Any] = {"job": gr.State("")}
    gr.Markdown(
        "Evaluate a finished run **or a base model** on a test file (same formats and columns as training; empty: "
        "the run's validation split). It runs as a job in its own process; the result joins the history."
    )
    with gr.Row():
        c["model"] = gr.Dropdown([], label="Model", allow_custom_value=True, elem_id="eval-model", scale=3)
        c["task"] = gr.Dropdown(["", *evaluable_tasks()], value="", label="Task (base model)", elem_id="eval-task")
        c["refresh"] = gr.Button("Refresh", scale=0, elem_id="eval-refresh")
    with gr.Row():
        c["data"] = gr.Textbox(label="Test file path (empty: validation split)", elem_id="eval-data", scale=3)
        c["upload"] = gr.File(label="or upload a test file", type="filepath", elem_id="eval-upload", scale=2)
    with gr.Accordion("LLM judge and benchmarks", open=False):
        with gr.Row():
            c["judge"] = gr.Radio(["none", "pairwise", "single"], value="none", label="LLM judge", elem_id="eval-judge")
            c["against"] = gr.Dropdown([], label="Pairwise: against", allow_custom_value=True, elem_id="eval-against")
            c["benchmark"] = gr.Textbox(label="lm-eval benchmark (names, task YAML or JSONL)", elem_id="eval-bench")
    with gr.Row():
        c["go"] = gr.Button("Evaluate", variant="primary", scale=0, elem_id="eval-go")
        c["status"] = gr.Markdown(elem_id="eval-status")
    c["timer"] = gr.Timer(1.0, active=False)
    c["history"] = gr.Dataframe(label="This model's evaluations (click one)", interactive=False, elem_id="eval-history")
    c["worst"] = gr.Dataframe(label="Worst predictions first", interactive=False, elem_id="eval-worst", max_height=360)
    with gr.Accordion("Compare on the same test data", open=True, elem_id="eval-compare"):
        c["cmp_data"] = gr.Dropdown([], label="Test data", elem_id="eval-cmp-data")
        c["cmp_table"] = gr.Dataframe(label="Base vs runs (best marked ★)", interactive=False, elem_id="eval-cmp")
        c["cmp_plot"] = gr.BarPlot(x="model", y="value", label="Key metric", elem_id="eval-cmp-plot", height=260)
    _wire(ctx, c)
    return c


def _wire(ctx: Context, c: dict[str, Any]) -> None:
    form = [c[k] for k in ("model", "task", "data", "upload", "judge", "against", "benchmark")]

    def on_refresh() -> tuple[Any, Any, Any]:
        models = model_choices(ctx)
        return gr.update(choices=models), gr.update(choices=models), gr.update(choices=data_choices(ctx))

    def on_go(*values: Any) -> tuple[str, str, Any]:
        job_id, text = submit(ctx, *values)
        return job_id, text, gr.Timer(active=True)

    def on_tick(job_id: str, model: str) -> tuple[str, Any, Any, Any]:
        text, active = job_status(ctx, job_id)
        return text, gr.Timer(active=active), evaluations_frame(ctx, model), gr.update(choices=data_choices(ctx))

    def on_pick(evt: gr.SelectData, table: pd.DataFrame) -> pd.DataFrame:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return worst_rows(ctx, str(table.iloc[row]["evaluation"]))

    refreshed = [c["model"], c["against"], c["cmp_data"]]
    c["refresh"].click(on_refresh, None, refreshed, **QUIET)
    c["model"].focus(on_refresh, None, refreshed, **QUIET)
    c["go"].click(on_go, form, [c["job"], c["status"], c["timer"]], api_name="evaluate")
    c["timer"].tick(on_tick, [c["job"], c["model"]], [c["status"], c["timer"], c["history"], c["cmp_data"]], **QUIET)
    c["model"].change(lambda m: evaluations_frame(ctx, m), c["model"], c["history"], **QUIET)
    c["history"].select(on_pick, c["history"], c["worst"], **QUIET)
    c["cmp_data"].change(lambda h: compare_frame(ctx, h), c["cmp_data"], [c["cmp_table"], c["cmp_plot"]], **QUIET)
