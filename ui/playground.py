"""The Playground: try a finished run's model. The input widget follows ``task.predict_input`` (chat, text,
JSON or a table); predictions run in this browser session's prediction process (:mod:`ui.predictor`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import gradio as gr
import pandas as pd

from engine import data
from engine.errors import UserError
from engine.task import get_task
from ui.context import Context
from ui.predictor import predictor_for, release

KINDS = ["chat", "text", "json", "table", "image", "image_text", "audio"]
SHOWS = {"image_text": ("image", "text")}  # kinds that show several input groups
HINTS = {
    "chat": "Chat with the model: each message is sent with the conversation so far.",
    "text": "Type a text and press Predict; the prediction appears below.",
    "json": "Enter the input as JSON (the task's predict input).",
    "table": "Fill in one or more rows; each row gets a prediction.",
    "image": "Upload an image (or take one with the webcam) and press Predict; the prediction appears below.",
    "image_text": "Upload an image, type a question (or leave it empty for a caption) and press Predict; the "
    "answer appears below.",
    "audio": "Upload or record a clip and press Predict; the transcript appears below.",
}


# --- plain helpers ----------------------------------------------------------------------------


def succeeded_runs(ctx: Context) -> list[tuple[str, str]]:
    return [
        (f"{r.get('name') or r['id']} · {r['task']} · {r['id']}", r["id"])
        for r in ctx.store.list_runs(status="succeeded")
    ]


def widget_kind(task_name: str) -> str:
    kind = get_task(task_name).predict_input
    return kind if kind in KINDS else "json"


def table_template(row: dict[str, Any]) -> pd.DataFrame:
    """An editable row with the run's input columns (its data's columns minus the label ones)."""
    task, params = get_task(row["task"]), row.get("params") or {}
    try:
        columns = data.sniff_columns(params.get("data_path", "")) if data.is_local(params.get("data_path", "")) else []
    except UserError:
        columns = []
    mapping = params.get("column_mapping") or {}
    labels = {c.role for c in task.columns if c.kind == "label"} | (
        {task.stratify_role} if task.stratify_role else set()
    )
    drop = {mapping.get(role, role) for role in labels}
    columns = [c for c in columns if c not in drop] or ["feature"]
    return pd.DataFrame([[""] * len(columns)], columns=columns)


def make_inputs(
    kind: str, text: str, json_text: str, table: Any, image: str | None = None, audio: str | None = None
) -> Any:
    """The predict input for the widget kind; UserError for JSON that does not parse or a missing image/clip."""
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
        df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
        rows = df.replace("", None).dropna(how="all").to_dict(orient="records")
        return [{k: None if pd.isna(v) else v for k, v in r.items()} for r in rows]
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
    _wire_chat(ctx, w)

    def on_leave(request: gr.Request) -> None:
        release(request.session_hash or "")

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
        w["chat"] = gr.Chatbot(label="Chat", height=320, elem_id="play-chat")
        with gr.Row():
            w["msg"] = gr.Textbox(placeholder="Your message", show_label=False, scale=5, elem_id="play-msg")
            w["send"] = gr.Button("Send", variant="primary", scale=0, elem_id="play-send")
            w["clear"] = gr.Button("Clear", scale=0)
        with gr.Accordion("Generation settings", open=False, elem_id="play-gen"):
            with gr.Row():
                w["max_new_tokens"] = gr.Slider(
                    16, 1024, value=128, step=16, label="Max new tokens", elem_id="play-max_new_tokens"
                )
                w["temperature"] = gr.Slider(
                    0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = always the likeliest word)",
                    elem_id="play-temperature",
                )  # fmt: skip
            w["system"] = gr.Textbox(label="System prompt (optional)", lines=2, elem_id="play-system")
    with gr.Group(visible=False) as groups["text"]:
        w["text"] = gr.Textbox(label="Text", lines=4, elem_id="play-text")
    with gr.Group(visible=False) as groups["json"]:
        w["json"] = gr.Code(language="json", label="Input (JSON)", elem_id="play-json", interactive=True)
    with gr.Group(visible=False) as groups["table"]:
        w["table"] = gr.Dataframe(label="Rows", interactive=True, elem_id="play-table")
    with gr.Group(visible=False) as groups["image"]:
        w["image"] = gr.Image(
            type="filepath", sources=["upload", "webcam", "clipboard"], label="Image", elem_id="play-image"
        )
    with gr.Group(visible=False) as groups["audio"]:
        w["audio"] = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Audio", elem_id="play-audio")
    with gr.Row(visible=False) as w["predict_row"]:
        w["predict"] = gr.Button("Predict", variant="primary", elem_id="play-predict")
    w["output"] = gr.JSON(label="Prediction", elem_id="play-output", visible=False)
    w["boxes"] = gr.AnnotatedImage(label="Boxes found", elem_id="play-boxes", visible=False)
    w["label"] = gr.Label(label="Classes", num_top_classes=10, elem_id="play-label", visible=False)
    return w


def label_view(output: Any) -> Any:
    """A classifier's scores as bars (``gr.Label``): one text's ``{"label", "scores"}``; hidden otherwise."""
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    scores = output.get("scores") if isinstance(output, dict) else None
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


def chat_request(turns: list[dict[str, str]], max_new_tokens: float, temperature: float, system: str) -> dict[str, Any]:
    """The predict input of a chat turn with its generation settings (``engine.llm_model.generate``)."""
    messages = ([{"role": "system", "content": system.strip()}] if system and system.strip() else []) + turns
    return {"messages": messages, "max_new_tokens": int(max_new_tokens), "temperature": float(temperature)}


def boxes_view(image: str | None, output: Any) -> Any:
    """The image with the detected boxes drawn (``gr.AnnotatedImage``), for a detection output; hidden otherwise."""
    if not image or not isinstance(output, dict) or "objects" not in output:
        return gr.update(visible=False, value=None)
    boxes = [(tuple(int(round(v)) for v in o["box"]), f"{o['label']} {o['score']:.2f}") for o in output["objects"]]
    return gr.update(visible=True, value=(image, boxes))


def pick_updates(ctx: Context, w: dict[str, Any], run_id: str, session: str) -> dict[Any, Any]:
    """Show the input widget of the picked run's task, and start its prediction process (it warms up)."""
    release(session)
    row = ctx.store.get_run(run_id) if run_id else None
    shown = [*w["groups"].values(), w["predict_row"], w["output"], w["boxes"], w["label"]]
    hidden = {g: gr.update(visible=False) for g in shown}
    if row is None:
        return {w["info"]: "Pick a run that succeeded.", w["kind"]: "json", **hidden}
    kind = widget_kind(row["task"])
    predictor_for(ctx, session, row["run_dir"])  # imports load in the background
    updates = {
        w["info"]: f"**{get_task(row['task']).title}** · run `{run_id}` · {HINTS[kind]}",
        w["kind"]: kind,
        **{g: gr.update(visible=name in SHOWS.get(kind, (kind,))) for name, g in w["groups"].items()},
        w["predict_row"]: gr.update(visible=kind != "chat"),
        w["output"]: gr.update(visible=kind != "chat", value=None),
        w["boxes"]: gr.update(visible=False, value=None),  # the previous run's results go
        w["label"]: gr.update(visible=False, value=None),
    }
    if kind == "table":
        updates[w["table"]] = table_template(row)
    return updates


