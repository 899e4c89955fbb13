"""Handler-level tests of the Runs page, Playground and Evaluate trips (issues 24 and 25): a run's evaluations on
the Runs page with "Evaluate this run", side by side's Playground slots, stale Playground answers, empty results in
words, plain-text chat runs, and the charts' readability."""

from __future__ import annotations

import json
import time

import pytest

from engine.run.store import Store
from tests.fakes import fake_predictors


def record(store: Store, eval_id: str, run_id: str, metrics: dict, data: str = "/data/test.jsonl") -> None:
    """An evaluation row as the supervisor records it when an eval job succeeds."""
    store.insert_job({"id": eval_id, "kind": "eval", "run_id": run_id, "user": "", "job_dir": "/nowhere"})
    assert store.update_job_if(eval_id, "queued", {"status": "running"})
    row = {"id": eval_id, "job_id": eval_id, "user": "", "run_id": run_id, "model": run_id, "task": "llm_sft"}
    row |= {"data": data, "data_hash": "h1", "n_examples": 16, "metrics": json.dumps(metrics)}
    row |= {"key_metric_name": "exact_match", "key_metric": metrics["exact_match"], "greater_is_better": 1}
    row |= {"predictions_path": "/nowhere/predictions.jsonl", "settings": "{}"}
    assert store.finish_job_with_evaluation(eval_id, {"status": "succeeded", "ended_at": time.time()}, row)


@pytest.fixture
def studio_ctx(data_dir):
    import app

    context, demo = app.create(data_dir)
    yield context, demo
    context.engine.shutdown()


def test_runs_page_shows_a_runs_evaluations_newest_first(studio_ctx):
    from ui import runs, runs_view

    ctx, _ = studio_ctx
    store = ctx.engine.store
    store.insert_run({"id": "r1", "name": "tuned", "task": "llm_sft", "status": "succeeded", "run_dir": "/x"})
    store.insert_run({"id": "r2", "name": "other", "task": "llm_sft", "status": "running", "run_dir": "/y"})
    record(store, "e1", "r1", {"exact_match": 0.25, "chrf": 30.0}, data="/data/old.jsonl")
    record(store, "e2", "r1", {"exact_match": 0.75, "chrf": 80.5}, data="/data/test.jsonl")
    record(store, "e3", "r2", {"exact_match": 0.1})
    table = runs_view.evaluations_table(ctx, "r1")
    assert list(table["evaluation"]) == ["e2", "e1"], "newest first, only this run's"
    assert table.iloc[0]["data"] == "test.jsonl" and table.iloc[0]["key metric"] == "exact_match = 0.75"
    assert "chrf=80.5" in table.iloc[0]["metrics"] and table.iloc[0]["when"]
    c = {k: k for k in runs.EVAL_KEYS}
    shown = runs.evaluation_updates(ctx, c, "r1")
    assert shown["evals"]["visible"] and list(shown["evals"]["value"]["evaluation"]) == ["e2", "e1"]
    assert shown["evaluate"]["interactive"] and "2 evaluations" in shown["evals_note"]
    assert shown["eval_worst"]["visible"] is False
    running = runs.evaluation_updates(ctx, c, "r2")
    assert not running["evaluate"]["interactive"] and "this run is running" in running["evals_note"]
    assert "No evaluations yet" in runs_view.evaluations_note({"status": "succeeded"}, 0)
    from ui import evals

    assert evals.evaluations_frame(ctx, "r1").iloc[0]["when"], "the Evaluate page says when too"


def test_evaluate_this_run_hands_the_run_to_the_evaluate_page(studio_ctx):
    """The button's event sets the Evaluate page's model box to the run, then shows that page (in the browser)."""
    ctx, demo = studio_ctx
    ids = {b._id: getattr(b, "elem_id", None) for b in demo.blocks.values()}
    found = [
        d
        for d in demo.fns.values()
        if any(ids.get(getattr(t[0], "_id", t[0])) == "run-evaluate" for t in d.targets)
        or any(ids.get(getattr(t, "_id", t)) == "run-evaluate" for t in d.targets)
    ]
    assert found, "Evaluate this run is wired"
    outputs = {ids.get(getattr(o, "_id", o)) for d in found for o in d.outputs}
    assert "eval-model" in outputs
    assert any("tab-evaluate-button" in (d.js or "") for d in demo.fns.values())


