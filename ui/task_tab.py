"""One tab per registered task, built from the task's ``Params`` and ``columns`` — no per-task code.

The handlers are plain functions of (context, task, widget values) so tests call them directly;
:func:`wire` connects them to the widgets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml

from engine import config as cfg
from engine import data
from engine.errors import UserError
from engine.params import field_hints, validate_params
from engine.task import Task
from ui import datasource, forms
from ui.context import Context

DATA_FIELDS = ["valid_path", "train_split", "valid_split", "data_config", "valid_fraction"]
SPECIAL_FIELDS = {"base_model", "data_path", "column_mapping", *DATA_FIELDS}
MAP_PREFIX = "map__"
RESERVED = {"upload", "run_name", "hf_token", "backend"}
NONE_CHOICE = ("(not used)", "")


@dataclass
class TaskTab:
    """The widgets of one task tab, by role."""

    task: Task
    base_model: Any = None
    upload: Any = None
    data_path: Any = None
    data_fields: dict[str, Any] = field(default_factory=dict)
    preview: Any = None
    data_msg: Any = None
    mapping: dict[str, Any] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=dict)
    run_name: Any = None
    hf_token: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)
    form_msg: Any = None
    tab_id: str = ""
    help: dict[str, str] = field(default_factory=dict)  # input key -> the widget's own help text (``info``)

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
        return named

    def markable(self) -> dict[str, Any]:
        """The widgets a problem can be shown beside: model, data, column mapping and every parameter."""
        return {k: c for k, c in self.inputs().items() if k not in ("upload", "run_name", "hf_token")}


def form_fields(task: Task) -> list[str]:
    """The params fields the generic form shows (everything but model, data and mapping)."""
    names = [n for n in task.params.model_fields if n not in SPECIAL_FIELDS]
    clash = RESERVED & set(names) | {n for n in names if n.startswith(MAP_PREFIX)}
    if clash:
        raise ValueError(
            f"Task {task.name}: parameter name(s) {sorted(clash)} clash with the form's own inputs; rename them."
        )
    return names


# --- layout -----------------------------------------------------------------------------------


def build(task: Task, ctx: Context) -> TaskTab:
    """Lay out the tab's widgets (call inside a ``gr.Tab``)."""
    p = task.name
    tab = TaskTab(task=task, tab_id=f"task-{p}")
    fields = task.params.model_fields
    gr.Markdown(f"### {task.title}\n{task.description}", elem_classes=["tp-task-intro"])
    with gr.Group():
        tab.base_model = gr.Dropdown(
            choices=ctx.local_models(),
            value=fields["base_model"].default or None,
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
    with gr.Accordion("Parameters", open=True, elem_id=f"{p}-params"):
        tab.form = forms.build_form(task.params, p, form_fields(task))
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
    with gr.Row():
        tab.buttons["check"] = gr.Button("Check", elem_id=f"{p}-check")
        tab.buttons["config"] = gr.Button("Config", elem_id=f"{p}-config")
        tab.buttons["start"] = gr.Button("Start", variant="primary", elem_id=f"{p}-start")
    tab.form_msg = gr.Markdown(elem_id=f"{p}-form_msg", elem_classes=["tp-problems"])
    tab.help = {k: getattr(c, "info", None) or "" for k, c in tab.markable().items()}
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
                elem_id=f"{p}-map-{col.role}",
                interactive=True,
            )


# --- handlers (plain functions) ---------------------------------------------------------------


def params_data(task: Task, values: dict[str, Any]) -> dict[str, Any]:
    """Widget values -> the params dict the engine validates."""
    out = forms.values_to_params(task.params, {k: v for k, v in values.items() if k in task.params.model_fields})
    out["base_model"] = str(values.get("base_model") or "").strip()
    out["data_path"] = str(values.get("data_path") or "").strip()
    mapping = {k[len(MAP_PREFIX) :]: v for k, v in values.items() if k.startswith(MAP_PREFIX) and v}
    if "column_mapping" in task.params.model_fields:
        out["column_mapping"] = mapping
    return out


