"""What the Runs page shows, as plain data: the history table, one run's header, charts and files,
and run comparison. Read from the run store and the run folder; no Gradio here (``ui.runs`` wires it)."""

from __future__ import annotations

import ast
import html
import json
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from engine import runfiles as rf
from engine.run.store import ACTIVE
from engine.train import charts
from ui.context import Context
from ui.run_actions import actions_allowed

ALL = "all"
TABLE_COLUMNS = ["id", "name", "task", "base model", "status", "progress", "where", "started", "duration", "metric"]
CHART_COLUMNS = ["step", "epoch", "value", "series"]


# --- formatting -------------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_time(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts)) if ts else ""


def short_model(name: str) -> str:
    """A local model folder by its last two parts (the table stays readable at 1400 px); Hub ids as they are."""
    parts = Path(name).parts
    return "…/" + "/".join(parts[-2:]) if name.startswith(("/", "~", ".")) and len(parts) > 2 else name


def progress_text(row: dict[str, Any]) -> str:
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    if total and step > total:  # a task whose steps are not the trainer's (tabular trials): no "7/6 (117%)"
        return f"{step}"
    if total:
        return f"{step}/{total} ({100 * step / total:.0f}%)"
    return f"{step}" if step else ""


def where_text(row: dict[str, Any]) -> str:
    """Where the run executes: the backend, and on this machine its devices (``GPU 0,1`` or ``CPU``)."""
    backend = row.get("backend") or "local"
    if backend != "local":
        return backend
    devices = row.get("devices") or ""
    return "" if not devices else "CPU" if devices == "cpu" else f"GPU {devices}"


def duration_of(row: dict[str, Any], now: float | None = None) -> float | None:
    if not row.get("started_at"):
        return None
    return (row.get("ended_at") or now or time.time()) - row["started_at"]


def metric_text(row: dict[str, Any]) -> str:
    if row.get("key_metric") is None:
        return ""
    return f"{row.get('key_metric_name') or 'metric'}={row['key_metric']:.4g}"


# --- the table --------------------------------------------------------------------------------


def table_row(row: dict[str, Any], now: float) -> list[str]:
    return [
        row["id"],
        row.get("name") or "",
        row["task"],
        short_model(row.get("base_model") or ""),
        row["status"],
        progress_text(row),
        where_text(row),
        fmt_time(row.get("started_at") or row.get("created_at")),
        fmt_duration(duration_of(row, now)),
        metric_text(row),
    ]


def runs_table(ctx: Context, status: str = ALL, task: str = ALL) -> pd.DataFrame:
    """All runs (newest first) as the table shows them."""
    rows = ctx.store.list_runs(
        status=None if status in (ALL, "", None) else status,
        task=None if task in (ALL, "", None) else task,
    )
    now = time.time()
    return pd.DataFrame([table_row(r, now) for r in rows], columns=TABLE_COLUMNS)


def any_active(ctx: Context) -> bool:
    return bool(ctx.store.runs_with_status(*ACTIVE))


def run_choices(ctx: Context) -> list[tuple[str, str]]:
    return [(f"{r.get('name') or r['id']} · {r['status']} · {r['id']}", r["id"]) for r in ctx.store.list_runs()]


def restore_run(ctx: Context, saved: str | None) -> str:
    """The run to show on (re)load: the one this browser watched, else the newest active run ('' if none)."""
    if saved and ctx.store.get_run(saved):
        return saved
    active = ctx.store.runs_with_status("running") or ctx.store.runs_with_status("queued")
    return active[-1]["id"] if active else ""


# --- one run ----------------------------------------------------------------------------------


