"""DPO, ORPO, reward modelling and continued pretraining end to end through the supervisor and a worker
subprocess, on two architectures: tiny Llama with LoRA, tiny Qwen2 with full fine-tuning. Each run has a
validation split; the preference tasks must rank the held-out pairs better than chance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from tests.tiny import text_rows, write_jsonl
from tests.tiny_llm import build_tiny_qwen2, preference_rows

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "what is 2 plus 3?"}]


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2")


def params_for(task, model: Path, data: Path, lora: bool, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 2,
        "batch_size": 8,
        "max_length": 48,
        "valid_fraction": 0.25,
        "logging_steps": 2,
        "use_lora": lora,
        "learning_rate": 5e-3 if lora else 1e-3,
    }
    return validate_params(task.params, {**base, **kw})


def run(supervisor, task, params) -> tuple[dict, Path]:
    run_id = supervisor.submit(task, params)
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]
    return row, Path(row["run_dir"])


def logged(supervisor, row, name: str) -> list[float]:
    return [m["value"] for m in supervisor.store.metrics(row["id"], [name])]


def assert_generates(model_dir: Path) -> None:
    """The folder is a standalone causal LM (no adapter) that loads and generates."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not (model_dir / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    enc = tok("what is", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]


def assert_ranks_pairs(supervisor, row, key: str) -> None:
    values = logged(supervisor, row, key)
    assert values, f"{key} was not logged"
    assert values[-1] > 0.5 and row["key_metric"] == pytest.approx(values[-1])


@pytest.mark.parametrize("arch", ["llama_lora", "qwen2_full"])
def test_dpo(supervisor, tiny_llama, tiny_qwen2, tmp_path, arch, capsys):
    lora = arch == "llama_lora"
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(64, "chat"))
    task = get_task("llm_dpo")
    params = params_for(  # early stopping: the best checkpoint is picked on the task's key metric
        task, tiny_llama if lora else tiny_qwen2, data, lora, merge_adapter=False, beta=0.1, early_stopping_patience=2
    )
    row, run_dir = run(supervisor, task, params)
    assert_ranks_pairs(supervisor, row, "eval_rewards/accuracies")
    assert logged(supervisor, row, "eval_rewards/margins")[-1] > 0
    assert logged(supervisor, row, "tokens_per_second")[-1] > 0
    assert isinstance(predict_dir(run_dir, QUESTION), str)
    if lora:  # merge as a separate action: `trainpad merge RUN_ID` runs engine.run.merge in a worker process
        from engine.cli import main as cli

        assert (run_dir / "model" / "adapter_config.json").exists()
        assert cli(["merge", row["id"]]) == 0
        assert str(run_dir / "merged") in capsys.readouterr().out
        assert_generates(run_dir / "merged")
        assert (run_dir / "model" / "adapter_config.json").exists(), "model/ is left as it was"
    else:
        assert_generates(run_dir / "model")


@pytest.mark.parametrize("arch", ["llama_lora", "qwen2_full"])
def test_orpo(supervisor, tiny_llama, tiny_qwen2, tmp_path, arch):
    lora = arch == "llama_lora"
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(64, "text"))
    task = get_task("llm_orpo")
    params = params_for(task, tiny_llama if lora else tiny_qwen2, data, lora, beta=0.5, max_prompt_length=16)
    row, run_dir = run(supervisor, task, params)
    assert_ranks_pairs(supervisor, row, "eval_rewards/accuracies")
    assert logged(supervisor, row, "tokens_per_second")[-1] > 0
    assert_generates(run_dir / "model")  # merged at the end when LoRA
    assert isinstance(predict_dir(run_dir, "what is 2 plus 3?"), str)


@pytest.mark.parametrize("arch", ["llama_lora", "qwen2_full"])
def test_reward(supervisor, tiny_llama, tiny_qwen2, tmp_path, arch):
    from transformers import AutoModelForSequenceClassification

    lora = arch == "llama_lora"
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(64, "explicit_chat" if lora else "text"))
    task = get_task("llm_reward")
    params = params_for(task, tiny_llama if lora else tiny_qwen2, data, lora, gradient_checkpointing=lora)
    row, run_dir = run(supervisor, task, params)
    assert_ranks_pairs(supervisor, row, "eval_accuracy")
    model_dir = run_dir / "model"
    assert not (model_dir / "adapter_config.json").exists()
    assert AutoModelForSequenceClassification.from_pretrained(str(model_dir)).config.num_labels == 1
    if lora:
        good = predict_dir(run_dir, [*QUESTION, {"role": "assistant", "content": "2 plus 3 is 5."}])
        bad = predict_dir(run_dir, {"prompt": QUESTION, "response": "no no no no no."})
    else:
        good = predict_dir(run_dir, {"prompt": "what is 2 plus 3?", "response": "2 plus 3 is 5."})
        bad = predict_dir(run_dir, "what is 2 plus 3?no no no no no.")
    assert isinstance(good, float) and good > bad


@pytest.mark.parametrize("arch", ["llama_lora", "qwen2_full"])
def test_pretrain(supervisor, tiny_llama, tiny_qwen2, tmp_path, arch):
    lora = arch == "llama_lora"
    data = write_jsonl(tmp_path / "text.jsonl", text_rows(120))
    task = get_task("llm_pretrain")
    params = params_for(
        task,
        tiny_llama if lora else tiny_qwen2,
        data,
        lora,
        block_size=32,
        gradient_checkpointing=lora,
        early_stopping_patience=2,  # the best checkpoint is picked on eval_perplexity (through eval_loss)
    )
    row, run_dir = run(supervisor, task, params)
    ppl = logged(supervisor, row, "eval_perplexity")
    assert len(ppl) >= 2 and ppl[-1] < ppl[0] and row["key_metric"] == pytest.approx(ppl[-1], rel=1e-3)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_perplexity"] == pytest.approx(ppl[-1], rel=1e-3)
    assert logged(supervisor, row, "tokens_per_second")[-1] > 0
    assert_generates(run_dir / "model")
    reply = predict_dir(run_dir, {"text": "alice likes the", "max_new_tokens": 8})
    assert isinstance(reply, str) and reply.strip()
