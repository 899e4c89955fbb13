"""Vision-language fine-tuning helpers. UI-safe at module level (no torch/transformers): rows → chats with image
parts, pre-launch checks (images decode, image parts match the images, prompt + image tokens fit) and the token
report. The worker side (collator with answer-only labels, LoRA on the language model, generation) imports
torch/transformers/peft inside its functions."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

from engine.data import images
from engine.errors import Problem
from engine.preflight.model_files import model_file

PROJECTORS = ("multi_modal_projector", "connector", "mm_projector", "visual.merger")
SHOWN = 8


# ---- rows → chats -------------------------------------------------------------------------


def image_list(value: Any) -> list[Any]:
    """The images of one row: a single path/cell, a list, or a JSON list of paths."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if hasattr(value, "tolist") and not isinstance(value, dict):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(p, dict) and p.get("type") for p in content):
        raise ValueError("content must be a string or a list of parts like {type: image} / {type: text, text: ...}")
    return [
        {"type": "image"} if p["type"] == "image" else {"type": "text", "text": str(p.get("text", ""))} for p in content
    ]


def chat(row: dict[str, Any], n_images: int, caption_prompt: str) -> list[dict[str, Any]]:
    """The row as a chat whose last turn is the assistant's answer: ``messages``, question + answer, or a caption."""
    if _present(row.get("messages")):
        value = row["messages"]
        msgs = json.loads(value) if isinstance(value, str) else list(value)
        out = [{"role": str(m["role"]), "content": _parts(m["content"])} for m in msgs]
        if not out or out[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        return out
    prompt = str(row["question"]) if _present(row.get("question")) else caption_prompt
    user = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": prompt}]
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": str(row["answer"])}]},
    ]


def _present(value: Any) -> bool:
    """A cell that holds something (not None, NaN or blank): rows may mix captions and questions."""
    return value is not None and not (isinstance(value, float) and value != value) and str(value).strip() != ""


def chats(df: Any, caption_prompt: str) -> tuple[list[list[dict]], list[str]]:
    """Every row's chat, and the problems (row, what is wrong)."""
    out, problems = [], []
    for i, row in enumerate(df.to_dict("records")):
        n = len(image_list(row["image"]))
        try:
            msgs = chat(row, n, caption_prompt)
            parts = sum(1 for m in msgs for p in m["content"] if p["type"] == "image")
            if parts != n:
                raise ValueError(f"the messages have {parts} image part(s) but the row has {n} image(s)")
            out.append(msgs)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            problems.append(Problem(f"Row {i + 1}: {e}.", role="messages"))
    return out, problems[:SHOWN]


def answer(msgs: list[dict]) -> str:
    return "".join(p.get("text", "") for p in msgs[-1]["content"])


# ---- checks and token report --------------------------------------------------------------


def image_tokens(base_model: str) -> int | None:
    """Tokens one image takes in the prompt: LLaVA-style a fixed count; Idefics3/SmolVLM-style, which split an
    image into tiles, the most it can take (every tile plus the global image, each with its wrapper tokens).
    None if unknown."""
    config = model_file(base_model, "config.json")
    proc = model_file(base_model, "processor_config.json") or model_file(base_model, "preprocessor_config.json")
    n = config.get("image_seq_length") or proc.get("image_seq_len") or proc.get("image_seq_length")
    if not n:
        return None
    images = proc.get("image_processor") or model_file(base_model, "preprocessor_config.json")
    if images.get("do_image_splitting"):
        longest = (images.get("size") or {}).get("longest_edge", 0)
        tile = (images.get("max_image_size") or {}).get("longest_edge", 0)
        tiles = math.ceil(longest / tile) ** 2 if longest and tile else 0
        return (tiles + 1) * (int(n) + 3)
    return int(n)


def token_lengths(msgs: list[list[dict]], base_model: str) -> list[int] | None:
    """Prompt + answer tokens per chat, image tokens included; None when the tokenizer or template is not here."""
    folder = Path(base_model).expanduser()
    template = folder / "chat_template.jinja"
    if not (folder / "tokenizer.json").exists() or not template.exists():
        return None
    import jinja2
    from tokenizers import Tokenizer

    render = jinja2.Environment().from_string(template.read_text(encoding="utf-8")).render
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    per_image = image_tokens(base_model) or 1
    texts = [render(messages=m, add_generation_prompt=False) for m in msgs]
    counts = [sum(1 for turn in m for p in turn["content"] if p["type"] == "image") for m in msgs]
    return [len(e.ids) + n * (per_image - 1) for e, n in zip(tok.encode_batch(texts), counts, strict=True)]


