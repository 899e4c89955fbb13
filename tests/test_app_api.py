"""The studio's public API through gradio_client: start a tiny SFT run, poll it to `succeeded`, read metrics."""

from __future__ import annotations

import time

import pytest

from tests.tiny import chat_rows, write_jsonl
from ui.runs import DETAIL_KEYS

pytestmark = pytest.mark.slow


def poll(client, run_id: str) -> dict:
    """The run's row in the table and its final metrics, through the public `/poll` endpoint."""
    out = client.predict(run_id, "all", "all", "step", api_name="/poll")
    table = out[0]
    rows = [dict(zip(table["headers"], r, strict=True)) for r in table["data"]]
    metrics = out[1 + DETAIL_KEYS.index("metrics")]
    return {"row": next(r for r in rows if r["id"] == run_id), "metrics": metrics}


def test_start_tiny_sft_through_the_api_and_poll_to_succeeded(studio, tiny_llama, tmp_path):
    from gradio_client import Client, handle_file

    url, ctx = studio
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(48))
    client = Client(url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/start", "/check", "/config", "/preview", "/poll", "/stop_run"} <= set(api)

    # a bad value is refused with the field named, and nothing is queued
    out = client.predict(
        "llm_sft", {"base_model": str(tiny_llama), "data_path": str(data), "batch_size": 0}, api_name="/start"
    )
    assert "`batch_size` = 0" in out[0] and ctx.store.list_runs() == []

    values = {"base_model": str(tiny_llama), "data_path": str(data), "epochs": 2, "batch_size": 8, "max_length": 64}
    values |= {"learning_rate": 3e-3, "logging_steps": 2, "run_name": "api run"}
    checked = client.predict("llm_sft", values, api_name="/check")
    assert checked[0].startswith("✓ Parameters are valid"), checked
    yaml_text, command, served = client.predict("llm_sft", values, api_name="/config")
    assert "learning_rate: 0.003" in yaml_text and command.startswith("trainpad ") and served.endswith(".yaml")
    rows, note, matched = client.predict("llm_sft", values, api_name="/preview")
    assert len(rows) > 0 and matched.get("messages") == "messages", matched
    with pytest.raises(Exception, match="Unknown task 'nope'"):
        client.predict("nope", values, api_name="/start")
    sent = {k: v for k, v in values.items() if k != "data_path"} | {"upload": handle_file(str(data))}
    assert client.predict("llm_sft", sent, api_name="/check")[0].startswith("✓"), "a file sent with the call"
    with pytest.raises(Exception, match="must be a file sent with the call"):
        client.predict("llm_sft", {**sent, "upload": str(data)}, api_name="/check")  # a server path: no
    out = client.predict("llm_sft", values, api_name="/start")
    run_id = out[2]
    assert out[0] == f"✓ Queued run `{run_id}`."
    deadline = time.time() + 240
    while time.time() < deadline:
        state = poll(client, run_id)
        if state["row"]["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert state["row"]["status"] == "succeeded", ctx.store.get_run(run_id).get("error")
    assert state["row"]["name"] == "api run" and state["row"]["metric"].startswith("eval_loss=")
    metrics = state["metrics"]
    metrics = metrics["value"] if metrics.get("__type__") == "update" else metrics  # sent as gr.update(value, visible)
    assert metrics["eval_loss"] < metrics.get("train_loss", 99) + 1.0 and metrics["global_step"] > 0
    losses = [m["value"] for m in ctx.store.metrics(run_id, ["loss"])]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # it learned

    # the playground answers in its own process (the UI process never imports torch)
    from ui import predictor as predictors

    predictor = predictors.predictor_for(ctx, "test-session", ctx.store.get_run(run_id)["run_dir"])
    reply = predictor.ask([{"role": "user", "content": "what is 1 plus 2?"}], timeout=120)
    assert isinstance(reply, str)
    assert predictors.active_predictors() == 1
    predictors.release("test-session")
    assert predictors.active_predictors() == 0 and predictor.proc.poll() is not None
