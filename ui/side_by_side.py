"""Side by side in the Playground: two models (base vs tuned, or two runs) answer the same input at once — chats
stream in two columns, classifiers show both label distributions — and a "which is better" vote per pair is saved as
a preference row, exportable as DPO or KTO data (engine.eval.preferences). Each model answers in its own prediction
process (ui.predictor), never in this one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from engine.errors import UserError
from engine.eval import preferences as prefs
from engine.task import get_task
from ui import playground, predictor
from ui.context import Context
from ui.predictor import predictor_for

QUIET = {"api_visibility": "private", "concurrency_limit": None}


def model_choices(ctx: Context) -> list[tuple[str, str]]:
    runs = [
        (f"{r.get('name') or r['id']} · {r['task']} · {r['id']}", r["id"]) for r in ctx.store.list_runs("succeeded")
    ]
    return runs + [(f"base: {Path(p).name}", p) for p in ctx.local_models()]


def answer_home(ctx: Context, model: str, task: str) -> tuple[str, str]:
    """(the folder that answers like a run, its task) for a run id or a base model folder (which takes the other
    side's task)."""
    run = ctx.store.get_run(model) if model else None
    if run is not None:
        if run["status"] != "succeeded":
            raise UserError(f"Run `{model}` is {run['status']}; pick a finished run.")
        return run["run_dir"], run["task"]
    if not model or not ctx.readable(model):
        raise UserError("Pick two models: finished runs, or base model folders (one of them a run, for its task).")
    if not task:
        raise UserError(f"`{Path(model).name}` is a base model: pick a run on the other side, so its task is known.")
    return str(prefs.base_model_home(ctx.data_dir, model, task)), task


def homes(ctx: Context, model_a: str, model_b: str) -> tuple[str, str, str]:
    """(A's folder, B's folder, the task): a run's task is given to a base model on the other side."""
    run_task = next((r["task"] for m in (model_a, model_b) if (r := ctx.store.get_run(m) if m else None)), "")
    home_a, task_a = answer_home(ctx, model_a, run_task)
    home_b, task_b = answer_home(ctx, model_b, run_task)
    if task_a != task_b:
        raise UserError(f"The two models do different tasks ({task_a} and {task_b}); compare models of one task.")
    return home_a, home_b, task_a


def request_for(task: str, text: str, run: dict[str, Any] | None = None) -> Any:
    """What a model is asked: a chat turn for a chat model (streamed; as typed for a run trained on plain text,
    see ``ui.playground.plain_text_run``), else the text."""
    if get_task(task).predict_input != "chat":
        return text
    if run is not None and playground.plain_text_run(run):
        return {"prompt": text, "stream": True}
    return {"messages": [{"role": "user", "content": text}], "stream": True}


def both_answers(ctx: Context, session: str, model_a: str, model_b: str, text: str) -> Iterator[tuple[Any, Any]]:
    """(A's answer so far, B's answer so far) each time either grows; both models work at the same time."""
    if not (text or "").strip():
        raise UserError("Type something for both models to answer.")
    home_a, home_b, task = homes(ctx, model_a, model_b)
    check_slots()
    updates: queue.Queue[tuple[int, str, Any]] = queue.Queue()
    for side, (home, model) in enumerate(((home_a, model_a), (home_b, model_b))):
        inputs = request_for(task, text, ctx.store.get_run(model) if model else None)
        threading.Thread(
            target=_answer, args=(ctx, pair_sessions(session)[side], home, inputs, side, updates), daemon=True
        ).start()
    answers: list[Any] = ["", ""]
    done = 0
    while done < 2:
        side, kind, value = updates.get(timeout=900)
        if kind == "error":
            value = f"⚠ {value}"
        if kind in ("error", "output"):
            done += 1
        answers[side] = value
        yield answers[0], answers[1]


def _answer(ctx: Context, session: str, home: str, inputs: Any, side: int, out: queue.Queue) -> None:
    try:
        for kind, value in predictor_for(ctx, session, home, needs=SLOTS).stream(inputs):
            out.put((side, kind, value))
    except Exception as e:  # noqa: BLE001 - shown in that model's column
        out.put((side, "error", str(e)))


SLOTS = 2  # Playground models side by side holds at once


def check_slots() -> None:
    """UserError when this instance holds fewer Playground models at once than side by side needs."""
    if predictor.MAX_PROCESSES < SLOTS:
        raise UserError(
            f"Side by side loads two models at once, and this instance holds {predictor.MAX_PROCESSES} Playground "
            "model at a time (TRAINPAD_MAX_PLAYGROUND). Set it to 2 or more to compare models."
        )


def slots_note() -> str:
    """What the panel says about the memory side by side takes."""
    if predictor.MAX_PROCESSES < SLOTS:
        return (
            f"Side by side is off here: it loads two models at once, and this instance holds {predictor.MAX_PROCESSES}."
        )
    return (
        f"Both models are loaded at once: side by side takes {SLOTS} of this instance's {predictor.MAX_PROCESSES} "
        "Playground slots while you compare (on a shared instance your model above is released first)."
    )


def pair_sessions(session: str) -> list[str]:
    """The prediction sessions of a browser session's side by side (released with it)."""
    return [f"{session}:sbs{side}" for side in range(SLOTS)]


def shown(answer: Any) -> tuple[str, dict[str, float] | None]:
    """(text, label scores or None): a classifier's distribution for a Label, anything else as text."""
    if isinstance(answer, dict) and isinstance(answer.get("scores"), dict):
        return str(answer.get("label", "")), {str(k): float(v) for k, v in answer["scores"].items()}
    return answer if isinstance(answer, str) else str(answer), None


def vote(ctx: Context, choice: str, text: str, answer_a: str, answer_b: str, model_a: str, model_b: str) -> str:
    """Save the vote as a preference row; a line saying how many there are."""
    path = prefs.votes_file(ctx.data_dir, ctx.user())
    prefs.save_vote(path, text, answer_a, answer_b, choice, (model_a, model_b))
    return f"Saved ({len(prefs.read_votes(path))} votes). Export them as DPO or KTO data below."


def export(ctx: Context, form: str) -> str:
    """A JSONL of the user's votes as DPO pairs or KTO thumbs (a path to download)."""
    votes = prefs.read_votes(prefs.votes_file(ctx.data_dir, ctx.user()))
    rows = prefs.as_dpo(votes) if form == "dpo" else prefs.as_kto(votes)
    out = ctx.exports_dir / f"preferences-{form}.jsonl"
    return ctx.served(prefs.write_jsonl(out, rows))


# --- layout and wiring ----------------------------------------------------------------------------


def build(ctx: Context) -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Accordion("Side by side: two models, one input", open=False, elem_id="sbs"):
        gr.Markdown(slots_note(), elem_id="sbs-note")
        with gr.Row():
            c["a"] = gr.Dropdown([], label="Model A", allow_custom_value=True, elem_id="sbs-a")
            c["b"] = gr.Dropdown([], label="Model B", allow_custom_value=True, elem_id="sbs-b")
        c["text"] = gr.Textbox(label="Input (a chat message, or the text to classify)", lines=2, elem_id="sbs-text")
        c["go"] = gr.Button("Ask both", variant="primary", elem_id="sbs-go")
        with gr.Row():
            c["out_a"] = gr.Textbox(label="A", lines=6, interactive=False, elem_id="sbs-out-a")
            c["out_b"] = gr.Textbox(label="B", lines=6, interactive=False, elem_id="sbs-out-b")
        with gr.Row():
            c["label_a"] = gr.Label(label="A's labels", visible=False, elem_id="sbs-label-a")
            c["label_b"] = gr.Label(label="B's labels", visible=False, elem_id="sbs-label-b")
        with gr.Row():
            c["vote_a"] = gr.Button("A is better", elem_id="sbs-vote-a")
            c["vote_tie"] = gr.Button("Tie", elem_id="sbs-vote-tie")
            c["vote_b"] = gr.Button("B is better", elem_id="sbs-vote-b")
        c["voted"] = gr.Markdown(elem_id="sbs-voted")
        with gr.Row():
            c["dpo"] = gr.Button("Export votes as DPO", size="sm", elem_id="sbs-dpo")
            c["kto"] = gr.Button("Export votes as KTO", size="sm", elem_id="sbs-kto")
            c["file"] = gr.File(label="Preference data", interactive=False, elem_id="sbs-file")
    _wire(ctx, c)
    return c


def _wire(ctx: Context, c: dict[str, Any]) -> None:
    def on_focus() -> tuple[Any, Any]:
        choices = model_choices(ctx)
        return gr.update(choices=choices), gr.update(choices=choices)

    def on_go(a: str, b: str, text: str, request: gr.Request) -> Iterator[tuple[Any, ...]]:
        session = getattr(request, "session_hash", "") or "api"
        try:
            for ans_a, ans_b in both_answers(ctx, session, a, b, text):
                (text_a, labels_a), (text_b, labels_b) = shown(ans_a), shown(ans_b)
                yield (
                    text_a,
                    text_b,
                    gr.update(value=labels_a, visible=labels_a is not None),
                    gr.update(value=labels_b, visible=labels_b is not None),
                )
        except UserError as e:
            raise gr.Error(str(e), duration=None) from None

    def voter(choice: str) -> Any:
        def on_vote(text: str, out_a: str, out_b: str, a: str, b: str) -> str:
            try:
                return vote(ctx, choice, text, out_a, out_b, a, b)
            except UserError as e:
                raise gr.Error(str(e)) from None

        return on_vote

    def exporter(form: str) -> Any:
        def on_export() -> str:
            try:
                return export(ctx, form)
            except UserError as e:
                raise gr.Error(str(e)) from None

        return on_export

    c["a"].focus(on_focus, None, [c["a"], c["b"]], **QUIET)
    c["b"].focus(on_focus, None, [c["a"], c["b"]], **QUIET)
    outs = [c["out_a"], c["out_b"], c["label_a"], c["label_b"]]
    c["go"].click(on_go, [c["a"], c["b"], c["text"]], outs, api_name="side_by_side")
    voted = [c["text"], c["out_a"], c["out_b"], c["a"], c["b"]]
    for key, choice in (("vote_a", "A"), ("vote_b", "B"), ("vote_tie", "tie")):
        c[key].click(voter(choice), voted, c["voted"], api_name=f"vote_{choice.lower()}")
    c["dpo"].click(exporter("dpo"), None, c["file"], **QUIET)
    c["kto"].click(exporter("kto"), None, c["file"], **QUIET)
