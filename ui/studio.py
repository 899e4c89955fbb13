"""The whole studio: header, one tab per task (grouped by family), Runs, Playground, Docs.

Built from the task registry at start-up; adding a task to ``engine.task.TASK_MODULES`` adds its tab.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from engine import settings
from engine.errors import UserError
from engine.preflight import bounded, system
from engine.run.backends import all_backends
from engine.task import FAMILIES, Task, all_tasks, get_task
from ui import evals, nav, playground, publish, runs, side_by_side, sweeps, task_api, task_picker, task_tab, task_view
from ui.context import Context
from ui.progress import NO_PROGRESS

QUIET = {"api_visibility": "private", "concurrency_limit": None}

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
CSS_PATH = ASSETS / "style.css"
LOGO_PATH = ASSETS / "logo.svg"
TIMER_SECONDS = 1.0


def tasks_by_family() -> dict[str, list[Task]]:
    """Registered tasks grouped by family, families in the fixed order (unknown ones last)."""
    groups: dict[str, list[Task]] = {}
    for task in all_tasks():
        groups.setdefault(task.family, []).append(task)
    order = FAMILIES + sorted(set(groups) - set(FAMILIES))
    return {f: groups[f] for f in order if f in groups}


def header(ctx: Context) -> tuple[gr.Dropdown, gr.Button]:
    with gr.Row(elem_id="tp-header", equal_height=True):
        logo = LOGO_PATH.read_text(encoding="utf-8") if LOGO_PATH.exists() else ""
        gr.HTML(f'<div class="tp-brand">{logo}<span>Trainpad</span></div>', scale=1, min_width=160)
        gr.Markdown(f"**Machine:** {system.summary()}", elem_id="tp-resources", scale=3)
        backends = all_backends(ctx.concurrency)
        backend = gr.Dropdown(
            [(b.title, b.name) for b in backends],
            value=backends[0].name,
            label="Run on",
            elem_id="tp-backend",
            scale=2,
            info=backends[0].note,
        )
        docs = gr.Button("Docs", scale=0, min_width=80, elem_id="tp-docs", size="sm")
        if oauth_enabled():
            gr.LoginButton(scale=0, min_width=160)  # Hugging Face login on a Space (hf_oauth: true)
    return backend, docs


def oauth_enabled() -> bool:
    """On a Space with ``hf_oauth: true`` (the platform sets OAUTH_CLIENT_ID), or asked for (TRAINPAD_OAUTH=1).
    Never otherwise: a LoginButton needs the network and a token at start-up outside a Space."""
    return bool(os.environ.get("OAUTH_CLIENT_ID")) or settings.flag("TRAINPAD_OAUTH")


def build_demo(ctx: Context) -> gr.Blocks:
    """Build the Blocks (not launched)."""
    # Gradio's own cache of uploads and outputs: files older than a day are removed every hour.
    with gr.Blocks(title="Trainpad", fill_width=True, delete_cache=(3600, 86400)) as demo:
        backend, docs = header(ctx)
        publish.build_space_note(ctx)  # on a Space: what is kept when it sleeps
        run_id = gr.Textbox(
            label="Selected run",
            elem_id="run-id",
            render=False,
            scale=3,
            placeholder="click a row in the table, or paste a run id",
        )
        timer = gr.Timer(TIMER_SECONDS, active=False)
        saved_run = gr.BrowserState("", storage_key="trainpad_selected_run", secret=ctx.browser_secret())
        saved_tab = gr.BrowserState("train", storage_key="trainpad_tab")
        pages: dict[str, Any] = {}
        late: dict[str, Any] = {}  # what the Train page's form wires to, built after it (the Runs page...)
        with gr.Tabs(elem_id="tp-main", overflow_behavior="wrap", selected="train"):
            with gr.Tab("Train", id="train", elem_id="tab-train") as pages["train"]:
                picker, load_config, config_box = _train_page(ctx, demo, backend, late)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as pages["runs"]:
                runs_page = runs.build(ctx, run_id, saved_run)
            with gr.Tab("Sweeps", id="sweeps", elem_id="tab-sweeps") as pages["sweeps"]:
                late["sweeps_page"] = sweeps_page = sweeps.build_page(ctx)
            with gr.Tab("Playground", id="playground", elem_id="tab-playground") as pages["playground"]:
                playground.build_and_wire(ctx, demo, pages["playground"])
                side_by_side.build(ctx)  # two models, one input; votes saved as preference rows
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate") as pages["evaluate"]:
                evals.build(ctx)
            with gr.Tab("Docs", id="docs", elem_id="tab-docs") as pages["docs"]:
                publish.wire_docs(ctx)  # Publish as a Space (a local studio only)
                gr.Markdown(publish.readme_text(ROOT / "README.md"))
        show_run = (partial(runs.switch_updates, ctx, runs_page), runs.switch_outputs(runs_page))
        gathered = gr.Textbox(visible=False, elem_id="tp-form-values")  # the shown form's values (task_tab.on_form)
        late["shared"] = shared = task_tab.Shared(run_id, nav.build(), timer, backend, config_box, show_run, gathered)
        task_api.register_api(ctx)  # /check, /config, /start, /preview: any task, by name
        fill = (partial(_filled, picker, shared.nav, ""), [*picker.outputs(), shared.nav])
        load_config.upload(
            partial(_on_load_config, picker, shared.nav), [load_config, picker.state], fill[1], **QUIET, **NO_PROGRESS
        )
        runs.wire(ctx, runs_page, run_id, timer, fill)  # Duplicate
        sweeps.wire_page(ctx, sweeps_page, pages["sweeps"], fill)  # Use best
        _wire_pages(ctx, demo, shared, docs, pages, (saved_run, saved_tab, runs_page["table"]))
    return demo


def _train_page(ctx: Context, demo: gr.Blocks, backend: Any, late: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The Train page: Load config, the family and task tabs, the picked task's form (built when shown, by a
    ``gr.render`` of the form state), the shared config box. Returns (the task picker, Load config, the box)."""
    with gr.Row(equal_height=True):
        gr.Markdown("Pick a task, or fill its form from a saved Trainpad or AutoTrain config:", scale=4)
        load_config = gr.UploadButton(
            "Load config", file_types=[".yaml", ".yml"], elem_id="tp-load-config", size="sm", scale=1
        )
    picker = _task_tabs()
    first = next(iter(tasks_by_family().values()))[0].name

    inputs = [picker.state, picker.kept, backend]

    # off the queue: a form shows ~0.2 s sooner (no queue join and event stream for a ~50 ms build)
    @gr.render(inputs=inputs, triggers=[demo.load, picker.state.change], show_progress="hidden", queue=False)
    def task_form(form_state: str, kept: str, backend_name: str) -> None:
        bounded.warm()  # the chat-template checker's server, started in the background (once)
        name, draft = task_picker.shown_task(form_state, kept, first)
        tab = task_tab.build(get_task(name), ctx, draft, backend_name or "local")
        tab.sweep = sweeps.build_panel(tab)
        task_tab.wire(tab, ctx, late["shared"])
        task_picker.wire_picker(tab, picker, float((draft or {}).get("nonce") or 0))
        sweeps.wire_panel(tab, ctx, backend, late["sweeps_page"], late["shared"].nav)

    for fn in demo.fns.values():  # the render's own event shows no progress on its container (see ui.progress)
        if fn.renderable is not None:
            fn.show_progress_on = []
    return picker, load_config, task_tab.build_config_box()


