"""Handler-level tests of the Runs page: table, run detail, charts, compare, actions; system/backends."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from engine import runfiles as rf
from engine.preflight import system
from engine.run import backends, procs
from engine.train import charts
from ui import run_actions, runs, runs_view
from ui.context import Context


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


def fake_run(ctx: Context, run_id: str, status: str, params: dict | None = None, metrics: list | None = None, **row):
    """A run row plus its folder, as the supervisor and worker would leave them."""
    run_dir = ctx.engine.runs_dir / run_id
    run_dir.mkdir(parents=True)
    params = {"base_model": "m", "epochs": 1.0, "learning_rate": 0.001, **(params or {})}
    (run_dir / rf.CONFIG).write_text(f"task: llm_sft\nname: {run_id}\nparams:\n  epochs: {params['epochs']}\n")
    (run_dir / rf.LOG).write_text("loading\nstep 1\nstep 2\n")
    ctx.store.insert_run(
        {
            "id": run_id,
            "name": f"name-{run_id}",
            "task": "llm_sft",
            "status": status,
            "backend": "local",
            "params": json.dumps(params),
            "base_model": "m",
            "run_dir": str(run_dir),
            "key_metric_name": "eval_loss",
            "started_at": time.time() - 90,
            # a `running` row owned by this process and without a pid reads, to the live supervisor, as one being
            # launched: it leaves it alone (otherwise it records the run as interrupted mid-test)
            **(
                {"owner_pid": procs.this_process()[0], "owner_started": procs.this_process()[1]}
                if status == "running"
                else {}
            ),
            **row,
        }
    )
    ctx.store.add_metrics(run_id, metrics or [])
    return run_dir


def points(n: int, t0: float | None = None) -> list[dict]:
    t0 = t0 or time.time() - 60
    out = []
    for s in range(1, n + 1):
        out += [
            {"step": s, "epoch": s / n, "name": "loss", "value": 3.0 / s, "time": t0 + s},
            {"step": s, "epoch": s / n, "name": "learning_rate", "value": 1e-3, "time": t0 + s},
            {"step": s, "epoch": s / n, "name": "tokens_per_second", "value": 1000.0 + s, "time": t0 + s},
        ]
    out.append({"step": n, "epoch": 1.0, "name": "eval_loss", "value": 0.5, "time": t0 + n})
    out.append({"step": n, "epoch": 1.0, "name": "eval_accuracy", "value": 0.9, "time": t0 + n})
    return out


def test_runs_table_lists_every_run_with_filters(ctx):
    fake_run(
        ctx,
        "r1",
        "succeeded",
        metrics=points(4),
        step=4,
        max_steps=4,
        key_metric=0.5,
        started_at=1000.0,
        ended_at=1060.0,
    )
    fake_run(ctx, "r2", "running", metrics=points(2), step=2, max_steps=10)
    fake_run(ctx, "r3", "failed", error="Column `text` is empty in 2 row(s): 3, 7.")
    table = runs_view.runs_table(ctx)
    assert list(table.columns) == runs_view.TABLE_COLUMNS
    assert list(table["id"]) == ["r3", "r2", "r1"]  # newest first
    r1 = table[table["id"] == "r1"].iloc[0]
    assert r1["status"] == "succeeded" and r1["progress"] == "4/4 (100%)" and r1["metric"] == "eval_loss=0.5"
    assert r1["duration"] == "1m00s"
    assert list(runs_view.runs_table(ctx, status="running")["id"]) == ["r2"]
    assert runs_view.runs_table(ctx, task="text_classification").empty
    assert runs_view.any_active(ctx)


def test_run_view_shows_charts_progress_eta_and_error(ctx):
    fake_run(ctx, "r2", "running", metrics=points(5), step=5, max_steps=10)
    view = runs_view.run_view(ctx, "r2")
    assert set(view["charts"]["loss"]["series"]) == {"training loss", "validation loss"}
    assert list(view["charts"]["lr"]["series"].unique()) == ["learning rate"]
    assert list(view["charts"]["throughput"]["series"].unique()) == ["tokens/s"]
    assert list(view["charts"]["other"]["series"].unique()) == ["validation accuracy"]
    assert "5/10 (50%)" in view["header"] and "ETA 5s" in view["header"]  # one step per second, 5 to go
    assert view["log"].endswith("step 2\n") and view["can"]["stop"] and not view["can"]["delete"]
    epoch = runs_view.chart_frame(ctx, "r2", ["loss"], x="epoch")
    assert epoch["epoch"].tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]

    fake_run(ctx, "r3", "failed", error="Column `text` is empty in 2 row(s): 3, 7.")
    view = runs_view.run_view(ctx, "r3")
    assert view["error"].startswith("Column `text` is empty") and view["can"]["delete"] and not view["can"]["stop"]
    updates = runs.detail_updates(ctx, "r3", "step")
    assert set(updates) == set(runs.DETAIL_KEYS)
    error_update = updates["error"]
    assert error_update["visible"] and "This run failed" in error_update["value"]
    assert runs_view.run_view(ctx, "nope") is None


def test_chart_rules_place_metrics_by_name():
    assert charts.chart_of("loss") == charts.chart_of("eval_loss") == "loss"
    assert charts.chart_of("learning_rate") == "lr"
    assert charts.chart_of("tokens_per_second") == charts.chart_of("steps_per_second") == "throughput"
    assert charts.chart_of("eval_accuracy") == charts.chart_of("eval_f1") == charts.chart_of("perplexity") == "other"
    for summary in ("train_loss", "train_runtime", "train_samples_per_second", "eval_runtime", "eval_steps_per_second"):
        assert charts.chart_of(summary) is None, summary
    for bookkeeping in ("grad_norm", "total_flos", "num_input_tokens_seen", "global_step", "num_train_epochs"):
        assert charts.chart_of(bookkeeping) is None, bookkeeping
    names = ["eval_loss", "samples_per_second", "tokens_per_second", "eval_f1", "loss", "eval_accuracy", "train_loss"]
    assert charts.group(names) == {
        "loss": ["loss", "eval_loss"],  # training first, then validation
        "lr": [],
        "throughput": ["tokens_per_second"],  # one series: tokens/s wins over samples/s
        "other": ["eval_accuracy", "eval_f1"],
        **{chart: [] for chart in ("reward", "reward_std", "completion", "policy")},  # RL runs' charts
    }
    assert charts.group(["samples_per_second"])["throughput"] == ["samples_per_second"]
    assert list(charts.group([])) == list(charts.CHARTS) == [k for k in runs.DETAIL_KEYS if k in charts.CHARTS]


def test_actions_download_duplicate_delete(ctx):
    run_dir = fake_run(ctx, "r1", "succeeded", params={"epochs": 2.0})
    (run_dir / rf.MODEL_DIR).mkdir()
    (run_dir / rf.MODEL_DIR / "config.json").write_text("{}")
    assert runs_view.run_view(ctx, "r1")["can"]["download"]
    zipped = run_actions.download_zip(ctx, "r1")
    assert zipped.parent == ctx.exports_dir and zipfile.ZipFile(zipped).namelist() == ["config.json"]
    request = run_actions.duplicate_request(ctx, "r1")
    assert request["task"] == "llm_sft" and request["params"]["epochs"] == 2.0 and request["name"] == "name-r1 (copy)"
    ctx.supervisor.delete("r1")
    assert ctx.store.get_run("r1") is None and not run_dir.exists()


def test_merge_is_offered_only_for_an_unmerged_adapter(ctx):
    run_dir = fake_run(ctx, "r1", "succeeded")
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    assert runs_view.run_view(ctx, "r1")["can"]["merge"]
    (run_dir / "merged").mkdir()  # what engine.run.merge writes
    assert not runs_view.run_view(ctx, "r1")["can"]["merge"]
    (run_dir / "merged").rmdir()
    (run_dir / rf.MODEL_DIR).mkdir()
    (run_dir / rf.MODEL_DIR / "config.json").write_text("{}")  # merged at the end of training
    assert not runs_view.run_view(ctx, "r1")["can"]["merge"]


def test_compare_overlays_loss_and_shows_only_differing_params(ctx):
    fake_run(ctx, "a", "succeeded", params={"learning_rate": 0.001}, metrics=points(3))
    fake_run(ctx, "b", "succeeded", params={"learning_rate": 0.01}, metrics=points(4))
    curves, diff = runs_view.compare(ctx, ["a", "b"])
    names = {"name-a · training loss", "name-a · validation loss", "name-b · training loss", "name-b · validation loss"}
    assert set(curves["series"]) == names
    assert diff["parameter"].tolist() == ["learning_rate"]
    assert diff.iloc[0].tolist() == ["learning_rate", "0.001", "0.01"]


def test_restore_reattaches_to_the_saved_or_the_active_run(ctx):
    fake_run(ctx, "done", "succeeded")
    assert runs.restore(ctx, "done")[0] == "done"
    assert runs.restore(ctx, "gone")[0] == ""
    fake_run(ctx, "live", "running")
    rid, timer, table = runs.restore(ctx, None)
    assert rid == "live" and timer.active
    assert set(table["id"]) == {"done", "live"}


def test_runs_table_is_filled_when_the_page_opens_with_nothing_running(ctx):
    """With no active run the timer never ticks: the page's load event itself fills the table."""
    from ui import studio

    fake_run(ctx, "old", "succeeded")
    demo = studio.build_demo(ctx)
    load = next(f for f in demo.fns.values() if f.name == "on_load")
    table = next(c for c in load.outputs if getattr(c, "elem_id", None) == "runs-table")
    assert load.fn("", "")[table]["id"].tolist() == ["old"]


