"""Results that fit the task (issue 17, item 4): the files a run writes and the tables the run page makes of them;
Check's class counts (item 8); stored text shown as written, never as Markdown (issue 16)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from engine.llm import data as ld
from engine.task import get_task
from engine.train import charts
from ui import runs_view, task_view
from ui.context import Context

INJECTION = "**x**<img src=x onerror=alert(1)>"


@pytest.fixture
def ctx(supervisor) -> Context:
    return Context(supervisor)


def rendered(markdown: str) -> str:
    """The HTML a Markdown renderer makes of ``markdown`` (CommonMark, as the page's)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(markdown)


# --- object detection: AP per class ---------------------------------------------------------------


def test_per_class_ap_file_of_object_detection_is_a_table(tmp_path):
    (tmp_path / "per_class_ap.json").write_text(json.dumps({"circle": 0.61234, "square": 0.2, "triangle": -1.0}))
    table = runs_view.results(tmp_path)["per_class_ap"]
    assert table.columns.tolist() == ["class", "AP"]
    assert table.set_index("class")["AP"].to_dict() == {
        "circle": "0.612",
        "square": "0.200",
        "triangle": "not in validation",  # -1: no box of the class among the validation images
    }
    (tmp_path / "per_class_ap.json").write_text(json.dumps({"cat": {"AP": 0.5, "AP50": 0.75}}))
    assert runs_view.results(tmp_path)["per_class_ap"].values.tolist() == [["cat", "0.500", "0.750"]]


# --- token classification: per entity type --------------------------------------------------------


def test_token_classification_writes_per_entity_scores_at_evaluation(tmp_path):
    from engine.tasks import token_classification as tc

    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
    labels = np.array([[1, 2, 0, 3, -100], [3, 0, 1, -100, -100]])  # 2 PER, 2 LOC entities
    preds = np.array([[1, 2, 0, 0, 0], [3, 0, 3, 0, 0]])  # PER: 1 of 2 found, 1 false LOC
    out = tc.metrics(SimpleNamespace(predictions=preds, label_ids=labels), id2label, tmp_path)  # compute_metrics
    table = runs_view.results(tmp_path)["per_entity"].set_index("entity")
    assert table.loc["PER"].tolist() == [1.0, 0.5, round(2 / 3, 3), 2]
    assert table.loc["LOC"].tolist() == [0.5, 0.5, 0.5, 2]
    assert out["PER_f1"] == pytest.approx(2 / 3) and out["LOC_recall"] == pytest.approx(0.5)  # same numbers logged


# --- LLM: sample generations at each evaluation ----------------------------------------------------


def test_samples_view_shows_the_latest_evaluations_generations(tmp_path):
    charts.append_samples(tmp_path, 10, [{"prompt": "p1", "generated": "old", "reference": "r1"}])
    charts.append_samples(
        tmp_path, 20, [{"prompt": f"p{i}", "generated": "x" * 900, "reference": f"r{i}"} for i in range(3)]
    )
    with open(tmp_path / charts.SAMPLES_FILE, "a") as f:
        f.write('{"step": 30, "prom')  # a line being written
    table = runs_view.results(tmp_path)["samples"]
    assert table.columns.tolist() == ["step", "prompt", "generated", "reference"]
    assert table["step"].tolist() == [20, 20, 20] and table["prompt"].tolist() == ["p0", "p1", "p2"]
    assert len(table["generated"][0]) == runs_view.SAMPLE_CHARS  # long generations are cut


def test_sample_prompts_of_each_data_form():
    chats = pd.DataFrame(
        {"messages": [json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])] * 5}
    )
    got = ld.sample_prompts(chats)
    assert len(got) == 3 and got[0] == {"prompt": [{"role": "user", "content": "hi"}], "reference": "hello"}
    pairs = pd.DataFrame({"prompt": ["2+2?"], "completion": ["4"]})
    assert ld.sample_prompts(pairs) == [{"prompt": "2+2?", "reference": "4"}]
    prefs = pd.DataFrame({"prompt": ["q"], "chosen": ["good"], "rejected": ["bad"]})
    assert ld.sample_prompts(prefs) == [{"prompt": "q", "reference": "good"}]
    text = pd.DataFrame({"text": ["one two three four five six"]})
    assert ld.sample_prompts(text) == [{"prompt": "one two three", "reference": "four five six"}]
    assert ld.sample_prompts(None) == [] and ld.sample_prompts(text.iloc[:0]) == []
    broken = pd.DataFrame({"messages": ["not json", json.dumps([{"role": "user", "content": "only a question"}])]})
    assert ld.sample_prompts(broken) == []  # rows that give no prompt and answer are skipped


