"""Gradio forms generated from a task's pydantic ``Params``: one component per field, no per-task code.

A field's type picks the widget (Literal -> Dropdown, bool -> Checkbox, int/float -> Number, str ->
Textbox, list/dict -> Textbox), its ``description`` and bounds make the help text, and its
``json_schema_extra`` hints place it: ``advanced`` (inside the Advanced accordion), ``group`` (kept
together under a heading), ``show_if`` ({field: value or [values]}: visible only when that holds).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

import gradio as gr
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine.params import field_hints

BOUND_SIGNS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


# --- field types ------------------------------------------------------------------------------


def base_type(annotation: Any) -> Any:
    """The annotation without ``Optional``/``| None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return base_type(args[0]) if len(args) == 1 else annotation
    return annotation


def kind_of(info: FieldInfo) -> str:
    """Widget kind of a field: choice | bool | int | float | list | dict | text."""
    ann = base_type(info.annotation)
    origin = typing.get_origin(ann)
    if origin is Literal:
        return "choice"
    if ann is bool:
        return "bool"
    if ann is int:
        return "int"
    if ann is float:
        return "float"
    if origin in (list, tuple, set) or ann in (list, tuple, set):
        return "list"
    if origin is dict or ann is dict:
        return "dict"
    return "text"


def choices_of(info: FieldInfo) -> list[Any]:
    return list(typing.get_args(base_type(info.annotation)))


def bounds_text(info: FieldInfo) -> str:
    """``≥ 0, ≤ 0.5`` from the field's constraints ('' when unbounded)."""
    found = []
    for meta in info.metadata:
        for key, sign in BOUND_SIGNS:
            if getattr(meta, key, None) is not None:
                found.append(f"{sign} {getattr(meta, key)}")
    return ", ".join(found)


def help_text(info: FieldInfo, name: str = "") -> str:
    """The field's help, its bounds, and its config key (what YAML and `trainpad run key=value` use)."""
    text = info.description or ""
    bounds = bounds_text(info)
    text = f"{text} ({bounds})" if bounds else text
    return f"{text} · `{name}`" if name else text


ACRONYMS = {"lr": "LR", "lora": "LoRA", "hf": "HF", "id": "ID", "qa": "QA", "knn": "k-NN", "eos": "EOS", "dpo": "DPO"}


