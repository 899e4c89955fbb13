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
from ui.form_values import to_ui
from ui.progress import NO_PROGRESS
from ui.task_view import DATA_FIELDS, HUB_ONLY_FIELDS, MAP_PREFIX, NONE_CHOICE, UNMARKED, problems_md

QUIET = {"api_visibility": "private", "concurrency_limit": None}
# Every block of a task's form has a render key, the same each time the form is built: the browser then updates its
# widgets in place instead of adding new ones (each form built with new ids made the next switch slower). The
# values always come from the constructor (the draft or the defaults), never from the widget the key had before.
KEYED: dict[str, Any] = {"preserved_by_key": None}  # with a progress target, or **NO_PROGRESS
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
    key: str = ""  # the render keys' prefix: task and draft (ui.studio's gr.render)
    run_fields: dict[str, Any] = field(default_factory=dict)  # params beside the backend (hf_flavor), by name
    sweep: Any = None  # the Sweep panel (ui.sweeps), opened by the Sweep button beside Start
    gathered: Any = None  # a hidden box outside the form: its values, gathered by the browser (on_form)

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
    gathered: Any = None  # a hidden box: the shown form's values as JSON, gathered by the browser (on_form)


# --- layout -----------------------------------------------------------------------------------


def family_elem_id(family: str) -> str:
    """The elem_id of a family's tab (its button: ``<elem_id>-button``, see :mod:`ui.nav`)."""
    return f"family-{family}"


def task_elem_id(task: Task) -> str:
    """The elem_id of a task's tab."""
    return f"tab-{task.name}"


def build(task: Task, ctx: Context, draft: dict[str, Any] | None = None, backend: str = "local") -> TaskTab:
    """Lay out the task's form (inside the Train page's ``gr.render``). Its widgets start from ``draft`` (a config
    loaded or a run duplicated, :func:`ui.task_view.load_request`) or the defaults; each has a render key (task and
    draft), so what the user typed survives switching to another task and back."""
    p = task.name
    tab = TaskTab(task=task, key=f"{p}-")  # stable render keys: the browser reuses the widgets (see KEYED)
    start = draft_values(task, draft) if draft else {}
    key = tab.key
    gr.Markdown(f"### {task.title}\n{task.description}", elem_classes=["tp-task-intro"], key=key + "intro")
    with gr.Group(key=key + "model-group"):
        tab.base_model = gr.Dropdown(
            choices=task_view.model_choices(task, ctx.local_models(), used=ctx.used_models(task.name)),
            value=start.get("base_model", task.params.model_fields["base_model"].default or None),
            allow_custom_value=True,
            label="Base model",
            elem_id=f"{p}-base_model",
            key=tab.key + "base_model",
            **KEYED,
            interactive=True,
            visible=not field_hints(task.params, "base_model").get("hidden"),
            info=f"{task.model_note} Type a Hub model id, or pick/paste a local model folder "
            f"(folders under {ctx.models_dir.name}/ in the data folder, and those your runs used, are listed).".strip(),
        )
    with gr.Accordion("Data", open=True, elem_id=f"{p}-data", key=key + "data"):
        _data_section(task, tab, start)
        _mapping_section(task, tab, start)
    with gr.Accordion("Parameters", open=True, elem_id=f"{p}-params", key=key + "params"):
        names = task_view.form_fields(task)
        tab.form = forms.build_form(task.params, p, names, {n: start[n] for n in names if n in start}, tab.key)
    _run_section(tab, start, backend)
    tab.help = {k: getattr(c, "info", None) or "" for k, c in tab.markable().items()}
    tab.marked = gr.State([])
    return tab


def draft_values(task: Task, draft: dict[str, Any]) -> dict[str, Any]:
    """A draft's values for the form's widgets (:func:`ui.task_view.fill_values`), or, when it cannot fill the
    form, the defaults with the reason beside the data."""
    try:
        return task_view.fill_values(
            task, draft, [*task.params.model_fields, "run_name"], [c.role for c in task.columns]
        )
    except Exception as e:  # a config from an older version, a run whose params no longer validate…
        return {"data_msg": problems_md([f"Could not fill the form: {type(e).__name__}: {e}"])}


