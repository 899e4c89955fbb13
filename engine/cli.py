"""The ``trainpad`` command line: run, validate, runs, stop, resume, predict, app."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import UserError


def _supervisor(args: argparse.Namespace, **kw: Any) -> Any:
    from engine.run.supervisor import Supervisor

    return Supervisor(args.data_dir, **kw)


def _progress(row: dict[str, Any], last: dict[str, Any]) -> str:
    step, total = row.get("step") or 0, row.get("max_steps") or 0
    bar = ""
    if total:
        done = int(30 * step / total)
        bar = f"[{'#' * done}{'.' * (30 - done)}] {step}/{total}"
    return f"\r{row['status']:<10} {bar} {last}"


def cmd_run(args: argparse.Namespace) -> int:
    from engine.config import config_backend, load_config

    task, params = load_config(args.config, args.overrides)
    backend = args.backend or config_backend(args.config)
    sup = _supervisor(args, manage_all=False, grace_period=args.grace)
    run_id = sup.submit(task, params, name=args.name or "", secrets=_token_env(), backend=backend)
    print(f"run {run_id} queued: {sup.runs_dir / run_id}", flush=True)
    return _report(_follow_or_stop(sup, run_id))


def _follow_or_stop(sup: Any, run_id: str) -> dict[str, Any]:
    """Follow the run to its end; Ctrl-C (or SIGTERM) stops it (checkpoint) and waits for that, once."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a killed CLI stops its run like Ctrl-C
    try:
        return _follow(sup, run_id)
    except KeyboardInterrupt:
        print("\nstopping (the run saves a checkpoint)... press Ctrl-C again to leave it stopping", flush=True)
    sup.stop(run_id)
    try:
        return sup.wait(run_id, timeout=sup.grace_period + 30, drive=True)
    except (KeyboardInterrupt, TimeoutError):
        print(f"\nrun {run_id} is still stopping; `trainpad runs` shows how it ended.", flush=True)
        return sup.store.get_run(run_id)


