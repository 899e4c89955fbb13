"""The Train page's task picker: empty family and task tabs whose choice (set in the browser) builds one task's form
under them (``ui.studio``'s ``gr.render``), the drafts a form is built from, and keeping a form left for another.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from engine.task import Task, get_task
from ui import task_view
from ui.progress import NO_PROGRESS
from ui.task_tab import QUIET, TaskTab, family_elem_id, json_dict


def with_draft(state: str, request: dict[str, Any]) -> str:
    """The Train page's form state (JSON: the task shown, and a draft per task) with ``request`` (a config loaded,
    a run duplicated, a sweep's best) as its task's draft, and its task shown."""
    current = json.loads(state or "{}")
    drafts = {**current.get("drafts", {}), request["task"]: {**request, "nonce": request.get("nonce") or time.time()}}
    return json.dumps({"task": request["task"], "drafts": drafts})


@dataclass
class Picker:
    """The Train page's task tabs (empty: the form under them is built for the task picked) and what the form is
    built from: ``state`` (JSON: the task shown, and the drafts given to it: a config loaded, a run duplicated,
    a sweep's best), set in the browser when a tab is picked, and ``kept`` (JSON: the forms left for another task)."""

    state: Any
    kept: Any
    leaving: Any  # a hidden box the tabs set when picked: the form's own event keeps it (wire_picker)
    families: Any  # the family Tabs
    inner: dict[str, Any] = field(default_factory=dict)  # family -> its task Tabs
    family_tabs: dict[str, Any] = field(default_factory=dict)  # family -> its Tab
    task_tabs: dict[str, Any] = field(default_factory=dict)  # task name -> its Tab

    def outputs(self) -> list[Any]:
        return [self.state, self.families, *self.inner.values()]

    def show(self, task: Task, state: str) -> dict[Any, Any]:
        """The form ``state`` (its task: ``task``), and the family and task tabs selected to match."""
        family = self.inner[task.family]
        selected = gr.Tabs(selected=family_elem_id(task.family))
        return {self.state: state, self.families: selected, family: gr.Tabs(selected=f"task-{task.name}")}


def pick_task_js(task: str) -> str:
    """Browser-only: a task tab picked -> the form state shows that task and ``leaving`` changes (the form shown
    is kept: :func:`leave_js`); nothing changes when the state shows the task already (Duplicate selected its tab)."""
    return f"""(v, l) => {{
  const s = JSON.parse(v || "{{}}");
  if (s.task === {json.dumps(task)}) return [v, l];
  s.task = {json.dumps(task)};
  return [JSON.stringify(s), String(Date.now())];
}}"""


def pick_family_js(tasks: list[str], first: str) -> str:
    """Browser-only: a family tab picked -> the form state shows the family's selected task tab (it stays when
    the state shows one of the family's tasks already: Duplicate selects the family and the task)."""
    return f"""async (v, l) => {{
  const s = JSON.parse(v || "{{}}"), tasks = {json.dumps(tasks)};
  if (tasks.includes(s.task || {json.dumps(first)})) return [v, l];
  let picked = null;
  for (let i = 0; i < 50 && !picked; i++) {{
    picked = tasks.find((t) => document.getElementById(`tab-${{t}}-button`)?.getAttribute("aria-selected") === "true");
    if (!picked) await new Promise((r) => setTimeout(r, 20));
  }}
  s.task = picked || tasks[0];
  return [JSON.stringify(s), String(Date.now())];
}}"""


def leave_js(task: str, names: list[str], base: float = 0.0) -> str:
    """Browser-only, the form's event on ``leaving``: its values (``names``, in order) kept under its task in
    ``kept`` (JSON; never the token), with ``base``: the nonce of the draft the form was built from (server time; 0
    for the defaults), so a draft given later (Duplicate…) wins over it without comparing two machines' clocks. It
    runs at once, while the next form is being built on the server."""
    return f"""(k, ...values) => {{
  const kept = JSON.parse(k || "{{}}"), names = {json.dumps(names)};
  if (values.every((x) => x === null || x === undefined)) return k;
  kept[{json.dumps(task)}] = {{values: Object.fromEntries(names.map((n, i) => [n, values[i]])), base: {float(base)!r}}};
  return JSON.stringify(kept);
}}"""


def form_draft(task: Task, values: dict[str, Any], nonce: float = 0.0) -> dict[str, Any] | None:
    """The form's values as a draft (a request, as :func:`ui.task_view.load_request` makes), to build it again
    when its task is picked again; None when a value cannot be read (the form then comes back as defaults). The
    token is never kept."""
    try:
        params = task_view.params_data(task, values)
    except Exception:  # a half-typed JSON or list field
        return None
    name = str(values.get("run_name") or "")
    return {"task": task.name, "params": params, "name": name, "nonce": nonce}


def kept_names(tab: TaskTab) -> list[str]:
    """The form's values kept when it is left: every input but the upload and the token."""
    return [k for k in tab.inputs() if k not in ("upload", "hf_token")]


def wire_picker(tab: TaskTab, picker: Picker, base: float = 0.0) -> None:
    """Inside the form's render: when a task or family tab is picked, this form is kept (``kept``) to be built
    again when its task comes back (``base``: the nonce of the draft it was built from). (Gradio 6.31's render keys
    keep a Textbox's typed value but reset Numbers, Dropdowns and Checkboxes, so the values travel through
    ``kept``; an event added by a render to a trigger
    outside it replaces that trigger's own events, so the tabs' browser-only events set ``leaving``; and the
    event runs in the browser: a server event with the form's widgets as inputs leaves a loading status per widget
    that the page re-sets on every later event, see :mod:`ui.progress`.)"""
    names = kept_names(tab)
    widgets = [tab.inputs()[n] for n in names]
    picker.leaving.change(
        None,
        [picker.kept, *widgets],
        picker.kept,
        js=leave_js(tab.task.name, names, base),
        **NO_PROGRESS,
        **QUIET,
    )


def shown_task(state: str, kept: str, default: str) -> tuple[str, dict[str, Any] | None]:
    """The task the form state shows (``default`` when none) and its draft: the form the user left (``kept``: JSON,
    as :func:`leave_js` writes it), unless a draft was given since that form was built (a run duplicated, a config
    loaded, a sweep's best: its nonce is newer than the left form's ``base``); None for the defaults."""
    current = json.loads(state or "{}")
    name = current.get("task") or default
    given = current.get("drafts", {}).get(name)
    left = json_dict(kept).get(name)
    if isinstance(left, dict) and isinstance(left.get("values"), dict):
        base = float(left.get("base") or 0)
        if not given or float(given.get("nonce") or 0) <= base:
            return name, form_draft(get_task(name), left["values"], base) or given
    return name, given
