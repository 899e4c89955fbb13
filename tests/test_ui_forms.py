"""Handler-level tests of the task tabs: forms for every registered task, validation, config round-trip."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd
import pytest

from engine.errors import Problem
from engine.params import field_hints, validate_params
from engine.task import all_tasks, get_task
from tests.tiny import chat_rows
from ui import datasource, form_values, runs, task_tab, task_view
from ui.context import Context

TASKS = all_tasks()


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


@pytest.fixture(autouse=True)
def hub_ids_exist(monkeypatch):
    """These tests use made-up Hub ids (`m`, `some/model`): treat every Hub id as there (tests/test_studio.py
    checks the base-model problems themselves)."""
    from engine.preflight import models

    monkeypatch.setattr(models, "_hub_problems", lambda repo_id, kind, token: [])


def default_values(task, tab: task_tab.TaskTab) -> dict:
    values = {name: comp.value for name, comp in tab.inputs().items()}
    values.update({"data_path": "data.csv", "upload": None})
    return values


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_form_builds_for_every_task_and_defaults_round_trip(task, ctx):
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    shown = set(tab.form) | set(tab.data_fields) | set(tab.run_fields) | {"base_model", "data_path"}
    expected = set(task.params.model_fields) - {"column_mapping"}
    assert shown == expected, f"fields without a widget: {expected - shown}"
    assert set(tab.mapping) == {c.role for c in task.columns}
    for name, comp in tab.form.items():
        kind = form_values.kind_of(task.params.model_fields[name])
        assert isinstance(
            comp,
            {"choice": gr.Dropdown, "bool": gr.Checkbox, "int": gr.Number, "float": gr.Number}.get(kind, gr.Textbox),
        ), name
        assert comp.elem_id == f"{task.name}-{name}"
        show_if = field_hints(task.params, name).get("show_if")
        if show_if and all(c in tab.form for c in show_if):
            assert comp.visible == form_values.initial_visibility(task.params, name)
    # the widgets' defaults are the params' defaults
    params = validate_params(task.params, task_view.params_data(task, default_values(task, tab)))
    expected_params = task.params(data_path="data.csv")
    assert params == expected_params


def test_advanced_fields_are_inside_the_accordion(ctx):
    task = get_task("llm_sft")
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    assert field_hints(task.params, "lora_r")["advanced"] and not field_hints(task.params, "epochs")["advanced"]
    assert _inside_accordion(tab.form["lora_r"]) and not _inside_accordion(tab.form["epochs"])


def _walk_blocks(block):
    while block is not None:
        yield block
        block = block.parent


def _inside_accordion(block) -> bool:
    return any(isinstance(b, gr.Accordion) and b.label == "Advanced" for b in _walk_blocks(block))


def test_show_if_conditions():
    assert form_values.condition_holds({"use_lora": True}, {"use_lora": True})
    assert not form_values.condition_holds({"use_lora": True}, {"use_lora": False})
    assert form_values.condition_holds({"eval_strategy": ["steps", "epoch"]}, {"eval_strategy": "epoch"})
    assert not form_values.initial_visibility(get_task("llm_sft").params, "custom_chat_template")


def test_widget_values_convert_back():
    task = get_task("llm_sft")
    fields = task.params.model_fields
    assert form_values.from_ui(fields["batch_size"], 4.0) == 4 and isinstance(
        form_values.from_ui(fields["batch_size"], 4.0), int
    )
    assert form_values.from_ui(fields["scheduler"], "cosine") == "cosine"
    assert form_values.to_ui(fields["use_lora"], True) is True


def write_chat_csv(path, n=24):
    rows = [{"question": r["messages"][0]["content"], "answer": r["messages"][1]["content"]} for r in chat_rows(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_preview_and_column_matching(tmp_path):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    df, note, matched, columns = task_view.preview_data(
        task, str(csv), {"train_split": "train"}, {"prompt": "question"}
    )
    assert columns == ["question", "answer"] and len(df) == 20 and "qa.csv" in note
    assert matched == {"text": "", "messages": "", "prompt": "question", "completion": ""}
    pd.DataFrame({"Text": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    _, _, matched, _ = task_view.preview_data(task, str(tmp_path / "t.csv"), {}, {})
    assert matched["text"] == "Text"  # matched by role name, case-insensitive


def test_bad_file_preview_says_what_is_wrong(tmp_path):
    task = get_task("llm_sft")
    (tmp_path / "empty.csv").write_text("question,answer\n")
    df, note, _, columns = task_view.preview_data(task, str(tmp_path / "empty.csv"), {}, {})
    assert df.empty and columns == []
    assert "has a header but no data rows" in note


def test_upload_is_kept_in_the_data_folder(tmp_path, ctx):
    csv = write_chat_csv(tmp_path / "qa.csv")
    kept = datasource.keep_upload(csv, ctx.uploads_dir)
    assert kept.parent.parent == ctx.uploads_dir and kept.name == "qa.csv" and kept.read_bytes() == csv.read_bytes()
    assert datasource.keep_upload(csv, ctx.uploads_dir) == kept  # same content, same file


def test_zip_upload_becomes_a_folder(tmp_path, ctx):
    import zipfile

    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        z.writestr("imgs/cat/1.png", b"x")
        z.writestr("imgs/dog/2.png", b"y")
    folder = datasource.keep_upload(tmp_path / "imgs.zip", ctx.uploads_dir)
    assert folder.is_dir() and folder.name == "imgs"
    df, note = datasource.preview(datasource.source_params(str(folder)))
    assert list(df["label"]) == ["cat", "dog"]  # an image folder previews as the table the worker reads


def test_check_reports_parameter_and_data_problems(tmp_path, ctx):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {"base_model": "m", "data_path": str(csv), "learning_rate": -1.0, "batch_size": 0}
    form_msg, data_msg = task_view.check(ctx, task, values)
    assert "2 problems" in form_msg and "`learning_rate` = -1.0" in form_msg and "`batch_size` = 0" in form_msg
    assert "SFT needs a `text` column" in data_msg  # no column mapped to a role
    values.update({"learning_rate": 1e-3, "batch_size": 2, "map__prompt": "question", "map__completion": "answer"})
    form_msg, data_msg = task_view.check(ctx, task, values)
    assert form_msg.startswith("✓") and "problem" not in data_msg.lower()
    values["map__prompt"] = "nope"
    _, data_msg = task_view.check(ctx, task, values)
    assert "Column `nope` (mapped to role `prompt`) is not in the data" in data_msg


def test_problems_are_shown_beside_the_fields_they_are_about(tmp_path, ctx):
    task = get_task("llm_sft")
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {"base_model": "m", "data_path": str(csv), "learning_rate": -1.0, "map__prompt": "nope"}
    _, _, problems = task_view.check_report(ctx, task, values)
    targets = task_view.problem_targets(problems, values, tab.markable(), tab.mapping)
    assert "`learning_rate` = -1.0" in targets["learning_rate"][0]
    assert "Column `nope` (mapped to role `prompt`)" in targets["map__prompt"][0]  # found by the mapped column
    assert "batch_size" not in targets and "base_model" not in targets

    updates = task_view.marks(tab.markable(), targets, tab.help)
    assert task_tab.mark_updates(tab, values, problems)[tab.form["learning_rate"]] == gr.update(
        **updates["learning_rate"]
    )
    assert updates["learning_rate"]["info"].startswith("⚠ Parameter `learning_rate` = -1.0")
    assert updates["learning_rate"]["elem_classes"] == ["tp-invalid"]
    assert updates["batch_size"]["info"] == tab.form["batch_size"].info and updates["batch_size"]["elem_classes"] == []

    values.update({"learning_rate": 1e-3, "map__prompt": "question", "map__completion": "answer"})
    _, _, problems = task_view.check_report(ctx, task, values)
    assert problems == [] and task_view.problem_targets(problems, values, tab.markable(), tab.mapping) == {}
    # a role the data lacks is marked on that role's dropdown; an empty data path on the data field
    values = {"base_model": "m", "data_path": str(csv)}
    targets = task_view.problem_targets(
        task_view.check_report(ctx, task, values)[2], values, tab.markable(), tab.mapping
    )
    assert "map__text" in targets
    values["data_path"] = ""
    targets = task_view.problem_targets(
        task_view.check_report(ctx, task, values)[2], values, tab.markable(), tab.mapping
    )
    assert "data_path" in targets


def test_problems_carry_their_field_or_role_as_data(ctx):
    task = get_task("llm_sft")
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    problems = [
        Problem("The learning rate is too high for this model.", field="learning_rate"),  # no backticks needed
        Problem("Column `q` holds no text in 3 rows.", role="prompt"),  # the role, not the column's name
        Problem("`column_mapping.completion` is not a column.", field="column_mapping"),  # nested: read from the text
        "Parameter `batch_size` = 0: must be at least 1.",  # a plain sentence: read from the text
    ]
    targets = task_view.problem_targets(problems, {"map__prompt": "other"}, tab.markable(), tab.mapping)
    assert targets == {
        "learning_rate": [problems[0]],
        "map__prompt": [problems[1]],
        "map__completion": [problems[2]],
        "batch_size": [problems[3]],
    }


def wired_tab(ctx: Context, task) -> tuple[gr.Blocks, task_tab.TaskTab, task_tab.Shared, dict]:
    """One task tab and the Runs page (its components, last) wired as the studio wires them, with stand-ins for
    the other shared components; ``shared.show_run`` runs the Runs page's own switch."""
    with gr.Blocks() as demo:
        run_id, timer = gr.Textbox(render=False), gr.Timer(active=False)
        with gr.Tabs(), gr.Tab(task.title):
            tab = task_tab.build(task, ctx)
        with gr.Tab("Runs"):
            page = runs.build(ctx, run_id, gr.BrowserState(""))
        shared = task_tab.Shared(
            run_id=run_id,
            nav=gr.Textbox(visible=False),
            timer=timer,
            backend=gr.Dropdown(["local"], value="local"),
            config=task_tab.build_config_box(),
            show_run=(lambda rid: runs.switch_updates(ctx, page, rid), runs.switch_outputs(page)),
            gathered=gr.Textbox(visible=False),
        )
        task_tab.wire(tab, ctx, shared)
        runs.wire(ctx, page, run_id, timer, (lambda request: {}, []))
    return demo, tab, shared, page