def test_system_resources_without_torch():
    res = system.resources()
    assert res.cpu_cores >= 1 and res.ram_gb > 0
    gpus = system.parse_nvidia_smi("NVIDIA A10G, 23028\nNVIDIA A10G, 23028\n")
    assert gpus == [system.Gpu("NVIDIA A10G", 22.5)] * 2
    text = system.summary(system.Resources(8, 31.3, gpus))
    assert text == "8 CPU cores · 31.3 GB RAM · GPU: 2× NVIDIA A10G (22.5 GB)"
    assert system.summary(system.Resources(2, 4.0)).endswith("no GPU")


def test_backends_list_local_with_its_concurrency():
    local = backends.all_backends(3)[0]
    assert local.name == "local" and local.concurrency == 3 and "3 runs at a time" in local.title
    with pytest.raises(ValueError, match="Valid: local"):
        backends.get_backend("slurm")


def test_local_models_are_listed(ctx):
    model = ctx.models_dir / "my-model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    assert ctx.local_models() == [str(model)]
    assert Path(ctx.exports_dir).is_dir()


def test_playground_inputs_follow_the_task():
    from ui import playground

    assert playground.widget_kind("llm_sft") == "chat"
    assert playground.make_inputs("text", "hello", "", None) == "hello"
    assert playground.make_inputs("json", "", '{"a": 1}', None) == {"a": 1}
    assert playground.make_inputs("table", "", "", '{"x": 1, "y": null}') == {"x": 1, "y": None}
    with pytest.raises(Exception, match="not valid JSON"):
        playground.make_inputs("json", "", "{oops", None)


