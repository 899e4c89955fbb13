"""The sweep dialog and sweep view as plain functions (no Gradio): a form's fields as a search space, the preset,
the trials table sorted by the key metric, metric-vs-parameter points and a parameter importance chart."""

from __future__ import annotations

import math
import typing
from typing import Any

import pandas as pd
from pydantic import BaseModel

from engine.errors import UserError
from engine.run import sweep as sw
from engine.task import Task

STRATEGY_CHOICES = [("random", "random"), ("TPE (Optuna)", "tpe"), ("grid", "grid")]


def field_choices(task: Task) -> list[str]:
    """The fields of the form a sweep may search."""
    return sw.searchable(task)


def default_spec(task: Task, params: BaseModel, name: str) -> str:
    """A first search spec for one field from its current value: choices get every allowed value, numbers a range
    around the value (log-scaled for rates and other small positive numbers), within the field's bounds."""
    info = task.params.model_fields[name]
    allowed = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else ()
    if allowed:
        return ",".join(str(a) for a in allowed)
    if info.annotation is bool:
        return "true,false"
    value = getattr(params, name)
    if info.annotation not in (int, float) or isinstance(value, bool):
        return str(value)
    low, high = _bounds(info)
    if info.annotation is int:
        picks = sorted({max(low, min(high, v)) for v in (max(1, value // 2), value, value * 2)} - {None})
        return ",".join(str(int(v)) for v in picks)
    if 0 < value < 0.01:
        return f"log:{max(low, value / 10):g}:{min(high, value * 10):g}"
    top = value * 2 if value else 0.1
    return f"{max(low, value / 2 if value else 0.0):g}:{min(high, top):g}"


def _bounds(info: Any) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for meta in info.metadata:
        if getattr(meta, "ge", None) is not None:
            low = meta.ge
        if getattr(meta, "gt", None) is not None:
            low = meta.gt * 1.0000001 if meta.gt else 1e-12
        if getattr(meta, "le", None) is not None:
            high = meta.le
        if getattr(meta, "lt", None) is not None:
            high = meta.lt
    return low, high


def space_text(task: Task, params: BaseModel, names: list[str], current: str = "") -> str:
    """One ``NAME=SPEC`` line per picked field: lines already written are kept, new fields get a default spec."""
    kept = {line.partition("=")[0].strip(): line.strip() for line in current.splitlines() if "=" in line}
    return "\n".join(kept.get(n) or f"{n}={default_spec(task, params, n)}" for n in names)


def parse_space(text: str) -> list[sw.Dim]:
    """The dialog's lines as a search space (UserError naming the line's field when one is malformed)."""
    return [sw.parse_param(line.strip()) for line in text.splitlines() if line.strip()]


def preset_values(task: Task, params: BaseModel) -> dict[str, Any]:
    """The one-click sweep for this form: fields, space lines, strategy, trials, parallel, pruner."""
    dims, request = sw.preset(task, params)
    return {
        "fields": [d.name for d in dims],
        "space": "\n".join(f"{d.name}={d.spec}" for d in dims),
        "strategy": request.strategy,
        "trials": request.trials,
        "parallel": request.parallel,
        "pruner": request.pruner == "median",
    }


def request_of(space: str, strategy: str, trials: Any, parallel: Any, prune: bool, name: str = "") -> sw.SweepRequest:
    return sw.SweepRequest(
        parse_space(space),
        strategy or "random",
        int(trials or 0),
        int(parallel or 1),
        0.0,
        "median" if prune else "none",
        name,
    )


def cost_md(store: Any, task: Task, params: BaseModel | None, request: sw.SweepRequest, concurrency: int) -> str:
    """The expected cost of a sweep (trials × estimated run time, the heaviest trial's memory check)."""
    if params is None:
        return ""
    try:
        return sw.expected_cost(store, task, params, request, concurrency)
    except UserError as e:
        return str(e)


# --- the sweep view ------------------------------------------------------------------------------------------------


def sweep_choices(sweeps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"{s['name']} — {s['status']} ({s['id']})", s["id"]) for s in sweeps]


def header_md(result: dict[str, Any]) -> str:
    done = sum(t["status"] not in ("queued", "running") for t in result["trials"])
    best = (
        f"Best: `{result['best_run_id']}` {result['key_metric']} = **{result['best_metric']:.4g}** "
        f"with {_params_text(result['best_params'])}"
        if result["best_run_id"]
        else "No finished trial yet."
    )
    error = f"\n\n{result['error']}" if result.get("error") else ""
    return (
        f"**{result['name']}** · {result['status']} · {result['strategy']} · {done}/{len(result['trials'])} trials "
        f"ended (of {result.get('planned', len(result['trials']))})\n\n{best}{error}"
    )


def _params_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_num(v)}" for k, v in values.items())


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per trial, best first (by the key metric; trials without a value last), the best marked ★."""
    names = sorted({k for t in result["trials"] for k in t["params"]})
    rows = []
    for t in result["trials"]:
        row = {"": "★" if t["run_id"] == result["best_run_id"] else "", "run": t["run_id"], "status": t["status"]}
        row.update({n: t["params"].get(n) for n in names})
        row[result["key_metric"]] = t["metric"]
        rows.append(row)
    df = pd.DataFrame(rows, columns=["", "run", "status", *names, result["key_metric"]])
    if df.empty:
        return df
    return df.sort_values(result["key_metric"], ascending=not result["greater_is_better"], na_position="last")


def points(result: dict[str, Any], name: str) -> pd.DataFrame:
    """The key metric against one searched field: one point per trial with a value."""
    key = result["key_metric"]
    rows = [
        {name: t["params"].get(name), key: t["metric"], "status": t["status"]}
        for t in result["trials"]
        if t["metric"] is not None and name in t["params"]
    ]
    df = pd.DataFrame(rows, columns=[name, key, "status"])
    if not df.empty and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in df[name]):
        df[name] = df[name].astype(str)
    return df


def importance(result: dict[str, Any]) -> pd.DataFrame:
    """How much each searched field moves the key metric: |Spearman rank correlation| for numbers, the share of
    the metric's variance between a field's values (eta²) for choices."""
    done = [t for t in result["trials"] if t["metric"] is not None]
    names = sorted({k for t in done for k in t["params"]})
    rows = []
    for name in names:
        values = pd.Series([t["params"].get(name) for t in done])
        metric = pd.Series([t["metric"] for t in done], dtype=float)
        rows.append({"field": name, "importance": _association(values, metric)})
    df = pd.DataFrame(rows, columns=["field", "importance"])
    return df.sort_values("importance", ascending=False) if len(done) >= 3 else df.iloc[0:0]


def _association(values: pd.Series, metric: pd.Series) -> float:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        rho = values.astype(float).rank().corr(metric.rank())
        return 0.0 if pd.isna(rho) else round(abs(float(rho)), 3)
    total = ((metric - metric.mean()) ** 2).sum()
    if not total:
        return 0.0
    groups = metric.groupby(values.astype(str))
    between = sum(len(g) * (g.mean() - metric.mean()) ** 2 for _, g in groups)
    return round(float(between / total), 3)