def test_samples_callback_only_on_the_main_process_of_an_unsharded_generative_run(monkeypatch, tmp_path):
    from engine.llm import train as lt

    valid = pd.DataFrame({"prompt": ["q"], "completion": ["a"]})
    job = SimpleNamespace(valid=valid, run_dir=tmp_path)

    def trainer(fsdp="", generative=True):
        model = SimpleNamespace(can_generate=lambda: generative)
        return SimpleNamespace(args=SimpleNamespace(fsdp=fsdp, deepspeed=None), model=model, processing_class=object())

    assert lt.SamplesCallback.for_job(trainer(), job).prompts == [{"prompt": "q", "reference": "a"}]
    assert lt.SamplesCallback.for_job(trainer(generative=False), job) is None  # a reward model
    assert lt.SamplesCallback.for_job(trainer(fsdp="full_shard"), job) is None
    assert lt.SamplesCallback.for_job(trainer(), SimpleNamespace(valid=None, run_dir=tmp_path)) is None
    monkeypatch.setenv("RANK", "1")
    assert lt.SamplesCallback.for_job(trainer(), job) is None
    charts.append_samples(tmp_path, 1, [{"prompt": "q", "generated": "g", "reference": "a"}])
    assert not (tmp_path / charts.SAMPLES_FILE).exists()  # no other rank writes the file


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_sft_run_writes_sample_generations_at_each_evaluation(supervisor, tiny_llama, tmp_path, processes):
    from engine.params import validate_params
    from tests.tiny import chat_rows, write_jsonl

    sft = get_task("llm_sft")
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(48))
    params = validate_params(
        sft.params,
        {
            "base_model": str(tiny_llama),
            "data_path": str(data),
            "epochs": 2,
            "batch_size": 8 // processes,
            "max_length": 64,
            "valid_fraction": 0.2,
            "logging_steps": 2,
            "num_processes": processes,  # two: DDP over gloo; rank 0 alone generates and writes
        },
    )
    row = supervisor.wait(supervisor.submit(sft, params), timeout=300)
    assert row["status"] == "succeeded", row["error"]
    lines = [json.loads(x) for x in (Path(row["run_dir"]) / charts.SAMPLES_FILE).read_text().splitlines()]
    steps = sorted({x["step"] for x in lines})
    assert len(steps) >= 2 and len(lines) == 3 * len(steps)  # 3 per evaluation, the final one not repeated
    assert all(x["prompt"].startswith("user: what is") and x["reference"].endswith(".") for x in lines)
    assert all(isinstance(x["generated"], str) for x in lines)
    table = runs_view.results(Path(row["run_dir"]))["samples"]
    assert table["step"].tolist() == [steps[-1]] * 3


# --- Check: class counts and notes, in plain words --------------------------------------------------


def test_check_shows_class_counts_and_notes_on_imbalance_and_missing_classes(tmp_path, ctx):
    task = get_task("text_classification")
    rows = ["text,target"] + [f"good thing {i},pos" for i in range(40)] + [f"bad thing {i},neg" for i in range(30)]
    rows += ["meh,neutral"] * 3
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "valid.csv").write_text("text,target\ngreat,pos\nawful,neg\n")
    values = {"base_model": "m", "data_path": str(tmp_path / "train.csv"), "valid_path": str(tmp_path / "valid.csv")}
    _, data_md, problems = task_view.check_report(ctx, task, values)
    assert "Class counts in the 73 training rows checked: pos 40 · neg 30 · neutral 3" in data_md
    assert "In the 2 validation rows: pos 1 · neg 1" in data_md
    assert "Imbalanced classes: neutral (3) against 40 for pos" in data_md
    assert "No validation rows for neutral" in data_md
    assert "problem" not in data_md.lower() and not [p for p in problems if "neutral" in p]  # notes, not problems
    html = rendered(data_md)
    assert "<strong>" not in html  # the page draws a paragraph of bold alone, and the list after it, in red
    params = task_view.problems_of(task, values)[0]
    own_summary = dataclasses.replace(task, data_summary=lambda task, params: "Classes: pos (40), …")
    shown = task_view.class_balance_md(own_summary, params, [])  # no second list of counts: only the notes
    assert "Class counts" not in shown and "Imbalanced classes: neutral (3)" in shown
    notes = task_view.balance_notes(pd.Series({"a": 50, "b": 45}), pd.Series({"a": 5, "b": 5, "c": 1}))
    assert notes == [
        "Validation has c, which the training rows lack: the model cannot learn it (those rows are left out of "
        "evaluation)."
    ]