def check_split(df: Any, params: Any, split: str, bases: list[Path]) -> list[str]:
    """Images decode, chats are well-formed, and every example fits ``max_length`` with its image tokens."""
    values = [v for cell in df["image"] for v in image_list(cell)]
    found = images.check_images(values, bases)
    problems = [Problem(f"{split} data: {p}", role="image") for p in found["problems"][:SHOWN]]
    msgs, chat_problems = chats(df, params.caption_prompt)
    problems += [f"{split} data: {p}" for p in chat_problems]
    lengths = token_lengths(msgs, params.base_model) if not chat_problems else None
    long = [i for i, n in enumerate(lengths or []) if n > params.max_length]
    if long:
        rows = ", ".join(str(i + 1) for i in long[:SHOWN])
        problems.append(
            Problem(
                f"{split} data: {len(long)} example(s) need more than max_length {params.max_length} tokens with their "
                f"image tokens (rows {rows}; longest {max(lengths)}). Raise max_length or shorten them.",
                field="max_length",
            )
        )
    return problems


def length_report(df: Any, params: Any) -> str:
    msgs, _ = chats(df, params.caption_prompt)
    lengths = token_lengths(msgs, params.base_model)
    if not lengths:
        return "- Token statistics need the model's tokenizer.json and chat_template.jinja here (a local model)."
    s = sorted(lengths)
    return (
        f"**Tokens per example** (prompt + image tokens + answer, {len(s)} examples): min {s[0]}, "
        f"median {s[len(s) // 2]}, max {s[-1]}; max_length {params.max_length}."
    )


bases = images.data_bases  # relative image paths are looked up in the data's folders


# ---- worker: model, LoRA, batches, generation ---------------------------------------------


