"""Gradio forms generated from a task's pydantic ``Params``: one component per field, no per-task code.

A field's type picks the widget (Literal -> Dropdown, bool -> Checkbox, int/float -> Number, str ->
Textbox, list/dict -> Textbox), its ``description`` and bounds make the help text, and its
``json_schema_extra`` hints place it: ``advanced`` (inside the Advanced accordion), ``group`` (kept
together under a heading), ``show_if`` ({field: value or [values]}: visible only when that holds).
Field kinds, labels and value conversions are in :mod:`ui.form_values` (no Gradio there).
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine.params import field_hints
from ui.form_values import choices_of, help_text, initial_visibility, kind_of, label_of, to_ui
from ui.progress import NO_PROGRESS

# --- building ---------------------------------------------------------------------------------


_DEFAULT = object()


def make_component(
    info: FieldInfo, name: str, elem_id: str, value: Any = _DEFAULT, key: str | None = None
) -> gr.components.Component:
    """One widget for one field, with its value (the default unless given), help, a stable ``elem_id`` and, in a
    ``gr.render``, a ``key`` (a widget re-rendered with the same key keeps what the user typed)."""
    kind = kind_of(info)
    value = to_ui(info, info.default) if value is _DEFAULT else value
    common = {
        "label": label_of(name),
        "info": help_text(info, name),
        "elem_id": elem_id,
        "interactive": True,
        "min_width": 280,
        "key": key,
        "preserved_by_key": None,  # the value given here, not the one the keyed widget had before (ui.task_tab)
    }
    if kind == "choice":
        return gr.Dropdown(choices=[str(c) for c in choices_of(info)], value=value, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if kind == "int" else None, **common)
    placeholder = {"list": "comma-separated values", "dict": 'JSON, e.g. {"key": "value"}'}.get(kind)
    return gr.Textbox(value=value, placeholder=placeholder, max_lines=8, **common)


def build_form(
    model: type[BaseModel], prefix: str, names: list[str], values: dict[str, Any] | None = None, key: str = ""
) -> dict[str, gr.components.Component]:
    """Widgets for ``names`` (in order): basic ones first, the rest in an "Advanced" accordion. ``values``: the
    widgets' values where not the defaults (a duplicated run's); ``key``: the prefix of their render keys."""
    basic = [n for n in names if not field_hints(model, n).get("advanced")]
    advanced = [n for n in names if field_hints(model, n).get("advanced")]
    comps: dict[str, gr.components.Component] = {}
    placed = (model, prefix, values or {}, key)
    _place(placed, basic, comps)
    if advanced:
        with gr.Accordion("Advanced", open=False, elem_id=f"{prefix}-advanced", key=f"{key}advanced" if key else None):
            _place(placed, advanced, comps)
    wire_show_if(model, comps, values)
    return comps


def _place(placed: tuple, names: list[str], comps: dict[str, Any]) -> None:
    """Ungrouped fields in a wrapping grid, then each group under its own heading (one Row each:
    few layout blocks keep start-up fast)."""
    model, prefix, values, key = placed
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(field_hints(model, n).get("group") or "", []).append(n)
    for group, members in groups.items():
        if group:
            title = f"**{group.replace('_', ' ').capitalize()}**"
            gr.Markdown(title, elem_classes=["tp-group-title"], key=f"{key}title-{group}" if key else None)
        with gr.Row(equal_height=False, elem_classes=["tp-fields"], key=f"{key}fields-{group}" if key else None):
            for n in members:
                value = values.get(n, _DEFAULT)
                comps[n] = make_component(
                    model.model_fields[n], n, f"{prefix}-{n}", value, f"{key}{n}" if key else None
                )


def wire_show_if(model: type[BaseModel], comps: dict[str, Any], values: dict[str, Any] | None = None) -> None:
    """Hide conditional fields now, and show/hide them when a field they depend on changes
    (one event per controlling field, updating all the fields that depend on it)."""
    conds = {}
    for name in comps:
        cond = {c: v for c, v in (field_hints(model, name).get("show_if") or {}).items() if c in comps}
        if cond:
            conds[name] = cond
            comps[name].visible = initial_visibility(model, name, values)
    for ctrl in sorted({c for cond in conds.values() for c in cond}):
        targets = [n for n, cond in conds.items() if ctrl in cond]
        ctrls = sorted({c for n in targets for c in conds[n]})
        comps[ctrl].change(
            None,
            [comps[c] for c in ctrls],
            [comps[n] for n in targets],
            js=toggle_js(ctrls, [conds[n] for n in targets]),
            api_visibility="private",
            **NO_PROGRESS,
        )


def toggle_js(ctrls: list[str], conds: list[dict[str, Any]]) -> str:
    """Browser-only: the values of ``ctrls`` (in order) -> for each condition, its field shown or hidden
    (:func:`ui.form_values.condition_holds`: compared as text)."""
    allowed = [
        {c: [str(a) for a in (w if isinstance(w, (list, tuple, set)) else [w])] for c, w in cond.items()}
        for cond in conds
    ]
    holds = "Object.entries(c).every(([k, ok]) => ok.includes(text(v[k])))"
    return f"""(...vals) => {{
  const names = {json.dumps(ctrls)}, v = Object.fromEntries(names.map((n, i) => [n, vals[i]]));
  const text = (x) => (x === true ? "True" : x === false ? "False" : x === null || x === undefined ? "None" : String(x));
  const shown = {json.dumps(allowed)}.map((c) => ({{__type__: "update", visible: {holds}}}));
  return shown.length === 1 ? shown[0] : shown;
}}"""
