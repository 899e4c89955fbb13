"""Fast engine tests: params validation, config I/O and AutoTrain mapping, data checks, run store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine.config import apply_overrides, dump_config, from_dict, load_config
from engine.data.splits import check_data, load_splits
from engine.data.tables import read_table
from engine.errors import UserError
from engine.params import validate_params
from engine.run.store import MIGRATIONS, Store
from engine.task import Column, all_tasks, get_task

SFT = get_task("llm_sft")


def test_params_report_every_problem_at_once_with_field_value_and_fix():
    with pytest.raises(UserError) as exc:
        validate_params(SFT.params, {"learning_rate": 5, "epochs": -1, "bogus_param": 1, "lora_rr": 8})
    text = str(exc.value)
    assert len(exc.value.problems) == 4
    assert "`learning_rate` = 5" in text and "<= 1.0" in text
    assert "`epochs` = -1" in text and "> 0" in text
    assert "Unknown parameter `bogus_param`" in text
    assert "Did you mean `lora_r`?" in text


def test_literal_error_names_the_choices():
    with pytest.raises(UserError) as exc:
        validate_params(SFT.params, {"packing": "sometimes"})
    assert "`packing` = 'sometimes'" in str(exc.value) and "'wrapped'" in str(exc.value)


def test_overrides_parse_yaml_values_and_nested_keys():
    out = apply_overrides(
        {"epochs": 3}, ["epochs=1", "use_lora=false", "column_mapping.text=body", "lora_target_modules=q_proj,v_proj"]
    )
    assert out == {
        "epochs": 1,
        "use_lora": False,
        "column_mapping": {"text": "body"},
        "lora_target_modules": "q_proj,v_proj",
    }
    with pytest.raises(UserError, match="key=value"):
        apply_overrides({}, ["epochs"])


def test_config_round_trips_through_yaml(tmp_path):
    task, params = from_dict(
        {"task": "llm_sft", "params": {"base_model": "m", "epochs": 2, "column_mapping": {"text": "body"}}}
    )
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(task, params, name="x"))
    task2, params2 = load_config(path)
    assert task2 is task and params2 == params
    assert yaml.safe_load(path.read_text())["name"] == "x"


def test_every_shipped_example_config_validates():
    examples = sorted((Path(__file__).parent.parent / "assets" / "examples").glob("*.yaml"))
    assert examples, "no example configs shipped"
    names = set()
    for path in examples:
        task, params = load_config(path)
        names.add(task.name)
        assert check_data(task, params) == [], path.name
    assert {t.name for t in all_tasks()} <= names, "every task ships an example config"


def test_registry_defaults_validate_and_configs_round_trip():
    for task in all_tasks():
        params = task.params()
        again = from_dict(yaml.safe_load(dump_config(task, params)))[1]
        assert again == params, task.name
        assert task.columns and task.title and task.family


AUTOTRAIN_SFT = """
task: llm-sft
base_model: meta-llama/Llama-3.2-1B-Instruct
project_name: autotrain-llama32-1b-finetune
log: tensorboard
backend: local
data:
  path: HuggingFaceH4/no_robots
  train_split: train
  valid_split: null
  chat_template: tokenizer
  column_mapping:
    text_column: messages
params:
  block_size: 2048
  model_max_length: 4096
  epochs: 2
  batch_size: 1
  lr: 1e-5
  peft: true
  quantization: int4
  target_modules: all-linear
  padding: right
  optimizer: paged_adamw_8bit
  scheduler: linear
  gradient_accumulation: 8
  mixed_precision: bf16
  merge_adapter: true
hub:
  username: ${HF_USERNAME}
  token: ${HF_TOKEN}
  push_to_hub: true