def test_compare_ranks_runs_by_their_key_metric(ctx):
    for run_id, loss in (("a", 0.7), ("b", 0.4)):
        run_dir = fake_run(ctx, run_id, "succeeded", metrics=points(3), step=3, max_steps=3, key_metric=loss)
        (run_dir / rf.METRICS).write_text(json.dumps({"eval_loss": loss, "train_loss": 1.0, "eval_runtime": 2.0}))
    table = runs_view.metrics_table(ctx, ["a", "b"])
    assert list(table.columns) == ["run", "status", "steps", "duration", "key metric", "eval_loss", "train_loss"]
    assert table["eval_loss"].tolist() == ["0.7", "0.4"] and table["key metric"].tolist()[1] == "eval_loss=0.4"


def test_charts_have_colours_readable_names_and_the_parents_curve(ctx):
    fake_run(ctx, "p", "stopped", metrics=points(4), step=4, max_steps=8)
    fake_run(ctx, "c", "running", parent_id="p", step=6, max_steps=8, metrics=[
        {"step": s, "epoch": s / 8, "name": "loss", "value": 1.0 / s, "time": time.time() - 10 + s} for s in (5, 6)
    ])  # fmt: skip
    loss = runs_view.run_view(ctx, "c")["charts"]["loss"]
    assert loss[loss["series"] == "training loss"]["step"].tolist() == [1, 2, 3, 4, 5, 6]  # the parent's curve too
    update = runs.plot_update(loss, "step", "Loss")
    assert set(update.color_map) == {"training loss", "validation loss"}  # every series coloured from the start
    assert update.label == "Loss — training loss (blue), validation loss (orange)"
    assert not runs.plot_update(loss.iloc[0:0], "step", "Loss", hide_empty=True).visible  # no empty panels


