"""AutoTrain Advanced 0.8.x configs: the mapping table, a corpus of AutoTrain-format configs (tests/autotrain_configs,
written from AutoTrain's parser and params classes), the verdicts on AutoTrain's own example configs, and the
command-line import."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from engine.compat import autotrain
from engine.config import from_dict
from engine.errors import UserError
from engine.task import all_tasks

CORPUS = Path(__file__).parent / "autotrain_configs"

# The fields of each AutoTrain 0.8.36 params class (src/autotrain/trainers/*/params.py), recorded here so the
# test needs no network: the mapping must say something about every one of them.
_COMMON = (
    "data_path model project_name train_split valid_split lr epochs batch_size warmup_ratio gradient_accumulation "
    "optimizer scheduler weight_decay max_grad_norm seed logging_steps auto_find_batch_size mixed_precision "
    "save_total_limit token push_to_hub eval_strategy username log"
).split()
_EARLY = ["early_stopping_patience", "early_stopping_threshold"]
AUTOTRAIN_FIELDS = {
    "LLM": _COMMON
    + (
        "add_eos_token block_size model_max_length padding trainer use_flash_attention_2 "
        "disable_gradient_checkpointing chat_template quantization target_modules merge_adapter peft lora_r "
        "lora_alpha lora_dropout model_ref dpo_beta max_prompt_length max_completion_length prompt_text_column "
        "text_column rejected_text_column unsloth distributed_backend"
    ).split(),
    "TEXT_CLASSIFICATION": _COMMON + _EARLY + ["max_seq_length", "text_column", "target_column"],
    "TEXT_REGRESSION": _COMMON + _EARLY + ["max_seq_length", "text_column", "target_column"],
    "TOKEN_CLASSIFICATION": _COMMON + _EARLY + ["max_seq_length", "tokens_column", "tags_column"],
    "EXTRACTIVE_QA": _COMMON
    + _EARLY
    + ["max_seq_length", "max_doc_stride", "text_column", "question_column", "answer_column"],
    "SENTENCE_TRANSFORMERS": _COMMON
    + _EARLY
    + ["max_seq_length", "trainer", "sentence1_column", "sentence2_column", "sentence3_column", "target_column"],
    "SEQ2SEQ": _COMMON
    + _EARLY
    + "max_seq_length max_target_length text_column target_column peft quantization lora_r lora_alpha "
    "lora_dropout target_modules".split(),
    "TABULAR": "data_path model username seed train_split valid_split project_name token push_to_hub id_column "
    "target_columns categorical_columns numerical_columns task num_trials time_limit categorical_imputer "
    "numerical_imputer numeric_scaler".split(),
    "IMAGE_CLASSIFICATION": _COMMON + _EARLY + ["image_column", "target_column"],
    "IMAGE_REGRESSION": _COMMON + _EARLY + ["image_column", "target_column"],
    "OBJECT_DETECTION": _COMMON + _EARLY + ["image_column", "objects_column", "image_square_size"],
    "VLM": _COMMON
    + "trainer disable_gradient_checkpointing quantization target_modules merge_adapter peft lora_r lora_alpha "
    "lora_dropout image_column text_column prompt_text_column".split(),
}

REGISTERED = {t.name for t in all_tasks()}


@pytest.fixture(autouse=True)
def _hub_env(monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "alice")
    monkeypatch.delenv("HF_TOKEN", raising=False)  # a config's ${HF_TOKEN} is never read


def _load(name: str) -> dict:
    return yaml.safe_load((CORPUS / name).read_text())


# ---- the table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", sorted(AUTOTRAIN_FIELDS))
def test_every_key_of_every_autotrain_params_class_has_a_rule_and_its_default(cls):
    assert set(autotrain.RULES[cls]) == set(AUTOTRAIN_FIELDS[cls])
    assert set(autotrain.DEFAULTS[cls]) == set(AUTOTRAIN_FIELDS[cls])
    for key, rule in autotrain.RULES[cls].items():
        assert rule.action in ("map", "column", "hook", "special", "ignore", "refuse"), key
        assert rule.action not in ("ignore", "refuse") or rule.note, f"{cls}.{key} needs its note/reason"
        assert rule.action != "special" or rule.target in autotrain.SPECIAL, key


def _trainpad_tasks(cls: str) -> set[str]:
    names = {a.task for a in autotrain.TASKS.values() if a.params == cls and a.task}
    return (set(autotrain.TRAINERS.values()) if cls == "LLM" else names) & REGISTERED


@pytest.mark.parametrize("cls", sorted(AUTOTRAIN_FIELDS))
def test_mapped_keys_land_on_params_the_trainpad_task_has(cls):
    for name in _trainpad_tasks(cls):
        fields = next(t for t in all_tasks() if t.name == name).params.model_fields
        for key, rule in autotrain.RULES[cls].items():
            if rule.action == "map" and (not rule.only or name in rule.only):
                assert rule.target in fields, f"{cls}.{key} -> {rule.target}: {name} has no such param"


def test_every_autotrain_task_alias_resolves_or_says_not_available():
    for alias, entry in autotrain.TASKS.items():
        trainer = entry.trainer or autotrain.DEFAULTS[entry.params].get("trainer")
        try:
            task = autotrain._resolve(entry, alias, trainer, {})
        except UserError as e:
            assert "is not available in this version" in str(e) and entry.task not in REGISTERED, alias
            continue
        expected = autotrain.TRAINERS[trainer] if entry.params == "LLM" else entry.task
        assert task.name == expected, alias


def test_llm_trainers_choose_the_task_by_suffix_or_params_trainer():
    base = {"base_model": "m", "data": {"path": "d"}}
    for suffix, name in [("sft", "llm_sft"), ("dpo", "llm_dpo"), ("orpo", "llm_orpo"), ("reward", "llm_reward")]:
        assert from_dict({**base, "task": f"llm-{suffix}"})[0].name == name
        assert from_dict({**base, "task": "llm", "params": {"trainer": suffix}})[0].name == name
    assert from_dict({**base, "task": "llm-generic"})[0].name == "llm_pretrain"
    assert from_dict({**base, "task": "llm", "params": {"trainer": "default"}})[0].name == "llm_pretrain"
    assert from_dict({**base, "task": "llm"})[0].name == "llm_pretrain"  # AutoTrain's default trainer
    # params.trainer wins over the task's suffix, as in AutoTrain's parser (so a DPO config never runs SFT)
    task, _ = from_dict({**base, "task": "llm-sft", "params": {"trainer": "dpo"}})
    assert task.name == "llm_dpo"
    with pytest.raises(UserError, match="trainer `ppo` is not an AutoTrain LLM trainer"):
        from_dict({**base, "task": "llm", "params": {"trainer": "ppo"}})


# ---- the corpus ---------------------------------------------------------------------------------------------

EXPECTED = {
    "llm-sft.yml": (
        "llm_sft",
        {
            "max_length": 128,  # block_size: the packed length (not model_max_length 512)
            "packing": "wrapped",
            "column_mapping": {"text": "text"},
            "epochs": 3,
            "batch_size": 2,
            "grad_accum": 4,
            "learning_rate": 3e-5,
            "weight_decay": 0.01,
            "seed": 7,
            "mixed_precision": "no",
            "gradient_checkpointing": False,
            "use_lora": False,  # AutoTrain's peft default
            "merge_adapter": False,
            "valid_fraction": 0.0,  # valid_split null: every row trains
            "logging_steps": 0,
            "save_total_limit": 1,
            "push_to_hub": False,
        },
    ),
    "llm-sft-chat-lora.yml": (
        "llm_sft",
        {
            "max_length": 2048,
            "column_mapping": {"messages": "messages"},
            "chat_template": "tokenizer",
            "use_lora": True,
            "quantization": "int4",
            "lora_target_modules": "q_proj,v_proj",
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.1,
            "merge_adapter": True,
            "optimizer": "paged_adamw_8bit",
            "grad_accum": 8,
            "mixed_precision": "bf16",
            "attn_implementation": "flash_attention_2",
            "valid_split": "test",
            "push_to_hub": True,
            "hub_repo_id": "alice/sft-chat-lora",
        },
    ),
    "llm-dpo.yml": (
        "llm_dpo",
        {
            "max_length": 256,
            "max_prompt_length": 64,
            "max_completion_length": 128,
            "beta": 0.2,
            "use_lora": True,
            "quantization": "none",
            "chat_template": "chatml",
            "column_mapping": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
            "learning_rate": 5e-6,
        },
    ),
    "llm-orpo.yml": (
        "llm_orpo",
        {
            "max_length": 512,
            "max_prompt_length": 128,
            "max_completion_length": 0,
            "beta": 0.1,
            "chat_template": "zephyr",
        },
    ),
    "llm-reward.yml": (
        "llm_reward",
        {"max_length": 384, "column_mapping": {"chosen": "chosen", "rejected": "rejected"}, "valid_split": "valid"},
    ),
    "llm-generic.yml": ("llm_pretrain", {"block_size": 64, "max_length": 64, "epochs": 2, "batch_size": 4}),
    "llm-trainer-dpo.yml": (
        "llm_dpo",
        {  # AutoTrain's defaults for every key the config leaves out
            "max_length": 1024,
            "max_prompt_length": 128,
            "learning_rate": 3e-5,
            "epochs": 1,
            "batch_size": 2,
            "grad_accum": 4,
            "warmup_ratio": 0.1,
            "use_lora": False,
            "beta": 0.1,
        },
    ),
    "text_classification.yml": (
        "text_classification",
        {
            "max_length": 256,
            "scheduler": "cosine",
            "eval_strategy": "steps",
            "logging_steps": 10,
            "mixed_precision": "fp16",
            "early_stopping_patience": 3,
            "early_stopping_threshold": 0.001,
            "save_total_limit": 2,
            "max_grad_norm": 0.5,
            "column_mapping": {"text": "text", "target": "label"},
            "hub_repo_id": "alice/text-clf",
        },
    ),
    "text-regression.yml": (
        "text_regression",
        {
            "early_stopping_patience": 2,
            "early_stopping_threshold": 0.005,
            "scheduler": "cosine",
            "learning_rate": 5e-5,
            "mixed_precision": "no",
            "column_mapping": {"text": "review", "target": "stars"},
        },
    ),
    "token_classification.yml": (
        "token_classification",
        {"max_length": 192, "column_mapping": {"tokens": "tokens", "tags": "ner_tags"}},
    ),
    "seq2seq.yml": (
        "seq2seq",
        {
            "max_length": 256,
            "max_target_length": 64,
            "use_lora": True,
            "lora_target_modules": "q,v",
            "valid_fraction": 0.0,
            "early_stopping_patience": 0,  # AutoTrain stops early only with validation data
        },
    ),
    "ext_qa.yml": (
        "extractive_qa",
        {
            "doc_stride": 96,
            "max_length": 384,
            "column_mapping": {"context": "context", "question": "question", "answers": "answers"},
        },
    ),
    "st-pair.yml": (
        "sentence_transformers",
        {
            "mode": "pair",
            "data_config": "pair",
            "train_split": "train",
            "valid_split": "dev",
            "column_mapping": {"anchor": "anchor", "positive": "positive"},
        },
    ),
    "st-pair_class.yml": (
        "sentence_transformers",
        {"mode": "pair_class", "column_mapping": {"premise": "premise", "hypothesis": "hypothesis", "label": "label"}},
    ),
    "st-pair_score.yml": (
        "sentence_transformers",
        {
            "mode": "pair_score",
            "max_length": 256,
            "column_mapping": {"sentence1": "sentence1", "sentence2": "sentence2", "score": "score"},
        },
    ),
    "st-triplet.yml": (
        "sentence_transformers",
        {"mode": "triplet", "column_mapping": {"anchor": "anchor", "positive": "positive", "negative": "negative"}},
    ),
    "st-qa.yml": ("sentence_transformers", {"mode": "qa", "column_mapping": {"query": "query", "answer": "answer"}}),
    "tabular.yml": (
        "tabular",
        {
            "model": "xgboost",
            "problem_type": "multiclass",  # AutoTrain's classification; two classes become binary
            "column_mapping": {"id": "id", "target": "diagnosis"},
            "feature_types": {"site": "categorical", "radius": "numeric", "texture": "numeric"},
            "num_trials": 20,
            "time_limit": 120,
            "seed": 1,
            "base_model": "",
        },
    ),
    "tabular-regression.yml": (
        "tabular",
        {
            "model": "hist_gradient_boosting",
            "problem_type": "regression",
            "column_mapping": {"id": "id", "target": "price"},
            "num_trials": 10,
        },
    ),
    "image-classification.yml": (
        "image_classification",
        {"epochs": 2, "column_mapping": {"image": "image", "target": "labels"}},
    ),
    "image-regression.yml": ("image_regression", {"epochs": 2, "early_stopping_threshold": 0.02}),
    "object-detection.yml": ("object_detection", {"image_square_size": 512, "epochs": 2}),
    "vlm-vqa.yml": (
        "vlm",
        {
            "use_lora": True,
            "lora_r": 8,
            "learning_rate": 4e-5,
            "gradient_checkpointing": True,  # disable_gradient_checkpointing: false
            "column_mapping": {"image": "image", "answer": "multiple_choice_answer", "question": "question"},
        },
    ),
    "vlm-captioning.yml": (
        "vlm",
        {
            "column_mapping": {"image": "image", "answer": "caption"},
            "use_lora": False,  # AutoTrain's defaults: peft off, lr 3e-5, batch 2, accumulation 4
            "learning_rate": 3e-5,
            "batch_size": 2,
            "grad_accum": 4,
        },
    ),
}


def test_the_corpus_is_the_expected_list():
    assert sorted(p.name for p in CORPUS.glob("*.yml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_config_validates_with_the_right_meaning(name):
    task_name, expected = EXPECTED[name]
    if task_name not in REGISTERED:
        with pytest.raises(UserError, match=r"Task `.*` \(AutoTrain's .*\) is not available in this version"):
            from_dict(_load(name))
        return
    task, params = from_dict(_load(name), env=True)  # as from the command line: ${HF_USERNAME} is read
    assert task.name == task_name
    got = {k: getattr(params, k) for k in expected}
    assert got == expected


def _class_of(doc: dict) -> str:
    return autotrain.TASKS[doc["task"]].params


def test_the_corpus_uses_every_key_of_every_autotrain_params_class():
    used: dict[str, set[str]] = {cls: set() for cls in AUTOTRAIN_FIELDS}
    for path in CORPUS.glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        used[_class_of(doc)] |= set(autotrain.flatten(doc))
    missing = {cls: sorted(set(AUTOTRAIN_FIELDS[cls]) - keys) for cls, keys in used.items()}
    assert {cls: keys for cls, keys in missing.items() if keys} == {}


def test_ignored_keys_are_printed_when_a_config_loads(capsys):
    from_dict(_load("llm-sft-chat-lora.yml"))
    err = capsys.readouterr().err
    for key in ("unsloth", "distributed_backend", "token"):
        assert f"[AutoTrain config] `{key}:" in err
    notes = autotrain.notes(_load("llm-sft.yml"))
    assert from_dict(_load("llm-sft.yml"))[1].report_to == "tensorboard"  # AutoTrain's `log` tracker
    assert any("block_size 128 and model_max_length 512: sequences of 128 tokens" in n for n in notes)
    assert any(
        n.startswith("`max_prompt_length: 64` ignored: AutoTrain does not use it for its `sft` trainer") for n in notes
    )
    assert any("model_ref` ignored: with peft" in n for n in autotrain.notes(_load("llm-dpo.yml")))
    assert any("`prompt_text_column: question` ignored" in n for n in autotrain.notes(_load("llm-reward.yml")))
    assert any("`dpo_beta: 0.5` ignored" in n for n in autotrain.notes(_load("llm-orpo.yml")))
    tab = autotrain.notes(_load("tabular.yml"))
    assert sum("ignored: Trainpad prepares columns per model family" in n for n in tab) == 3
    assert any(
        "hist_gradient_boosting` family stands in" in n for n in autotrain.notes(_load("tabular-regression.yml"))
    )
    if "vlm" in REGISTERED:
        vqa = autotrain.notes(_load("vlm-vqa.yml"))
        assert any(
            n.startswith("`quantization: int4` ignored: Trainpad's vlm trains LoRA on the unquantized") for n in vqa
        )
        assert any(n.startswith("trainer vqa: AutoTrain prompts PaliGemma-style") for n in vqa)


def test_keys_that_would_change_the_job_are_refused_with_the_reason():
    base = {"base_model": "m", "data": {"path": "d"}}
    with pytest.raises(UserError, match="add_eos_token: false` cannot be honoured"):
        from_dict({**base, "task": "llm-generic", "params": {"add_eos_token": False}})
    with pytest.raises(UserError, match="model_ref: other` cannot be honoured: Trainpad's DPO reference"):
        from_dict({**base, "task": "llm-dpo", "params": {"model_ref": "other"}})
    with pytest.raises(UserError, match="lists several lengths"):
        from_dict({**base, "task": "llm-sft", "params": {"block_size": [128, 256]}})
    with pytest.raises(UserError, match="tabular model `adaboost` is not in Trainpad"):
        from_dict({**base, "task": "tabular", "base_model": "adaboost"})
    with pytest.raises(UserError, match="chat_template: alpaca"):
        from_dict({**base, "task": "llm-sft", "data": {"path": "d", "chat_template": "alpaca"}})


def test_block_size_and_model_max_length_keep_their_autotrain_meanings():
    assert autotrain.block_length({"block_size": 128, "model_max_length": 512}, None) == 128
    assert (
        autotrain.block_length({"block_size": -1, "model_max_length": 512}, None) == 512
    )  # capped by the tokenizer limit
    assert autotrain.block_length({"block_size": -1, "model_max_length": 4096}, None) == 1024  # AutoTrain's default cap
    assert autotrain.block_length({"block_size": 2048, "model_max_length": 4096}, 1024) == 1024  # gpt2's own limit
    assert autotrain.block_length({"block_size": 2048, "model_max_length": 512}, 131072) == 512


def test_chat_template_none_or_null_means_plain_text_and_hosted_backends_run_on_hf_jobs():
    for value in ("none", None):
        doc = _load("llm-sft.yml")
        doc["data"]["chat_template"] = value
        _, params = from_dict(doc)
        assert params.column_mapping == {"text": "text"}
    doc = {**_load("llm-sft.yml"), "backend": "spaces-a10g-largex4"}
    converted, notes = autotrain.convert(doc)
    assert converted["backend"] == "hf-jobs" and any("TRAINPAD_HF_FLAVOR=a10g-largex4" in n for n in notes)
    assert autotrain.convert(_load("llm-sft.yml"))[0]["backend"] == "local"  # local-ui


def test_unset_hub_token_variable_is_never_read_but_an_unset_username_is_named(monkeypatch):
    _, params = from_dict(_load("text_classification.yml"), env=True)  # ${HF_TOKEN} unset: fine
    assert params.hub_repo_id == "alice/text-clf"
    _, params = from_dict(_load("text_classification.yml"))  # the app: the environment is never read
    assert params.hub_repo_id == "text-clf"
    assert any("is not read from the environment here" in n for n in autotrain.notes(_load("text_classification.yml")))
    monkeypatch.delenv("HF_USERNAME")
    with pytest.raises(UserError, match="HF_USERNAME is not set"):
        from_dict(_load("text_classification.yml"), env=True)


# ---- AutoTrain's own example configs (configs/ in huggingface/autotrain-advanced, 36 files) ----------------------

# Verdicts checked against the real files of AutoTrain's repository (each validated with its printed notes).
# A task name = validates as that Trainpad task; "unavailable" = "task X is not available in this version".
AUTOTRAIN_EXAMPLE_CONFIGS = {
    "extractive_question_answering/hub_dataset.yml": "extractive_qa",
    "extractive_question_answering/local_dataset.yml": "extractive_qa",
    "image_classification/hub_dataset.yml": "image_classification",
    "image_classification/local.yml": "image_classification",
    "image_scoring/hub_dataset.yml": "image_regression",
    "image_scoring/image_quality.yml": "image_regression",
    "image_scoring/local.yml": "image_regression",
    "llm_finetuning/gpt2_sft.yml": "llm_sft",
    "llm_finetuning/llama3-70b-orpo-v1.yml": "llm_orpo",
    "llm_finetuning/llama3-70b-sft.yml": "llm_sft",
    "llm_finetuning/llama3-8b-dpo-qlora.yml": "llm_dpo",
    "llm_finetuning/llama3-8b-orpo-space.yml": "llm_orpo",
    "llm_finetuning/llama3-8b-orpo.yml": "llm_orpo",
    "llm_finetuning/llama3-8b-sft-unsloth.yml": "llm_sft",
    "llm_finetuning/llama32-1b-sft.yml": "llm_sft",
    "llm_finetuning/qwen.yml": "llm_sft",
    "llm_finetuning/smollm2.yml": "llm_sft",
    "llm_finetuning/smollm2_guanaco.yml": "llm_sft",
    "llm_finetuning/smollm2_orpo.yml": "llm_orpo",
    "object_detection/hub_dataset.yml": "object_detection",
    "object_detection/local.yml": "object_detection",
    "sentence_transformers/local_dataset.yml": "sentence_transformers",
    "sentence_transformers/pair.yml": "sentence_transformers",
    "sentence_transformers/pair_class.yml": "sentence_transformers",
    "sentence_transformers/pair_score.yml": "sentence_transformers",
    "sentence_transformers/qa.yml": "sentence_transformers",
    "sentence_transformers/triplet.yml": "sentence_transformers",
    "seq2seq/hub_dataset.yml": "seq2seq",
    "seq2seq/local.yml": "seq2seq",
    "text_classification/hub_dataset.yml": "text_classification",
    "text_classification/local_dataset.yml": "text_classification",
    "text_regression/hub_dataset.yml": "text_regression",
    "text_regression/local_dataset.yml": "text_regression",
    "token_classification/hub_dataset.yml": "token_classification",
    "token_classification/local_dataset.yml": "token_classification",
    "vlm/paligemma_vqa.yml": "vlm",
}


def test_autotrain_example_config_verdicts_name_registered_tasks_or_unavailable_ones():
    assert len(AUTOTRAIN_EXAMPLE_CONFIGS) == 36
    tasks = {name for name in AUTOTRAIN_EXAMPLE_CONFIGS.values()}
    assert tasks - REGISTERED <= {"vlm"}  # the tasks a later issue adds


@pytest.mark.skipif(not os.environ.get("AUTOTRAIN_CONFIGS"), reason="AUTOTRAIN_CONFIGS (a checkout's configs/) unset")
def test_autotrain_example_configs_from_a_checkout():
    root = Path(os.environ["AUTOTRAIN_CONFIGS"])
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*.yml"))
    assert found == sorted(AUTOTRAIN_EXAMPLE_CONFIGS)
    for name, task_name in AUTOTRAIN_EXAMPLE_CONFIGS.items():
        doc = yaml.safe_load((root / name).read_text())
        if task_name not in REGISTERED:
            with pytest.raises(UserError, match="is not available in this version"):
                from_dict(doc)
            continue
        assert from_dict(doc)[0].name == task_name, name


# ---- same job, same result: the token blocks and optimizer steps both ways ------------------------------------
# AutoTrain's side is re-implemented from its source (trl 0.13's ConstantLengthDataset for SFT, train_clm_default's
# group_texts for the generic trainer, train_clm_reward's length filter); Trainpad's side is its real trainer, built
# from the AutoTrain config and stopped before training.


def autotrain_sft_blocks(texts: list[str], tok, block: int, buffer_chars: float | None = None) -> int:
    """trl 0.13 packing: buffers of ~block*3.6*1024 characters, each text tokenized with its special tokens and
    followed by EOS, cut into blocks; each buffer's last partial block is dropped."""
    limit = buffer_chars or block * 3.6 * 1024
    blocks, buffer, size = 0, [], 0
    for i, text in enumerate(texts):
        buffer.append(text)
        size += len(text)
        if size >= limit or i == len(texts) - 1:
            ids = sum((t + [tok.eos_token_id] for t in tok(buffer, add_special_tokens=True)["input_ids"]), [])
            blocks += len(ids) // block
            buffer, size = [], 0
    return blocks