def resolve_upload(ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    """An upload given to the API without a data path becomes the data path (kept in uploads/)."""
    upload = values.get("upload")
    if upload and not str(values.get("data_path") or "").strip():
        path = upload if isinstance(upload, str) else getattr(upload, "name", None) or upload.get("path")
        values = {**values, "data_path": str(datasource.keep_upload(path, ctx.uploads_dir))}
    return values


def problems_of(task: Task, values: dict[str, Any]) -> tuple[Any, list[str], list[str]]:
    """Validate params and check the data: (params or None, parameter problems, data problems)."""
    raw = params_data(task, values)
    try:
        params, param_problems = validate_params(task.params, raw), []
    except UserError as e:
        params, param_problems = None, e.problems
    try:
        probe = params or task.params.model_construct(**{**_defaults(task), **raw})
        data_problems = data.check_data(task, probe)
    except Exception as e:  # noqa: BLE001 - an invalid form can trip a task's checks; say so plainly
        data_problems = [f"The data could not be checked until the parameters above are fixed ({e})."]
    return params, param_problems, data_problems


def _defaults(task: Task) -> dict[str, Any]:
    return {n: f.default for n, f in task.params.model_fields.items()}


def problems_md(problems: list[str], ok: str = "") -> str:
    if not problems:
        return ok
    head = "**1 problem**" if len(problems) == 1 else f"**{len(problems)} problems**"
    return head + "\n\n" + "\n".join(f"- {p}" for p in problems)


def check(ctx: Context, task: Task, values: dict[str, Any]) -> tuple[str, str]:
    """(parameter problems, data problems) as Markdown; a ✓ line when all is well."""
    form_md, data_md, _ = check_report(ctx, task, values)
    return form_md, data_md


def check_report(ctx: Context, task: Task, values: dict[str, Any]) -> tuple[str, str, list[str]]:
    """:func:`check`'s two Markdown texts, and every problem (to show beside its field)."""
    values = resolve_upload(ctx, values)
    params, param_problems, data_problems = problems_of(task, values)
    ok = "✓ Parameters are valid and the data passed every check." if not (param_problems or data_problems) else ""
    data_md = problems_md(data_problems) + data_summary_md(task, params, data_problems)
    return problems_md(param_problems, ok), data_md, param_problems + data_problems


def problem_targets(tab: TaskTab, values: dict[str, Any], problems: list[str]) -> dict[str, list[str]]:
    """Which widget each problem is about, from the names it quotes in backticks: a parameter
    (`learning_rate`, `column_mapping.text`), a role (`text`) or the column mapped to it, or the data path."""
    keys = set(tab.markable())
    by_column = {str(values.get(MAP_PREFIX + r) or ""): MAP_PREFIX + r for r in tab.mapping}
    by_column.pop("", None)
    data_path = str(values.get("data_path") or "")
    out: dict[str, list[str]] = {}
    for problem in problems:
        for token in re.findall(r"`([^`]+)`", problem):
            name = token.split(".")[0]
            if name == "column_mapping" and "." in token:
                name = MAP_PREFIX + token.split(".", 1)[1]
            elif token in tab.mapping:
                name = MAP_PREFIX + token
            elif token in by_column:
                name = by_column[token]
            elif data_path and (token == data_path or token == Path(data_path).name):
                name = "data_path"
            if name in keys and problem not in out.get(name, []):
                out.setdefault(name, []).append(problem)
    return out


def mark_updates(tab: TaskTab, targets: dict[str, list[str]]) -> list[Any]:
    """One update per :meth:`TaskTab.markable` widget: its problems under its label (red), or its own help back."""
    out = []
    for key in tab.markable():
        problems = targets.get(key)
        if problems:
            text = " ".join(f"⚠ {p}" for p in problems)
            out.append(gr.update(info=text, elem_classes=["tp-invalid"]))
        else:
            out.append(gr.update(info=tab.help.get(key) or None, elem_classes=[]))
    return out


def data_summary_md(task: Task, params: Any, data_problems: list[str]) -> str:
    """The task's pre-launch summary (e.g. token statistics and one formatted example), once the data is fine."""
    if task.data_summary is None or params is None or data_problems:
        return ""
    try:
        return "\n\n" + task.data_summary(task, params)
    except Exception as e:  # noqa: BLE001 - a summary is a courtesy; never block Check on it
        return f"\n\n(No data summary: {type(e).__name__}: {e})"


def make_config(ctx: Context, task: Task, values: dict[str, Any]) -> tuple[str, str, Path]:
    """The YAML the CLI would run, the ``trainpad run`` command, and the file offered for download."""
    values = resolve_upload(ctx, values)
    params = validate_params(task.params, params_data(task, values))
    text = cfg.dump_config(task, params, str(values.get("run_name") or ""))
    path = ctx.exports_dir / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    path.write_text(text, encoding="utf-8")
    command = f"trainpad --data-dir {ctx.data_dir} run {path}"
    return text, command, path


def start(ctx: Context, task: Task, values: dict[str, Any], backend: str = "local") -> str:
    """Validate, check the data and queue the run; UserError (nothing queued) listing every problem."""
    values = resolve_upload(ctx, values)
    params, param_problems, data_problems = problems_of(task, values)
    if param_problems or data_problems:
        raise UserError(param_problems + data_problems)
    return queue_run(ctx, task, params, values, backend)


def queue_run(ctx: Context, task: Task, params: Any, values: dict[str, Any], backend: str = "local") -> str:
    """Queue already-checked ``params`` (name and token from the form); the run's id."""
    token = str(values.get("hf_token") or "").strip()
    return ctx.supervisor.submit(
        task,
        params,
        name=str(values.get("run_name") or "").strip(),
        secrets={"HF_TOKEN": token} if token else None,
        backend=backend or "local",
        check=False,
    )


def load_request(file: Any) -> dict[str, Any]:
    """A Trainpad or AutoTrain YAML file -> a request to fill the matching task's form."""
    path = file if isinstance(file, str) else getattr(file, "name", str(file))
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"`{Path(path).name}` is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or "task" not in doc:
        raise UserError(
            f"`{Path(path).name}` must be a mapping with `task:` and `params:` (Trainpad) "
            "or `task:`, `base_model:`, `data:` (AutoTrain)."
        )
    task, params = cfg.from_dict(doc)
    name = doc.get("name") or doc.get("project_name") or ""
    return {
        "task": task.name,
        "params": params.model_dump(mode="json"),
        "name": str(name),
        "nonce": time.time(),
    }


def on_load_config(file: Any) -> dict[str, Any]:
    """The shared "Load config" upload: a fill request for the config's task, or the problem as an error toast."""
    try:
        return load_request(file)
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


def preview_data(
    task: Task, data_path: str, extra: dict[str, Any], current: dict[str, str]
) -> tuple[pd.DataFrame, str, dict[str, str], list[str]]:
    """Preview rows, a note or the problem, role -> matched column, and the column choices."""
    source = datasource.source_params(data_path, **{k: v for k, v in extra.items() if k != "valid_fraction"})
    try:
        df, note = datasource.preview(source)
    except UserError as e:
        return pd.DataFrame(), problems_md(e.problems), {r: current.get(r, "") for r in current}, []
    columns = [str(c) for c in df.columns] if data.is_local(data_path) else []
    matched = datasource.match_columns(task, columns, current) if columns else current
    return datasource.display_frame(df), note, matched, columns


def shown(df: pd.DataFrame) -> Any:
    """The preview table, hidden while there is nothing to show."""
    return gr.update(value=df, visible=not df.empty)


def mapping_updates(tab: TaskTab, matched: dict[str, str], columns: list[str]) -> list[Any]:
    out = []
    for role in tab.mapping:
        value = matched.get(role, "")
        choices = [NONE_CHOICE] + [(c, c) for c in columns]
        if value and value not in columns:
            choices.append((value, value))
        out.append(gr.update(choices=choices, value=value))
    return out


# --- wiring -----------------------------------------------------------------------------------


@dataclass
class Shared:
    """Components outside the tab that its events read or write."""

    run_id: Any
    main_tabs: Any
    family_tabs: Any
    timer: Any
    backend: Any
    load_request: Any
    config: ConfigBox


@dataclass
class ConfigBox:
    """Where **Config** shows the YAML, the command and the download (one box under all task tabs)."""

    box: Any
    yaml: Any
    command: Any
    file: Any


def build_config_box() -> ConfigBox:
    """The shared config box (hidden until a Config click fills it)."""
    with gr.Accordion("Config (YAML) and command", open=False, visible=False, elem_id="tp-config_box") as box:
        text = gr.Code(language="yaml", label="config.yaml", elem_id="tp-config_yaml", interactive=False)
        command = gr.Code(language="shell", label="Run it from a terminal", elem_id="tp-config_cmd", interactive=False)
        file = gr.File(label="Download", elem_id="tp-config_file", interactive=False)
    return ConfigBox(box, text, command, file)


def wire(tab: TaskTab, ctx: Context, shared: Shared, task_tabs: Any) -> None:
    """Connect the tab's buttons, upload and preview to the handlers."""
    task, p = tab.task, tab.task.name
    mapping = list(tab.mapping.values())
    data_in = [tab.data_path, *tab.data_fields.values(), *mapping]
    preview_out = [tab.preview, tab.data_msg, *mapping]

    def on_preview(data_path: str, *rest: Any) -> list[Any]:
        extra = dict(zip(tab.data_fields, rest[: len(tab.data_fields)], strict=True))
        current = dict(zip(tab.mapping, rest[len(tab.data_fields) :], strict=True))
        df, note, matched, columns = preview_data(task, data_path, extra, current)
        return [shown(df), note, *mapping_updates(tab, matched, columns)]

    def on_upload(file: Any, *rest: Any) -> list[Any]:
        if not file:
            return [gr.skip()] * (1 + len(preview_out))
        try:
            path = str(datasource.keep_upload(file, ctx.uploads_dir))
        except UserError as e:
            return [gr.skip(), shown(pd.DataFrame()), problems_md(e.problems), *[gr.skip()] * len(mapping)]
        return [path, *on_preview(path, *rest)]

    tab.upload.upload(
        on_upload,
        [tab.upload, *data_in[1:]],
        [tab.data_path, *preview_out],
        api_visibility="private",
        concurrency_limit=None,
    )
    gr.on(
        [tab.data_path.submit, tab.data_path.blur],
        on_preview,
        data_in,
        preview_out,
        api_name=f"preview_{p}",
        concurrency_limit=None,
    )

    marked = list(tab.markable().values())

    def on_check(backend: str, **values: Any) -> list[Any]:
        form_md, data_md, problems = check_report(ctx, task, values)
        return [form_md, data_md, *mark_updates(tab, problem_targets(tab, values, problems))]

    tab.buttons["check"].click(
        on_check,
        [shared.backend],
        [tab.form_msg, tab.data_msg, *marked],
        inputs_kwargs=tab.inputs(),
        api_name=f"check_{p}",
        concurrency_limit=None,
    )

    def on_config(backend: str, **values: Any) -> list[Any]:
        try:
            text, command, path = make_config(ctx, task, values)
        except UserError as e:
            return [
                problems_md(e.problems),
                gr.update(visible=False),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                *mark_updates(tab, problem_targets(tab, values, e.problems)),
            ]
        label = f"Config (YAML) and command — {task.title}"
        # the parameters are valid now: clear their marks; data marks stay until the next Check
        cleared = [
            u if k in tab.form else gr.skip() for k, u in zip(tab.markable(), mark_updates(tab, {}), strict=True)
        ]
        return ["", gr.update(visible=True, open=True, label=label), text, command, str(path), *cleared]

    box = shared.config
    tab.buttons["config"].click(
        on_config,
        [shared.backend],
        [tab.form_msg, box.box, box.yaml, box.command, box.file, *marked],
        inputs_kwargs=tab.inputs(),
        api_name=f"config_{p}",
        concurrency_limit=None,
    )

    def on_start(backend: str, **values: Any) -> list[Any]:
        values = resolve_upload(ctx, values)
        params, param_problems, data_problems = problems_of(task, values)  # checked once, shown by section
        try:
            if param_problems or data_problems:
                raise UserError(param_problems + data_problems)
            run_id = queue_run(ctx, task, params, values, backend)
        except UserError as e:
            if not (param_problems or data_problems):
                param_problems = e.problems  # refused when queueing (e.g. by the backend)
            gr.Warning(f"Not started: {len(e.problems)} problem(s) — see the messages in the form.")
            targets = problem_targets(tab, values, param_problems + data_problems)
            return [
                problems_md(param_problems),
                problems_md(data_problems),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                *mark_updates(tab, targets),
            ]
        gr.Info(f"Queued run {run_id}")
        return [
            f"✓ Queued run `{run_id}`.",
            "",
            run_id,
            gr.Tabs(selected="runs"),
            gr.Timer(active=True),
            *mark_updates(tab, {}),
        ]

    tab.buttons["start"].click(
        on_start,
        [shared.backend],
        [tab.form_msg, tab.data_msg, shared.run_id, shared.main_tabs, shared.timer, *marked],
        inputs_kwargs=tab.inputs(),
        api_name=f"start_{p}",
        concurrency_limit=None,
    )

    fill_out = [
        shared.main_tabs,
        shared.family_tabs,
        task_tabs,
        tab.base_model,
        tab.data_path,
        *tab.data_fields.values(),
        *mapping,
        *tab.form.values(),
        tab.run_name,
        tab.preview,
        tab.data_msg,
    ]

    def on_fill(request: dict[str, Any] | None) -> list[Any]:
        if not request or request.get("task") != task.name:
            return [gr.skip()] * len(fill_out)
        return fill_updates(tab, request)

    shared.load_request.change(on_fill, shared.load_request, fill_out, api_visibility="private", concurrency_limit=None)


def fill_updates(tab: TaskTab, request: dict[str, Any]) -> list[Any]:
    """Updates that put a config's values into the tab (and select the tab), in ``wire``'s order."""
    task, params = tab.task, dict(request["params"])
    params.pop("resume_from", None)
    values = forms.params_to_values(task.params, params)
    mapping = params.get("column_mapping") or {}
    data_path = params.get("data_path", "")
    extra = {k: params.get(k, task.params.model_fields[k].default) for k in tab.data_fields}
    df, note, matched, columns = preview_data(task, data_path, extra, mapping)
    matched = {**matched, **{r: c for r, c in mapping.items() if r in tab.mapping}}
    out = [
        gr.Tabs(selected="train"),
        gr.Tabs(selected=f"family-{task.family}"),
        gr.Tabs(selected=tab.tab_id),
        params.get("base_model") or None,
        data_path,
    ]
    out += [values.get(k, gr.skip()) for k in tab.data_fields]
    out += mapping_updates(tab, matched, columns)
    out += [
        values.get(k, forms.to_ui(task.params.model_fields[k], task.params.model_fields[k].default)) for k in tab.form
    ]
    out += [request.get("name", ""), shown(df), note]
    return out
