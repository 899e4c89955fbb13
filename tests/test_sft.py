"""LLM SFT end to end through the supervisor and a worker subprocess, with a tiny in-process Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from tests.tiny import chat_rows, text_rows, write_jsonl

SFT = get_task("llm_sft")
pytestmark = pytest.mark.slow


def sft_params(model: Path, data: Path, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 4,
        "batch_size": 8,
        "max_length": 64,
        "learning_rate": 3e-3,
        "valid_fraction": 0.1,
        "logging_steps": 2,
    }
    return validate_params(SFT.params, {**base, **kw})


def losses(store, run_id: str, name: str = "loss") -> list[float]:
    return [m["value"] for m in store.metrics(run_id, [name])]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(next(model_dir.glob("*.safetensors"))))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sft_chat_end_to_end(supervisor, tiny_llama, tmp_path, lora):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(240))
    run_id = supervisor.submit(SFT, sft_params(tiny_llama, data, use_lora=lora, learning_rate=1e-2 if lora else 3e-3))
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]
    assert row["exit_code"] == 0

    train_loss = losses(supervisor.store, run_id)
    assert len(train_loss) >= 3 and train_loss[-1] < train_loss[0] * 0.9
    eval_loss = losses(supervisor.store, run_id, "eval_loss")
    assert eval_loss and eval_loss[-1] < eval_loss[0] + 1e-6
    assert row["key_metric_name"] == "eval_loss" and row["key_metric"] == pytest.approx(eval_loss[-1], rel=1e-3)
    assert losses(supervisor.store, run_id, "tokens_per_second")[-1] > 0

    run_dir = Path(row["run_dir"])
    model_dir = run_dir / "model"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_loss"] == pytest.approx(eval_loss[-1], rel=1e-3) and "eval_perplexity" in metrics
    card = (model_dir / "README.md").read_text()
    assert "tags:" in card and "llm_sft" in card and "eval_loss" in card

    before, after = weights(tiny_llama), weights(model_dir)  # merged LoRA or full weights: both changed
    changed = [k for k in before if k in after and not (before[k] == after[k]).all()]
    assert changed, "no weight changed"
    if lora:
        assert (run_dir / "adapter" / "adapter_config.json").exists()
        assert not (model_dir / "adapter_config.json").exists(), "merged model is standalone"

    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(str(model_dir)).config.num_hidden_layers == 2
    reply = predict_dir(run_dir, [{"role": "user", "content": "what is 2 plus 3?"}])
    assert isinstance(reply, str)  # may be empty: generation stops where a barely trained model ends its turn


def test_sft_plain_text_lora_adapter_only(supervisor, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "text.jsonl", text_rows(200))
    params = sft_params(
        tiny_llama, data, use_lora=True, merge_adapter=False, valid_fraction=0.0, epochs=1, learning_rate=1e-2
    )
    run_id = supervisor.submit(SFT, params)
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]
    model_dir = Path(row["run_dir"]) / "model"
    assert (model_dir / "adapter_config.json").exists()
    assert losses(supervisor.store, run_id, "eval_loss") == []  # no validation asked for
    assert predict_dir(Path(row["run_dir"]), "alice likes the colour").strip()


def test_prompt_completion_with_completion_only_loss(supervisor, tiny_llama, tmp_path):
    rows = [{"prompt": f"what is {a} plus {a}?", "completion": f" {2 * a}"} for a in range(10)] * 12
    data = write_jsonl(tmp_path / "pc.jsonl", rows)
    params = sft_params(tiny_llama, data, use_lora=False, completion_only_loss=True, packing="none", epochs=1)
    row = supervisor.wait(supervisor.submit(SFT, params), timeout=300)
    assert row["status"] == "succeeded", row["error"]


def two_turn_chat(i: int) -> dict:
    """A chat whose earlier answer must be masked too: only the last assistant turn is the completion."""
    turns = [(f"what is {i} plus 1?", f"{i} plus 1 is {i + 1}."), (f"and {i} plus {i}?", f"{i} plus {i} is {2 * i}.")]
    return {"messages": [{"role": r, "content": c} for q, a in turns for r, c in (("user", q), ("assistant", a))]}


MASKING_FORMS = {  # form -> (row i, the prompt text that must be masked, the answer that alone is learned)
    "prompt_completion": (
        lambda i: {"prompt": f"what is {i} plus {i}?", "completion": f" {2 * i}"},
        "what is {i} plus {i}?",
        " {j}",
    ),
    "chat": (
        two_turn_chat,
        "user\nwhat is {i} plus 1?<|im_end|>\n<|im_start|>assistant\n{i} plus 1 is",
        "{i} plus {i} is {j}.",
    ),
}


def train_batch(tiny_llama: Path, tmp_path: Path, rows: list[dict], **kw) -> list[tuple[str, str]]:
    """The first training batch exactly as a run builds it (the task's own trainer and collator), as
    (masked text, learned text) per sequence, after checking that learned labels equal the input ids."""
    import pandas as pd

    from engine.task import Job
    from engine.tasks.llm_sft import build_trainer

    kw = {"use_lora": False, "packing": "none", "batch_size": len(rows), **kw}
    params = sft_params(tiny_llama, write_jsonl(tmp_path / "d.jsonl", rows), **kw)
    trainer = build_trainer(Job(SFT, params, tmp_path, pd.DataFrame(rows), None))
    batch = next(iter(trainer.get_train_dataloader()))
    out = []
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        learned = labels != -100
        assert (labels[learned] == ids[learned]).all() and not learned[mask == 0].any()
        out.append(
            (
                trainer.processing_class.decode(ids[(mask == 1) & ~learned]),
                trainer.processing_class.decode(ids[learned]),
            )
        )
    return out


@pytest.mark.parametrize("form", list(MASKING_FORMS))
def test_completion_only_loss_masks_prompt_tokens(tiny_llama, tmp_path, form):
    """completion_only_loss: the prompt (user turns and earlier answers) gets label -100 and only the final
    answer (and its end-of-turn token) is learned; without it, the prompt tokens are learned too."""
    make_row, prompt_text, answer_text = MASKING_FORMS[form]
    rows = [make_row(i) for i in range(2, 10)]
    prompt_of = {answer_text.format(i=i, j=2 * i): prompt_text.format(i=i) for i in range(2, 10)}
    sequences = train_batch(tiny_llama, tmp_path, rows, completion_only_loss=True)
    assert len(sequences) == len(rows)
    for masked, learned in sequences:
        answer = learned.removesuffix("\n").removesuffix("<|im_end|>")
        assert answer in prompt_of and prompt_of[answer] in masked
    sequences = train_batch(tiny_llama, tmp_path, rows, completion_only_loss=False)
    assert all(masked == "" and "what is" in learned for masked, learned in sequences)


def test_bad_inputs_are_refused_before_queueing(supervisor, tiny_llama, tmp_path):
    from engine.errors import UserError

    data = tmp_path / "d.csv"
    data.write_text("body\nhello\n")
    with pytest.raises(UserError, match="SFT needs a `text` column"):
        supervisor.submit(SFT, sft_params(tiny_llama, data))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="is empty"):
        supervisor.submit(SFT, sft_params(tiny_llama, empty))
    with pytest.raises(UserError, match="Unknown parameter `epoch`"):
        validate_params(SFT.params, {"epoch": 1})
    with pytest.raises(UserError, match="`batch_size` = 0"):
        validate_params(SFT.params, {"batch_size": 0})
    assert supervisor.store.list_runs() == []
    assert list(supervisor.runs_dir.iterdir()) == []


def test_failing_run_is_failed_with_a_readable_error(supervisor, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(20))
    params = sft_params(tmp_path / "no-such-model", data)
    with pytest.raises(UserError, match="no-such-model"):
        supervisor.submit(SFT, params)  # Check settles the model before launch...
    row = supervisor.wait(supervisor.submit(SFT, params, check=False), timeout=120)  # ...and the worker still says
    assert row["status"] == "failed" and row["exit_code"] != 0
    assert "no-such-model" in row["error"]
    assert (Path(row["run_dir"]) / "error.json").exists()


def test_quantization_on_cpu_fails_with_a_clear_message(supervisor, tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(20))
    row = supervisor.wait(supervisor.submit(SFT, sft_params(tiny_llama, data, quantization="int4")), timeout=120)
    assert row["status"] == "failed"
    assert "quantization=int4 needs a CUDA GPU" in row["error"]


def test_token_never_written_to_run_folder_or_db(supervisor, tiny_llama, tmp_path):
    token = "hf_SECRETtoken1234567890"
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(40))
    params = sft_params(tiny_llama, data, epochs=1, use_lora=True)
    row = supervisor.wait(supervisor.submit(SFT, params, secrets={"HF_TOKEN": token}), timeout=300)
    assert row["status"] == "succeeded", row["error"]
    files = [p for p in supervisor.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "trainpad.db" for p in files)
    leaked = [str(p) for p in files if token.encode() in p.read_bytes()]
    assert leaked == []