def test_side_by_side_holds_two_models_for_one_user_of_a_shared_instance(data_dir, monkeypatch):
    """With TRAINPAD_PLAYGROUND_PER_USER's default (1), the second side's model used to evict the first side's
    while it answered; a pair now holds two slots (the user's single Playground model goes first)."""
    from engine.errors import UserError
    from engine.run.policy import Policy
    from engine.run.supervisor import Supervisor
    from ui import predictor
    from ui import side_by_side as sbs
    from ui.context import Context

    fake_predictors(monkeypatch, max_processes=3)
    ctx = Context(Supervisor(data_dir, manage_all=False, policy=Policy(shared=True)), shared=True)
    ctx.user = lambda: "ann"  # type: ignore[method-assign]
    single = predictor.predictor_for(ctx, "s", "/runs/a")
    side_a, side_b = (predictor.predictor_for(ctx, s, f"/runs/{s}", needs=sbs.SLOTS) for s in sbs.pair_sessions("s"))
    assert not side_a.closed and not side_b.closed, "both sides answer at once"
    assert single.closed, "the user's single Playground model made room"
    assert predictor.predictor_for(ctx, "s", "/runs/a") and side_a.closed and side_b.closed, "back to one model"
    monkeypatch.setattr(predictor, "MAX_PROCESSES", 1)
    with pytest.raises(UserError, match="TRAINPAD_MAX_PLAYGROUND"):
        sbs.check_slots()
    assert "off here" in sbs.slots_note()


def test_empty_results_are_said_in_words():
    """Issue 24 item 4: an empty transcript showed as `{…}`, a detection with nothing found as `objects: []`."""
    from ui import playground

    words = playground.result_words("audio", "")
    assert words["visible"] and "No speech recognised" in words["value"]
    assert playground.result_words("audio", "hello there")["visible"] is False
    found = playground.with_threshold("object_detection", {"objects": [], "size": [64, 64]})
    assert found["score_threshold"] == 0.5, "object detection's predict keeps boxes scoring 0.5 or more"
    assert playground.result_words("image", found)["value"] == "**0 boxes found** above score 0.5."
    one = {"objects": [{"label": "cat", "score": 0.9, "box": [0, 0, 5, 5]}], "score_threshold": 0.3}
    assert playground.result_words("image", one)["value"] == "**1 box found** above score 0.3."
    assert playground.with_threshold("image_classification", {"label": "cat"}) == {"label": "cat"}
    assert playground.result_words("text", {"label": "cat", "scores": {"cat": 1.0}})["visible"] is False


def test_an_empty_transcript_hides_the_json_box(data_dir, monkeypatch):
    from ui import playground

    class Ctx:
        class store:  # noqa: N801 - a stand-in for the run store
            get_run = staticmethod(lambda rid: {"id": rid, "task": "asr", "run_dir": "/nowhere"})

    monkeypatch.setattr(playground, "ask", lambda *a: "")
    (output, _), *_ = list(playground.predictions(Ctx(), "r1", ("", "", None, None, "/clip.wav"), "s"))
    assert output["visible"] is False and output["value"] == '""'
    monkeypatch.setattr(playground, "ask", lambda *a: "hi there")
    (output, _), *_ = list(playground.predictions(Ctx(), "r1", ("", "", None, None, "/clip.wav"), "s"))
    assert output["visible"] and output["value"] == '"hi there"'