def handler(demo: gr.Blocks, button: str):
    """The form's own handler of ``button`` (check, config, start), called as the page calls it: with the values the
    browser gathered as JSON (task_tab.on_form), the upload, the marks, then its own inputs. Private: the API has
    /start etc."""
    fn = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == f"on_{button}")
    return lambda backend, **values: fn(json.dumps(values), None, None, backend)


def test_start_handler_queues_the_run_or_marks_the_fields(tmp_path, data_dir, tiny_llama):
    from engine.run.supervisor import Supervisor

    ctx = Context(Supervisor(data_dir))  # not started: a queued run stays queued
    task = get_task("llm_sft")
    demo, tab, shared, page = wired_tab(ctx, task)
    on_start = handler(demo, "start")
    values = {
        **default_values(task, tab),
        "base_model": str(tiny_llama),
        "data_path": str(write_chat_csv(tmp_path / "qa.csv")),
        "map__prompt": "question",
        "map__completion": "answer",
        "run_name": "handler run",
        "learning_rate": -1.0,
        "batch_size": 0,
    }
    with pytest.warns(UserWarning, match="Not started: 2 problem"):  # gr.Warning outside a request
        updates = on_start("local", **values)
    assert ctx.store.list_runs() == [] and list(ctx.engine.runs_dir.iterdir()) == []
    assert shared.run_id not in updates and "2 problems" in updates[tab.form_msg]
    for name in ("learning_rate", "batch_size"):
        assert updates[tab.form[name]]["elem_classes"] == ["tp-invalid"], name
    assert updates[tab.form["epochs"]]["elem_classes"] == []

    updates = on_start("local", **{**values, "learning_rate": 1e-3, "batch_size": 2, "epochs": 3.0})
    run_id = updates[shared.run_id]
    row = ctx.store.get_run(run_id)
    assert row["status"] == "queued" and row["name"] == "handler run" and row["backend"] == "local"
    params = row["params"]
    assert params["base_model"] == str(tiny_llama) and params["data_path"] == values["data_path"]
    assert (params["learning_rate"], params["batch_size"], params["epochs"]) == (1e-3, 2, 3.0)
    assert params["column_mapping"] == {"prompt": "question", "completion": "answer"}
    assert updates[tab.form_msg] == f"✓ Queued run `{run_id}`." and updates[shared.timer].active
    assert updates[shared.nav].startswith("tab-runs|")  # the browser shows the Runs page (ui.nav)
    # ... with the new run in its panel, in the same answer; the run id's own change event then does nothing
    assert "handler run" in updates[page["header"]] and updates[page["shown"]] == run_id
    assert updates[page["saved_run"]] == run_id and updates[page["file"]]["visible"] is False
    on_switch = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_switch")
    assert isinstance(on_switch(run_id, run_id, "step"), type(gr.skip()))
    switched = on_switch("another", run_id, "step")
    assert switched[page["shown"]] == "another" and "another" in switched[page["header"]]
    assert updates[tab.form["batch_size"]]["elem_classes"] == []  # the marks of the refused try are cleared


