"""Handler-level tests of the task tabs: forms for every registered task, validation, config round-trip."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd
import pytest

from engine.params import field_hints, validate_params
from engine.task import all_tasks, get_task
from tests.tiny import chat_rows
from ui import datasource, forms, task_tab
from ui.context import Context

TASKS = all_tasks()


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


def default_values(task, tab: task_tab.TaskTab) -> dict:
    values = {name: comp.value for name, comp in tab.inputs().items()}
    values.update({"data_path": "data.csv", "upload": None})
    return values


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_form_builds_for_every_task_and_defaults_round_trip(task, ctx):
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    shown = set(tab.form) | set(tab.data_fields) | {"base_model", "data_path"}
    expected = set(task.params.model_fields) - {"column_mapping"}
    assert shown == expected, f"fields without a widget: {expected - shown}"
    assert set(tab.mapping) == {c.role for c in task.columns}
    for name, comp in tab.form.items():
        kind = forms.kind_of(task.params.model_fields[name])
        assert isinstance(
            comp,
            {"choice": gr.Dropdown, "bool": gr.Checkbox, "int": gr.Number, "float": gr.Number}.get(kind, gr.Textbox),
        ), name
        assert comp.elem_id == f"{task.name}-{name}"
        show_if = field_hints(task.params, name).get("show_if")
        if show_if and all(c in tab.form for c in show_if):
            assert comp.visible == forms.initial_visibility(task.params, name)
    # the widgets' defaults are the params' defaults
    params = validate_params(task.params, task_tab.params_data(task, default_values(task, tab)))
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
    assert forms.condition_holds({"use_lora": True}, {"use_lora": True})
    assert not forms.condition_holds({"use_lora": True}, {"use_lora": False})
    assert forms.condition_holds({"eval_strategy": ["steps", "epoch"]}, {"eval_strategy": "epoch"})
    assert not forms.initial_visibility(get_task("llm_sft").params, "custom_chat_template")


def test_widget_values_convert_back():
    task = get_task("llm_sft")
    fields = task.params.model_fields
    assert forms.from_ui(fields["batch_size"], 4.0) == 4 and isinstance(forms.from_ui(fields["batch_size"], 4.0), int)
    assert forms.from_ui(fields["scheduler"], "cosine") == "cosine"
    assert forms.to_ui(fields["use_lora"], True) is True


def write_chat_csv(path, n=24):
    rows = [{"question": r["messages"][0]["content"], "answer": r["messages"][1]["content"]} for r in chat_rows(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_preview_and_column_matching(tmp_path):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    df, note, matched, columns = task_tab.preview_data(task, str(csv), {"train_split": "train"}, {"prompt": "question"})
    assert columns == ["question", "answer"] and len(df) == 20 and "qa.csv" in note
    assert matched == {"text": "", "messages": "", "prompt": "question", "completion": ""}
    pd.DataFrame({"Text": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    _, _, matched, _ = task_tab.preview_data(task, str(tmp_path / "t.csv"), {}, {})
    assert matched["text"] == "Text"  # matched by role name, case-insensitive


def test_bad_file_preview_says_what_is_wrong(tmp_path):
    task = get_task("llm_sft")
    (tmp_path / "empty.csv").write_text("question,answer\n")
    df, note, _, columns = task_tab.preview_data(task, str(tmp_path / "empty.csv"), {}, {})
    assert df.empty and columns == []
    assert "has a header but no data rows" in note


def test_upload_is_kept_in_the_data_folder(tmp_path, ctx):
    csv = write_chat_csv(tmp_path / "qa.csv")
    kept = datasource.keep_upload(csv, ctx.uploads_dir)
    assert kept.parent == ctx.uploads_dir and kept.read_bytes() == csv.read_bytes()
    assert datasource.keep_upload(csv, ctx.uploads_dir) == kept  # same content, same file


def test_zip_upload_becomes_a_folder(tmp_path, ctx):
    import zipfile

    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as z:
        z.writestr("imgs/cat/1.png", b"x")
        z.writestr("imgs/dog/2.png", b"y")
    folder = datasource.keep_upload(tmp_path / "imgs.zip", ctx.uploads_dir)
    assert folder.is_dir() and folder.name == "imgs"
    df, note = datasource.preview(datasource.source_params(str(folder)))
    assert list(df["folder"]) == ["cat", "dog"]


def test_check_reports_parameter_and_data_problems(tmp_path, ctx):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {"base_model": "m", "data_path": str(csv), "learning_rate": -1.0, "batch_size": 0}
    form_msg, data_msg = task_tab.check(ctx, task, values)
    assert "2 problems" in form_msg and "`learning_rate` = -1.0" in form_msg and "`batch_size` = 0" in form_msg
    assert "SFT needs a `text` column" in data_msg  # no column mapped to a role
    values.update({"learning_rate": 1e-3, "batch_size": 2, "map__prompt": "question", "map__completion": "answer"})
    form_msg, data_msg = task_tab.check(ctx, task, values)
    assert form_msg.startswith("✓") and "problem" not in data_msg.lower()
    values["map__prompt"] = "nope"
    _, data_msg = task_tab.check(ctx, task, values)
    assert "Column `nope` (mapped to role `prompt`) is not in the data" in data_msg


def test_problems_are_shown_beside_the_fields_they_are_about(tmp_path, ctx):
    task = get_task("llm_sft")
    with gr.Blocks():
        tab = task_tab.build(task, ctx)
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {"base_model": "m", "data_path": str(csv), "learning_rate": -1.0, "map__prompt": "nope"}
    _, _, problems = task_tab.check_report(ctx, task, values)
    targets = task_tab.problem_targets(tab, values, problems)
    assert "`learning_rate` = -1.0" in targets["learning_rate"][0]
    assert "Column `nope` (mapped to role `prompt`)" in targets["map__prompt"][0]  # found by the mapped column
    assert "batch_size" not in targets and "base_model" not in targets

    updates = dict(zip(tab.markable(), task_tab.mark_updates(tab, targets), strict=True))
    assert updates["learning_rate"]["info"].startswith("⚠ Parameter `learning_rate` = -1.0")
    assert updates["learning_rate"]["elem_classes"] == ["tp-invalid"]
    assert updates["batch_size"]["info"] == tab.form["batch_size"].info and updates["batch_size"]["elem_classes"] == []

    values.update({"learning_rate": 1e-3, "map__prompt": "question", "map__completion": "answer"})
    _, _, problems = task_tab.check_report(ctx, task, values)
    assert problems == [] and task_tab.problem_targets(tab, values, problems) == {}
    # a role the data lacks is marked on that role's dropdown; an empty data path on the data field
    values = {"base_model": "m", "data_path": str(csv)}
    targets = task_tab.problem_targets(tab, values, task_tab.check_report(ctx, task, values)[2])
    assert "map__text" in targets
    values["data_path"] = ""
    targets = task_tab.problem_targets(tab, values, task_tab.check_report(ctx, task, values)[2])
    assert "data_path" in targets


def test_check_shows_token_statistics_for_a_local_model(tmp_path, ctx, tiny_llama):
    task = get_task("llm_sft")
    csv = write_chat_csv(tmp_path / "qa.csv")
    values = {
        "base_model": str(tiny_llama),
        "data_path": str(csv),
        "map__prompt": "question",
        "map__completion": "answer",
    }
    form_msg, data_msg = task_tab.check(ctx, task, values)
    assert form_msg.startswith("✓")
    assert "**Tokens per example** (24 examples)" in data_msg and "median" in data_msg


def test_start_with_problems_queues_nothing(tmp_path, ctx):
    task = get_task("llm_sft")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="SFT needs"):
        task_tab.start(ctx, task, {"base_model": "m", "data_path": str(tmp_path / "bad.csv")})
    assert ctx.store.list_runs() == []
    assert list(ctx.supervisor.runs_dir.iterdir()) == []


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
    text, command, path = task_tab.make_config(ctx, task, values)
    assert "hf_secret" not in text and path.read_text() == text and f"run {path}" in command
    request = task_tab.load_request(str(path))
    assert request["task"] == "llm_sft" and request["name"] == "my run"
    updates = task_tab.fill_updates(tab, request)
    form_start = 5 + len(tab.data_fields) + len(tab.mapping)
    filled = dict(zip(tab.form, updates[form_start : form_start + len(tab.form)], strict=True))
    assert filled["epochs"] == 2.0 and filled["use_lora"] is False and filled["scheduler"] == "cosine"
    mapping = [u["value"] for u in updates[5 + len(tab.data_fields) : form_start]]
    assert mapping == ["", "", "question", "answer"]
    assert updates[4] == str(csv) and updates[-3] == "my run"


def test_load_autotrain_config(tmp_path):
    (tmp_path / "at.yml").write_text(
        "task: llm-sft\nbase_model: m\nproject_name: p1\ndata:\n  path: d.csv\n  column_mapping:\n    text_column: body\n"
        "params:\n  lr: 0.001\n  epochs: 2\n"
    )
    request = task_tab.load_request(str(tmp_path / "at.yml"))
    assert request["task"] == "llm_sft" and request["name"] == "p1"
    assert request["params"]["learning_rate"] == 0.001 and request["params"]["column_mapping"] == {"text": "body"}
    (tmp_path / "bad.yml").write_text("params: {}\n")
    with pytest.raises(Exception, match="must be a mapping with `task:`"):
        task_tab.load_request(str(tmp_path / "bad.yml"))
    json.dumps(request)  # a request travels through gr.State as JSON