def test_only_detection_mentions_boxes_in_the_playground():
    """Issue 24 item 7: image classification's Playground said "boxes drawn"."""
    from ui import playground

    assert "box" not in playground.hint("image_classification").lower()
    assert "box" not in playground.hint("image_regression").lower()
    assert "boxes are drawn" in playground.hint("object_detection")


def test_a_chat_model_trained_on_plain_text_gets_its_own_format(studio_ctx, monkeypatch):
    """Issue 24 item 5: a model trained on plain "User:/Assistant:" text answered starting with "Assistant:" (the
    Playground wrapped the message in the tokenizer's chat template, which the run never learned)."""
    import gradio as gr

    from ui import playground

    ctx, _ = studio_ctx
    store = ctx.engine.store
    plain = {"column_mapping": {"text": "body"}}
    store.insert_run({"id": "plain", "task": "llm_sft", "status": "succeeded", "params": json.dumps(plain)})
    chats = {"column_mapping": {"prompt": "q", "completion": "a"}}
    store.insert_run({"id": "chat", "task": "llm_sft", "status": "succeeded", "params": json.dumps(chats)})
    asked = []

    def fake_stream(ctx, run_id, request, session):
        asked.append(request)
        yield "Assistant: Paris is the capital.\nUser: and Spain?"

    monkeypatch.setattr(playground, "stream_answer", fake_stream)
    settings = (32, 0.0, 1.0, "be brief")
    history = [{"role": "user", "content": "User: hi"}, {"role": "assistant", "content": "Hello"}]
    *_, last = playground.chat_replies(ctx, "plain", history, "User: capital of France?\nAssistant:", settings, "s")
    assert (
        asked[-1]["prompt"] == "User: hi\nHello\nUser: capital of France?\nAssistant:" and "messages" not in asked[-1]
    )
    assert last[-1] == {"role": "assistant", "content": "Paris is the capital."}
    *_, last = playground.chat_replies(ctx, "chat", [], "capital of France?", settings, "s")
    assert asked[-1]["messages"][0] == {"role": "system", "content": "be brief"}, "a chat run keeps its template"
    monkeypatch.setattr(playground, "predictor_for", lambda *a: None)
    with gr.Blocks():
        w = playground._layout(ctx)
    assert "trained on plain text" in playground.pick_updates(ctx, w, "plain", "s")[w["info"]]
    assert "plain text" not in playground.pick_updates(ctx, w, "chat", "s")[w["info"]]


# --- charts and result views (issue 24 items 2 and 7) ----------------------------------------------------------


@pytest.fixture
def run_ctx(supervisor):
    from ui.context import Context

    return Context(supervisor)


def test_feature_importance_is_the_top_15_as_horizontal_bars_in_order(run_ctx, tmp_path):
    import pandas as pd

    from engine.train import charts
    from ui import runs, runs_view

    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    names = [f"column_with_a_long_name_{i:02d}" for i in range(30)]
    pd.DataFrame({"feature": names, "importance": [i / 30 for i in range(30)]}).to_csv(
        run_dir / "model" / "feature_importance.csv", index=False
    )
    table = runs_view.results(run_dir)["importance"]
    assert len(table) == charts.IMPORTANCE_TOP == 15
    shown = [f.strip(runs_view.RANK_MARK) for f in table["feature"]]
    assert shown == names[::-1][:15], "the most important first, names as they are"
    assert sorted(table["feature"]) == list(table["feature"]), "the plot's alphabetical order is the rank order"
    import gradio as gr

    parts: dict = {}
    with gr.Blocks():
        runs._results(parts)
    bars = parts["importance"]
    assert (bars.x, bars.y) == ("importance", "feature"), "horizontal bars: names on the y axis"


