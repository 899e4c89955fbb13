"""Sweeps: one base config, a search space over its fields, a strategy (grid, random, Optuna's TPE), a trial count and
an optional wall-time budget. Each trial is an ordinary run in the queue (same lifecycle, logs, Stop, Resume),
grouped by ``runs.sweep_id`` with its searched values in ``runs.trial``.

The supervisor drives sweeps at each tick (:meth:`Sweeps.tick`): it keeps at most ``parallel`` trials queued or
running (the queue's concurrency limit and device placement, or the Ray backend's cluster, decide where they run),
asks the strategy for the next values from the trials that ended, prunes a trial whose key metric is behind at an
evaluation (Optuna's median pruner fed by the ingested evaluation metrics; the trial is stopped through the normal
Stop, so it checkpoints, and is recorded ``pruned``) and records the sweep's end and best trial. Nothing here runs
in the worker; the sweep's state lives in SQLite, so whichever supervisor looks next (the process that started the
sweep, or the app once that process is gone) carries it on.

A search space is a list of :class:`Dim`, written ``NAME=SPEC``: ``a,b,c`` (choices), ``low:high`` (uniform) or
``log:low:high`` (log-uniform); :func:`check_space` refuses, before anything is queued, an unknown field, a value or
range the field does not allow, and a grid larger than the trial count — each naming the field.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import statistics
import time
import typing
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel

from engine.errors import Problem, UserError
from engine.params import SECRET_FIELDS, field_hints, format_validation_error, public_dict
from engine.run.store import ACTIVE
from engine.task import Task, get_task

STRATEGIES = ("grid", "random", "tpe")
PRUNERS = ("none", "median")
NOT_SEARCHABLE = {*SECRET_FIELDS, "data_path", "valid_path", "column_mapping", "resume_from", "push_to_hub"}
PRUNE_STARTUP = 1  # trials that must have ended before the median pruner judges another one
_SECRETS: dict[str, dict[str, str]] = {}  # a sweep's HF token, only in the memory of the process that started it


@dataclass(frozen=True)
class Dim:
    """One searched field: ``kind`` is ``choice`` (``choices``), ``uniform`` or ``log`` (``low`` .. ``high``)."""

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def spec(self) -> str:
        if self.kind == "choice":
            return ",".join(str(c) for c in self.choices)
        return f"{'log:' if self.kind == 'log' else ''}{self.low:g}:{self.high:g}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "choices": list(self.choices)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dim:
        return cls(
            data["name"], data["kind"], tuple(data.get("choices") or ()), data.get("low", 0), data.get("high", 0)
        )


# --- parsing and checking a search space ---------------------------------------------------------------------------


def parse_param(text: str) -> Dim:
    """``NAME=SPEC`` (as ``--param`` takes it) as a :class:`Dim`; UserError naming the field when SPEC is malformed."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise UserError(f"--param {text!r}: write NAME=SPEC, e.g. learning_rate=log:1e-5:1e-3 or lora_r=8,16,32.")
    return parse_spec(name.strip(), spec.strip())


def parse_spec(name: str, spec: str) -> Dim:
    """``a,b,c`` (choices), ``low:high`` (uniform), ``log:low:high`` (log-uniform)."""
    parts = spec.split(":")
    if len(parts) == 1 or "," in spec:
        return Dim(name, "choice", tuple(_scalar(p.strip()) for p in spec.split(",") if p.strip()))
    kind = "log" if parts[0] == "log" else "uniform"
    bounds = parts[1:] if kind == "log" else parts
    try:
        if len(bounds) != 2:
            raise ValueError
        low, high = (float(b) for b in bounds)
    except ValueError:
        raise UserError(
            Problem(
                f"Sweep: `{name}` = {spec!r} is not a search range. Write a,b,c (choices), low:high (uniform) "
                "or log:low:high (log-uniform).",
                field=name,
            )
        ) from None
    return Dim(name, kind, (), low, high)


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def check_space(task: Task, base: BaseModel, dims: list[Dim], strategy: str, trials: int) -> tuple[list[Dim], int]:
    """The space with each value as the field takes it, and the trial count (a grid's size when ``trials`` is 0).
    Raises UserError listing every problem, each naming its field."""
    problems: list[Problem] = []
    if strategy not in STRATEGIES:
        problems.append(Problem(f"Sweep strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}."))
    if not dims:
        problems.append(Problem("A sweep needs at least one field to search (e.g. learning_rate=log:1e-5:1e-3)."))
    seen: set[str] = set()
    checked = []
    for dim in dims:
        if dim.name in seen:
            problems.append(Problem(f"Sweep: `{dim.name}` is given twice; give each field once.", field=dim.name))
            continue
        seen.add(dim.name)
        found, dim = _check_dim(task, base, dim)
        problems += found
        checked.append(dim)
    if strategy == "grid":
        trials = _check_grid(checked, trials, problems)
    elif trials < 1:
        problems.append(
            Problem(f"A {strategy} sweep needs a trial count of at least 1 (got {trials}).", field="trials")
        )
    if problems:
        raise UserError(problems)
    return checked, trials


