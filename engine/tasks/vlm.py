"""Vision-language fine-tuning: captioning and visual question answering with any image-text-to-text model
(AutoModelForImageTextToText + AutoProcessor: LLaVA, SmolVLM/Idefics3, Qwen2-VL, PaliGemma, Gemma 3 ...).

Data: an image column (a path, a Hub image cell, or a list of them) with a caption (``answer``), a question and
its answer, or a ``messages`` chat whose content holds image parts. Chats go through the processor's chat
template; the loss is on the answers only by default; LoRA on the language model by default (projector trained
in full, the vision tower optionally). Checked before launch: every image decodes, image parts match the images,
prompt + image tokens fit max_length.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.params import LoraParams, field
from engine.task import Column, Job, Task
from engine.vision import vlm


class Params(LoraParams):
    """VLM options on top of the shared training and LoRA options."""

    learning_rate: float = field(2e-4, "Peak learning rate (2e-4 suits LoRA; ~1e-5 for full fine-tuning).", gt=0, le=1)
    batch_size: int = field(4, "Examples per device per step.", ge=1, le=4096)
    use_lora: bool = field(True, "Train LoRA adapters on the language model instead of all weights (less memory).")
    lora_vision: bool = field(
        False, "Also put LoRA adapters on the vision tower.", show_if={"use_lora": True}, advanced=True
    )
    max_length: int = field(
        1024, "Longest example in tokens, image tokens included; longer ones are refused before launch.", ge=16
    )
    caption_prompt: str = field(
        "Describe the image.", "The question asked for rows that have only an image and a caption (`answer`)."
    )
    answers_only: bool = field(True, "Learn only from the answers, not from the prompts and images.", advanced=True)
    max_new_tokens: int = field(64, "Longest generated answer in the playground.", ge=1, le=4096, advanced=True)


COLUMNS = [
    Column(
        "image",
        "the image (a path relative to the data file, a Hub image, or a list of them)",
        kind="any",
        aliases=("file_name", "image_path", "images", "path", "file"),
    ),
    Column(
        "question",
        "the question about the image (empty: the caption prompt)",
        required=False,
        aliases=("prompt", "query", "instruction"),
    ),
    Column(
        "answer",
        "the answer, or the caption",
        required=False,
        aliases=("caption", "text", "completion", "response", "label"),
    ),
    Column(
        "messages",
        "a chat: list of {role, content}; content parts {type: image} / {type: text, text}",
        required=False,
        kind="messages",
    ),
]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """An answer or messages column; images decode; chats well-formed; each example fits max_length."""
    if "answer" not in train.columns and "messages" not in train.columns:
        return [
            "VLM data needs an `answer` (or `caption`) column, with an optional `question`, or a `messages` "
            "column. Map yours with column_mapping, e.g. {answer: my_caption}."
        ]
    problems = vlm.check_split(train, params, "Training", vlm.bases(params))
    if valid is not None:
        problems += vlm.check_split(valid, params, "Validation", vlm.bases(params))
    return problems


def data_summary(task: Task, params: Params) -> str:
    from engine.data import splits
    from engine.data import tables as data

    if not params.data_path or not data.is_local(params.data_path):
        return "- Hub dataset: images and token lengths are checked when the run loads it."
    train, _ = splits.load_raw(params)
    mapping, problems = splits.resolve_mapping(task, list(train.columns), params.column_mapping)
    if problems:
        return ""
    df = splits.apply_mapping(train, mapping)
    kind = "chats" if "messages" in df else "question answering" if "question" in df else "captioning"
    return f"- {len(df)} training examples ({kind}).\n" + vlm.length_report(df, params)


# ---- training -----------------------------------------------------------------------------


def save(model_dir: Path, trainer: Any, processor: Any, params: Params) -> None:
    """A standalone model (LoRA merged; the adapter kept in ``adapter/``), the processor, the side file."""
    model = trainer.model
    if params.use_lora:
        model.save_pretrained(str(model_dir.parent / "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(str(model_dir))
    processor.save_pretrained(str(model_dir))
    keys = ("caption_prompt", "max_new_tokens", "max_length")
    runfiles.write_side_file(model_dir, {"task": "vlm", **{k: getattr(params, k) for k in keys}})


def train(job: Job) -> dict[str, float]:
    from transformers import AutoProcessor, Trainer

    from engine.data import tables as data
    from engine.errors import UserError
    from engine.train import trainer as tu

    params = job.params
    if not data.is_local(params.data_path) and (problems := check_data(job.train, job.valid, params)):
        raise UserError(problems)  # Hub datasets are not checked before queueing
    processor = AutoProcessor.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    model = vlm.load_model(params)
    train_ds = vlm.Examples(job.train, params)
    valid_ds = vlm.Examples(job.valid, params) if job.valid is not None else []
    print(
        f"[trainpad] {len(train_ds)} training examples, {len(valid_ds)} validation examples; "
        f"LoRA={'on' if params.use_lora else 'off'}",
        flush=True,
    )
    args = tu.training_arguments(job, len(train_ds), len(valid_ds), remove_unused_columns=False)
    trainer_cls = vlm.answering_trainer(processor, valid_ds, params.max_new_tokens) if valid_ds else Trainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=valid_ds or None,
        data_collator=vlm.collator(processor, params.max_length, params.answers_only),
        callbacks=tu.callbacks(params, job.run_dir, bool(valid_ds)),
    )
    saver = functools.partial(save, trainer=trainer, processor=processor, params=params)
    return tu.train_and_save(trainer, params, job.run_dir, bool(valid_ds), save=saver)


# ---- inference ----------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any) -> Any:
    """Answer {"image": path | [paths], "question": text} (no question: the caption prompt), or
    {"image": ..., "messages": [...]} ending with the user's turn. Optional max_new_tokens (within the
    instance's cap); with {"stream": true} the answer comes as an iterator of the text so far."""
    from engine.data import images
    from engine.train.generation import capped_new_tokens

    settings = runfiles.read_side_file(model_dir)
    options = inputs if isinstance(inputs, dict) else {"image": inputs}
    pics = [images.open_image(v) for v in vlm.image_list(options.get("image"))]
    if options.get("messages"):
        msgs = [{"role": m["role"], "content": vlm._parts(m["content"])} for m in options["messages"]]
    else:
        question = options.get("question") or settings.get("caption_prompt", "Describe the image.")
        msgs = [{"role": "user", "content": [{"type": "image"} for _ in pics] + [{"type": "text", "text": question}]}]
    model, processor = _load_for_inference(str(model_dir))
    limit, _ = capped_new_tokens(options.get("max_new_tokens", settings.get("max_new_tokens", 64)))
    if options.get("stream"):
        return predict_stream(model, processor, pics, msgs, limit)
    return vlm.generate(model, processor, pics, msgs, limit)


