"""Vision-language fine-tuning end to end with a tiny LLaVA on coloured shapes: answers rise above chance with LoRA
on the language model; bad images, mismatched image parts and too-long examples refused before queueing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.params import validate_params
from engine.run.predict import predict_dir
from engine.task import get_task
from engine.vision import vlm
from tests.tiny import metric_values, refused, write_csv, write_jsonl
from tests.tiny_vlm import COLOURS, SHAPES, build_tiny_llava, shape_rows

VLM = get_task("vlm")


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")


def vlm_params(model: Path, data: Path, **kw):
    base = {
        "base_model": str(model),
        "data_path": str(data),
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "max_length": 64,
        "valid_fraction": 0.1,
    }
    return validate_params(VLM.params, {**base, **kw})


@pytest.mark.slow
def test_vqa_answers_rise_above_chance_with_lora(supervisor, tiny_llava, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "shapes"  # an image folder with metadata.csv (file_name, question, answer)
    write_csv(folder / "metadata.csv", shape_rows(folder, 240))
    params = vlm_params(tiny_llava, folder, epochs=2, eval_strategy="steps", eval_steps=8)
    row = supervisor.wait(supervisor.submit(VLM, params), timeout=400)
    assert row["status"] == "succeeded", row["error"]
    loss, exact = (metric_values(supervisor.store, row["id"], m) for m in ("eval_loss", "eval_exact_match"))
    assert loss[-1] < loss[0], loss
    assert exact[0] < 25 and exact[-1] >= 60, exact  # generated answers at each evaluation; chance is 25%
    assert {"eval_rougeL", "eval_bleu"} <= set(supervisor.store.metric_names(row["id"]))

    run_dir = Path(row["run_dir"])
    held_out = shape_rows(tmp_path / "test", 24, seed=9)
    answers = [
        predict_dir(run_dir, {"image": str(tmp_path / "test" / r["file_name"]), "question": r["question"]})
        for r in held_out
    ]
    accuracy = sum(a == r["answer"] for a, r in zip(answers, held_out, strict=True)) / len(held_out)
    assert accuracy >= 0.6 > 1 / len(COLOURS), (accuracy, answers)  # chance is 1 in 4

    assert (run_dir / "adapter" / "adapter_config.json").exists()
    before, after = (
        load_file(str(tiny_llava / "model.safetensors")),
        load_file(str(run_dir / "model" / "model.safetensors")),
    )
    changed = {k for k in before if k in after and not (before[k] == after[k]).all()}
    assert changed and not any("vision_tower" in k for k in changed), "LoRA on the language model only"
    assert any("language_model" in k for k in changed) and any("multi_modal_projector" in k for k in changed)


def captions(folder: Path, n: int, seed: int = 0) -> list[dict]:
    """Captioning rows {file_name, caption}: "a red square"."""
    return [
        {"file_name": r["file_name"], "caption": f"a {r['answer']} {r['question'].split()[-1].rstrip('?')}"}
        for r in shape_rows(folder, n, seed)
    ]


def mismatched(caption: str) -> str:
    """A caption with the other colour and shape: every content word wrong."""
    _, colour, shape = caption.split()
    colours = sorted(COLOURS)
    return f"a {colours[(colours.index(colour) + 1) % len(colours)]} {SHAPES[1 - SHAPES.index(shape)]}"


@pytest.mark.slow
def test_captioning_scored_with_cider(supervisor, tiny_llava, tmp_path):
    folder = tmp_path / "shapes"
    write_csv(folder / "metadata.csv", captions(folder, 240))
    params = vlm_params(tiny_llava, folder, epochs=2, eval_strategy="steps", eval_steps=10)
    row = supervisor.wait(supervisor.submit(VLM, params), timeout=400)
    assert row["status"] == "succeeded", row["error"]
    cider, rouge = (metric_values(supervisor.store, row["id"], m) for m in ("eval_cider", "eval_rougeL"))
    assert cider[-1] > cider[0] + 1 and rouge[-1] > rouge[0], (cider, rouge)  # BLEU-4 stays 0 on 3-word captions

    held_out = captions(tmp_path / "test", 24, seed=9)
    refs = [r["caption"] for r in held_out]
    said = [predict_dir(Path(row["run_dir"]), str(tmp_path / "test" / r["file_name"])) for r in held_out]
    trained, wrong = vlm.cider(said, refs), vlm.cider([mismatched(c) for c in refs], refs)
    assert 0 <= wrong < 1 < trained <= vlm.cider(refs, refs), (trained, wrong, said)


def test_datasets_image_feature_saved_or_from_the_hub(tiny_llava, tmp_path):
    from datasets import Dataset, Image

    from engine.data.splits import _load_hub, load_splits

    rows = shape_rows(tmp_path / "png", 6)
    images = [{"bytes": (tmp_path / "png" / r["file_name"]).read_bytes(), "path": r["file_name"]} for r in rows]
    columns = {"image": images, "question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]}
    ds = Dataset.from_dict(columns).cast_column("image", Image())  # bytes + bare names, as the Hub stores them
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    saved = vlm_params(tiny_llava, tmp_path / "saved", valid_fraction=0)
    train, _ = load_splits(VLM, saved)
    assert VLM.check_data(train, None, saved) == [] and "6 training examples" in VLM.data_summary(VLM, saved)
    hub, _ = _load_hub(vlm_params(tiny_llava, tmp_path / "hub"), None)  # load_dataset, as for a Hub id
    assert VLM.check_data(hub, None, saved) == []
    example = vlm.Examples(hub, saved)[0]
    assert example["images"][0].size == (32, 32) and vlm.answer(example["chat"]) == rows[0]["answer"]


def test_bad_images_and_chats_refused_before_queueing(supervisor, tiny_llava, tmp_path):
    rows = shape_rows(tmp_path, 6)
    (tmp_path / rows[1]["file_name"]).write_bytes(b"\x89PNG broken")
    rows[2]["file_name"] = "missing.png"
    data = write_csv(tmp_path / "train.csv", rows)
    message = refused(supervisor, VLM, vlm_params(tiny_llava, data, valid_fraction=0))
    assert rows[1]["file_name"] in message and "could not be decoded" in message, message
    assert "missing.png" in message and "does not exist" in message, message

    chats = [
        {
            "image": r["file_name"],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "colour?"}],
                },
                {"role": "assistant", "content": "red"},
            ],
        }
        for r in shape_rows(tmp_path / "ok", 4)
    ]
    for c in chats:
        c["image"] = str(tmp_path / "ok" / c["image"])
    message = refused(
        supervisor, VLM, vlm_params(tiny_llava, write_jsonl(tmp_path / "chats.jsonl", chats), valid_fraction=0)
    )
    assert "Row 1" in message and "2 image part(s) but the row has 1 image(s)" in message, message


def test_too_long_with_image_tokens_refused(supervisor, tiny_llava, tmp_path):
    data = write_csv(tmp_path / "train.csv", shape_rows(tmp_path, 4))
    message = refused(supervisor, VLM, vlm_params(tiny_llava, data, max_length=30, valid_fraction=0))
    assert "max_length 30" in message and "image tokens" in message, message
    summary = VLM.data_summary(VLM, vlm_params(tiny_llava, data))
    assert "question answering" in summary and "Tokens per example" in summary and "median 39" in summary, summary


def test_captions_and_chats_become_chats():
    caption = vlm.chat({"image": "a.png", "answer": "a red square"}, 1, "Describe the image.")
    assert caption[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Describe the image."}]
    assert vlm.answer(caption) == "a red square"
    mixed = vlm.chat({"image": "a.png", "question": float("nan"), "answer": "a cat"}, 1, "Describe the image.")
    assert mixed[0]["content"][-1]["text"] == "Describe the image."
    msgs = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert vlm.answer(vlm.chat({"image": "a.png", "messages": msgs}, 0, "")) == "hello"
    assert vlm.image_list('["a.png", "b.png"]') == ["a.png", "b.png"]
    assert get_task("vlm:vqa") is VLM and get_task("vlm:captioning") is VLM


AUTOTRAIN_VQA = """
task: vlm:vqa
base_model: google/paligemma-3b-pt-224
project_name: autotrain-paligemma-vqa
backend: local
data:
  path: abhishek/vqa_small
  train_split: train
  valid_split: validation
  column_mapping:
    image_column: image
    text_column: multiple_choice_answer
    prompt_text_column: question