def chart_frame(ctx: Context, run_id: str, names: list[str], x: str = "step") -> pd.DataFrame:
    """Long-form metrics (x, value, series) for a LinePlot, series named for people (``charts.label``), a
    resumed run's parent curve included; rows without an epoch are dropped when x is epoch."""
    rows = run_points(ctx, run_id, names) if names else []
    df = pd.DataFrame(rows, columns=["step", "epoch", "name", "value", "time"])
    df["series"] = df["name"].map(charts.label)
    df = df[CHART_COLUMNS]
    # numeric dtypes even when empty: the plot fixes its axis types from the first data it gets
    df = df.astype({"step": "int64", "epoch": "float64", "value": "float64", "series": "str"})
    # the final evaluation logs again at the last step: two values at one x drew a vertical line; the last is kept
    df = df.drop_duplicates(subset=["series", "step"], keep="last")
    if x == "epoch":
        df = df.dropna(subset=["epoch"])
    return df.reset_index(drop=True)


def has_line(df: pd.DataFrame) -> bool:
    """Whether a chart's data draws a line: one of its series has two points or more."""
    return not df.empty and bool((df.groupby("series")["value"].size() >= 2).any())


def single_points(frames: dict[str, pd.DataFrame], x: str = "step") -> str:
    """The values of the charts that have data but no line yet (each series one point), as Markdown: a number
    reads better than a lonely dot between axis labels; '' when there are none."""
    said = []
    for key, df in frames.items():
        if df.empty or has_line(df):
            continue
        values = ", ".join(f"{r.series} {_value_text(r.value)} ({x} {_x_text(getattr(r, x))})" for r in df.itertuples())
        said.append(f"**{charts.CHARTS[key].split(' (')[0]}**: {values}")
    return " · ".join(said) + (" — drawn as a curve from the second point." if said else "")


