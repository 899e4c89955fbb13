"""One tab per registered task, built from the task's ``Params`` and ``columns`` — no per-task code.

The logic is in :mod:`ui.task_view` (plain functions of the widget values by name); the handlers here turn
its results into ``{component: update}`` maps, and :func:`wire` connects them to the widgets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from engine.errors import UserError
from engine.params import field_hints
from engine.preflight import models
from engine.task import Task
from ui import datasource, forms, nav, task_view
from ui.context import Context
from ui.progress import NO_PROGRESS
from ui.task_view import DATA_FIELDS, HUB_ONLY_FIELDS, MAP_PREFIX, NONE_CHOICE, UNMARKED, problems_md

QUIET = {"api_visibility": "private", "concurrency_limit": None}  # with a progress target, or **NO_PROGRESS
MARKED = "marked__"  # the handlers' input: the keys this page shows marked (None: unknown, every widget is updated)


@dataclass
class TaskTab:
    """The widgets of one task tab, by role."""

    task: Task
    base_model: Any = None
    upload: Any = None
    valid_upload: Any = None  # a validation file uploaded: its kept copy becomes ``valid_path``
    data_path: Any = None
    data_fields: dict[str, Any] = field(default_factory=dict)
    preview: Any = None
    gallery: Any = None  # thumbnails with labels (boxes drawn), for tasks whose input is an image
    data_msg: Any = None
    mapping: dict[str, Any] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=dict)
    run_name: Any = None
    hf_token: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)
    form_msg: Any = None
    help: dict[str, str] = field(default_factory=dict)  # input key -> the widget's own help text (``info``)
    marked: Any = None  # a State: the keys marked on this page, so a handler updates only the marks that change
    fill_request: Any = None  # a hidden box: a config (loaded, or a run duplicated) to fill this tab with, as JSON
    run_fields: dict[str, Any] = field(default_factory=dict)  # params beside the backend (hf_flavor), by name
    sweep: Any = None  # the Sweep panel (ui.sweeps), opened by the Sweep button beside Start

    def inputs(self) -> dict[str, Any]:
        """Every value the handlers read, by keyword (``inputs_kwargs``)."""
        named = {
            "base_model": self.base_model,
            "data_path": self.data_path,
            "upload": self.upload,
            "run_name": self.run_name,
            "hf_token": self.hf_token,
        }
        named.update(self.data_fields)
        named.update({MAP_PREFIX + role: comp for role, comp in self.mapping.items()})
        named.update(self.form)
        named.update(self.run_fields)
        return named

    def markable(self) -> dict[str, Any]:
        """The widgets a problem can be shown beside: model, data, column mapping and every parameter."""
        return {k: c for k, c in self.inputs().items() if k not in UNMARKED}

    def by_component(self, named: dict[str, Any]) -> dict[Any, Any]:
        """Updates keyed by input key (or ``preview``, ``data_msg``, ``form_msg``) -> keyed by component."""
        widgets = {**self.inputs(), "preview": self.preview, "data_msg": self.data_msg, "form_msg": self.form_msg}
        widgets["gallery"] = self.gallery
        return {widgets[k]: v for k, v in named.items()}


@dataclass
class ConfigBox:
    """Where **Config** shows the YAML, the command and the download (one box under all task tabs)."""

    box: Any
    yaml: Any
    command: Any
    file: Any


@dataclass
class Shared:
    """Components outside the tab that its events read or write."""

    run_id: Any
    nav: Any  # ui.nav's box: the tabs to show
    timer: Any
    backend: Any
    config: ConfigBox
    # the Runs page's panel: (run id -> its updates, the components they set); Start shows its run at once
    show_run: tuple[Callable[[str], dict[Any, Any]], list[Any]]


# --- layout -----------------------------------------------------------------------------------


def family_elem_id(family: str) -> str:
    """The elem_id of a family's tab (its button: ``<elem_id>-button``, see :mod:`ui.nav`)."""
    return f"family-{family}"