def _wire_pick(ctx: Context, w: dict[str, Any], playground_tab: Any) -> None:
    def on_pick(run_id: str, request: gr.Request) -> dict[Any, Any]:
        return pick_updates(ctx, w, run_id, request.session_hash or "")

    outputs = [w["info"], w["kind"], *w["groups"].values(), w["predict_row"], w["output"], w["boxes"], w["label"]]
    outputs.append(w["table"])
    w["run"].change(on_pick, w["run"], outputs, api_visibility="private", concurrency_limit=None)
    for trigger in (w["refresh"].click, playground_tab.select):
        trigger(lambda: gr.update(choices=succeeded_runs(ctx)), None, w["run"], api_visibility="private")


def ask(ctx: Context, run_id: str, inputs: Any, session: str) -> Any:
    """The picked run's prediction for ``inputs``; the problem as an error toast."""
    row = ctx.store.get_run(run_id) if run_id else None
    if row is None:
        raise gr.Error("Pick a finished run first.")
    try:
        return predictor_for(ctx, session, row["run_dir"]).ask(inputs)
    except UserError as e:
        raise gr.Error(str(e), duration=None) from None


def _wire_predict(ctx: Context, w: dict[str, Any]) -> None:
    def on_predict(
        run_id: str,
        kind: str,
        text: str,
        json_text: str,
        table: Any,
        image: str | None,
        audio: str | None,
        request: gr.Request,
    ) -> Any:
        try:
            inputs = make_inputs(kind, text, json_text, table, image, audio)
        except UserError as e:
            raise gr.Error(str(e)) from None
        return ask(ctx, run_id, inputs, request.session_hash or "")

    def on_output(kind: str, image: str | None, output: Any) -> Any:
        return boxes_view(image if kind == "image" else None, output)

    inputs = [w["run"], w["kind"], w["text"], w["json"], w["table"], w["image"], w["audio"]]
    predicted = w["predict"].click(on_predict, inputs, w["output"], api_name="predict", concurrency_limit=4)
    predicted.then(on_output, [w["kind"], w["image"], w["output"]], w["boxes"], api_visibility="private")
    predicted.then(label_view, w["output"], w["label"], api_visibility="private")


def _wire_chat(ctx: Context, w: dict[str, Any]) -> None:
    def on_send(
        run_id: str,
        history: list[dict[str, Any]],
        message: str,
        max_new_tokens: float,
        temperature: float,
        system: str,
        request: gr.Request,
    ) -> dict[Any, Any]:
        if not message.strip():
            return {w["msg"]: ""}
        turns = [{"role": m["role"], "content": _text(m["content"])} for m in history or []]
        turns.append({"role": "user", "content": message})
        reply = ask(ctx, run_id, chat_request(turns, max_new_tokens, temperature, system), request.session_hash or "")
        return {w["chat"]: [*turns, {"role": "assistant", "content": trim_reply(str(reply))}], w["msg"]: ""}

    for trigger in (w["send"].click, w["msg"].submit):
        trigger(
            on_send,
            [w["run"], w["chat"], w["msg"], w["max_new_tokens"], w["temperature"], w["system"]],
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
