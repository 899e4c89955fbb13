"""A task tab's logic as plain functions of (context, task, widget values by name): params from the form,
checks, which field each problem is about, the config YAML, queueing a run, loading a config, the data
preview. No Gradio here: ``ui.task_tab`` lays out the widgets and turns these results into updates.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd

from engine import config as cfg
from engine.data import splits
from engine.data import tables as data
from engine.errors import Problem, UserError
from engine.params import validate_params
from engine.preflight import models
from engine.task import Task
from ui import datasource, form_values
from ui.context import Context

DATA_FIELDS = ["valid_path", "train_split", "valid_split", "data_config", "valid_fraction"]
SPECIAL_FIELDS = {"base_model", "data_path", "column_mapping", *DATA_FIELDS}
MAP_PREFIX = "map__"
RESERVED = {"upload", "run_name", "hf_token", "backend"}
RUN_FIELDS = ("hf_flavor",)  # params shown in the form's Run section (with the backend), not among the others
UNMARKED = ("upload", "run_name", "hf_token")  # inputs no problem is shown beside
NONE_CHOICE = ("(not used)", "")


def form_fields(task: Task) -> list[str]:
    """The params fields the generic form shows (everything but model, data and mapping)."""
    names = [n for n in task.params.model_fields if n not in SPECIAL_FIELDS and n not in RUN_FIELDS]
    clash = RESERVED & set(names) | {n for n in names if n.startswith(MAP_PREFIX)}
    if clash:
        raise ValueError(
            f"Task {task.name}: parameter name(s) {sorted(clash)} clash with the form's own inputs; rename them."
        )
    return names


HUB_ONLY_FIELDS = ("train_split", "valid_split", "data_config")  # meaningful for a Hub dataset or a folder only


def hub_fields_shown(data_path: str | None) -> bool:
    """Whether split names and the data config apply: the data is a Hub dataset id or a folder (not one file)."""
    path = str(data_path or "").strip()
    return bool(path) and (not data.is_local(path) or Path(path).expanduser().is_dir())


# --- the base model picker -------------------------------------------------------------------


def model_choices(task: Task, local: list[str], hub: list[str] = (), used: list[str] = ()) -> list[tuple[str, str]]:
    """The base model dropdown's (label, value) choices: the local folders this task's runs used (newest first),
    the task's suggested models (small first), the model folders of the data folder, then the Hub's popular ones
    for the task (when online); each once."""
    out: dict[str, str] = {}
    for path in used:
        out.setdefault(path, f"{Path(path).name} · used in a run ({path})")
    for name in task.suggested_models:
        out.setdefault(name, f"{name} · suggested")
    for path in local:
        out.setdefault(path, f"{Path(path).name} · local folder")
    for name in hub:
        out.setdefault(name, f"{name} · popular on the Hub")
    return [(label, value) for value, label in out.items()]


# --- params and checks ------------------------------------------------------------------------


def params_data(task: Task, values: dict[str, Any]) -> dict[str, Any]:
    """Widget values -> the params dict the engine validates."""
    fields = task.params.model_fields
    out = form_values.values_to_params(task.params, {k: v for k, v in values.items() if k in fields})
    out["base_model"] = str(values.get("base_model") or "").strip()
    out["data_path"] = str(values.get("data_path") or "").strip()
    mapping = {k[len(MAP_PREFIX) :]: v for k, v in values.items() if k.startswith(MAP_PREFIX) and v}
    if "column_mapping" in fields:
        out["column_mapping"] = mapping
    return out


def resolve_upload(ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
    """An upload given to the API without a data path becomes the data path (kept in uploads/)."""
    upload = values.get("upload")
    if upload and not str(values.get("data_path") or "").strip():
        path = upload if isinstance(upload, str) else getattr(upload, "name", None) or upload.get("path")
        values = {**values, "data_path": str(datasource.keep_upload(path, ctx.uploads_dir, ctx.upload_quota))}
    return values


def problems_of(task: Task, values: dict[str, Any]) -> tuple[Any, list[str], list[str]]:
    """Validate params and check the data: (params or None, parameter problems, data problems)."""
    raw = params_data(task, values)
    try:
        params, param_problems = validate_params(task.params, raw), []
    except UserError as e:
        params, param_problems = None, e.problems
    if not any(getattr(p, "field", None) == "base_model" for p in param_problems):
        param_problems += model_problems(task, raw, values)
    if params is not None:
        param_problems += models.tracker_problems(params)
    try:
        probe = params or task.params.model_construct(**{**_defaults(task), **raw})
        data_problems = splits.check_data(task, probe)
    except Exception as e:  # an invalid form can trip a task's checks; say so plainly
        data_problems = [f"The data could not be checked until the parameters above are fixed ({e})."]
    return params, param_problems, data_problems


def model_problems(task: Task, raw: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The base model settled before launch (``engine.preflight.models``): folder, model class, Hub reachable."""
    token = str(values.get("hf_token") or "").strip() or None
    return models.base_model_problems(task, raw.get("base_model", ""), token)


