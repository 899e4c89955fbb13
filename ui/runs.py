"""The Runs page's widgets and events: the history table, one run's live view and actions, run comparison.

Each ``gr.Timer`` tick re-reads the run store and the run folder (:mod:`ui.runs_view`), so a reloaded page
or a restarted app shows the true state. Handlers return ``{component: update}`` maps.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.run.store import STATUSES
from engine.task import all_tasks
from engine.train import charts
from ui import evals, run_actions, run_exports, runs_view
from ui.context import Context
from ui.progress import NO_PROGRESS
from ui.runs_view import ALL, TABLE_COLUMNS

BUTTONS = ["stop", "resume", "duplicate", "download", "merge", "delete"]
# the detail panel's outputs, in the order the public ``/poll`` endpoint returns them (after the table)
DETAIL_KEYS = ["header", "error", *charts.CHARTS, "log", "metrics", "config", *BUTTONS, *charts.RESULTS, "points"]
PLOT = {
    "x": "step",
    "y": "value",
    "color": "series",
    "height": 290,
    "y_axis_format": ".3~g",
    "colors_in_legend": [],  # no legend (a stray "series" under every chart): the title names each colour
}  # 19,136.3 not 19,136.286579
# Gradio 6.31's LinePlot takes a chart's series (its colour domain) from the data it had when it last rebuilt its
# chart, and a new value alone does not rebuild it: a series that appears later is drawn in the first one's colour
# or not at all, and a run switch keeps the previous run's series. A y-title change in a *later* event rebuilds
# it with the data it has then: ``redraw_updates`` sends one after every update that changed a chart's series.
Y_TITLES = ("value", "value\u200b")  # the same on screen
SCROLL_LOG = "() => { const t = document.querySelector('#run-log textarea'); if (t) t.scrollTop = t.scrollHeight; }"
QUIET = {"api_visibility": "private", "concurrency_limit": None}  # as ui.task_tab.QUIET
# id, name, task, base model, status, progress, started, duration, metric: all readable at 1400 px
TABLE_WIDTHS = ["15%", "11%", "10%", "13%", "8%", "8%", "6%", "9%", "8%", "12%"]


# --- layout -----------------------------------------------------------------------------------


def build(ctx: Context, run_id: Any, saved_run: Any) -> dict[str, Any]:
    """Lay out the page (inside a ``gr.Tab``); ``run_id`` is an unrendered Textbox placed here, ``saved_run`` the
    browser's memory of the run it watched."""
    # shown: the run the panel shows; sent: digests of what the page was last sent (see only_changed)
    c: dict[str, Any] = {"saved_run": saved_run, "shown": gr.State(""), "sent": gr.State({})}
    _table(c)
    with gr.Row():
        run_id.render()
        c["x_axis"] = gr.Radio(["step", "epoch"], value="step", label="Chart x axis", elem_id="runs-x", scale=1)
    c["header"] = gr.HTML(elem_id="run-header")
    c["error"] = gr.Markdown(visible=False, elem_id="run-error", elem_classes=["tp-error"])
    _buttons(c)
    _charts(c)
    _results(c)
    _evaluations(c)
    c["log"] = gr.Textbox(
        label="Log (tail)", lines=14, max_lines=14, interactive=False, elem_id="run-log", autoscroll=True
    )
    with gr.Row():
        c["metrics"] = gr.JSON(label="Final metrics", elem_id="run-metrics")
        c["config"] = gr.Code(language="yaml", label="Config", elem_id="run-config", interactive=False)
    _compare(c)
    return c


def _table(c: dict[str, Any]) -> None:
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
        wrap=True,
        column_widths=TABLE_WIDTHS,
        static_columns=list(range(len(TABLE_COLUMNS))),  # a click selects the run; it never opens an edit box
    )


