"""The Playground: try a finished run's model. The input widget follows ``task.predict_input`` (chat, text,
JSON, a table row or file, an image with or without a question, audio); predictions run in this browser
session's prediction process (:mod:`ui.predictor`), and chat replies and image answers stream in as generated.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from engine.errors import UserError
from engine.task import get_task
from engine.train.generation import capped_new_tokens, max_new_tokens_cap
from ui import playground_table as pt
from ui.context import Context
from ui.predictor import predictor_for, release, release_browser
from ui.progress import NO_PROGRESS

KINDS = ["chat", "text", "json", "table", "image", "image_text", "audio"]
SHOWS = {"image_text": ("image", "text")}  # kinds that show several input groups
STREAMED = ("image_text",)  # kinds whose answer streams into the Answer box (chat streams into the chat)
HINTS = {
    "chat": "Type a message and press Send: the reply is written into the chat as it is generated (the whole "
    "conversation so far is sent). Max new tokens, temperature, top-p and a system prompt are under "
    "\u201cGeneration settings\u201d.",
    "text": "Type a text and press Predict; the prediction appears under the Predict button (a classifier's "
    "class scores as bars).",
    "json": "Enter the input as JSON (the task's predict input) and press Predict; the prediction appears under "
    "the Predict button.",
    "table": "Paste one row as CSV (header line optional) or JSON, or press \u201cFill from data row\u201d, then "
    "Predict: the prediction appears under the Predict button. Or upload a whole file at the bottom: its "
    "predictions appear as a table under the upload, with a CSV to download.",
    "image": "Upload an image (or take one with the webcam) and press Predict; the prediction appears under the "
    "Predict button.",
    "image_text": "Upload an image, type a question (or leave it empty for a caption) and press Predict; the "
    "answer is written into the Answer box under the button as it is generated.",
    "audio": "Upload or record a clip and press Predict; the transcript appears under the Predict button.",
}
BOXES_NOTE = " Found boxes are drawn on the image."
BOX_PIPELINES = {"object-detection"}  # tasks whose outputs are boxes (drawn on the image)


def hint(task_name: str) -> str:
    """How to use the picked run's input widget (a detection model's answer is drawn on the image)."""
    kind = widget_kind(task_name)
    return HINTS[kind] + (BOXES_NOTE if get_task(task_name).hub_pipeline in BOX_PIPELINES else "")


# --- plain helpers ----------------------------------------------------------------------------


def succeeded_runs(ctx: Context) -> list[tuple[str, str]]:
    return [
        (f"{r.get('name') or r['id']} · {r['task']} · {r['id']}", r["id"])
        for r in ctx.store.list_runs(status="succeeded")
    ]


def widget_kind(task_name: str) -> str:
    kind = get_task(task_name).predict_input
    return kind if kind in KINDS else "json"


def label_columns(row: dict[str, Any]) -> set[str]:
    """The run's data columns that hold what the model predicts (label roles, mapped), and its id column."""
    task, params = get_task(row["task"]), row.get("params") or {}
    mapping = params.get("column_mapping") or {}
    roles = {c.role for c in task.columns if c.kind == "label"} | (
        {task.stratify_role} if task.stratify_role else set()
    )
    targets = {t.strip() for t in str(params.get("target_columns") or "").split(",") if t.strip()}
    return {mapping.get(role, role) for role in roles} | targets | {mapping.get("id", "id")}


def make_inputs(
    kind: str,
    text: str,
    json_text: str,
    table: Any,
    image: str | None = None,
    audio: str | None = None,
    columns: list[str] | None = None,
) -> Any:
    """The predict input for the widget kind; UserError for JSON that does not parse or a missing image/clip. A
    table row typed as text is read against the model's ``columns``: one row gives one input (and its class
    bars), several a list."""
    if kind == "text":
        return text
    if kind in ("image", "image_text"):
        if not image:
            raise UserError("Upload an image first.")
        if kind == "image":
            return str(image)
        return {"image": str(image), "question": text} if (text or "").strip() else {"image": str(image)}
    if kind == "audio":
        if not audio:
            raise UserError("Upload or record a clip first.")
        return str(audio)
    if kind == "table":
        rows = pt.parse_rows(table, columns)
        return rows[0] if len(rows) == 1 else rows
    try:
        return json.loads(json_text or "null")
    except json.JSONDecodeError as e:
        raise UserError(f"The input is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}).") from None