def test_no_class_counts_for_a_numeric_target(tmp_path, ctx):
    task = get_task("tabular")
    rows = ["x,target"] + [f"{i},{i * 0.37:.2f}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    _, data_md, _ = task_view.check_report(ctx, task, {"data_path": str(tmp_path / "d.csv")})
    assert "Class counts" not in data_md


# --- messages in the form's words, once, naming the user's file --------------------------------------


def test_sft_missing_text_column_speaks_the_forms_words_beside_one_dropdown(tmp_path, ctx):
    from tests.test_ui_forms import write_chat_csv

    task = get_task("llm_sft")
    values = {"base_model": "", "data_path": str(write_chat_csv(tmp_path / "qa.csv"))}
    _, data_md, problems = task_view.check_report(ctx, task, values)
    assert "SFT needs a `text` column" in data_md and "“text” dropdown under Columns" in data_md
    assert "column_mapping" not in data_md and "my_column" not in data_md
    roles = [c.role for c in task.columns]
    keys = [task_view.MAP_PREFIX + r for r in roles]
    targets = task_view.problem_targets(problems, values, keys, roles)
    assert list(targets) == ["map__text"]  # beside one dropdown, not four
    marks = task_view.marks(keys, targets, {})
    assert "column_mapping" not in marks["map__text"]["info"] and "dropdown" in marks["map__text"]["info"]


def test_config_words_of_a_missing_column_become_the_forms():
    from engine.errors import Problem

    found = Problem(
        "No column for `text` (the text). Columns found: body. Map one with column_mapping, e.g. {text: body}.",
        role="text",
    )
    said = task_view.form_words(found)
    assert (
        said
        == "No column for `text` (the text). Columns found: body. Choose the column in the “text” dropdown under Columns."
    )
    assert said.role == "text"  # still marked beside its dropdown
    qa = "No `answers` column. Map yours with column_mapping, e.g. {answers: my_answers}."
    assert task_view.form_words(qa).endswith("Choose the column in the “answers” dropdown under Columns.")
    assert task_view.form_words("Learning rate too high.") == "Learning rate too high."


def test_check_messages_name_the_uploaded_file(tmp_path, ctx):
    (tmp_path / "empty.csv").write_text("")
    values = {"base_model": "", "data_path": "", "upload": str(tmp_path / "empty.csv")}
    _, data_md, _ = task_view.check_report(ctx, get_task("text_classification"), values)
    assert "`empty.csv`" in data_md or "empty.csv" in data_md
    assert "empty-" not in data_md


def test_no_at_at_typo_in_engine_messages():
    root = Path(__file__).resolve().parent.parent / "engine"
    assert not [p for p in root.rglob("*.py") if " at at " in p.read_text(encoding="utf-8")]


# --- stored text shown as written --------------------------------------------------------------------


def test_a_run_error_or_problem_naming_a_hostile_column_renders_as_text():
    error = f"Column {INJECTION} is not in the data. ``` closed?\n# heading"
    html = rendered(runs_view.error_md({"status": "failed"}, error))
    assert "<img" not in html and "<strong>x" not in html and "<h1>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as written
    md = task_view.problems_md([f"Columns found: {INJECTION}, [a](http://e.x), _b_. Map `{INJECTION}`."])
    html = rendered(md)
    assert "<img" not in html and "<strong>x" not in html and "<a " not in html and "<em>" not in html
    assert "**x**&lt;img src=x onerror=alert(1)&gt;" in html and "<code>" in html


def test_bookkeeping_of_the_start_event_is_not_charted():
    assert charts.chart_of("world_size") is None and charts.chart_of("eval_wer") == "other"
    assert charts.group(["world_size", "eval_wer", "loss"])["other"] == ["eval_wer"]