def _defaults(task: Task) -> dict[str, Any]:
    return {n: f.default for n, f in task.params.model_fields.items()}


def problems_md(problems: list[str], ok: str = "") -> str:
    """The problems as a Markdown list under a small heading with their count (both drawn in red); each one's
    text escaped (:func:`plain_md`): a column name or value from the user's data shows as written and never as
    Markdown or HTML."""
    if not problems:
        return ok
    head = "#### 1 problem" if len(problems) == 1 else f"#### {len(problems)} problems"  # the heading is what is red
    return head + "\n\n" + "\n".join(f"- {plain_md(form_words(p))}" for p in problems)


CODE_SPAN = re.compile(r"(`[^`\n]+`)")
MARKDOWN_CHARS = re.compile(r"([\\`*\[\]<>#~$|]|(?<!\w)_|_(?!\w))")


def plain_md(text: str) -> str:
    """``text`` as Markdown that shows it as written: the names it quotes in backticks stay code, every other
    character that Markdown or HTML would act on (emphasis, links, images, tags, headings...) is escaped."""
    parts = CODE_SPAN.split(str(text))
    return "".join(part if i % 2 else MARKDOWN_CHARS.sub(r"\\\1", part) for i, part in enumerate(parts))


CONFIG_MAPPING_HINT = re.compile(r"\s*Map (?:yours|your columns|one) with column_mapping, e\.g\. \{(\w+): [^}]*\}\.")


def form_words(problem: str) -> str:
    """A data problem in the form's words: the engine's hint for config files ("Map one with column_mapping, e.g.
    {text: body}.") becomes where to do it in the form (the role's dropdown under Columns). Keeps the problem's
    ``field``/``role`` (``engine.errors.Problem``)."""
    found = CONFIG_MAPPING_HINT.search(problem)
    if found is None:
        return problem
    hint = f" Choose the column in the “{found.group(1)}” dropdown under Columns."
    text = problem[: found.start()] + hint + problem[found.end() :]
    return Problem(text, getattr(problem, "field", None), getattr(problem, "role", None))


def check(ctx: Context, task: Task, values: dict[str, Any]) -> tuple[str, str]:
    """(parameter problems, data problems) as Markdown; a ✓ line when all is well."""
    form_md, data_md, _ = check_report(ctx, task, values)
    return form_md, data_md


def check_report(
    ctx: Context, task: Task, values: dict[str, Any], backend: str = "local"
) -> tuple[str, str, list[str]]:
    """:func:`check`'s two Markdown texts, and every problem (to show beside its field); the memory verdict is
    for where the run goes (``backend``)."""
    values = resolve_upload(ctx, values)
    if refused := ctx.policy_problems(params_data(task, values)):  # shared: no file read that Start would refuse
        return "", problems_md(refused), refused
    with data.reading_once():  # the checks, the class counts and the summary read each file once
        params, param_problems, data_problems = problems_of(task, values)
        summary = class_balance_md(task, params, data_problems) + data_summary_md(task, params, data_problems)
    ok = "✓ Parameters are valid and the data passed every check." if not (param_problems or data_problems) else ""
    note = splits.check_note(params) if params is not None else ""  # "Checked the first N of ~M rows …"
    data_md = problems_md(data_problems) + (f"\n\n{note}" if note else "") + summary
    data_md += memory_md(task, params, backend)
    return problems_md(param_problems, ok), data_md, param_problems + data_problems