def searchable(task: Task) -> list[str]:
    """The fields of a task's form a sweep may search."""
    model = task.params
    return [n for n in model.model_fields if n not in NOT_SEARCHABLE and not field_hints(model, n).get("hidden")]


def _check_dim(task: Task, base: BaseModel, dim: Dim) -> tuple[list[Problem], Dim]:
    fields = searchable(task)
    if dim.name not in fields:
        close = difflib.get_close_matches(dim.name, fields, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else f" Fields you can search: {', '.join(fields)}."
        return [
            Problem(f"Sweep: `{dim.name}` is not a field of {task.name} you can search.{hint}", field=dim.name)
        ], dim
    if dim.kind == "choice":
        return _check_choices(task, base, dim)
    return _check_range(task, base, dim), dim


def _check_choices(task: Task, base: BaseModel, dim: Dim) -> tuple[list[Problem], Dim]:
    if not dim.choices:
        return [Problem(f"Sweep: `{dim.name}` has no values; give a,b,c.", field=dim.name)], dim
    problems, values = [], []
    for value in dim.choices:
        ok, why = _accepts(task, base, dim.name, value)
        if ok is None:
            problems.append(Problem(f"Sweep: `{dim.name}` cannot be {value!r}: {why}", field=dim.name))
        else:
            values.append(ok)
    if len(set(map(repr, values))) < len(values):
        problems.append(Problem(f"Sweep: `{dim.name}` lists a value twice.", field=dim.name))
    return problems, Dim(dim.name, "choice", tuple(values))


def _check_range(task: Task, base: BaseModel, dim: Dim) -> list[Problem]:
    kind = _number_kind(task, dim.name)
    where = f"Sweep range of `{dim.name}` ({dim.spec})"
    if kind is None:
        return [Problem(f"{where}: `{dim.name}` is not a number; give its values as a,b,c.", field=dim.name)]
    if not dim.low < dim.high:
        return [Problem(f"{where}: the low end must be below the high end.", field=dim.name)]
    if dim.kind == "log" and dim.low <= 0:
        return [Problem(f"{where}: a log range must start above 0.", field=dim.name)]
    if kind is int and not (float(dim.low).is_integer() and float(dim.high).is_integer()):
        return [Problem(f"{where}: `{dim.name}` takes whole numbers; give whole ends.", field=dim.name)]
    problems = []
    for end in (dim.low, dim.high):
        ok, why = _accepts(task, base, dim.name, kind(end))
        if ok is None:
            problems.append(Problem(f"{where} is outside the field's bounds: {why}", field=dim.name))
    return problems


def _number_kind(task: Task, name: str) -> type | None:
    annotation = task.params.model_fields[name].annotation
    if annotation in (int, float):
        return annotation
    return None


def _accepts(task: Task, base: BaseModel, name: str, value: Any) -> tuple[Any, str]:
    """(the value as the field holds it, "") when the config with ``name = value`` validates; (None, why) if not."""
    data = {**base.model_dump(), name: value}
    try:
        return getattr(task.params.model_validate(data), name), ""
    except Exception as err:  # pydantic's ValidationError: its sentence about this field
        found = format_validation_error(err, task.params, data) if hasattr(err, "errors") else [str(err)]
        mine = [str(p) for p in found if getattr(p, "field", None) == name] or [str(p) for p in found]
        return None, " ".join(mine)


def _check_grid(dims: list[Dim], trials: int, problems: list[Problem]) -> int:
    ranges = [d for d in dims if d.kind != "choice"]
    for d in ranges:
        problems.append(
            Problem(
                f"Sweep: a grid needs a list of values for `{d.name}` (e.g. a,b,c), not the range {d.spec}; "
                "ranges go with the random or tpe strategy.",
                field=d.name,
            )
        )
    if ranges or not dims:
        return trials
    size = math.prod(len(d.choices) for d in dims)
    if trials and size > trials:
        sizes = " × ".join(f"{d.name} {len(d.choices)}" for d in dims)
        problems.append(
            Problem(
                f"Sweep: the grid has {size} combinations ({sizes}), more than the {trials} trials asked for. "
                f"Ask for {size} trials, or give `{dims[0].name}` fewer values.",
                field=dims[0].name,
            )
        )
    return trials or size


# --- strategies ----------------------------------------------------------------------------------------------------


def grid_points(dims: list[Dim]) -> list[dict[str, Any]]:
    """Every combination of a grid, in order (the first field changes slowest)."""
    return [
        dict(zip([d.name for d in dims], combo, strict=True)) for combo in itertools.product(*(d.choices for d in dims))
    ]


def suggest(sweep: dict[str, Any], index: int, ended: list[dict[str, Any]]) -> dict[str, Any]:
    """The searched values of trial ``index`` (0-based): the grid's next point, or Optuna's next suggestion from the
    trials that ended (``ended``: rows with ``trial`` and ``key_metric``). Seeded by the base config's seed and the
    index, so a sweep asks the same values whichever process drives it."""
    dims = [Dim.from_json(d) for d in sweep["space"]]
    if sweep["strategy"] == "grid":
        return grid_points(dims)[index]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = int(sweep["base"].get("seed") or 0) * 1000 + index
    if sweep["strategy"] == "tpe":
        sampler: Any = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, max(1, sweep["trials"] // 3)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    direction = "maximize" if sweep.get("greater_is_better") else "minimize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    spaces = {d.name: _distribution(d, sweep) for d in dims}
    for row in ended:
        if row.get("key_metric") is not None and row.get("trial"):
            values = {k: v for k, v in row["trial"].items() if k in spaces}
            if len(values) == len(spaces):
                trial = optuna.trial.create_trial(params=values, distributions=spaces, value=row["key_metric"])
                study.add_trial(trial)
    return dict(study.ask(spaces).params)


def _distribution(dim: Dim, sweep: dict[str, Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dim.kind == "choice":
        return CategoricalDistribution(list(dim.choices))
    task = get_task(sweep["task"])
    if _number_kind(task, dim.name) is int:
        return IntDistribution(int(dim.low), int(dim.high), log=dim.kind == "log")
    return FloatDistribution(dim.low, dim.high, log=dim.kind == "log")


def should_prune(sweep: dict[str, Any], curve: list[float], finished: list[list[float]]) -> bool:
    """Optuna's median pruner: the trial's key metric at its latest evaluation is behind the median of the finished
    trials' values at that same evaluation (evaluations counted 1, 2, … so trials of any batch size line up)."""
    if sweep.get("pruner") != "median" or not curve or len(finished) < PRUNE_STARTUP:
        return False
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if sweep.get("greater_is_better") else "minimize")
    for values in finished:
        if values:
            steps = dict(enumerate(values, 1))
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=values[-1], intermediate_values=steps))
    trial = create_trial(state=TrialState.RUNNING, intermediate_values=dict(enumerate(curve, 1)))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP, n_warmup_steps=0)
    return bool(pruner.prune(study, trial))