def task_elem_id(task: Task) -> str:
    """The elem_id of a task's tab."""
    return f"tab-{task.name}"


def build(task: Task, ctx: Context) -> TaskTab:
    """Lay out the tab's widgets (call inside a ``gr.Tab``)."""
    p = task.name
    tab = TaskTab(task=task)
    gr.Markdown(f"### {task.title}\n{task.description}", elem_classes=["tp-task-intro"])
    with gr.Group():
        tab.base_model = gr.Dropdown(
            choices=task_view.model_choices(task, ctx.local_models()),
            value=task.params.model_fields["base_model"].default or None,
            allow_custom_value=True,
            label="Base model",
            elem_id=f"{p}-base_model",
            interactive=True,
            visible=not field_hints(task.params, "base_model").get("hidden"),
            info=f"{task.model_note} Type a Hub model id, or pick/paste a local model folder "
            f"(folders under {ctx.models_dir.name}/ in the data folder are listed).".strip(),
        )
    with gr.Accordion("Data", open=True, elem_id=f"{p}-data"):
        _data_section(task, tab)
        _mapping_section(task, tab)
    with gr.Accordion("Parameters", open=True, elem_id=f"{p}-params"):
        tab.form = forms.build_form(task.params, p, task_view.form_fields(task))
    _run_section(tab)
    tab.help = {k: getattr(c, "info", None) or "" for k, c in tab.markable().items()}
    tab.marked = gr.State([])
    # a hidden Textbox, not a State: the browser takes a State's first update (null) for a change, so every
    # tab's fill would run on the first Duplicate
    tab.fill_request = gr.Textbox(visible=False, elem_id=f"{p}-fill_request")
    return tab


def _data_section(task: Task, tab: TaskTab) -> None:
    p, fields = task.name, task.params.model_fields
    with gr.Row():
        tab.upload = gr.File(
            label="Upload data (CSV, TSV, JSON, JSONL, Parquet, or a ZIP of a folder)",
            file_types=datasource.UPLOAD_TYPES,
            elem_id=f"{p}-upload",
            scale=1,
            height=140,
        )
        with gr.Column(scale=2):
            tab.data_path = gr.Textbox(
                label="Data: local file or folder, or Hub dataset id",
                elem_id=f"{p}-data_path",
                info=fields["data_path"].description,
                value=fields["data_path"].default,
            )
            with gr.Row():
                for name in DATA_FIELDS:
                    if name in fields:
                        tab.data_fields[name] = forms.make_component(fields[name], name, f"{p}-{name}")
            if "valid_path" in tab.data_fields:
                tab.valid_upload = gr.File(
                    label="…or upload a validation file",
                    file_types=datasource.UPLOAD_TYPES,
                    elem_id=f"{p}-valid_upload",
                    height=90,
                )
            hub_shown = task_view.hub_fields_shown(fields["data_path"].default)
            for name in HUB_ONLY_FIELDS:
                if name in tab.data_fields:
                    tab.data_fields[name].visible = hub_shown
    tab.data_msg = gr.Markdown(elem_id=f"{p}-data_msg", elem_classes=["tp-problems"])
    tab.preview = gr.Dataframe(
        value=pd.DataFrame(),
        label="Preview",
        interactive=False,
        max_height=260,
        elem_id=f"{p}-preview",
        visible=False,
        wrap=True,
    )
    if task.predict_input in ("image", "image_text"):
        tab.gallery = gr.Gallery(label="Images", columns=8, height=280, visible=False, elem_id=f"{p}-gallery")


def _mapping_section(task: Task, tab: TaskTab) -> None:
    gr.Markdown("**Columns** — which column of your data plays each role (matched by name when possible).")
    with gr.Row():
        for col in task.columns:
            need = "required" if col.required else "optional"
            tab.mapping[col.role] = gr.Dropdown(
                choices=[NONE_CHOICE],
                value="",
                allow_custom_value=True,
                label=col.role,
                info=f"{col.help} ({need})",
                elem_id=f"{task.name}-map-{col.role}",
                interactive=True,
            )