def test_charts_draw_lines_only_and_say_single_values_in_words(run_ctx):
    """Issue 24 item 2: one-point charts were a lonely dot with axis labels like 19,136.286579; item 7: the final
    evaluation at the last step drew a vertical line."""
    from tests.test_ui_runs import fake_run
    from ui import runs, runs_view

    t0 = time.time() - 60
    metrics = [
        {"step": 1, "epoch": 0.1, "name": "loss", "value": 3.0, "time": t0 + 1},
        {"step": 1, "epoch": 0.1, "name": "learning_rate", "value": 2e-4, "time": t0 + 1},
        {"step": 1, "epoch": 0.1, "name": "tokens_per_second", "value": 19136.286579, "time": t0 + 1},
        {"step": 5, "epoch": 0.5, "name": "loss", "value": 2.0, "time": t0 + 5},
        {"step": 5, "epoch": 0.5, "name": "eval_loss", "value": 2.2, "time": t0 + 5},
        {"step": 10, "epoch": 1.0, "name": "eval_loss", "value": 1.9, "time": t0 + 9},
        {"step": 10, "epoch": 1.0, "name": "eval_loss", "value": 1.8, "time": t0 + 10},  # the final evaluation
    ]
    fake_run(run_ctx, "r", "succeeded", metrics=metrics)
    view = runs_view.run_view(run_ctx, "r")
    loss = view["charts"]["loss"]
    assert loss[loss["series"] == "validation loss"]["step"].tolist() == [5, 10], "one value per step"
    assert loss[loss["series"] == "validation loss"]["value"].tolist() == [2.2, 1.8], "the final evaluation's kept"
    updates = runs.detail_updates(run_ctx, "r", "step")
    assert updates["loss"].constructor_args["visible"] is True
    assert (
        updates["lr"].constructor_args["visible"] is False
        and updates["throughput"].constructor_args["visible"] is False
    )
    words = updates["points"]
    assert words["visible"] and "**Learning rate**: learning rate 0.0002 (step 1)" in words["value"]
    assert "tokens/s 19,136 (step 1)" in words["value"] and "286579" not in words["value"]
    assert runs.PLOT["colors_in_legend"] == [], "no stray legend titled `series`"


def test_a_time_limited_run_has_an_eta_from_its_time_limit(run_ctx):
    """Issue 24 item 7: tabular showed no ETA although its time limit is known (its steps are trials)."""
    from tests.test_ui_runs import fake_run
    from ui import runs_view

    fake_run(run_ctx, "t", "running", params={"time_limit": 120}, step=7, max_steps=3)
    eta = runs_view.eta_seconds(run_ctx, run_ctx.store.get_run("t"))
    assert eta is not None and 25 <= eta <= 31, eta  # started 90 s ago with 120 s to go
    assert (
        "ETA 30s" in runs_view.run_view(run_ctx, "t")["header"]
        or "ETA 29s" in runs_view.run_view(run_ctx, "t")["header"]
    )
    fake_run(run_ctx, "s", "running", step=0, max_steps=100)
    assert runs_view.eta_seconds(run_ctx, run_ctx.store.get_run("s")) is None, "no time limit, no guess"


def test_the_docs_tab_names_the_start_button():
    """Issue 24 item 7: the Docs tab (README.md) said "press **Train**", but the button that queues a run is Start."""
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "press **Train**" not in text and "press **Start**" in text


def test_side_by_side_asks_a_plain_text_run_in_its_own_format_and_closing_the_tab_frees_both(monkeypatch):
    from ui import predictor
    from ui import side_by_side as sbs

    plain = {"params": {"column_mapping": {"text": "body"}}}
    assert sbs.request_for("llm_sft", "User: hi", plain) == {"prompt": "User: hi", "stream": True}
    chat = sbs.request_for("llm_sft", "hi", {"params": {}})
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert sbs.request_for("text_classification", "great film", plain) == "great film"
    closed = []

    class Fake:
        def close(self):
            closed.append(self)

    sessions = {"abc": Fake(), "abc:sbs0": Fake(), "abc:sbs1": Fake(), "abcd": Fake()}
    monkeypatch.setattr(predictor, "_SESSIONS", dict(sessions))
    predictor.release_browser("abc")
    assert list(predictor._SESSIONS) == ["abcd"] and len(closed) == 3