# --- the sweep's life, driven by the supervisor ------------------------------------------------------------------


@dataclass
class SweepRequest:
    """What a sweep is asked with (the studio's Sweep dialog, ``trainpad sweep``)."""

    dims: list[Dim]
    strategy: str = "random"
    trials: int = 0
    parallel: int = 1
    budget_s: float = 0.0  # wall time after which no new trial starts (0: none)
    pruner: str = "none"
    name: str = ""


class Sweeps:
    """Sweeps of one supervisor's data folder: create, drive at each tick, stop."""

    def __init__(self, supervisor: Any):
        self.sup = supervisor
        self.store = supervisor.store

    def create(
        self,
        task: Task | str,
        params: BaseModel,
        request: SweepRequest,
        secrets: dict[str, str] | None = None,
        backend: str = "local",
        user: str = "",
    ) -> str:
        """Check the space, record the sweep and queue its first trials (the first one checked like a Start).
        Raises UserError, leaving nothing queued."""
        from engine.data.tables import absolute_paths

        task = get_task(task) if isinstance(task, str) else task
        params = absolute_paths(params)
        dims, trials = check_space(task, params, request.dims, request.strategy, request.trials)
        problems = []
        if request.pruner not in PRUNERS:
            problems.append(Problem(f"Pruner {request.pruner!r} is unknown; use one of {', '.join(PRUNERS)}."))
        if request.parallel < 1:
            problems.append(Problem(f"parallel is {request.parallel}; run at least 1 trial at once.", field="parallel"))
        if problems:
            raise UserError(problems)
        sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        row = {
            "id": sweep_id,
            "name": request.name or f"{task.name} sweep {sweep_id[-6:]}",
            "task": task.name,
            "user": user,
            "backend": backend,
            "strategy": request.strategy,
            "pruner": request.pruner,
            "space": json.dumps([d.to_json() for d in dims]),
            "base": json.dumps(public_dict(params)),
            "trials": trials,
            "parallel": min(request.parallel, trials),
            "budget_s": float(request.budget_s or 0),
            "key_metric_name": task.key_metric,
            "greater_is_better": int(task.greater_is_better),
            "owner_pid": self.sup.me[0],
            "owner_started": self.sup.me[1],
            "needs_token": int(bool(secrets)),
        }
        self.store.insert_sweep(row)
        if secrets:
            _SECRETS[sweep_id] = dict(secrets)
        try:
            self._fill(self.store.get_sweep(sweep_id), self.store.sweep_runs(sweep_id), check=True)
        except UserError:
            self.store.delete_sweep(sweep_id)
            _SECRETS.pop(sweep_id, None)
            raise
        return sweep_id

    def stop(self, sweep_id: str) -> None:
        """Stop a sweep: its queued trials are cancelled, its running ones stopped (they checkpoint); no new one."""
        sweep = self.get(sweep_id)
        if sweep["status"] == "running":
            self.store.update_sweep(sweep_id, stop_requested=1)
        for run in self.store.sweep_runs(sweep_id):
            if run["status"] in ACTIVE:
                self.sup.stop(run["id"])
        self.tick_one(self.get(sweep_id))

    def get(self, sweep_id: str) -> dict[str, Any]:
        sweep = self.store.get_sweep(sweep_id)
        if sweep is None:
            raise UserError(f"No sweep with id `{sweep_id}`. `trainpad runs` shows each trial's sweep.")
        return sweep

    def tick(self) -> None:
        """Drive every running sweep this process may drive (see the module docstring)."""
        for sweep in self.store.list_sweeps("running"):
            try:
                self.tick_one(sweep)
            except UserError as e:  # a trial could not be queued (e.g. the disk is full): the sweep ends
                self._end(sweep, self.store.sweep_runs(sweep["id"]), "failed", str(e))

    def tick_one(self, sweep: dict[str, Any]) -> None:
        if sweep["status"] != "running" or not self._drives(sweep):
            return
        runs = self.store.sweep_runs(sweep["id"])
        active = [r for r in runs if r["status"] in ACTIVE]
        if sweep.get("stop_requested"):
            for run in active:
                self.sup.stop(run["id"])
            runs = self.store.sweep_runs(sweep["id"])
            if not [r for r in runs if r["status"] in ACTIVE]:
                self._end(sweep, runs, "stopped")
            return
        self._prune(sweep, runs)
        runs = self._fill(sweep, runs)
        if not [r for r in runs if r["status"] in ACTIVE] and not self._more_due(self.store.get_sweep(sweep["id"])):
            self._end(sweep, runs)

    def _drives(self, sweep: dict[str, Any]) -> bool:
        """The process that started the sweep drives it; the app adopts it once that process is gone (unless it
        needs that process's token: then it ends)."""
        if self.sup._is_me(sweep) or self.sup._owner_alive(sweep):
            return self.sup._is_me(sweep)
        if sweep.get("needs_token") and sweep["id"] not in _SECRETS:
            error = "The process that started this sweep (and held its Hugging Face token) ended; start it again."
            self._end(sweep, self.store.sweep_runs(sweep["id"]), "failed", error)
            return False
        return bool(self.sup.manage_all)

    def _more_due(self, sweep: dict[str, Any]) -> bool:
        if sweep.get("stop_requested") or sweep["submitted"] >= sweep["trials"]:
            return False
        spent = sweep.get("budget_s") and time.time() - sweep["created_at"] > sweep["budget_s"]
        return not spent or not sweep["submitted"]  # the budget never leaves a sweep without a trial

    def _fill(self, sweep: dict[str, Any], runs: list[dict[str, Any]], check: bool = False) -> list[dict[str, Any]]:
        """Queue trials while fewer than ``parallel`` are active, more are due and the user's queue cap has room."""
        while self._more_due(sweep) and len([r for r in runs if r["status"] in ACTIVE]) < sweep["parallel"]:
            if not self._user_has_room(sweep["user"] or ""):
                break
            index = sweep["submitted"]
            if not self.store.update_sweep_if(sweep["id"], "submitted", index, {"submitted": index + 1}):
                break  # another supervisor queued this trial
            try:
                self._submit_trial(sweep, index, runs, check)
            except UserError:
                self.store.update_sweep(sweep["id"], submitted=index)
                raise
            check = False
            sweep = self.store.get_sweep(sweep["id"])
            runs = self.store.sweep_runs(sweep["id"])
        return runs

    def _submit_trial(self, sweep: dict[str, Any], index: int, runs: list[dict[str, Any]], check: bool) -> str:
        ended = [r for r in runs if r["status"] not in ACTIVE]
        values = suggest(sweep, index, ended)
        task = get_task(sweep["task"])
        params = task.params.model_validate({**sweep["base"], **values})
        return self.sup.submit(
            task,
            params,
            name=f"{sweep['name']} #{index + 1}",
            secrets=_SECRETS.get(sweep["id"]),
            check=check,
            backend=sweep.get("backend") or "local",
            user=sweep.get("user") or "",
            extra={"sweep_id": sweep["id"], "trial": json.dumps(values)},
        )

    def _user_has_room(self, user: str) -> bool:
        cap = self.sup.policy.max_queued_per_user
        if not cap:
            return True
        return len([r for r in self.store.runs_with_status(*ACTIVE) if (r.get("user") or "") == user]) < cap

    def _prune(self, sweep: dict[str, Any], runs: list[dict[str, Any]]) -> None:
        if sweep.get("pruner") != "median":
            return
        key = sweep["key_metric_name"]
        finished = [curve(self.store, r["id"], key) for r in runs if r["status"] == "succeeded"]
        for run in runs:
            if run["status"] == "running" and not run.get("prune_requested") and not run.get("stop_requested"):
                if should_prune(sweep, curve(self.store, run["id"], key), finished):
                    self.store.update_run(run["id"], prune_requested=1)
                    self.sup.stop(run["id"])

    def _end(self, sweep: dict[str, Any], runs: list[dict[str, Any]], status: str = "", error: str = "") -> None:
        best = best_trial(sweep, runs)
        if not status:
            status = "succeeded" if best else "failed"
            if not best:
                error = error or "No trial succeeded: see the trials' errors on the Runs page."
        fields = {"status": status, "ended_at": time.time(), "best_run_id": best["id"] if best else None}
        if error:
            fields["error"] = error
        self.store.update_sweep_if(sweep["id"], "status", "running", fields)
        _SECRETS.pop(sweep["id"], None)


