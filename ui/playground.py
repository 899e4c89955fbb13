"""The Playground: try a finished run's model. Predictions run in a persistent subprocess per browser
session (``ui.predict_worker``), started when a run is picked and released when another run is
picked, the tab is closed, or the app exits. The input widget follows ``task.predict_input``.
"""

from __future__ import annotations

import atexit
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from engine import data
from engine.errors import UserError
from engine.supervisor import ENGINE_ROOT, worker_env
from engine.task import get_task
from ui.context import Context
from ui.predict_worker import MARK

KINDS = ["chat", "text", "json", "table", "image", "audio"]
HINTS = {
    "chat": "Chat with the model: each message is sent with the conversation so far.",
    "text": "Type a text; the model's prediction appears on the right.",
    "json": "Enter the input as JSON (the task's predict input).",
    "table": "Fill in one or more rows; each row gets a prediction.",
    "image": "Upload an image.",
    "audio": "Upload or record audio.",
}


class Predictor:
    """One ``python -m ui.predict_worker RUN_DIR`` process, answering one request at a time."""

    def __init__(self, run_dir: str | Path, log_path: Path):
        self.run_dir = str(run_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ui.predict_worker", self.run_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(ENGINE_ROOT),
            env=worker_env(),
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith(MARK):
                self._lines.put(line[len(MARK) :])
        self._lines.put(None)

    def ask(self, inputs: Any, timeout: float = 600) -> Any:
        """The model's output for ``inputs``; UserError with the reason otherwise."""
        with self._lock:
            if self.proc.poll() is not None:
                raise UserError(f"The prediction process ended (exit code {self.proc.returncode}). Pick the run again.")
            self.proc.stdin.write(json.dumps(inputs) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            while True:
                try:
                    line = self._lines.get(timeout=timeout)
                except queue.Empty:
                    self.close()
                    raise UserError(
                        f"No prediction after {timeout:.0f}s; the prediction process was stopped."
                    ) from None
                if line is None:
                    raise UserError("The prediction process ended; see playground.log in the data folder's logs/.")
                reply = json.loads(line)
                if "ready" in reply:
                    continue
                if "error" in reply:
                    raise UserError(reply["error"])
                return reply["output"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


_SESSIONS: dict[str, Predictor] = {}
_SESSIONS_LOCK = threading.Lock()


def predictor_for(ctx: Context, session: str, run_dir: str) -> Predictor:
    """This session's predictor for ``run_dir`` (a previous one for another run is released)."""
    with _SESSIONS_LOCK:
        current = _SESSIONS.get(session)
        if current is not None and current.run_dir == str(run_dir) and current.proc.poll() is None:
            return current
        if current is not None:
            current.close()
        _SESSIONS[session] = Predictor(run_dir, ctx.data_dir / "logs" / "playground.log")
        return _SESSIONS[session]


def release(session: str) -> None:
    with _SESSIONS_LOCK:
        current = _SESSIONS.pop(session, None)
    if current is not None:
        current.close()


@atexit.register
def release_all() -> None:
    for session in list(_SESSIONS):
        release(session)


def active_predictors() -> int:
    return sum(1 for p in _SESSIONS.values() if p.proc.poll() is None)


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


def make_inputs(kind: str, text: str, json_text: str, table: Any, image: Any, audio: Any) -> Any:
    """The predict input for the widget kind; UserError for JSON that does not parse."""
    if kind == "text":
        return text
    if kind == "table":
        df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
        rows = df.replace("", None).dropna(how="all").to_dict(orient="records")
        return [{k: None if pd.isna(v) else v for k, v in r.items()} for r in rows]
    if kind == "image":
        return image
    if kind == "audio":
        return audio
    try:
        return json.loads(json_text or "null")
    except json.JSONDecodeError as e:
        raise UserError(f"The input is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}).") from None


# --- layout and wiring ------------------------------------------------------------------------


def build_and_wire(ctx: Context, demo: gr.Blocks, playground_tab: Any) -> None:
    """Lay out the tab (call inside it) and connect it."""
    with gr.Row():
        run = gr.Dropdown(choices=succeeded_runs(ctx), label="Finished run", elem_id="play-run", scale=4)
        refresh = gr.Button("Refresh", scale=0, elem_id="play-refresh")
    info = gr.Markdown("Pick a run that succeeded.", elem_id="play-info")
    kind = gr.State("json")
    groups: dict[str, Any] = {}
    with gr.Group(visible=False) as groups["chat"]:
        chat = gr.Chatbot(label="Chat", height=320, elem_id="play-chat")
        with gr.Row():
            msg = gr.Textbox(placeholder="Your message", show_label=False, scale=5, elem_id="play-msg")
            send = gr.Button("Send", variant="primary", scale=0, elem_id="play-send")
            clear = gr.Button("Clear", scale=0)
    with gr.Group(visible=False) as groups["text"]:
        text = gr.Textbox(label="Text", lines=4, elem_id="play-text")
    with gr.Group(visible=False) as groups["json"]:
        json_in = gr.Code(language="json", label="Input (JSON)", elem_id="play-json", interactive=True)
    with gr.Group(visible=False) as groups["table"]:
        table = gr.Dataframe(label="Rows", interactive=True, elem_id="play-table")
    with gr.Group(visible=False) as groups["image"]:
        image = gr.Image(type="filepath", label="Image", elem_id="play-image")
    with gr.Group(visible=False) as groups["audio"]:
        audio = gr.Audio(type="filepath", label="Audio", elem_id="play-audio")
    with gr.Row(visible=False) as predict_row:
        predict = gr.Button("Predict", variant="primary", elem_id="play-predict")
    output = gr.JSON(label="Prediction", elem_id="play-output", visible=False)

    def on_pick(run_id: str, request: gr.Request) -> list[Any]:
        release(request.session_hash or "")
        row = ctx.store.get_run(run_id) if run_id else None
        if row is None:
            return [
                "Pick a run that succeeded.",
                "json",
                *[gr.update(visible=False)] * (len(KINDS) + 2),
                gr.skip(),
            ]
        k = widget_kind(row["task"])
        predictor_for(ctx, request.session_hash or "", row["run_dir"])  # warm up: imports load in the background
        note = f"**{get_task(row['task']).title}** · run `{run_id}` · {HINTS[k]}"
        shows = [gr.update(visible=k == name) for name in KINDS]
        tmpl = table_template(row) if k == "table" else gr.skip()
        return [
            note,
            k,
            *shows,
            gr.update(visible=k != "chat"),
            gr.update(visible=k != "chat", value=None),
            tmpl,
        ]

    run.change(
        on_pick,
        run,
        [info, kind, *groups.values(), predict_row, output, table],
        api_visibility="private",
        concurrency_limit=None,
    )
    refresh.click(lambda: gr.update(choices=succeeded_runs(ctx)), None, run, api_visibility="private")
    playground_tab.select(lambda: gr.update(choices=succeeded_runs(ctx)), None, run, api_visibility="private")

    def ask(run_id: str, inputs: Any, request: gr.Request) -> Any:
        row = ctx.store.get_run(run_id) if run_id else None
        if row is None:
            raise gr.Error("Pick a finished run first.")
        try:
            return predictor_for(ctx, request.session_hash or "", row["run_dir"]).ask(inputs)
        except UserError as e:
            raise gr.Error(str(e), duration=None) from None

    def on_predict(run_id: str, k: str, t: str, j: str, tb: Any, im: Any, au: Any, request: gr.Request) -> Any:
        try:
            inputs = make_inputs(k, t, j, tb, im, au)
        except UserError as e:
            raise gr.Error(str(e)) from None
        return ask(run_id, inputs, request)

    predict.click(
        on_predict,
        [run, kind, text, json_in, table, image, audio],
        output,
        api_name="predict",
        concurrency_limit=4,
    )

    def on_send(run_id: str, history: list[dict[str, Any]], message: str, request: gr.Request) -> tuple[Any, str]:
        if not message.strip():
            return gr.skip(), ""
        turns = [{"role": m["role"], "content": _text(m["content"])} for m in history or []]
        turns.append({"role": "user", "content": message})
        reply = ask(run_id, turns, request)
        return [*turns, {"role": "assistant", "content": str(reply)}], ""

    for trigger in (send.click, msg.submit):
        trigger(on_send, [run, chat, msg], [chat, msg], api_visibility="private", concurrency_limit=4)
    clear.click(lambda: [], None, chat, api_visibility="private")

    def on_leave(request: gr.Request) -> None:
        release(request.session_hash or "")

    demo.unload(on_leave)


def _text(content: Any) -> str:
    """Chatbot message content as plain text (Gradio may hand back a list of parts)."""
    if isinstance(content, list):
        return " ".join(_text(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content)