def _value_text(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _x_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_points(ctx: Context, run_id: str, names: list[str], depth: int = 5) -> list[dict[str, Any]]:
    """The run's logged points of ``names``, after those of the run it resumed (up to its first own step)."""
    rows = ctx.store.metrics(run_id, names)
    row = ctx.store.get_run(run_id) if depth else None
    parent = (row or {}).get("parent_id")
    if not parent:
        return rows
    first = min((r["step"] for r in rows), default=None)
    before = [r for r in run_points(ctx, parent, names, depth - 1) if first is None or r["step"] < first]
    return before + rows


def chart_groups(ctx: Context, run_id: str) -> dict[str, list[str]]:
    """Metric names for each chart of ``engine.train.charts.CHARTS`` (a resumed run's parent's included)."""
    names: set[str] = set()
    for _ in range(6):
        if not run_id:
            break
        names.update(ctx.store.metric_names(run_id))
        run_id = (ctx.store.get_run(run_id) or {}).get("parent_id") or ""
    return charts.group(names)


MIN_PACED_STEPS = 3  # steps measured before an ETA is given ("estimating…" until then)


def eta_seconds(ctx: Context, row: dict[str, Any], now: float | None = None) -> float | None:
    """Time left from the measured seconds per step (the worker's ``step_time`` reports, else the times of the
    logged training losses), else from a run's time limit (``time_limit_eta``); None when not running, or too few
    steps were measured yet."""
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    if row["status"] != "running" or not step or not total or step >= total:
        return time_limit_eta(row, now)
    paces = [m["value"] for m in ctx.store.metrics(row["id"], [charts.STEP_TIME])]
    if paces:
        return sum(paces[-3:]) / len(paces[-3:]) * (total - step)
    points = [m for m in ctx.store.metrics(row["id"], [charts.TRAIN_LOSS]) if m.get("time")]
    if len(points) >= 2 and points[-1]["step"] - points[0]["step"] >= MIN_PACED_STEPS:
        rate = (points[-1]["time"] - points[0]["time"]) / (points[-1]["step"] - points[0]["step"])
        return rate * (total - step)
    return time_limit_eta(row, now)


def time_limit_eta(row: dict[str, Any], now: float | None = None) -> float | None:
    """Time left of a running run whose params set a ``time_limit`` in seconds (a tabular search: its steps are
    trials, not a known count), from the time it has run; None for any other run."""
    limit, elapsed = (row.get("params") or {}).get("time_limit"), duration_of(row, now)
    if row["status"] != "running" or not isinstance(limit, (int, float)) or isinstance(limit, bool) or elapsed is None:
        return None
    return max(0.0, float(limit) - elapsed)


def facts(row: dict[str, Any], eta: float | None) -> list[str]:
    """The header's facts: step, epoch, elapsed, ETA (or "estimating…" while the pace is unknown), key metric."""
    out = [f"step {progress_text(row) or 0}"]
    if row.get("epoch") is not None:
        out.append(f"epoch {row['epoch']:.2f}")
    if duration_of(row) is not None:
        out.append(f"elapsed {fmt_duration(duration_of(row))}")
    if eta is not None:
        out.append(f"ETA {fmt_duration(eta)}" if eta >= 1 else "finishing…")
    elif row["status"] == "running" and (row.get("step") or 0) < (row.get("max_steps") or 0):
        out.append("ETA estimating…")
    if metric_text(row):
        out.append(metric_text(row))
    return out


def queue_text(ctx: Context, row: dict[str, Any]) -> str:
    """Where a queued run stands: "queued: 2 runs ahead" ('' for a run that is not queued)."""
    if row["status"] != "queued" or not hasattr(ctx.supervisor, "queue_position"):
        return ""
    running, ahead = ctx.supervisor.queue_position(row["id"])
    if ahead:
        return f"{ahead} run{'s' if ahead > 1 else ''} ahead in the queue"
    return "next in the queue, starts when the running run ends" if running else "starting…"


def phase_text(row: dict[str, Any]) -> str:
    """What a running run does before its first step, from its last ``phase`` event (a Hugging Face Job's
    "installing Trainpad on the job…"); '' once it steps, or when it reported none."""
    if row["status"] != "running" or row.get("step") or not row.get("run_dir"):
        return ""
    events, _ = rf.read_events(row["run_dir"])
    phases = [e for e in events if isinstance(e, dict) and e.get("type") == "phase" and e.get("message")]
    return html.escape(str(phases[-1]["message"])) if phases else ""


def header_html(ctx: Context, row: dict[str, Any]) -> str:
    """Status badge, name, progress bar with ETA (or place in the queue), timings."""
    status = row["status"]
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    pct = min(100, 100 * step / total) if total else (100 if status == "succeeded" else 0)
    shown = " · ".join(filter(None, [queue_text(ctx, row), phase_text(row), *facts(row, eta_seconds(ctx, row))]))
    return (
        f'<div class="tp-run-head"><span class="tp-badge tp-{status}" id="run-status">{status}</span> '
        f"<b>{html.escape(row.get('name') or row['id'])}</b> · {html.escape(row['task'])} · <code>{row['id']}</code>"
        f'<div class="tp-progress"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="tp-run-facts">{shown}</div></div>'
    )


def note_html(run_id: str) -> str:
    """The header when no run is shown."""
    note = "Pick a run in the table (or start one from a task tab)." if not run_id else f"No run `{run_id}`."
    return f'<div class="tp-run-head">{html.escape(note)}</div>'


WARNING_LINE = re.compile(r"\b\w*Warning: ")
NUMBER_NAMES = {
    "learning_rate": "lr",
    "loss": "loss",
    "eval_loss": "validation loss",
    "train_loss": "train loss",
    "train_tokens_per_second": "tokens/s",  # the one speed shown (other *_per_second and *_runtime are not)
}
HIDDEN_KEYS = {"grad_norm", "total_flos", "num_input_tokens_seen", "epoch"}


def readable_log(text: str) -> str:
    """The log tail for people: the trainer's dict lines (transformers 5 prints their values as strings) as
    `epoch 1.20 · loss 2.31 · lr 2.0e-04 · tokens/s 6919`, Python warnings (FutureWarning noise and their source
    line) left out. The raw log stays in ``train.log``."""
    out, skip_source = [], False
    for line in text.splitlines():
        if skip_source and line.startswith((" ", "\t")):
            skip_source = False
            continue
        skip_source = bool(WARNING_LINE.search(line))
        if skip_source:
            continue
        out.append(_metrics_line(line))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _metrics_line(line: str) -> str:
    stripped = line.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return line
    try:
        logs = ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        return line
    if not isinstance(logs, dict):
        return line
    numbers = {k: n for k, n in ((k, _number(v)) for k, v in logs.items()) if n is not None}
    parts = [f"epoch {numbers['epoch']:.2f}"] if "epoch" in numbers else []
    for key, value in numbers.items():
        if key in HIDDEN_KEYS or (key.endswith(("_per_second", "_runtime")) and key not in NUMBER_NAMES):
            continue
        name = NUMBER_NAMES.get(key) or charts.label(key)
        parts.append(f"{name} {value:.2e}" if abs(value) < 1e-3 and value else f"{name} {value:.4g}")
    return " · ".join(parts) or line


def _number(value: Any) -> float | None:
    """A logged value as a number: transformers 5 prints them as strings (``'loss': '5.996'``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def error_md(row: dict[str, Any], error: str | None) -> str:
    """The run's error as Markdown: its stored text verbatim in a code block (whose fence is longer than any run
    of backticks in it), so a column name or message can never inject Markdown or HTML into the page."""
    if not error:
        return ""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", error)), default=0))
    return f"**This run {html.escape(str(row['status']))}.**\n\n{fence}text\n{error}\n{fence}"


def run_view(ctx: Context, run_id: str, x: str = "step") -> dict[str, Any] | None:
    """Everything the detail panel shows for one run (None when it does not exist)."""
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        return None
    run_dir = Path(row["run_dir"])
    config = (run_dir / rf.CONFIG).read_text(encoding="utf-8") if (run_dir / rf.CONFIG).exists() else ""
    return {
        "row": row,
        "header": header_html(ctx, row),
        "charts": {k: chart_frame(ctx, run_id, names, x) for k, names in chart_groups(ctx, run_id).items()},
        "log": readable_log(rf.log_tail(run_dir)),
        "metrics": rf.read_json(run_dir / rf.METRICS),
        "error": row.get("error") if row["status"] in ("failed", "interrupted") else None,
        "config": config,
        "can": actions_allowed(row),
        "results": results(run_dir),
    }


# --- result views (engine.train.charts.RESULT_FILES) -------------------------------------------------


def results(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Each result view of ``engine.train.charts.RESULTS`` the run's files give, as a table (views without data are
    left out, so the page shows no empty panel)."""
    out: dict[str, pd.DataFrame] = {}
    for path, view in charts.RESULT_FILES:
        file = run_dir / path
        if not file.is_file():
            continue
        try:
            out.update(READERS[view](file))
        except (OSError, ValueError, KeyError, TypeError, pd.errors.ParserError):
            continue  # a half-written or foreign file: show nothing rather than fail the page
    return out