def test_eta_waits_for_measured_steps_then_uses_the_step_time(ctx):
    t0 = time.time() - 30
    fake_run(ctx, "r", "running", step=1, max_steps=838, metrics=points(1, t0)[:1])
    assert runs_view.eta_seconds(ctx, ctx.store.get_run("r")) is None
    assert "ETA estimating…" in runs_view.run_view(ctx, "r")["header"]
    ctx.store.add_metrics("r", [{"step": 3, "epoch": 0.1, "name": "step_time", "value": 0.03, "time": t0 + 1}])
    ctx.store.update_if("r", "running", {"step": 38})
    assert 23.9 < runs_view.eta_seconds(ctx, ctx.store.get_run("r")) < 24.1  # 800 steps x 0.03 s
    assert charts.chart_of("step_time") is None and charts.chart_of("train_loss") is None


def test_resume_is_offered_only_where_training_is_left(ctx):
    for run_id, status in (("done", "succeeded"), ("halted", "stopped")):
        run_dir = fake_run(ctx, run_id, status)
        (run_dir / rf.CHECKPOINTS / "checkpoint-4").mkdir(parents=True)
    can_done, can_halted = (runs_view.run_view(ctx, r)["can"] for r in ("done", "halted"))
    assert not can_done["resume"] and can_done["duplicate"]  # no 0-step copy of a finished run
    assert can_halted["resume"]


def test_queued_run_shows_its_place_and_the_table_stays_short(ctx, tmp_path):
    ctx.engine.shutdown()  # the fake queued runs must stay queued
    fake_run(ctx, "q1", "queued", started_at=None, base_model=str(tmp_path / "models" / "org" / "tiny-llama"))
    fake_run(ctx, "q2", "queued", started_at=None)
    header = runs_view.run_view(ctx, "q2")["header"]
    assert "1 run ahead in the queue" in header
    table = runs_view.runs_table(ctx)
    assert table[table["id"] == "q1"]["base model"].iloc[0] == "…/org/tiny-llama"


def test_switching_runs_hides_the_previous_download_link(ctx):
    with gr.Blocks():
        page = runs.build(ctx, gr.Textbox(render=False), gr.BrowserState(""))
    updates = runs.switch_updates(ctx, page, "r2")
    file_update, confirm_update = updates[page["file"]], updates[page["confirm_row"]]
    assert file_update["visible"] is False and file_update["value"] is None and confirm_update["visible"] is False
    assert updates[page["shown"]] == updates[page["saved_run"]] == "r2"
    assert set(updates) == set(runs.switch_outputs(page))


def test_log_tail_reads_as_lines_not_dict_reprs():
    raw = (
        "[trainpad] training on cpu\n"
        "/x/trainer.py:12: FutureWarning: `tokenizer` is deprecated\n"
        "  warnings.warn(\n"
        "{'loss': 5.871, 'grad_norm': 3.2, 'learning_rate': 0.0002, 'epoch': 2.0}\n"
        "{'eval_loss': 5.7, 'eval_runtime': 0.16, 'epoch': 2.0}\n"
    )
    assert runs_view.readable_log(raw) == (
        "[trainpad] training on cpu\nepoch 2.00 · loss 5.871 · lr 2.00e-04\nepoch 2.00 · validation loss 5.7\n"
    )
    # transformers 5.24 as it really prints (values as strings), copied from a run's train.log
    real = (
        "{'loss': '5.996', 'grad_norm': '1.081', 'learning_rate': '0.0002', 'epoch': '0.1667', "
        "'num_input_tokens_seen': 128, 'train_runtime': '0.0185', 'train_tokens_per_second': '6919'}\n"
        "{'eval_loss': '5.923', 'eval_runtime': '0.0046', 'eval_samples_per_second': '433.1', "
        "'eval_steps_per_second': '216.5', 'epoch': '1', 'num_input_tokens_seen': 754}\n"
    )
    assert runs_view.readable_log(real) == (
        "epoch 0.17 · loss 5.996 · lr 2.00e-04 · tokens/s 6919\nepoch 1.00 · validation loss 5.923\n"
    )