def test_check_shows_token_statistics_for_a_local_model(tmp_path, ctx, tiny_llama):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {
        "base_model": str(tiny_llama),
        "data_path": str(csv),
        "map__prompt": "question",
        "map__completion": "answer",
    }
    form_msg, data_msg = task_view.check(ctx, task, values)
    assert form_msg.startswith("✓")
    assert "**Tokens per example** (24 examples)" in data_msg and "median" in data_msg


def test_start_with_problems_queues_nothing(tmp_path, ctx):
    task = get_task("llm_sft")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="SFT needs"):
        task_view.start(ctx, task, {"base_model": "m", "data_path": str(tmp_path / "bad.csv")})
    assert ctx.store.list_runs() == []
    assert list(ctx.engine.runs_dir.iterdir()) == []


def test_config_round_trip_fills_the_same_values(tmp_path, ctx):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    values = {
        **default_values(task, tab),
        "base_model": "some/model",
        "data_path": str(csv),
        "map__prompt": "question",
        "map__completion": "answer",
        "epochs": 2.0,
        "use_lora": False,
        "scheduler": "cosine",
        "run_name": "my run",
        "hf_token": "hf_secret",
    }
    text, command, path = task_view.make_config(ctx, task, values)
    assert "hf_secret" not in text and path.read_text() == text and f"run {path}" in command
    request = task_view.load_request(str(path))
    assert request["task"] == "llm_sft" and request["name"] == "my run"
    with gr.Blocks():
        filled_tab = task_tab.build(task, ctx, request)  # the form built from the request (the Train page's render)
    filled = {name: comp.value for name, comp in filled_tab.form.items()}
    assert filled["epochs"] == 2.0 and filled["use_lora"] is False and filled["scheduler"] == "cosine"
    mapping = [comp.value for comp in filled_tab.mapping.values()]
    assert mapping == ["", "", "question", "answer"]
    assert filled_tab.data_path.value == str(csv) and filled_tab.run_name.value == "my run"
    assert filled_tab.preview.visible and "question" in filled_tab.preview.value["headers"]
    assert filled_tab.data_path.preserved_by_key == [], "the draft's values win over what the keyed widget held"