def _confusion(file: Path) -> dict[str, pd.DataFrame]:
    doc = rf.read_json(file) or {}
    labels, matrix = [str(x) for x in doc["labels"]], [[int(v) for v in row] for row in doc["matrix"]]
    if not labels:
        return {}
    table = pd.DataFrame(matrix, columns=labels)
    table.insert(0, "true \\ predicted", labels)
    return {"confusion": table, "per_class": per_class(labels, matrix)}


def per_class(labels: list[str], matrix: list[list[int]]) -> pd.DataFrame:
    """Precision, recall, F1 and support of each class, from a confusion matrix (rows true, columns predicted)."""
    rows = []
    for i, label in enumerate(labels):
        hit, true, predicted = matrix[i][i], sum(matrix[i]), sum(r[i] for r in matrix)
        p = hit / predicted if predicted else 0.0
        r = hit / true if true else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append([label, round(p, 3), round(r, 3), round(f1, 3), true])
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "F1", "support"])


def _leaderboard(file: Path) -> dict[str, pd.DataFrame]:
    table = pd.read_csv(file)
    return {"leaderboard": table.round(4)} if not table.empty else {}


def _importance(file: Path) -> dict[str, pd.DataFrame]:
    """The ``IMPORTANCE_TOP`` most important features, most important first, for horizontal bars: each name led by
    as many zero-width spaces as its rank, as the plot orders its names alphabetically (the names read the same)."""
    table = pd.read_csv(file)[["feature", "importance"]]
    table = table.sort_values("importance", ascending=False).head(charts.IMPORTANCE_TOP).reset_index(drop=True)
    table["feature"] = [RANK_MARK * i + str(name) for i, name in enumerate(table["feature"])]
    return {"importance": table.astype({"feature": "str", "importance": "float64"})} if not table.empty else {}


