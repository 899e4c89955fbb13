"""The Evaluate page and the Playground's side by side, at the handler level: a run's evaluations, base vs runs on
the same test data (best marked), votes saved as preference rows and exported as DPO / KTO data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.eval import preferences as prefs
from engine.run.store import Store


def record(store: Store, eval_id: str, model: str, run_id: str, metrics: dict, data_hash: str = "h1") -> None:
    """An evaluation row as the supervisor records it when an eval job succeeds."""
    store.insert_job({"id": eval_id, "kind": "eval", "run_id": run_id, "user": "", "job_dir": "/nowhere"})
    assert store.update_job_if(eval_id, "queued", {"status": "running"})
    row = {"id": eval_id, "job_id": eval_id, "user": "", "run_id": run_id, "model": model, "task": "llm_sft"}
    row |= {"data": "/data/test.jsonl", "data_hash": data_hash, "n_examples": 16, "metrics": json.dumps(metrics)}
    row |= {"key_metric_name": "exact_match", "key_metric": metrics["exact_match"], "greater_is_better": 1}
    row |= {"predictions_path": "/nowhere/predictions.jsonl", "settings": "{}"}
    assert store.finish_job_with_evaluation(eval_id, {"status": "succeeded", "ended_at": time.time()}, row)


@pytest.fixture
def ctx(data_dir):
    import app

    context, demo = app.create(data_dir)
    yield context
    context.engine.shutdown()


def test_compare_marks_the_best_model_on_the_same_test_data(ctx):
    from ui import evals

    store = ctx.engine.store
    store.insert_run({"id": "r1", "name": "tuned", "task": "llm_sft", "status": "succeeded"})
    record(store, "e1", "/models/base", "", {"exact_match": 0.0, "chrf": 1.0})
    record(store, "e2", "r1", "r1", {"exact_match": 0.94, "chrf": 96.4})
    record(store, "e3", "r1", "r1", {"exact_match": 0.5, "chrf": 50.0}, data_hash="other")
    table, chart = evals.compare_frame(ctx, "h1")
    assert list(table.columns[:3]) == ["model", "kind", "exact_match"], "key metric first"
    assert table.iloc[0]["model"] == "tuned (r1)" and table.iloc[0]["exact_match"] == f"0.94 {evals.BEST}"
    assert table.iloc[1]["model"] == "base: base" and table.iloc[1]["kind"] == "base model"
    assert table.iloc[1]["exact_match"] == "0" and "chrf" in table.columns
    assert chart.to_dict("records") == [{"model": "tuned (r1)", "value": 0.94}, {"model": "base: base", "value": 0.0}]
    assert {v for _, v in evals.data_choices(ctx)} == {"h1", "other"}
    history = evals.evaluations_frame(ctx, "r1")
    assert list(history["evaluation"]) == ["e3", "e2"] and "exact_match = 0.94" in history.iloc[1]["key metric"]


def test_evaluate_form_refuses_plainly_before_queueing(ctx, tmp_path):
    import gradio as gr

    from ui import evals

    with pytest.raises(gr.Error, match="Pick the model to evaluate"):
        evals.submit(ctx, "", "", "", None, "none", "", "")
    with pytest.raises(gr.Error, match="needs its task"):
        evals.submit(ctx, str(tmp_path), "", "", None, "none", "", "")
    assert ctx.engine.store.list_jobs() == []
    request = evals.eval_request("r1", "", " ", None, "pairwise", "r2", "")
    assert (request.data, request.judge, request.against) == ("valid", "pairwise", "r2")


def test_votes_become_dpo_and_kto_rows(ctx):
    from ui import side_by_side as sbs

    with pytest.raises(UserError, match="Ask both models first"):
        sbs.vote(ctx, "A", "hi", "", "", "r1", "base")
    assert "1 votes" in sbs.vote(ctx, "A", "what is 2 plus 2?", "4", "5", "r1", "/models/base")
    sbs.vote(ctx, "B", "capital of France?", "Rome", "Paris", "r1", "/models/base")
    sbs.vote(ctx, "tie", "hello", "hi", "hey", "r1", "/models/base")
    votes = prefs.read_votes(prefs.votes_file(ctx.data_dir, ""))
    assert [v["vote"] for v in votes] == ["A", "B", "tie"] and votes[0]["model_a"] == "r1"
    dpo = [json.loads(line) for line in Path(sbs.export(ctx, "dpo")).read_text().splitlines()]
    assert dpo == [
        {"prompt": "what is 2 plus 2?", "chosen": "4", "rejected": "5"},
        {"prompt": "capital of France?", "chosen": "Paris", "rejected": "Rome"},
    ]
    kto = [json.loads(line) for line in Path(sbs.export(ctx, "kto")).read_text().splitlines()]
    assert len(kto) == 6 and kto[0] == {"prompt": "what is 2 plus 2?", "completion": "4", "label": True}
    assert kto[1]["label"] is False and kto[4]["label"] is True and kto[5]["label"] is True


def test_shown_answers_classifier_distributions_as_labels():
    from ui.side_by_side import shown

    assert shown({"label": "tech", "scores": {"tech": 0.7, "food": 0.3}}) == ("tech", {"tech": 0.7, "food": 0.3})
    assert shown("a reply") == ("a reply", None)


@pytest.mark.slow
def test_two_chat_models_answer_side_by_side(ctx, tiny_llama):
    """A run and its base model answer one message at once, each in its own prediction process."""
    import shutil

    import yaml

    from ui import predictor
    from ui import side_by_side as sbs

    run_dir = ctx.data_dir / "runs" / "r1"
    shutil.copytree(tiny_llama, run_dir / "model")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "llm_sft", "params": {}}))
    ctx.engine.store.insert_run({"id": "r1", "name": "r1", "task": "llm_sft", "status": "succeeded"})
    ctx.engine.store.update_run("r1", run_dir=str(run_dir))
    try:
        updates = list(sbs.both_answers(ctx, "s1", "r1", str(tiny_llama), "what is 2 plus 3?"))
    finally:
        predictor.release_all()
    final_a, final_b = updates[-1]
    assert isinstance(final_a, str) and final_a == final_b, "the same weights answer the same, greedily"
    assert len(updates) >= 2
    with pytest.raises(UserError, match="pick a run on the other side"):
        list(sbs.both_answers(ctx, "s2", str(tiny_llama), str(tiny_llama), "hi"))