def _run_section(tab: TaskTab) -> None:
    p = tab.task.name
    with gr.Row(equal_height=True):
        tab.run_name = gr.Textbox(value="", label="Run name", placeholder="optional", elem_id=f"{p}-run_name", scale=2)
        tab.hf_token = gr.Textbox(
            value="",
            label="Hugging Face token",
            type="password",
            placeholder="optional: private models, push to Hub",
            elem_id=f"{p}-hf_token",
            scale=2,
            info="Passed to the run's process only; never saved.",
        )
        if "hf_flavor" in tab.task.params.model_fields:  # shown when "Run on" is Hugging Face Jobs (wire_flavors)
            tab.run_fields["hf_flavor"] = gr.Dropdown(
                choices=[("default", "")],
                value="",
                allow_custom_value=True,
                label="Hugging Face Jobs hardware",
                info=tab.task.params.model_fields["hf_flavor"].description,
                elem_id=f"{p}-hf_flavor",
                visible=False,
                scale=2,
            )
    with gr.Row():
        tab.buttons["check"] = gr.Button("Check", elem_id=f"{p}-check")
        tab.buttons["config"] = gr.Button("Config", elem_id=f"{p}-config")
        tab.buttons["start"] = gr.Button("Start", variant="primary", elem_id=f"{p}-start")
        tab.buttons["sweep"] = gr.Button("Sweep", elem_id=f"{p}-sweep")  # wired by ui.sweeps
    tab.form_msg = gr.Markdown(elem_id=f"{p}-form_msg", elem_classes=["tp-problems"])


def build_config_box() -> ConfigBox:
    """The shared config box (hidden until a Config click fills it)."""
    with gr.Accordion("Config (YAML) and command", open=False, visible=False, elem_id="tp-config_box") as box:
        text = gr.Code(language="yaml", label="config.yaml", elem_id="tp-config_yaml", interactive=False)
        command = gr.Code(language="shell", label="Run it from a terminal", elem_id="tp-config_cmd", interactive=False)
        file = gr.File(label="Download", elem_id="tp-config_file", interactive=False)
    return ConfigBox(box, text, command, file)


# --- handlers: widget values in, {component: update} out ----------------------------------------


def shown(df: pd.DataFrame) -> Any:
    """The preview table, hidden while there is nothing to show."""
    return gr.update(value=df, visible=not df.empty)


def mark_updates(tab: TaskTab, values: dict[str, Any], problems: list[str]) -> dict[Any, Any]:
    """Each markable widget: the problems about it under its label (red), or its own help back — only those whose
    mark changes when the page says which are marked (every update costs the browser time)."""
    targets = task_view.problem_targets(problems, values, tab.markable(), tab.mapping)
    return remark(tab, values, task_view.marks(tab.markable(), targets, tab.help))


def remark(tab: TaskTab, values: dict[str, Any], marks: dict[str, dict]) -> dict[Any, Any]:
    """The updates of ``marks`` that change the page (all when it is not known what it shows), and what it shows
    marked afterwards."""
    before = values.get(MARKED)
    now = {k for k, m in marks.items() if m["elem_classes"]}
    changed = {k: m for k, m in marks.items() if before is None or k in now or k in before}
    kept = set(before or []) - set(marks)
    out = tab.by_component({k: gr.update(**m) for k, m in changed.items()})
    return {**out, tab.marked: sorted(now | kept)} if tab.marked is not None else out


def preview_updates(tab: TaskTab, values: dict[str, Any]) -> dict[Any, Any]:
    """The preview, its note or problem, and the role dropdowns matched to the data's columns."""
    extra = {k: values.get(k) for k in tab.data_fields}
    current = {r: values.get(MAP_PREFIX + r) for r in tab.mapping}
    df, note, matched, columns = task_view.preview_data(tab.task, values.get("data_path"), extra, current)
    choices = task_view.mapping_choices(tab.mapping, matched, columns)
    updates = {"preview": shown(df), "data_msg": note, **{k: gr.update(**c) for k, c in choices.items()}}
    return tab.by_component({**updates, **gallery_updates(tab, values.get("data_path"), extra)})