def predict_stream(model: Any, processor: Any, pics: list[Any], msgs: list[dict], limit: int) -> Iterator[str]:
    """The answer to a chat whose last turn is the user's, as the text so far each time it grows (greedy, like
    ``vlm_utils.generate``: the last text equals its answer)."""
    from engine.llm.model import stream_generate

    batch = vlm.prompt_batch(model, processor, pics, msgs)
    shown = None
    for text in stream_generate(model, processor.tokenizer, {**batch, "max_new_tokens": limit, "do_sample": False}):
        if text.strip() != shown:
            shown = text.strip()
            yield shown


@functools.lru_cache(maxsize=1)
def _load_for_inference(model_dir: str) -> tuple[Any, Any]:
    """The saved model (eval mode) and processor, kept for the playground's next question."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Exact match, ROUGE-1/2/L, BLEU and chrF of the model's greedy answers to the test rows (captions, questions or
    chats ending with the answer); the rows with the lowest chrF first."""
    from engine.data import images
    from engine.errors import UserError
    from engine.train import evaluation
    from engine.vision import evaluation as vev

    if "answer" not in df.columns and "messages" not in df.columns:
        raise UserError(
            "The test data needs an `answer` (or `caption`) column, with an optional `question`, or a `messages` "
            f"column ending with the answer. Columns found: {', '.join(df.columns)}."
        )
    settings = runfiles.read_side_file(model_dir)
    msgs, problems = vlm.chats(df, settings.get("caption_prompt", Params.model_fields["caption_prompt"].default))
    if problems:
        raise UserError([f"Test data: {p}" for p in problems])
    cells = [vlm.image_list(v) for v in df["image"]]
    flat = iter(vev.test_images([v for row in cells for v in row], options))
    pics = [[next(flat) for _ in row] for row in cells]
    model, processor = _load_for_inference(str(model_dir))
    refs = [vlm.answer(m).strip() for m in msgs]
    longest = max(len(processor.tokenizer(r).input_ids) for r in refs) + 8
    limit = int(options.get("max_new_tokens") or min(settings.get("max_new_tokens", 64), longest))

    def answers(rows: list[int]) -> list[str]:
        return [
            vlm.generate(model, processor, [images.open_image(p) for p in pics[i]], msgs[i][:-1], limit) for i in rows
        ]

    preds = evaluation.batched(list(range(len(msgs))), answers, options.get("batch_size") or 8, options.get("progress"))
    inputs = [
        f"{', '.join(vev.shown_names(row, options))}: {vlm.answer(m[:-1])}" for row, m in zip(cells, msgs, strict=True)
    ]
    out = evaluation.generated_text(refs, preds, inputs)
    return out | {"settings": {"max_new_tokens": limit, "do_sample": False}}


TASK = Task(
    name="vlm",
    model_kind="vlm",
    hub_pipeline="image-text-to-text",
    title="Vision-language (captioning, VQA)",
    family="Vision",
    description="Fine-tune an image-text-to-text model to caption images or answer questions about them.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_loss",
    greater_is_better=False,
    model_note="An image-text-to-text model (AutoModelForImageTextToText), e.g. HuggingFaceTB/SmolVLM-256M-Instruct, "
    "llava-hf/llava-interleave-qwen-0.5b-hf, Qwen/Qwen2-VL-2B-Instruct, google/paligemma-3b-pt-224.",
    check_data=check_data,
    data_summary=data_summary,
    predict_input="image_text",  # an image and an optional question
    autotrain_names=["vlm:captioning", "vlm:vqa", "vlm"],
    autotrain_columns={"text_column": "answer", "prompt_text_column": "question", "image_column": "image"},
)