"""


def test_autotrain_sft_config_maps_onto_trainpad(monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "alice")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    task, params = from_dict(yaml.safe_load(AUTOTRAIN_SFT), env=True)
    assert task.name == "llm_sft"
    assert params.base_model == "meta-llama/Llama-3.2-1B-Instruct"
    assert params.data_path == "HuggingFaceH4/no_robots"
    assert params.column_mapping == {"messages": "messages"}  # chat_template tokenizer: the column holds chats
    assert (params.epochs, params.batch_size, params.learning_rate, params.grad_accum) == (2, 1, 1e-5, 8)
    assert params.use_lora and params.quantization == "int4" and params.merge_adapter
    assert params.max_length == 2048 and params.packing == "wrapped"  # block_size = the packed length
    assert params.optimizer == "paged_adamw_8bit" and params.mixed_precision == "bf16"
    assert params.push_to_hub and params.hub_repo_id == "alice/autotrain-llama32-1b-finetune"
    assert "hf_secret" not in dump_config(task, params)


def test_autotrain_unset_env_var_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("HF_USERNAME", raising=False)
    with pytest.raises(UserError, match="HF_USERNAME is not set"):
        from_dict(yaml.safe_load(AUTOTRAIN_SFT), env=True)


def test_unknown_task_lists_valid_tasks():
    with pytest.raises(UserError, match="Unknown task `nope`. Valid tasks: .*llm_sft"):
        from_dict({"task": "nope", "params": {}})


# --- data -----------------------------------------------------------------------------------


def fake_task(columns: list) -> object:
    """A minimal task with the given columns, for testing the generic data checks."""
    from engine.task import Task

    return Task(name="t", title="t", family="Text", description="", params=SFT.params, columns=columns,
                train=lambda p, d: {}, predict=lambda m, i: None)  # fmt: skip


def _sft_params(path: Path, **kw) -> object:
    return validate_params(SFT.params, {"base_model": "m", "data_path": str(path), **kw})


def test_missing_column_lists_the_columns_that_exist(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("body,label\nhello,1\n")
    problems = check_data(SFT, _sft_params(f, column_mapping={"text": "content"}))
    assert problems == ["Column `content` (mapped to role `text`) is not in the data. Columns found: body, label."]
    problems = check_data(SFT, _sft_params(f))
    assert "SFT needs a `text` column" in problems[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", "", "is empty"),
        ("header.csv", "text\n", "has a header but no data rows"),
        ("bad.jsonl", '{"text": "a"}\n{"text": "b"\n', "line 2: not valid JSON"),
        ("bad.csv", 'text,x\n"a,1\n', "could not be parsed"),
        ("data.txt", "hello", "unsupported type `.txt`"),
    ],
)
def test_unreadable_files_give_plain_messages(tmp_path, name, content, expected):
    f = tmp_path / name
    f.write_text(content)
    problems = check_data(SFT, _sft_params(f))
    assert len(problems) == 1 and expected in problems[0] and name in problems[0]


def test_wrong_type_in_messages_column_names_the_row(tmp_path):
    f = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"content": "no role"}]},
        {"messages": "not json"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = check_data(SFT, _sft_params(f))
    assert any("Row 2" in p and "`role`" in p for p in problems)
    assert any("Row 3" in p and "not a JSON list" in p for p in problems)


def test_empty_cells_in_a_required_column_are_listed(tmp_path):
    task = fake_task([Column("text", "the text")])
    f = tmp_path / "d.csv"
    f.write_text("text,other\na,1\n,2\nb,3\n")
    problems = check_data(task, _sft_params(f))
    assert problems == ["Column `text` (text) is empty in 1 row(s): 2. Fill or remove those rows."]


def test_folder_with_train_and_validation_files(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(10)))
    (tmp_path / "validation.jsonl").write_text(json.dumps({"text": "v"}) + "\n")
    train, valid = load_splits(SFT, _sft_params(tmp_path))
    assert len(train) == 10 and list(valid["text"]) == ["v"]


def test_split_is_stratified_and_seeded(tmp_path):
    import pandas as pd

    from engine.data.splits import split_train_valid

    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "target": ["a"] * 80 + ["b"] * 20})
    train, valid = split_train_valid(df, 0.2, seed=1, stratify="target")
    assert len(valid) == 20 and (valid["target"] == "b").sum() == 4
    train2, valid2 = split_train_valid(df, 0.2, seed=1, stratify="target")
    assert list(valid2["text"]) == list(valid["text"])


def test_formats_read_the_same_table(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"text": ["a", "b"], "n": [1, 2]})
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    df.to_json(tmp_path / "d.json", orient="records")
    df.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "d.parquet")
    for ext in ("csv", "tsv", "json", "jsonl", "parquet"):
        assert read_table(tmp_path / f"d.{ext}").to_dict("list") == {"text": ["a", "b"], "n": [1, 2]}, ext


# --- store ----------------------------------------------------------------------------------


def test_store_schema_version_and_parameterized_queries(tmp_path):
    store = Store(tmp_path / "t.db")
    assert store.schema_version == max(MIGRATIONS) == 8
    store.insert_run({"id": "r1", "name": "x'; DROP TABLE runs; --", "task": "llm_sft", "params": "{}"})
    store.add_metrics("r1", [{"step": 1, "epoch": 0.1, "name": "loss", "value": 2.0}])
    assert store.get_run("r1")["name"].startswith("x';")
    assert store.list_runs(status="queued")[0]["id"] == "r1"
    assert store.metrics("r1")[0]["value"] == 2.0
    assert Store(tmp_path / "t.db").schema_version == 8  # reopening migrates nothing twice


def test_number_columns_report_rows_that_are_not_numbers(tmp_path):
    task = fake_task([Column("text", "the text"), Column("target", "a score", kind="number")])
    f = tmp_path / "d.csv"
    f.write_text("text,target\na,1.5\nb,high\nc,2\n")
    problems = check_data(task, _sft_params(f))
    assert problems == [
        "Column `target` (target) must hold numbers, but 1 row(s) do not: 2 (e.g. 'high'). Fix or remove those rows."
    ]


def test_hub_dataset_ids_load_with_config_and_splits(monkeypatch):
    import datasets

    calls = []

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"text": [f"{split}-{i}" for i in range(3)]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    params = validate_params(
        SFT.params,
        {
            "base_model": "m",
            "data_path": "someone/chats",
            "data_config": "en",
            "train_split": "train_sft",
            "valid_split": "test_sft",
        },
    )
    assert check_data(SFT, params) == []  # Hub data is checked by the worker, not in the UI process
    train, valid = load_splits(SFT, params)
    assert calls == [("someone/chats", "en", "train_sft"), ("someone/chats", "en", "test_sft")]
    assert list(train["text"]) == ["train_sft-0", "train_sft-1", "train_sft-2"] and len(valid) == 3


def test_autotrain_dpo_column_names_map_to_roles():
    cfg = {
        "task": "llm-dpo",
        "base_model": "m",
        "data": {
            "path": "d",
            "column_mapping": {"prompt_text_column": "q", "text_column": "good", "rejected_text_column": "bad"},
        },
        "params": {"dpo_beta": 0.2, "lr": 5e-6},
    }
    task, params = from_dict(cfg)
    assert task.name == "llm_dpo"
    assert params.column_mapping == {"prompt": "q", "chosen": "good", "rejected": "bad"}
    assert params.beta == 0.2 and params.learning_rate == 5e-6


def test_autotrain_qa_and_sentence_transformers_columns_map_to_roles():
    qa = {
        "task": "extractive-qa",
        "base_model": "m",
        "data": {"path": "d", "column_mapping": {"text_column": "ctx", "question_column": "q", "answer_column": "ans"}},
        "params": {"max_seq_length": 256},
    }
    _, params = from_dict(qa)
    assert params.column_mapping == {"context": "ctx", "question": "q", "answers": "ans"}
    st = {
        "task": "sentence-transformers",
        "base_model": "m",
        "data": {
            "path": "d",
            "column_mapping": {"sentence1_column": "a", "sentence2_column": "b", "target_column": "y"},
        },
        "params": {"trainer": "pair_class", "epochs": 1},
    }
    task, params = from_dict(st)
    assert params.mode == "pair_class"
    assert params.column_mapping == {"premise": "a", "hypothesis": "b", "label": "y"}
    assert task.library == "sentence-transformers"


def test_common_column_names_match_roles_without_a_mapping(tmp_path):
    from engine.data.splits import resolve_mapping

    task = get_task("text_classification")
    mapping, problems = resolve_mapping(task, ["Sentence", "label"], {})
    assert problems == [] or all("text" in p for p in problems)
    mapping, problems = resolve_mapping(task, ["text", "label"], {})
    assert mapping == {"text": "text", "target": "label"} and problems == []
    mapping, _ = resolve_mapping(get_task("token_classification"), ["words", "ner_tags"], {})
    assert mapping == {"tokens": "words", "tags": "ner_tags"}


def test_autotrain_auto_logging_steps_means_auto():
    cfg = {"task": "text-classification", "base_model": "m", "data": {"path": "d"}, "params": {"logging_steps": -1}}
    assert from_dict(cfg)[1].logging_steps == 0


def test_a_queued_run_is_claimed_once(tmp_path):
    store = Store(tmp_path / "t.db")
    store.insert_run({"id": "r1", "name": "x", "task": "llm_sft", "params": "{}"})
    assert store.claim("r1") is True
    assert store.claim("r1") is False  # a second supervisor on the same folder does not start it again
    assert store.get_run("r1")["status"] == "running"


def test_a_long_run_logs_its_loss_every_few_seconds_with_automatic_logging(tmp_path):
    """With logging_steps 0 (about 25 points per run), a 2,000-step run would first log after 80 steps: the
    events callback asks for a log once LOG_EVERY_S has passed, so a live chart has a curve from the start."""
    import time
    from types import SimpleNamespace

    from engine.train.trainer import EventsCallback

    cb = EventsCallback(tmp_path, log_every_s=0.05)
    state = SimpleNamespace(global_step=1, max_steps=2000, epoch=0.0)
    control = SimpleNamespace(should_log=False, should_save=False, should_training_stop=False)
    cb.on_step_end(None, state, control)
    assert control.should_log is False, "not yet"
    time.sleep(0.1)
    state.global_step = 2
    cb.on_step_end(None, state, control)
    assert control.should_log is True
    fixed = EventsCallback(tmp_path)  # logging_steps set by the user: their schedule only
    control.should_log = False
    time.sleep(0.1)
    fixed.on_step_end(None, state, control)
    assert control.should_log is False
