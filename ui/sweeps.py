"""Sweeps in the studio: the Sweep panel of every task form (fields from the form, strategy, trials, parallel
trials, the one-click preset with its expected cost) and the Sweeps page (trials table sorted by the key metric,
metric-vs-parameter scatter, importance chart, best trial marked, Use best, Stop sweep). The logic is in
:mod:`ui.sweep_view`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.run import sweep as sw
from ui import nav, run_actions, sweep_view, task_tab, task_view
from ui.context import Context
from ui.progress import NO_PROGRESS

QUIET = {"api_visibility": "private", "concurrency_limit": None}


@dataclass
class Panel:
    """The Sweep panel of one task tab."""

    box: Any
    fields: Any
    space: Any
    strategy: Any
    trials: Any
    parallel: Any
    prune: Any
    cost: Any
    start: Any

    def settings(self) -> list[Any]:
        return [self.fields, self.space, self.strategy, self.trials, self.parallel, self.prune]


def build_panel(tab: Any) -> Panel:
    """Lay out a task tab's Sweep panel (closed until its Sweep button opens it with the preset)."""
    p, task = tab.task.name, tab.task
    k = {"preserved_by_key": None}  # render keys (see ui.task_tab.KEYED)
    with gr.Accordion("Sweep: find the best settings", open=False, elem_id=f"{p}-sweep-panel", key=f"{p}-sw") as box:
        fields = gr.Dropdown(
            sweep_view.field_choices(task),
            multiselect=True,
            label="Fields to search",
            elem_id=f"{p}-sweep-fields",
            key=f"{p}-sw-fields",
            **k,
        )
        space = gr.Textbox(
            lines=3,
            label="Search space, one field a line",
            info="NAME=a,b,c (choices) · NAME=low:high (range) · NAME=log:low:high (range on a log scale)",
            elem_id=f"{p}-sweep-space",
            key=f"{p}-sw-space",
            **k,
        )
        with gr.Row(key=f"{p}-sw-row"):
            strategy = gr.Dropdown(
                sweep_view.STRATEGY_CHOICES,
                value="tpe",
                label="Strategy",
                elem_id=f"{p}-sweep-strategy",
                key=f"{p}-sw-strategy",
                **k,
            )
            trials = gr.Number(
                8,
                precision=0,
                minimum=0,
                label="Trials (grid: 0 = its size)",
                elem_id=f"{p}-sweep-trials",
                key=f"{p}-sw-trials",
                **k,
            )
            parallel = gr.Number(
                2,
                precision=0,
                minimum=1,
                label="Parallel trials",
                elem_id=f"{p}-sweep-parallel",
                key=f"{p}-sw-parallel",
                **k,
            )
            prune = gr.Checkbox(
                True,
                label="Stop trials that fall behind (median pruner)",
                elem_id=f"{p}-sweep-prune",
                key=f"{p}-sw-prune",
                **k,
            )
        cost = gr.Markdown(elem_id=f"{p}-sweep-cost", key=f"{p}-sw-cost", **k, elem_classes=["tp-problems"])
        start = gr.Button("Start sweep", variant="primary", elem_id=f"{p}-sweep-start", key=f"{p}-sw-start", **k)
    return Panel(box, fields, space, strategy, trials, parallel, prune, cost, start)


def _form_params(tab: Any, values: dict[str, Any]) -> tuple[Any, str]:
    """The form's params (validated, data not read), or (None, why)."""
    try:
        return tab.task.params.model_validate(task_view.params_data(tab.task, values)), ""
    except Exception as e:  # pydantic's ValidationError: the form's own Check says more
        return None, f"Fix the form first (Check lists the problems): {type(e).__name__}."