def _buttons(c: dict[str, Any]) -> None:
    with gr.Row():
        c["stop"] = gr.Button("Stop", elem_id="run-stop", variant="stop", interactive=False)
        c["resume"] = gr.Button("Resume", elem_id="run-resume", interactive=False)
        c["duplicate"] = gr.Button("Duplicate", elem_id="run-duplicate", interactive=False)
        c["download"] = gr.Button("Download model", elem_id="run-download", interactive=False)
        c["merge"] = gr.Button("Merge adapter", elem_id="run-merge", visible=False)
        c["delete"] = gr.Button("Delete", elem_id="run-delete", interactive=False)
    with gr.Accordion("Token for Resume", open=False, elem_id="run-resume-token-box"):
        c["resume_token"] = gr.Textbox(
            type="password",
            max_lines=1,
            show_label=False,
            placeholder="hf_… — only for runs that used a token (private model, push to Hub); never saved",
            elem_id="run-resume-token",
        )
    _build_exports(c)
    with gr.Row(visible=False) as c["confirm_row"]:
        c["confirm_text"] = gr.Markdown()
        c["confirm"] = gr.Button("Yes, delete", variant="stop", elem_id="run-delete-confirm", scale=0)
        c["cancel"] = gr.Button("Cancel", scale=0)
    c["file"] = gr.File(label="Model zip", visible=False, elem_id="run-file", interactive=False)


def _charts(c: dict[str, Any]) -> None:
    """One LinePlot per chart of ``engine.train.charts.CHARTS``, two to a row; above them, the values of charts
    that have one point so far (``runs_view.single_points``: a chart is drawn from its second point)."""
    c["points"] = gr.Markdown(visible=False, elem_id="run-points")
    items = list(charts.CHARTS.items())
    for i in range(0, len(items), 2):
        with gr.Row():
            for key, label in items[i : i + 2]:
                c[key] = gr.LinePlot(label=label, elem_id=f"chart-{key}", **PLOT)


def _results(c: dict[str, Any]) -> None:
    """The run's result views (``engine.train.charts.RESULTS``), each hidden until the run has written its data."""
    labels = charts.RESULTS
    with gr.Row():
        c["confusion"] = gr.Dataframe(label=labels["confusion"], visible=False, elem_id="result-confusion")
        c["per_class"] = gr.Dataframe(label=labels["per_class"], visible=False, elem_id="result-per_class")
    with gr.Row():
        c["leaderboard"] = gr.Dataframe(label=labels["leaderboard"], visible=False, elem_id="result-leaderboard")
        c["importance"] = gr.BarPlot(  # horizontal bars: long names stay readable (runs_view orders them)
            x="importance",
            y="feature",
            label=labels["importance"],
            visible=False,
            elem_id="result-importance",
            x_lim=[0, None],  # bars from 0 (else the smallest bar is cut to nothing)
            height=60 + 26 * charts.IMPORTANCE_TOP,
            y_title=" ",  # the names say what they are
        )
    c["scatter"] = gr.ScatterPlot(
        x="true", y="predicted", label=labels["scatter"], visible=False, elem_id="result-scatter", height=320
    )
    for key in charts.TABLE_VIEWS:  # every other view is a plain table
        c[key] = gr.Dataframe(label=labels[key], visible=False, elem_id=f"result-{key}", wrap=True)


def _evaluations(c: dict[str, Any]) -> None:
    """The run's evaluations (``engine.eval``), newest first, with the worst rows of the one clicked, and "Evaluate
    this run" (it opens the Evaluate page with the run picked). Filled when a run is shown and by Refresh, never by
    the timer's tick."""
    with gr.Accordion("Evaluations", open=True, elem_id="run-evals-box"):
        with gr.Row(equal_height=True):
            c["evals_note"] = gr.Markdown(elem_id="run-evals-note")
            c["evaluate"] = gr.Button("Evaluate this run", elem_id="run-evaluate", scale=0, interactive=False)
        c["evals"] = gr.Dataframe(
            label="This run's evaluations (newest first; click one)",
            interactive=False,
            visible=False,
            wrap=True,
            elem_id="run-evals",
        )
        c["eval_worst"] = gr.Dataframe(
            label="Worst predictions first", interactive=False, visible=False, max_height=320, elem_id="run-eval-worst"
        )