# --- layout and wiring ------------------------------------------------------------------------


def build_and_wire(ctx: Context, demo: gr.Blocks, playground_tab: Any) -> None:
    """Lay out the tab (call inside it) and connect it."""
    w = _layout(ctx)
    _wire_pick(ctx, w, playground_tab)
    _wire_predict(ctx, w)
    _wire_table(ctx, w)
    _wire_chat(ctx, w)

    def on_leave(request: gr.Request) -> None:
        release_browser(request.session_hash or "")  # side by side's models too

    demo.unload(on_leave)


def _layout(ctx: Context) -> dict[str, Any]:
    """The widgets by name; ``groups`` holds one hidden group per input kind."""
    w: dict[str, Any] = {"groups": {}}
    groups = w["groups"]
    with gr.Row():
        w["run"] = gr.Dropdown(choices=succeeded_runs(ctx), label="Finished run", elem_id="play-run", scale=4)
        w["refresh"] = gr.Button("Refresh", scale=0, elem_id="play-refresh")
    w["info"] = gr.Markdown("Pick a run that succeeded.", elem_id="play-info")
    w["kind"] = gr.State("json")
    with gr.Group(visible=False) as groups["chat"]:
        _chat_layout(w)
    with gr.Group(visible=False) as groups["text"]:
        w["text"] = gr.Textbox(label="Text", lines=4, elem_id="play-text")
    with gr.Group(visible=False) as groups["json"]:
        w["json"] = gr.Code(language="json", label="Input (JSON)", elem_id="play-json", interactive=True)
    with gr.Group(visible=False) as groups["table"]:
        _table_layout(w)
    with gr.Group(visible=False) as groups["image"]:
        w["image"] = gr.Image(
            type="filepath", sources=["upload", "webcam", "clipboard"], label="Image", elem_id="play-image"
        )
    with gr.Group(visible=False) as groups["audio"]:
        w["audio"] = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Audio", elem_id="play-audio")
    with gr.Row(visible=False) as w["predict_row"]:
        w["predict"] = gr.Button("Predict", variant="primary", elem_id="play-predict")
    w["answer"] = gr.Textbox(label="Answer", lines=3, interactive=False, elem_id="play-answer", visible=False)
    w["summary"] = gr.Markdown(visible=False, elem_id="play-summary")  # an empty result in words (result_words)
    w["output"] = gr.JSON(label="Prediction", elem_id="play-output", visible=False)
    w["boxes"] = gr.AnnotatedImage(label="Boxes found", elem_id="play-boxes", visible=False)
    w["label"] = gr.Label(label="Classes", num_top_classes=10, elem_id="play-label", visible=False)
    with gr.Group(visible=False) as w["batch_group"]:  # a whole file at once (table inputs), after the one row's output
        _batch_layout(w)
    return w


def _chat_layout(w: dict[str, Any]) -> None:
    cap = max_new_tokens_cap()
    w["chat"] = gr.Chatbot(label="Chat", height=320, elem_id="play-chat")
    with gr.Row():
        w["msg"] = gr.Textbox(placeholder="Your message", show_label=False, scale=5, elem_id="play-msg")
        w["send"] = gr.Button("Send", variant="primary", scale=0, elem_id="play-send")
        w["clear"] = gr.Button("Clear", scale=0)
    with gr.Accordion("Generation settings", open=False, elem_id="play-gen"):
        with gr.Row():
            w["max_new_tokens"] = gr.Slider(
                1, cap, value=min(128, cap), step=1, label=f"Max new tokens (at most {cap} here)",
                elem_id="play-max_new_tokens",
            )  # fmt: skip
            w["temperature"] = gr.Slider(
                0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = always the likeliest word)",
                elem_id="play-temperature",
            )  # fmt: skip
            w["top_p"] = gr.Slider(
                0.05, 1.0, value=1.0, step=0.05, label="Top-p (sampling keeps the likeliest words up to this share)",
                elem_id="play-top_p",
            )  # fmt: skip
        w["system"] = gr.Textbox(label="System prompt (optional)", lines=2, elem_id="play-system")