def _filled(picker: task_picker.Picker, nav_box: Any, state: str, request: dict[str, Any]) -> dict[Any, Any]:
    """Duplicate, Load config, Use best: the request becomes its task's draft, and the Train page shows its form."""
    task = get_task(request["task"])
    return {**picker.show(task, task_picker.with_draft(state, request)), nav_box: nav.show("tab-train")}


def _on_load_config(picker: task_picker.Picker, nav_box: Any, file: Any, state: str) -> dict[Any, Any]:
    """Load config: its task's form filled, or the problem as an error toast."""
    try:
        return _filled(picker, nav_box, state, task_view.load_request(file))
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


# Enter in a base model box keeps what was typed: Gradio's Dropdown would take the first suggestion containing it
# (typing "gpt2" gave "gpt2-medium"); leaving the box (blur) keeps a custom value as typed.
KEEP_TYPED_MODEL = """() => {
  document.addEventListener("keydown", (e) => {
    const box = e.target;
    if (e.key !== "Enter" || !(box instanceof HTMLInputElement) || !box.closest("[id$='-base_model']")) return;
    e.preventDefault();
    e.stopPropagation();
    box.blur();
  }, true);
}"""


def _wire_pages(
    ctx: Context, demo: gr.Blocks, shared: task_tab.Shared, docs: Any, pages: dict[str, Any], restored: tuple
) -> None:
    """Docs button, the page this browser was on, and the run it watched, restored on (re)load; ``restored``:
    (the saved run, the saved page, the runs table). Pages are shown through :mod:`ui.nav`."""
    saved_run, saved_tab, table = restored
    docs.click(None, None, None, js=f"() => {{ ({nav.SHOW_TABS})('tab-docs'); }}")
    demo.load(None, None, None, js=KEEP_TYPED_MODEL)
    for page_id, page in pages.items():
        page.select(lambda _p=page_id: _p, None, saved_tab, api_visibility="private", queue=False, **NO_PROGRESS)

    def on_load(saved: str, tab: str) -> dict[Any, Any]:
        rid, timer, rows = runs.restore(ctx, saved)
        return {
            shared.run_id: rid,
            shared.timer: timer,
            shared.nav: nav.show(f"tab-{tab if tab in pages else 'train'}"),
            table: rows,
        }

    demo.load(
        on_load,
        [saved_run, saved_tab],
        [shared.run_id, shared.timer, shared.nav, table],
        api_visibility="private",
        concurrency_limit=None,
        **NO_PROGRESS,
    )