params:
  epochs: 3
  batch_size: 2
  lr: 2e-5
  gradient_accumulation: 4
  peft: true
  quantization: null
"""


def test_autotrain_vlm_configs_load(tmp_path):
    from engine.config import load_config

    (tmp_path / "vqa.yaml").write_text(AUTOTRAIN_VQA)
    task, params = load_config(tmp_path / "vqa.yaml")
    assert task is VLM and params.use_lora and params.grad_accum == 4 and params.valid_split == "validation"
    assert params.column_mapping == {"image": "image", "answer": "multiple_choice_answer", "question": "question"}
    captioning = AUTOTRAIN_VQA.replace("vlm:vqa", "vlm:captioning").replace("multiple_choice_answer", "caption")
    (tmp_path / "cap.yaml").write_text(captioning.replace("    prompt_text_column: question\n", ""))
    task, params = load_config(tmp_path / "cap.yaml")
    assert task is VLM and params.column_mapping == {"image": "image", "answer": "caption"}


def test_several_images_per_example_collated_with_answer_only_labels(tiny_llava, tmp_path):
    from transformers import AutoProcessor

    rows = shape_rows(tmp_path, 2)
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "same colour?"}]},
        {"role": "assistant", "content": "no"},
    ]
    import pandas as pd

    df = pd.DataFrame(
        {"image": [json.dumps([str(tmp_path / r["file_name"]) for r in rows])], "messages": [json.dumps(msgs)]}
    )
    params = vlm_params(tiny_llava, tmp_path)
    assert vlm.check_split(df, params, "Training", []) == []
    processor = AutoProcessor.from_pretrained(str(tiny_llava))
    batch = vlm.collator(processor, 64, answers_only=True)([vlm.Examples(df, params)[0]])
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int((batch["input_ids"] == image_id).sum()) == 2 * 16 and batch["pixel_values"].shape[0] == 2
    learnt = [processor.tokenizer.decode([int(t)]) for t in batch["labels"][0] if t != -100]
    assert "".join(learnt).startswith("no") and "same" not in "".join(learnt), learnt


def test_best_checkpoint_of_a_full_fine_tune_is_reloaded_with_its_renamed_weights(tiny_llava, tiny_llama, tmp_path):
    """LLaVA's weights are saved renamed (transformers 5.24), so the Trainer's own best-model reload would keep
    the last weights: the shared callback sees the renaming from the checkpoint's header and reloads it. A Llama
    saves its own names (tied copies aside): nothing to do."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from engine.train import trainer as tu

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_llava))
    model.save_pretrained(tmp_path / "checkpoint-1")
    llama = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    llama.save_pretrained(tmp_path / "llama")
    assert tu.renamed_on_disk(model, tmp_path / "checkpoint-1") and not tu.renamed_on_disk(llama, tmp_path / "llama")
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "training" went on past the best checkpoint
    args = SimpleNamespace(load_best_model_at_end=True, metric_for_best_model="eval_loss")
    state = SimpleNamespace(best_model_checkpoint=str(tmp_path / "checkpoint-1"), best_metric=0.5)
    tu.ReloadBestCallback().on_train_end(args, state, None, model=model)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