def _table_layout(w: dict[str, Any]) -> None:
    w["table"] = gr.Textbox(label="One row (CSV or JSON)", lines=3, elem_id="play-table")
    with gr.Row():
        w["row_n"] = gr.Number(1, label="Data row", precision=0, minimum=1, elem_id="play-row-n", scale=1)
        w["fill"] = gr.Button("Fill from data row", elem_id="play-fill", scale=0)


def _batch_layout(w: dict[str, Any]) -> None:
    w["batch_file"] = gr.File(
        label=f"Or upload a CSV (up to {pt.max_rows():,} rows): one prediction per row",
        file_types=[".csv", ".tsv", ".jsonl", ".parquet"],
        elem_id="play-batch",
    )
    w["batch_info"] = gr.Markdown(visible=False, elem_id="play-batch-info")
    w["batch_table"] = gr.Dataframe(label="Predictions", interactive=False, visible=False, elem_id="play-batch-table")
    w["batch_download"] = gr.File(label="Predictions CSV", visible=False, elem_id="play-batch-download")


def label_view(output: Any) -> Any:
    """A classifier's scores as bars (``gr.Label``): one input's ``{"label", "scores"}`` (or a tabular row's
    ``{"prediction", "probabilities"}``); hidden otherwise."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    scores = (output.get("scores") or output.get("probabilities")) if isinstance(output, dict) else None
    if not isinstance(scores, dict) or not scores:
        return gr.update(visible=False, value=None)
    return gr.update(visible=True, value={str(k): float(v) for k, v in scores.items()})


END_OF_TURN = re.compile(
    r"(<\|(?:im_end|im_start|eot_id|end|user|assistant)\|>|</s>|\n\s*(?:user|assistant|system)\s*(?::|\n))", re.I
)


def trim_reply(text: str) -> str:
    """The assistant's reply up to its end of turn: a model that ran past its template's end-of-turn token (it
    writes the next "user"/"assistant" turns itself) is cut where the invented turn begins."""
    match = END_OF_TURN.search(text)
    return (text[: match.start()] if match else text).strip()


CHAT_ROLES = {"messages", "prompt"}  # a run that mapped one of these learned chats (the chat template)
PLAIN_TEXT_NOTE = (
    "\n\n**This run was trained on plain text, not chats**, so your message is sent as you type it (no chat "
    "template) and the model continues it. Write it the way the training text is written, e.g. "
    "`User: hi` and a new line with `Assistant:`."
)
SPEAKER = re.compile(r"^\s*assistant\s*:\s*", re.I)


def plain_text_run(row: dict[str, Any]) -> bool:
    """Whether a chat model's run was trained on plain text (its ``text`` column mapped, no chat column): its
    chat replies then come from the text as typed, not from the tokenizer's chat template it never learned."""
    mapping = (row.get("params") or {}).get("column_mapping") or {}
    return "text" in mapping and not CHAT_ROLES & set(mapping)


def plain_request(turns: list[dict[str, str]], max_new_tokens: float, temperature: float, top_p: float) -> dict:
    """The predict input of a plain-text model's chat turn: the conversation's text, one turn a line."""
    prompt = "\n".join(t["content"] for t in turns if t["role"] != "system")
    limit, _ = capped_new_tokens(max_new_tokens)
    return {"prompt": prompt, "max_new_tokens": limit, "temperature": float(temperature), "top_p": float(top_p)}


def plain_reply(text: str) -> str:
    """A plain-text model's continuation as a reply: the "Assistant:" label it learned to write first left out,
    cut where it starts the next turn."""
    return trim_reply(SPEAKER.sub("", text))


def chat_request(
    turns: list[dict[str, str]], max_new_tokens: float, temperature: float, system: str, top_p: float = 1.0
) -> dict[str, Any]:
    """The predict input of a chat turn with its generation settings (``engine.llm.model.generate``); max new
    tokens within the instance's cap (``token_notice`` says when it was lowered)."""
    messages = ([{"role": "system", "content": system.strip()}] if system and system.strip() else []) + turns
    limit, _ = capped_new_tokens(max_new_tokens)
    return {"messages": messages, "max_new_tokens": limit, "temperature": float(temperature), "top_p": float(top_p)}


def token_notice(max_new_tokens: float) -> str:
    """What to tell a visitor who asked for more new tokens than this instance allows (empty otherwise)."""
    return capped_new_tokens(max_new_tokens)[1]