def _data_section(task: Task, tab: TaskTab, start: dict[str, Any]) -> None:
    p, fields, key = task.name, task.params.model_fields, tab.key
    with gr.Row(key=key + "data-row"):
        tab.upload = gr.File(
            label="Upload data (CSV, TSV, JSON, JSONL, Parquet, or a ZIP of a folder)",
            file_types=datasource.UPLOAD_TYPES,
            elem_id=f"{p}-upload",
            key=key + "upload",
            **KEYED,
            scale=1,
            height=140,
        )
        with gr.Column(scale=2, key=key + "data-column"):
            data_path = start.get("data_path", fields["data_path"].default)
            tab.data_path = gr.Textbox(
                label="Data: local file or folder, or Hub dataset id",
                elem_id=f"{p}-data_path",
                key=key + "data_path",
                **KEYED,
                info=fields["data_path"].description,
                value=data_path,
            )
            with gr.Row(key=key + "data-fields"):
                for name in DATA_FIELDS:
                    if name in fields:
                        value = start.get(name, to_ui(fields[name], fields[name].default))
                        tab.data_fields[name] = forms.make_component(
                            fields[name], name, f"{p}-{name}", value, key + name
                        )
            if "valid_path" in tab.data_fields:
                tab.valid_upload = gr.File(
                    label="…or upload a validation file",
                    file_types=datasource.UPLOAD_TYPES,
                    elem_id=f"{p}-valid_upload",
                    key=key + "valid_upload",
                    **KEYED,
                    height=120,
                )
            hub_shown = task_view.hub_fields_shown(data_path)
            for name in HUB_ONLY_FIELDS:
                if name in tab.data_fields:
                    tab.data_fields[name].visible = hub_shown
    tab.data_msg = gr.Markdown(
        start.get("data_msg", ""), elem_id=f"{p}-data_msg", elem_classes=["tp-problems"], key=key + "data_msg", **KEYED
    )
    df = start.get("preview", pd.DataFrame())
    tab.preview = gr.Dataframe(
        value=df,
        label="Preview",
        interactive=False,
        max_height=260,
        elem_id=f"{p}-preview",
        key=key + "preview",
        **KEYED,
        visible=not df.empty,
        wrap=True,
    )
    if task.predict_input in ("image", "image_text"):
        shown = gallery_updates(tab, data_path, {k: start.get(k) for k in tab.data_fields}) if start else {}
        gallery = {"visible": False, "label": "Images"} | dict(shown.get("gallery") or {})
        gallery.pop("__type__", None)
        tab.gallery = gr.Gallery(columns=8, height=280, elem_id=f"{p}-gallery", key=key + "gallery", **KEYED, **gallery)


def _mapping_section(task: Task, tab: TaskTab, start: dict[str, Any]) -> None:
    gr.Markdown(
        "**Columns** — which column of your data plays each role (matched by name when possible).",
        key=tab.key + "columns-note",
    )
    with gr.Row(key=tab.key + "columns"):
        for col in task.columns:
            need = col.need or ("required" if col.required else "optional")
            mapped = start.get(MAP_PREFIX + col.role) or {"choices": [NONE_CHOICE], "value": ""}
            tab.mapping[col.role] = gr.Dropdown(
                **mapped,
                allow_custom_value=True,
                label=col.role,
                info=f"{col.help} ({need})",
                elem_id=f"{task.name}-map-{col.role}",
                key=tab.key + "map-" + col.role,
                **KEYED,
                interactive=True,
            )


def _run_section(tab: TaskTab, start: dict[str, Any], backend: str) -> None:
    p, key = tab.task.name, tab.key
    with gr.Row(equal_height=True, key=key + "run-row"):
        tab.run_name = gr.Textbox(
            value=start.get("run_name", ""),
            label="Run name",
            placeholder="optional",
            elem_id=f"{p}-run_name",
            key=key + "run_name",
            **KEYED,
            scale=2,
        )
        tab.hf_token = gr.Textbox(
            value="",
            label="Hugging Face token",
            type="password",
            placeholder="optional: private models, push to Hub",
            elem_id=f"{p}-hf_token",
            key=key + "hf_token",
            **KEYED,
            scale=2,
            info="Passed to the run's process only; never saved.",
        )
        if "hf_flavor" in tab.task.params.model_fields:  # shown when "Run on" is Hugging Face Jobs
            tab.run_fields["hf_flavor"] = gr.Dropdown(
                **flavor_choices(backend),
                value=start.get("hf_flavor", ""),
                allow_custom_value=True,
                label="Hugging Face Jobs hardware",
                info=tab.task.params.model_fields["hf_flavor"].description,
                elem_id=f"{p}-hf_flavor",
                key=key + "hf_flavor",
                **KEYED,
                scale=2,
            )
    with gr.Row(key=key + "buttons"):
        tab.buttons["check"] = gr.Button("Check", elem_id=f"{p}-check", key=key + "check")
        tab.buttons["config"] = gr.Button("Config", elem_id=f"{p}-config", key=key + "config")
        tab.buttons["start"] = gr.Button("Start", variant="primary", elem_id=f"{p}-start", key=key + "start")
        tab.buttons["sweep"] = gr.Button("Sweep", elem_id=f"{p}-sweep", key=key + "sweep")  # wired by ui.sweeps
    tab.form_msg = gr.Markdown(elem_id=f"{p}-form_msg", elem_classes=["tp-problems"], key=key + "form_msg", **KEYED)