def gallery_updates(tab: TaskTab, data_path: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The image tabs' gallery: thumbnails with labels (or boxes) and the class counts as its label."""
    if tab.gallery is None:
        return {}
    source = datasource.source_params(data_path or "", **{k: v for k, v in extra.items() if k != "valid_fraction"})
    items, counts = datasource.gallery(source)
    return {"gallery": gr.update(value=items or None, visible=bool(items), label=counts or "Images")}


def upload_updates(ctx: Context, tab: TaskTab, values: dict[str, Any]) -> Any:
    """An upload kept in the data folder becomes the data path, then previewed."""
    if not values.get("upload"):
        return gr.skip()
    try:
        path = str(datasource.keep_upload(values["upload"], ctx.uploads_dir, ctx.upload_quota))
    except UserError as e:
        return tab.by_component({"preview": shown(pd.DataFrame()), "data_msg": problems_md(e.problems)})
    return {tab.data_path: path, **preview_updates(tab, {**values, "data_path": path})}


def valid_upload_updates(ctx: Context, tab: TaskTab, upload: Any) -> dict[Any, Any]:
    """An uploaded validation file kept in the user's uploads folder becomes the validation path."""
    if not upload:
        return gr.skip()
    try:
        path = str(datasource.keep_upload(upload, ctx.uploads_dir, ctx.upload_quota))
    except UserError as e:
        return {tab.data_msg: problems_md(e.problems)}
    return {tab.data_fields["valid_path"]: path}


def check_updates(ctx: Context, tab: TaskTab, values: dict[str, Any], backend: str = "local") -> dict[Any, Any]:
    """Both problem lists, and each problem beside its field (the memory verdict for where the run goes)."""
    form_md, data_md, problems = task_view.check_report(ctx, tab.task, values, backend)
    return {tab.form_msg: form_md, tab.data_msg: data_md, **mark_updates(tab, values, problems)}


def config_updates(ctx: Context, tab: TaskTab, box: ConfigBox, values: dict[str, Any]) -> dict[Any, Any]:
    """The config box filled and opened; or the parameter problems, marked beside their fields."""
    try:
        text, command, path = task_view.make_config(ctx, tab.task, values)
    except UserError as e:
        marks = mark_updates(tab, values, e.problems)
        return {tab.form_msg: problems_md(e.problems), box.box: gr.update(visible=False), **marks}
    label = f"Config (YAML) and command — {tab.task.title}"
    # the parameters are valid now: clear their marks; data marks stay until the next Check
    cleared = remark(tab, values, task_view.marks(tab.form, {}, tab.help))
    opened = gr.update(visible=True, open=True, label=label)
    return {
        tab.form_msg: "",
        box.box: opened,
        box.yaml: text,
        box.command: command,
        box.file: ctx.served(path),
        **cleared,
    }


def start_updates(ctx: Context, tab: TaskTab, shared: Shared, backend: str, values: dict[str, Any]) -> dict[Any, Any]:
    """Start: queue the run and show it on the Runs page; or every problem, each beside its field."""
    values = task_view.resolve_upload(ctx, values)
    run_id, param_problems, data_problems = task_view.try_start(ctx, tab.task, values, backend)
    if not run_id:
        problems = param_problems + data_problems
        gr.Warning(f"Not started: {len(problems)} problem(s) — see the messages in the form.")
        messages = {tab.form_msg: problems_md(param_problems), tab.data_msg: problems_md(data_problems)}
        return {**messages, **mark_updates(tab, values, problems)}
    gr.Info(f"Queued run {run_id}")
    queued = tab.task.params.model_validate((ctx.store.get_run(run_id) or {}).get("params") or {})
    memory = task_view.memory_md(tab.task, queued, backend).strip()
    if "will not fit" in memory:
        gr.Warning(memory.replace("**", ""))
    run_view, _ = shared.show_run
    return {
        tab.form_msg: f"✓ Queued run `{run_id}`.",
        tab.data_msg: "",
        **run_view(run_id),  # the Runs page shows the run in this answer, not in a second event (ui.runs)
        shared.run_id: run_id,
        shared.nav: nav.show("tab-runs"),
        shared.timer: gr.Timer(active=True),
        **mark_updates(tab, values, []),
    }


def fill_updates(tab: TaskTab, request: dict[str, Any]) -> dict[Any, Any]:
    """A config's values put into the tab's widgets (see :func:`ui.task_view.fill_values`)."""
    filled = task_view.fill_values(tab.task, request, list(tab.inputs()), list(tab.mapping))
    filled["preview"] = shown(filled["preview"])
    extra = {k: filled.get(k) for k in tab.data_fields}
    filled.update(gallery_updates(tab, filled.get("data_path"), extra))
    filled.update({MAP_PREFIX + r: gr.update(**filled[MAP_PREFIX + r]) for r in tab.mapping})
    return tab.by_component(filled)


def fill_request_update(tabs: list[TaskTab], request: dict[str, Any]) -> dict[Any, Any]:
    """The request given to its task's tab only, so only that tab's fill runs (one event, not one per tab: each
    event costs the browser time in proportion to every component it has updated so far)."""
    return {t.fill_request: json.dumps(request) for t in tabs if t.task.name == request["task"]}


def on_load_config(tabs: list[TaskTab], file: Any) -> dict[Any, Any]:
    """The shared "Load config" upload: its task's tab filled, or the problem as an error toast."""
    try:
        return fill_request_update(tabs, task_view.load_request(file))
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


# --- wiring -----------------------------------------------------------------------------------


def flavor_updates(tabs: list[TaskTab], backend: str) -> dict[Any, Any]:
    """Every tab's Hugging Face Jobs hardware: shown, with the Hub's flavors and prices, when "Run on" is hf-jobs;
    hidden otherwise. Asks the Hub (a few seconds at most) only when hf-jobs is picked."""
    flavors = [t.run_fields["hf_flavor"] for t in tabs if "hf_flavor" in t.run_fields]
    if backend != "hf-jobs":
        return {f: gr.update(visible=False) for f in flavors}
    choices, note = task_view.flavor_choices()
    if note:
        gr.Warning(note)
    return {f: gr.update(visible=True, choices=choices) for f in flavors}


def wire_flavors(tabs: list[TaskTab], backend: Any) -> None:
    """The "Run on" selector shows or hides the flavor choice of every task form."""
    flavors = [t.run_fields["hf_flavor"] for t in tabs if "hf_flavor" in t.run_fields]
    if flavors:
        backend.change(lambda b: flavor_updates(tabs, b), backend, flavors, **NO_PROGRESS, **QUIET)


def wire(tab: TaskTab, ctx: Context, shared: Shared) -> None:
    """Connect the tab's upload, preview, buttons and config filling to the handlers."""
    _wire_data(tab, ctx)
    _wire_buttons(tab, ctx, shared)
    _wire_fill(tab, shared)
    tab.base_model.focus(lambda: model_choices_update(ctx, tab.task), None, tab.base_model, **NO_PROGRESS, **QUIET)


def model_choices_update(ctx: Context, task: Task) -> Any:
    """The base model choices when the dropdown opens: folders added to ``models/`` since the app started
    show up, and the Hub's popular models for the task when online (skipped at once offline)."""
    return gr.update(choices=task_view.model_choices(task, ctx.local_models(), models.hub_suggestions(task)))


def _wire_data(tab: TaskTab, ctx: Context) -> None:
    data_in = {**tab.data_fields, **{MAP_PREFIX + r: c for r, c in tab.mapping.items()}}
    preview_out = [tab.preview, tab.data_msg, *tab.mapping.values(), *([tab.gallery] if tab.gallery else [])]

    def on_upload(**values: Any) -> Any:
        return upload_updates(ctx, tab, values)

    def on_preview(**values: Any) -> dict[Any, Any]:
        return preview_updates(tab, values)

    progress = {"show_progress_on": tab.data_msg}  # not the preview table (see ui.progress)
    tab.upload.upload(
        on_upload,
        None,
        [tab.data_path, *preview_out],
        inputs_kwargs={"upload": tab.upload, **data_in},
        **progress,
        **QUIET,
    )
    if tab.valid_upload is not None:
        tab.valid_upload.upload(
            lambda f: valid_upload_updates(ctx, tab, f),
            tab.valid_upload,
            [tab.data_fields["valid_path"], tab.data_msg],
            **QUIET,
        )
    hub_only = [tab.data_fields[n] for n in HUB_ONLY_FIELDS if n in tab.data_fields]
    if hub_only:
        tab.data_path.change(
            lambda path: [gr.update(visible=task_view.hub_fields_shown(path))] * len(hub_only),
            tab.data_path,
            hub_only,
            trigger_mode="always_last",
            **QUIET,
        )
    gr.on(
        [tab.data_path.submit, tab.data_path.blur],
        on_preview,
        None,
        preview_out,
        inputs_kwargs={"data_path": tab.data_path, **data_in},
        api_name=f"preview_{tab.task.name}",
        concurrency_limit=None,
        **progress,
    )


def _wire_buttons(tab: TaskTab, ctx: Context, shared: Shared) -> None:
    """Check, Config and Start (each also a public API endpoint, ``/<button>_<task>``)."""
    marked = [*tab.markable().values(), tab.marked]
    box, p = shared.config, tab.task.name
    _, start_view = shared.show_run

    def on_check(backend: str, **values: Any) -> dict[Any, Any]:
        return check_updates(ctx, tab, values, backend)

    def on_config(backend: str, **values: Any) -> dict[Any, Any]:
        return config_updates(ctx, tab, box, values)

    def on_start(backend: str, **values: Any) -> dict[Any, Any]:
        return start_updates(ctx, tab, shared, backend, values)

    events = [
        ("check", on_check, [tab.form_msg, tab.data_msg, *marked]),
        ("config", on_config, [tab.form_msg, box.box, box.yaml, box.command, box.file, *marked]),
        (
            "start",
            on_start,
            [tab.form_msg, tab.data_msg, shared.run_id, shared.nav, shared.timer, *start_view, *marked],
        ),
    ]
    for name, handler, outputs in events:
        tab.buttons[name].click(
            handler,
            [shared.backend],
            outputs,
            inputs_kwargs={**tab.inputs(), MARKED: tab.marked},
            api_name=f"{name}_{p}",
            concurrency_limit=None,
            show_progress_on=tab.form_msg,  # the spinner where the answer appears, not on every field (ui.progress)
        )


def _wire_fill(tab: TaskTab, shared: Shared) -> None:
    """A config loaded (or a run duplicated) for this task fills the tab and shows it."""
    fill_out = [shared.nav, tab.base_model, tab.data_path]
    fill_out += [*tab.data_fields.values(), *tab.mapping.values(), *tab.form.values(), *tab.run_fields.values()]
    fill_out += [tab.run_name, tab.preview, tab.data_msg, *([tab.gallery] if tab.gallery else [])]

    def on_fill(text: str) -> Any:
        if not text:
            return gr.skip()
        shown = {shared.nav: nav.show("tab-train", family_elem_id(tab.task.family), task_elem_id(tab.task))}
        try:
            return {**shown, **fill_updates(tab, json.loads(text))}
        except Exception as e:  # off the queue, a raised error would show nothing: say it beside the data
            return {**shown, tab.data_msg: problems_md([f"Could not fill the form: {type(e).__name__}: {e}"])}

    # off the queue (one request, no status messages); Duplicate and Load config, which may refuse, stay on it
    tab.fill_request.change(on_fill, tab.fill_request, fill_out, queue=False, **NO_PROGRESS, **QUIET)