def boxes_view(image: str | None, output: Any) -> Any:
    """The image with the detected boxes drawn (``gr.AnnotatedImage``), for a detection output; hidden otherwise."""
    if not image or not isinstance(output, dict) or "objects" not in output:
        return gr.update(visible=False, value=None)
    boxes = [(tuple(int(round(v)) for v in o["box"]), f"{o['label']} {o['score']:.2f}") for o in output["objects"]]
    return gr.update(visible=True, value=(image, boxes))


def score_threshold(task_name: str) -> float | None:
    """The score a found object needs to be reported: the default ``threshold`` of the task's ``predict``."""
    found = inspect.signature(get_task(task_name).predict).parameters.get("threshold")
    default = found.default if found is not None else None
    return float(default) if isinstance(default, (int, float)) else None


def with_threshold(task_name: str, output: Any) -> Any:
    """A detection output with the score threshold its boxes passed (``score_threshold``), so the page can say it."""
    if not isinstance(output, dict) or "objects" not in output or "score_threshold" in output:
        return output
    threshold = score_threshold(task_name)
    return output if threshold is None else {**output, "score_threshold": threshold}


def result_words(kind: str, output: Any) -> Any:
    """Plain words for what a prediction found (an update of the summary line): "No speech recognised" for an
    empty transcript, "0 boxes found above score 0.5" for a detection; hidden for anything else."""
    if kind == "audio" and isinstance(output, str | None) and not (output or "").strip():
        return gr.update(value="**No speech recognised** in this clip: the transcript is empty.", visible=True)
    if isinstance(output, dict) and isinstance(output.get("objects"), list):
        n, threshold = len(output["objects"]), output.get("score_threshold")
        above = f" above score {threshold:g}" if isinstance(threshold, (int, float)) else ""
        return gr.update(value=f"**{n} box{'es' if n != 1 else ''} found**{above}.", visible=True)
    return gr.update(value="", visible=False)


def _shown(w: dict[str, Any]) -> list[Any]:
    """What picking a run shows or hides."""
    return [
        *w["groups"].values(),
        w["predict_row"],
        w["answer"],
        w["output"],
        w["boxes"],
        w["label"],
        w["summary"],
        w["batch_group"],
        w["batch_info"],
        w["batch_table"],
        w["batch_download"],
    ]


def pick_updates(ctx: Context, w: dict[str, Any], run_id: str, session: str) -> dict[Any, Any]:
    """Show the input widget of the picked run's task, and start its prediction process (it warms up)."""
    release(session)
    row = ctx.store.get_run(run_id) if run_id else None
    hidden = {g: gr.update(visible=False) for g in _shown(w)}
    if row is None:
        return {w["info"]: "Pick a run that succeeded.", w["kind"]: "json", w["chat"]: [], **hidden}
    kind = widget_kind(row["task"])
    predictor_for(ctx, session, row["run_dir"])  # imports load in the background
    updates = {
        **hidden,
        w["info"]: f"**{get_task(row['task']).title}** · run `{run_id}` · {hint(row['task'])}"
        + (PLAIN_TEXT_NOTE if kind == "chat" and plain_text_run(row) else ""),
        w["kind"]: kind,
        **{g: gr.update(visible=name in SHOWS.get(kind, (kind,))) for name, g in w["groups"].items()},
        w["predict_row"]: gr.update(visible=kind != "chat"),
        w["answer"]: gr.update(visible=kind in STREAMED, value=""),
        w["output"]: gr.update(visible=kind not in ("chat", *STREAMED), value=None),
        w["boxes"]: gr.update(visible=False, value=None),  # the previous run's results go
        w["label"]: gr.update(visible=False, value=None),
        w["chat"]: [],  # the previous run's conversation goes
        w["batch_group"]: gr.update(visible=kind == "table"),
    }
    if kind == "table":
        updates[w["table"]] = gr.update(value="", placeholder=pt.placeholder(pt.model_columns(row["run_dir"])))
    return updates


