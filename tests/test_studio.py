"""Studio items a new user trips on (issue 17): the base model settled by Check, charts, ETA, run actions."""

from __future__ import annotations

import json
import time

import pytest

from engine import models
from engine.task import get_task
from ui import task_view
from ui.context import Context


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


def model_folder(path, model_type: str, arch: str):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type, "architectures": [arch]}))
    return path


# --- 1. the base model is settled before launch -------------------------------------------------


def test_base_model_problems_say_what_is_wrong_beside_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sft = get_task("llm_sft")
    bert = model_folder(tmp_path / "bert", "bert", "BertForMaskedLM")
    llama = model_folder(tmp_path / "llama", "llama", "LlamaForCausalLM")
    (tmp_path / "empty").mkdir()
    t0 = time.time()
    missing = models.base_model_problems(sft, str(tmp_path / "nope"))
    not_model = models.base_model_problems(sft, str(tmp_path / "empty"))
    wrong_class = models.base_model_problems(sft, str(bert))
    offline = models.base_model_problems(sft, "someone/not-downloaded-model")
    assert time.time() - t0 < 1.0  # offline: no waiting on the network
    assert "does not exist" in missing[0]
    assert "not a model" in not_model[0] and "config.json" in not_model[0]
    assert "BertForMaskedLM" in wrong_class[0] and "causal language model" in wrong_class[0]
    assert "offline" in offline[0] and "works online" in offline[0]
    assert all(p.field == "base_model" for p in missing + not_model + wrong_class + offline)
    assert models.base_model_problems(sft, str(llama)) == []
    # the same BERT fits text classification; tabular takes no base model at all
    assert models.base_model_problems(get_task("text_classification"), str(bert)) == []
    assert models.base_model_problems(get_task("tabular"), "") == []
    vit = model_folder(tmp_path / "vit", "vit", "ViTForImageClassification")
    assert "image model" in models.base_model_problems(get_task("text_classification"), str(vit))[0]


def test_check_refuses_a_missing_model_and_marks_the_field(tmp_path, ctx):
    from tests.test_ui_forms import write_chat_csv

    task = get_task("llm_sft")
    values = {"base_model": str(tmp_path / "no-such-model"), "data_path": str(write_chat_csv(tmp_path / "qa.csv"))}
    form_md, _, problems = task_view.check_report(ctx, task, values)
    assert "✓" not in form_md and "does not exist" in form_md
    targets = task_view.problem_targets(problems, values, ["base_model", "data_path"], ["prompt"])
    assert "does not exist" in targets["base_model"][0]
    run_id, param_problems, _ = task_view.try_start(ctx, task, values)
    assert run_id == "" and ctx.store.list_runs() == []


# --- 2, 3. what the worker reports for the charts and the ETA ---------------------------------


def test_events_keep_train_loss_apart_report_interval_throughput_and_pace(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from engine import runfiles as rf
    from engine import train_utils

    clock = [1000.0]
    monkeypatch.setattr(train_utils.time, "time", lambda: clock[0])
    monkeypatch.setattr(train_utils, "set_threads", lambda *a: 1)
    cb = train_utils.EventsCallback(tmp_path)
    args = SimpleNamespace(
        per_device_train_batch_size=4, gradient_accumulation_steps=1, world_size=1, num_train_epochs=1
    )
    state = SimpleNamespace(global_step=100, max_steps=200, epoch=1.0, num_input_tokens_seen=0)  # resumed at 100
    cb.on_train_begin(args, state, None)
    for step in range(101, 111):  # 10 steps, 0.5 s each
        clock[0] += 0.5
        state.global_step = step
        cb.on_step_end(args, state, SimpleNamespace(should_save=False, should_training_stop=False))
    cb.on_log(args, state, None, logs={"loss": 1.5, "learning_rate": 1e-4})
    cb.on_log(args, state, None, logs={"train_loss": 2.0, "train_runtime": 5.0})
    events = [e for e in rf.read_events(tmp_path, 0)[0] if isinstance(e, dict)]
    logs = [e for e in events if e["type"] == "log"]
    assert logs[0]["samples_per_second"] == pytest.approx(10 * 4 / 5.0)  # the interval's rate: no resume spike
    assert "loss" not in logs[1] and logs[1]["train_loss"] == 2.0  # no fake last `loss` point
    paces = [e for e in events if e["type"] == "progress"]
    assert paces and paces[-1]["step_time"] == pytest.approx(0.5) and paces[-1]["step"] > 101