def load_model(params: Any) -> Any:
    """The image-text-to-text model; with LoRA, adapters on the language model's linear layers (and the vision
    tower's when asked), the projector trained in full."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(params.base_model, trust_remote_code=params.trust_remote_code)
    if not params.use_lora:
        return model
    from peft import LoraConfig, get_peft_model

    wanted = (
        {m.strip() for m in params.lora_target_modules.split(",")}
        if params.lora_target_modules != "all-linear"
        else None
    )
    targets = [name for name in linear_layers(model) if _wanted(name, wanted, params.lora_vision)]
    present = {n for n, _ in model.named_modules()}
    projector = [p for p in PROJECTORS if any(n.endswith(p) for n in present)]
    config = LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=targets,
        modules_to_save=projector or None,
    )
    return get_peft_model(model, config)


def linear_layers(model: Any) -> list[str]:
    import torch

    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")]


def _wanted(name: str, wanted: set[str] | None, vision: bool) -> bool:
    in_vision = any(k in name for k in ("vision_tower", "vision_model", "visual"))
    in_projector = any(p in name for p in PROJECTORS)
    if in_projector or (in_vision and not vision):
        return False
    return wanted is None or name.rsplit(".", 1)[-1] in wanted


class Examples:
    """Map-style dataset of (images, chat) pairs; images are decoded when drawn."""

    def __init__(self, df: Any, params: Any):
        self.images = [image_list(v) for v in df["image"]]
        self.chats, _ = chats(df, params.caption_prompt)
        self.bases = bases(params)

    def __len__(self) -> int:
        return len(self.chats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"images": [images.open_image(v, self.bases) for v in self.images[i]], "chat": self.chats[i]}


def collator(processor: Any, max_length: int, answers_only: bool) -> Any:
    """Tokenise chats with their images; labels are the answer tokens only (prompt, image and padding: -100)."""

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        fulls = [processor.apply_chat_template(x["chat"], tokenize=False) for x in items]
        imgs = [x["images"] for x in items]
        batch = processor(images=imgs, text=fulls, return_tensors="pt", padding=True)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        if answers_only:
            prompts = [
                processor.apply_chat_template(x["chat"][:-1], tokenize=False, add_generation_prompt=True) for x in items
            ]
            for row, (prompt, pics) in enumerate(zip(prompts, imgs, strict=True)):
                n = len(processor(images=[pics], text=[prompt], return_tensors="pt")["input_ids"][0])
                start = int((batch["attention_mask"][row] == 1).nonzero()[0])  # left padding shifts the text
                labels[row, : start + n] = -100
        mask_trailing_whitespace(labels, processor.tokenizer)
        batch["labels"] = labels
        longest = int(batch["attention_mask"].sum(dim=1).max())
        if longest > max_length:  # cutting would drop image tokens or the answer: say so instead
            raise ValueError(
                f"An example takes {longest} tokens with its image tokens, more than max_length {max_length}. "
                "Raise max_length (the pre-launch estimate was lower than the processor's count)."
            )
        return dict(batch)

    return collate


def mask_trailing_whitespace(labels: Any, tok: Any) -> None:
    """No loss on the template's line breaks after the end-of-turn token: they follow the answer, and generation
    stops before them."""
    for row in labels:
        kept = (row != -100).nonzero()
        for i in reversed(kept.flatten().tolist()):
            if tok.decode([int(row[i])]).strip():
                break
            row[i] = -100


def prompt_batch(model: Any, processor: Any, pics: list[Any], msgs: list[dict]) -> Any:
    """The model's inputs for a chat whose last turn is the user's, ready for an answer (on the model's device)."""
    prompt = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return processor(images=[pics], text=[prompt], return_tensors="pt").to(model.device)


def generate(model: Any, processor: Any, pics: list[Any], msgs: list[dict], max_new_tokens: int) -> str:
    """The model's answer to a chat whose last turn is the user's."""
    import torch

    batch = prompt_batch(model, processor, pics, msgs)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


SCORED = 100  # validation examples answered by generation at each evaluation


def answer_scores(model: Any, processor: Any, examples: Examples, max_new_tokens: int) -> dict[str, float]:
    """Exact-match accuracy (case-insensitive) and ROUGE/BLEU/chrF of generated answers on up to ``SCORED``
    validation examples."""
    from engine.train.metrics import generation_metrics

    items = [examples[i] for i in range(min(len(examples), SCORED))]
    refs = [answer(x["chat"]).strip() for x in items]
    longest = max(len(processor.tokenizer(r).input_ids) for r in refs) + 8
    preds = [generate(model, processor, x["images"], x["chat"][:-1], min(max_new_tokens, longest)) for x in items]
    exact = sum(p.lower() == r.lower() for p, r in zip(preds, refs, strict=True)) / len(refs)
    scores = {k: v for k, v in generation_metrics(preds, refs).items() if k in ("rougeL", "bleu", "chrf")}
    if importlib.util.find_spec("pycocoevalcap"):  # the optional extra `vlm` (a 100 MB wheel: Java tools inside)
        scores["cider"] = cider(preds, refs)
    return {"exact_match": float(100 * exact), **{k: round(float(v), 4) for k, v in scores.items()}}


def cider(predictions: list[str], references: list[str]) -> float:
    """CIDEr-D of each prediction against its reference, averaged (pycocoevalcap's scorer, 0-10 scale). Words are
    lower-cased and split at non-word characters here: the PTB tokenizer pycocoevalcap ships needs Java."""
    from pycocoevalcap.cider.cider import Cider

    def words(text: str) -> list[str]:
        return [" ".join(re.findall(r"\w+", text.lower()))]

    score, _ = Cider().compute_score(dict(enumerate(map(words, references))), dict(enumerate(map(words, predictions))))
    return float(score)


def answering_trainer(processor: Any, valid: Examples, max_new_tokens: int) -> type:
    """A Trainer whose evaluations also answer the validation examples by generation and score the answers."""
    from transformers import Trainer

    class AnsweringTrainer(Trainer):
        def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
            out = super().evaluation_loop(*args, **kwargs)
            prefix = kwargs.get("metric_key_prefix", "eval")
            scores = answer_scores(self.model, processor, valid, max_new_tokens)
            out.metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
            return out

    return AnsweringTrainer