def label_of(name: str) -> str:
    """``lora_target_modules`` -> ``LoRA target modules``."""
    words = [ACRONYMS.get(w, w) for w in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


# --- values: python <-> widget ----------------------------------------------------------------


def to_ui(info: FieldInfo, value: Any) -> Any:
    """A params value as its widget shows it."""
    kind = kind_of(info)
    if value is None:
        return None if kind in ("int", "float", "choice") else ("" if kind != "bool" else False)
    if kind == "choice":
        return str(value)
    if kind == "list":
        return ", ".join(str(v) for v in value)
    if kind == "dict":
        return json.dumps(value) if value else ""
    return value


def from_ui(info: FieldInfo, value: Any) -> Any:
    """A widget's value as params data (pydantic validates it afterwards)."""
    kind = kind_of(info)
    if kind == "choice":
        for choice in choices_of(info):
            if str(choice) == str(value):
                return choice
        return value
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "list":
        if isinstance(value, (list, tuple)):
            return list(value)
        text = str(value or "").strip()
        if text.startswith("["):
            return _yaml_or_text(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "dict":
        if isinstance(value, dict):
            return value
        text = str(value or "").strip()
        return _yaml_or_text(text) if text else {}
    return value


def _yaml_or_text(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# --- building ---------------------------------------------------------------------------------


def make_component(info: FieldInfo, name: str, elem_id: str) -> gr.components.Component:
    """One widget for one field, with its default, help and a stable ``elem_id``."""
    kind = kind_of(info)
    value = to_ui(info, info.default)
    common = {
        "label": label_of(name),
        "info": help_text(info, name),
        "elem_id": elem_id,
        "interactive": True,
        "min_width": 280,
    }
    if kind == "choice":
        return gr.Dropdown(choices=[str(c) for c in choices_of(info)], value=value, **common)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if kind == "int" else None, **common)
    placeholder = {"list": "comma-separated values", "dict": 'JSON, e.g. {"key": "value"}'}.get(kind)
    return gr.Textbox(value=value, placeholder=placeholder, max_lines=8, **common)


def build_form(model: type[BaseModel], prefix: str, names: list[str]) -> dict[str, gr.components.Component]:
    """Widgets for ``names`` (in order): basic ones first, the rest in an "Advanced" accordion."""
    basic = [n for n in names if not field_hints(model, n).get("advanced")]
    advanced = [n for n in names if field_hints(model, n).get("advanced")]
    comps: dict[str, gr.components.Component] = {}
    _place(model, prefix, basic, comps)
    if advanced:
        with gr.Accordion("Advanced", open=False, elem_id=f"{prefix}-advanced"):
            _place(model, prefix, advanced, comps)
    wire_show_if(model, comps)
    return comps


def _place(model: type[BaseModel], prefix: str, names: list[str], comps: dict[str, Any]) -> None:
    """Ungrouped fields in a wrapping grid, then each group under its own heading (one Row each:
    few layout blocks keep start-up fast)."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(field_hints(model, n).get("group") or "", []).append(n)
    for group, members in groups.items():
        if group:
            gr.Markdown(f"**{group.replace('_', ' ').capitalize()}**", elem_classes=["tp-group-title"])
        with gr.Row(equal_height=False, elem_classes=["tp-fields"]):
            for n in members:
                comps[n] = make_component(model.model_fields[n], n, f"{prefix}-{n}")


def condition_holds(show_if: dict[str, Any], values: dict[str, Any]) -> bool:
    """True when every ``{field: value or [values]}`` matches (compared as text, as widgets hold them)."""
    for ctrl, wanted in show_if.items():
        allowed = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if str(values.get(ctrl)) not in {str(a) for a in allowed}:
            return False
    return True


def initial_visibility(model: type[BaseModel], name: str) -> bool:
    show_if = field_hints(model, name).get("show_if") or {}
    defaults = {n: to_ui(f, f.default) for n, f in model.model_fields.items()}
    return condition_holds(show_if, defaults)


def wire_show_if(model: type[BaseModel], comps: dict[str, Any]) -> None:
    """Hide conditional fields now, and show/hide them when a field they depend on changes
    (one event per controlling field, updating all the fields that depend on it)."""
    conds = {}
    for name in comps:
        cond = {c: v for c, v in (field_hints(model, name).get("show_if") or {}).items() if c in comps}
        if cond:
            conds[name] = cond
            comps[name].visible = initial_visibility(model, name)
    for ctrl in sorted({c for cond in conds.values() for c in cond}):
        targets = [n for n, cond in conds.items() if ctrl in cond]
        ctrls = sorted({c for n in targets for c in conds[n]})

        def toggle(*vals: Any, _targets: list[str] = targets, _ctrls: list[str] = ctrls) -> Any:
            values = dict(zip(_ctrls, vals, strict=True))
            updates = [gr.update(visible=condition_holds(conds[n], values)) for n in _targets]
            return updates[0] if len(updates) == 1 else updates

        comps[ctrl].change(
            toggle,
            [comps[c] for c in ctrls],
            [comps[n] for n in targets],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )


def values_to_params(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """Widget values (by field name) -> params data; names that are not fields are ignored."""
    return {n: from_ui(model.model_fields[n], v) for n, v in values.items() if n in model.model_fields}


def params_to_values(model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """Params data -> widget values for the fields present in ``params``."""
    return {n: to_ui(model.model_fields[n], v) for n, v in params.items() if n in model.model_fields}