RANK_MARK = "\u200b"  # zero-width space: orders bar names without showing


def _scatter(file: Path) -> dict[str, pd.DataFrame]:
    table = pd.read_csv(file)[["true", "predicted"]].astype("float64")
    return {"scatter": table} if not table.empty else {}


def _per_entity(file: Path) -> dict[str, pd.DataFrame]:
    doc = rf.read_json(file) or {}
    rows = [
        [str(name), *(round(float(s[k]), 3) for k in ("precision", "recall", "f1")), int(s.get("support", 0))]
        for name, s in doc.items()
    ]
    table = pd.DataFrame(rows, columns=["entity", "precision", "recall", "F1", "support"])
    return {"per_entity": table.sort_values("support", ascending=False, kind="stable")} if rows else {}


def _per_class_ap(file: Path) -> dict[str, pd.DataFrame]:
    """AP per class: a number each, or a dict of numbers (AP, AP50, ...); -1 (no box of the class among the
    validation images) reads "not in validation"."""
    doc = rf.read_json(file) or {}
    rows = [{"class": str(name), **(v if isinstance(v, dict) else {"AP": v})} for name, v in doc.items()]
    if not rows:
        return {}
    table = pd.DataFrame(rows)
    for col in table.columns[1:]:
        table[col] = [_ap_text(v) for v in table[col]]
    return {"per_class_ap": table}


def _ap_text(value: Any) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return ""
    return "not in validation" if value < 0 else f"{value:.3f}"


SAMPLE_CHARS = 400  # each text cell of the samples table is cut to this
SAMPLES_TAIL = 256_000  # bytes read from the end of the samples file


def _samples(file: Path) -> dict[str, pd.DataFrame]:
    """The generations of the latest evaluation step (``engine.train.charts.append_samples``)."""
    with open(file, "rb") as f:  # the file grows at every evaluation: its end holds the latest step
        f.seek(max(0, file.stat().st_size - SAMPLES_TAIL))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    found = [_json_line(line) for line in lines]
    found = [d for d in found if isinstance(d, dict) and "generated" in d]
    if not found:
        return {}
    last = max(int(d.get("step") or 0) for d in found)
    rows = [
        [last, *(_cut(str(d.get(k) or "")) for k in ("prompt", "generated", "reference"))]
        for d in found
        if int(d.get("step") or 0) == last
    ]
    return {"samples": pd.DataFrame(rows, columns=["step", "prompt", "generated", "reference"])}


def _rollouts(file: Path) -> dict[str, pd.DataFrame]:
    """The rollouts of the latest logging step (``engine.train.charts.append_rollouts``): each completion with one
    column per reward function."""
    with open(file, "rb") as f:  # the file grows at every log: its end holds the latest step
        f.seek(max(0, file.stat().st_size - SAMPLES_TAIL))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    found = [d for d in map(_json_line, lines) if isinstance(d, dict) and "completion" in d]
    if not found:
        return {}
    last = max(int(d.get("step") or 0) for d in found)
    latest = [d for d in found if int(d.get("step") or 0) == last]
    names = list(dict.fromkeys(n for d in latest for n in (d.get("rewards") or {})))
    rows = [
        [last, _cut(str(d.get("prompt") or "")), _cut(str(d.get("completion") or ""))]
        + [(d.get("rewards") or {}).get(n) for n in names]
        + [d.get("advantage")]
        for d in latest
    ]
    return {"rollouts": pd.DataFrame(rows, columns=["step", "prompt", "completion", *names, "advantage"])}


def _json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None  # a line being written