def flavor_choices(backend: str) -> dict[str, Any]:
    """The Hugging Face Jobs hardware dropdown: shown, with the Hub's flavors and prices, when "Run on" is hf-jobs
    (asks the Hub, a few seconds at most); hidden otherwise."""
    if backend != "hf-jobs":
        return {"choices": [("default", "")], "visible": False}
    choices, note = task_view.flavor_choices()
    if note:
        gr.Warning(note)
    return {"choices": choices, "visible": True}


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
    """The preview, its note or problem, and the role dropdowns matched to the data's columns; Check's verdict
    and marks, computed from the data before, cleared."""
    extra = {k: values.get(k) for k in tab.data_fields}
    current = {r: values.get(MAP_PREFIX + r) for r in tab.mapping}
    df, note, matched, columns = task_view.preview_data(tab.task, values.get("data_path"), extra, current)
    choices = task_view.mapping_choices(tab.mapping, matched, columns)
    updates = {"preview": shown(df), "data_msg": note, **{k: gr.update(**c) for k, c in choices.items()}}
    updates |= gallery_updates(tab, values.get("data_path"), extra)
    return merged(stale_cleared(tab, values), tab.by_component(updates))


def merged(*updates: dict[Any, Any]) -> dict[Any, Any]:
    """Update maps joined; two updates of one component become one (a role dropdown's new choices and its mark
    cleared)."""
    out: dict[Any, Any] = {}
    for part in updates:
        for comp, update in part.items():
            both = isinstance(out.get(comp), dict) and isinstance(update, dict)
            out[comp] = {**out[comp], **update} if both else update
    return out


def stale_cleared(tab: TaskTab, values: dict[str, Any]) -> dict[Any, Any]:
    """The form's message and every mark back to the widgets' own help: new data makes them stale."""
    return {tab.form_msg: "", **remark(tab, values, task_view.marks(tab.markable(), {}, tab.help))}


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
        refused = tab.by_component({"preview": shown(pd.DataFrame()), "data_msg": problems_md(e.problems)})
        return merged(stale_cleared(tab, values), refused)
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


# --- wiring -----------------------------------------------------------------------------------


def wire(tab: TaskTab, ctx: Context, shared: Shared) -> None:
    """Connect the tab's upload, preview, buttons and config filling to the handlers."""
    tab.gathered = shared.gathered
    _wire_data(tab, ctx)
    _wire_buttons(tab, ctx, shared)
    _wire_stale(tab)
    if "hf_flavor" in tab.run_fields:  # "Run on" changed: the Hugging Face Jobs hardware shown or hidden
        flavor = tab.run_fields["hf_flavor"]
        shared.backend.change(lambda b: gr.update(**flavor_choices(b)), shared.backend, flavor, **NO_PROGRESS, **QUIET)
    tab.base_model.focus(lambda: model_choices_update(ctx, tab.task), None, tab.base_model, **NO_PROGRESS, **QUIET)


def model_choices_update(ctx: Context, task: Task) -> Any:
    """The base model choices when the dropdown opens: folders added to ``models/`` since the app started
    show up, and the Hub's popular models for the task when online (skipped at once offline)."""
    hub = models.hub_suggestions(task)
    return gr.update(choices=task_view.model_choices(task, ctx.local_models(), hub, ctx.used_models(task.name)))