def test_results_show_what_the_task_wrote_and_nothing_empty(ctx):
    run_dir = fake_run(ctx, "cls", "succeeded")
    (run_dir / "confusion_matrix.json").write_text(json.dumps({"labels": ["cat", "dog"], "matrix": [[8, 2], [1, 9]]}))
    (run_dir / rf.MODEL_DIR).mkdir()
    pd.DataFrame({"model": ["xgboost", "linear"], "cv_score": [0.91, 0.85]}).to_csv(
        run_dir / rf.MODEL_DIR / "leaderboard.csv", index=False
    )
    pd.DataFrame({"feature": ["age", "fare"], "importance": [0.1, 0.3]}).to_csv(
        run_dir / rf.MODEL_DIR / "feature_importance.csv", index=False
    )
    found = runs_view.run_view(ctx, "cls")["results"]
    assert found["confusion"].columns.tolist()[1:] == ["cat", "dog"] and found["confusion"]["dog"].tolist() == [2, 9]
    cat = found["per_class"].iloc[0]
    assert (cat["precision"], cat["recall"], cat["support"]) == (round(8 / 9, 3), 0.8, 10)
    assert found["leaderboard"]["model"].tolist() == ["xgboost", "linear"]
    assert [f.strip(runs_view.RANK_MARK) for f in found["importance"]["feature"]] == ["fare", "age"]  # biggest first
    updates = runs.detail_updates(ctx, "cls", "step")
    assert set(updates) == set(runs.DETAIL_KEYS) and updates["importance"]["visible"]
    fake_run(ctx, "bare", "succeeded")
    assert not any(runs.detail_updates(ctx, "bare", "step")[k]["visible"] for k in charts.RESULTS)


def test_playground_inputs_for_images_with_a_question_and_audio():
    from engine.errors import UserError
    from ui import playground

    assert playground.make_inputs("image_text", "what colour?", "", None, image="/x/a.png") == {
        "image": "/x/a.png",
        "question": "what colour?",
    }
    assert playground.make_inputs("image_text", " ", "", None, image="/x/a.png") == {"image": "/x/a.png"}
    assert playground.make_inputs("audio", "", "", None, audio="/x/clip.wav") == "/x/clip.wav"
    with pytest.raises(UserError, match="Upload or record a clip"):
        playground.make_inputs("audio", "", "", None)
    assert playground.widget_kind("asr") == "audio" and playground.widget_kind("vlm") == "image_text"


def test_where_a_run_executes_is_shown():
    assert runs_view.where_text({"backend": "ray"}) == "ray"
    assert runs_view.where_text({"backend": "local", "devices": "0,1"}) == "GPU 0,1"
    assert runs_view.where_text({"devices": "cpu"}) == "CPU" and runs_view.where_text({}) == ""


@pytest.mark.slow
def test_compare_runs_through_the_api_takes_run_ids_and_only_the_users_own(data_dir, monkeypatch):
    """``/compare_runs`` with run ids through gradio_client; on a shared studio another user's ids are refused."""
    from ui import context

    monkeypatch.setattr(context, "_CURRENT", [])  # the shared studio registers itself: not for the next tests
    from gradio_client import Client

    import app
    from tests.conftest import free_port

    ctx, demo = app.create(data_dir, shared=True)
    users = [("ann", "pw-ann"), ("bob", "pw-bob")]
    port = free_port()
    app.launch(ctx, demo, port=port, auth=users, prevent_thread_lock=True, quiet=True)
    try:
        engine = Context(ctx.engine)  # the whole store, to write rows as the supervisor would
        fake_run(engine, "a", "succeeded", params={"learning_rate": 0.001}, metrics=points(3), user="ann")
        fake_run(engine, "b", "succeeded", params={"learning_rate": 0.01}, metrics=points(4), user="ann")
        fake_run(engine, "c", "succeeded", metrics=points(2), user="bob")
        url = f"http://127.0.0.1:{port}/"
        ann, bob = (Client(url, auth=u, verbose=False) for u in users)
        _plot, metrics, diff = ann.predict(["a", "b"], "step", api_name="/compare_runs")
        assert [r[0] for r in metrics["data"]] == ["name-a", "name-b"]
        assert diff["data"] == [["learning_rate", "0.001", "0.01"]]
        with pytest.raises(Exception, match="No run with id `a`, `b`"):
            bob.predict(["a", "b"], "step", api_name="/compare_runs")
        with pytest.raises(Exception, match="No run with id `a`"):
            bob.predict(["c", "a"], "step", api_name="/compare_runs")
        with pytest.raises(Exception, match="at least two runs"):
            ann.predict(["a"], "step", api_name="/compare_runs")
    finally:
        demo.close()
        ctx.engine.shutdown(stop_runs=True)