def _wire_pick(ctx: Context, w: dict[str, Any], playground_tab: Any) -> None:
    def on_pick(run_id: str, request: gr.Request) -> dict[Any, Any]:
        return pick_updates(ctx, w, run_id, request.session_hash or "")

    outputs = [w["info"], w["kind"], *_shown(w), w["table"], w["chat"]]
    # the spinner on the run's description and the answers only (see ui.progress: the outputs hold containers):
    # an answer's status is its last event's, so a failed prediction's red "Error" goes with the run it came from
    answers = [w["info"], w["output"], w["answer"], w["chat"]]
    w["run"].change(
        on_pick, w["run"], outputs, api_visibility="private", concurrency_limit=None, show_progress_on=answers
    )
    for trigger in (w["refresh"].click, playground_tab.select):
        trigger(lambda: gr.update(choices=succeeded_runs(ctx)), None, w["run"], api_visibility="private", **NO_PROGRESS)


def _run(ctx: Context, run_id: str) -> dict[str, Any]:
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        raise gr.Error("Pick a finished run first.")
    return row


def ask(ctx: Context, run_id: str, inputs: Any, session: str) -> Any:
    """The picked run's prediction for ``inputs``; the problem as an error toast."""
    row = _run(ctx, run_id)
    try:
        return predictor_for(ctx, session, row["run_dir"]).ask(inputs)
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


def stream_answer(ctx: Context, run_id: str, inputs: dict[str, Any], session: str) -> Iterator[str]:
    """The picked run's answer to ``inputs`` as the text so far, each time it grows (a model that does not
    stream gives its answer once); the problem as an error toast."""
    row = _run(ctx, run_id)
    last = None
    try:
        for _, text in predictor_for(ctx, session, row["run_dir"]).stream({**inputs, "stream": True}):
            if str(text) != last:  # the final output repeats the last partial
                last = str(text)
                yield last
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


def predictions(
    ctx: Context, run_id: str, inputs: tuple[str, str, Any, str | None, str | None], session: str
) -> Iterator[tuple[Any, Any]]:
    """(JSON output, answer text) as the prediction arrives: a streamed kind's answer grows in the answer box,
    every other kind's output goes to the JSON box at once. ``inputs``: text, JSON, table, image, audio. The
    input kind is the run's task's, never the caller's (a path typed as "text" must not reach a task that reads
    files)."""
    row = _run(ctx, run_id)
    kind = widget_kind(row["task"])
    text, json_text, table, image, audio = inputs
    try:
        columns = pt.model_columns(row["run_dir"]) if kind == "table" else None
        value = make_inputs(kind, text, json_text, table, image, audio, columns)
    except UserError as e:
        raise gr.Error(str(e)) from None
    if kind in STREAMED:
        for answer in stream_answer(ctx, run_id, value, session):
            yield gr.update(), answer
        return
    output = with_threshold(row["task"], ask(ctx, run_id, value, session))
    if isinstance(output, str):  # gr.JSON parses a str as JSON text: a transcript goes quoted; an empty one is
        yield gr.update(value=json.dumps(output), visible=bool(output.strip())), gr.update()  # said in words
        return  # (every other output is shown as it is: the box is visible since the run was picked)
    yield output, gr.update()


def _wire_predict(ctx: Context, w: dict[str, Any]) -> None:
    def on_predict(
        run_id: str,
        _kind: str,  # kept in the endpoint's inputs; the run's task decides
        text: str,
        json_text: str,
        table: Any,
        image: str | None,
        audio: str | None,
        request: gr.Request,
    ) -> Iterator[tuple[Any, Any]]:
        yield from predictions(ctx, run_id, (text, json_text, table, image, audio), request.session_hash or "")

    def on_output(kind: str, image: str | None, output: Any) -> Any:
        return boxes_view(image if kind == "image" else None, output)

    inputs = [w["run"], w["kind"], w["text"], w["json"], w["table"], w["image"], w["audio"]]
    outputs = [w["output"], w["answer"]]
    predicted = w["predict"].click(on_predict, inputs, outputs, api_name="predict", concurrency_limit=4)
    predicted.then(on_output, [w["kind"], w["image"], w["output"]], w["boxes"], api_visibility="private")
    predicted.then(label_view, w["output"], w["label"], api_visibility="private")
    predicted.then(result_words, [w["kind"], w["output"]], w["summary"], api_visibility="private", **NO_PROGRESS)


def fill_row(ctx: Context, run_id: str, number: Any) -> str:
    """Row ``number`` of the run's training data (target and id left out), as the text of the row box."""
    row = _run(ctx, run_id)
    params = row.get("params") or {}
    if params.get("data_path") and not ctx.readable(params["data_path"]):
        raise gr.Error("This run's training data is not readable here.")
    try:
        return pt.data_row_text(params, number, pt.model_columns(row["run_dir"]), label_columns(row))
    except UserError as e:
        raise gr.Error(str(e)) from None


