"""A task's pydantic ``Params`` fields as form values, without Gradio: which widget kind a field gets, its
label and help, converting values between params data and widgets, and ``show_if`` conditions."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

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


# --- conditions and conversions ------------------------------------------------------------


def condition_holds(show_if: dict[str, Any], values: dict[str, Any]) -> bool:
    """True when every ``{field: value or [values]}`` matches (compared as text, as widgets hold them)."""
    for ctrl, wanted in show_if.items():
        allowed = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if str(values.get(ctrl)) not in {str(a) for a in allowed}:
            return False
    return True


def initial_visibility(model: type[BaseModel], name: str, values: dict[str, Any] | None = None) -> bool:
    """Whether a ``show_if`` field starts shown, given the form's widget values (the defaults where not given)."""
    show_if = field_hints(model, name).get("show_if") or {}
    shown = {n: to_ui(f, f.default) for n, f in model.model_fields.items()} | (values or {})
    return condition_holds(show_if, shown)


def values_to_params(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """Widget values (by field name) -> params data; names that are not fields are ignored."""
    return {n: from_ui(model.model_fields[n], v) for n, v in values.items() if n in model.model_fields}


def params_to_values(model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """Params data -> widget values for the fields present in ``params``."""
    return {n: to_ui(model.model_fields[n], v) for n, v in params.items() if n in model.model_fields}