def _follow(sup: Any, run_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    tty = sys.stdout.isatty()
    said = ""
    while True:
        sup.tick()
        row = sup.store.get_run(run_id)
        if row["status"] == "queued":
            said = _say_queued(sup, run_id, said)
        metrics = sup.store.metrics(run_id, ["loss", "eval_loss"])
        if metrics:
            last = {m["name"]: round(m["value"], 4) for m in metrics[-2:]}
        if tty and row["status"] == "running":
            print(_progress(row, last), end="", flush=True)
        if row["status"] not in ("queued", "running"):
            return row
        time.sleep(0.2)


def _say_queued(sup: Any, run_id: str, said: str) -> str:
    """Print why the run waits, when that changes."""
    running, ahead = sup.queue_position(run_id)
    if not running and not ahead:
        return said
    text = (
        f"queued behind {running + ahead} run(s): {running} training, {ahead} queued ahead "
        f"(at most {sup.concurrency} at once in {sup.data_dir}; set TRAINPAD_CONCURRENCY or the app's --concurrency)"
    )
    if text != said:
        print(text, flush=True)
    return text


def _report(row: dict[str, Any]) -> int:
    print(
        f"run {row['id']} {row['status']}"
        + (f" ({row['key_metric_name']}={row['key_metric']:.4g})" if row.get("key_metric") is not None else "")
    )
    if row["status"] == "succeeded":
        print(f"model: {Path(row['run_dir']) / 'model'}")
        return 0
    if row.get("error"):
        print(f"error: {row['error']}", file=sys.stderr)
    return 143 if row["status"] == "stopped" else 1


def _token_env() -> dict[str, str]:
    import os

    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return {"HF_TOKEN": token} if token else {}


def cmd_validate(args: argparse.Namespace) -> int:
    import os

    from engine.config import dump_config, load_config
    from engine.data.splits import check_data, check_note
    from engine.data.tables import disk_problem
    from engine.preflight.models import check_params
    from engine.run.procs import data_dir_from_env

    task, params = load_config(args.config, args.overrides)
    data_dir = data_dir_from_env(args.data_dir)
    problems = check_params(task, params, os.environ.get("HF_TOKEN")) + check_data(task, params)
    problems += disk_problem(data_dir if data_dir.exists() else Path.cwd())
    if problems:
        raise UserError(problems)
    print(dump_config(task, params), end="")
    if task.data_summary is not None:
        print("\n".join(f"# {line}" for line in task.data_summary(task, params).splitlines()))
    from engine.preflight.memory import memory_check

    if memory := memory_check(task, params):
        print(f"# {memory}")
    if note := check_note(params):
        print(f"# {note}")
    print(f"# OK: {task.name} config is valid and the data passed the checks.", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    sup = _supervisor(args, manage_all=False)  # reconciles the store with the live processes first
    rows = sup.store.list_runs(status=args.status, task=args.task)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'id':<24} {'task':<22} {'status':<11} {'step':>9} {'metric':>12}  name")
    for r in rows:
        metric = f"{r['key_metric']:.4g}" if r.get("key_metric") is not None else "-"
        step = f"{r.get('step') or 0}/{r.get('max_steps') or '?'}"
        sweep = f"  (sweep {r['sweep_id']})" if r.get("sweep_id") else ""
        print(f"{r['id']:<24} {r['task']:<22} {r['status']:<11} {step:>9} {metric:>12}  {r['name']}{sweep}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a run, and see it through: SIGKILL after the grace period if the worker does not end."""
    sup = _supervisor(args, manage_all=False, grace_period=args.grace)
    if args.run_id.startswith("sweep-"):  # a sweep: its queued trials cancelled, its running ones stopped
        sup.stop_sweep(args.run_id)
        print(f"sweep {args.run_id} {sup.store.get_sweep(args.run_id)['status']} (no new trial starts)")
        return 0
    sup.stop(args.run_id)
    print(f"stop requested for {args.run_id}", flush=True)
    try:
        row = sup.wait(args.run_id, timeout=args.grace + 15, drive=True)
    except TimeoutError:
        print(f"run {args.run_id} has not ended yet; `trainpad runs` shows how it ends.", file=sys.stderr)
        return 1
    print(f"run {args.run_id} {row['status']}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    sup = _supervisor(args, manage_all=False, grace_period=args.grace)
    run_id = sup.resume(args.run_id, secrets=_token_env())
    print(f"run {run_id} resumes {args.run_id}", flush=True)
    return _report(_follow_or_stop(sup, run_id))


def cmd_predict(args: argparse.Namespace) -> int:
    from engine.run.predict import predict_run

    inputs: Any = args.input
    try:
        inputs = json.loads(args.input)
    except json.JSONDecodeError:
        pass
    out = predict_run(args.run_id, inputs, data_dir=args.data_dir)
    print(out if isinstance(out, str) else json.dumps(out, indent=2, default=str))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from engine.run.merge import merge_in_subprocess
    from engine.run.predict import run_dir_of

    print(f"merged model: {merge_in_subprocess(run_dir_of(args.run_id, args.data_dir))}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a run's model or a base model on a test file (an ``eval`` job); print the metrics, or one JSON
    object with --json."""
    from engine.eval.submit import EvalRequest, submit_eval

    mapping = dict(m.split("=", 1) for m in args.map if "=" in m)
    request = EvalRequest(args.model, args.data, args.task, mapping, args.batch_size, args.max_new_tokens)
    request.judge, request.against, request.judge_model = args.judge, args.against, args.judge_model
    request.benchmark = args.benchmark
    sup = _supervisor(args, manage_all=False)
    job_id = submit_eval(sup, request)
    try:
        job = sup.wait_job(job_id, timeout=args.timeout)
    except (KeyboardInterrupt, TimeoutError):
        sup.stop_job(job_id)
        raise UserError(f"evaluation {job_id} stopped before it finished (its log: {job_id}/job.log)") from None
    if job["status"] != "succeeded":
        raise UserError(job.get("error") or f"evaluation {job['status']}")
    result = {k: v for k, v in job["result"].items() if k != "evaluation"} | {"evaluation_id": job_id}
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    print(f"{result['n_examples']} examples; predictions (worst first): {result['predictions_path']}")
    for name, value in result["metrics"].items():
        print(f"{name:<24} {value:.4g}" if isinstance(value, float) else f"{name:<24} {value}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a finished run's model (a job in its own process); print the file, or a JSON object with --json."""
    from engine.ship.export import check_request

    sup = _supervisor(args, manage_all=False)
    run = sup.store.get_run(args.run_id) or {}
    check_request(run.get("task") or "", args.format, args.quant)
    job_id = sup.submit_job("export", args.run_id, {"format": args.format, "quant": args.quant, "int8": args.int8})
    try:
        job = sup.wait_job(job_id, timeout=args.timeout)
    except (KeyboardInterrupt, TimeoutError):
        sup.stop_job(job_id)
        raise UserError(f"export {job_id} stopped before it finished (its log: {job_id}/job.log)") from None
    finally:
        sup.jobs.shutdown()
    if job["status"] != "succeeded":
        raise UserError(job.get("error") or f"export {job['status']}")
    result = job["result"]
    if args.push_to:  # uploaded from here, with this process's token: the job never holds it
        import os

        from engine.ship.export import push

        result["pushed_to"] = push(result, args.push_to, os.environ.get("HF_TOKEN", ""), private=not args.public)
    print(json.dumps(result, indent=2) if args.json else result["path"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a finished run on an OpenAI-compatible endpoint until Ctrl-C."""
    sup = _supervisor(args, manage_all=False)
    port = args.port or _free_port()
    job_args = {"port": port, "engine": "llama.cpp" if args.gguf else args.engine, "gguf": args.gguf}
    job_id = sup.submit_job("serve", args.run_id, job_args)
    try:
        job = sup.wait_job(job_id, timeout=args.timeout, until=_ready)
        if job["status"] != "running":
            raise UserError(job.get("error") or f"the server {job['status']}")
        from engine.ship.serve import describe

        print(describe(sup.store.get_job(job_id)), flush=True)
        print("serving; Ctrl-C stops the server", flush=True)
        sup.wait_job(job_id, timeout=10**9)
    except KeyboardInterrupt:
        print("\nstopping the server", flush=True)
    finally:
        sup.jobs.shutdown()
    return 0


def _ready(job: dict[str, Any]) -> bool:
    from engine.run.jobs import RESULT

    return (Path(job["job_dir"]) / RESULT).exists()


def _free_port() -> int:
    from engine.run.procs import free_port

    return free_port()


def app_command(args: argparse.Namespace) -> list[str]:
    """``python -m app`` with the command's flags: the studio runs as its own program (the engine never imports
    the app)."""
    data_dir = ["--data-dir", str(args.data_dir)] if args.data_dir and "--data-dir" not in args.app_args else []
    return [sys.executable, "-m", "app", *data_dir, *args.app_args]


def cmd_app(args: argparse.Namespace) -> int:
    import subprocess

    return subprocess.call(app_command(args))


def cmd_import(args: argparse.Namespace) -> int:
    from engine.config import command_to_yaml

    text = command_to_yaml(args.command)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: `trainpad run {args.output}` runs it", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    """``trainpad space create|update NAME``: the studio as a Hugging Face Space (the token from HF_TOKEN or the
    saved login, never from the command line)."""
    from engine.ship import space

    if args.action == "update":
        done = space.update_space(args.name, args.org)
    elif args.dry_run:
        print(space.dry_run(args.name, args.out, args.hardware, args.storage))
        return 0
    else:
        variables, secrets = space.named_values(args.var, args.secret)
        request = space.SpaceRequest(
            args.name, args.org, args.private, args.hardware, args.storage, args.admins, variables, secrets
        )
        done = space.create_space(request)
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    print(done.url)
    return 0


def _space_parser(sub: Any) -> None:
    sp = sub.add_parser("space", help="publish the studio as a Hugging Face Space (create, update)")
    actions = sp.add_subparsers(dest="action", required=True)
    c = actions.add_parser("create", help="create a Space running this studio and upload it (token: $HF_TOKEN)")
    u = actions.add_parser("update", help="push this version of the studio to an existing Space")
    for q in (c, u):
        q.add_argument("name", help="the Space's name (or ORG/NAME)")
        q.add_argument("--org", default="", help="create it under this organisation (default: the token's user)")
        q.set_defaults(fn=cmd_space)
    c.add_argument("--private", action="store_true", help="a private Space")
    c.add_argument("--hardware", default="", help="e.g. cpu-basic, t4-small, a10g-small (default: the Hub's)")
    c.add_argument("--storage", default="none", help="bucket: a storage bucket at /data keeps runs (default none)")
    c.add_argument("--admins", default="", help="users who see every run, comma-separated (default: you)")
    c.add_argument("--var", action="append", default=[], help="NAME=VALUE: a Space variable (repeat)")
    c.add_argument("--secret", action="append", default=[], help="NAME: a Space secret, its value from $NAME")
    c.add_argument("--dry-run", action="store_true", help="only write the Space's folder and print its path")
    c.add_argument("--out", default=".", help="where --dry-run writes the folder (default: here)")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Queue a sweep, follow it to its end (Ctrl-C stops it), print the best trial (or a JSON object)."""
    from engine.config import config_backend, load_config
    from engine.run.sweep import SweepRequest, parse_param, summary

    task, params = load_config(args.config, args.overrides)
    dims = [parse_param(p) for p in args.param]
    request = SweepRequest(dims, args.strategy, args.trials, args.parallel, args.budget, args.pruner, args.name)
    sup = _supervisor(args, manage_all=False, grace_period=args.grace)
    backend = args.backend or config_backend(args.config)
    sweep_id = sup.submit_sweep(task, params, request, secrets=_token_env(), backend=backend)
    print(f"sweep {sweep_id} queued ({sup.store.get_sweep(sweep_id)['trials']} trials)", file=sys.stderr, flush=True)
    _follow_sweep(sup, sweep_id)
    result = summary(sup.store, sweep_id)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_sweep(result)
    return 0 if result["status"] == "succeeded" else (143 if result["status"] == "stopped" else 1)


def _follow_sweep(sup: Any, sweep_id: str) -> None:
    """Tick until the sweep ends, saying each trial's end on stderr; Ctrl-C (or SIGTERM) stops the sweep once."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    said: dict[str, str] = {}
    stopping = False
    while True:
        try:
            sup.tick()
            for row in sup.store.sweep_runs(sweep_id):
                if said.get(row["id"]) != row["status"]:
                    said[row["id"]] = row["status"]
                    metric = f" {row['key_metric_name']}={row['key_metric']:.4g}" if row.get("key_metric") else ""
                    print(f"  {row['name']}: {row['status']} {row.get('trial')}{metric}", file=sys.stderr, flush=True)
            if sup.store.get_sweep(sweep_id)["status"] != "running":
                return
            time.sleep(0.2)
        except KeyboardInterrupt:
            if stopping:
                print(f"\nsweep {sweep_id} is still stopping; `trainpad runs` shows its trials.", file=sys.stderr)
                return
            stopping = True
            print("\nstopping the sweep (running trials save a checkpoint)...", file=sys.stderr, flush=True)
            sup.stop_sweep(sweep_id)


def _print_sweep(result: dict[str, Any]) -> None:
    print(f"sweep {result['sweep_id']} {result['status']}: {len(result['trials'])} trials")
    for t in result["trials"]:
        metric = f"{t['metric']:.4g}" if t["metric"] is not None else "-"
        print(f"  {t['run_id']:<24} {t['status']:<10} {result['key_metric']}={metric:<10} {t['params']}")
    if result["best_run_id"]:
        best = f"{result['key_metric']}={result['best_metric']:.4g}"
        print(f"best: {result['best_run_id']} {best} {result['best_params']}")
    elif result["error"]:
        print(f"error: {result['error']}", file=sys.stderr)


def _sweep_parser(sub: Any) -> None:
    sw = sub.add_parser("sweep", help="search a config's settings: each trial a run (prints the best trial)")
    sw.add_argument("config")
    sw.add_argument("overrides", nargs="*", help="key=value overrides of the base config's params")
    sw.add_argument(
        "--param",
        action="append",
        default=[],
        required=True,
        help="NAME=SPEC, repeatable: a,b,c (choices), low:high (uniform), log:low:high (log-uniform)",
    )
    sw.add_argument("--trials", type=int, default=0, help="trials to run (a grid: default its size)")
    sw.add_argument("--strategy", default="random", choices=["grid", "random", "tpe"])
    sw.add_argument("--parallel", type=int, default=1, help="trials queued at once (the queue's limit still holds)")
    sw.add_argument("--budget", type=float, default=0.0, help="seconds after which no new trial starts (0: none)")
    sw.add_argument("--pruner", default="none", choices=["none", "median"], help="stop trials behind at an evaluation")
    sw.add_argument("--name", default="")
    sw.add_argument("--backend", default="", help="where trials run: local (default) or ray")
    sw.add_argument("--grace", type=float, default=30.0, help="seconds to wait after Stop before killing")
    sw.add_argument("--json", action="store_true", help="print a JSON object (sweep_id, best_run_id, trials...)")
    sw.set_defaults(fn=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trainpad", description="Trainpad: train and fine-tune models without writing code."
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="data folder (runs, SQLite, models); default $TRAINPAD_DATA_DIR or ./trainpad_data",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a config in the foreground")
    r.add_argument("config")
    r.add_argument("overrides", nargs="*", help="key=value overrides of params")
    r.add_argument("--name", default="")
    r.add_argument("--grace", type=float, default=30.0, help="seconds to wait after Stop before killing")
    r.add_argument("--backend", default="", help="where to run: local (default), or a remote backend (see the UI)")
    r.set_defaults(fn=cmd_run)
    im = sub.add_parser("import", help='an AutoTrain command line ("autotrain llm --train ...") as a Trainpad config')
    im.add_argument("command", help="the whole AutoTrain command, in quotes")
    im.add_argument("-o", "--output", default="", help="write the YAML to this file (default: print it)")
    im.set_defaults(fn=cmd_import)
    v = sub.add_parser("validate", help="validate a config and check its data")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(fn=cmd_validate)
    ls = sub.add_parser("runs", help="list runs")
    ls.add_argument("--status")
    ls.add_argument("--task")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_runs)
    s = sub.add_parser("stop", help="stop a running run (it saves a checkpoint)")
    s.add_argument("run_id")
    s.add_argument("--grace", type=float, default=30.0, help="seconds to wait for a checkpoint before killing")
    s.set_defaults(fn=cmd_stop)
    rs = sub.add_parser("resume", help="resume a run from its last checkpoint, in the foreground")
    rs.add_argument("run_id")
    rs.add_argument("--grace", type=float, default=30.0)
    rs.set_defaults(fn=cmd_resume)
    pr = sub.add_parser("predict", help="predict with a finished run's model")
    pr.add_argument("run_id")
    pr.add_argument("input", help="text, or JSON (a chat list, a row object...)")
    pr.set_defaults(fn=cmd_predict)
    m = sub.add_parser("merge", help="merge a finished LoRA run's adapter into its base model (writes RUN/merged/)")
    m.add_argument("run_id")
    m.set_defaults(fn=cmd_merge)
    ex = sub.add_parser("export", help="export a finished run's model: GGUF (llama.cpp, Ollama) or ONNX (encoders)")
    ex.add_argument("run_id")
    ex.add_argument("--format", required=True, choices=["gguf", "onnx"])
    ex.add_argument("--quant", default="", help="GGUF: f16 (default), q8_0 or q4_k_m")
    ex.add_argument("--int8", action="store_true", help="ONNX: also write a dynamic int8 model")
    ex.add_argument("--json", action="store_true", help="print a JSON object (path, format, bytes, sha256...)")
    ex.add_argument("--push-to", default="", metavar="REPO_ID", help="then upload it to this Hub repo ($HF_TOKEN)")
    ex.add_argument("--public", action="store_true", help="with --push-to: a public repo (default: private)")
    ex.add_argument("--timeout", type=float, default=3600.0)
    ex.set_defaults(fn=cmd_export)
    sv = sub.add_parser("serve", help="serve a finished run on an OpenAI-compatible endpoint (Ctrl-C stops it)")
    sv.add_argument("run_id")
    sv.add_argument("--port", type=int, default=0, help="default: a free port")
    sv.add_argument("--engine", default="transformers", choices=["transformers", "llama.cpp", "vllm"])
    sv.add_argument("--gguf", default="", help="serve this GGUF export with llama.cpp's server")
    sv.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server to answer")
    sv.set_defaults(fn=cmd_serve)
    ev = sub.add_parser("eval", help="evaluate a run's model or a base model folder on a test file")
    ev.add_argument("model", help="a run id, or a model folder (then --task is needed)")
    ev.add_argument("--data", default="valid", help="a test file (CSV/JSONL/...); default: the run's validation split")
    ev.add_argument("--task", default="", help="the task of a base model (e.g. llm_sft, text_classification)")
    ev.add_argument("--map", action="append", default=[], help="ROLE=COLUMN of the test file (repeat)")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-new-tokens", type=int, default=0, help="LLM answers: default the longest reference + 16")
    ev.add_argument("--json", action="store_true", help="print one JSON object (metrics, n_examples, predictions_path)")
    ev.add_argument("--judge", default="", choices=["", "pairwise", "single"], help="an LLM judge grades the answers")
    ev.add_argument("--against", default="", help="pairwise: the other model (run id or folder), B to this A")
    ev.add_argument("--judge-model", default="", help="a local judge folder, or the endpoint's model name")
    ev.add_argument("--benchmark", default="", help="lm-eval tasks: names, task YAML files or prompt/completion JSONL")
    ev.add_argument("--timeout", type=float, default=3600.0)
    ev.set_defaults(fn=cmd_eval)
    # prefix_chars="+": every flag after `app` (--port, --help...) goes to app.main untouched
    a = sub.add_parser("app", help="start the studio UI (see `trainpad app --help`)", prefix_chars="+", add_help=False)
    a.add_argument("app_args", nargs=argparse.REMAINDER)
    a.set_defaults(fn=cmd_app)
    _space_parser(sub)
    _sweep_parser(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``key=value`` overrides may also come after flags (``run C --name X epochs=1``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