def _wire_data(tab: TaskTab, ctx: Context) -> None:
    """An upload kept and previewed; the data path previewed when typed (Enter, or leaving the box). Both read the
    form in the browser first (:func:`on_form`): the previews clear the marks of every field."""
    preview_out = [tab.preview, tab.data_msg, *tab.mapping.values(), *([tab.gallery] if tab.gallery else [])]
    preview_out += [tab.form_msg, *tab.markable().values(), tab.marked]  # stale ones cleared

    def on_upload(values: dict[str, Any]) -> Any:
        return upload_updates(ctx, tab, values)

    def on_preview(values: dict[str, Any]) -> dict[Any, Any]:
        return preview_updates(tab, values)

    progress = {"show_progress_on": tab.data_msg}  # not the preview table (see ui.progress)
    on_form(tab, tab.upload.upload, on_upload, [], [tab.data_path, *preview_out], **progress)
    if tab.valid_upload is not None:
        tab.valid_upload.upload(
            lambda f: valid_upload_updates(ctx, tab, f),
            tab.valid_upload,
            [tab.data_fields["valid_path"], tab.data_msg],
            show_progress_on=tab.data_msg,
            **QUIET,
        )
    hub_only = [tab.data_fields[n] for n in HUB_ONLY_FIELDS if n in tab.data_fields]
    if hub_only:
        tab.data_path.change(
            lambda path: [gr.update(visible=task_view.hub_fields_shown(path))] * len(hub_only),
            tab.data_path,
            hub_only,
            trigger_mode="always_last",
            **NO_PROGRESS,
            **QUIET,
        )
    typed = [tab.data_path.submit, tab.data_path.blur]
    on_form(tab, lambda *a, **kw: gr.on(typed, *a, **kw), on_preview, [], preview_out, **progress)


def _wire_stale(tab: TaskTab) -> None:
    """Check's verdict belongs to the values it checked: any edit clears it (in the browser, no request)."""
    edits = [c.input for c in tab.markable().values() if hasattr(c, "input")]
    gr.on(edits, None, None, tab.form_msg, js="() => ''", **NO_PROGRESS, **QUIET)


def _wire_buttons(tab: TaskTab, ctx: Context, shared: Shared) -> None:
    """Check, Config and Start (the API has them for every task: :func:`register_api`)."""
    marked = [*tab.markable().values(), tab.marked]
    box = shared.config
    _, start_view = shared.show_run

    def on_check(values: dict[str, Any], backend: str) -> dict[Any, Any]:
        return check_updates(ctx, tab, values, backend)

    def on_config(values: dict[str, Any], backend: str) -> dict[Any, Any]:
        return config_updates(ctx, tab, box, values)

    def on_start(values: dict[str, Any], backend: str) -> dict[Any, Any]:
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
        # the spinner where the answer appears, not on every field (ui.progress); the API: /check, /config, /start
        on_form(tab, tab.buttons[name].click, handler, [shared.backend], outputs, show_progress_on=tab.form_msg)


def on_form(
    tab: TaskTab, trigger: Any, fn: Callable[..., Any], inputs: list[Any], outputs: list[Any], **kw: Any
) -> Any:
    """An event that reads the whole form: the browser gathers the form's values into ``tab.gathered`` (JSON), then
    ``fn(values, *inputs)`` runs with them (and the upload and the marks). Gradio 6.31 keeps a loading status for
    each input of every server event run, and re-sets each one on every later event of the page: the form's ~60
    widgets as inputs made every later click slower, by a walk of the page per widget (see :mod:`ui.progress`)."""
    names = [k for k in tab.inputs() if k != "upload"]
    widgets = [tab.inputs()[n] for n in names]
    gather = f"(...v) => {{ const n = {json.dumps(names)}; return JSON.stringify(Object.fromEntries(n.map((k, i) => [k, v[i]]))); }}"
    gathered = trigger(None, widgets, tab.gathered, js=gather, **NO_PROGRESS, **QUIET)

    def run(raw: str, upload: Any, marked: Any, *args: Any) -> Any:
        return fn({**json_dict(raw), "upload": upload, MARKED: marked}, *args)

    run.__name__ = getattr(fn, "__name__", "run")  # the handler's name in the page's config

    return gathered.then(
        run,
        [tab.gathered, tab.upload, tab.marked, *inputs],
        outputs,
        api_visibility="private",
        concurrency_limit=None,
        **kw,
    )


def json_dict(raw: str) -> dict[str, Any]:
    """A hidden box's JSON object, as the browser wrote it (the gathered form values, the kept forms); ``{}`` when
    it holds anything else."""
    try:
        values = json.loads(raw or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}