FEW_EXAMPLES = 10  # a class with fewer training examples than this is worth a note
SMALL_SHARE = 0.1  # ... and so is one with under this share of the largest class's examples
MAX_CLASSES = 50  # more distinct values than this: not classes (a numeric target, an id)
SHOWN_CLASSES = 20


def class_balance_md(task: Task, params: Any, data_problems: list[str]) -> str:
    """For a classification task (one that stratifies on a class column) with local data that passed the checks:
    the class counts of the training and validation rows the run will use, and notes (information, not problems)
    on imbalance and on classes found in one split only."""
    role = task.stratify_role
    if role is None or params is None or data_problems or not data.is_local(params.data_path):
        return ""
    try:
        with data.reading_once():  # the check's rows only (and the same read as the check's, inside one)
            train, valid = splits.load_splits(task, params)  # split as the worker splits them
    except (UserError, OSError, ValueError, KeyError):
        return ""
    counts = _class_counts(train, role)
    if counts is None:
        return ""
    vcounts = _class_counts(valid, role, any_values=True) if valid is not None else None
    text = ""
    if task.data_summary is None:  # a task's own summary lists its classes already
        text = f"\n\nClass counts in the {len(train)} training rows checked: {_counts_text(counts)}"
        if vcounts is not None:
            text += f"\n\nIn the {len(valid)} validation rows: {_counts_text(vcounts)}"
    notes = balance_notes(counts, vcounts)
    return text + ("\n\n" + "\n".join(f"- ⚠ {note}" for note in notes) if notes else "")


def _class_counts(df: pd.DataFrame, role: str, any_values: bool = False) -> pd.Series | None:
    """Rows per class, most first; None when the column does not hold classes (a number with many values)."""
    if role not in df.columns:
        return None
    values = df[role].dropna().astype(str)
    counts = values.value_counts()
    if any_values:
        return counts
    numeric = pd.to_numeric(values, errors="coerce")
    fractional = numeric.notna().all() and (numeric != numeric.round()).any()
    return None if len(counts) < 2 or len(counts) > MAX_CLASSES or fractional else counts


def _counts_text(counts: pd.Series) -> str:
    shown = " · ".join(f"{plain_md(name)} {n}" for name, n in counts.head(SHOWN_CLASSES).items())
    more = f" · and {len(counts) - SHOWN_CLASSES} more" if len(counts) > SHOWN_CLASSES else ""
    return shown + more


def balance_notes(counts: pd.Series, vcounts: pd.Series | None) -> list[str]:
    """Plain notes on the class counts: rare classes (few examples, or a small share of the largest class),
    classes with no validation rows, validation classes the training rows lack."""
    largest, notes = int(counts.iloc[0]), []
    rare = [n for n, c in counts.items() if c < FEW_EXAMPLES or c < SMALL_SHARE * largest]
    if rare:
        named = ", ".join(f"{plain_md(n)} ({counts[n]})" for n in rare[:SHOWN_CLASSES])
        notes.append(
            f"Imbalanced classes: {named} against {largest} for {plain_md(counts.index[0])}. A model can score well "
            "while rarely predicting them: look at the per-class scores on the run page, or add examples."
        )
    if vcounts is not None:
        missing = [n for n in counts.index if n not in vcounts.index]
        unseen = [n for n in vcounts.index if n not in counts.index]
        if missing:
            notes.append(
                f"No validation rows for {_names(missing)}: the run cannot tell how well the model finds "
                f"{'it' if len(missing) == 1 else 'them'}."
            )
        if unseen:
            notes.append(
                f"Validation has {_names(unseen)}, which the training rows lack: the model cannot learn "
                f"{'it' if len(unseen) == 1 else 'them'} (those rows are left out of evaluation)."
            )
    return notes


def _names(names: list[str]) -> str:
    shown = ", ".join(plain_md(n) for n in names[:SHOWN_CLASSES])
    return shown + (f" and {len(names) - SHOWN_CLASSES} more" if len(names) > SHOWN_CLASSES else "")