def test_a_tick_sends_only_what_the_page_does_not_show_yet(ctx):
    ctx.engine.shutdown()
    fake_run(ctx, "r1", "succeeded", metrics=points(4), ended_at=time.time())
    with gr.Blocks():
        timer = gr.Timer(active=False)
        page = runs.build(ctx, gr.Textbox(render=False), gr.BrowserState(""))
    view = ("r1", "all", "all", "step")

    def sent(updates: dict) -> list:
        skipped = [comp for comp, u in updates.items() if isinstance(u, dict) and u == gr.skip()]
        return [comp for comp in updates if comp not in skipped and comp is not page["sent"]]

    first = runs.poll(ctx, page, timer, view, {})
    assert len(sent(first)) == len(first) - 1 and "name-r1" in first[page["header"]]
    assert sent(runs.poll(ctx, page, timer, view, first[page["sent"]])) == []  # nothing new: nothing sent
    with open(ctx.engine.runs_dir / "r1" / rf.LOG, "a") as log:
        log.write("step 3\n")
    third = runs.poll(ctx, page, timer, view, first[page["sent"]])
    assert sent(third) == [page["log"]] and "step 3" in third[page["log"]]
    # a run switch sends the whole panel and records it: the next tick sends only the table and the timer
    switched = runs.switch_updates(ctx, page, "r1")
    assert sent(runs.poll(ctx, page, timer, view, switched[page["sent"]])) == [page["table"], timer]
    # the public /poll (Refresh) sends everything
    assert len(sent(runs.poll(ctx, page, timer, view))) == len(first) - 1


def test_no_event_shows_progress_on_a_container_or_a_table(ctx):
    """Gradio 6.31's page re-sets the loading status of every progress target of every past event on each
    status message, copying the target's state (a container's: all of its children): see runs.PROGRESS_NOTE."""
    from gradio.blocks import BlockContext

    from ui import studio

    demo = studio.build_demo(ctx)
    heavy = (BlockContext, gr.Dataframe, gr.LinePlot, gr.BarPlot, gr.ScatterPlot, gr.Gallery)
    found = [
        (fn.name, type(target).__name__, getattr(target, "elem_id", None))
        for fn in demo.fns.values()
        if fn.fn is not None
        for target in (fn.outputs if fn.show_progress_on is None else fn.show_progress_on)
        if isinstance(target, heavy) and not isinstance(target, gr.HTML)  # an HTML block holds no children here
    ]
    assert found == [], found


def test_an_update_that_cannot_be_fingerprinted_is_always_sent():
    updates = {"header": "same", "odd": gr.update(value=lambda: 1)}  # a lambda does not pickle
    first, sent = runs.only_changed(updates, {})
    again, _ = runs.only_changed(updates, sent)
    assert again["header"] == gr.skip() and again["odd"] is updates["odd"]


def test_a_chart_whose_series_change_is_rebuilt_by_the_next_event():
    """Gradio 6.31's LinePlot keeps the series (colour domain) it had when it last rebuilt: a validation loss that
    appears mid-run was drawn in the training loss's colour, or not at all, until the page was reloaded. Every
    update that changes a chart's series is followed by one that flips its y title between two look-alikes."""
    import pandas as pd

    from ui import runs

    one = pd.DataFrame({"step": [1, 2], "value": [1.0, 0.9], "series": ["training loss"] * 2})
    two = pd.concat([one, pd.DataFrame({"step": [2], "value": [0.8], "series": ["validation loss"]})])
    c = {k: k for k in [*runs.charts.CHARTS, "sent"]}
    sent: dict[str, str] = {}
    titles = []
    for df in (one, one, two):
        updates = {"loss": runs.plot_update(df, "step", "Loss", hide_empty=True)}
        _, digests = runs.only_changed(updates, sent)
        out = runs.redraw_updates(c, runs.mark_redraws(updates, digests, sent))
        sent = out["sent"]
        titles.append(out["loss"].get("y_title"))
    assert titles[0] in runs.Y_TITLES and titles[1] is None, "rebuilt when its series appear, not when they stay"
    assert titles[2] in runs.Y_TITLES and titles[2] != titles[0], "a new series: the other look-alike"
    assert runs.PLOT["y_axis_format"] == ".3~g"