def _task_tabs() -> task_picker.Picker:
    """Family tabs holding task tabs, all empty: picking one sets the form state in the browser, and the form under
    them is built for its task (:func:`_train_page`). Tabs wrap (no "More tabs" menu)."""
    groups = tasks_by_family()
    first = next(iter(groups.values()))[0].name
    shown = json.dumps({"task": first}, separators=(",", ":"))  # as the browser writes it: no second render at load
    state = gr.Textbox(shown, visible=False, elem_id="tp-form-state")
    kept = gr.Textbox("{}", visible=False, elem_id="tp-form-kept")  # set in the browser (task_picker.leave_js)
    leaving = gr.Textbox(visible=False, elem_id="tp-form-leaving")
    with gr.Tabs(elem_id="tp-families", overflow_behavior="wrap") as families:
        picker = task_picker.Picker(state, kept, leaving, families)
        for family, tasks in groups.items():
            family_id = task_tab.family_elem_id(family)
            with gr.Tab(family, id=family_id, elem_id=family_id) as picker.family_tabs[family]:
                with gr.Tabs(overflow_behavior="wrap") as picker.inner[family]:
                    for task in tasks:
                        tab_id, elem_id = f"task-{task.name}", task_tab.task_elem_id(task)
                        with gr.Tab(task.title, id=tab_id, elem_id=elem_id) as picker.task_tabs[task.name]:
                            pass
                        picker.task_tabs[task.name].select(
                            None,
                            [state, leaving],
                            [state, leaving],
                            js=task_picker.pick_task_js(task.name),
                            **NO_PROGRESS,
                            **QUIET,
                        )
            picked = task_picker.pick_family_js([t.name for t in tasks], first)
            family_tab = picker.family_tabs[family]
            family_tab.select(None, [state, leaving], [state, leaving], js=picked, **NO_PROGRESS, **QUIET)
    return picker


def launch_kwargs(ctx: Context) -> dict:
    """Theme, CSS and file access for ``demo.launch`` (Gradio 6 takes them there, not in Blocks)."""
    return {
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
        "footer_links": ["api", "settings"],
        "run_history": False,
        "favicon_path": str(LOGO_PATH) if LOGO_PATH.exists() else None,
    }