def batch_updates(ctx: Context, run_id: str, path: str | None, session: str) -> tuple[Any, Any, Any]:
    """(summary, predictions table, CSV to download) for an uploaded file; all hidden when the upload is cleared."""
    if not path:
        return (gr.update(visible=False),) * 3
    row = _run(ctx, run_id)
    try:
        pt.check_upload(path, pt.model_columns(row["run_dir"]))
        output = predictor_for(ctx, session, row["run_dir"]).ask(str(path))
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None
    name = Path(path).name
    dest = ctx.exports_dir / f"predictions-{run_id}.csv"  # one per run: the next upload replaces it
    table = pt.keep_predictions(output, dest)
    return (
        gr.update(visible=True, value=pt.batch_summary(table, name)),
        gr.update(visible=True, value=table.head(pt.SHOWN_ROWS).round(4)),  # the CSV keeps every digit
        gr.update(visible=True, value=ctx.served(dest)),
    )


def _wire_table(ctx: Context, w: dict[str, Any]) -> None:
    def on_batch(run_id: str, path: str | None, request: gr.Request) -> tuple[Any, Any, Any]:
        return batch_updates(ctx, run_id, path, request.session_hash or "")

    w["fill"].click(lambda run_id, n: fill_row(ctx, run_id, n), [w["run"], w["row_n"]], w["table"],
                    api_visibility="private")  # fmt: skip
    w["batch_file"].change(
        on_batch,
        [w["run"], w["batch_file"]],
        [w["batch_info"], w["batch_table"], w["batch_download"]],
        api_visibility="private",
        concurrency_limit=2,
        show_progress_on=w["batch_info"],  # not the table (see ui.progress)
    )


def chat_replies(
    ctx: Context,
    run_id: str,
    history: list[dict[str, Any]],
    message: str,
    settings: tuple[float, float, float, str],
    session: str,
) -> Iterator[list[dict[str, str]]]:
    """The chat with the user's message, then with the assistant's reply as it grows (cut at its end of turn).
    ``settings``: max new tokens, temperature, top-p, system prompt. A run trained on plain text gets the
    conversation as text, in the format the user types (``plain_text_run``)."""
    max_new_tokens, temperature, top_p, system = settings
    turns = [{"role": m["role"], "content": _text(m["content"])} for m in history or []]
    turns.append({"role": "user", "content": message})
    yield turns
    if plain_text_run(_run(ctx, run_id)):
        request, reply = plain_request(turns, max_new_tokens, temperature, top_p), plain_reply
    else:
        request, reply = chat_request(turns, max_new_tokens, temperature, system, top_p), trim_reply
    for text in stream_answer(ctx, run_id, request, session):
        yield [*turns, {"role": "assistant", "content": reply(text)}]


def _wire_chat(ctx: Context, w: dict[str, Any]) -> None:
    def on_send(
        run_id: str,
        history: list[dict[str, Any]],
        message: str,
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        system: str,
        request: gr.Request,
    ) -> Iterator[dict[Any, Any]]:
        if not message.strip():
            yield {w["msg"]: ""}
            return
        try:
            notice = token_notice(max_new_tokens)
        except UserError as e:
            raise gr.Error(str(e)) from None
        if notice:
            gr.Warning(notice)
        settings = (max_new_tokens, temperature, top_p, system)
        for chat in chat_replies(ctx, run_id, history, message, settings, request.session_hash or ""):
            yield {w["chat"]: chat, w["msg"]: ""}

    settings = [w["max_new_tokens"], w["temperature"], w["top_p"], w["system"]]
    for trigger in (w["send"].click, w["msg"].submit):
        trigger(
            on_send,
            [w["run"], w["chat"], w["msg"], *settings],
            [w["chat"], w["msg"]],
            api_visibility="private",
            concurrency_limit=4,
        )
    w["clear"].click(lambda: [], None, w["chat"], api_visibility="private")


def _text(content: Any) -> str:
    """Chatbot message content as plain text (Gradio may hand back a list of parts)."""
    if isinstance(content, list):
        return " ".join(_text(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content)