def open_updates(ctx: Context, tab: Any, values: dict[str, Any]) -> dict[Any, Any]:
    """Sweep: the panel opened with this form's preset and its expected cost."""
    panel: Panel = tab.sweep
    params, why = _form_params(tab, values)
    if params is None:
        return {panel.box: gr.Accordion(open=True), panel.cost: why}
    preset = sweep_view.preset_values(tab.task, params)
    request = sweep_view.request_of(preset["space"], preset["strategy"], preset["trials"], preset["parallel"], True)
    return {
        panel.box: gr.Accordion(open=True),
        panel.fields: preset["fields"],
        panel.space: preset["space"],
        panel.strategy: preset["strategy"],
        panel.trials: preset["trials"],
        panel.parallel: preset["parallel"],
        panel.prune: preset["pruner"],
        panel.cost: sweep_view.cost_md(ctx.store, tab.task, params, request, ctx.concurrency),
    }


def start_sweep(ctx: Context, tab: Any, backend: str, settings: list[Any], values: dict[str, Any]) -> tuple[str, str]:
    """Queue the sweep: (sweep id, "") or ("", the problems as Markdown)."""
    _, space, strategy, trials, parallel, prune = settings
    values = task_view.resolve_upload(ctx, values)
    if refused := ctx.policy_problems(task_view.params_data(tab.task, values)):
        return "", task_view.problems_md(refused)
    params, param_problems, data_problems = task_view.problems_of(tab.task, values)
    if param_problems or data_problems:
        return "", task_view.problems_md(param_problems + data_problems)
    try:
        name = str(values.get("run_name") or "").strip()
        request = sweep_view.request_of(space, strategy, trials, parallel, bool(prune), name)
        token = str(values.get("hf_token") or "").strip()
        secrets = {"HF_TOKEN": token} if token else None
        return ctx.supervisor.submit_sweep(tab.task, params, request, secrets=secrets, backend=backend or "local"), ""
    except UserError as e:
        return "", task_view.problems_md(e.problems)


def wire_panel(tab: Any, ctx: Context, backend: Any, page: dict[str, Any], nav_box: Any) -> None:
    """The Sweep button, the field picker and Start sweep of one task tab (each reads the form: task_tab.on_form)."""
    panel: Panel = tab.sweep

    def on_open(values: dict[str, Any]) -> dict[Any, Any]:
        return open_updates(ctx, tab, values)

    outputs = [panel.box, *panel.settings(), panel.cost]
    task_tab.on_form(tab, tab.buttons["sweep"].click, on_open, [], outputs, show_progress_on=panel.cost)

    def on_fields(values: dict[str, Any], names: list[str], current: str) -> Any:
        params, why = _form_params(tab, values)
        return sweep_view.space_text(tab.task, params, names or [], current) if params is not None else gr.skip()

    task_tab.on_form(tab, panel.fields.input, on_fields, [panel.fields, panel.space], [panel.space], **NO_PROGRESS)

    def on_start(values: dict[str, Any], backend_name: str, *settings: Any) -> dict[Any, Any]:
        sweep_id, problems = start_sweep(ctx, tab, backend_name, list(settings), values)
        if not sweep_id:
            gr.Warning("Sweep not started — see the problems under Start sweep.")
            return {panel.cost: problems}
        gr.Info(f"Queued sweep {sweep_id}")
        return {
            panel.cost: f"✓ Queued sweep `{sweep_id}`.",
            nav_box: nav.show("tab-sweeps"),
            **view_updates(ctx, page, sweep_id),
        }

    outputs = [panel.cost, nav_box, *view_outputs(page)]
    task_tab.on_form(
        tab, panel.start.click, on_start, [backend, *panel.settings()], outputs, show_progress_on=panel.cost
    )


# --- the Sweeps page -----------------------------------------------------------------------------------------------