def autotrain_generic_blocks(texts: list[str], tok, block: int, shards: int = 4, batch: int = 1000) -> int:
    """train_clm_default: text + eos_token (add_eos_token), tokenized, then `group_texts` in `datasets.map` batches
    of 1000 rows over num_proc=4 contiguous shards; each batch drops its partial block."""
    ids = tok([t + tok.eos_token for t in texts])["input_ids"]
    n, blocks = len(ids), 0
    for s in range(shards):
        start = (n // shards) * s + min(s, n % shards)
        end = start + n // shards + (1 if s < n % shards else 0)
        for b in range(start, end, batch):
            blocks += sum(len(x) for x in ids[b : min(b + batch, end)]) // block
    return blocks


def autotrain_reward_pairs(rows: list[dict], tok, block: int) -> int:
    """train_clm_reward: chats rendered with the template, tokenized, pairs longer than block_size left out."""
    keep = 0
    for r in rows:
        sides = [tok.apply_chat_template(r[k], tokenize=False) for k in ("chosen", "rejected")]
        keep += all(len(tok(s, truncation=True)["input_ids"]) <= block for s in sides)
    return keep


def optimizer_steps(examples: int, batch: int, accum: int, epochs: int) -> int:
    import math

    return epochs * math.ceil(math.ceil(examples / batch) / accum)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from tests.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _trainpad_trainer(doc: dict, frame, tmp_path, monkeypatch):
    """The Trainpad task and its real trainer for an AutoTrain config, captured where training would start."""
    from engine.llm import train as llm_train
    from engine.task import Job

    task, params = from_dict(doc)
    captured = {}
    monkeypatch.setattr(llm_train, "fit", lambda trainer, job, **kw: captured.setdefault("trainer", trainer))
    task.train(Job(task, params, tmp_path, frame, None))
    return task, params, captured["trainer"]


def _trainpad_steps(trainer) -> tuple[int, int]:
    args = trainer.args
    batches = len(trainer.get_train_dataloader())
    import math

    return len(trainer.train_dataset), int(args.num_train_epochs) * math.ceil(
        batches / args.gradient_accumulation_steps
    )


def _doc(task: str, model, params: dict, chat_template=None, columns=None) -> dict:
    return {
        "task": task,
        "base_model": str(model),
        "project_name": "same-job",
        "backend": "local",
        "data": {
            "path": "d",
            "train_split": "train",
            "valid_split": None,
            "chat_template": chat_template,
            "column_mapping": columns or {},
        },
        "params": {"mixed_precision": "none", "logging_steps": 1, **params},
    }


@pytest.mark.parametrize("peft", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("form", ["text", "chat"])
def test_sft_blocks_and_steps_match_autotrain(tiny_llm, tmp_path, monkeypatch, form, peft):
    import pandas as pd
    from transformers import AutoTokenizer

    from tests.tiny import chat_rows, text_rows

    tok = AutoTokenizer.from_pretrained(str(tiny_llm))
    rows = text_rows(240) if form == "text" else chat_rows(240)
    column = "text" if form == "text" else "messages"
    params = {"block_size": 64, "model_max_length": 512, "epochs": 2, "batch_size": 2, "gradient_accumulation": 4}
    params |= {"peft": True, "quantization": None} if peft else {}
    doc = _doc("llm-sft", tiny_llm, params, None if form == "text" else "tokenizer", {"text_column": column})
    task, p, trainer = _trainpad_trainer(doc, pd.DataFrame(rows), tmp_path, monkeypatch)
    assert task.name == "llm_sft" and p.max_length == 64 and p.packing == "wrapped" and p.drop_partial_block
    assert p.use_lora is peft
    texts = (
        [r["text"] for r in rows]
        if form == "text"
        else [tok.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    )
    at_blocks = autotrain_sft_blocks(texts, tok, 64)
    tp_blocks, tp_steps = _trainpad_steps(trainer)
    assert all(len(x) <= 64 for x in trainer.train_dataset["input_ids"])
    if form == "text":
        assert tp_blocks == at_blocks  # the same token stream (text + EOS per row), partial block dropped
    else:
        # AutoTrain adds an EOS after each rendered chat (its text already ends with the template's end token):
        # one token per row more in its stream, so at most ceil(rows / block) + 1 more blocks
        assert 0 <= at_blocks - tp_blocks <= len(rows) // 64 + 1
    at_steps = optimizer_steps(at_blocks, 2, 4, 2)
    assert tp_steps == at_steps if form == "text" else abs(tp_steps - at_steps) <= 2


def test_generic_blocks_and_steps_match_autotrain(tiny_llm, tmp_path, monkeypatch):
    import pandas as pd
    from transformers import AutoTokenizer

    from tests.tiny import text_rows

    tok = AutoTokenizer.from_pretrained(str(tiny_llm))
    rows = text_rows(400)
    doc = _doc(
        "llm-generic",
        tiny_llm,
        {"block_size": 32, "epochs": 1, "batch_size": 4, "gradient_accumulation": 2},
        None,
        {"text_column": "text"},
    )
    task, p, trainer = _trainpad_trainer(doc, pd.DataFrame(rows), tmp_path, monkeypatch)
    assert task.name == "llm_pretrain" and p.block_size == 32
    at_blocks = autotrain_generic_blocks([r["text"] for r in rows], tok, 32)
    tp_blocks, tp_steps = _trainpad_steps(trainer)
    # the same stream (text + EOS per document); AutoTrain's 4 shards each drop their partial block
    assert 0 <= tp_blocks - at_blocks <= 3
    assert abs(tp_steps - optimizer_steps(at_blocks, 4, 2, 1)) <= 1


@pytest.mark.parametrize("trainer_name", ["dpo", "orpo"])
def test_preference_pairs_and_steps_match_autotrain(tiny_llm, tmp_path, monkeypatch, trainer_name):
    import pandas as pd

    from tests.tiny_llm import preference_rows

    rows = preference_rows(30, "text")
    params = {"trainer": trainer_name, "block_size": 128, "max_prompt_length": 32, "epochs": 2, "batch_size": 4}
    cols = {"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"}
    task, p, trainer = _trainpad_trainer(
        _doc("llm", tiny_llm, params, None, cols), pd.DataFrame(rows), tmp_path, monkeypatch
    )
    assert task.name == f"llm_{trainer_name}" and p.max_length == 128 and p.max_prompt_length == 32
    pairs, steps = _trainpad_steps(trainer)
    assert pairs == 30  # neither tool drops a pair: both truncate to the length limits
    assert steps == optimizer_steps(30, 4, 4, 2)  # AutoTrain's default gradient_accumulation is 4


def test_reward_pairs_and_steps_match_autotrain(tiny_llm, tmp_path, monkeypatch):
    import pandas as pd
    from transformers import AutoTokenizer

    from tests.tiny_llm import preference_rows

    tok = AutoTokenizer.from_pretrained(str(tiny_llm))
    rows = preference_rows(40, "chat")
    rows += [{"chosen": r["chosen"] * 3, "rejected": r["rejected"] * 3} for r in preference_rows(10, "chat", seed=1)]
    block = 40
    params = {"block_size": block, "epochs": 1, "batch_size": 2, "gradient_accumulation": 1}
    cols = {"text_column": "chosen", "rejected_text_column": "rejected"}
    task, p, trainer = _trainpad_trainer(
        _doc("llm-reward", tiny_llm, params, "tokenizer", cols), pd.DataFrame(rows), tmp_path, monkeypatch
    )
    assert task.name == "llm_reward" and p.max_length == block
    at_pairs = autotrain_reward_pairs(rows, tok, block)
    assert 0 < at_pairs < len(rows)  # the long pairs are left out by both
    pairs, steps = _trainpad_steps(trainer)
    assert pairs == at_pairs and steps == optimizer_steps(at_pairs, 2, 1, 1)


# ---- AutoTrain's command line -----------------------------------------------------------------------------------

LLM_COMMAND = (
    "autotrain llm --train --model HuggingFaceTB/SmolLM2-135M --project-name my-dpo --data-path data/ "
    "--text-column chosen --rejected_text_column rejected --prompt-text-column prompt --trainer dpo --epochs 3 "
    "--lr 2e-4 --batch-size 2 --model_max_length 1024 --peft --quantization none --dpo-beta 0.3 "
    "--max-prompt-length 64 --token hf_secret_value --backend local-cli"
)


def test_an_autotrain_command_line_maps_like_its_yaml():
    doc = autotrain.parse_command(LLM_COMMAND)
    assert doc["task"] == "llm" and doc["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert doc["params"]["peft"] is True and doc["params"]["lr"] == 2e-4 and doc["params"]["block_size"] == 1024
    task, params = from_dict(doc)
    assert task.name == "llm_dpo"
    assert (params.max_length, params.max_prompt_length, params.beta, params.use_lora) == (1024, 64, 0.3, True)
    assert params.column_mapping == {"chosen": "chosen", "rejected": "rejected", "prompt": "prompt"}
    assert (params.epochs, params.batch_size, params.grad_accum, params.quantization) == (3, 2, 4, "none")
    _, tab = from_dict(
        autotrain.parse_command(
            "autotrain tabular --train --model xgboost --data-path d --task regression --target-columns price --num-trials 5"
        )
    )
    assert (tab.problem_type, tab.num_trials, tab.column_mapping) == ("regression", 5, {"target": "price"})
    with pytest.raises(UserError, match="Not an AutoTrain training command"):
        autotrain.parse_command("autotrain app --port 7860")


def test_trainpad_import_writes_a_config_that_loads_and_never_the_token(tmp_path, capsys):
    from engine.cli import main
    from engine.config import load_config

    out = tmp_path / "dpo.yaml"
    assert main(["import", LLM_COMMAND, "-o", str(out)]) == 0
    text = out.read_text()
    assert "hf_secret_value" not in text and "--token ***" in text
    assert "sequences of 1024 tokens" in text  # AutoTrain CLI's default --block-size
    task, params = load_config(out)
    assert task.name == "llm_dpo" and params.max_length == 1024 and params.beta == 0.3


# ---- tabular: AutoTrain's protocol (train and validation files) uses every labelled row -----------------------


def _breast_cancer_splits(folder: Path, seed: int = 42) -> tuple[Path, Path, object]:
    """AutoTrain's layout (train.csv + valid.csv in one folder: 364 + 91 rows) and 114 rows neither tool sees."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.insert(0, "id", range(len(frame)))
    seen, unseen = train_test_split(frame, test_size=0.2, random_state=seed, stratify=frame["diagnosis"])
    train, valid = train_test_split(seen, test_size=0.2, random_state=seed, stratify=seen["diagnosis"])
    train.to_csv(folder / "train.csv", index=False)
    valid.to_csv(folder / "valid.csv", index=False)
    return folder, folder / "valid.csv", unseen


@pytest.mark.slow
@pytest.mark.parametrize("rows", ["train", "score"])
def test_tabular_validation_rows_join_the_cross_validation_and_the_card_says_so(tmp_path, rows):
    from engine.run.worker import model_card
    from engine.runfiles import MODEL_DIR
    from engine.tabular.bundle import predict as predict_bundle
    from engine.task import Job

    folder, _, unseen = _breast_cancer_splits(tmp_path)
    doc = {
        "task": "tabular",
        "base_model": "xgboost",
        "project_name": "bc",
        "data": {
            "path": str(folder),
            "train_split": "train",
            "valid_split": "valid",
            "column_mapping": {"id_column": "id", "target_columns": ["diagnosis"]},
        },
        "params": {"task": "classification", "time_limit": 8, "num_trials": 4},
    }
    task, params = from_dict(doc)
    params = params.model_copy(update={"validation_rows": rows, "feature_importance": False})
    (tmp_path / "run").mkdir()
    metrics = task.train(Job(task, params, tmp_path / "run", None, None))
    if rows == "train":
        assert metrics["train_rows"] == 455 and metrics["eval_rows"] == 91
        assert metrics["eval_source"] == "validation rows, out of fold"
        assert "the 364 training rows and the 91 validation rows went into one cross-validation" in metrics["protocol"]
    else:
        assert metrics["train_rows"] == 364 and metrics["eval_source"] == "validation"
        assert "held-out validation rows, which no model saw" in metrics["protocol"]
    card = model_card(task, params, metrics, "bc")
    assert "## How the data was used" in card and metrics["protocol"] in card
    rows_out = predict_bundle(tmp_path / "run" / MODEL_DIR, unseen.drop(columns="diagnosis").to_dict(orient="records"))
    accuracy = sum(r["prediction"] == y for r, y in zip(rows_out, unseen["diagnosis"], strict=True)) / len(unseen)
    assert accuracy > 0.9