def test_load_autotrain_config(tmp_path):
    (tmp_path / "at.yml").write_text(
        "task: llm-sft\nbase_model: m\nproject_name: p1\ndata:\n  path: d.csv\n  column_mapping:\n    text_column: body\n"
        "params:\n  lr: 0.001\n  epochs: 2\n"
    )
    request = task_view.load_request(str(tmp_path / "at.yml"))
    assert request["task"] == "llm_sft" and request["name"] == "p1"
    assert request["params"]["learning_rate"] == 0.001 and request["params"]["column_mapping"] == {"text": "body"}
    (tmp_path / "bad.yml").write_text("params: {}\n")
    with pytest.raises(Exception, match="must be a mapping with `task:`"):
        task_view.load_request(str(tmp_path / "bad.yml"))
    json.dumps(request)  # a request travels through gr.State as JSON


def test_check_shows_the_memory_verdict(ctx, tiny_llama, tmp_path):
    task = get_task("llm_sft")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"hello {i}"}) + "\n" for i in range(8)))
    _, data_md = task_view.check(ctx, task, {"base_model": str(tiny_llama), "data_path": str(data)})
    assert "**Memory**" in data_md and "fits (est." in data_md


def test_a_fill_that_fails_says_so_beside_the_data(ctx, monkeypatch):
    """A draft that cannot fill the form (a config from an older version…) leaves the defaults and says why."""
    task = get_task("llm_sft")

    def broken(*_):
        raise KeyError("params")

    monkeypatch.setattr(task_view, "fill_values", broken)
    with gr.Blocks():
        tab = task_tab.build(task, ctx, {"task": "llm_sft", "params": {}, "nonce": 1})
    assert "Could not fill the form: KeyError" in tab.data_msg.value
    assert tab.form["epochs"].value == task.params.model_fields["epochs"].default