def memory_md(task: Task, params: Any, backend: str = "local") -> str:
    """The memory verdict for these settings on this machine's device(s), or on the Hugging Face Jobs flavor the
    run asks for (engine.preflight.memory; no torch)."""
    if params is None:
        return ""
    from engine.preflight.memory import memory_check

    if backend == "hf-jobs":
        from engine.run.backends import hf_flavors, hf_jobs

        line = hf_flavors.memory_line(task, params, hf_jobs.flavor(params.model_dump()))
    else:
        line = memory_check(task, params)
    return f"\n\n{line}" if line else ""


def flavor_choices(endpoint: str | None = None) -> tuple[list[tuple[str, str]], str]:
    """The Hugging Face Jobs flavors as (label with GPU memory and price, name), the default first, and a note
    when the Hub's list could not be fetched (the built-in list, without prices, is given then)."""
    from engine.run.backends import hf_flavors, hf_jobs

    listed, note = hf_flavors.fetch(endpoint or hf_jobs.endpoint())
    default = hf_jobs.flavor({})
    return [(f"default: {default}", ""), *[(f.label(), f.name) for f in listed]], note


def data_summary_md(task: Task, params: Any, data_problems: list[str]) -> str:
    """The task's pre-launch summary (e.g. token statistics and one formatted example), once the data is fine."""
    if task.data_summary is None or params is None or data_problems:
        return ""
    try:
        return "\n\n" + task.data_summary(task, params)
    except Exception as e:  # a summary is a courtesy; never block Check on it
        return f"\n\n(No data summary: {type(e).__name__}: {plain_md(str(e))})"


# --- which field a problem is about -----------------------------------------------------------


def problem_targets(
    problems: list[str], values: dict[str, Any], keys: list[str] | dict[str, Any], roles: list[str] | dict[str, Any]
) -> dict[str, list[str]]:
    """Input key (a parameter, ``data_path`` or ``map__<role>``) -> the problems to show beside it.
    ``keys`` are the inputs that can be marked, ``roles`` the task's column roles. A problem names its
    parameter or role as data (``engine.errors.Problem``); one that names none of ``keys`` that way (a plain
    sentence, or a nested field such as ``column_mapping.text``) is matched by the names it quotes."""
    keys, roles = set(keys), list(roles)
    out: dict[str, list[str]] = {}
    for problem in problems:
        found = [k for k in _keys_from_data(problem) if k in keys]
        for key in found or [k for k in _keys_from_text(problem, values, roles) if k in keys]:
            if problem not in out.get(key, []):
                out.setdefault(key, []).append(problem)
    return out


def _keys_from_data(problem: str) -> list[str]:
    """The input keys of a problem's ``field`` and ``role`` attributes ([] for a plain string)."""
    field, role = getattr(problem, "field", None), getattr(problem, "role", None)
    return ([field] if field else []) + ([MAP_PREFIX + role] if role else [])


def _keys_from_text(problem: str, values: dict[str, Any], roles: list[str]) -> list[str]:
    """The keys of the names a plain-text problem quotes in backticks: a parameter (`learning_rate`,
    `column_mapping.text`), a role (`text`) or the column mapped to it, or the data path."""
    by_column = {str(values.get(MAP_PREFIX + r) or ""): MAP_PREFIX + r for r in roles}
    by_column.pop("", None)
    data_path = str(values.get("data_path") or "")
    found = []
    for token in re.findall(r"`([^`]+)`", problem):
        name = token.split(".")[0]
        if name == "column_mapping" and "." in token:
            name = MAP_PREFIX + token.split(".", 1)[1]
        elif token in roles:
            name = MAP_PREFIX + token
        elif token in by_column:
            name = by_column[token]
        elif data_path and (token == data_path or token == Path(data_path).name):
            name = "data_path"
        found.append(name)
    return found


def marks(
    keys: list[str] | dict[str, Any], targets: dict[str, list[str]], help_texts: dict[str, str]
) -> dict[str, dict]:
    """Each key's mark: its problems in place of its help, in red (``tp-invalid``), or its own help back."""
    out = {}
    for key in keys:
        problems = targets.get(key)
        if problems:
            out[key] = {"info": " ".join(f"⚠ {form_words(p)}" for p in problems), "elem_classes": ["tp-invalid"]}
        else:
            out[key] = {"info": help_texts.get(key) or None, "elem_classes": []}
    return out


# --- config, start, load ----------------------------------------------------------------------