def curve(store: Any, run_id: str, key: str) -> list[float]:
    """A run's key metric at each of its evaluations, in order."""
    return [m["value"] for m in store.metrics(run_id, [key])]


def best_trial(sweep: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The succeeded trial with the best key metric (None when none succeeded)."""
    done = [r for r in runs if r["status"] == "succeeded" and r.get("key_metric") is not None]
    if not done:
        return None
    pick = max if sweep.get("greater_is_better") else min
    return pick(done, key=lambda r: r["key_metric"])


def summary(store: Any, sweep_id: str) -> dict[str, Any]:
    """A sweep as plain data: ``sweep_id``, status, ``best_run_id``, ``best_params``, ``best_metric``, ``trials``
    (each: run id, status, values, key metric — the last evaluation's for a pruned or stopped trial)."""
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise UserError(f"No sweep with id `{sweep_id}`.")
    runs = store.sweep_runs(sweep_id)
    best = best_trial(sweep, runs)
    trials = []
    for r in runs:
        metric = r.get("key_metric")
        if metric is None and (values := curve(store, r["id"], sweep["key_metric_name"])):
            metric = values[-1]
        trials.append({"run_id": r["id"], "status": r["status"], "params": r.get("trial") or {}, "metric": metric})
    return {
        "sweep_id": sweep_id,
        "name": sweep["name"],
        "task": sweep["task"],
        "status": sweep["status"],
        "strategy": sweep["strategy"],
        "key_metric": sweep["key_metric_name"],
        "greater_is_better": bool(sweep["greater_is_better"]),
        "best_run_id": best["id"] if best else None,
        "best_params": (best.get("trial") or {}) if best else {},
        "best_metric": best["key_metric"] if best else None,
        "error": sweep.get("error") or "",
        "trials": trials,
    }


# --- presets and expected cost -------------------------------------------------------------------------------------

# A sensible space by what the form holds (no task names): LoRA adapters, LLM full fine-tunes, encoders, tabular.
LORA_PRESET = {"learning_rate": "log:5e-5:5e-4", "lora_r": "8,16,32", "epochs": "1,2,3"}
LLM_PRESET = {"learning_rate": "log:5e-6:1e-4", "epochs": "1,2,3"}
ENCODER_PRESET = {"learning_rate": "log:1e-5:3e-4", "epochs": "2,3,5", "batch_size": "8,16,32", "warmup_ratio": "0:0.1"}
TABULAR_PRESET = {"model": "auto,linear"}


def preset(task: Task, params: BaseModel) -> tuple[list[Dim], SweepRequest]:
    """A one-click sweep for this form: a space that fits the task's family and settings, TPE, 8 trials, 2 at once,
    the median pruner (tasks without a base model keep their own search: a small grid over ``model``)."""
    if task.model_kind is None:
        space = TABULAR_PRESET
    elif getattr(params, "use_lora", False):
        space = LORA_PRESET
    elif task.family == "LLM":
        space = LLM_PRESET
    else:
        space = ENCODER_PRESET
    fields = set(searchable(task))
    dims = [parse_spec(name, spec) for name, spec in space.items() if name in fields]
    checked: list[Dim] = []
    for dim in dims:
        if dim.kind == "choice":
            dim = Dim(
                dim.name, "choice", tuple(v for v in dim.choices if _accepts(task, params, dim.name, v)[0] is not None)
            )
        checked.append(dim)
    if all(d.kind == "choice" for d in checked):
        size = math.prod(len(d.choices) for d in checked) if checked else 0
        return checked, SweepRequest(checked, "grid", size, 2, pruner="median")
    return checked, SweepRequest(checked, "tpe", 8, 2, pruner="median")


def expected_cost(store: Any, task: Task, params: BaseModel, request: SweepRequest, concurrency: int = 1) -> str:
    """Markdown: trials × the estimated run time (the median of this task's finished runs on the same base model
    here), and the memory check of the heaviest trial."""
    from engine.preflight.memory import memory_check

    trials = request.trials or (math.prod(len(d.choices) for d in request.dims) if request.dims else 0)
    lines = [f"**{trials} trials**, {request.parallel} at once ({request.strategy})."]
    minutes = typical_minutes(store, task.name, str(getattr(params, "base_model", "") or ""))
    if minutes is None:
        lines.append("Run time: no finished run of this task and model here yet; the first trial will tell.")
    else:
        wall = trials * minutes / max(1, min(request.parallel, concurrency))
        lines.append(f"Run time: about {minutes:.1f} min per trial (past runs), so about {wall:.0f} min in all.")
    heaviest = _heaviest(task, params, request.dims)
    if memory := memory_check(task, heaviest):
        lines.append(f"Heaviest trial: {memory}")
    return "\n\n".join(lines)


def typical_minutes(store: Any, task: str, base_model: str) -> float | None:
    rows = [
        r for r in store.list_runs(status="succeeded", task=task, limit=50) if (r.get("base_model") or "") == base_model
    ]
    times = [(r["ended_at"] - r["started_at"]) / 60 for r in rows if r.get("ended_at") and r.get("started_at")]
    return statistics.median(times) if times else None


def _heaviest(task: Task, params: BaseModel, dims: list[Dim]) -> BaseModel:
    """The config with each memory-relevant searched field at its largest value."""
    heavy = {}
    for dim in dims:
        if dim.name in ("batch_size", "lora_r", "max_length", "max_target_length", "image_size"):
            top = max(dim.choices) if dim.kind == "choice" else dim.high
            heavy[dim.name] = typing.cast(Any, top)
    try:
        return task.params.model_validate({**params.model_dump(), **heavy})
    except Exception:
        return params