@pytest.mark.parametrize("name", ["llm_sft", "image_classification", "tabular"])
def test_no_server_event_of_a_form_takes_its_widgets_as_inputs(ctx, name):
    """Gradio 6.31's page keeps a loading status for each input of every server event run, and re-sets each one on
    every later event by a walk of the whole page; a form rebuilt for another task leaves them behind (ui.progress).
    So every event that reads the form gathers it in the browser first: no server event of a form (Check, Config,
    Start, Sweep, preview, upload, keeping it when left, show/hide) takes more than the upload, the marks and one
    widget (the data path, whose Hub fields are shown when it names a folder or a Hub dataset)."""
    from ui import sweeps, task_picker

    demo, tab, shared, _ = wired_tab(ctx, get_task(name))
    with demo:
        picker = task_picker.Picker(gr.Textbox(), gr.Textbox(), gr.Textbox(), None)
        task_picker.wire_picker(tab, picker)
        tab.sweep = sweeps.build_panel(tab)
        sweeps.wire_panel(tab, ctx, shared.backend, sweeps.build_page(ctx), shared.nav)
    widgets = {c._id for c in tab.inputs().values()}
    reading = [fn for fn in demo.fns.values() if widgets & {c._id for c in fn.inputs}]
    assert len(reading) >= 8, "the form's events are all here"
    for fn in reading:
        read = [c for c in fn.inputs if c._id in widgets]
        if fn.fn is not None:  # a server event
            assert len({c._id for c in read} - {tab.upload._id}) <= 1, (fn.name, len(read))  # the data path's hub check
    assert any(len([c for c in fn.inputs if c._id in widgets]) > 20 and fn.fn is None for fn in reading), "gathered"


def test_a_left_form_comes_back_unless_a_draft_was_given_since():
    """Picking a task shows the form the user left, unless a draft was given after that form was built (Duplicate,
    Load config, Use best): decided by the draft's server nonce and the left form's ``base``, never by comparing the
    browser's clock with the server's."""
    from ui import task_picker

    values = {"base_model": "org/edited", "data_path": "d.csv", "epochs": 7, "run_name": "mine"}
    state = task_picker.with_draft("", {"task": "llm_sft", "params": {"base_model": "org/dup"}, "nonce": 100.0})
    built_from_it = json.dumps({"llm_sft": {"values": values, "base": 100.0}})  # left after the duplicate was shown
    name, draft = task_picker.shown_task(state, built_from_it, "text_classification")
    assert name == "llm_sft" and draft["params"]["base_model"] == "org/edited" and draft["params"]["epochs"] == 7
    assert draft["name"] == "mine" and draft["nonce"] == 100.0, "the next form keeps the same base"
    older = json.dumps({"llm_sft": {"values": values, "base": 0.0}})  # left before the duplicate was given
    assert task_picker.shown_task(state, older, "text_classification")[1]["params"]["base_model"] == "org/dup"
    assert task_picker.shown_task("", older, "llm_sft")[1]["params"]["base_model"] == "org/edited", "no draft given"
    assert task_picker.shown_task(json.dumps({"task": "llm_sft"}), "not json", "x") == ("llm_sft", None)
    js = task_picker.leave_js("llm_sft", ["epochs"], 100.0)
    assert "base: 100.0" in js and "Date.now" not in js