def make_config(ctx: Context, task: Task, values: dict[str, Any]) -> tuple[str, str, Path]:
    """The YAML the CLI would run, the ``trainpad run`` command, and the file offered for download."""
    values = resolve_upload(ctx, values)
    params = validate_params(task.params, params_data(task, values))
    text = cfg.dump_config(task, params, str(values.get("run_name") or ""))
    path = ctx.exports_dir / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.yaml"
    path.write_text(text, encoding="utf-8")
    command = f"trainpad --data-dir {ctx.data_dir} run {path}"
    return text, command, path


def try_start(
    ctx: Context, task: Task, values: dict[str, Any], backend: str = "local"
) -> tuple[str, list[str], list[str]]:
    """Check once and queue: (run id, or '' when refused; parameter problems; data problems).
    ``values`` has its upload resolved already (:func:`resolve_upload`). On a shared instance the path policy
    comes first, as in Check: no file is read that the policy refuses."""
    if refused := ctx.policy_problems(params_data(task, values)):
        return "", [], refused
    params, param_problems, data_problems = problems_of(task, values)
    if param_problems or data_problems:
        return "", param_problems, data_problems
    try:
        return queue_run(ctx, task, params, values, backend), [], []
    except UserError as e:  # refused when queueing (e.g. by the backend)
        return "", e.problems, []


def start(ctx: Context, task: Task, values: dict[str, Any], backend: str = "local") -> str:
    """Validate, check the data and queue the run; UserError (nothing queued) listing every problem."""
    run_id, param_problems, data_problems = try_start(ctx, task, resolve_upload(ctx, values), backend)
    if not run_id:
        raise UserError(param_problems + data_problems)
    return run_id


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
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"`{Path(path).name}` could not be read as UTF-8 text ({type(e).__name__}).") from None
    doc = cfg.load_config_text(text, Path(path).name)  # size-bounded, no aliases; ${VAR} never expanded here
    if not isinstance(doc, dict) or "task" not in doc:
        raise UserError(
            f"`{Path(path).name}` must be a mapping with `task:` and `params:` (Trainpad) "
            "or `task:`, `base_model:`, `data:` (AutoTrain)."
        )
    task, params = cfg.from_dict(doc)
    name = doc.get("name") or doc.get("project_name") or ""
    return {"task": task.name, "params": params.model_dump(mode="json"), "name": str(name), "nonce": time.time()}


# --- data preview and filling the form --------------------------------------------------------


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


def mapping_choices(roles: list[str] | dict[str, Any], matched: dict[str, str], columns: list[str]) -> dict[str, dict]:
    """``map__<role>`` -> the role dropdown's choices and value (a typed column not in the data stays)."""
    out = {}
    for role in roles:
        value = matched.get(role, "")
        choices = [NONE_CHOICE] + [(c, c) for c in columns]
        if value and value not in columns:
            choices.append((value, value))
        out[MAP_PREFIX + role] = {"choices": choices, "value": value}
    return out


def fill_values(task: Task, request: dict[str, Any], keys: list[str], roles: list[str]) -> dict[str, Any]:
    """A config request (:func:`load_request`) as values for the tab's inputs ``keys``, the role dropdowns
    (``map__<role>``: choices and value) and the preview (``preview``: rows, ``data_msg``: its note)."""
    params = dict(request["params"])
    params.pop("resume_from", None)
    fields = task.params.model_fields
    given = form_values.params_to_values(task.params, params)
    defaults = {k: form_values.to_ui(fields[k], fields[k].default) for k in keys if k in fields}
    mapping = params.get("column_mapping") or {}
    data_path = params.get("data_path", "")
    extra = {k: params.get(k, fields[k].default) for k in DATA_FIELDS if k in keys}
    df, note, matched, columns = preview_data(task, data_path, extra, mapping)
    matched = {**matched, **{r: c for r, c in mapping.items() if r in roles}}
    return {
        **{k: given.get(k, defaults[k]) for k in keys if k in fields and k not in SPECIAL_FIELDS},
        **{k: given[k] for k in extra if k in given},
        "base_model": params.get("base_model") or None,
        "data_path": data_path,
        "run_name": request.get("name", ""),
        **mapping_choices(roles, matched, columns),
        "preview": df,
        "data_msg": note,
    }
