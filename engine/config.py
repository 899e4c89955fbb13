"""YAML run configs (``task: ... / params: ...``), ``key=value`` overrides, and AutoTrain configs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from engine.compat import autotrain
from engine.compat.autotrain import is_autotrain
from engine.errors import UserError
from engine.params import public_dict, validate_params
from engine.task import Task, get_task

ENV_VAR = re.compile(r"\$\{(\w+)\}")


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false are booleans, so the documented values `no`, `yes`, `on` and
    `off` (e.g. ``eval_strategy: no``, ``mixed_precision: no``) stay the strings they look like."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text the way every Trainpad config is read (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


def parse_value(text: str) -> Any:
    """A CLI override value parsed as YAML (``3`` -> 3, ``true`` -> True, ``[a, b]`` -> list)."""
    try:
        return load_yaml(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` (and ``column_mapping.role=col``) overrides to a params dict."""
    out = dict(params)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"Override `{item}` must look like key=value, e.g. epochs=1.")
        key, value = item.split("=", 1)
        if "." in key:
            head, sub = key.split(".", 1)
            out[head] = {**(out.get(head) or {}), sub: parse_value(value)}
        else:
            out[key.strip()] = parse_value(value)
    return out


SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|AUTH|KEY|CREDENTIAL", re.IGNORECASE)


def expand_env(obj: Any) -> Any:
    """Replace ``${VAR}`` in strings with environment values (as AutoTrain configs do) — for configs the operator
    runs from the command line only. A secret's variable (``HF_TOKEN``, ``TRAINPAD_AUTH``...) is never expanded:
    its value would be written into the run's config, the database and the model card."""
    if isinstance(obj, str):

        def sub(m: re.Match) -> str:
            name = m.group(1)
            if SECRET_NAME.search(name):
                raise UserError(
                    f"Config uses ${{{name}}}: a secret is never put into a config (it would be stored with the run). "
                    "Remove it; the Hugging Face token is passed to runs from $HF_TOKEN by itself."
                )
            if name not in os.environ:
                raise UserError(f"Config uses ${{{name}}} but the environment variable {name} is not set.")
            return os.environ[name]

        return ENV_VAR.sub(sub, obj)
    if isinstance(obj, dict):
        return {k: expand_env(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand_env(v) for v in obj]
    return obj


MAX_YAML_BYTES = 256 * 1024  # a config is a few KB; this bounds what a visitor can make the parser do


class _NoAliasLoader(_Yaml12Loader):
    """Refuses YAML anchors/aliases (``*ref``): a few lines of them can expand to gigabytes ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise UserError(
                f"YAML aliases (`*{event.anchor}`) are not accepted in a config (line {event.start_mark.line + 1}); "
                "write the values out."
            )
        return super().compose_node(parent, index)


def load_config_text(text: str, name: str = "config") -> Any:
    """Parse untrusted config text: bounded size, no aliases, YAML 1.2 booleans; UserError naming the file."""
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise UserError(f"`{name}` is larger than {MAX_YAML_BYTES // 1024} KB; a Trainpad config is a few KB.")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        raise UserError(f"`{name}` is not valid YAML: {e}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"Config file `{p}` does not exist.")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"Config file `{p.name}` is not valid YAML: {e}") from None
    if not isinstance(data, dict) or "task" not in data:
        raise UserError(f"Config file `{p.name}` must be a mapping with `task:` and `params:` keys.")
    return data


def from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, base_dir: Path | None = None, env: bool = False
) -> tuple[Task, BaseModel]:
    """Validate a config dict (Trainpad or AutoTrain form) into a task and its params. ``env``: expand ``${VAR}``
    (the command line only: a visitor's config must not read the host's environment)."""
    if not isinstance(data, dict):
        raise UserError("A config must be a mapping with `task:` and `params:` keys.")
    if is_autotrain(data):
        data = autotrain.load(data, env)  # before ${ENV} expansion: AutoTrain's hub.token is never read
    if env:
        data = expand_env(data)
    if not isinstance(data.get("params") or {}, dict):
        raise UserError("`params:` must be a mapping of parameter names to values, e.g. `params: {epochs: 3}`.")
    extra = sorted(set(data) - {"task", "params", "name", "backend"})
    if extra:
        raise UserError(
            f"Unknown top-level key(s) {', '.join(extra)} in config. Use `task:`, `params:` and optionally "
            "`name:` and `backend:`."
        )
    task = get_task(str(data["task"]))
    params = apply_overrides(dict(data.get("params") or {}), overrides or [])
    if base_dir is not None:
        params = _relative_paths(params, base_dir)
    return task, validate_params(task.params, params)


def _relative_paths(params: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Data paths in a config are relative to the config file's folder (if that is where they exist)."""
    for key in ("data_path", "valid_path", "base_model"):
        value = params.get(key)
        if isinstance(value, str) and value.startswith(("./", "../")) and (base_dir / value).exists():
            params[key] = str((base_dir / value).resolve())
    return params


def config_backend(path: str | Path) -> str:
    """The config's ``backend:`` (where to run: local, ray, hf-jobs...); "local" when it names none."""
    data = read_yaml(path)
    if is_autotrain(data):
        return autotrain.backend_of(data)
    return str(data.get("backend") or "local")


def load_config(path: str | Path, overrides: list[str] | None = None) -> tuple[Task, BaseModel]:
    """Read and validate a YAML config (Trainpad or AutoTrain form) with overrides."""
    return from_dict(read_yaml(path), overrides, Path(path).resolve().parent, env=True)


def load_run_config(path: str | Path) -> tuple[Task, BaseModel]:
    """A run's config as its supervisor wrote it: final values, checked before launch. Nothing is expanded or
    re-based here (a ``${VAR}`` is plain text), so the worker opens exactly what was checked."""
    return from_dict(read_yaml(path))


def dump_config(task: Task, params: BaseModel, name: str = "", backend: str = "local") -> str:
    """The YAML text of a validated config (no secrets), loadable by ``load_config``."""
    doc: dict[str, Any] = {"task": task.name}
    if name:
        doc["name"] = name
    if backend and backend != "local":
        doc["backend"] = backend
    doc["params"] = public_dict(params)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def command_to_yaml(command: str) -> str:
    """The Trainpad YAML for an AutoTrain command line (validated; notes as `#` comments at the top)."""
    doc, found = autotrain.convert(autotrain.parse_command(command), env=True)
    task, params = from_dict({k: v for k, v in doc.items() if k != "backend" or v in ("local", "hf-jobs")})
    out: dict[str, Any] = {"task": task.name}
    if doc.get("name"):
        out["name"] = doc["name"]
    if doc.get("backend") not in (None, "local"):
        out["backend"] = doc["backend"]
    out["params"] = public_dict(params)
    header = "".join(f"# {line}\n" for line in [f"from: {autotrain.masked(command)}", *found])
    return header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True)