def build_page(ctx: Context) -> dict[str, Any]:
    """Lay out the Sweeps page (call inside its ``gr.Tab``)."""
    c: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        c["select"] = gr.Dropdown([], label="Sweep", elem_id="sweep-select", scale=4, allow_custom_value=True)
        c["refresh"] = gr.Button("Refresh", elem_id="sweep-refresh", scale=0, min_width=90)
        c["use_best"] = gr.Button("Use best", variant="primary", elem_id="sweep-use-best", scale=0, min_width=110)
        c["stop"] = gr.Button("Stop sweep", variant="stop", elem_id="sweep-stop", scale=0, min_width=110)
    c["header"] = gr.Markdown(
        "Start a sweep from a task form's **Sweep** button; its trials are ordinary runs.", elem_id="sweep-header"
    )
    c["table"] = gr.Dataframe(interactive=False, elem_id="sweep-trials", label="Trials, best first")
    with gr.Row():
        c["param"] = gr.Dropdown([], label="Parameter", elem_id="sweep-param", scale=1)
    with gr.Row():
        c["scatter"] = gr.ScatterPlot(label="Key metric against the parameter", elem_id="sweep-scatter", height=260)
        c["importance"] = gr.BarPlot(
            label="Importance (rank correlation with the key metric)", elem_id="sweep-importance", height=260
        )
    return c


def view_outputs(c: dict[str, Any]) -> list[Any]:
    return [c["select"], c["header"], c["table"], c["param"], c["scatter"], c["importance"]]


def view_updates(ctx: Context, c: dict[str, Any], sweep_id: str, param: str = "") -> dict[Any, Any]:
    """The page showing ``sweep_id`` (the newest sweep when empty)."""
    sweeps = ctx.store.list_sweeps()
    choices = sweep_view.sweep_choices(sweeps)
    sweep_id = sweep_id or (sweeps[0]["id"] if sweeps else "")
    if not sweep_id or ctx.store.get_sweep(sweep_id) is None:
        return {c["select"]: gr.Dropdown(choices=choices, value=None)}
    result = sw.summary(ctx.store, sweep_id)
    result["planned"] = ctx.store.get_sweep(sweep_id)["trials"]
    names = sorted({k for t in result["trials"] for k in t["params"]})
    param = param if param in names else (names[0] if names else "")
    pts = sweep_view.points(result, param) if param else pd.DataFrame()
    imp = sweep_view.importance(result)
    key = result["key_metric"]
    return {
        c["select"]: gr.Dropdown(choices=choices, value=sweep_id),
        c["header"]: sweep_view.header_md(result),
        c["table"]: sweep_view.trials_table(result),
        c["param"]: gr.Dropdown(choices=names, value=param or None),
        c["scatter"]: gr.ScatterPlot(value=None if pts.empty else pts, x=param or None, y=key, color="status"),
        c["importance"]: gr.BarPlot(value=None if imp.empty else imp, x="field", y="importance"),
    }


def wire_page(ctx: Context, c: dict[str, Any], page_tab: Any, fill: tuple[Any, list]) -> None:
    """Select, Refresh, the parameter picker, Stop sweep and Use best (fills the task form: the Duplicate path)."""
    outputs = view_outputs(c)

    def show(sweep_id: str | None, param: str | None = "") -> dict[Any, Any]:
        return view_updates(ctx, c, sweep_id or "", param or "")

    for event in (c["select"].input, c["refresh"].click, c["param"].input):
        event(show, [c["select"], c["param"]], outputs, **QUIET, **NO_PROGRESS)
    page_tab.select(show, [c["select"], c["param"]], outputs, **QUIET, **NO_PROGRESS)

    def on_stop(sweep_id: str | None, param: str | None) -> dict[Any, Any]:
        if sweep_id:
            try:
                ctx.supervisor.stop_sweep(sweep_id)
            except UserError as e:
                gr.Warning(str(e))
        return show(sweep_id, param)

    c["stop"].click(on_stop, [c["select"], c["param"]], outputs, **QUIET, **NO_PROGRESS)
    fill_updates, fill_states = fill

    def on_use_best(sweep_id: str | None) -> Any:
        sweep = ctx.store.get_sweep(sweep_id or "")
        best = sw.summary(ctx.store, sweep["id"])["best_run_id"] if sweep else None
        if not best:
            gr.Warning("This sweep has no finished trial yet.")
            return gr.skip()
        request = run_actions.duplicate_request(ctx, best)
        request["name"] = f"{sweep['name']} best"
        return fill_updates(request)

    c["use_best"].click(on_use_best, c["select"], fill_states, **QUIET, **NO_PROGRESS)