def _cut(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"


READERS = {
    "confusion": _confusion,
    "leaderboard": _leaderboard,
    "importance": _importance,
    "scatter": _scatter,
    "per_entity": _per_entity,
    "per_class_ap": _per_class_ap,
    "samples": _samples,
    "rollouts": _rollouts,
}


# --- compare ----------------------------------------------------------------------------------


def compare(ctx: Context, run_ids: list[str], x: str = "step") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Loss curves of several runs (series = run name + metric) and a table of the params that differ."""
    frames, configs = [], {}
    for run_id in run_ids:
        row = ctx.store.get_run(run_id)
        if row is None:
            continue
        label = f"{row.get('name') or run_id}"
        df = chart_frame(ctx, run_id, chart_groups(ctx, run_id)["loss"], x)
        df["series"] = label + " · " + df["series"]
        frames.append(df)
        configs[label] = {"task": row["task"], **(row.get("params") or {})}
    curves = pd.concat(frames, ignore_index=True) if frames else chart_frame(ctx, "", [], x)
    return curves, config_diff(configs)


def metrics_table(ctx: Context, run_ids: list[str]) -> pd.DataFrame:
    """One row per run: its status, steps, duration, its task's key metric and the final metrics every compared
    run has (from ``metrics.json``), so runs can be ranked at a glance."""
    rows, finals = [], []
    for run_id in run_ids:
        row = ctx.store.get_run(run_id)
        if row is None:
            continue
        final = rf.read_json(Path(row["run_dir"]) / rf.METRICS) or {}
        finals.append({k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append([row.get("name") or run_id, row["status"], progress_text(row), fmt_duration(duration_of(row))])
        rows[-1].append(metric_text(row))
    shared = sorted(set.intersection(*(set(f) for f in finals)) if finals else set(), key=_metric_order)
    shared = [
        k
        for k in shared
        if k.startswith(("eval_", "train_loss", "test_")) and not k.endswith(("_per_second", "_runtime"))
    ]
    table = [r + [f"{f[k]:.4g}" for k in shared] for r, f in zip(rows, finals, strict=True)]
    return pd.DataFrame(table, columns=["run", "status", "steps", "duration", "key metric", *shared])


def _metric_order(name: str) -> tuple[int, str]:
    return (0 if "loss" in name else 1, name)


def config_diff(configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per parameter whose value differs between the runs (columns = runs)."""
    keys = sorted({k for c in configs.values() for k in c})
    rows = []
    for key in keys:
        values = [configs[label].get(key) for label in configs]
        if len({yaml.safe_dump(v) for v in values}) > 1:
            rows.append([key, *[_short(v) for v in values]])
    return pd.DataFrame(rows, columns=["parameter", *configs])


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return text if len(text) <= 80 else text[:79] + "…"


# --- evaluations (engine.eval: the ``evaluations`` table) -------------------------------------------------

EVAL_COLUMNS = ["evaluation", "data", "examples", "key metric", "metrics", "when"]


def evaluations_table(ctx: Context, run_id: str) -> pd.DataFrame:
    """The run's evaluations, newest first: test data file, size, key metric, every number, and when."""
    rows = ctx.store.list_evaluations(run_id=run_id) if run_id else []
    return pd.DataFrame(
        [
            [
                e["id"],
                Path(str(e.get("data") or "")).name,
                e.get("n_examples"),
                f"{e.get('key_metric_name') or 'metric'} = {_number_text(e.get('key_metric'))}",
                ", ".join(f"{k}={_number_text(v)}" for k, v in (e.get("metrics") or {}).items() if _is_number(v)),
                fmt_time(e.get("created_at")),
            ]
            for e in rows
        ],
        columns=EVAL_COLUMNS,
    )


def evaluations_note(row: dict[str, Any] | None, count: int) -> str:
    """What the evaluations panel says above its table."""
    if row is None:
        return ""
    if row["status"] != "succeeded":
        return f"Evaluations need a finished model: this run is {row['status']}."
    if not count:
        return "No evaluations yet: **Evaluate this run** opens the Evaluate page with it picked."
    return f"{count} evaluation{'s' if count > 1 else ''}, newest first: click one for its worst predictions."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_text(value: Any) -> str:
    return f"{value:.4g}" if _is_number(value) else ("" if value is None else str(value))