def evaluation_updates(ctx: Context, c: dict[str, Any], rid: str) -> dict[Any, Any]:
    """The evaluations panel for run ``rid`` (its table hidden when it has none; the worst rows of another run's
    evaluation gone)."""
    row = ctx.store.get_run(rid) if rid else None
    table = runs_view.evaluations_table(ctx, rid) if row else pd.DataFrame(columns=runs_view.EVAL_COLUMNS)
    return {
        c["evals_note"]: runs_view.evaluations_note(row, len(table)),
        c["evaluate"]: gr.update(interactive=bool(row and row["status"] == "succeeded")),
        c["evals"]: gr.update(value=table, visible=not table.empty),
        c["eval_worst"]: gr.update(value=None, visible=False),
    }


EVAL_KEYS = ["evals_note", "evaluate", "evals", "eval_worst"]


def result_updates(found: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """An update per result view: shown with its table, or hidden (no empty panels)."""
    return {
        k: gr.update(value=found[k], visible=True) if k in found else gr.update(visible=False) for k in charts.RESULTS
    }


def _compare(c: dict[str, Any]) -> None:
    with gr.Accordion("Compare runs", open=False, elem_id="compare"):
        with gr.Row():
            # custom values: the API (``/compare_runs``) takes run ids; ``compare_ids`` checks each is the user's
            c["cmp_runs"] = gr.Dropdown(
                choices=[],
                multiselect=True,
                allow_custom_value=True,
                label="Runs to compare (two or more)",
                elem_id="compare-runs",
                scale=4,
            )
            c["cmp_go"] = gr.Button("Compare", scale=0, elem_id="compare-go")
        c["cmp_plot"] = gr.LinePlot(label="Loss curves", elem_id="compare-plot", **{**PLOT, "height": 300})
        c["cmp_metrics"] = gr.Dataframe(label="Key metrics", interactive=False, elem_id="compare-metrics")
        c["cmp_table"] = gr.Dataframe(label="Parameters that differ", interactive=False, elem_id="compare-table")


# --- updates ----------------------------------------------------------------------------------


def plot_update(df: pd.DataFrame, x: str, title: str | None = None, hide_empty: bool = False) -> Any:
    """A LinePlot update with fixed colours per series and a title naming them (``engine.train.charts.legend``); no
    data is sent as None (Gradio 6.31 stops drawing lines for good after it has been given an empty DataFrame);
    ``hide_empty``: a chart with no line to draw (no series of two points or more) is hidden rather than shown as
    an empty panel or one lonely dot (its value is said by ``runs_view.single_points``)."""
    drawn = runs_view.has_line(df) if hide_empty else not df.empty
    series = list(dict.fromkeys(df["series"])) if drawn else []  # a hidden chart has none: shown, it is rebuilt
    colour_map = {s: hex_ for s, (_, hex_) in charts.colours(series).items()}
    extra = {"label": charts.legend(title, series)} if title else {}
    if hide_empty:
        extra["visible"] = drawn
    plot = gr.LinePlot(value=df if drawn else None, x=x, color_map=colour_map or None, **extra)
    plot.trainpad_series = "|".join(series)  # for mark_redraws
    return plot


def detail_updates(ctx: Context, run_id: str, x: str) -> dict[str, Any]:
    """An update for each of ``DETAIL_KEYS`` (by key), from :func:`ui.runs_view.run_view`."""
    view = runs_view.run_view(ctx, run_id, x)
    if view is None:
        return _no_run_updates(ctx, run_id, x)
    error, can = view["error"], view["can"]
    return {
        "header": view["header"],
        "error": gr.update(value=runs_view.error_md(view["row"], error), visible=bool(error)),
        **{k: plot_update(view["charts"][k], x, t, hide_empty=True) for k, t in charts.CHARTS.items()},
        "points": _points_update(runs_view.single_points(view["charts"], x)),
        "log": view["log"],
        "metrics": gr.update(value=view["metrics"], visible=view["metrics"] is not None),
        "config": view["config"],
        **{k: gr.update(interactive=can[k]) for k in BUTTONS},
        "merge": gr.update(visible=can["merge"]),
        **result_updates(view["results"]),
    }


def _points_update(text: str) -> Any:
    return gr.update(value=text, visible=bool(text))


def _no_run_updates(ctx: Context, run_id: str, x: str) -> dict[str, Any]:
    empty = runs_view.chart_frame(ctx, "", [], x)
    return {
        "header": runs_view.note_html(run_id),
        "error": gr.update(visible=False),
        **{k: plot_update(empty, x, title, hide_empty=True) for k, title in charts.CHARTS.items()},
        "points": _points_update(""),
        "log": "",
        "metrics": gr.update(value=None, visible=False),
        "config": "",
        **{k: gr.update(interactive=False) for k in BUTTONS},
        "merge": gr.update(visible=False),
        **result_updates({}),
    }


def poll(
    ctx: Context, c: dict[str, Any], timer: Any, view: tuple[str, str, str, str], sent: dict[str, str] | None = None
) -> dict[Any, Any]:
    """The table, the selected run's panel (``view``: run id, status and task filters, x axis), and whether to keep
    ticking; with ``sent`` (what this page was last sent, see :func:`only_changed`) only what changed since."""
    rid, status, task, x = view
    # Read "anything active?" first: a run that ends while the view is built gets one more tick, so the
    # page never freezes showing `running` for a run that has already stopped.
    active = runs_view.any_active(ctx)
    updates = {"table": runs_view.runs_table(ctx, status, task), **detail_updates(ctx, rid, x)}
    updates["timer"] = gr.Timer(active=active)
    sent_updates, digests = only_changed(updates, sent or {})
    digests = mark_redraws(updates, digests, sent or {})
    return {timer if k == "timer" else c[k]: u for k, u in sent_updates.items()} | {c["sent"]: digests}


REDRAW = "__redraw__"  # in a page's ``sent``: charts whose series changed in the last update, to rebuild next


def mark_redraws(updates: dict[str, Any], digests: dict[str, str], before: dict[str, str]) -> dict[str, str]:
    """``digests`` with each chart's series remembered, and the charts whose series changed (from what the page
    showed, ``before``) listed under ``REDRAW`` for :func:`redraw_updates`."""
    changed = []
    digests.update({k: v for k, v in before.items() if k.startswith("title:")})  # which look-alike each chart shows
    for key in charts.CHARTS:
        series = getattr(updates.get(key), "trainpad_series", None)
        if series is None:
            continue
        digests[f"series:{key}"] = series
        if series and series != before.get(f"series:{key}"):
            changed.append(key)
    digests[REDRAW] = ",".join(changed)
    return digests


def redraw_updates(c: dict[str, Any], sent: dict[str, str] | None) -> dict[Any, Any]:
    """The charts listed under ``REDRAW`` rebuilt (their y title flipped between two look-alikes); nothing else."""
    sent = dict(sent or {})
    keys = [k for k in sent.pop(REDRAW, "").split(",") if k]
    flip = {k: Y_TITLES[int(sent.get(f"title:{k}", "0") == "0")] for k in keys}
    sent.update({f"title:{k}": str(Y_TITLES.index(v)) for k, v in flip.items()})
    return {**{c[k]: gr.update(y_title=flip[k]) if k in flip else gr.skip() for k in charts.CHARTS}, c["sent"]: sent}


def redraw_event(c: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the event that follows every chart update (``.then(**redraw_event(c))``)."""
    return {
        "fn": lambda sent: redraw_updates(c, sent),
        "inputs": [c["sent"]],
        "outputs": [*[c[k] for k in charts.CHARTS], c["sent"]],
        **NO_PROGRESS,
        **QUIET,
        "queue": False,
    }


def digest(update: Any) -> str:
    """A fingerprint of an update (a ``gr.update`` dict, a component used as an update, or a plain value); one
    that matches nothing when the update cannot be pickled (it is then always sent)."""
    args = getattr(update, "constructor_args", update)  # a component: what it was built with
    try:
        return hashlib.sha1(pickle.dumps(args)).hexdigest()
    except Exception:  # whatever pickle refuses: the update is simply sent
        return f"unpicklable {time.time_ns()}"


def only_changed(updates: dict[str, Any], sent: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``updates`` (by key) with those equal to what was last sent skipped, and the digests of all of them.

    Every update costs Gradio 6.31's page a walk of its layout, and a tick's plots are redrawn: a running run's
    page ticks every second, mostly with what it already shows. A skipped output costs the page nothing."""
    digests = {k: digest(u) for k, u in updates.items()}
    return {k: gr.skip() if sent.get(k) == digests[k] else u for k, u in updates.items()}, digests


def switch_outputs(c: dict[str, Any]) -> list[Any]:
    """The components :func:`switch_updates` sets."""
    shown = [c["saved_run"], c["shown"], c["sent"], c["file"], c["confirm_row"]]
    return [*[c[k] for k in DETAIL_KEYS], *shown, *[c[k] for k in EVAL_KEYS]]


def switch_updates(ctx: Context, c: dict[str, Any], rid: str, x: str = "step") -> dict[Any, Any]:
    """The panel switched to run ``rid``: its view, the run remembered by this browser and as shown, and what
    belonged to the previous run (its download link, a pending delete question) gone. The table is left as it
    is (the timer, Refresh or the action's own refresh updates it)."""
    detail = detail_updates(ctx, rid, x)
    _, digests = only_changed(detail, {})  # the next tick sends only what changed from these
    digests = mark_redraws(detail, digests, {})  # a switch rebuilds every chart it fills
    hidden = {c["file"]: gr.update(value=None, visible=False), c["confirm_row"]: gr.update(visible=False)}
    shown = {c["saved_run"]: rid, c["shown"]: rid, c["sent"]: digests}
    return {**{c[k]: u for k, u in detail.items()}, **shown, **hidden, **evaluation_updates(ctx, c, rid)}


def restore(ctx: Context, saved: str | None) -> tuple[str, Any, pd.DataFrame]:
    """On (re)load: the run this browser watched, else the newest active run; poll while anything runs; the runs
    table filled (with nothing running the timer never ticks, so it would stay empty until Refresh)."""
    return runs_view.restore_run(ctx, saved), gr.Timer(active=runs_view.any_active(ctx)), runs_view.runs_table(ctx)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a UserError shown as an error toast (that stays until closed)."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except UserError as e:
            raise gr.Error(str(e), duration=None) from None

    return run


# --- wiring -----------------------------------------------------------------------------------


def wire(ctx: Context, c: dict[str, Any], run_id: Any, timer: Any, fill: tuple[Any, list]) -> None:
    """Timer polling, selection, actions and compare. ``fill``: (a request -> the updates that fill its task's
    tab, the hidden boxes those updates may set)."""
    refresh = _wire_poll(ctx, c, run_id, timer)
    _wire_run_buttons(ctx, c, run_id, timer, refresh)
    _wire_delete(ctx, c, run_id, refresh)

    fill_updates, fill_states = fill

    def on_duplicate(rid: str) -> dict[Any, Any]:
        """The run's task form, filled with its params (the tab's own fill event shows it)."""
        return fill_updates(run_actions.duplicate_request(ctx, rid))

    c["duplicate"].click(guarded(on_duplicate), run_id, fill_states, **NO_PROGRESS, **QUIET)
    _wire_compare(ctx, c)
    _wire_exports(ctx, c, run_id)
    _wire_evaluations(ctx, c, run_id)


def _wire_poll(ctx: Context, c: dict[str, Any], run_id: Any, timer: Any) -> dict[str, Any]:
    """Timer, Refresh, axis, filters and row selection; returns the refresh event's arguments for ``.then``."""
    filters = [c["status_f"], c["task_f"]]

    def on_poll(rid: str, status: str, task: str, x: str) -> dict[Any, Any]:
        """Everything (Refresh, a new x axis, after an action; the public ``/poll``)."""
        return poll(ctx, c, timer, (rid, status, task, x))

    def on_tick(rid: str, status: str, task: str, x: str, sent: dict[str, str]) -> dict[Any, Any]:
        """What changed since the page's last update from a poll or a run switch."""
        return poll(ctx, c, timer, (rid, status, task, x), sent)

    refresh = {
        "fn": on_poll,
        "inputs": [run_id, *filters, c["x_axis"]],
        "outputs": [c["table"], *[c[k] for k in DETAIL_KEYS], timer, c["sent"]],
        **NO_PROGRESS,
        "queue": False,
        "api_visibility": "private",
    }
    redraw = redraw_event(c)
    timer.tick(**{**refresh, "fn": on_tick, "inputs": [*refresh["inputs"], c["sent"]]}).then(**redraw)
    c["refresh"].click(**{**refresh, "api_visibility": "public"}, api_name="poll").then(**redraw)
    c["x_axis"].change(**refresh).then(**redraw)
    for f in filters:
        f.change(lambda s, t: runs_view.runs_table(ctx, s, t), filters, c["table"], **NO_PROGRESS, **QUIET)

    def on_select(evt: gr.SelectData) -> str:
        return evt.row_value[0] if evt.row_value else gr.skip()

    c["table"].select(on_select, None, run_id, queue=False, **NO_PROGRESS, **QUIET)

    def on_switch(rid: str, shown: str, x: str) -> dict[Any, Any]:
        """One event (each event costs the page time); nothing when the panel already shows the run (Start fills
        it in its own answer, see ``ui.task_tab.start_updates``)."""
        return gr.skip() if rid == shown else switch_updates(ctx, c, rid, x)

    switched = {"fn": on_switch, "inputs": [run_id, c["shown"], c["x_axis"]], "outputs": switch_outputs(c)}
    run_id.change(**{**refresh, **switched}).then(**redraw)
    c["log"].change(None, None, None, js=SCROLL_LOG)
    return refresh


def _wire_run_buttons(ctx: Context, c: dict[str, Any], run_id: Any, timer: Any, refresh: dict[str, Any]) -> None:
    """Stop, Resume, Download and Merge."""

    def on_stop(rid: str) -> Any:
        ctx.supervisor.stop(run_actions.get_row(ctx, rid)["id"])
        gr.Info(f"Stopping {rid}: it saves a checkpoint, then stops.")
        return gr.Timer(active=True)

    def on_resume(rid: str, token: str = "") -> dict[Any, Any]:
        secrets = {"HF_TOKEN": token.strip()} if (token or "").strip() else None
        new_id = ctx.supervisor.resume(run_actions.get_row(ctx, rid)["id"], secrets=secrets)
        gr.Info(f"Resuming {rid} as {new_id}")
        return {run_id: new_id, timer: gr.Timer(active=True)}

    def on_download(rid: str) -> Any:
        return gr.update(value=ctx.served(run_actions.download_zip(ctx, rid)), visible=True)

    c["stop"].click(guarded(on_stop), run_id, timer, api_name="stop_run", concurrency_limit=None).then(**refresh).then(
        **redraw_event(c)
    )
    c["resume"].click(
        guarded(on_resume), [run_id, c["resume_token"]], [run_id, timer], api_name="resume_run", concurrency_limit=None
    )
    c["download"].click(guarded(on_download), run_id, c["file"], api_name="download_run", concurrency_limit=None)
    merge = guarded(lambda rid: gr.Info(run_actions.merge(ctx, rid)))
    c["merge"].click(merge, run_id, None, api_visibility="private").then(**refresh).then(**redraw_event(c))


def _wire_delete(ctx: Context, c: dict[str, Any], run_id: Any, refresh: dict[str, Any]) -> None:
    """Delete asks first; Yes deletes the run and its folder."""
    confirm_row = c["confirm_row"]

    def on_ask(rid: str) -> dict[Any, Any]:
        return {confirm_row: gr.update(visible=True), c["confirm_text"]: f"Delete run `{rid}` and its folder for good?"}

    def on_delete(rid: str) -> dict[Any, Any]:
        ctx.supervisor.delete(run_actions.get_row(ctx, rid)["id"])
        gr.Info(f"Deleted run {rid}")
        return {run_id: "", confirm_row: gr.update(visible=False), c["file"]: gr.update(visible=False)}

    c["delete"].click(on_ask, run_id, [confirm_row, c["confirm_text"]], **NO_PROGRESS, **QUIET)
    hide = {"fn": lambda: gr.update(visible=False), "inputs": None, "outputs": confirm_row}
    c["cancel"].click(**hide, **NO_PROGRESS, **QUIET)
    outputs = [run_id, confirm_row, c["file"]]
    delete = {"api_name": "delete_run", "concurrency_limit": None, "show_progress_on": c["confirm"]}
    c["confirm"].click(guarded(on_delete), run_id, outputs, **delete).then(**refresh).then(**redraw_event(c))


def compare_ids(ctx: Context, ids: list[str] | None) -> list[str]:
    """The run ids to compare, each one this user may see (on a shared instance, their own runs); UserError when
    one is unknown or fewer than two are given."""
    ids = list(dict.fromkeys(str(i).strip() for i in ids or [] if str(i or "").strip()))
    unknown = [i for i in ids if ctx.store.get_run(i) is None]
    if unknown:
        names = ", ".join(f"`{i}`" for i in unknown)
        raise UserError(f"No run with id {names}. Pick runs from the list (ids as the runs table shows them).")
    if len(ids) < 2:
        raise UserError("Pick at least two runs to compare.")
    return ids


def _build_exports(c: dict[str, Any]) -> None:
    """Export (GGUF, ONNX) and serve a finished run: each a job in its own process (``ui.run_exports``)."""
    with gr.Accordion("Export and serve", open=False, elem_id="run-exports"):
        with gr.Row():
            c["exp_format"] = gr.Dropdown([], label="Format", elem_id="run-export-format", scale=3)
            c["exp_int8"] = gr.Checkbox(label="int8 (ONNX)", value=False, scale=1)
            c["exp_go"] = gr.Button("Export", elem_id="run-export", scale=1)
            c["exp_serve"] = gr.Button("Serve (OpenAI-compatible)", elem_id="run-serve", scale=1)
        with gr.Row():
            c["exp_job"] = gr.Textbox(label="Job id", max_lines=1, scale=3, elem_id="run-export-job")
            c["exp_stop"] = gr.Button("Stop job", scale=1)
            c["exp_get"] = gr.Button("Download the newest export", scale=1, elem_id="run-export-download")
            c["exp_refresh"] = gr.Button("Refresh", scale=1)
        c["exp_jobs"] = gr.Markdown(elem_id="run-export-jobs")
        c["exp_file"] = gr.File(label="Export", visible=False, interactive=False)


def _wire_exports(ctx: Context, c: dict[str, Any], run_id: Any) -> None:
    def shown(rid: str) -> tuple[Any, str]:
        choices = run_exports.export_choices(ctx, rid) if rid else []
        return gr.update(choices=choices, value=next((v for _, v in choices if v), None)), (
            run_exports.jobs_markdown(ctx, rid) if rid else ""
        )

    listed = [c["exp_format"], c["exp_jobs"]]
    c["exp_refresh"].click(guarded(shown), run_id, listed, **NO_PROGRESS, **QUIET)
    c["exp_go"].click(
        guarded(lambda rid, f, q: (run_exports.start_export(ctx, rid, f, q), run_exports.jobs_markdown(ctx, rid))),
        [run_id, c["exp_format"], c["exp_int8"]],
        [c["exp_job"], c["exp_jobs"]],
        api_name="export_run",
    )
    c["exp_serve"].click(
        guarded(lambda rid: (run_exports.start_endpoint(ctx, rid), run_exports.jobs_markdown(ctx, rid))),
        run_id,
        [c["exp_job"], c["exp_jobs"]],
        api_name="serve_run",
    )
    c["exp_stop"].click(
        guarded(lambda rid, job: (run_exports.stop_job(ctx, job), run_exports.jobs_markdown(ctx, rid))[1]),
        [run_id, c["exp_job"]],
        c["exp_jobs"],
        api_name="stop_job",
    )
    c["exp_get"].click(
        guarded(lambda rid: gr.update(value=ctx.served(run_exports.newest_export(ctx, rid)), visible=True)),
        run_id,
        c["exp_file"],
        api_name="download_export",
    )


def _wire_compare(ctx: Context, c: dict[str, Any]) -> None:
    """Compare (also ``/compare_runs`` with a list of run ids); the run list is refreshed when the box opens."""

    def on_compare(ids: list[str], x: str) -> dict[Any, Any]:
        ids = compare_ids(ctx, ids)
        curves, diff = runs_view.compare(ctx, ids, x)
        metrics = runs_view.metrics_table(ctx, ids)
        return {c["cmp_plot"]: plot_update(curves, x, "Loss curves"), c["cmp_table"]: diff, c["cmp_metrics"]: metrics}

    c["cmp_go"].click(
        guarded(on_compare),
        [c["cmp_runs"], c["x_axis"]],
        [c["cmp_plot"], c["cmp_metrics"], c["cmp_table"]],
        api_name="compare_runs",
        concurrency_limit=None,
        show_progress_on=c["cmp_go"],  # not the tables (ui.progress)
    )
    choices = {"fn": lambda: gr.update(choices=runs_view.run_choices(ctx)), "inputs": None, "outputs": c["cmp_runs"]}
    c["cmp_runs"].focus(**choices, **NO_PROGRESS, **QUIET)


def _wire_evaluations(ctx: Context, c: dict[str, Any], run_id: Any) -> None:
    """Refresh re-reads the run's evaluations; a click on one shows its worst rows; "Evaluate this run" hands the
    run to the Evaluate page (its model box, found by ``elem_id``) and shows that page."""
    outputs = [c[k] for k in EVAL_KEYS]
    c["refresh"].click(lambda rid: evaluation_updates(ctx, c, rid), run_id, outputs, **NO_PROGRESS, **QUIET)

    def on_pick(evt: gr.SelectData) -> Any:
        rid = str(evt.row_value[0]) if evt.row_value else ""
        return gr.update(value=evals.worst_rows(ctx, rid), visible=bool(rid)) if rid else gr.skip()

    c["evals"].select(on_pick, None, c["eval_worst"], **NO_PROGRESS, **QUIET)
    model_box = find_component(EVAL_MODEL_ID)
    if model_box is None:  # a page without the Evaluate page (a test's partial layout)
        return

    def on_evaluate(rid: str) -> Any:
        row = run_actions.get_row(ctx, rid)
        if row["status"] != "succeeded":
            raise UserError(f"Run `{rid}` is {row['status']}: only a finished run can be evaluated.")
        return gr.update(choices=evals.model_choices(ctx), value=row["id"])

    show_page = "() => { document.getElementById('tab-evaluate-button')?.click(); }"
    c["evaluate"].click(guarded(on_evaluate), run_id, model_box, **NO_PROGRESS, **QUIET).success(
        None, None, None, js=show_page
    )


EVAL_MODEL_ID = "eval-model"  # ui.evals's model box


def find_component(elem_id: str) -> Any:
    """The component of the Blocks being built with this ``elem_id`` (None when there is none)."""
    root = gr.context.Context.root_block
    blocks = getattr(root, "blocks", {}) if root is not None else {}
    return next((b for b in blocks.values() if getattr(b, "elem_id", None) == elem_id), None)
